"""The MNI152 2009 anatomy that every phantom is built on, and its named landmarks.

nilearn ships the MNI152 ICBM 2009 (nonlinear symmetric, 1 mm) T1 template with its
grey/white-matter probability maps and brain mask offline; :func:`load_mni_anatomy`
loads them once (cached, read-only) with a CSF map derived from them. The phantoms'
anatomy sits in MNI space, so :data:`LANDMARKS_MNI` are also the landmarks' world
positions in every simulated case, whatever its grid.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
from nibabel.affines import apply_affine

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
