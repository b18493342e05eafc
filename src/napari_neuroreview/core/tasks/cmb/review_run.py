"""What the review widget runs: the detector in one task, and where its result lies.

Kept apart from :mod:`.review` (the session and its store writes): the widget takes the scan
behind a layer with :func:`core.io.layers.volume_from_layer` (``grid="source"``: the
scanner voxels the detector was trained on) and runs the detector on it off the GUI thread;
the session never needs these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from ...io.nifti import Volume
from ...io.resample import same_grid
from ...progress import Progress, TaskGenerator
from ...registry import ModelCard
from .detect import CMBResult
from .detect import run as detect_run
from .model import load_detector


def on_display_grid(result: CMBResult, geometry: Any) -> bool:
    """Whether a detection result lies on a resampled layer's display grid (not the file's)."""
    return bool(
        geometry.resampled
        and same_grid(result.instances.shape, result.affine, geometry.display_shape, geometry.display_affine)
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
