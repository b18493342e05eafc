"""The one grid-to-grid resampler: an array on one voxel grid pulled onto another by world mm.

Why one: showing an oblique scan (``orientation``), putting an ICA map on the model grid
and a post-operative map on the pre-operative grid (``tasks.networks``), and sampling the
MNI anatomy onto a scanner's grid (``anatomy``) are the same operation, and each copy had
to get the same three things right: the direction of the mapping (each *output* voxel
reads the input at ``inv(src_affine) @ dst_affine``), 0 outside the input, and labels
kept as labels (``order=0`` keeps the input's dtype; any other order gives float32).

What "outside" means is the one choice a caller makes (``edge``): ``"zero"`` (0 beyond
the input's outermost voxel centres: a scan or a map shows nothing it did not measure)
or ``"blend"`` (within one voxel of the edge a linear sample blends the edge voxel with
0, as a voxel half outside would: partial volume, for the anatomy's tissue maps). With
``"blend"``, grids that differ only by axis order, flips and zooms take a separable
linear path several times faster than scipy's generic one, with the same values.

Downsampling a smooth map (``antialias=True``) first blurs it with a Gaussian whose FWHM
makes up the difference between the target and source voxel sizes, per source axis, so
that a coarser grid averages instead of picking every other voxel (aliasing).

Sampling patches around points (``tasks.cmb.patches``) is a different job (arbitrary
coordinates, not a grid) and uses ``scipy.ndimage.map_coordinates`` directly.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["EDGES", "GRID_TOLERANCE_MM", "resample_to_grid", "same_grid"]

#: What lies outside the input (see the module docstring): scipy's mode for each.
EDGES: dict[str, str] = {"zero": "constant", "blend": "grid-constant"}
#: Grids whose affines differ by less than this (mm) are the same grid: NIfTI stores the
#: affine in float32, so a grid written and read back moves by ~1e-5 mm, far below this.
GRID_TOLERANCE_MM = 1e-3


def same_grid(shape_a: tuple[int, ...], affine_a: np.ndarray, shape_b: tuple[int, ...], affine_b: np.ndarray) -> bool:
    """Whether two voxel grids are one: the same spatial shape and affines within :data:`GRID_TOLERANCE_MM`.

    The one test of "no resampling needed" (shapes are compared on their first three axes).
    """
    return tuple(shape_a[:3]) == tuple(shape_b[:3]) and bool(
        np.allclose(np.asarray(affine_a, float), np.asarray(affine_b, float), atol=GRID_TOLERANCE_MM))


def _antialiased(data: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray) -> np.ndarray:
    """float32 ``data`` blurred by the missing FWHM when the target voxels are larger (else as is)."""
    src_zooms = np.sqrt((src_affine[:3, :3] ** 2).sum(axis=0))
    dst_zoom = float(np.cbrt(abs(np.linalg.det(dst_affine[:3, :3]))))
    fwhm_mm = np.sqrt(np.maximum(dst_zoom**2 - src_zooms**2, 0.0))
    data = np.asarray(data, dtype=np.float32)
    if not np.any(fwhm_mm > 0):
        return data
    sigma = fwhm_mm / (math.sqrt(8 * math.log(2)) * src_zooms)
    if data.ndim == 4:  # never blur along time
        sigma = np.append(sigma, 0.0)
    return ndimage.gaussian_filter(data, sigma, mode="constant")


def resample_to_grid(data: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray,
                     dst_shape: tuple[int, ...], order: int = 1, *, antialias: bool = False,
                     edge: str = "zero") -> np.ndarray:
    """``data`` (on ``src_affine``) resampled onto the grid ``(dst_affine, dst_shape)``; 0 outside.

    Parameters
    ----------
    data : numpy.ndarray
        3D, or 4D with time last (each volume resampled alike).
    src_affine, dst_affine : numpy.ndarray
        4 x 4 voxel -> world RAS+ mm of the input and of the output grid.
    dst_shape : tuple of int
        The output grid's (X, Y, Z).
    order : int
        Spline order: 1 (linear) for intensities and maps, 0 (nearest) for labels.
    antialias : bool
        Blur first when the output voxels are larger (see the module docstring); the
        input is then read as float32.
    edge : {"zero", "blend"}
        What lies outside the input (see the module docstring).

    Returns
    -------
    numpy.ndarray
        ``dst_shape`` (+ the time axis); float32, or the input's dtype for ``order=0``.
    """
    if edge not in EDGES:
        raise ValueError(f"edge must be one of {sorted(EDGES)}, not {edge!r}")
    src_affine = np.asarray(src_affine, dtype=np.float64)
    dst_affine = np.asarray(dst_affine, dtype=np.float64)
    data = _antialiased(data, src_affine, dst_affine) if antialias else np.asarray(data)
    if data.ndim == 4:
        return np.stack([resample_to_grid(data[..., t], src_affine, dst_affine, dst_shape, order, edge=edge)
                         for t in range(data.shape[3])], axis=-1)
    matrix = np.linalg.solve(src_affine, dst_affine)  # output voxel -> input voxel
    linear, offset = matrix[:3, :3], matrix[:3, 3]
    shape = tuple(int(s) for s in dst_shape[:3])
    dtype = data.dtype if order == 0 else np.dtype(np.float32)
    if edge == "blend":
        if order != 0 and data.dtype not in (np.float32, np.float64):
            data = data.astype(np.float32)
        nonzero = np.abs(linear) > 1e-9 * np.abs(linear).max()
        if np.all(nonzero.sum(axis=0) == 1) and np.all(nonzero.sum(axis=1) == 1):
            # Axis order, flips and zooms only: transpose the input so the mapping is
            # diagonal, which scipy resamples much faster (and linear is separable).
            perm = np.argmax(nonzero, axis=0)  # output axis i reads input axis perm[i]
            data, linear, offset = np.transpose(data, perm), linear[perm, np.arange(3)], offset[perm]
            if order == 1:
                return _separable_linear(data, linear, offset, shape).astype(dtype, copy=False)
    return ndimage.affine_transform(data, linear, offset=offset, output_shape=shape, order=order,
                                    mode=EDGES[edge], cval=0.0, output=dtype)


def _separable_linear(src: np.ndarray, scale: np.ndarray, offset: np.ndarray, dst_shape: tuple[int, ...]
                      ) -> np.ndarray:
    """Linear resampling for a diagonal mapping ``src = scale * dst + offset``, ``edge="blend"``.

    Linear interpolation is separable, so it is done one axis at a time with vectorised
    gathers, several times faster than scipy's generic (single-threaded) code. Samples
    beyond the source's edge blend towards 0 over one voxel and are 0 further out, the
    same as scipy's ``mode="grid-constant"`` with ``cval=0`` used for the general case.
    """
    out = np.asarray(src, dtype=np.float32)
    for axis in range(3):
        n_src = out.shape[axis]
        coords = scale[axis] * np.arange(int(dst_shape[axis]), dtype=np.float64) + offset[axis]
        # Pad one zero sample on each side; clip far-outside samples onto the padding.
        padded = np.pad(out, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        c = np.clip(coords + 1.0, 0.0, n_src + 1.0)
        i0 = np.clip(np.floor(c).astype(np.intp), 0, n_src)
        w = (c - i0).astype(np.float32)
        bshape = [1, 1, 1]
        bshape[axis] = -1
        w = w.reshape(bshape)
        out = np.take(padded, i0, axis=axis) * (1.0 - w) + np.take(padded, i0 + 1, axis=axis) * w
    return out
