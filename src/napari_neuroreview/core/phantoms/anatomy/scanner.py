"""What the scanner adds to the anatomy: a receive-coil bias field and complex noise.

The bias field is ``exp(strength * p(x))``, ``p`` a seeded random polynomial of degree
<= 3 in world mm (:func:`random_bias_field`); the noise is white complex Gaussian
(:func:`complex_noise`), whose magnitude gives Rician statistics. Why: the package
docstring, steps 3 and 4.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ...anatomy.grids import voxel_to_world
from ...anatomy.mni import _brain_bbox_mm, load_mni_anatomy
from ...io.resample import resample_to_grid

_BIAS_DEGREE = 3
_BIAS_EXPONENTS: tuple[tuple[int, int, int], ...] = tuple(
    e for e in itertools.product(range(_BIAS_DEGREE + 1), repeat=3) if 1 <= sum(e) <= _BIAS_DEGREE
)


def _poly(coeffs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Evaluate ``sum_k c_k * x**a_k * y**b_k * z**c_k`` at normalised points u (..., 3)."""
    powers = [[np.ones(u.shape[:-1], dtype=u.dtype)] for _ in range(3)]
    for axis in range(3):
        for _ in range(_BIAS_DEGREE):
            powers[axis].append(powers[axis][-1] * u[..., axis])
    out = np.zeros(u.shape[:-1], dtype=u.dtype)
    for c, (a, b, d) in zip(coeffs, _BIAS_EXPONENTS):
        out += c * (powers[0][a] * powers[1][b] * powers[2][d])
    return out


def _bias_coefficients(rng: np.random.Generator) -> np.ndarray:
    """Random polynomial coefficients, normalised so that max |p| = 1 over the brain box.

    Higher-degree terms get smaller coefficients (1 / degree), keeping the field smooth,
    as a coil sensitivity is over the size of a head.
    """
    degree = np.array([sum(e) for e in _BIAS_EXPONENTS], dtype=np.float64)
    coeffs = rng.normal(0.0, 1.0, size=len(_BIAS_EXPONENTS)) / degree
    g = np.linspace(-1.0, 1.0, 13)
    cube = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1)
    peak = float(np.abs(_poly(coeffs, cube)).max())
    return coeffs / peak if peak > 0 else coeffs


def _bias_field(
    coeffs: np.ndarray, strength: float, affine: np.ndarray, shape: tuple[int, int, int]
) -> np.ndarray:
    """``exp(strength * p(x))`` at the world position of every voxel of the grid."""
    lo, hi = _brain_bbox_mm(load_mni_anatomy())
    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    # Evaluate slab by slab along k to keep memory small on fine grids.
    field = np.empty(shape, dtype=np.float32)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    slab = 16
    for k0 in range(0, shape[2], slab):
        ks = np.arange(k0, min(k0 + slab, shape[2]))
        ijk = np.stack(np.broadcast_arrays(ii[..., None], jj[..., None], ks[None, None, :]), axis=-1)
        u = (voxel_to_world(affine, ijk) - centre) / half
        field[:, :, k0 : k0 + len(ks)] = np.exp(strength * _poly(coeffs, u))
    return field


def random_bias_field(
    rng: np.random.Generator,
    strength: float,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    coarse_step_mm: float = 4.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded receive-coil bias field on a grid, fast (see the package docstring, step 3).

    The field ``exp(strength * p(x))`` (``p`` a random polynomial of degree <= 3 in world
    coordinates, ``max |p| = 1`` over the brain box, as :func:`make_t1_case` draws it) is
    evaluated on a coarse grid, one sample every ``coarse_step_mm`` along each voxel axis,
    and linearly interpolated: the field is so smooth over a head that the difference is
    below 1e-4, and evaluating the polynomial at every voxel of a fine grid is slow.

    Parameters
    ----------
    rng : np.random.Generator
        Draws the polynomial's coefficients (one ``normal`` draw of 19 numbers).
    strength : float
        Amplitude of the log field: it spans ``exp(+-strength)`` over the brain.
    affine, shape
        The grid.
    coarse_step_mm : float
        Spacing of the exact samples.

    Returns
    -------
    field : np.ndarray
        float32 multiplicative field on the grid.
    coeffs : np.ndarray
        The polynomial coefficients (for the case's parameters).
    """
    coeffs = _bias_coefficients(rng)
    affine = np.asarray(affine, dtype=np.float64)
    vs = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    step = np.maximum(1, np.floor(float(coarse_step_mm) / vs)).astype(int)
    coarse_shape = tuple(int(math.ceil((n - 1) / s)) + 2 for n, s in zip(shape, step))
    coarse_affine = affine @ np.diag([*step.astype(float), 1.0])
    coarse = _bias_field(coeffs, float(strength), coarse_affine, coarse_shape)  # type: ignore[arg-type]
    field = resample_to_grid(coarse, coarse_affine, affine, shape, order=1, edge="blend")
    return field.astype(np.float32, copy=False), coeffs


def complex_noise(
    rng: np.random.Generator, noise_sd: float, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """White complex Gaussian noise, real then imaginary channel (float32 each).

    Adding it to a complex signal and taking the magnitude gives the Rician (Rayleigh in
    the background) statistics of a magnitude MR image (package docstring, step 4); the
    angle of the same sum carries phase noise of standard deviation about
    ``noise_sd / |signal|`` where the signal is well above the noise.
    """
    real = rng.normal(0.0, noise_sd, size=shape).astype(np.float32)
    imag = rng.normal(0.0, noise_sd, size=shape).astype(np.float32)
    return real, imag
