"""One cohort evaluation for every classification system: honest CV, patient CIs, paired tests.

Why one module: each classification task (pre/post networks, CSVD subtype, metastasis
origin, stroke risk) needs the same four guarantees, and each copy got one of them wrong
somewhere in the literature:

* **Split by patient** (``StratifiedGroupKFold``): a patient's rows (scans, sessions,
  lesions) are all on one side of every fold, so a model cannot recognise the patient.
* **Every label-using stage inside the fold**: the estimator is built by a *factory*,
  once per fold, and fitted on the training patients only (feature selection, scaling,
  the choice of a hyper-parameter all belong inside its ``fit``). A stage fitted on the
  whole cohort turns pure noise into an AUC well above 0.5 (tests/core/test_cohort_eval.py).
* **Pooled held-out predictions**, then metrics with a patient (cluster) bootstrap 95 %
  CI (:func:`core.metrics.classification.bootstrap_ci`): resampling rows would give
  intervals that are too narrow.
* **Paired comparison**: two models on the same patients are compared by the bootstrap
  distribution of the *difference* of a metric (:func:`paired_bootstrap`), which is
  narrower and more honest than comparing two separate intervals.

Binary and multi-class targets share one metric set (per-class one-vs-rest AUC, macro
and prevalence-weighted AUC, accuracy, balanced accuracy, weighted precision and F1, confusion
matrix); binary ones add AUC, sensitivity, specificity and F1 of class 1 at a
threshold (as :func:`core.metrics.classification.binary_metrics`). Hierarchical
targets (a tree of binary decisions) are in :mod:`.hierarchy`.

The estimator protocol: ``fit(items, labels)`` with ``labels`` the class *indices*
(column ``k`` of the probabilities is ``classes[k]``), then ``predict_proba(items)`` of
shape (n, K), or (n,) for P(class 1) in a binary task. ``items`` is whatever the system
uses for a row (a feature vector, a scan path, a table of rows with ``subset``); the
harness only indexes it. A ``fit`` that trains for minutes (a network) is written as a
task generator (``core.progress``): :func:`cross_validate_task` relays its progress, so
the bar moves and Cancel is felt inside a fold.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import InsufficientDataError
from ..progress import Progress, TaskGenerator, relay, run_to_completion
from .classification import bootstrap_ci, bootstrap_distribution

__all__ = [
    "CVPredictions",
    "Cohort",
    "CohortResult",
    "Estimator",
    "as_proba",
    "compare",
    "cross_validate",
    "cross_validate_task",
    "evaluate",
    "evaluate_predictions",
    "fold_record",
    "metric_function",
    "paired_bootstrap",
    "patient_folds",
]

#: Metrics of every target (binary targets add :data:`BINARY_METRICS`, of class 1 vs class 0).
SUMMARY_METRICS: tuple[str, ...] = (
    "auc_macro", "auc_weighted", "accuracy", "balanced_accuracy", "precision_weighted", "f1_weighted")
BINARY_METRICS: tuple[str, ...] = ("auc", "sensitivity", "specificity", "f1")


class Estimator(Protocol):
    """What the harness fits and scores; see the module docstring (``fit`` may be a task)."""

    def fit(self, items: Sequence[Any], labels: np.ndarray) -> TaskGenerator[None] | None: ...

    def predict_proba(self, items: Sequence[Any]) -> np.ndarray: ...


@dataclass(frozen=True)
class Cohort:
    """The rows to evaluate: one item, label and patient per row.

    Attributes
    ----------
    items : sequence, numpy.ndarray or a table with ``subset(rows)`` and ``len``
        One entry per row, handed to the estimator (indexed by row numbers).
    labels : array
        Class of each row.
    groups : array
        Patient of each row (the unit of splitting and of the bootstrap).
    classes : tuple, optional
        Class order (columns of the probabilities); sorted distinct labels by default.
    """

    items: Any
    labels: Any
    groups: Any
    classes: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels).reshape(-1)
        groups = np.asarray(self.groups).reshape(-1)
        if not (len(self.items) == labels.size == groups.size):
            raise ValueError(f"items ({len(self.items)}), labels ({labels.size}) and groups "
                             f"({groups.size}) must have one entry per row")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "groups", groups)
        classes = tuple(np.unique(labels).tolist()) if self.classes is None else tuple(self.classes)
        unknown = set(labels.tolist()) - set(classes)
        if unknown:
            raise ValueError(f"labels {sorted(map(str, unknown))} are not among the classes {list(classes)}")
        object.__setattr__(self, "classes", classes)

    @property
    def codes(self) -> np.ndarray:
        """Class index of each row (position in ``classes``)."""
        lookup = {c: k for k, c in enumerate(self.classes or ())}
        return np.array([lookup[v] for v in self.labels.tolist()], dtype=int)

    def take(self, rows: np.ndarray) -> Any:
        """The items of ``rows`` (an array is indexed, a table subset, any other sequence listed)."""
        if isinstance(self.items, np.ndarray):
            return self.items[rows]
        if hasattr(self.items, "subset"):  # a table of rows (e.g. networks' NetworkRows) stays a table
            return self.items.subset(rows)
        return [self.items[int(i)] for i in rows]


def _patients_per_class(codes: np.ndarray, groups: np.ndarray, n_classes: int) -> list[int]:
    return [int(np.unique(groups[codes == k]).size) for k in range(n_classes)]


def patient_folds(cohort: Cohort, n_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) per fold: stratified by class, a patient's rows on one side.

    Raises
    ------
    InsufficientDataError
        Fewer patients than folds, fewer than two classes, or a class whose patients
        cannot be on the training side of every fold (a fold would train without it).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    codes, groups = cohort.codes, cohort.groups
    classes = cohort.classes or ()
    n_patients = int(np.unique(groups).size)
    if n_folds < 2:
        raise InsufficientDataError(f"cross-validation needs at least 2 folds, got {n_folds}")
    if n_patients < n_folds:
        raise InsufficientDataError(f"{n_patients} patients cannot fill {n_folds} folds")
    present = _patients_per_class(codes, groups, len(classes))
    if sum(1 for c in present if c) < 2:
        raise InsufficientDataError(f"cross-validation needs two classes with patients, got {present} "
                                    f"patients for classes {list(classes)}")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class": checked below
        for f, (train, test) in enumerate(splitter.split(np.zeros(codes.size), codes, groups)):
            missing = [classes[k] for k in range(len(classes)) if present[k] and not (codes[train] == k).any()]
            if missing:
                raise InsufficientDataError(
                    f"class {missing[0]!r} has {present[classes.index(missing[0])]} patient(s), so fold "
                    f"{f + 1} of {n_folds} would train without it; each class needs at least 2 patients")
            folds.append((np.sort(train), np.sort(test)))
    return folds


@dataclass
class CVPredictions:
    """Pooled held-out probabilities of one cross-validation.

    Attributes
    ----------
    classes : tuple
    labels, groups : numpy.ndarray
        Per row, as in the :class:`Cohort`.
    proba : numpy.ndarray
        (n, K) held-out probabilities; each row predicted by the fold that held it out.
    fold : numpy.ndarray
        Fold of each row (0-based).
    folds : list of dict
        Per fold: ``fold``, ``train_patients``, ``test_patients`` and what ``on_fold`` added
        (:func:`cross_validate_task`).
    """

    classes: tuple[Any, ...]
    labels: np.ndarray
    groups: np.ndarray
    proba: np.ndarray
    fold: np.ndarray
    folds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def codes(self) -> np.ndarray:
        return Cohort(np.zeros(self.labels.size), self.labels, self.groups, self.classes).codes

    def subset(self, rows: np.ndarray) -> CVPredictions:
        """The predictions of ``rows`` (integer or boolean), e.g. one network or one site."""
        return CVPredictions(self.classes, self.labels[rows], self.groups[rows], self.proba[rows],
                             self.fold[rows], self.folds)


def as_proba(raw: Any, n_rows: int, n_classes: int) -> np.ndarray:
    """(n, K) probabilities from an estimator's output; (n,) means P(class 1) of a binary task."""
    p = np.asarray(raw, dtype=float)
    if p.ndim == 1 and n_classes == 2:
        p = np.column_stack([1.0 - p, p])
    if p.shape != (n_rows, n_classes):
        raise ValueError(f"predict_proba returned shape {np.asarray(raw).shape}, expected ({n_rows}, {n_classes})")
    return p


def fold_record(cohort: Cohort, fold: int, train: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """What a fold reports of itself: its number and who was trained and tested (patient ids)."""
    return {"fold": fold, "train_patients": sorted(set(cohort.groups[train].tolist())),
            "test_patients": sorted(set(cohort.groups[test].tolist()))}


def cross_validate(cohort: Cohort, factory: Callable[[], Estimator], n_folds: int = 5, seed: int = 0
                   ) -> CVPredictions:
    """Fit a fresh estimator per fold on the training patients; pool the held-out probabilities.

    ``factory()`` is called once per fold, so nothing fitted in one fold (or on the whole
    cohort) reaches another fold's test patients.
    """
    return run_to_completion(cross_validate_task(cohort, {"model": factory}, n_folds, seed))["model"]


#: What ``on_fold`` is called with: fold number, train rows, test rows, the fitted estimators by name.
FoldHook = Callable[[int, np.ndarray, np.ndarray, Mapping[str, Estimator]], "Mapping[str, Any] | None"]


def _is_task(estimator: Estimator) -> bool:
    return inspect.isgeneratorfunction(getattr(type(estimator), "fit", None))


def cross_validate_task(cohort: Cohort, factories: Mapping[str, Callable[[], Estimator]], n_folds: int = 5,
                        seed: int = 0, *, folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
                        on_fold: FoldHook | None = None) -> TaskGenerator[dict[str, CVPredictions]]:
    """Several estimators in the same folds, as a task; returns their pooled held-out predictions.

    Why several at once: "model vs baseline" is only a fair comparison when both see the
    same training patients, and the paired bootstrap (:func:`compare`) needs the same rows.
    In each fold every factory is called once, then the estimators are fitted in the
    order of ``factories`` and each predicts the test rows.

    Parameters
    ----------
    cohort : Cohort
    factories : mapping of name to factory
        A fresh estimator per fold for each name.
    n_folds, seed : int
        The split (:func:`patient_folds`) unless ``folds`` is given.
    folds : sequence of (train rows, test rows), optional
        A system's own patient split (e.g. stratified over scans rather than rows); the
        caller vouches that no patient is on both sides.
    on_fold : callable, optional
        ``on_fold(f, train, test, fitted)`` after fold ``f`` has predicted: a system's
        per-fold extras (held-out embeddings, the loss history); a mapping it returns is
        added to the fold's record.

    Yields :class:`Progress` with ``step`` in ``[0, 1000 x folds]``: a fold's span is shared
    equally by the estimators whose ``fit`` is a task (relayed with "Fold f/K: "), and
    the end of each fold is reported.
    """
    folds = list(patient_folds(cohort, n_folds, seed) if folds is None else folds)
    codes, k = cohort.codes, len(cohort.classes or ())
    proba = {name: np.full((codes.size, k), np.nan) for name in factories}
    fold_of = np.full(codes.size, -1)
    records: list[dict[str, Any]] = []
    scale, n = 1000, len(folds)
    for f, (train, test) in enumerate(folds):
        fitted = {name: factory() for name, factory in factories.items()}
        tasks = [name for name, est in fitted.items() if _is_task(est)]
        for name, est in fitted.items():
            out = est.fit(cohort.take(train), codes[train])
            if inspect.isgenerator(out) and name not in tasks:
                raise TypeError(f"{type(est).__name__}.fit returned a task: write it as a generator function")
            if name in tasks:
                start, span = f + tasks.index(name) / len(tasks), 1 / len(tasks)
                yield from relay(out, lambda u, f=f, start=start, span=span: Progress(
                    int((start + span * u.fraction) * scale), n * scale, f"Fold {f + 1}/{n}: {u.message}"))
            proba[name][test] = as_proba(est.predict_proba(cohort.take(test)), test.size, k)
        fold_of[test] = f
        record = fold_record(cohort, f, train, test)
        extra = on_fold(f, train, test, fitted) if on_fold is not None else None
        record.update(extra or {})
        records.append(record)
        yield Progress((f + 1) * scale, n * scale, f"Fold {f + 1}/{n} done")
    classes = tuple(cohort.classes or ())
    return {name: CVPredictions(classes, cohort.labels, cohort.groups, p, fold_of, records)
            for name, p in proba.items()}



# --------------------------------------------------------------------------- metrics


def _rank_auc(pos: np.ndarray, score: np.ndarray) -> float:
    """One-vs-rest AUC by the Mann-Whitney rank formula (equals ``roc_auc_score``; fast)."""
    from scipy.stats import rankdata

    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((rankdata(score)[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _predict(p: np.ndarray, threshold: float) -> np.ndarray:
    """Class index per row: argmax, or ``P(class 1) >= threshold`` for two classes."""
    if p.shape[1] == 2:
        return (p[:, 1] >= threshold).astype(int)
    return np.argmax(p, axis=1)


def _confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def _weighted(per_class: np.ndarray, support: np.ndarray) -> float:
    return float((per_class * support).sum() / support.sum()) if support.sum() else float("nan")


def metric_function(name: str, classes: Sequence[Any], threshold: float = 0.5
                    ) -> Callable[[np.ndarray, np.ndarray], float]:
    """``fn(class indices, (n, K) probabilities) -> float`` for a metric name.

    Names: :data:`SUMMARY_METRICS`, :data:`BINARY_METRICS` (two classes only) and
    ``auc[<class>]`` (one-vs-rest AUC of one class). Undefined values (a class absent
    from a bootstrap resample) are NaN, which the bootstrap skips.
    """
    classes = list(classes)
    k = len(classes)
    names = {f"auc[{c}]": i for i, c in enumerate(classes)}

    def per_class_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.array([_rank_auc(y == i, p[:, i]) for i in range(k)])

    def metric(y: np.ndarray, p: np.ndarray) -> float:
        y = np.asarray(y, dtype=int)
        if name in names:
            return _rank_auc(y == names[name], p[:, names[name]])
        if name == "auc":
            return _rank_auc(y == 1, p[:, 1])
        if name.startswith("auc_"):
            aucs = per_class_auc(y, p)
            if name == "auc_macro":
                return float(np.mean(aucs)) if np.isfinite(aucs).all() else float("nan")
            support = np.bincount(y, minlength=k).astype(float)
            ok = np.isfinite(aucs)
            return _weighted(aucs[ok], support[ok])
        cm = _confusion(y, _predict(p, threshold), k)
        tp, support, called = np.diag(cm).astype(float), cm.sum(axis=1).astype(float), cm.sum(axis=0)
        recall = np.divide(tp, support, out=np.full(k, np.nan), where=support > 0)
        if name == "balanced_accuracy":
            return float(np.nanmean(recall)) if (support > 0).any() else float("nan")
        if name == "accuracy":
            return float(tp.sum() / support.sum()) if support.sum() else float("nan")
        if name == "sensitivity":
            return float(recall[1])
        if name == "specificity":
            return float(recall[0])
        if name == "precision_weighted":
            precision = np.divide(tp, called, out=np.zeros(k), where=called > 0)
            return _weighted(precision, support)
        if name == "f1":
            den1 = support[1] + called[1]
            return float(2 * tp[1] / den1) if den1 else float("nan")
        if name == "f1_weighted":
            den = support + called
            return _weighted(np.divide(2 * tp, den, out=np.zeros(k), where=den > 0), support)
        raise ValueError(f"unknown metric {name!r}")

    if name not in names and name not in SUMMARY_METRICS + BINARY_METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {list(SUMMARY_METRICS + BINARY_METRICS)} "
                         f"or {list(names)}")
    if name in BINARY_METRICS and k != 2:
        raise ValueError(f"{name} is defined for two classes, not {k}")
    return metric


def metric_names(classes: Sequence[Any]) -> tuple[str, ...]:
    """The metrics reported for these classes, in table order."""
    extra = BINARY_METRICS if len(classes) == 2 else ()
    return SUMMARY_METRICS + extra + tuple(f"auc[{c}]" for c in classes)


@dataclass
class CohortResult:
    """Metrics of pooled held-out predictions, each with its patient-bootstrap 95 % CI.

    Attributes
    ----------
    classes : tuple
    metrics : dict
        ``metrics[name] = {"value", "low", "high"}`` (see :func:`metric_names`).
    confusion : list of list of int
        Rows true class, columns predicted class (argmax, or the threshold if binary).
    counts : dict
        ``rows``, ``patients`` and ``prevalence`` per class (predictive values depend on it).
    predictions : CVPredictions
    config : dict
        ``n_boot``, ``seed``, ``threshold``.
    """

    classes: tuple[Any, ...]
    metrics: dict[str, dict[str, float]]
    confusion: list[list[int]]
    counts: dict[str, Any]
    predictions: CVPredictions
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``core.io.strict_json.plain``: NaN -> None) with the held-out rows."""
        from ..io.strict_json import plain

        p = self.predictions
        return plain({
            "classes": list(self.classes), "metrics": self.metrics, "confusion": self.confusion,
            "counts": self.counts, "config": self.config, "folds": p.folds,
            "rows": {"patient": p.groups, "label": p.labels, "fold": p.fold, "proba": p.proba},
        })

    def table(self, title: str = "") -> str:
        """Plain-text table: each metric with its 95 % CI, then the confusion matrix."""
        lines = [title] if title else []
        lines += [f"{'metric':<22} {'value':>6}  95 % CI", "-" * 44]
        for name, c in self.metrics.items():
            lines.append(f"{name:<22} {_fmt(c['value']):>6}  [{_fmt(c['low'])}, {_fmt(c['high'])}]")
        width = max(6, *(len(str(c)) for c in self.classes))
        lines.append("confusion (rows true, columns predicted):")
        lines.append(" " * (width + 1) + " ".join(f"{c!s:>{width}}" for c in self.classes))
        for c, row in zip(self.classes, self.confusion):
            lines.append(f"{c!s:>{width}} " + " ".join(f"{v:>{width}}" for v in row))
        lines.append(f"{self.counts['rows']} rows from {self.counts['patients']} patients; "
                     "95 % CI by patient bootstrap")
        return "\n".join(lines)


def _fmt(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.2f}"


def evaluate_predictions(pred: CVPredictions, n_boot: int = 1000, seed: int = 0, threshold: float = 0.5,
                         metrics: Sequence[str] | None = None) -> CohortResult:
    """Metrics and patient-bootstrap CIs of pooled held-out predictions.

    ``metrics`` (default :func:`metric_names`) narrows the set: each CI costs ``n_boot``
    evaluations, and a system that reports five metrics per subgroup need not pay for twelve.
    """
    codes, classes, k = pred.codes, pred.classes, len(pred.classes)
    table: dict[str, dict[str, float]] = {}
    for name in metric_names(classes) if metrics is None else metrics:
        value, low, high = bootstrap_ci(metric_function(name, classes, threshold), codes, pred.proba,
                                        pred.groups, n_boot=n_boot, seed=seed)
        table[name] = {"value": value, "low": low, "high": high}
    support = np.bincount(codes, minlength=k)
    counts = {"rows": int(codes.size), "patients": int(np.unique(pred.groups).size),
              "prevalence": {str(c): float(support[i] / codes.size) for i, c in enumerate(classes)}}
    confusion = _confusion(codes, _predict(pred.proba, threshold), k).tolist()
    return CohortResult(classes, table, confusion, counts, pred,
                        {"n_boot": n_boot, "seed": seed, "threshold": threshold})


def evaluate(cohort: Cohort, factory: Callable[[], Estimator], n_folds: int = 5, seed: int = 0,
             n_boot: int = 1000, threshold: float = 0.5) -> CohortResult:
    """:func:`cross_validate` then :func:`evaluate_predictions` (the same seed for both)."""
    return evaluate_predictions(cross_validate(cohort, factory, n_folds, seed), n_boot, seed, threshold)


# --------------------------------------------------------------------------- paired comparison


def paired_bootstrap(metric: str, labels: Any, proba_a: Any, proba_b: Any, groups: Any,
                     classes: Sequence[Any] | None = None, n_boot: int = 1000, seed: int = 0,
                     threshold: float = 0.5, alpha: float = 0.05) -> dict[str, float]:
    """Difference ``metric(A) - metric(B)`` on the same patients, with its CI and a two-sided p.

    Each resample draws patients once and scores both models on the same rows, so the
    patient-to-patient variation common to both cancels. The p-value is the bootstrap's
    two-sided tail, ``2 * min(P(d <= 0), P(d >= 0))`` capped at 1.
    """
    cohort = Cohort(np.zeros(np.asarray(labels).reshape(-1).size), labels, groups,
                    None if classes is None else tuple(classes))
    k = len(cohort.classes or ())
    a = as_proba(proba_a, cohort.labels.size, k)
    b = as_proba(proba_b, cohort.labels.size, k)
    fn = metric_function(metric, cohort.classes or (), threshold)

    def difference(y: np.ndarray, ab: np.ndarray) -> float:
        return fn(y, ab[:, 0]) - fn(y, ab[:, 1])

    point, values = bootstrap_distribution(difference, cohort.codes, np.stack([a, b], axis=1),
                                           cohort.groups, n_boot, seed)
    if not values.size:
        raise InsufficientDataError(f"no bootstrap resample of {np.unique(cohort.groups).size} patients "
                                    f"gave a defined {metric}; too few patients or labels")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2.0 * min(float(np.mean(values <= 0)), float(np.mean(values >= 0))))
    return {"metric": metric, "a": fn(cohort.codes, a), "b": fn(cohort.codes, b), "difference": point,
            "low": float(low), "high": float(high), "p": p, "n_boot": int(values.size)}


def compare(a: CVPredictions, b: CVPredictions, metric: str = "auc_macro", n_boot: int = 1000,
            seed: int = 0, threshold: float = 0.5) -> dict[str, float]:
    """:func:`paired_bootstrap` of two cross-validations of the same rows (same order)."""
    if a.classes != b.classes or not (np.array_equal(a.labels, b.labels) and np.array_equal(a.groups, b.groups)):
        raise ValueError("compare needs predictions of the same rows, labels, patients and classes")
    return paired_bootstrap(metric, a.labels, a.proba, b.proba, a.groups, a.classes, n_boot, seed, threshold)
