"""Lesion-level detection metrics for cerebral microbleeds (CMBs).

Why lesion-level: a CMB is a few voxels, so voxel Dice over a whole brain says little
about whether a reader would have been shown each bleed. VALDO 2021 therefore scores
detection F1, count difference, Dice and volume difference, and the published systems
report sensitivity at a number of false positives per subject. This module gives all of
them from one matching step:

1. :func:`match_detections` pairs detections with true CMBs one-to-one (optimal
   assignment, not greedy), a pair being admissible when the detection's centre voxel
   lies inside the CMB's instance mask or its centre is within ``max_distance_mm``.
2. :func:`evaluate_case` turns one subject's matching into a :class:`CaseResult`
   (counts, per-CMB IoU/Dice, scores of true and false positives, volumes).
3. :func:`summarize`, :func:`froc` and :func:`operating_point` pool subjects.

Every figure names its averaging unit in its key (``_pooled``, ``_per_cmb``,
``_per_subject``), because pooled, per-lesion and per-subject means of the same quantity
differ. What the references average (``shared/REFERENCES.md``; Sudre et al., "Where is
VALDO?", Med Image Anal 2024, and the VALDO 2021 evaluation code):

- VALDO's code averages Dice per lesion over the matched lesions (``dice_per_cmb_mean``
  here), F1 per subject (``f1_per_subject_mean``/``_median``) and the absolute count
  difference per subject (``abs_count_difference_per_subject_mean``). The Dice of a
  subject's whole predicted mask against its whole true mask
  (``dice_per_subject_mean``) is not VALDO's figure.
- The published SWI system reports IoU 0.523 ± 0.319 and Dice 0.627 ± 0.296 as means
  per lesion or per subject (REFERENCES.md: pooled over voxels they would not agree with
  each other); compare them with ``iou_per_cmb_mean``/``dice_per_cmb_mean`` and the
  per-subject figures, never with one pooled number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from napari_neuroreview.core.errors import GeometryError

__all__ = [
    "AVERAGING",
    "CaseResult",
    "Matching",
    "evaluate_case",
    "froc",
    "instance_overlap",
    "match_detections",
    "operating_point",
    "summarize",
]

DEFAULT_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class Matching:
    """A one-to-one matching of detections to true lesions.

    Parameters
    ----------
    pairs : list of (int, int)
        ``(pred_idx, truth_idx)`` row indices, sorted by ``pred_idx``.
    unmatched_pred : list of int
        Detections matched to nothing: false positives.
    unmatched_truth : list of int
        True lesions matched to nothing: false negatives.
    distances : list of float
        Centre-to-centre distance in mm of each pair, aligned with ``pairs`` (it may
        exceed ``max_distance_mm`` for a pair admitted by the instance mask).
    """

    pairs: list[tuple[int, int]]
    unmatched_pred: list[int]
    unmatched_truth: list[int]
    distances: list[float]


@dataclass
class CaseResult:
    """Detection outcome of one subject; :func:`summarize` and :func:`froc` pool these.

    Parameters
    ----------
    n_truth, n_pred : int
        Number of true CMBs and of detections.
    tp, fp, fn : int
        Matched detections, unmatched detections, unmatched true CMBs.
    iou, dice : list of float
        Overlap of each matched pair whose instance masks are both known (per matched CMB).
    tp_scores, fp_scores : list of float
        Detection scores of the true and false positives, kept so that the FROC curve can
        be swept without re-matching.
    pred_volume_mm3, truth_volume_mm3 : float
        Total predicted and true CMB volume (NaN when the masks were not given).
    case_dice, case_iou : float
        Dice and IoU of the subject's whole predicted mask (every detection) against its
        whole true mask (every CMB): voxels pooled per subject, so missed CMBs and false
        positives weigh by their size. NaN when masks are missing or both are empty.
    matching : Matching or None
        The matching itself, for showing FPs and FNs to a reviewer.
    """

    n_truth: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    iou: list[float] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    tp_scores: list[float] = field(default_factory=list)
    fp_scores: list[float] = field(default_factory=list)
    pred_volume_mm3: float = float("nan")
    truth_volume_mm3: float = float("nan")
    case_dice: float = float("nan")
    case_iou: float = float("nan")
    matching: Matching | None = None

    def __post_init__(self) -> None:
        # Inconsistent counts would silently corrupt every pooled metric: fail early.
        if self.tp + self.fp != self.n_pred or self.tp + self.fn != self.n_truth:
            raise ValueError(
                f"inconsistent counts: tp={self.tp} fp={self.fp} fn={self.fn} "
                f"n_pred={self.n_pred} n_truth={self.n_truth}"
            )
        if len(self.tp_scores) != self.tp or len(self.fp_scores) != self.fp:
            raise ValueError("tp_scores/fp_scores must hold one score per TP/FP")
        if len(self.iou) != len(self.dice) or len(self.dice) > self.tp:
            raise ValueError("iou and dice must be aligned and hold at most one value per TP")


def _centres(arr: Any, name: str) -> np.ndarray:
    a = np.asarray(arr, dtype=float)
    if a.size == 0:
        return a.reshape(0, 3)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), got {a.shape}")
    return a


def _ids(ids: Sequence[int] | np.ndarray | None, n: int, name: str) -> np.ndarray:
    if ids is None:
        return np.arange(1, n + 1, dtype=np.int64)  # label k+1 for row k: the usual labelling
    out = np.asarray(ids, dtype=np.int64).reshape(-1)
    if out.shape[0] != n:
        raise ValueError(f"{name} has {out.shape[0]} ids for {n} rows")
    return out


def _labels_at(labels: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """Label under each voxel index; 0 (background) outside the grid."""
    vox = np.asarray(voxels, dtype=np.int64).reshape(-1, labels.ndim)
    inside = np.all((vox >= 0) & (vox < np.asarray(labels.shape)), axis=1)
    out = np.zeros(vox.shape[0], dtype=np.int64)
    if inside.any():
        out[inside] = labels[tuple(vox[inside].T)]
    return out


def match_detections(
    pred_centres_mm: np.ndarray,
    truth_centres_mm: np.ndarray,
    truth_instances: np.ndarray | None = None,
    pred_voxels: np.ndarray | None = None,
    max_distance_mm: float = 5.0,
    *,
    truth_ids: Sequence[int] | np.ndarray | None = None,
) -> Matching:
    """Match detections to true CMBs one-to-one, optimally.

    A pair is admissible when the detection's centre voxel lies inside the CMB's instance
    mask (both ``truth_instances`` and ``pred_voxels`` given), or when the centres are at
    most ``max_distance_mm`` apart. The mask criterion exists because a large, blooming
    CMB can be hit off its centre; the distance criterion covers annotations that are
    points only. Among admissible pairs the matching first maximises the number of matches
    and then minimises the summed distance (:func:`scipy.optimize.linear_sum_assignment`
    with inadmissible pairs given a cost larger than any admissible matching). Greedy
    nearest-first matching can lose a match that the optimal one keeps.

    Parameters
    ----------
    pred_centres_mm : ndarray, shape (N, 3)
        Detection centres in mm (world or voxel-times-spacing, the same frame as truth).
    truth_centres_mm : ndarray, shape (M, 3)
        True CMB centres in mm.
    truth_instances : ndarray of int, optional
        Label image of the true CMBs.
    pred_voxels : ndarray of int, shape (N, 3), optional
        Voxel index of each detection's centre in the grid of ``truth_instances``;
        indices outside the grid count as background.
    max_distance_mm : float
        Largest centre distance that admits a pair without the mask.
    truth_ids : sequence of int, optional
        Label of each truth row in ``truth_instances`` (default ``1..M``).

    Returns
    -------
    Matching
    """
    pred = _centres(pred_centres_mm, "pred_centres_mm")
    truth = _centres(truth_centres_mm, "truth_centres_mm")
    n, m = pred.shape[0], truth.shape[0]
    if n == 0 or m == 0:
        return Matching([], list(range(n)), list(range(m)), [])
    dist = cdist(pred, truth)
    admissible = dist <= max_distance_mm
    if truth_instances is not None and pred_voxels is not None:
        tids = _ids(truth_ids, m, "truth_ids")
        labels = np.asarray(truth_instances)
        if np.asarray(pred_voxels).reshape(-1, labels.ndim).shape[0] != n:
            raise ValueError("pred_voxels must have one row per detection")
        under = _labels_at(labels, np.asarray(pred_voxels))
        admissible |= (under[:, None] == tids[None, :]) & (tids[None, :] != 0)
    if not admissible.any():
        return Matching([], list(range(n)), list(range(m)), [])
    # Any single forbidden pair costs more than the worst complete admissible matching, so
    # the optimum never trades a match for a shorter distance.
    big = (float(dist[admissible].max()) + 1.0) * (min(n, m) + 1)
    cost = np.where(admissible, dist, big)
    rows, cols = linear_sum_assignment(cost)
    keep = admissible[rows, cols]
    rows, cols = rows[keep], cols[keep]
    order = np.argsort(rows)
    rows, cols = rows[order], cols[order]
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols)]
    return Matching(
        pairs=pairs,
        unmatched_pred=sorted(set(range(n)) - {r for r, _ in pairs}),
        unmatched_truth=sorted(set(range(m)) - {c for _, c in pairs}),
        distances=[float(dist[r, c]) for r, c in pairs],
    )


def instance_overlap(pred_mask: np.ndarray, truth_mask: np.ndarray) -> tuple[float, float]:
    """IoU and Dice of two binary masks of the same shape.

    Returns ``(nan, nan)`` when both masks are empty: there is no lesion to measure, and
    calling that a perfect 1.0 would inflate means.
    """
    p = np.asarray(pred_mask, dtype=bool)
    t = np.asarray(truth_mask, dtype=bool)
    if p.shape != t.shape:
        raise GeometryError(f"masks differ in shape: {p.shape} vs {t.shape}")
    inter = int(np.count_nonzero(p & t))
    sp, st = int(np.count_nonzero(p)), int(np.count_nonzero(t))
    if sp + st == 0:
        return float("nan"), float("nan")
    return inter / (sp + st - inter), 2.0 * inter / (sp + st)


def _boxes(labels: np.ndarray, ids: np.ndarray) -> list[tuple[slice, ...] | None]:
    """Bounding box of each id (None when absent), so overlaps are computed on crops."""
    lab = np.asarray(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"instance arrays must be integer labels, got {lab.dtype}")
    top = int(ids.max()) if ids.size else 0
    objs = ndimage.find_objects(np.where(lab > top, 0, lab).astype(np.int64, copy=False), top)
    return [objs[i - 1] if 0 < i <= len(objs) else None for i in ids]


def _pair_overlap(
    pl: np.ndarray, pid: int, pbox: tuple[slice, ...] | None,
    tl: np.ndarray, tid: int, tbox: tuple[slice, ...] | None,
) -> tuple[float, float]:
    if pbox is None and tbox is None:
        return float("nan"), float("nan")
    if pbox is None or tbox is None:
        return 0.0, 0.0  # one side has no voxels: no overlap
    box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(pbox, tbox))
    return instance_overlap(pl[box] == pid, tl[box] == tid)


def evaluate_case(
    pred_centres_mm: np.ndarray,
    pred_scores: np.ndarray | Sequence[float] | None,
    truth_centres_mm: np.ndarray,
    pred_instances: np.ndarray | None = None,
    pred_ids: Sequence[int] | np.ndarray | None = None,
    truth_instances: np.ndarray | None = None,
    truth_ids: Sequence[int] | np.ndarray | None = None,
    voxel_volume_mm3: float = 1.0,
    max_distance_mm: float = 5.0,
    pred_voxels: np.ndarray | None = None,
) -> CaseResult:
    """Score one subject's detections against its true CMBs.

    Parameters
    ----------
    pred_centres_mm : ndarray, shape (N, 3)
        Detection centres in mm.
    pred_scores : array of float, shape (N,), or None
        Detection confidences (all 1.0 when None); they order the FROC sweep.
    truth_centres_mm : ndarray, shape (M, 3)
        True CMB centres in mm.
    pred_instances : ndarray of int, optional
        Label image of the detections; with ``truth_instances`` it gives IoU/Dice
        and volumes.
    pred_ids : sequence of int, optional
        Label of each detection row in ``pred_instances`` (default ``1..N``).
    truth_instances : ndarray of int, optional
        Label image of the true CMBs, same grid as ``pred_instances``.
    truth_ids : sequence of int, optional
        Label of each truth row in ``truth_instances`` (default ``1..M``).
    voxel_volume_mm3 : float
        Volume of one voxel, for the volume difference.
    max_distance_mm : float
        See :func:`match_detections`.
    pred_voxels : ndarray of int, shape (N, 3), optional
        Centre voxel of each detection; enables matching through the truth mask.

    Returns
    -------
    CaseResult
    """
    pred = _centres(pred_centres_mm, "pred_centres_mm")
    truth = _centres(truth_centres_mm, "truth_centres_mm")
    n, m = pred.shape[0], truth.shape[0]
    scores = np.ones(n) if pred_scores is None else np.asarray(pred_scores, float).reshape(-1)
    if scores.shape[0] != n:
        raise ValueError(f"{scores.shape[0]} scores for {n} detections")
    pids = _ids(pred_ids, n, "pred_ids")
    tids = _ids(truth_ids, m, "truth_ids")
    if pred_instances is not None and truth_instances is not None:
        if np.shape(pred_instances) != np.shape(truth_instances):
            raise GeometryError(
                f"predicted and true instance images differ in shape: "
                f"{np.shape(pred_instances)} vs {np.shape(truth_instances)}"
            )
    match = match_detections(
        pred, truth, truth_instances, pred_voxels, max_distance_mm, truth_ids=tids
    )
    iou: list[float] = []
    dice: list[float] = []
    pvol = tvol = cdice = ciou = float("nan")
    if pred_instances is not None:
        pl = np.asarray(pred_instances)
        pmask = np.isin(pl, pids[pids != 0])
        pvol = float(np.count_nonzero(pmask)) * voxel_volume_mm3
    if truth_instances is not None:
        tl = np.asarray(truth_instances)
        tmask = np.isin(tl, tids[tids != 0])
        tvol = float(np.count_nonzero(tmask)) * voxel_volume_mm3
    if pred_instances is not None and truth_instances is not None:
        ciou, cdice = instance_overlap(pmask, tmask)
        pboxes, tboxes = _boxes(pl, pids), _boxes(tl, tids)
        for pi, ti in match.pairs:
            a, d = _pair_overlap(pl, int(pids[pi]), pboxes[pi], tl, int(tids[ti]), tboxes[ti])
            if np.isfinite(d):
                iou.append(a)
                dice.append(d)
    return CaseResult(
        n_truth=m, n_pred=n, tp=len(match.pairs), fp=len(match.unmatched_pred),
        fn=len(match.unmatched_truth), iou=iou, dice=dice,
        tp_scores=[float(scores[p]) for p, _ in match.pairs],
        fp_scores=[float(scores[p]) for p in match.unmatched_pred],
        pred_volume_mm3=pvol, truth_volume_mm3=tvol, case_dice=cdice, case_iou=ciou,
        matching=match,
    )


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample SD (ddof=1); NaN where undefined, never a warning."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    mean = float(v.mean()) if v.size else float("nan")
    sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return mean, sd


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


#: What each figure of :func:`summarize` averages over; carried with the figures (JSON, tables).
AVERAGING: dict[str, str] = {
    "sensitivity": "pooled: matched CMBs / all true CMBs of all subjects",
    "precision": "pooled: matched detections / all detections of all subjects",
    "f1_pooled": "pooled: 2 TP / (2 TP + FP + FN) over all subjects' CMBs and detections",
    "fp_per_subject": "mean over subjects of the unmatched detections",
    "f1_per_subject_mean": "per subject F1, mean over subjects with a CMB or a detection (VALDO)",
    "f1_per_subject_median": "per subject F1, median over subjects with a CMB or a detection",
    "recall_per_subject_mean": "per subject recall, mean over subjects with >= 1 CMB",
    "abs_count_difference_per_subject_mean": "per subject |n_pred - n_true|, mean over subjects (VALDO)",
    "count_difference_per_subject_median": "per subject n_pred - n_true, median over subjects",
    "abs_volume_difference_per_subject_mean_mm3": "per subject |V_pred - V_true| in mm3, mean over subjects",
    "iou_per_cmb_mean": "per matched CMB (both masks known), mean over matched CMBs",
    "dice_per_cmb_mean": "per matched CMB (both masks known), mean over matched CMBs (VALDO's Dice)",
    "iou_per_cmb_mean_misses_as_zero": "per true CMB, a missed CMB counting 0, mean over CMBs",
    "dice_per_cmb_mean_misses_as_zero": "per true CMB, a missed CMB counting 0, mean over CMBs",
    "iou_per_subject_mean": "whole predicted vs whole true mask pooled per subject, mean over subjects",
    "dice_per_subject_mean": "whole predicted vs whole true mask pooled per subject, mean over subjects",
    "iou_per_subject_cmb_mean_misses_as_zero":
        "per subject mean over its true CMBs (a missed CMB counting 0), mean over subjects with >= 1 CMB",
    "dice_per_subject_cmb_mean_misses_as_zero":
        "per subject mean over its true CMBs (a missed CMB counting 0), mean over subjects with >= 1 CMB",
}


def _median(values: Sequence[float]) -> float:
    """Median of the finite values; NaN when there are none, never a warning."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return float(np.median(v)) if v.size else float("nan")


def summarize(cases: Sequence[CaseResult]) -> dict[str, Any]:
    """Pool subjects into the metrics the CMB literature and VALDO 2021 report.

    Each key names its averaging unit, and ``averaging`` (:data:`AVERAGING`) spells it out,
    because pooled, per-lesion and per-subject means of the same quantity differ; see the
    module docstring for which one VALDO's code and the SWI paper use. ``_sd`` keys are
    sample SDs (ddof=1) of the same averaging. Overlap figures need both instance masks:
    a matched pair without them is not in the per-CMB means (``n_matched_with_masks``)
    and the misses-as-zero means are only meaningful when every pair has masks. Subjects
    where a per-subject figure is undefined (no CMB and no detection for F1 or the pooled
    masks; no CMB for recall) are left out of its mean; a figure with no defined value is
    NaN.
    """
    if len(cases) == 0:
        raise ValueError("summarize needs at least one case")
    tp = sum(c.tp for c in cases)
    fp = sum(c.fp for c in cases)
    fn = sum(c.fn for c in cases)
    ious = [x for c in cases for x in c.iou]
    dices = [x for c in cases for x in c.dice]
    iou_m, iou_s = _mean_sd(ious)
    dice_m, dice_s = _mean_sd(dices)
    subj_iou_m, subj_iou_s = _mean_sd([c.case_iou for c in cases])
    subj_dice_m, subj_dice_s = _mean_sd([c.case_dice for c in cases])
    with_cmb = [c for c in cases if c.n_truth > 0]
    # per subject over its true CMBs: matched ones by their overlap, missed ones as 0
    miou_m, miou_s = _mean_sd([_ratio(sum(c.iou), len(c.iou) + c.fn) for c in with_cmb])
    mdice_m, mdice_s = _mean_sd([_ratio(sum(c.dice), len(c.dice) + c.fn) for c in with_cmb])
    f1_subject = [_ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn) for c in cases]
    rec_m, rec_s = _mean_sd([c.tp / c.n_truth for c in with_cmb])
    return {
        "n_subjects": len(cases),
        "n_subjects_with_cmb": len(with_cmb),
        "n_truth": sum(c.n_truth for c in cases),
        "n_pred": sum(c.n_pred for c in cases),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "sensitivity": _ratio(tp, tp + fn),
        "precision": _ratio(tp, tp + fp),
        "f1_pooled": _ratio(2 * tp, 2 * tp + fp + fn),
        "fp_per_subject": fp / len(cases),
        "f1_per_subject_mean": _mean_sd(f1_subject)[0],
        "f1_per_subject_median": _median(f1_subject),
        "recall_per_subject_mean": rec_m,
        "recall_per_subject_sd": rec_s,
        "abs_count_difference_per_subject_mean": float(np.mean([abs(c.n_pred - c.n_truth) for c in cases])),
        "count_difference_per_subject_median": float(np.median([c.n_pred - c.n_truth for c in cases])),
        "abs_volume_difference_per_subject_mean_mm3":
            _mean_sd([abs(c.pred_volume_mm3 - c.truth_volume_mm3) for c in cases])[0],
        "n_matched_with_masks": len(dices),
        "iou_per_cmb_mean": iou_m,
        "iou_per_cmb_sd": iou_s,
        "dice_per_cmb_mean": dice_m,
        "dice_per_cmb_sd": dice_s,
        "iou_per_cmb_mean_misses_as_zero": _ratio(sum(ious), len(ious) + fn),
        "dice_per_cmb_mean_misses_as_zero": _ratio(sum(dices), len(dices) + fn),
        "iou_per_subject_mean": subj_iou_m,
        "iou_per_subject_sd": subj_iou_s,
        "dice_per_subject_mean": subj_dice_m,
        "dice_per_subject_sd": subj_dice_s,
        "iou_per_subject_cmb_mean_misses_as_zero": miou_m,
        "iou_per_subject_cmb_sd_misses_as_zero": miou_s,
        "dice_per_subject_cmb_mean_misses_as_zero": mdice_m,
        "dice_per_subject_cmb_sd_misses_as_zero": mdice_s,
        "sd_ddof": 1,
        "averaging": dict(AVERAGING),
    }


def froc(
    cases: Sequence[CaseResult], fp_per_subject: Sequence[float] = DEFAULT_FP_RATES
) -> dict[str, Any]:
    """Free-response ROC: sensitivity against false positives per subject.

    The curve sweeps the score threshold over every distinct detection score (a detection
    counts when ``score >= threshold``), starting at ``threshold = inf`` (nothing
    detected). The matching is the one made with all detections, as in the usual FROC
    evaluation (LUNA16, VALDO); re-matching at each threshold could let a lower-scored
    detection take over a CMB, which is ignored. Sensitivity is pooled over all CMBs, so
    CMBs no detection reaches cap the curve below 1.

    Returns
    -------
    dict
        ``thresholds``, ``sensitivity``, ``fp_per_subject`` (arrays, decreasing
        threshold); ``at_fp`` mapping each requested rate to the highest sensitivity
        whose FP/subject is at most that rate; ``mean_sensitivity`` (the average of those,
        LUNA16's CPM); ``n_truth`` and ``n_subjects``.
    """
    if len(cases) == 0:
        raise ValueError("froc needs at least one case")
    n_sub = len(cases)
    n_truth = sum(c.n_truth for c in cases)
    tps = np.asarray([s for c in cases for s in c.tp_scores], dtype=float)
    fps = np.asarray([s for c in cases for s in c.fp_scores], dtype=float)
    thr = np.unique(np.concatenate([tps, fps]))[::-1]
    # counts of detections with score >= t for each t, via sorted search
    tp_sorted, fp_sorted = np.sort(tps), np.sort(fps)
    tp_count = tps.size - np.searchsorted(tp_sorted, thr, side="left")
    fp_count = fps.size - np.searchsorted(fp_sorted, thr, side="left")
    thresholds = np.concatenate([[np.inf], thr])
    tp_frac = tp_count / n_truth if n_truth else np.full(thr.size, np.nan)
    sens = np.concatenate([[0.0], tp_frac])
    fpr = np.concatenate([[0.0], fp_count / n_sub])
    at_fp: dict[float, float] = {}
    for rate in fp_per_subject:
        ok = fpr <= rate
        at_fp[float(rate)] = float(np.nanmax(sens[ok])) if n_truth else float("nan")
    return {
        "thresholds": thresholds,
        "sensitivity": sens,
        "fp_per_subject": fpr,
        "at_fp": at_fp,
        "mean_sensitivity": float(np.mean(list(at_fp.values()))) if at_fp else float("nan"),
        "n_truth": n_truth,
        "n_subjects": n_sub,
    }


def operating_point(
    cases: Sequence[CaseResult], max_fp_per_subject: float = 1.0
) -> dict[str, float]:
    """The threshold with the highest sensitivity at most ``max_fp_per_subject`` FP/subject.

    Among thresholds with equal sensitivity the highest one (fewest FPs) wins. Choose it on
    validation subjects and freeze it for the test set; picked on the test set it is
    optimistic. ``threshold`` is ``inf`` when no detection can be afforded.
    """
    curve = froc(cases, fp_per_subject=())
    sens, fpr, thr = curve["sensitivity"], curve["fp_per_subject"], curve["thresholds"]
    ok = np.flatnonzero(fpr <= max_fp_per_subject)
    s = np.nan_to_num(sens[ok], nan=0.0)
    best = ok[np.flatnonzero(s == s.max())[0]]  # first = highest threshold
    return {
        "threshold": float(thr[best]),
        "sensitivity": float(sens[best]),
        "fp_per_subject": float(fpr[best]),
    }
