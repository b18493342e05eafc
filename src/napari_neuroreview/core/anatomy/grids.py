"""Scanner-like image grids over the MNI brain, and moving between grids and world mm.

:func:`make_affine` builds the grid a scanner would use (anisotropic voxels, any axis
order and sign, oblique prescriptions); :func:`voxel_to_world` and :func:`world_to_voxel`
map points through an affine. Moving an array between grids is
``core.io.resample.resample_to_grid`` (``edge="blend"`` for the anatomy's partial volume).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from nibabel.affines import apply_affine
from nibabel.orientations import axcodes2ornt

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
