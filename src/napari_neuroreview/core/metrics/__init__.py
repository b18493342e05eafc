"""Evaluation metrics: lesion-level detection (microbleeds) and patient-level classification.

Pure numpy/scipy/scikit-learn functions, no Qt or napari, so that the CLI, notebooks and
the widgets report the same numbers. :mod:`.detection` matches detections to lesions and
gives VALDO-style and FROC metrics; :mod:`.classification` gives binary metrics, a
Youden threshold, patient (cluster) bootstrap CIs and prevalence-weighted AUC.
"""

from napari_neuroreview.core.metrics.classification import (
    binary_metrics,
    bootstrap_ci,
    weighted_auc,
    youden_threshold,
)
from napari_neuroreview.core.metrics.detection import (
    DEFAULT_FP_RATES,
    CaseResult,
    Matching,
    evaluate_case,
    froc,
    instance_overlap,
    match_detections,
    operating_point,
    summarize,
)

__all__ = [
    "DEFAULT_FP_RATES",
    "CaseResult",
    "Matching",
    "binary_metrics",
    "bootstrap_ci",
    "evaluate_case",
    "froc",
    "instance_overlap",
    "match_detections",
    "operating_point",
    "summarize",
    "weighted_auc",
    "youden_threshold",
]
