"""Detect cerebral microbleeds on SWI: one instance mask, centre, score and volume each.

``run`` is a task generator (see :mod:`core.progress`): the widget runs it in a worker
with a progress bar and Cancel, the CLI drives it to completion. Stages: input checks ->
candidates (:mod:`.candidates`, all of them: no cap) -> patches on a fixed mm grid
(:mod:`.patches`), one batch at a time -> the CNN classifies every candidate and segments
the kept ones in the same batch -> masks go back onto the scan's voxels, duplicates (two
candidates on one microbleed) are suppressed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...errors import InputFileError
from ...io.nifti import Volume, constant_value
from ...progress import Progress, TaskGenerator
from .channels import check_inputs, make_channels
from .model import LoadedDetector, card_threshold, load_detector
from .patches import PATCH, PATCH_MM, patch_to_scan_mask, sample_patches

#: Candidate patches per forward pass, and the step of the progress bar and of Cancel. With
#: channels-last 3D tensors, 128 patches a batch scored a 300-candidate scan about twice as
#: fast as 64 in the default layout on 2 CPU threads (oneDNN's convolutions prefer both);
#: GPU memory is no concern at this size.
BATCH = 128
#: A detection whose mask overlaps an earlier (higher-scored) one by this share is a duplicate.
DUPLICATE_OVERLAP = 0.3
#: Field of view (mm) the scan needs along every axis: one CNN patch (20 x 0.8 mm). A thinner
#: scan (one slice, a 2 x 2 x 2 crop) holds no microbleed the detector could see in context.
MIN_EXTENT_MM = PATCH * PATCH_MM


@dataclass(frozen=True)
class CMBDetection:
    """One detected microbleed. Coordinates: world RAS+ mm and file voxel order."""

    id: int
    world_ras_mm: tuple[float, float, float]
    voxel_ijk: tuple[float, float, float]
    score: float
    volume_mm3: float


@dataclass
class CMBResult:
    """What the detector found on one scan.

    Attributes
    ----------
    detections : list of CMBDetection
        Sorted by score, highest first; ids run 1..n in that order.
    instances : numpy.ndarray
        uint16 instance labels on the scan's grid (file order); value = detection id.
    """

    detections: list[CMBDetection]
    instances: np.ndarray
    image_path: str | None
    image_sha256: str
    affine: np.ndarray
    model: dict[str, str]
    threshold: float
    device: str
    n_candidates: int
    extra: dict[str, Any] = field(default_factory=dict)


def check_scan_content(magnitude: Volume) -> None:
    """Refuse, in one sentence, a scan on which detection would be empty by construction.

    Why: a constant scan or one a few voxels thick gives zero detections, which reads as
    "no microbleeds" to a clinician; it is a wrong input, and the user must be told.
    """
    value = constant_value(magnitude)
    if value is not None:
        raise InputFileError(f"{magnitude.name}: the SWI volume is constant (every voxel is {value:g}), so it "
                             "holds no contrast to find microbleeds in")
    for axis, (n, zoom) in enumerate(zip(magnitude.spatial_shape, magnitude.zooms)):
        if n * zoom < MIN_EXTENT_MM:
            raise InputFileError(
                f"{magnitude.name}: has {n} slice{'s' if n != 1 else ''} along its axis {'ijk'[axis]} "
                f"({n * zoom:g} mm); the detector needs at least {MIN_EXTENT_MM:g} mm of brain along each axis")


def _score_batch(
    net: torch.nn.Module, patches: np.ndarray, device: torch.device, threshold: float
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Scores of one batch of patches, and the segmentation of those at or above ``threshold``.

    Segmenting inside the batch keeps only one batch's encoder features alive, so memory
    does not grow with the number of candidates (a scan may have thousands).
    """
    x = torch.from_numpy(patches).to(device, memory_format=torch.channels_last_3d)
    e1, e2, e3 = net.encode(x)
    scores = torch.sigmoid(net.classify(e3)).float().cpu().numpy()
    keep = np.flatnonzero(scores >= threshold)
    segments: dict[int, np.ndarray] = {}
    if len(keep):
        index = torch.from_numpy(keep).to(device)
        probability = torch.sigmoid(net.segment(e1[index], e2[index], e3[index])).float().cpu().numpy()
        segments = {int(k): probability[j] for j, k in enumerate(keep)}
    return scores, segments


def run(
    magnitude: Volume,
    phase: Volume | None = None,
    detector: LoadedDetector | None = None,
    threshold: float | None = None,
    device: str = "auto",
    max_candidates: int | None = None,
) -> TaskGenerator[CMBResult]:
    """Detect microbleeds (see the module docstring).

    Parameters
    ----------
    magnitude : Volume
        3D SWI magnitude.
    phase : Volume, optional
        Filtered phase on the same grid (helps to reject calcifications).
    detector : LoadedDetector, optional
        Network and model card; the registry's default version when None.
    threshold : float, optional
        Score threshold; the model card's operating point when None.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    max_candidates : int, optional
        Cap on candidates, darkest first. None (default): every candidate is scored, so no
        true microbleed is dropped before the CNN sees it; the time grows with the
        candidate count and the progress bar and Cancel follow each batch of ``BATCH``.
    """
    # Progress in per mille: the screen's share is fixed, the batches fill 10-90 %.
    yield Progress(0, 1000, "Checking inputs")
    check_inputs(magnitude, phase)
    check_scan_content(magnitude)
    if detector is None:
        detector = load_detector(device=device)
    net, card = detector.net.to(memory_format=torch.channels_last_3d), detector.card  # see BATCH
    threshold = card_threshold(card) if threshold is None else float(threshold)
    dev = next(net.parameters()).device

    yield Progress(20, 1000, "Finding candidate dark spots")
    channels, candidates, _ = make_channels(magnitude, phase, max_candidates)
    n = len(candidates.voxels)
    scores = np.zeros(n, np.float32)
    probabilities: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for start in range(0, n, BATCH):
            yield Progress(100 + 800 * start // max(n, 1), 1000, f"Scoring candidates {start + 1}-{min(start + BATCH, n)} of {n}")
            patches = sample_patches(channels, magnitude.affine, candidates.voxels[start : start + BATCH])
            scores[start : start + len(patches)], segments = _score_batch(net, patches, dev, threshold)
            probabilities.update({start + k: v for k, v in segments.items()})

    yield Progress(900, 1000, f"Building masks of {len(probabilities)} microbleeds")
    detections, instances = _instances(magnitude, candidates.voxels, scores, probabilities)
    yield Progress(1000, 1000, f"{len(detections)} microbleeds")
    return CMBResult(
        detections=detections,
        instances=instances,
        image_path=str(magnitude.path) if magnitude.path else None,
        image_sha256=magnitude.sha256,
        affine=magnitude.affine,
        model={"name": card.name, "version": card.version},
        threshold=threshold,
        device=str(dev),
        n_candidates=n,
    )


def _instances(
    magnitude: Volume,
    voxels: np.ndarray,
    scores: np.ndarray,
    probabilities: dict[int, np.ndarray],
) -> tuple[list[CMBDetection], np.ndarray]:
    """Masks on the scan grid, highest score first, duplicates of a kept one dropped."""
    shape = magnitude.spatial_shape
    instances = np.zeros(shape, dtype=np.uint16)
    voxel_mm3 = float(np.prod(magnitude.zooms))
    detections: list[CMBDetection] = []
    for index in sorted(probabilities, key=lambda i: -scores[i]):
        centre = voxels[index]
        if instances[tuple(centre)] != 0:
            continue
        box, mask = patch_to_scan_mask(probabilities[index], magnitude.affine, centre, shape)
        if not mask.any():
            mask = np.zeros(mask.shape, bool)
            mask[tuple(centre - [s.start for s in box])] = True
        region = instances[box]
        if mask.sum() and (region[mask] != 0).mean() > DUPLICATE_OVERLAP:
            continue
        new_id = len(detections) + 1
        free = mask & (region == 0)
        region[free] = new_id
        ijk = np.argwhere(free).mean(axis=0) + [s.start for s in box]
        world = magnitude.affine[:3, :3] @ ijk + magnitude.affine[:3, 3]
        detections.append(
            CMBDetection(
                id=new_id,
                world_ras_mm=tuple(round(float(v), 3) for v in world),
                voxel_ijk=tuple(round(float(v), 3) for v in ijk),
                score=round(float(scores[index]), 5),
                volume_mm3=round(float(free.sum()) * voxel_mm3, 3),
            )
        )
    return detections, instances
