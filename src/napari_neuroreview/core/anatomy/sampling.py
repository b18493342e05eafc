"""Partial-volume sampling of maps on the MNI 1 mm grid onto a scanner grid.

An MR voxel's signal is the integral of the object over the voxel: the 1 mm maps are
blurred to the target voxel's size and interpolated onto the target grid
(:func:`sample_template_maps`; the package docstring, step 1, says why).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
from scipy import ndimage

from ..io.resample import resample_to_grid
from .grids import voxel_to_world, world_to_voxel
from .mni import MNIAnatomy, load_mni_anatomy


def _pv_sigma_mm(dst_affine: np.ndarray, src_voxel_mm: np.ndarray) -> np.ndarray:
    """Per world axis, the Gaussian sigma (mm) that turns 1 mm samples into voxel averages.

    A box of width w has variance w**2 / 12. A target voxel's box, rotated into the world,
    has variance ``sum_i (L[a, i] ** 2) / 12`` along world axis ``a`` (``L`` the linear
    part of the affine); the source already integrates over its own box, so that variance
    is subtracted. The diagonal approximation ignores the covariance of an oblique box,
    which is small for the tilts scanners use.
    """
    linear = np.asarray(dst_affine, dtype=np.float64)[:3, :3]
    var = (linear**2).sum(axis=1) / 12.0 - src_voxel_mm**2 / 12.0
    return np.sqrt(np.clip(var, 0.0, None))


@functools.lru_cache(maxsize=1)
def _support_bbox_vox() -> tuple[np.ndarray, np.ndarray]:
    """Voxel bounding box (inclusive low, exclusive high) where any tissue map is nonzero."""
    anat = load_mni_anatomy()
    support = anat.brain | (anat.gm > 0) | (anat.wm > 0) | (anat.csf > 0)
    idx = np.argwhere(support)
    return idx.min(axis=0), idx.max(axis=0) + 1


def _sample_maps(
    anat: MNIAnatomy, dst_affine: np.ndarray, dst_shape: tuple[int, int, int]
) -> dict[str, np.ndarray]:
    """Partial-volume tissue fractions (csf, gm, wm, brain) on the target grid.

    See :func:`sample_template_maps`, which does the work.
    """
    names = ("csf", "gm", "wm", "brain")
    return sample_template_maps({name: getattr(anat, name) for name in names}, dst_affine, dst_shape, anat=anat)


def sample_template_maps(
    maps: "dict[str, np.ndarray]",
    dst_affine: np.ndarray,
    dst_shape: tuple[int, int, int],
    anat: MNIAnatomy | None = None,
    max_workers: int = 1,
) -> dict[str, np.ndarray]:
    """Partial-volume sample maps defined on the MNI 1 mm grid onto a scanner grid.

    Each map is blurred with the Gaussian that turns 1 mm samples into averages over the
    target voxel (see the package docstring, step 1) and linearly interpolated onto the
    target grid. Both steps are linear, so a map that is a weighted sum of tissue
    fractions (a noiseless signal) may be sampled directly instead of its parts.

    Only the part of the template that is nonzero and seen by the target grid is blurred
    and resampled (padded by the blur's reach), which gives the same numbers as working on
    the whole template in a fraction of the time. The maps must therefore be 0 outside the
    template's tissue support (where the brain mask and the tissue maps are all 0).

    Parameters
    ----------
    maps : dict of str to np.ndarray
        Arrays on the template grid (``anat.shape``); booleans are sampled as 0/1.
    dst_affine, dst_shape
        The target grid (see :func:`make_affine`).
    anat : MNIAnatomy or None
        The anatomy whose grid the maps are on (default: :func:`load_mni_anatomy`).
    max_workers : int
        Maps sampled in parallel threads (scipy's resampling releases the GIL); 1 keeps
        everything in the calling thread. The result does not depend on it.

    Returns
    -------
    dict of str to np.ndarray
        float32 maps on the target grid, clipped to [0, 1], under the same keys.
    """
    anat = load_mni_anatomy() if anat is None else anat
    src_vox = np.sqrt((anat.affine[:3, :3] ** 2).sum(axis=0))
    sigma_world = _pv_sigma_mm(dst_affine, src_vox)
    # The template grid is RAS-aligned, so world axis a is its voxel axis a.
    sigma_vox = sigma_world / src_vox
    blur = bool(np.any(sigma_vox > 0.2))
    reach = (np.floor(3.0 * sigma_vox + 0.5).astype(int) if blur else np.zeros(3, int)) + 2

    # Crop: target grid corners in template voxels, intersected with the maps' support.
    corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in dst_shape])))
    seen = world_to_voxel(anat.affine, voxel_to_world(dst_affine, corners))
    sup_lo, sup_hi = _support_bbox_vox()
    lo = np.maximum(np.maximum(np.floor(seen.min(axis=0)).astype(int), sup_lo) - reach, 0)
    hi = np.minimum(np.minimum(np.ceil(seen.max(axis=0)).astype(int) + 1, sup_hi) + reach, anat.shape)
    if np.any(hi <= lo):  # the grid sees no tissue
        return {name: np.zeros(dst_shape, np.float32) for name in maps}
    crop = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    crop_affine = anat.affine.copy()
    crop_affine[:3, 3] = voxel_to_world(anat.affine, lo)

    def one(data: np.ndarray) -> np.ndarray:
        src = np.asarray(data)[crop].astype(np.float32)
        if blur:
            src = ndimage.gaussian_filter(src, sigma=sigma_vox, mode="constant", cval=0.0, truncate=3.0)
        return np.clip(resample_to_grid(src, crop_affine, dst_affine, dst_shape, order=1, edge="blend"), 0.0, 1.0)

    names = list(maps)
    if max_workers > 1 and len(names) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(int(max_workers), len(names))) as pool:
            results = list(pool.map(one, [maps[n] for n in names]))
    else:
        results = [one(maps[n]) for n in names]
    return dict(zip(names, results))
