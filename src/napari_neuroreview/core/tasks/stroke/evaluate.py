"""Scoring a stroke risk model once on its split's test subjects (issue 13 item 4).

:func:`score_binary` is the one scoring of a row of scores (``benchmarks/stroke.py`` calls it
per row): ROC-AUC, PR-AUC (average precision, beside the prevalence it is to be read
against: a useless score's PR-AUC is the prevalence), and, at a threshold frozen beforehand
(on validation), balanced accuracy, sensitivity and specificity; each with a 95 % subject
bootstrap interval (``core.metrics.classification.bootstrap_ci``, one row per subject). At
the cohort's true prevalence: no rebalancing of the test set (the study's balanced test sets
inflate predictive values).

:func:`evaluate_test` scores a saved ``stroke-risk`` version on the test part of the split
its card names, per head, each at its own frozen threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.metrics import average_precision_score

from ...errors import InsufficientDataError
from ...metrics.classification import bootstrap_ci
from ...metrics.cohort import metric_function
from ...models.stroke_risk import HEADS
from ...progress import TaskGenerator
from .downstream import (
    RiskModel,
    check_same_cohort,
    downstream_subjects,
    predict_logits,
)
from .labels import read_stroke_labels, read_stroke_table
from .pretrain import load_images

__all__ = ["METRICS", "evaluate_test", "score_binary"]

#: The metrics of :func:`score_binary`, each ``{"value", "ci95": [low, high]}``.
METRICS: tuple[str, ...] = ("roc_auc", "pr_auc", "balanced_accuracy", "sensitivity", "specificity")


def _binary(name: str, threshold: float) -> Callable[[np.ndarray, np.ndarray], float]:
    """``core.metrics.cohort.metric_function`` (the project's one) on a row of P(stroke) instead of (n, 2)."""
    fn = metric_function(name, (0, 1), threshold)
    return lambda y, s: fn(y, np.column_stack([1.0 - s, s]))


def score_binary(labels: Any, scores: Any, threshold: float, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """(labels 0/1, scores, a frozen threshold) -> ``{"n", "positives", "prevalence", "threshold", METRICS...}``.

    A row is called positive when ``score >= threshold``. Each metric of :data:`METRICS` is
    ``{"value", "ci95": [low, high]}`` from ``n_boot`` subject bootstrap resamples (``seed``);
    both classes are needed (one sentence otherwise).
    """
    y = np.asarray(labels).astype(int).reshape(-1)
    s = np.asarray(scores, float).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not 0 < y.sum() < y.size:
        raise InsufficientDataError(f"scoring needs subjects with and without a stroke (have {y.size} subjects, "
                                    f"{int(y.sum())} strokes)")
    functions: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "roc_auc": _binary("auc", threshold),
        "pr_auc": lambda a, b: float(average_precision_score(a, b)),  # the one metric cohort.py lacks
        **{k: _binary(k, threshold) for k in METRICS[2:]}}
    out: dict[str, Any] = {"n": int(y.size), "positives": int(y.sum()), "prevalence": float(y.mean()),
                           "threshold": float(threshold)}
    for name, fn in functions.items():
        point, low, high = bootstrap_ci(fn, y, s, np.arange(y.size), n_boot=n_boot, seed=seed)
        out[name] = {"value": point, "ci95": [low, high]}
    return out


def evaluate_test(cohort_dir: str | Path, model: RiskModel, split: dict[str, Any], n_boot: int = 1000,
                  seed: int = 0) -> TaskGenerator[dict[str, Any]]:
    """Score every head of ``model`` on the split's labelled test subjects (their scans read here, once).

    Returns ``{"model": {"name", "version"}, "mode", "test": {"subjects", "strokes", "prevalence"},
    "heads": {head: score_binary(...)}}``: no subject ID, no path.
    """
    card = model.card
    check_same_cohort(card, cohort_dir)
    labels = read_stroke_labels(cohort_dir)
    rows = {r["subject"]: r for r in read_stroke_table(cohort_dir)}
    test = downstream_subjects(split, labels)["test"]
    if not test:
        raise InsufficientDataError(f"the split {card.config['split']['file']} has no labelled test subject")
    images = yield from load_images(cohort_dir, test)
    table = model.encoding.encode([rows[s] for s in test])
    y = np.array([labels[s] for s in test])
    logits = predict_logits(model.net, images, table)
    thresholds = card.config["thresholds"]
    heads = {h: score_binary(y, expit(logits[h].astype(np.float64)), thresholds[h], n_boot, seed)
             for h in HEADS}
    return {"model": {"name": card.name, "version": card.version}, "mode": card.config.get("mode"),
            "pretrained": card.config.get("pretrained"),
            "test": {"subjects": len(test), "strokes": int(y.sum()), "prevalence": float(y.mean())},
            "bootstrap": {"resamples": n_boot, "seed": seed, "unit": "subject"}, "heads": heads}
