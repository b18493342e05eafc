"""Scanner-like image grids over the MNI brain, and moving between grids and world mm.

:func:`make_affine` builds the grid a scanner would use (anisotropic voxels, any axis
order and sign, oblique prescriptions); :func:`resample_to_grid` moves an array from one
grid onto another of the same world space; :func:`voxel_to_world` and
:func:`world_to_voxel` map points through an affine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from nibabel.affines import apply_affine
from nibabel.orientations import axcodes2ornt
from scipy import ndimage

from .mni import _brain_bbox_mm, load_mni_anatomy

#: Margin (mm) added around the brain's bounding box by the default field of view.
_DEFAULT_MARGIN_MM = 5.0


def voxel_to_world(affine: np.ndarray, ijk: Any) -> np.ndarray:
    """Map voxel indices (..., 3) to world RAS mm through ``affine``."""
    return apply_affine(np.asarray(affine, dtype=np.float64), np.asarray(ijk, dtype=np.float64))


def world_to_voxel(affine: np.ndarray, ras_mm: Any) -> np.ndarray:
    """Map world RAS mm (..., 3) to (fractional) voxel indices of the grid of ``affine``."""
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    return apply_affine(inv, np.asarray(ras_mm, dtype=np.float64))


def _rotation_matrix(rotation_deg: tuple[float, float, float]) -> np.ndarray:
    """Rotation by angles (degrees) about world x, then y, then z: ``Rz @ Ry @ Rx``."""
    ax, ay, az = (math.radians(float(a)) for a in rotation_deg)
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_affine(
    voxel_size: tuple[float, float, float],
    orientation: str = "RAS",
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    fov_mm: tuple[float, float, float] | None = None,
    center_ras: tuple[float, float, float] | None = None,
    margin_mm: float = _DEFAULT_MARGIN_MM,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Build the grid a scanner would use to image the MNI brain.

    Parameters
    ----------
    voxel_size : tuple of 3 floats
        Voxel size in mm along voxel axes i, j, k (e.g. ``(1.2, 1.2, 1.5)``: thick
        slices along k, as in a routine anisotropic acquisition).
    orientation : str
        Three nibabel axis codes naming the direction each voxel axis points to
        (``"RAS"``: i towards Right, j Anterior, k Superior; ``"LPS"``: DICOM/ITK order;
        ``"LAS"``: FSL's radiological storage; ``"PIR"``: a sagittal acquisition).
    rotation_deg : tuple of 3 floats
        Oblique prescription: the whole grid is rotated about its centre by these angles
        (degrees) about the world x, y and z axes (applied in that order), as when a
        technologist tilts the slab to the AC-PC line. The field of view rotates with it.
    fov_mm : tuple of 3 floats or None
        Extent of the field of view along world R-L, A-P and S-I (before rotation). The
        default covers the template's brain-mask bounding box plus ``margin_mm`` on each
        side (about 155 x 191 x 165 mm).
    center_ras : tuple of 3 floats or None
        World position (RAS mm) of the grid's centre. The default is the centre of the
        brain-mask bounding box, about (0, -17, 5): the template's mask reaches down to
        z = -72 mm through the cerebellum, so a centre higher up would crop it.
    margin_mm : float
        Margin added on each side of the brain bounding box when ``fov_mm`` is None.

    Returns
    -------
    affine : np.ndarray
        (4, 4) voxel -> world RAS mm affine.
    shape : tuple of 3 ints
        Grid shape, ``ceil(fov / voxel size)`` along each voxel axis.

    Raises
    ------
    ValueError
        If the orientation is not three distinct axis codes or a voxel size is not > 0.
    """
    vs = np.asarray(voxel_size, dtype=np.float64)
    if vs.shape != (3,) or not np.all(vs > 0) or not np.all(np.isfinite(vs)):
        raise ValueError(f"voxel_size must be three positive numbers, got {voxel_size!r}")
    codes = tuple(str(orientation).upper())
    try:
        ornt = axcodes2ornt(codes)
    except Exception as exc:  # nibabel raises ValueError for repeated/unknown codes
        raise ValueError(f"orientation must be three nibabel axis codes such as 'RAS', got {orientation!r}") from exc
    if len(codes) != 3 or np.isnan(ornt).any() or len(set(ornt[:, 0].astype(int))) != 3:
        raise ValueError(f"orientation must be three nibabel axis codes such as 'RAS', got {orientation!r}")

    # Direction cosines: column i is the world unit vector voxel axis i points along.
    directions = np.zeros((3, 3))
    for i, (axis, flip) in enumerate(ornt):
        directions[int(axis), i] = flip
    directions = _rotation_matrix(rotation_deg) @ directions

    lo, hi = _brain_bbox_mm(load_mni_anatomy())
    if fov_mm is None:
        fov = (hi - lo) + 2.0 * float(margin_mm)
    else:
        fov = np.asarray(fov_mm, dtype=np.float64)
        if fov.shape != (3,) or not np.all(fov > 0):
            raise ValueError(f"fov_mm must be three positive numbers, got {fov_mm!r}")
    center = (lo + hi) / 2.0 if center_ras is None else np.asarray(center_ras, dtype=np.float64)

    world_axis = ornt[:, 0].astype(int)
    shape = tuple(int(math.ceil(fov[world_axis[i]] / vs[i] - 1e-6)) for i in range(3))
    linear = directions * vs[np.newaxis, :]
    centre_vox = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = center - linear @ centre_vox
    return affine, shape  # type: ignore[return-value]


def resample_to_grid(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
    order: int = 1,
) -> np.ndarray:
    """Resample ``data`` from its grid onto another grid of the same world space.

    Parameters
    ----------
    data : np.ndarray
        3D array on the source grid.
    src_affine, dst_affine : np.ndarray
        (4, 4) voxel -> world affines of the source and destination grids.
    dst_shape : tuple of 3 ints
        Destination grid shape.
    order : int
        Spline order: 1 (trilinear) for intensities and probabilities, 0 (nearest) for
        labels, which must not be blended.

    Returns
    -------
    np.ndarray
        The resampled array; points outside the source volume are 0 (scipy's
        ``mode="grid-constant"``, ``cval=0``: within one voxel of the edge, a linear
        sample blends the edge voxel with 0, as a voxel half outside would). Labels
        (order 0) keep the input dtype, everything else is float32.
    """
    src_affine = np.asarray(src_affine, dtype=np.float64)
    dst_affine = np.asarray(dst_affine, dtype=np.float64)
    # dst voxel -> world -> src voxel
    mapping = np.linalg.inv(src_affine) @ dst_affine
    matrix, offset = mapping[:3, :3], mapping[:3, 3]
    if order == 0:
        src = data
        out_dtype = data.dtype
    else:
        src = data if data.dtype in (np.float32, np.float64) else data.astype(np.float32)
        out_dtype = np.dtype(np.float32)
    nonzero = np.abs(matrix) > 1e-9 * np.abs(matrix).max()
    if np.all(nonzero.sum(axis=0) == 1) and np.all(nonzero.sum(axis=1) == 1):
        # Grids differ by a permutation, flips and zooms (no obliquity): transpose the
        # source so the mapping is diagonal, which scipy resamples much faster.
        perm = np.argmax(nonzero, axis=0)  # dst axis i reads src axis perm[i]
        src = np.transpose(src, perm)
        matrix_arg: np.ndarray = matrix[perm, np.arange(3)]
        offset = offset[perm]
        if order == 1:
            return _separable_linear(src, matrix_arg, offset, dst_shape).astype(out_dtype, copy=False)
    else:
        matrix_arg = matrix
    return ndimage.affine_transform(
        src,
        matrix_arg,
        offset=offset,
        output_shape=tuple(int(n) for n in dst_shape),
        order=order,
        mode="grid-constant",
        cval=0.0,
        prefilter=order > 1,
        output=out_dtype,
    )


def _separable_linear(
    src: np.ndarray, scale: np.ndarray, offset: np.ndarray, dst_shape: tuple[int, int, int]
) -> np.ndarray:
    """Trilinear resampling for a diagonal mapping ``src = scale * dst + offset``.

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
