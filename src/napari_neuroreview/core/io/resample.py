"""The one grid-to-grid resampler: an array on one voxel grid pulled onto another by world mm.

Why one: showing an oblique scan (``orientation``), putting an ICA map on the model grid
and a post-operative map on the pre-operative grid (``tasks.networks``) are the same
operation, and each copy had to get the same three things right: the direction of the
mapping (each *output* voxel reads the input at ``inv(src_affine) @ dst_affine``),
zero outside the input rather than a smeared edge, and labels kept as labels
(``order=0`` keeps the input's dtype; any other order gives float32).

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

__all__ = ["resample_to_grid"]


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
                     dst_shape: tuple[int, ...], order: int = 1, *, antialias: bool = False) -> np.ndarray:
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

    Returns
    -------
    numpy.ndarray
        ``dst_shape`` (+ the time axis); float32, or the input's dtype for ``order=0``.
    """
    src_affine = np.asarray(src_affine, dtype=np.float64)
    dst_affine = np.asarray(dst_affine, dtype=np.float64)
    data = _antialiased(data, src_affine, dst_affine) if antialias else np.asarray(data)
    matrix = np.linalg.solve(src_affine, dst_affine)  # output voxel -> input voxel
    dtype = data.dtype if order == 0 else np.dtype(np.float32)
    shape = tuple(int(s) for s in dst_shape[:3])

    def one(volume: np.ndarray) -> np.ndarray:
        return ndimage.affine_transform(volume, matrix[:3, :3], offset=matrix[:3, 3], output_shape=shape,
                                        order=order, mode="constant", cval=0.0, output=dtype)

    if data.ndim == 3:
        return one(data)
    return np.stack([one(data[..., t]) for t in range(data.shape[3])], axis=-1)
