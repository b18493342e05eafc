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
and prevalence-weighted AUC, balanced accuracy, weighted precision and F1, confusion
matrix); binary ones add AUC, accuracy, sensitivity, specificity and F1 of class 1 at a
threshold (as :func:`core.metrics.classification.binary_metrics`). Hierarchical
targets (:class:`Node`, a tree of binary decisions) are evaluated per node on the
patients that reach it, and as leaves whose probabilities are products along the path.

The estimator protocol: ``fit(items, labels)`` with ``labels`` the class *indices*
(column ``k`` of the probabilities is ``classes[k]``), then ``predict_proba(items)`` of
shape (n, K), or (n,) for P(class 1) in a binary task. ``items`` is whatever the system
uses for a row (a feature vector, a scan path, a dataclass); the harness only indexes it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import InsufficientDataError
from .classification import bootstrap_ci, bootstrap_distribution

__all__ = [
    "Cohort",
    "CohortResult",
    "CVPredictions",
    "Estimator",
    "HierarchyPredictions",
    "HierarchyResult",
    "Node",
    "compare",
    "cross_validate",
    "cross_validate_hierarchy",
    "evaluate",
    "evaluate_hierarchy",
    "evaluate_predictions",
    "metric_function",
    "paired_bootstrap",
    "patient_folds",
]

#: Metrics of every target (binary targets add :data:`BINARY_METRICS`, of class 1 vs class 0).
SUMMARY_METRICS: tuple[str, ...] = (
    "auc_macro", "auc_weighted", "balanced_accuracy", "precision_weighted", "f1_weighted")
BINARY_METRICS: tuple[str, ...] = ("auc", "accuracy", "sensitivity", "specificity", "f1")


class Estimator(Protocol):
    """What the harness fits and scores; see the module docstring."""

    def fit(self, items: Sequence[Any], labels: np.ndarray) -> None: ...

    def predict_proba(self, items: Sequence[Any]) -> np.ndarray: ...


@dataclass(frozen=True)
class Cohort:
    """The rows to evaluate: one item, label and patient per row.

    Attributes
    ----------
    items : sequence or numpy.ndarray
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
        """The items of ``rows`` (an array is indexed, any other sequence listed)."""
        if isinstance(self.items, np.ndarray):
            return self.items[rows]
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
        Per fold: ``train_patients`` and ``test_patients``.
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


def _as_proba(raw: Any, n_rows: int, n_classes: int) -> np.ndarray:
    """(n, K) probabilities from an estimator's output; (n,) means P(class 1) of a binary task."""
    p = np.asarray(raw, dtype=float)
    if p.ndim == 1 and n_classes == 2:
        p = np.column_stack([1.0 - p, p])
    if p.shape != (n_rows, n_classes):
        raise ValueError(f"predict_proba returned shape {np.asarray(raw).shape}, expected ({n_rows}, {n_classes})")
    return p


def _fold_record(cohort: Cohort, train: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    return {"train_patients": sorted(set(cohort.groups[train].tolist())),
            "test_patients": sorted(set(cohort.groups[test].tolist()))}


def cross_validate(cohort: Cohort, factory: Callable[[], Estimator], n_folds: int = 5, seed: int = 0
                   ) -> CVPredictions:
    """Fit a fresh estimator per fold on the training patients; pool the held-out probabilities.

    ``factory()`` is called once per fold, so nothing fitted in one fold (or on the whole
    cohort) reaches another fold's test patients.
    """
    folds = patient_folds(cohort, n_folds, seed)
    codes, k = cohort.codes, len(cohort.classes or ())
    proba = np.full((codes.size, k), np.nan)
    fold_of = np.full(codes.size, -1)
    records = []
    for f, (train, test) in enumerate(folds):
        model = factory()
        model.fit(cohort.take(train), codes[train])
        proba[test] = _as_proba(model.predict_proba(cohort.take(test)), test.size, k)
        fold_of[test] = f
        records.append(_fold_record(cohort, train, test))
    return CVPredictions(tuple(cohort.classes or ()), cohort.labels, cohort.groups, proba, fold_of, records)


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
        lines.append(" " * (width + 1) + " ".join(f"{str(c):>{width}}" for c in self.classes))
        for c, row in zip(self.classes, self.confusion):
            lines.append(f"{str(c):>{width}} " + " ".join(f"{v:>{width}}" for v in row))
        lines.append(f"{self.counts['rows']} rows from {self.counts['patients']} patients; "
                     "95 % CI by patient bootstrap")
        return "\n".join(lines)


def _fmt(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.2f}"


def evaluate_predictions(pred: CVPredictions, n_boot: int = 1000, seed: int = 0, threshold: float = 0.5
                         ) -> CohortResult:
    """Metrics and patient-bootstrap CIs of pooled held-out predictions."""
    codes, classes, k = pred.codes, pred.classes, len(pred.classes)
    metrics: dict[str, dict[str, float]] = {}
    for name in metric_names(classes):
        value, low, high = bootstrap_ci(metric_function(name, classes, threshold), codes, pred.proba,
                                        pred.groups, n_boot=n_boot, seed=seed)
        metrics[name] = {"value": value, "low": low, "high": high}
    support = np.bincount(codes, minlength=k)
    counts = {"rows": int(codes.size), "patients": int(np.unique(pred.groups).size),
              "prevalence": {str(c): float(support[i] / codes.size) for i, c in enumerate(classes)}}
    confusion = _confusion(codes, _predict(pred.proba, threshold), k).tolist()
    return CohortResult(classes, metrics, confusion, counts, pred,
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
    a = _as_proba(proba_a, cohort.labels.size, k)
    b = _as_proba(proba_b, cohort.labels.size, k)
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


# --------------------------------------------------------------------------- hierarchical targets


@dataclass(frozen=True)
class Node:
    """A binary decision of a hierarchical target: ``negative`` or ``positive`` branch.

    Each branch is a leaf (a class label) or another :class:`Node`. A row *reaches* a
    node when its class is one of the node's leaves; the node's estimator learns
    P(positive branch) from the training rows that reach it.
    """

    name: str
    negative: Node | Any
    positive: Node | Any

    def leaves(self) -> tuple[Any, ...]:
        """Class labels under this node, negative branch first."""
        return tuple(_leaves(self.negative) + _leaves(self.positive))

    def nodes(self) -> tuple[Node, ...]:
        """This node and every node below it, depth first."""
        out: tuple[Node, ...] = (self,)
        for child in (self.negative, self.positive):
            if isinstance(child, Node):
                out += child.nodes()
        return out


def _leaves(branch: Node | Any) -> list[Any]:
    return list(branch.leaves()) if isinstance(branch, Node) else [branch]


@dataclass
class HierarchyPredictions:
    """Held-out P(positive branch) per node for every row, and leaf probabilities (products)."""

    tree: Node
    leaves: CVPredictions
    node_proba: dict[str, np.ndarray]


def _leaf_products(tree: Node, node_proba: dict[str, np.ndarray], n: int) -> np.ndarray:
    """(n, K) leaf probabilities: the product of the branch probabilities on each leaf's path."""
    columns: list[np.ndarray] = []

    def walk(branch: Node | Any, reach: np.ndarray) -> None:
        if not isinstance(branch, Node):
            columns.append(reach)
            return
        p = node_proba[branch.name]
        walk(branch.negative, reach * (1.0 - p))
        walk(branch.positive, reach * p)

    walk(tree, np.ones(n))
    return np.column_stack(columns)


def cross_validate_hierarchy(cohort: Cohort, tree: Node, factory: Callable[[str], Estimator],
                             n_folds: int = 5, seed: int = 0) -> HierarchyPredictions:
    """Per fold, one fresh binary estimator per node (``factory(node.name)``), fitted on the
    training rows that reach that node; every test row gets every node's probability.

    Folds are stratified by leaf class, so each node's training side sees each leaf.
    """
    leaves = tree.leaves()
    names = [node.name for node in tree.nodes()]
    if len(set(names)) != len(names) or len(set(leaves)) != len(leaves):
        raise ValueError("node names and leaf labels must be unique in the tree")
    cohort = Cohort(cohort.items, cohort.labels, cohort.groups, leaves)
    folds = patient_folds(cohort, n_folds, seed)
    n = cohort.labels.size
    node_proba = {name: np.full(n, np.nan) for name in names}
    fold_of = np.full(n, -1)
    records = []
    for f, (train, test) in enumerate(folds):
        for node in tree.nodes():
            reach = train[np.isin(cohort.labels[train], node.leaves())]
            y = np.isin(cohort.labels[reach], _leaves(node.positive)).astype(int)
            if np.unique(y).size < 2:
                raise InsufficientDataError(f"node {node.name!r} has training rows of one branch only in fold "
                                            f"{f + 1} of {n_folds}; each branch needs patients in every fold")
            model = factory(node.name)
            model.fit(cohort.take(reach), y)
            node_proba[node.name][test] = _as_proba(model.predict_proba(cohort.take(test)), test.size, 2)[:, 1]
        fold_of[test] = f
        records.append(_fold_record(cohort, train, test))
    proba = _leaf_products(tree, node_proba, n)
    leaf_pred = CVPredictions(leaves, cohort.labels, cohort.groups, proba, fold_of, records)
    return HierarchyPredictions(tree, leaf_pred, node_proba)


@dataclass
class HierarchyResult:
    """Leaf-level metrics and, per node, binary metrics on the rows that reach it."""

    leaves: CohortResult
    nodes: dict[str, CohortResult]

    def to_json(self) -> dict[str, Any]:
        return {"leaves": self.leaves.to_json(), "nodes": {k: v.to_json() for k, v in self.nodes.items()}}

    def table(self) -> str:
        parts = [self.leaves.table("leaves")]
        parts += [v.table(f"node {k}") for k, v in self.nodes.items()]
        return "\n\n".join(parts)


def evaluate_hierarchy(pred: HierarchyPredictions, n_boot: int = 1000, seed: int = 0,
                       threshold: float = 0.5) -> HierarchyResult:
    """Leaves as a multi-class target; each node on its own patients (negative vs positive)."""
    leaves = pred.leaves
    nodes: dict[str, CohortResult] = {}
    for node in pred.tree.nodes():
        reach = np.isin(leaves.labels, node.leaves())
        y = np.where(np.isin(leaves.labels[reach], _leaves(node.positive)), "positive", "negative")
        p = pred.node_proba[node.name][reach]
        sub = CVPredictions(("negative", "positive"), y, leaves.groups[reach], np.column_stack([1 - p, p]),
                            leaves.fold[reach], leaves.folds)
        nodes[node.name] = evaluate_predictions(sub, n_boot, seed, threshold)
    return HierarchyResult(evaluate_predictions(leaves, n_boot, seed, threshold), nodes)
