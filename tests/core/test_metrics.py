"""Tests of core.metrics on hand-made cases; expected values are worked out in comments."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from napari_neuroreview.core.errors import GeometryError
from napari_neuroreview.core.metrics import (
    CaseResult,
    binary_metrics,
    bootstrap_ci,
    evaluate_case,
    froc,
    instance_overlap,
    match_detections,
    operating_point,
    summarize,
    weighted_auc,
    youden_threshold,
)

# ---------------------------------------------------------------------------- detection


def _two_cmb_volume() -> tuple[np.ndarray, np.ndarray]:
    """Two 3x3x3 CMBs (labels 1, 2) in a 20^3 grid at 1 mm; centres (5,5,5), (14,14,14)."""
    lab = np.zeros((20, 20, 20), dtype=np.int32)
    lab[4:7, 4:7, 4:7] = 1
    lab[13:16, 13:16, 13:16] = 2
    return lab, np.array([[5.0, 5, 5], [14.0, 14, 14]])


def test_perfect_detection() -> None:
    lab, centres = _two_cmb_volume()
    case = evaluate_case(
        centres, [0.9, 0.8], centres, pred_instances=lab, truth_instances=lab,
        voxel_volume_mm3=0.5,
    )
    assert (case.tp, case.fp, case.fn) == (2, 0, 0)
    s = summarize([case])
    # every CMB found, nothing else: recall 1, FP 0, each pair identical so IoU = Dice = 1
    assert s["sensitivity"] == 1.0 and s["precision"] == 1.0 and s["f1_pooled"] == 1.0
    assert s["fp_per_subject"] == 0.0
    assert s["dice_per_cmb_mean"] == 1.0 and s["iou_per_cmb_mean"] == 1.0 and s["dice_per_subject_mean"] == 1.0
    assert s["abs_count_difference_per_subject_mean"] == 0.0 and s["abs_volume_difference_per_subject_mean_mm3"] == 0.0
    # volume: 2 CMBs x 27 voxels x 0.5 mm^3 = 27 mm^3
    assert case.truth_volume_mm3 == pytest.approx(27.0)
    assert s["averaging"]["dice_per_cmb_mean"].startswith("per matched CMB")


def test_mask_match_beyond_distance() -> None:
    # A rod-shaped CMB of label 1 along x = 0..19 at (y, z) = (5, 5); its annotated centre
    # is at x = 2, the detection at x = 15: 13 mm apart, beyond 5 mm, yet inside the mask.
    lab = np.zeros((20, 10, 10), dtype=np.int16)
    lab[:, 5, 5] = 1
    truth = np.array([[2.0, 5, 5]])
    pred = np.array([[15.0, 5, 5]])
    m = match_detections(pred, truth, lab, np.array([[15, 5, 5]]), max_distance_mm=5.0)
    assert m.pairs == [(0, 0)] and m.distances == [pytest.approx(13.0)]
    # without the voxel the distance rule alone refuses the pair
    m2 = match_detections(pred, truth, lab, None, max_distance_mm=5.0)
    assert m2.pairs == [] and m2.unmatched_pred == [0] and m2.unmatched_truth == [0]
    # a centre voxel outside the grid counts as background, not an error
    m3 = match_detections(pred, truth, lab, np.array([[40, 5, 5]]))
    assert m3.pairs == []


def test_one_detection_near_two_truths_matches_one() -> None:
    # detection at the origin; truths 1 mm and 2 mm away: it takes the nearer one only
    m = match_detections([[0.0, 0, 0]], [[1.0, 0, 0], [-2.0, 0, 0]])
    assert m.pairs == [(0, 0)]
    assert m.unmatched_truth == [1] and m.unmatched_pred == []


def test_optimal_beats_greedy() -> None:
    # truths A at x=0, B at x=6; detections P0 at x=3.5, P1 at x=10 (max 5 mm).
    # distances: P0-A 3.5, P0-B 2.5, P1-A 10 (inadmissible), P1-B 4.0.
    # greedy nearest-first takes P0-B (2.5), then P1 has nothing: 1 match.
    # optimal takes P0-A and P1-B: 2 matches (summed distance 7.5).
    pred = np.array([[3.5, 0, 0], [10.0, 0, 0]])
    truth = np.array([[0.0, 0, 0], [6.0, 0, 0]])
    m = match_detections(pred, truth, max_distance_mm=5.0)
    assert m.pairs == [(0, 0), (1, 1)]
    assert m.distances == [pytest.approx(3.5), pytest.approx(4.0)]


def test_empty_inputs() -> None:
    m = match_detections(np.zeros((0, 3)), [[1.0, 2, 3]])
    assert m.pairs == [] and m.unmatched_truth == [0]
    case = evaluate_case([], [], [])
    assert (case.n_pred, case.n_truth, case.tp) == (0, 0, 0)


def test_instance_overlap_half_cubes() -> None:
    # two 4^3 cubes shifted by 2 along x: intersection 2*4*4 = 32, each 64, union 96
    # IoU = 32/96 = 1/3, Dice = 2*32/128 = 1/2
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros((10, 10, 10), bool)
    a[0:4, 0:4, 0:4] = True
    b[2:6, 0:4, 0:4] = True
    iou, dice = instance_overlap(a, b)
    assert iou == pytest.approx(1 / 3) and dice == pytest.approx(0.5)
    assert all(np.isnan(instance_overlap(np.zeros(3, bool), np.zeros(3, bool))))
    with pytest.raises(GeometryError):
        instance_overlap(a, b[:5])


def test_evaluate_case_overlap_uses_own_instance_only() -> None:
    # the same half-overlapping cubes as instances with non-default ids, and a distracting
    # extra predicted instance (id 9, not a listed detection) touching the truth cube:
    # pair IoU must still be 1/3 and Dice 1/2; the extra instance is not in the volume.
    pred = np.zeros((12, 12, 12), np.int32)
    truth = np.zeros((12, 12, 12), np.int32)
    pred[2:6, 0:4, 0:4] = 7
    pred[6:8, 0:4, 0:4] = 9
    truth[0:4, 0:4, 0:4] = 3
    case = evaluate_case(
        [[3.5, 1.5, 1.5]], [0.7], [[1.5, 1.5, 1.5]],
        pred_instances=pred, pred_ids=[7], truth_instances=truth, truth_ids=[3],
    )
    assert case.tp == 1
    assert case.iou == [pytest.approx(1 / 3)] and case.dice == [pytest.approx(0.5)]
    assert case.pred_volume_mm3 == 64 and case.truth_volume_mm3 == 64
    with pytest.raises(GeometryError):
        evaluate_case([[0.0, 0, 0]], [1.0], [[0.0, 0, 0]], pred_instances=pred,
                      truth_instances=truth[:5])


def _froc_cases() -> list[CaseResult]:
    # subject A: 2 CMBs at x=0 and x=20; detections TP 0.9 (x=0), FP 0.8 (x=40), TP 0.4 (x=20)
    # subject B: 1 CMB at x=0; detections FP 0.7 (x=40), TP 0.6 (x=0), FP 0.3 (x=60)
    a = evaluate_case([[0.0, 0, 0], [40.0, 0, 0], [20.0, 0, 0]], [0.9, 0.8, 0.4],
                      [[0.0, 0, 0], [20.0, 0, 0]])
    b = evaluate_case([[40.0, 0, 0], [0.0, 0, 0], [60.0, 0, 0]], [0.7, 0.6, 0.3],
                      [[0.0, 0, 0]])
    return [a, b]


def test_froc_known_curve() -> None:
    cases = _froc_cases()
    assert sorted(cases[0].tp_scores) == [0.4, 0.9] and cases[1].fp_scores == [0.7, 0.3]
    f = froc(cases, fp_per_subject=(0.25, 0.5, 1.0, 2.0))
    # 3 CMBs, 2 subjects; sweeping t down (counts of score >= t):
    #   t=inf: 0 TP 0 FP -> (0, 0)       t=0.9: 1 TP 0 FP -> (1/3, 0)
    #   t=0.8: 1 TP 1 FP -> (1/3, 0.5)   t=0.7: 1 TP 2 FP -> (1/3, 1.0)
    #   t=0.6: 2 TP 2 FP -> (2/3, 1.0)   t=0.4: 3 TP 2 FP -> (1, 1.0)
    #   t=0.3: 3 TP 3 FP -> (1, 1.5)
    np.testing.assert_allclose(f["thresholds"], [np.inf, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3])
    np.testing.assert_allclose(f["sensitivity"], [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(f["fp_per_subject"], [0, 0, 0.5, 1, 1, 1, 1.5])
    # best sensitivity at FP/subject <= rate
    assert f["at_fp"] == pytest.approx({0.25: 1 / 3, 0.5: 1 / 3, 1.0: 1.0, 2.0: 1.0})
    assert f["mean_sensitivity"] == pytest.approx((1 / 3 + 1 / 3 + 1 + 1) / 4)
    op = operating_point(cases, max_fp_per_subject=1.0)
    assert op == pytest.approx({"threshold": 0.4, "sensitivity": 1.0, "fp_per_subject": 1.0})
    op = operating_point(cases, max_fp_per_subject=0.25)
    assert op == pytest.approx({"threshold": 0.9, "sensitivity": 1 / 3, "fp_per_subject": 0.0})


def test_summarize_mean_sd_and_averagings() -> None:
    # three matched CMBs with Dice 0.2, 0.5 (subject 1) and 0.8 (subject 2)
    # per CMB: mean 0.5, SD (ddof=1) = sqrt((0.09 + 0 + 0.09) / 2) = 0.3
    c1 = CaseResult(n_truth=3, n_pred=3, tp=2, fp=1, fn=1, iou=[0.1, 0.4], dice=[0.2, 0.5],
                    tp_scores=[0.9, 0.8], fp_scores=[0.5],
                    pred_volume_mm3=10.0, truth_volume_mm3=14.0)
    c2 = CaseResult(n_truth=1, n_pred=1, tp=1, fp=0, fn=0, iou=[0.7], dice=[0.8],
                    tp_scores=[0.6], pred_volume_mm3=5.0, truth_volume_mm3=4.0)
    c3 = CaseResult(n_truth=0, n_pred=2, tp=0, fp=2, fn=0, fp_scores=[0.3, 0.2],
                    pred_volume_mm3=2.0, truth_volume_mm3=0.0)
    s = summarize([c1, c2, c3])
    assert s["dice_per_cmb_mean"] == pytest.approx(0.5) and s["dice_per_cmb_sd"] == pytest.approx(0.3)
    assert s["iou_per_cmb_mean"] == pytest.approx(0.4) and s["iou_per_cmb_sd"] == pytest.approx(0.3)
    # missed CMB counted as 0: (0.2 + 0.5 + 0.8) / 4
    assert s["dice_per_cmb_mean_misses_as_zero"] == pytest.approx(0.375)
    # pooled: TP 3, FN 1, FP 3 -> recall 3/4, precision 1/2, F1 6/10
    assert s["sensitivity"] == pytest.approx(0.75) and s["precision"] == pytest.approx(0.5)
    assert s["f1_pooled"] == pytest.approx(0.6)
    assert s["fp_per_subject"] == pytest.approx(1.0)  # (1 + 0 + 2) / 3
    # per-subject recall over subjects with >= 1 CMB: 2/3 and 1 -> mean 5/6,
    # SD = |1 - 2/3| / sqrt(2)
    assert s["recall_per_subject_mean"] == pytest.approx(5 / 6)
    assert s["recall_per_subject_sd"] == pytest.approx((1 / 3) / np.sqrt(2))
    assert s["abs_count_difference_per_subject_mean"] == pytest.approx((0 + 0 + 2) / 3)
    assert s["abs_volume_difference_per_subject_mean_mm3"] == pytest.approx((4 + 1 + 2) / 3)
    assert s["n_subjects_with_cmb"] == 2


def test_summarize_names_each_averaging_and_they_differ() -> None:
    # Four subjects, chosen so that every averaging gives a different number (a swap fails):
    # s1: 3 CMBs, 2 found (Dice 0.2, 0.5; IoU 0.1, 0.5), 1 missed, no FP; whole masks Dice 0.3, IoU 0.2
    # s2: 1 CMB found (Dice 0.8, IoU 0.7) + 1 FP; whole masks Dice 0.75, IoU 0.6
    # s3: no CMB, 3 FPs; whole masks Dice 0, IoU 0
    # s4: nothing at all: no F1 and no whole-mask overlap (left out of those means)
    s1 = CaseResult(n_truth=3, n_pred=2, tp=2, fp=0, fn=1, iou=[0.1, 0.5], dice=[0.2, 0.5],
                    tp_scores=[0.9, 0.8], case_dice=0.3, case_iou=0.2)
    s2 = CaseResult(n_truth=1, n_pred=2, tp=1, fp=1, fn=0, iou=[0.7], dice=[0.8],
                    tp_scores=[0.7], fp_scores=[0.6], case_dice=0.75, case_iou=0.6)
    s3 = CaseResult(n_truth=0, n_pred=3, tp=0, fp=3, fn=0, fp_scores=[0.5, 0.4, 0.3], case_dice=0.0, case_iou=0.0)
    s4 = CaseResult(n_truth=0, n_pred=0, tp=0, fp=0, fn=0)
    s = summarize([s1, s2, s3, s4])
    # per matched CMB (VALDO's Dice): (0.2 + 0.5 + 0.8) / 3; IoU (0.1 + 0.5 + 0.7) / 3
    assert s["dice_per_cmb_mean"] == pytest.approx(0.5)
    assert s["iou_per_cmb_mean"] == pytest.approx(1.3 / 3)
    # per true CMB, the missed one counting 0: 1.5 / 4 and 1.3 / 4
    assert s["dice_per_cmb_mean_misses_as_zero"] == pytest.approx(0.375)
    assert s["iou_per_cmb_mean_misses_as_zero"] == pytest.approx(0.325)
    # whole masks pooled per subject, then over s1..s3: (0.3 + 0.75 + 0) / 3, (0.2 + 0.6 + 0) / 3
    assert s["dice_per_subject_mean"] == pytest.approx(0.35)
    assert s["iou_per_subject_mean"] == pytest.approx(0.8 / 3)
    assert s["dice_per_subject_sd"] == pytest.approx(np.std([0.3, 0.75, 0.0], ddof=1))
    # per subject over its true CMBs, misses as 0, over s1, s2: Dice (0.7/3 + 0.8) / 2, IoU (0.6/3 + 0.7) / 2
    assert s["dice_per_subject_cmb_mean_misses_as_zero"] == pytest.approx((0.7 / 3 + 0.8) / 2)
    assert s["iou_per_subject_cmb_mean_misses_as_zero"] == pytest.approx(0.45)
    # F1: pooled TP 3, FP 4, FN 1 -> 6/11; per subject 4/5, 2/3, 0 (s4 has none): median 2/3, mean 22/45
    assert s["f1_pooled"] == pytest.approx(6 / 11)
    assert s["f1_per_subject_median"] == pytest.approx(2 / 3)
    assert s["f1_per_subject_mean"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    # count difference pred - true per subject: -1, +1, +3, 0 -> median 0.5; |.| mean 5/4
    assert s["count_difference_per_subject_median"] == pytest.approx(0.5)
    assert s["abs_count_difference_per_subject_mean"] == pytest.approx(1.25)
    # every figure carries what it averages over
    figures = {k for k, v in s.items() if isinstance(v, float) and "_sd" not in k}  # SDs go with their mean
    assert figures <= set(s["averaging"]), figures - set(s["averaging"])


def test_whole_mask_overlap_per_subject_counts_misses_and_false_positives() -> None:
    # truth: two 27-voxel cubes; detections: the first cube exactly and a 27-voxel false
    # positive. Per matched CMB Dice = IoU = 1; whole masks: 27 shared of 54 + 54 voxels ->
    # Dice 0.5, IoU 27 / 81 = 1/3.
    lab, centres = _two_cmb_volume()
    pred = np.where(lab == 1, 1, 0).astype(np.int32)
    pred[0:3, 15:18, 0:3] = 2
    case = evaluate_case([[5.0, 5, 5], [1.0, 16, 1]], [0.9, 0.8], centres, pred_instances=pred,
                         truth_instances=lab)
    assert (case.tp, case.fp, case.fn) == (1, 1, 1)
    assert case.dice == [1.0] and case.case_dice == pytest.approx(0.5) and case.case_iou == pytest.approx(1 / 3)
    s = summarize([case])
    assert s["dice_per_cmb_mean"] == 1.0 and s["dice_per_cmb_mean_misses_as_zero"] == pytest.approx(0.5)
    assert s["iou_per_subject_mean"] == pytest.approx(1 / 3) and s["dice_per_subject_mean"] == pytest.approx(0.5)


def test_case_result_rejects_inconsistent_counts() -> None:
    with pytest.raises(ValueError):
        CaseResult(n_truth=2, n_pred=1, tp=1, fp=0, fn=0, tp_scores=[1.0])


# ------------------------------------------------------------------------ classification


def test_binary_metrics_by_hand() -> None:
    # y=[0,0,1,1,1], s=[.1,.6,.4,.7,.9], t=.5 -> pred [0,1,0,1,1]: TP 2, FP 1, TN 1, FN 1
    # AUC: positive-negative pairs ranked right: 0.4>0.1, 0.7>both, 0.9>both = 5 of 6
    m = binary_metrics([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9], threshold=0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 1, 1)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(5 / 6)
    assert m["n"] == 5 and m["prevalence"] == pytest.approx(0.6)
    one = binary_metrics([1, 1], [0.2, 0.9])
    assert np.isnan(one["auc"]) and np.isnan(one["specificity"])


def test_youden_threshold_by_hand() -> None:
    # J per threshold: .9 -> 1/3, .7 -> 2/3 - 0, .6 -> 2/3 - 1/2, .4 -> 1 - 1/2, .1 -> 0
    assert youden_threshold([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.7, 0.9]) == 0.7
    with pytest.raises(ValueError):
        youden_threshold([1, 1], [0.1, 0.2])


def test_bootstrap_resamples_groups_not_rows() -> None:
    rng = np.random.default_rng(1)
    y = np.array([0] * 10 + [1] * 10)
    s = y * 0.6 + rng.random(20)  # overlapping scores: AUC well below 1
    # each patient's row duplicated 100 times: 2000 rows, 20 patients
    yd, sd, gd = np.repeat(y, 100), np.repeat(s, 100), np.repeat(np.arange(20), 100)
    row = bootstrap_ci(roc_auc_score, yd, sd, np.arange(yd.size), n_boot=200, seed=0)
    grp = bootstrap_ci(roc_auc_score, yd, sd, gd, n_boot=200, seed=0)
    assert row[0] == pytest.approx(grp[0])  # same point estimate
    # the row bootstrap treats 2000 copies as independent: far too narrow
    assert (grp[2] - grp[1]) > 3 * (row[2] - row[1])
    # duplicating every patient's rows changes nothing for the group bootstrap: it equals
    # the plain bootstrap of the 20 original rows with the same seed
    orig = bootstrap_ci(roc_auc_score, y, s, np.arange(20), n_boot=200, seed=0)
    assert grp == pytest.approx(orig)


def test_bootstrap_skips_single_class_resamples() -> None:
    # 4 patients: roc_auc_score would raise on a one-class resample; those are skipped
    y, s, g = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [0, 1, 2, 3]
    point, low, high = bootstrap_ci(roc_auc_score, y, s, g, n_boot=200, seed=3)
    assert point == pytest.approx(0.75) and 0.0 <= low <= high <= 1.0


def test_weighted_auc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.choice(["lacunar", "wmh", "mixed"], size=60, p=[0.5, 0.3, 0.2])
    labels = ["lacunar", "mixed", "wmh"]
    logits = rng.normal(size=(60, 3)) + 1.5 * (y[:, None] == np.array(labels)[None, :])
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = roc_auc_score(y, proba, average="weighted", multi_class="ovr", labels=labels)
    assert weighted_auc(y, proba, labels) == pytest.approx(expected)
    # scores that do not sum to 1 are accepted; a monotone map of each column (log) keeps
    # the ranks and therefore the value
    assert weighted_auc(y, np.log(proba), labels) == pytest.approx(expected)
    assert np.isnan(weighted_auc(["wmh"] * 3, np.ones((3, 3)), labels))
