"""The CNN's input channels from an SWI magnitude (and phase), with the input checks.

Both detection and training build their patches here, so the model always sees the
same normalisation: local contrast of the magnitude (clipped to [0, 2]), the phase in
radians (clipped to [-pi, pi]; zeros when absent) and a has-phase flag.
"""

from __future__ import annotations

import numpy as np

from ...errors import GeometryError, InputFileError
from ...io.nifti import Volume
from ...io.resample import same_grid
from .candidates import Candidates, find_candidates


def check_inputs(magnitude: Volume, phase: Volume | None) -> None:
    """One clear sentence for every input the detector cannot use; nothing is computed."""
    if magnitude.is_4d:
        raise InputFileError(
            f"{magnitude.name}: is a 4D series ({magnitude.shape[3]} volumes); the microbleed "
            "detector needs one 3D SWI magnitude volume"
        )
    if not np.any(magnitude.data):
        raise InputFileError(f"{magnitude.name}: the SWI volume is all zero")
    if phase is None:
        return
    if phase.is_4d:
        raise InputFileError(f"{phase.name}: the phase image is 4D; a 3D phase volume is needed")
    if not same_grid(phase.spatial_shape, phase.affine, magnitude.spatial_shape, magnitude.affine):
        raise GeometryError(
            f"{phase.name}: the phase image is on a different grid ({phase.spatial_shape}, "
            f"{phase.orientation}) from the SWI {magnitude.name} ({magnitude.spatial_shape}, "
            f"{magnitude.orientation}); they must come from the same acquisition"
        )


def phase_radians(phase: np.ndarray) -> np.ndarray:
    """Phase in radians: scanner integer units (e.g. -4096..4095) are rescaled to [-pi, pi]."""
    phase = np.asarray(phase, dtype=np.float32)
    peak = float(np.max(np.abs(phase))) if phase.size else 0.0
    if peak > 1.5 * np.pi:
        phase = phase * np.float32(np.pi / peak)
    return np.clip(phase, -np.pi, np.pi)


def make_channels(
    magnitude: Volume, phase: Volume | None, max_candidates: int | None = None
) -> tuple[list[np.ndarray], Candidates, np.ndarray]:
    """Candidates and the channel images the patches are sampled from.

    Returns
    -------
    (channels, candidates, head mask)
        channels = [contrast, phase (or zeros), has-phase flag] on the scan's grid; a
        constant channel is a single voxel, which :func:`patches.sample_patches` broadcasts.
    """
    candidates, contrast, mask = find_candidates(magnitude.data, magnitude.zooms, max_candidates)
    contrast = np.clip(contrast, 0.0, 2.0) * mask
    if phase is not None:
        phase_img = phase_radians(phase.data) * mask
        flag = np.ones((1, 1, 1), np.float32)
    else:
        phase_img = np.zeros((1, 1, 1), np.float32)
        flag = np.zeros((1, 1, 1), np.float32)
    return [contrast.astype(np.float32), phase_img, flag], candidates, mask
