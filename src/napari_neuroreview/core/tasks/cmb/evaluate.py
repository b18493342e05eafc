"""Score detector results against ground truth with :mod:`core.metrics`.

Kept apart from detection so that the detector never sees the truth: this module takes a
finished :class:`CMBResult` and the truth instance labels and returns the metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ...errors import InputFileError
from ...metrics import CaseResult, evaluate_case
from .detect import CMBResult


def at_threshold(result: CMBResult, threshold: float) -> CMBResult:
    """The same result keeping only detections scored at least ``threshold``."""
    kept = [d for d in result.detections if d.score >= threshold]
    keep_ids = np.array([d.id for d in kept], dtype=np.int64)
    instances = np.where(np.isin(result.instances, keep_ids), result.instances, 0).astype(np.uint16)
    return CMBResult(
        detections=kept, instances=instances, image_path=result.image_path, image_sha256=result.image_sha256,
        affine=result.affine, model=result.model, threshold=threshold, device=result.device,
        n_candidates=result.n_candidates, extra=dict(result.extra),
    )


def truth_labels(data: np.ndarray, path: str | Path) -> np.ndarray:
    """Truth instance labels as consecutive ids 1..n (0 background), refusing non-integers.

    Why: casting 1.5 and 2.5 to int merges microbleeds (ten become five) without a word,
    and the matching allocates per label value, so a sparse id of 1e6 would cost a
    million of everything. Relabelling keeps each distinct value one microbleed.
    """
    values = np.asarray(data)
    if values.dtype.kind == "f":
        bad = values != np.round(values)
        if bad.any() or (values < 0).any():
            example = float(values[bad][0]) if bad.any() else float(values[values < 0][0])
            raise InputFileError(f"{Path(path).name}: truth labels must be non-negative integers (one id per "
                                 f"microbleed), but it holds {example:g}")
    elif values.dtype.kind not in "biu":
        raise InputFileError(f"{Path(path).name}: truth labels must be integers, not {values.dtype}")
    elif values.size and values.min() < 0:
        raise InputFileError(f"{Path(path).name}: truth labels must be non-negative, but it holds {int(values.min())}")
    ids, inverse = np.unique(values, return_inverse=True)
    if ids.size and ids[0] != 0:
        inverse = inverse + 1  # no background value present: every id shifts up by one
    out_dtype = np.uint16 if ids.size < np.iinfo(np.uint16).max else np.int64
    return inverse.reshape(values.shape).astype(out_dtype)


def truth_centres_mm(instances: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, world centres) of the truth instances, from their centroids and the affine."""
    ids = np.array([int(i) for i in np.unique(instances) if i != 0], dtype=np.int64)
    if len(ids) == 0:
        return ids, np.zeros((0, 3))
    centres = np.array(ndimage.center_of_mass(np.ones(instances.shape), instances, ids)).reshape(-1, 3)
    return ids, centres @ affine[:3, :3].T + affine[:3, 3]


def evaluate_result(result: CMBResult, truth_instances: np.ndarray, max_distance_mm: float = 5.0) -> CaseResult:
    """Match one scan's detections to its truth: counts, per-CMB IoU/Dice, scores."""
    ids, truth_mm = truth_centres_mm(truth_instances, result.affine)
    pred_mm = np.array([d.world_ras_mm for d in result.detections], dtype=float).reshape(-1, 3)
    pred_vox = np.rint(np.array([d.voxel_ijk for d in result.detections], dtype=float).reshape(-1, 3)).astype(int)
    voxel_mm3 = float(abs(np.linalg.det(result.affine[:3, :3])))
    return evaluate_case(
        pred_mm, [d.score for d in result.detections], truth_mm,
        pred_instances=result.instances, pred_ids=[d.id for d in result.detections],
        truth_instances=truth_instances, truth_ids=ids, voxel_volume_mm3=voxel_mm3,
        max_distance_mm=max_distance_mm, pred_voxels=pred_vox,
    )
