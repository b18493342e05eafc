"""Training patches for the microbleed network, from ground truth or from reviews.

Positives are patches centred on each known microbleed (and slightly shifted copies, so
the network does not rely on a perfectly centred candidate); their segmentation target
is that microbleed's mask. Negatives are the candidates that the screen finds away from
every known microbleed: veins, iron, sulcal spots, calcifications and noise, i.e. exactly
what the network must learn to reject. From reviews, rejected detections become hard
negatives (weighted up) and added microbleeds become positives without a mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ...io.nifti import Volume
from .channels import make_channels
from .patches import PATCH, sample_patches
from .training import PatchSet

#: Candidates closer than this to a known microbleed are neither positive nor negative.
EXCLUSION_MM = 3.0
HARD_NEGATIVE_WEIGHT = 3.0


def _jittered(centres: np.ndarray, zooms: Sequence[float], copies: int, rng: np.random.Generator) -> np.ndarray:
    """The centres plus ``copies`` shifted versions each (up to 1.2 mm per axis)."""
    if copies <= 0 or len(centres) == 0:
        return centres
    shifts = rng.uniform(-1.2, 1.2, size=(len(centres), copies, 3)) / np.asarray(zooms)
    return np.concatenate([centres, (centres[:, None, :] + shifts).reshape(-1, 3)])


def _far_from(points: np.ndarray, centres: np.ndarray, zooms: Sequence[float], mm: float) -> np.ndarray:
    if len(centres) == 0 or len(points) == 0:
        return np.ones(len(points), bool)
    diff = (points[:, None, :] - centres[None, :, :]) * np.asarray(zooms)
    return np.sqrt((diff**2).sum(-1)).min(axis=1) > mm


def build_patch_set(
    magnitude: Volume,
    phase: Volume | None,
    positives: np.ndarray,
    positive_masks: list[np.ndarray | None],
    hard_negatives: np.ndarray,
    group: int,
    rng: np.random.Generator,
    max_negatives: int = 150,
    jitter_copies: int = 3,
) -> PatchSet:
    """Patches of one scan.

    Parameters
    ----------
    magnitude, phase : Volume
        The scan (phase optional).
    positives : numpy.ndarray
        (P, 3) voxel centres of known microbleeds.
    positive_masks : list
        For each positive, a boolean mask on the scan grid, or None when unknown.
    hard_negatives : numpy.ndarray
        (H, 3) voxel centres known NOT to be microbleeds (rejected detections).
    group : int
        Case index (keeps splits by scan).
    rng : numpy.random.Generator
        For jitter and the choice of ordinary negatives.
    """
    channels, candidates, _ = make_channels(magnitude, phase)
    zooms = magnitude.zooms
    positives = np.asarray(positives, dtype=float).reshape(-1, 3)
    hard_negatives = np.asarray(hard_negatives, dtype=float).reshape(-1, 3)

    pos_centres, pos_seg, pos_has = [], [], []
    for centre, mask in zip(positives, positive_masks):
        centres = _jittered(centre[None], zooms, jitter_copies, rng)
        pos_centres.append(centres)
        if mask is None:
            pos_seg.append(np.zeros((len(centres), PATCH, PATCH, PATCH), np.float32))
            pos_has.append(np.zeros(len(centres), bool))
        else:
            pos_seg.append(sample_patches([mask.astype(np.float32)], magnitude.affine, centres)[:, 0])
            pos_has.append(np.ones(len(centres), bool))

    ordinary = candidates.voxels[_far_from(candidates.voxels.astype(float), positives, zooms, EXCLUSION_MM)]
    ordinary = ordinary[_far_from(ordinary.astype(float), hard_negatives, zooms, 1.0)]
    if len(ordinary) > max_negatives:
        # The screen keeps every candidate (no cap), darkest first: half the negatives are the
        # darkest (veins, iron: the hard mimics), half are drawn from the rest, so the network
        # also meets the faint spots it now scores on every scan.
        hard = max_negatives // 2
        rest = hard + np.sort(rng.choice(len(ordinary) - hard, max_negatives - hard, replace=False))
        ordinary = ordinary[np.concatenate([np.arange(hard), rest])]
    neg_centres = np.concatenate([hard_negatives, ordinary.astype(float)])
    neg_weight = np.concatenate([np.full(len(hard_negatives), HARD_NEGATIVE_WEIGHT), np.ones(len(ordinary))])

    pos_all = np.concatenate(pos_centres) if pos_centres else np.zeros((0, 3))
    centres = np.concatenate([pos_all, neg_centres])
    n_pos, n_neg = len(pos_all), len(neg_centres)
    empty_seg = np.zeros((n_neg, PATCH, PATCH, PATCH), np.float32)
    return PatchSet(
        patches=sample_patches(channels, magnitude.affine, centres),
        labels=np.concatenate([np.ones(n_pos), np.zeros(n_neg)]).astype(np.float32),
        seg=np.concatenate([*pos_seg, empty_seg]) if pos_seg else empty_seg,
        has_seg=np.concatenate([*pos_has, np.zeros(n_neg, bool)]) if pos_has else np.zeros(n_neg, bool),
        weight=np.concatenate([np.ones(n_pos), neg_weight]).astype(np.float32),
        groups=np.full(n_pos + n_neg, group, dtype=np.int64),
    )


def patches_from_truth(
    magnitude: Volume, phase: Volume | None, instances: np.ndarray, group: int, rng: np.random.Generator,
    max_negatives: int = 150,
) -> PatchSet:
    """Patches of a phantom (or expert-labelled) scan from its instance-label truth."""
    ids = [int(i) for i in np.unique(instances) if i != 0]
    centres = np.array(ndimage.center_of_mass(np.ones(instances.shape), instances, ids)).reshape(-1, 3)
    masks = [instances == i for i in ids]
    return build_patch_set(magnitude, phase, centres, masks, np.zeros((0, 3)), group, rng, max_negatives)
