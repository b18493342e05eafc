"""What the review widget runs: the scan behind a layer, and the detector in one task.

Kept apart from :mod:`.review` (the session and its store writes): these functions turn a
napari layer's display data back into the scan the store knows and run the detector on it
off the GUI thread; the session never needs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ImageMismatchError, InputFileError
from ...io.layers import META_KEY, geometry_of
from ...io.nifti import Volume, load_volume, voxel_sha256
from ...io.orientation import from_display
from ...progress import Progress, TaskGenerator
from ...registry import ModelCard
from .channels import GRID_TOLERANCE_MM
from .detect import CMBResult
from .detect import run as detect_run
from .model import load_detector


def scan_volume(display: Any, metadata: Mapping[str, Any], name: str = "layer") -> Volume:
    """The scan behind a layer made by this plugin's reader (its display data and metadata).

    Why here: the detector wants the file's voxels and affine, the layer holds them in
    display order. The voxels go back to file order (exact, no resampling) and must hash
    to the file's sha256, since a layer edited in napari is not the scan the store knows.
    An oblique scan shown resampled is read again from its file, whose voxels must still
    hash to the layer's sha256: the detector was trained on scanner voxels, and linear
    resampling both smooths the noise it learnt and leaves zero wedges at a tilted slab's
    faces whose edges flood the candidate screen (on the tilted ``cmb`` sample it found
    nothing on the display grid). Only when the file is gone or changed is the display
    grid used, with its exact display affine.
    """
    geometry = geometry_of(dict(metadata))
    if geometry is None:
        raise InputFileError(f"{name}: was not opened by napari-neuroreview; open the NIfTI/MGH file with File > Open")
    info = metadata[META_KEY]
    path = Path(info["source_path"]) if info.get("source_path") else None
    data = np.asarray(display)
    if geometry.resampled:
        source = _unchanged_file(path, info["sha256"])
        if source is not None:
            return source
        return Volume(data, geometry.display_affine, geometry.scale, path, info["sha256"])
    data = from_display(data, geometry, order=1)
    if voxel_sha256(data) != info["sha256"]:
        raise ImageMismatchError(
            f"{name}: the layer's voxels were changed in napari and no longer match "
            f"{path.name if path else 'the file'}; reopen the file to review it"
        )
    return Volume(data, geometry.source_affine, tuple(float(z) for z in info["zooms"][:3]), path, info["sha256"])


def _unchanged_file(path: Path | None, sha256: str) -> Volume | None:
    """The scan file at ``path`` if it still holds the voxels hashed ``sha256``, else None."""
    if path is None or not path.is_file():
        return None
    try:
        volume = load_volume(path)
    except InputFileError:
        return None
    return volume if volume.sha256 == sha256 else None


def on_display_grid(result: CMBResult, geometry: Any) -> bool:
    """Whether a detection result lies on a resampled layer's display grid (not the file's)."""
    return bool(
        geometry.resampled
        and tuple(result.instances.shape) == tuple(geometry.display_shape)
        and np.allclose(result.affine, geometry.display_affine, atol=GRID_TOLERANCE_MM)
    )


def detect_for_review(
    magnitude: Volume, phase: Volume | None, version: str | None, device: str = "auto",
    threshold: float | None = None, roots: list[Path] | None = None,
) -> TaskGenerator[tuple[CMBResult, ModelCard]]:
    """Load a detector version and run it, in one task: the result and the card to store.

    Why one task: loading the weights (and moving them to the GPU) also takes time and
    must not block the GUI thread, so it runs in the same worker as the detection.
    """
    yield Progress(0, 1, "Loading the microbleed detector")
    detector = load_detector(version, device=device, roots=roots)
    result = yield from detect_run(magnitude, phase, detector, threshold=threshold, device=device)
    return result, detector.card
