"""One cohort evaluation (core.metrics.cohort): signal found, noise at chance, no leaks, patient splits,
multi-class metrics as scikit-learn's, hierarchical leaves, paired bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    roc_auc_score,
)

from napari_neuroreview.core.errors import InsufficientDataError, NeuroreviewError
from napari_neuroreview.core.io import strict_json
from napari_neuroreview.core.metrics import classification as C
from napari_neuroreview.core.metrics import cohort as CE
from napari_neuroreview.core.metrics import hierarchy as H
from napari_neuroreview.core.progress import Progress, run_to_completion


class Logistic:
    """Estimator of the protocol: logistic regression on the items (feature rows)."""

    def __init__(self) -> None:
        self.model = LogisticRegression(C=1.0, max_iter=1000)

    def fit(self, items, labels):
        self.model.fit(np.asarray(items), labels)

    def predict_proba(self, items):
        return self.model.predict_proba(np.asarray(items))


def _select(X: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """The k columns whose class means differ most (a label-using stage)."""
    diff = np.abs(X[y == 1].mean(0) - X[y == 0].mean(0)) / (X.std(0) + 1e-9)
    return np.argsort(diff)[-k:]


class SelectThenLogistic(Logistic):
    """Feature selection inside fit: the honest place for a label-using stage."""

    def fit(self, items, labels):
        X = np.asarray(items)
        self.cols = _select(X, labels, 10)
        self.model.fit(X[:, self.cols], labels)

    def predict_proba(self, items):
        return self.model.predict_proba(np.asarray(items)[:, self.cols])


def _cohort(n_patients: int, effect: float, seed: int, rows_per_patient: int = 2, n_features: int = 5,
            n_classes: int = 2) -> CE.Cohort:
    """Each patient has one class and several correlated rows; ``effect`` shifts feature 0..K-1."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_patients) % n_classes
    rng.shuffle(labels)
    X, y, g = [], [], []
    for p in range(n_patients):
        centre = rng.normal(size=n_features)  # patient effect: rows of one patient are alike
        for _ in range(rows_per_patient):
            x = centre + 0.5 * rng.normal(size=n_features)
            x[labels[p] % n_features] += effect
            X.append(x)
            y.append(f"c{labels[p]}")
            g.append(f"p{p:03d}")
    return CE.Cohort(np.asarray(X), y, g)


def test_planted_signal_is_found_and_noise_gives_chance():
    signal = CE.evaluate(_cohort(40, 2.0, 0), Logistic, n_folds=5, n_boot=300)
    assert signal.metrics["auc"]["low"] > 0.5
    assert signal.metrics["auc_macro"]["low"] > 0.5
    noise = CE.evaluate(_cohort(40, 0.0, 1), Logistic, n_folds=5, n_boot=300)
    assert noise.metrics["auc"]["low"] < 0.5 < noise.metrics["auc"]["high"]
    # JSON-ready (strict: no NaN) and a printed table naming every metric
    doc = strict_json.loads(strict_json.dumps(signal.to_json()))
    assert set(doc["metrics"]) == set(CE.metric_names(("c0", "c1")))
    assert len(doc["rows"]["proba"]) == 80
    table = signal.table()
    for name in signal.metrics:
        assert name in table


def test_leak_outside_the_fold_inflates_noise_and_the_harness_does_not():
    cohort = _cohort(60, 0.0, 5, n_features=300)
    y = cohort.codes
    # leaky: features chosen on the whole cohort (test patients' labels included), then CV
    leaked_cols = _select(cohort.items, y, 10)
    leaky = CE.evaluate(CE.Cohort(cohort.items[:, leaked_cols], cohort.labels, cohort.groups),
                        Logistic, n_folds=5, n_boot=200)
    assert leaky.metrics["auc"]["low"] > 0.7
    # honest: the same selection inside the estimator's fit; spy on every factory call
    made: list[SelectThenLogistic] = []
    seen: list[set] = []

    class Spy(SelectThenLogistic):
        def __init__(self):
            super().__init__()
            made.append(self)

        def fit(self, items, labels):
            rows = [i for i, x in enumerate(cohort.items) if any((x == r).all() for r in np.asarray(items))]
            seen.append(set(cohort.groups[rows].tolist()))
            super().fit(items, labels)

    honest = CE.evaluate(cohort, Spy, n_folds=5, n_boot=200)
    assert honest.metrics["auc"]["low"] < 0.5 < honest.metrics["auc"]["high"]
    folds = honest.predictions.folds
    assert len(made) == len(seen) == len(folds) == 5  # one fresh estimator per fold
    for patients, record in zip(seen, folds):
        assert patients == set(record["train_patients"])
        assert not patients & set(record["test_patients"])


def test_no_patient_on_both_sides_and_each_tested_once():
    cohort = _cohort(30, 1.0, 4, rows_per_patient=3)
    folds = CE.patient_folds(cohort, 5, seed=2)
    tested = []
    for train, test in folds:
        assert not set(cohort.groups[train]) & set(cohort.groups[test])
        assert len(train) + len(test) == 90
        tested += sorted(set(cohort.groups[test]))
    assert sorted(tested) == sorted(set(cohort.groups))
    pred = CE.cross_validate(cohort, Logistic, 5, seed=2)
    assert (pred.fold >= 0).all() and np.isfinite(pred.proba).all()


def test_too_few_patients_or_labels_is_one_sentence():
    with pytest.raises(InsufficientDataError, match="4 patients cannot fill 5 folds"):
        CE.patient_folds(_cohort(4, 1.0, 0), 5)
    lonely = CE.Cohort(np.zeros((11, 2)), ["a"] * 10 + ["b"], [f"p{i}" for i in range(11)])
    with pytest.raises(InsufficientDataError, match="class 'b' has 1 patient") as err:
        CE.patient_folds(lonely, 3)
    assert isinstance(err.value, NeuroreviewError) and "\n" not in str(err.value)
    with pytest.raises(InsufficientDataError, match="two classes"):
        CE.patient_folds(CE.Cohort(np.zeros((6, 2)), ["a"] * 6, list("uvwxyz")), 3)


def test_multiclass_metrics_equal_scikit_learn():
    rng = np.random.default_rng(7)
    classes = ("a", "b", "c")
    y = np.array(list("aabbbcccca") * 3)
    raw = rng.random((y.size, 3)) + 0.8 * (y[:, None] == np.array(classes))
    p = raw / raw.sum(1, keepdims=True)
    groups = np.arange(y.size)
    pred = CE.CVPredictions(classes, y, groups, p, np.zeros(y.size, int))
    res = CE.evaluate_predictions(pred, n_boot=50)
    hard = np.array(classes)[p.argmax(1)]
    m = {k: v["value"] for k, v in res.metrics.items()}
    assert m["auc_macro"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=classes))
    assert m["auc_weighted"] == pytest.approx(
        roc_auc_score(y, p, multi_class="ovr", average="weighted", labels=classes))
    assert m["auc_weighted"] == pytest.approx(C.weighted_auc(y, p, classes))
    for k, c in enumerate(classes):
        assert m[f"auc[{c}]"] == pytest.approx(roc_auc_score(y == c, p[:, k]))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, hard))
    assert m["precision_weighted"] == pytest.approx(precision_score(y, hard, average="weighted", zero_division=0))
    assert m["f1_weighted"] == pytest.approx(f1_score(y, hard, average="weighted", zero_division=0))
    assert res.confusion == confusion_matrix(y, hard, labels=list(classes)).tolist()
    assert all(v["low"] <= v["value"] <= v["high"] for v in res.metrics.values())


def test_binary_metrics_agree_with_binary_metrics_and_bootstrap_unchanged():
    cohort = _cohort(30, 1.0, 5)
    pred = CE.cross_validate(cohort, Logistic, 5, seed=0)
    res = CE.evaluate_predictions(pred, n_boot=100, seed=3)
    ref = C.binary_metrics(pred.codes, pred.proba[:, 1], 0.5)
    for name in (*CE.BINARY_METRICS, "accuracy"):
        assert res.metrics[name]["value"] == pytest.approx(ref[name])
    # the CI is bootstrap_ci's on the same patients and seed
    _, low, high = C.bootstrap_ci(roc_auc_score, pred.codes, pred.proba[:, 1], pred.groups, n_boot=100, seed=3)
    assert (res.metrics["auc"]["low"], res.metrics["auc"]["high"]) == pytest.approx((low, high))


TREE = H.Node("vascular", "none", H.Node("subtype", "caa", "htn"))


def test_hierarchical_leaves_sum_to_one_and_nodes_see_their_patients():
    cohort = _cohort(45, 2.0, 6, n_classes=3)
    renamed = CE.Cohort(cohort.items, [{"c0": "none", "c1": "caa", "c2": "htn"}[v] for v in cohort.labels],
                        cohort.groups)
    fitted: dict[str, list[set]] = {"vascular": [], "subtype": []}

    class NodeModel(Logistic):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def fit(self, items, labels):
            fitted[self.name].append(len(labels))
            super().fit(items, labels)

    pred = H.cross_validate_hierarchy(renamed, TREE, NodeModel, n_folds=3)
    assert pred.leaves.classes == ("none", "caa", "htn")
    assert np.allclose(pred.leaves.proba.sum(1), 1.0)
    assert len(fitted["vascular"]) == len(fitted["subtype"]) == 3
    # the subtype node trains only on rows that reach it (caa or htn): about 2/3 of the training rows
    assert all(s < v for s, v in zip(fitted["subtype"], fitted["vascular"]))
    res = H.evaluate_hierarchy(pred, n_boot=100)
    assert res.nodes["subtype"].counts["rows"] == int(np.isin(renamed.labels, ["caa", "htn"]).sum())
    assert res.nodes["vascular"].counts["rows"] == renamed.labels.size
    assert res.leaves.metrics["auc_macro"]["low"] > 0.5
    json.loads(strict_json.dumps(res.to_json()))
    assert "node subtype" in res.table()


def test_paired_bootstrap_model_against_itself_and_a_worse_model():
    cohort = _cohort(40, 2.0, 8)
    a = CE.cross_validate(cohort, Logistic, 5, seed=0)
    same = CE.compare(a, a, "auc", n_boot=200)
    assert same["difference"] == 0 and same["low"] == 0 and same["high"] == 0 and same["p"] == 1.0
    rng = np.random.default_rng(0)
    noise = CE.CVPredictions(a.classes, a.labels, a.groups, rng.dirichlet([1, 1], a.labels.size), a.fold)
    better = CE.compare(a, noise, "auc", n_boot=300)
    assert better["difference"] == pytest.approx(better["a"] - better["b"])
    assert better["low"] > 0 and better["p"] < 0.05


class Table:
    """A table of rows with ``subset`` (as networks' NetworkRows): handed to estimators as a table."""

    def __init__(self, X: np.ndarray) -> None:
        self.X = X

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, rows):
        return Table(self.X[rows])


class SlowLogistic(Logistic):
    """A fit written as a task (a network's epochs): yields progress, then fits."""

    def fit(self, items, labels):
        for epoch in range(4):
            yield Progress(epoch + 1, 4, f"epoch {epoch + 1}/4")
        self.model.fit(items.X, labels)

    def predict_proba(self, items):
        return self.model.predict_proba(items.X)


class TableLogistic(Logistic):
    def fit(self, items, labels):
        self.model.fit(items.X, labels)

    def predict_proba(self, items):
        return self.model.predict_proba(items.X)


def test_task_fits_several_estimators_in_the_same_folds_with_progress_and_a_fold_hook():
    plain = _cohort(30, 2.0, 9)
    cohort = CE.Cohort(Table(plain.items), plain.labels, plain.groups)
    hooked = []

    def on_fold(f, train, test, fitted):
        hooked.append((f, set(cohort.groups[test]), sorted(fitted)))
        return {"coef": fitted["slow"].model.coef_.ravel().tolist()}

    updates: list[Progress] = []
    task = CE.cross_validate_task(cohort, {"slow": SlowLogistic, "fast": TableLogistic}, 3, seed=1,
                                  on_fold=on_fold)
    pred = run_to_completion(task, updates.append)
    # both estimators see the same folds, and give what the plain cross_validate gives for each
    assert set(pred) == {"slow", "fast"}
    np.testing.assert_array_equal(pred["slow"].fold, pred["fast"].fold)
    np.testing.assert_allclose(pred["slow"].proba, CE.cross_validate(plain, Logistic, 3, seed=1).proba)
    # the task fit's progress is relayed inside its fold and never goes back
    steps = [u.step for u in updates]
    assert steps == sorted(steps) and updates[-1].step == updates[-1].total == 3000
    assert "Fold 2/3: epoch 3/4" in [u.message for u in updates]
    # the hook ran once per fold after fitting, and its extras are in the fold records
    assert [h[0] for h in hooked] == [0, 1, 2]
    for (f, test_patients, names), record in zip(hooked, pred["fast"].folds):
        assert record["fold"] == f and set(record["test_patients"]) == test_patients
        assert names == ["fast", "slow"] and len(record["coef"]) == 5


def test_given_folds_are_used_and_subsets_score_one_group_with_chosen_metrics():
    cohort = _cohort(24, 2.0, 10)
    folds = CE.patient_folds(cohort, 4, seed=5)
    pred = run_to_completion(CE.cross_validate_task(cohort, {"m": Logistic}, folds=folds))["m"]
    for f, (_, test) in enumerate(folds):
        assert (pred.fold[test] == f).all()
    first = np.isin(pred.groups, np.unique(pred.groups)[:12])
    sub = pred.subset(first)
    assert sub.labels.size == int(first.sum()) and sub.folds is pred.folds
    res = CE.evaluate_predictions(sub, n_boot=50, metrics=("auc", "f1"))
    assert list(res.metrics) == ["auc", "f1"]
    assert res.metrics["auc"] == CE.evaluate_predictions(sub, n_boot=50).metrics["auc"]
    assert res.counts["rows"] == sub.labels.size


def test_a_fit_returning_a_task_without_being_a_generator_is_refused():
    class Hidden(Logistic):
        def fit(self, items, labels):
            return iter_fit(self, items, labels)

    def iter_fit(est, items, labels):
        yield Progress(1, 1)
        est.model.fit(np.asarray(items), labels)

    with pytest.raises(TypeError, match="generator function"):
        CE.cross_validate(_cohort(12, 1.0, 11), Hidden, 3)
