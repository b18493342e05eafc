"""From susceptibility to field to phase: the dipole kernel in k-space.

A susceptibility distribution ``chi(r)`` (ppm, relative to brain tissue) magnetised by
B0 perturbs the field along B0 by the convolution of ``chi`` with the unit dipole; in
k-space that is a product with ``D(k) = 1/3 - (k . b)**2 / |k|**2`` (``b`` the unit B0
direction; Salomir et al. 2003, Concepts Magn Reson B 19:26; Marques & Bowtell 2005,
Concepts Magn Reson B 25:65). The 1/3 is the Lorentz-sphere correction, so the field
inside a uniform sphere is 0 and outside it is the analytic dipole
``chi/3 (a/r)**3 (3 cos**2 theta - 1)`` (tests/core/test_swi_physics.py checks it).
``D(0)`` is set to 0: the mean field over the padded box is a global frequency offset
the scanner's centre-frequency adjustment removes. The array is zero-padded before the
FFT so the periodic images of the sources do not wrap back into the box.

The grid may be any orthogonal, scaled grid (a rotated, flipped acquisition grid): ``b``
is then given in the grid's own axes and the spacing per axis.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sfft

#: Gyromagnetic ratio of 1H over 2 pi (Hz/T; CODATA 2018).
GAMMA_BAR_HZ_PER_T: float = 42.577478e6


def rad_per_ppm(b0_t: float, te_ms: float) -> float:
    """Stored phase (rad) per ppm of field perturbation: ``2 pi * gamma-bar * B0 * TE``.

    The precession phase of a spin is ``-gamma * dB * TE`` with the ``exp(-i omega t)``
    convention of the Bloch equation; the images store its negative, so that a
    paramagnetic source (field up, ``dB > 0``) has positive phase, as
    :data:`~.PHASE_CONVENTION` states (the same as the phenomenological simulator's).
    """
    return 2.0 * math.pi * GAMMA_BAR_HZ_PER_T * float(b0_t) * (float(te_ms) * 1e-3) * 1e-6


def dipole_kernel(shape: tuple[int, int, int], spacing: tuple[float, float, float], b_dir: np.ndarray) -> np.ndarray:
    """``D(k) = 1/3 - (k.b)**2/|k|**2`` on the rfft grid of ``shape`` (float32, ``D(0) = 0``)."""
    b = np.asarray(b_dir, np.float64)
    b = b / np.linalg.norm(b)
    k = [sfft.fftfreq(n, d) for n, d in zip(shape[:2], spacing[:2])] + [sfft.rfftfreq(shape[2], spacing[2])]
    kx, ky, kz = np.meshgrid(*[v.astype(np.float32) for v in k], indexing="ij", sparse=True)
    k2 = kx * kx + ky * ky + kz * kz
    kb = kx * np.float32(b[0]) + ky * np.float32(b[1]) + kz * np.float32(b[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.float32(1.0 / 3.0) - kb * kb / k2
    d[0, 0, 0] = 0.0
    return d.astype(np.float32)


def field_ppm(chi: np.ndarray, spacing: tuple[float, float, float], b_dir: np.ndarray,
              pad: int | tuple[int, int, int] | None = None) -> np.ndarray:
    """Field perturbation along B0 (ppm of B0) of a susceptibility map ``chi`` (ppm).

    Parameters
    ----------
    chi : np.ndarray
        3D susceptibility (ppm) on a grid with ``spacing`` (mm) per axis.
    b_dir : array of 3
        B0 direction in the grid's axes (unit or not).
    pad : int, tuple or None
        Zero samples added after each axis before the FFT; None pads each axis to
        (at least) twice its length, enough for a compact source to a few parts per
        thousand.
    """
    chi = np.asarray(chi, np.float32)
    if pad is None:
        pad_t = tuple(int(n) for n in chi.shape)
    elif isinstance(pad, int):
        pad_t = (pad,) * 3
    else:
        pad_t = tuple(int(p) for p in pad)
    shape = tuple(sfft.next_fast_len(int(n + p), real=True) for n, p in zip(chi.shape, pad_t))
    spec = sfft.rfftn(chi, s=shape, workers=1)
    spec *= dipole_kernel(shape, spacing, b_dir)
    out = sfft.irfftn(spec, s=shape, workers=1)
    return np.ascontiguousarray(out[: chi.shape[0], : chi.shape[1], : chi.shape[2]], dtype=np.float32)
