"""Patches around candidates, on a fixed millimetre grid, and masks back onto the scan.

Why a fixed physical grid: scans come at 0.9 x 0.9 x 1.8 mm, 0.5 x 0.5 x 2 mm and more,
in any voxel order. The CNN sees every patch as a 20^3 cube of 0.8 mm voxels laid out in
world (RAS) axes, so it learns one size of microbleed and one direction for B0 (the phase
dipole runs along z), whatever the file's grid. Its segmentation is sampled back onto the
scan's own voxels to make the instance mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

PATCH = 20
PATCH_MM = 0.8


def patch_offsets_mm() -> np.ndarray:
    """(PATCH^3, 3) RAS offsets (mm) of the patch voxel centres from the patch centre."""
    axis = (np.arange(PATCH) - (PATCH - 1) / 2.0) * PATCH_MM
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    return grid.reshape(-1, 3)


def sample_patches(
    channels: list[np.ndarray],
    affine: np.ndarray,
    centres_vox: np.ndarray,
) -> np.ndarray:
    """Sample (N, C, PATCH, PATCH, PATCH) patches centred on voxel positions.

    Parameters
    ----------
    channels : list of numpy.ndarray
        Images on the scan's grid (e.g. contrast and phase).
    affine : numpy.ndarray
        The scan's voxel -> RAS affine.
    centres_vox : numpy.ndarray
        (N, 3) voxel coordinates (may be fractional).
    """
    centres_vox = np.atleast_2d(np.asarray(centres_vox, dtype=float))
    n = len(centres_vox)
    out = np.zeros((n, len(channels), PATCH, PATCH, PATCH), dtype=np.float32)
    if n == 0:
        return out
    inv = np.linalg.inv(affine)
    offsets_vox = patch_offsets_mm() @ inv[:3, :3].T  # RAS offsets -> voxel offsets
    coords = (centres_vox[:, None, :] + offsets_vox[None, :, :]).reshape(-1, 3).T
    for c, image in enumerate(channels):
        if image.size == 1:  # a constant channel (e.g. the has-phase flag) is stored as one voxel
            out[:, c] = float(image.ravel()[0])
            continue
        values = ndimage.map_coordinates(image, coords, order=1, mode="nearest")
        out[:, c] = values.reshape(n, PATCH, PATCH, PATCH)
    return out


def patch_to_scan_mask(
    probability: np.ndarray,
    affine: np.ndarray,
    centre_vox: np.ndarray,
    shape: tuple[int, int, int],
    threshold: float = 0.5,
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Resample one patch's probability map onto scan voxels; keep the centre's component.

    Returns the bounding box (slices into the scan) and the boolean mask inside it.
    """
    half_mm = PATCH * PATCH_MM / 2.0
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    half_vox = np.ceil(half_mm / zooms).astype(int)
    centre = np.rint(centre_vox).astype(int)
    lo = np.maximum(centre - half_vox, 0)
    hi = np.minimum(centre + half_vox + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    ijk = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), axis=-1)
    ras_offsets = (ijk - np.asarray(centre_vox, float)) @ affine[:3, :3].T
    patch_index = ras_offsets / PATCH_MM + (PATCH - 1) / 2.0
    values = ndimage.map_coordinates(probability, patch_index.reshape(-1, 3).T, order=1, mode="constant", cval=0.0)
    mask = values.reshape(ijk.shape[:3]) >= threshold
    labels, count = ndimage.label(mask)
    if count == 0:
        return box, mask
    local_centre = tuple(np.clip(centre - lo, 0, np.array(mask.shape) - 1))
    keep = labels[local_centre]
    if keep == 0:  # centre fell just outside: keep the component nearest to it
        dist = ndimage.distance_transform_edt(labels == 0, return_indices=True)[1]
        keep = labels[tuple(dist[:, local_centre[0], local_centre[1], local_centre[2]])]
    return box, labels == keep
