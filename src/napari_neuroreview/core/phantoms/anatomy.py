"""Simulated T1-weighted head scans built on the MNI152 2009 template.

No patient data can be downloaded here, so every model in the plugin is trained and tested
on phantoms. This module supplies the anatomy they all share: the MNI152 ICBM 2009
(nonlinear symmetric, 1 mm) T1 template and its grey/white-matter probability maps, which
nilearn ships offline, and a way to "scan" that anatomy on any image grid a real scanner
could produce: anisotropic voxels, any voxel-axis order and sign (RAS, LPS, LAS, PIR ...),
and oblique slice prescriptions.

The physics imitated by :func:`make_t1_case`, step by step:

1. *Partial volume.* An MR voxel's signal is the integral of the object over the voxel's
   point-spread function. The 1 mm tissue-probability maps are blurred with a Gaussian
   whose variance matches a box of the target voxel's size (along each world axis) and
   then linearly interpolated onto the target grid. Probabilities are resampled *before*
   intensities are computed, so a coarse voxel half in grey and half in white matter gets
   the mixed signal a scanner would give it.
2. *T1 contrast.* Each tissue class gets a seeded mean signal with T1-weighted ordering
   (white matter > grey matter > CSF; background has no signal); a voxel's noiseless
   signal is the probability-weighted sum of those means (the linear partial-volume
   mixing model used by FSL FAST and SPM segmentation).
3. *Receive-coil inhomogeneity.* The signal is multiplied by a smooth bias field
   ``exp(bias_strength * p(x))``, with ``p`` a seeded random polynomial of degree <= 3 in
   world coordinates scaled to ``[-1, 1]`` over the brain's bounding box; SPM and N4 model
   the bias the same way (a smooth function in the log domain). Being defined in world
   millimetres, the field is the same object whatever grid the case is sampled on.
4. *Magnitude reconstruction.* White complex Gaussian noise of standard deviation
   ``noise_sd`` per channel is added to the (real) signal and the magnitude is taken, so
   the background follows a Rayleigh and the tissue a Rician distribution, as in any
   magnitude MR image. The noise is not modulated by the bias field: thermal noise in a
   single receive channel is spatially white while the coil sensitivity scales the signal.
5. *Storage.* The result is scaled by ``intensity_scale`` (default 1000: white matter ~850) and stored as
   int16 with the grid's affine in both qform and sform, as a scanner's converter would.

The ground truth (tissue labels, brain mask, anatomical landmarks in world RAS mm, and all
parameters) is returned beside the image. A model under test is only ever given the image.

The template is skull-stripped and cut at z = -72 mm (lower brainstem/cerebellum), so the
phantom is a "brain in air": there is no skull or scalp, which real T1 scans have.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.affines import apply_affine
from nibabel.orientations import axcodes2ornt
from scipy import ndimage

__all__ = [
    "INTENSITY_SCALE",
    "LANDMARKS_MNI",
    "TISSUE_LABELS",
    "AnatomyCase",
    "MNIAnatomy",
    "load_mni_anatomy",
    "make_affine",
    "make_t1_case",
    "random_bias_field",
    "complex_noise",
    "resample_to_grid",
    "sample_template_maps",
    "voxel_to_world",
    "world_to_voxel",
]

#: Stored value per unit of normalised signal: white matter lands near 850, as in the
#: arbitrary units of a typical scanner's int16 T1w export.
INTENSITY_SCALE: float = 1000.0

#: Labels of the tissue truth image (BIDS ``dseg`` style).
TISSUE_LABELS: dict[int, str] = {0: "background", 1: "csf", 2: "gm", 3: "wm"}

#: Mean normalised T1w signal of each tissue before seeded jitter. Measured as the median
#: template intensity where a class's probability exceeds 0.9 (CSF 0.28, GM 0.65, WM 0.87)
#: and rounded down slightly: the averaged template's CSF and GM are lifted by blur.
_TISSUE_MEANS: dict[str, float] = {"csf": 0.25, "gm": 0.60, "wm": 0.85}

#: Named anatomical landmarks in MNI152 2009 world coordinates (RAS+, mm). These are
#: approximate positions on this template, checked against its midline intensity profile:
#: the commissures are the brightest midline white-matter voxels of the two bundles, the
#: corpus-callosum points lie ~3 mm inside the anterior edge of the genu and the posterior
#: edge of the splenium. Since the phantom's anatomy sits in MNI space, these are also the
#: landmarks' world positions in every case, whatever its grid.
LANDMARKS_MNI: dict[str, tuple[float, float, float]] = {
    "anterior_commissure": (0.0, 3.0, -4.0),
    "posterior_commissure": (0.0, -25.0, -2.0),
    "genu_corpus_callosum": (0.0, 30.0, 3.0),
    "splenium_corpus_callosum": (0.0, -39.0, 11.0),
}

_DEFAULT_MARGIN_MM = 5.0


@dataclass(frozen=True, eq=False)
class MNIAnatomy:
    """The MNI152 2009 anatomy on its native 1 mm RAS grid (197 x 233 x 189).

    Attributes
    ----------
    t1 : np.ndarray
        float32 T1 template intensity scaled to [0, 1] (nilearn's scaling).
    gm, wm : np.ndarray
        float32 grey- and white-matter probabilities in [0, 1].
    csf : np.ndarray
        float32 CSF probability, derived as ``clip(brain - gm - wm, 0, 1)``: whatever of
        the brain mask is neither grey nor white matter is CSF. This is chosen over a
        threshold on the template intensity because it keeps the three classes summing to
        1 inside the mask (a proper partial-volume model) and puts the ventricles and the
        sulcal/subarachnoid CSF at the brain's edge where they are.
    brain : np.ndarray
        bool brain mask (nilearn's: template intensity > 0.2; it includes the ventricles).
    affine : np.ndarray
        float64 (4, 4) voxel -> world (MNI RAS+ mm) affine shared by all maps.
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the 1 mm grid."""
        return tuple(int(n) for n in self.t1.shape)  # type: ignore[return-value]

    @property
    def brain_bbox_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """World (RAS mm) corners, low and high, of the brain mask's bounding box.

        The box is measured on voxel centres and widened by half a voxel on each side, so
        its extent is the physical extent of the mask.
        """
        return _brain_bbox_mm(self)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=1)
def load_mni_anatomy() -> MNIAnatomy:
    """Load the MNI152 2009 template and tissue maps that nilearn ships (offline, cached).

    Returns
    -------
    MNIAnatomy
        Read-only float32 maps on the template's 1 mm RAS grid. The arrays are shared by
        every caller (the result is cached), hence read-only.
    """
    from nilearn import datasets  # local: nilearn is slow to import and only needed here

    t1_img = datasets.load_mni152_template(resolution=1)
    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm_img = datasets.load_mni152_wm_template(resolution=1)
    mask_img = datasets.load_mni152_brain_mask(resolution=1)
    affine = np.asarray(t1_img.affine, dtype=np.float64)
    for img in (gm_img, wm_img, mask_img):
        if img.shape != t1_img.shape or not np.allclose(img.affine, affine):
            raise RuntimeError("nilearn's MNI152 maps do not share one grid")

    t1 = np.clip(np.asarray(t1_img.get_fdata(dtype=np.float32)), 0.0, 1.0)
    gm = np.clip(np.asarray(gm_img.get_fdata(dtype=np.float32)), 0.0, 1.0)
    wm = np.clip(np.asarray(wm_img.get_fdata(dtype=np.float32)), 0.0, 1.0)
    brain = np.asarray(mask_img.dataobj) > 0
    csf = np.clip(brain.astype(np.float32) - gm - wm, 0.0, 1.0)
    return MNIAnatomy(
        t1=_readonly(t1.astype(np.float32)),
        gm=_readonly(gm.astype(np.float32)),
        wm=_readonly(wm.astype(np.float32)),
        csf=_readonly(csf.astype(np.float32)),
        brain=_readonly(brain),
        affine=_readonly(affine),
    )


@functools.lru_cache(maxsize=1)
def _brain_bbox_mm_cached() -> tuple[np.ndarray, np.ndarray]:
    anat = load_mni_anatomy()
    idx = np.argwhere(anat.brain)
    lo_vox = idx.min(axis=0).astype(float) - 0.5
    hi_vox = idx.max(axis=0).astype(float) + 0.5
    corners = np.array(list(itertools.product(*zip(lo_vox, hi_vox))))
    world = apply_affine(anat.affine, corners)
    return world.min(axis=0), world.max(axis=0)


def _brain_bbox_mm(anat: MNIAnatomy) -> tuple[np.ndarray, np.ndarray]:
    if anat is load_mni_anatomy():
        lo, hi = _brain_bbox_mm_cached()
        return lo.copy(), hi.copy()
    idx = np.argwhere(anat.brain)
    corners = np.array(list(itertools.product(*zip(idx.min(0) - 0.5, idx.max(0) + 0.5))))
    world = apply_affine(anat.affine, corners)
    return world.min(axis=0), world.max(axis=0)


# --------------------------------------------------------------------------- geometry


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
    target voxel (see the module docstring, step 1) and linearly interpolated onto the
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
        return np.clip(resample_to_grid(src, crop_affine, dst_affine, dst_shape, order=1), 0.0, 1.0)

    names = list(maps)
    if max_workers > 1 and len(names) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(int(max_workers), len(names))) as pool:
            results = list(pool.map(one, [maps[n] for n in names]))
    else:
        results = [one(maps[n]) for n in names]
    return dict(zip(names, results))


# --------------------------------------------------------------------------- bias field

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
    """A seeded receive-coil bias field on a grid, fast (see the module docstring, step 3).

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
    field = resample_to_grid(coarse, coarse_affine, affine, shape, order=1)
    return field.astype(np.float32, copy=False), coeffs


def complex_noise(
    rng: np.random.Generator, noise_sd: float, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """White complex Gaussian noise, real then imaginary channel (float32 each).

    Adding it to a complex signal and taking the magnitude gives the Rician (Rayleigh in
    the background) statistics of a magnitude MR image (module docstring, step 4); the
    angle of the same sum carries phase noise of standard deviation about
    ``noise_sd / |signal|`` where the signal is well above the noise.
    """
    real = rng.normal(0.0, noise_sd, size=shape).astype(np.float32)
    imag = rng.normal(0.0, noise_sd, size=shape).astype(np.float32)
    return real, imag


# --------------------------------------------------------------------------- T1 case


@dataclass(eq=False)
class AnatomyCase:
    """A simulated scan and the ground truth it was made from.

    Attributes
    ----------
    image : nib.Nifti1Image
        The simulated T1w image (int16 by default), affine in qform and sform.
    truth : dict
        ``'tissue'``: uint8 label image on the same grid (:data:`TISSUE_LABELS`), the
        most probable class of each voxel after partial-volume sampling;
        ``'brain_mask'``: uint8 image, 1 where at least half the voxel is brain;
        ``'landmarks'``: name -> world RAS mm (list of 3 floats);
        ``'params'``: every parameter and seeded draw, JSON-serialisable.
        Never give any of it to a model under test.
    """

    image: nib.Nifti1Image
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        """The case's parameters (same object as ``truth['params']``)."""
        return self.truth["params"]


def _nifti(data: np.ndarray, affine: np.ndarray, descrip: str) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)  # scanner anatomical
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = descrip[:79].encode("ascii")
    return img


def make_t1_case(
    seed: int,
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    orientation: str = "RAS",
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    bias_strength: float = 0.15,
    noise_sd: float = 0.03,
    tissue_jitter: float = 0.05,
    dtype: Any = np.int16,
    fov_mm: tuple[float, float, float] | None = None,
    center_ras: tuple[float, float, float] | None = None,
    margin_mm: float = _DEFAULT_MARGIN_MM,
    intensity_scale: float = INTENSITY_SCALE,
) -> AnatomyCase:
    """Simulate a T1-weighted scan of the MNI brain on a scanner-like grid.

    See the module docstring for the physics. The same arguments always give the same
    case (every random draw comes from ``numpy.random.default_rng(seed)``, in a fixed
    order: tissue means, bias field, noise).

    Parameters
    ----------
    seed : int
        Seed of all random draws.
    voxel_size, orientation, rotation_deg, fov_mm, center_ras, margin_mm
        The grid; see :func:`make_affine`.
    bias_strength : float
        Amplitude of the log bias field: the field spans ``exp(+-bias_strength)`` over the
        brain (0.15 gives about +-15 %, a typical uncorrected 32-channel head coil).
    noise_sd : float
        Standard deviation of each complex noise channel in units of the normalised signal
        (white matter ~0.85). In the background the image is Rayleigh distributed with
        ``sqrt(mean(M**2) / 2) = noise_sd * intensity_scale``.
    tissue_jitter : float
        Relative half-range of the uniform seeded jitter of each tissue's mean signal,
        imitating different scanners and sequence parameters. The T1w order WM > GM > CSF
        is enforced whatever the draw.
    dtype : numpy dtype
        Stored dtype; integer types are rounded and clipped to their range.
    intensity_scale : float
        Stored value per unit of normalised signal (the receiver gain and the converter's
        scaling, which differ between vendors and protocols; intensities of MR images are
        arbitrary units). White matter lands near ``0.85 * intensity_scale``.

    Returns
    -------
    AnatomyCase
        The image and its ground truth.
    """
    if bias_strength < 0 or noise_sd < 0 or tissue_jitter < 0 or not intensity_scale > 0:
        raise ValueError("bias_strength, noise_sd, tissue_jitter must be >= 0 and intensity_scale > 0")
    anat = load_mni_anatomy()
    affine, shape = make_affine(voxel_size, orientation, rotation_deg, fov_mm, center_ras, margin_mm)
    rng = np.random.default_rng(int(seed))

    # Seeded per-tissue contrast, T1w ordering enforced.
    draws = rng.uniform(-1.0, 1.0, size=3)
    means = {name: base * (1.0 + tissue_jitter * d) for (name, base), d in zip(_TISSUE_MEANS.items(), draws)}
    ordered = sorted(means.values())
    means = dict(zip(("csf", "gm", "wm"), ordered))
    coeffs = _bias_coefficients(rng)

    maps = _sample_maps(anat, affine, shape)
    signal = means["csf"] * maps["csf"] + means["gm"] * maps["gm"] + means["wm"] * maps["wm"]
    bias = _bias_field(coeffs, float(bias_strength), affine, shape)
    signal *= bias
    real = signal + rng.normal(0.0, noise_sd, size=shape).astype(np.float32)
    imag = rng.normal(0.0, noise_sd, size=shape).astype(np.float32)
    magnitude = np.hypot(real, imag) * np.float32(intensity_scale)

    out_dtype = np.dtype(dtype)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        data = np.clip(np.rint(magnitude), info.min, info.max).astype(out_dtype)
    else:
        data = magnitude.astype(out_dtype)

    # Truth: most probable class per voxel; background is what is left of the voxel.
    tissue_fracs = np.stack([maps["csf"], maps["gm"], maps["wm"]])
    background = np.clip(1.0 - tissue_fracs.sum(axis=0), 0.0, 1.0)
    labels = np.argmax(np.concatenate([background[None], tissue_fracs]), axis=0).astype(np.uint8)
    brain_mask = (maps["brain"] >= 0.5).astype(np.uint8)

    params: dict[str, Any] = {
        "generator": "napari_neuroreview.core.phantoms.anatomy.make_t1_case",
        "template": "MNI152 ICBM 2009 nonlinear symmetric (nilearn), 1 mm",
        "seed": int(seed),
        "voxel_size": [float(v) for v in voxel_size],
        "orientation": "".join(tuple(str(orientation).upper())),
        "rotation_deg": [float(r) for r in rotation_deg],
        "shape": [int(n) for n in shape],
        "affine": np.round(affine, 6).tolist(),
        "bias_strength": float(bias_strength),
        "bias_degree": _BIAS_DEGREE,
        "bias_coefficients": [float(c) for c in coeffs],
        "noise_sd": float(noise_sd),
        "noise_model": "rician (magnitude of complex gaussian)",
        "tissue_jitter": float(tissue_jitter),
        "tissue_means": {k: float(v) for k, v in means.items()},
        "intensity_scale": float(intensity_scale),
        "dtype": out_dtype.name,
        "labels": {str(k): v for k, v in TISSUE_LABELS.items()},
    }
    descrip = "neuroreview simulated T1w (MNI152 2009), not a patient"
    image = _nifti(data, affine, descrip)
    truth: dict[str, Any] = {
        "tissue": _nifti(labels, affine, "neuroreview tissue truth 0 bg 1 csf 2 gm 3 wm"),
        "brain_mask": _nifti(brain_mask, affine, "neuroreview brain mask truth"),
        "landmarks": {k: [float(c) for c in v] for k, v in LANDMARKS_MNI.items()},
        "params": params,
    }
    truth["tissue"].header.set_intent("label")
    return AnatomyCase(image=image, truth=truth)
