"""Patient-level classification metrics with honest confidence intervals.

Why a module of its own: the classification tasks (metastasis origin, stroke risk, CSVD
subtype) share three traps the literature fell into. Record- or lesion-level resampling
makes intervals too narrow when a patient contributes many rows, so :func:`bootstrap_ci`
resamples patients (cluster bootstrap). Thresholds tuned on the test set are optimistic,
so :func:`youden_threshold` is meant for the validation split and the threshold is then
frozen. Balanced test sets distort predictive values, so :func:`binary_metrics` always
reports the prevalence it saw.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "binary_metrics",
    "bootstrap_ci",
    "bootstrap_distribution",
    "group_members",
    "weighted_auc",
    "youden_threshold",
]


def _binary(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(y_score, dtype=float).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} rows but y_score has {s.size}")
    labels = np.unique(y)
    if not np.isin(labels, [0, 1]).all():
        raise ValueError(f"y_true must be binary 0/1 (or bool), got labels {labels.tolist()}")
    return y.astype(bool), s


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def binary_metrics(y_true: Any, y_score: Any, threshold: float = 0.5) -> dict[str, float]:
    """Threshold-based and ranking metrics of a binary classifier.

    A row is called positive when ``y_score >= threshold``. Undefined ratios (e.g.
    specificity without negatives, AUC with one class) are NaN rather than an error, so
    that a bootstrap or a small fold does not crash.

    Parameters
    ----------
    y_true : array of {0, 1} or bool
        Ground truth.
    y_score : array of float
        Score or probability of the positive class.
    threshold : float
        Decision threshold, ideally chosen on validation (:func:`youden_threshold`).

    Returns
    -------
    dict
        ``accuracy``, ``sensitivity``, ``specificity``, ``precision`` (PPV), ``npv``,
        ``f1``, ``auc``, ``n``, ``prevalence`` (predictive values depend on it), the
        confusion counts ``tp``, ``fp``, ``tn``, ``fn`` and ``threshold``.
    """
    y, s = _binary(y_true, y_score)
    pred = s >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    tn = int(np.sum(~pred & ~y))
    fn = int(np.sum(~pred & y))
    n = int(y.size)
    auc = float(roc_auc_score(y, s)) if 0 < y.sum() < n else float("nan")
    return {
        "accuracy": _div(tp + tn, n),
        "sensitivity": _div(tp, tp + fn),
        "specificity": _div(tn, tn + fp),
        "precision": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "auc": auc,
        "n": n,
        "prevalence": _div(int(y.sum()), n),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "threshold": float(threshold),
    }


def youden_threshold(y_true: Any, y_score: Any) -> float:
    """Threshold maximising Youden's J = sensitivity + specificity - 1.

    Compute it on the validation split and freeze it for the test split; chosen on the
    test split it overstates performance. The returned value is one of the observed scores,
    to be used as ``y_score >= threshold`` (the convention of :func:`binary_metrics`); on a
    tie the highest threshold (fewest positives) wins.
    """
    y, s = _binary(y_true, y_score)
    if not 0 < y.sum() < y.size:
        raise ValueError("youden_threshold needs both classes in y_true")
    fpr, tpr, thr = roc_curve(y, s)
    finite = np.isfinite(thr)  # sklearn's first threshold is +inf (nothing positive)
    j = (tpr - fpr)[finite]
    return float(thr[finite][int(np.argmax(j))])


def group_members(groups: Any) -> list[np.ndarray]:
    """Row indices of each group (sorted group order); the unit a patient bootstrap draws."""
    g = np.asarray(groups).reshape(-1)
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(inverse.max() + 2))
    return [order[bounds[k]:bounds[k + 1]] for k in range(len(bounds) - 1)]


def bootstrap_distribution(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    y_true: Any,
    y_score: Any,
    groups: Any,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    require_both_classes: bool = True,
) -> tuple[float, np.ndarray]:
    """Point estimate and the usable values of a cluster (patient) bootstrap.

    The resampling of :func:`bootstrap_ci` (see there), exposed so that callers that need
    more than a percentile interval (a paired difference and its p-value,
    ``core.metrics.cohort.paired_bootstrap``) draw the same resamples for the same seed.
    Skipped resamples (one class only when ``require_both_classes``, or a non-finite
    metric) are left out of the returned values.
    """
    y = np.asarray(y_true)
    s = np.asarray(y_score)
    g = np.asarray(groups).reshape(-1)
    if not (y.shape[0] == s.shape[0] == g.shape[0]):
        raise ValueError("y_true, y_score and groups must have the same number of rows")
    if g.size == 0:
        raise ValueError("bootstrap_ci needs at least one row")
    point = float(metric_fn(y, s))
    members = group_members(g)
    n_groups = len(members)
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(n_boot):
        pick = rng.integers(0, n_groups, size=n_groups)
        idx = np.concatenate([members[k] for k in pick])
        yb = y[idx]
        if require_both_classes and np.unique(yb).size < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined-metric warnings: handled below
            v = float(metric_fn(yb, s[idx]))
        if np.isfinite(v):
            values.append(v)
    return point, np.asarray(values, dtype=float)


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    y_true: Any,
    y_score: Any,
    groups: Any,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    require_both_classes: bool = True,
) -> tuple[float, float, float]:
    """Point estimate and percentile CI from a cluster (patient) bootstrap.

    Each resample draws as many GROUPS as there are, with replacement, and keeps all rows
    of every drawn group (a group drawn twice contributes its rows twice). Why groups and
    not rows: rows of one patient (several lesions, scans or slices) are correlated, and
    resampling them as if independent gives intervals that are too narrow; duplicating a
    data set's rows would shrink a row-bootstrap interval, but leaves this one unchanged.
    Pass ``groups=np.arange(n)`` for an ordinary row bootstrap.

    Resamples holding a single class are skipped when ``require_both_classes`` (AUC,
    sensitivity and specificity are undefined there), as are resamples whose metric is
    not finite; the interval comes from the remaining ones, and a warning is issued when
    more than half were skipped.

    Parameters
    ----------
    metric_fn : callable
        ``metric_fn(y_true, y_score) -> float``, e.g. ``sklearn.metrics.roc_auc_score`` or
        ``lambda y, s: binary_metrics(y, s, t)["sensitivity"]``.
    y_true, y_score : array
        Rows to score; ``y_score`` may be 2-D (rows first) for multiclass metrics.
    groups : array
        Patient id of each row.
    n_boot : int
        Number of resamples.
    seed : int
        Seed of :func:`numpy.random.default_rng`, for reproducible intervals.
    alpha : float
        The interval covers ``1 - alpha``.
    require_both_classes : bool
        Skip resamples where ``y_true`` has fewer than two distinct values.

    Returns
    -------
    (point, low, high) : tuple of float
        ``point`` is ``metric_fn`` on all rows; ``low``/``high`` are NaN when no resample
        was usable.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    point, values = bootstrap_distribution(
        metric_fn, y_true, y_score, groups, n_boot, seed, require_both_classes=require_both_classes)
    if values.size < n_boot / 2:
        warnings.warn(
            f"bootstrap_ci: only {values.size} of {n_boot} resamples were usable; "
            "the interval is unreliable (too few patients or one class is rare)",
            RuntimeWarning,
            stacklevel=2,
        )
    if not values.size:
        return point, float("nan"), float("nan")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return point, float(low), float(high)


def weighted_auc(
    y_true_multiclass: Any, proba: Any, labels: Sequence[Any]
) -> float:
    """One-vs-rest AUC averaged with weights equal to each class's prevalence.

    The CSVD subtype study reports this average; it equals
    ``roc_auc_score(y, proba, average='weighted', multi_class='ovr', labels=labels)`` but
    does not require rows of ``proba`` to sum to 1 (scores from separate heads are fine).
    Classes absent from ``y_true`` have weight 0 and are skipped; NaN when fewer than two
    classes are present.

    Parameters
    ----------
    y_true_multiclass : array, shape (n,)
        Class label of each row.
    proba : array, shape (n, n_classes)
        Score of each class; column ``k`` belongs to ``labels[k]``.
    labels : sequence
        The classes, in the column order of ``proba``.
    """
    y = np.asarray(y_true_multiclass).reshape(-1)
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape != (y.size, len(labels)):
        raise ValueError(f"proba must have shape ({y.size}, {len(labels)}), got {p.shape}")
    unknown = set(np.unique(y).tolist()) - set(np.asarray(labels).tolist())
    if unknown:
        raise ValueError(f"y_true holds labels not in `labels`: {sorted(unknown)}")
    total, weight = 0.0, 0
    for k, lab in enumerate(labels):
        pos = y == lab
        npos = int(pos.sum())
        if npos == 0 or npos == y.size:
            continue
        total += npos * float(roc_auc_score(pos, p[:, k]))
        weight += npos
    if weight == 0:
        return float("nan")
    return total / weight
