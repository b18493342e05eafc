"""What a susceptibility source does to a GRE scan: phase per ppm, blooming, voxel phase.

The constants and small formulas shared by every object that is drawn: the field shift
(ppm) to phase (rad) conversion at 3 T, the echo-time growth of a lesion's visible size
(blooming), the phase of a voxel as the angle of its averaged complex signal, and the
demagnetising factor of an ellipsoid. The physics, and why it is imitated this way, is
in the package docstring (:mod:`napari_neuroreview.core.phantoms.swi`, *Phase* and
*Microbleeds*).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import integrate

#: Main field strength (T) the phase is simulated at.
B0_T: float = 3.0
#: Gyromagnetic ratio of 1H over 2 pi (Hz/T).
_GAMMA_BAR_HZ_PER_T: float = 42.577478e6
#: Blooming: visible radius = true radius * (1 + k * TE[ms]). Phenomenological.
BLOOMING_K_PER_MS: float = 0.015
#: Phase sign convention of the simulated phase images.
PHASE_CONVENTION: str = (
    "positive phase = paramagnetic (dchi > 0: haemosiderin, deoxyhaemoglobin, ferritin); "
    "negative = diamagnetic (calcification); B0 along world +z (RAS superior)"
)


def _rad_per_ppm(te_ms: float) -> float:
    """Phase (rad) per ppm of field shift: 2 pi * gamma-bar * B0 * TE."""
    return 2.0 * math.pi * _GAMMA_BAR_HZ_PER_T * B0_T * (te_ms * 1e-3) * 1e-6


def _bloom(te_ms: float) -> float:
    return 1.0 + BLOOMING_K_PER_MS * float(te_ms)


@functools.lru_cache(maxsize=16)
def _demag_z(semi: tuple[float, float, float]) -> float:
    """Demagnetising factor of an ellipsoid along z (Osborn 1945's integral)."""
    a, b, c = semi
    f = lambda s: 1.0 / ((s + c * c) ** 1.5 * math.sqrt((s + a * a) * (s + b * b)))  # noqa: E731
    return float(a * b * c / 2.0 * integrate.quad(f, 0.0, np.inf)[0])


def _voxel_phase(mag: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Phase of the voxel-averaged complex signal, sub-samples on the last axis."""
    return np.angle(np.mean(mag * np.exp(1j * phi), axis=-1))
