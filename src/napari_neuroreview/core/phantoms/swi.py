"""Simulated susceptibility-weighted (SWI) scans with cerebral microbleeds and their mimics.

A microbleed (CMB) detector is only useful if it rejects what looks like a microbleed on a
single slice: veins cut across, the iron of the deep grey nuclei, calcifications, the
dark spots at sulci and at air-bone interfaces. This module simulates a T2*-weighted
gradient-echo (GRE) magnitude image and its filtered phase, on the MNI152 2009 anatomy of
:mod:`~napari_neuroreview.core.phantoms.anatomy`, with seeded microbleeds and seeded
mimics, and returns the ground truth beside the images. A model under test is only ever
given the images.

What is imitated, and why
-------------------------
*Tissue contrast.* A GRE voxel's signal is ``PD * exp(-TE / T2*)`` (spoiled, low flip
angle; the T1 saturation at a typical SWI TR of ~30 ms is folded into an effective proton
density). CSF has a long T2* and is brightest; grey matter is brighter than white matter
(higher water content, and myelin shortens white matter's T2*). Deep grey nuclei hold
ferritin iron, which shortens T2*: the globus pallidus is darkest, then the substantia
nigra, red nucleus and dentate nucleus, then the putamen; caudate and thalamus are only
slightly darker than cortex. The nuclei are placed as soft-edged ellipsoids at documented
MNI coordinates (:data:`NUCLEI_MNI`); the same parameters are used on both sides, so the
iron is bilateral and symmetric, one of the ways a reader tells it from microbleeds. The
tissue signal is made on the 1 mm template from its grey/white/CSF maps and sampled onto
the scanner grid with partial volume (:func:`~.anatomy.sample_template_maps`). Contrast
therefore depends on ``te_ms`` the way a real GRE's does.

*Microbleeds.* Haemosiderin deposits: round, sharply hypointense (the voxel signal drops
to 10-30 % of the surrounding tissue), 2-10 mm. Their apparent size "blooms" beyond the
deposit because the susceptibility field dephases the spins around it, more so the longer
the echo: the visible radius is ``r_true * (1 + k * TE)`` with
:data:`BLOOMING_K_PER_MS` ``k = 0.015 / ms`` (x1.3 at TE = 20 ms, x1.6 at 40 ms). ``k`` is
phenomenological, chosen to give the size growth between short- and long-TE scans that
clinical comparisons describe; it is not a measured constant. Every object is rendered by
sub-voxel supersampling (samples <= 0.35 mm apart on clinical grids), so edges are
partial-volumed and a 2 mm bleed in a 1.8 mm slice is a grey smudge, not a cube. The
instance truth is the visible extent (voxels at least half inside the bloomed sphere, as
a rater would outline it). Locations follow the MARS
classes: *lobar* at the cortico-subcortical (grey/white) junction of the cerebral lobes
(the typical site in cerebral amyloid angiopathy), *deep* in the basal ganglia, internal
capsule and thalamus (hypertensive arteriolosclerosis) and *infratentorial* in the
brainstem and cerebellum; the boxes are :data:`REGION_BOXES_MNI`. Microbleeds never
overlap each other or a mimic.

*Phase.* The field of a susceptibility source is computed analytically along B0 (world
z, the scanner's bore axis; the head's slight rotation is in the affine). We use the
macroscopic field ``B = mu0 (H + M)`` of uniformly magnetised objects, without the Lorentz
sphere correction: inside a sphere the shift is ``+2/3 dchi``, outside it is the dipole
``dchi/3 (a/r)**3 (3 cos**2 theta - 1)`` (positive above and below along B0, negative
around the equator); inside a cylinder at angle ``theta`` to B0 it is
``dchi (1 + cos**2 theta) / 2`` and outside ``dchi/2 sin**2 theta (a/rho)**2 cos 2 psi``.
With the Lorentz correction the inside of a sphere would have no shift at all and the
sign of a bleed's core would come only from voxel averaging of its polar lobes; filtered
phase images nonetheless show a core whose sign follows the susceptibility, which is how
radiologists tell blood products from calcifications without CT, so we keep the form that
shows it. Sign convention (:data:`PHASE_CONVENTION`): positive phase = paramagnetic
(deoxyhaemoglobin, haemosiderin, ferritin), negative = diamagnetic (calcium); some
vendors store the opposite sign. Phase = ``2 pi * 42.58 MHz/T * B0 * TE * shift`` (3 T),
averaged over each voxel as the complex signal is (``angle(mean(m * exp(i phi)))``, ``m``
the sub-voxel magnitude). The image is the phase after background-field removal (the
high-pass filtering of SWI processing): only the local sources are present, and it is set
to 0 outside the brain mask, where background removal leaves it undefined.

*Veins.* Deoxyhaemoglobin makes veins paramagnetic and dark (T2* shortening plus
dephasing). Medullary veins run from the wall of the lateral ventricles outwards and
upwards through the white matter to the cortex; superficial cortical veins run along the
sulci up to the superior sagittal sinus. Both are tubes of 1-2.5 mm visible diameter
continuous across several slices: that continuity, not the single-slice look, is what
separates a vein cut across from a microbleed. Their effective susceptibility (0.10-0.20
ppm) is venous blood's (~0.3-0.45 ppm SI) diluted by partial volume.

*Sulcal and air-bone spots.* Pial vessels and sulcal partial volume give small, irregular
dark spots at the brain surface (a weak paramagnetic source). Near the paranasal sinuses
and the mastoid, the air-bone interface makes a strong field gradient: irregular,
flattened signal voids on the inferior frontal and temporal surface, with a residual
phase ramp that background removal does not take out (it may wrap).

*Calcifications.* Round and dark on the magnitude like a microbleed, but diamagnetic: the
phase has the opposite sign, the only way to tell them apart without CT. Sites: choroid
plexus glomus, pineal gland, basal ganglia.

*Scanner.* A smooth receive-coil bias field (:func:`~.anatomy.random_bias_field`),
white complex noise and magnitude reconstruction (Rician magnitude; phase noise of about
``noise_sd / |S|``, large in the dark microbleed cores, as on real scans), and a slight
seeded rotation of the head in the scanner (an oblique affine). The magnitude is the GRE
magnitude, not multiplied by SWI's phase mask (Haacke 2004): that image can be made from
the two, and leaving it out keeps calcifications as dark as bleeds on the magnitude.

*Not simulated.* Flow voids, superficial siderosis, skull and scalp (the template is a
brain in air), motion other than the head's rotation, and the attenuation of a lesion's
own phase by the high-pass filter.

Rendering is local: each object is drawn in a small box around itself (supersampled only
where a voxel may touch it), so a whole-brain case at 0.9 x 0.9 x 1.8 mm takes 2-3 s on
two cores, after the template's one-time load.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nibabel as nib
import numpy as np
from scipy import integrate, ndimage
from scipy.spatial import cKDTree

from napari_neuroreview.core.io.atomic import write_with
from napari_neuroreview.core.phantoms.anatomy import (
    complex_noise,
    load_mni_anatomy,
    make_affine,
    random_bias_field,
    sample_template_maps,
    voxel_to_world,
    world_to_voxel,
)

__all__ = [
    "B0_T",
    "BLOOMING_K_PER_MS",
    "CMB_SAMPLE",
    "LOCATIONS",
    "MIMIC_LABELS",
    "MIMIC_TYPES",
    "NUCLEI_MNI",
    "PHASE_CONVENTION",
    "PHASE_STEP_RAD",
    "SAMPLE_PHASE_STEP_RAD",
    "REGION_BOXES_MNI",
    "SWICase",
    "in_region_box",
    "load_swi_truth",
    "make_swi_case",
    "phase_nifti_bytes",
    "write_cmb_sample",
    "write_swi_cohort",
]

# --------------------------------------------------------------------------- constants

#: Main field strength (T) the phase is simulated at.
B0_T: float = 3.0
#: Gyromagnetic ratio of 1H over 2 pi (Hz/T).
_GAMMA_BAR_HZ_PER_T: float = 42.577478e6
#: Blooming: visible radius = true radius * (1 + k * TE[ms]). Phenomenological.
BLOOMING_K_PER_MS: float = 0.015
#: Phase sign convention of the simulated phase images.
PHASE_CONVENTION: str = (
    "positive phase = paramagnetic (dchi > 0: haemosiderin, deoxyhaemoglobin, ferritin); "
    "negative = diamagnetic (calcification); B0 along world +z (RAS superior)"
)
#: Quantisation step (rad) of cohort phase images written to disk (int16 with scl_slope):
#: a tenth of the phase noise in white matter at the default noise.
PHASE_STEP_RAD: float = 0.005
#: The same for the committed sample, coarser to fit its size budget.
SAMPLE_PHASE_STEP_RAD: float = 0.015

#: Labels of the mimic truth image.
MIMIC_LABELS: dict[int, str] = {0: "none", 1: "vein", 2: "iron", 3: "sulcal/airbone", 4: "calcification"}
_MIMIC_LABEL_OF = {"vein": 1, "iron": 2, "sulcal": 3, "airbone": 3, "calcification": 4}
#: Mimic types, as keys of ``make_swi_case(mimics=...)``.
MIMIC_TYPES: tuple[str, ...] = ("vein", "iron", "sulcal", "airbone", "calcification")
#: Microbleed location classes (MARS).
LOCATIONS: tuple[str, ...] = ("lobar", "deep", "infratentorial")

#: Regions (MNI152 2009 world mm) where deep and infratentorial microbleeds are placed,
#: as ``(|x| range, y range, z range)``, on both hemispheres. Read off the template:
#: basal ganglia = putamen, globus pallidus, caudate head and internal capsule (Seitzman
#: 2018's basal-ganglia ROIs lie at |x| 12-29, y -10..18, z -5..19); thalamus around its
#: ROIs at |x| 3-19, y -8..-29. The brainstem box runs from the midbrain to the medulla
#: (the template stops at z = -72), the cerebellar box lies below the tentorium.
#: Lobar microbleeds are at the grey/white junction outside these boxes and above the
#: tentorium.
REGION_BOXES_MNI: dict[str, dict[str, tuple[tuple[float, float], ...]]] = {
    "deep": {
        "basal_ganglia": ((10.0, 32.0), (-12.0, 22.0), (-8.0, 16.0)),
        "thalamus": ((3.0, 20.0), (-34.0, -6.0), (-4.0, 16.0)),
    },
    "infratentorial": {
        "brainstem": ((0.0, 10.0), (-42.0, -14.0), (-50.0, -16.0)),
        "cerebellum": ((6.0, 42.0), (-88.0, -46.0), (-56.0, -22.0)),
    },
}

#: Deep grey nuclei (right-hemisphere centre, mirrored to the left; MNI152 2009 mm),
#: soft-edged axis-aligned ellipsoids with approximate 3 T T2* (ms) and effective
#: susceptibility after background removal (ppm). Centres from the template (the pallidum
#: is the white-matter-like strip medial to the putamen at x 16-24) and from Seitzman
#: 2018's subcortical ROIs; T2*: globus pallidus ~20 ms (R2* ~ 50/s), substantia nigra and
#: red nucleus ~22-25 ms, dentate ~23 ms, putamen ~32 ms, caudate ~40 ms, thalamus
#: ~44 ms. ``mimic``: labelled as iron in the mimic truth (small, dark, round enough to be
#: mistaken for a bleed on one slice).
NUCLEI_MNI: dict[str, dict[str, Any]] = {
    "putamen": {"centre": (27.0, 2.0, 1.0), "semi_axes": (5.0, 13.0, 8.0), "t2star_ms": 32.0,
                "dchi_ppm": 0.05, "mimic": False},
    "caudate_head": {"centre": (13.0, 13.0, 9.0), "semi_axes": (3.5, 7.0, 7.0), "t2star_ms": 40.0,
                     "dchi_ppm": 0.03, "mimic": False},
    "thalamus": {"centre": (11.0, -18.0, 6.0), "semi_axes": (7.0, 11.0, 7.0), "t2star_ms": 44.0,
                 "dchi_ppm": 0.02, "mimic": False},
    "globus_pallidus": {"centre": (19.5, -4.0, -2.0), "semi_axes": (3.8, 8.0, 5.0), "t2star_ms": 20.0,
                        "dchi_ppm": 0.12, "mimic": True},
    "substantia_nigra": {"centre": (11.0, -18.0, -12.0), "semi_axes": (3.0, 6.0, 2.5), "t2star_ms": 23.0,
                         "dchi_ppm": 0.10, "mimic": True},
    "red_nucleus": {"centre": (5.0, -20.0, -8.5), "semi_axes": (3.0, 3.5, 3.0), "t2star_ms": 24.0,
                    "dchi_ppm": 0.08, "mimic": True},
    "dentate": {"centre": (15.0, -57.0, -35.0), "semi_axes": (5.0, 7.0, 5.0), "t2star_ms": 23.0,
                "dchi_ppm": 0.08, "mimic": True},
}

#: Effective proton density (T1 saturation at SWI's TR folded in) and T2* (ms) at 3 T.
_TISSUE_PD: dict[str, float] = {"csf": 0.86, "gm": 0.80, "wm": 0.69}
_TISSUE_T2STAR_MS: dict[str, float] = {"csf": 300.0, "gm": 52.0, "wm": 44.0}
_NUCLEUS_PD = 0.76
_EDGE_MM = 1.5  # soft edge of the nuclei ellipsoids

#: Calcification sites (right side, mirrored; MNI mm): choroid plexus glomus in the
#: atrium of the lateral ventricle, the pineal gland behind the third ventricle (midline),
#: the putamen.
_CALC_SITES: dict[str, tuple[float, float, float]] = {
    "choroid_plexus": (23.0, -40.0, 14.0),
    "pineal": (0.0, -32.0, 1.0),
    "basal_ganglia": (26.0, 6.0, 3.0),
}
_CALC_SITE_WEIGHTS = (0.45, 0.3, 0.25)

_SUB_MM = 0.35  # sub-voxel sample spacing
_MAX_SUB = 64  # sub-samples per voxel on coarse grids (about; ceil per axis)
_GAP_MM = 1.5  # minimum clearance between the visible extents of objects
_SURFACE_CENTRE = np.array([0.0, -18.0, 12.0])  # where surface rays start


def _rad_per_ppm(te_ms: float) -> float:
    """Phase (rad) per ppm of field shift: 2 pi * gamma-bar * B0 * TE."""
    return 2.0 * math.pi * _GAMMA_BAR_HZ_PER_T * B0_T * (te_ms * 1e-3) * 1e-6


def _bloom(te_ms: float) -> float:
    return 1.0 + BLOOMING_K_PER_MS * float(te_ms)


def in_region_box(ras_mm: Any, location: str) -> bool:
    """Whether a world (MNI) point lies in one of the boxes of a deep/infratentorial class.

    Parameters
    ----------
    ras_mm : sequence of 3 floats
        World RAS mm.
    location : str
        ``'deep'`` or ``'infratentorial'`` (see :data:`REGION_BOXES_MNI`).
    """
    return _box_name(np.asarray(ras_mm, float), location) is not None


def _box_name(p: np.ndarray, location: str) -> str | None:
    for name, ((x0, x1), (y0, y1), (z0, z1)) in REGION_BOXES_MNI[location].items():
        if x0 <= abs(p[0]) <= x1 and y0 <= p[1] <= y1 and z0 <= p[2] <= z1:
            return name
    return None


def _in_boxes(xyz: np.ndarray, location: str, pad: float = 0.0) -> np.ndarray:
    out = np.zeros(len(xyz), bool)
    ax = np.abs(xyz[:, 0])
    for (x0, x1), (y0, y1), (z0, z1) in REGION_BOXES_MNI[location].values():
        out |= (
            (ax >= x0 - pad) & (ax <= x1 + pad) & (xyz[:, 1] >= y0 - pad) & (xyz[:, 1] <= y1 + pad)
            & (xyz[:, 2] >= z0 - pad) & (xyz[:, 2] <= z1 + pad)
        )
    return out


# --------------------------------------------------------------------------- template lookups


def _lookup(data: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Nearest-voxel value of a template map at world points (..., 3); 0 outside."""
    anat = load_mni_anatomy()
    ijk = np.rint(world_to_voxel(anat.affine, pts)).astype(np.intp)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(anat.shape)), axis=-1)
    ijk = np.clip(ijk, 0, np.asarray(anat.shape) - 1)
    out = data[ijk[..., 0], ijk[..., 1], ijk[..., 2]]
    return np.where(inside, out, np.zeros((), out.dtype))


@dataclass(frozen=True)
class _Candidates:
    points: np.ndarray  # (N, 3) world mm of 1 mm template voxel centres
    depth: np.ndarray  # (N,) mm to the nearest CSF (>= 0.5) or outside the brain
    region: np.ndarray  # (N,) index into names
    names: tuple[str, ...]


@functools.lru_cache(maxsize=1)
def _location_candidates() -> dict[str, _Candidates]:
    """Template voxels where microbleeds of each MARS class may be centred (cached).

    deep: parenchyma (grey + white >= 0.9, CSF < 0.1) in the deep boxes (0.5 mm inside
    their faces: centres are jittered by up to 0.5 mm); infratentorial:
    the same in the brainstem/cerebellum boxes; lobar: grey/white junction (both >= 0.3,
    CSF < 0.1) outside the deep boxes (padded 3 mm) and above the tentorium (not below
    z = -12 behind y = -40, not in the diencephalon/midbrain below the thalami).
    """
    anat = load_mni_anatomy()
    gm, wm, csf, brain = anat.gm, anat.wm, anat.csf, anat.brain
    ijk = np.argwhere(brain)
    xyz = voxel_to_world(anat.affine, ijk).astype(np.float32)
    g, w, c = gm[brain], wm[brain], csf[brain]
    # Depth below CSF/outside, on a 2 mm grid (ample for a clearance test).
    solid = brain & (csf < 0.5)
    depth2 = ndimage.distance_transform_edt(solid[::2, ::2, ::2], sampling=2.0).astype(np.float32)
    depth = depth2[ijk[:, 0] // 2, ijk[:, 1] // 2, ijk[:, 2] // 2]

    parenchyma = (g + w >= 0.9) & (c < 0.1)
    out: dict[str, _Candidates] = {}
    for loc in ("deep", "infratentorial"):
        names = tuple(REGION_BOXES_MNI[loc])
        region = np.full(len(xyz), -1, np.int8)
        ax = np.abs(xyz[:, 0])
        for r, ((x0, x1), (y0, y1), (z0, z1)) in enumerate(REGION_BOXES_MNI[loc].values()):
            # 0.5 mm inside the box, so that the sub-millimetre jitter of a centre keeps it in
            h = 0.5
            inbox = (ax >= (x0 + h if x0 > 0 else 0.0)) & (ax <= x1 - h) & (xyz[:, 1] >= y0 + h)
            inbox &= (xyz[:, 1] <= y1 - h) & (xyz[:, 2] >= z0 + h) & (xyz[:, 2] <= z1 - h)
            region[inbox & (region < 0)] = r
        keep = parenchyma & (region >= 0)
        out[loc] = _Candidates(xyz[keep], depth[keep], region[keep], names)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    junction = (g >= 0.3) & (w >= 0.3) & (c < 0.1)
    below_tentorium = (y < -40.0) & (z < -12.0)
    diencephalon = (np.abs(x) < 16.0) & (y > -45.0) & (y < 5.0) & (z < -2.0)
    keep = (
        junction & ~below_tentorium & ~diencephalon & (z > -40.0)
        & ~_in_boxes(xyz, "deep", pad=3.0) & ~_in_boxes(xyz, "infratentorial", pad=3.0)
    )
    out["lobar"] = _Candidates(xyz[keep], depth[keep], np.zeros(int(keep.sum()), np.int8), ("cerebral_lobes",))
    return out


@functools.lru_cache(maxsize=1)
def _periventricular_starts() -> np.ndarray:
    """World points in white matter just outside the lateral ventricles' bodies (cached)."""
    anat = load_mni_anatomy()
    lo = np.rint(world_to_voxel(anat.affine, (-30.0, -40.0, 0.0))).astype(int)
    hi = np.rint(world_to_voxel(anat.affine, (30.0, 25.0, 36.0))).astype(int) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    vent = anat.csf[box] >= 0.8
    near = ndimage.binary_dilation(vent, iterations=2) & ~ndimage.binary_dilation(vent, iterations=1)
    ok = near & (anat.wm[box] >= 0.6) & (anat.csf[box] < 0.2)
    pts = voxel_to_world(anat.affine, np.argwhere(ok) + lo)
    sel = (np.abs(pts[:, 0]) >= 8) & (np.abs(pts[:, 0]) <= 26) & (pts[:, 1] >= -35) & (pts[:, 1] <= 20)
    sel &= (pts[:, 2] >= 8) & (pts[:, 2] <= 32)
    return pts[sel]


def _surface_radius(directions: np.ndarray) -> np.ndarray:
    """Distance (mm) from :data:`_SURFACE_CENTRE` to the brain surface along unit rays."""
    anat = load_mni_anatomy()
    r = np.arange(0.0, 110.0, 0.5)
    pts = _SURFACE_CENTRE + directions[:, None, :] * r[None, :, None]
    inside = _lookup(anat.brain, pts)
    # outermost brain sample along each ray
    idx = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
    return np.where(inside.any(axis=1), r[idx], 0.0)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _tangent_frame(n: np.ndarray) -> np.ndarray:
    """3x3 rotation whose last column is the unit normal n."""
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    t1 = _unit(np.cross(n, a))
    t2 = np.cross(n, t1)
    return np.stack([t1, t2, n], axis=1)


@functools.lru_cache(maxsize=16)
def _demag_z(semi: tuple[float, float, float]) -> float:
    """Demagnetising factor of an ellipsoid along z (Osborn 1945's integral)."""
    a, b, c = semi
    f = lambda s: 1.0 / ((s + c * c) ** 1.5 * math.sqrt((s + a * a) * (s + b * b)))  # noqa: E731
    return float(a * b * c / 2.0 * integrate.quad(f, 0.0, np.inf)[0])


def _ellipsoid_weight(pts: np.ndarray, centre: np.ndarray, semi: np.ndarray) -> np.ndarray:
    """Soft inside weight (1 inside, 0 outside, linear over :data:`_EDGE_MM` at the edge)."""
    q = (pts - centre) / semi
    rho = np.linalg.norm(q, axis=-1)
    grad = np.linalg.norm(q / semi, axis=-1) / np.maximum(rho, 1e-6)
    d = (rho - 1.0) / np.maximum(grad, 1e-6)  # first-order signed distance (mm)
    return np.clip(0.5 - d / _EDGE_MM, 0.0, 1.0)


# --------------------------------------------------------------------------- rendering


class _Grid:
    """The scanner grid, with sub-voxel sample offsets and local-box helpers."""

    def __init__(self, affine: np.ndarray, shape: tuple[int, int, int]):
        self.affine = np.asarray(affine, np.float64)
        self.shape = tuple(int(n) for n in shape)
        self.linear = self.affine[:3, :3]
        self.vs = np.sqrt((self.linear**2).sum(axis=0))
        self.half_diag = 0.5 * float(np.linalg.norm(self.vs))
        self.inv = np.linalg.inv(self.affine)
        # Samples <= 0.35 mm apart on fine grids; on coarse grids at most ~100 per voxel
        # (spacing grows with the voxel), plenty for a voxel several times a bleed's size.
        spacing = max(_SUB_MM, float(np.prod(self.vs) / _MAX_SUB) ** (1 / 3))
        n = [max(2, int(math.ceil(v / spacing - 1e-9))) for v in self.vs]
        grids = np.meshgrid(*[(np.arange(k) + 0.5) / k - 0.5 for k in n], indexing="ij")
        self.sub_vox = np.stack([g.ravel() for g in grids], axis=-1)  # (S, 3) voxel units
        self.sub_world = self.sub_vox @ self.linear.T  # (S, 3) mm

    def voxel_of(self, ras: np.ndarray) -> np.ndarray:
        return world_to_voxel(self.affine, ras)

    def contains(self, ras: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        """Whether world points lie in the field of view, ``margin_mm`` inside its faces."""
        ras = np.atleast_2d(np.asarray(ras, np.float64))
        ijk = ras @ self.inv[:3, :3].T + self.inv[:3, 3]
        m = margin_mm / self.vs
        return np.all((ijk >= -0.5 + m) & (ijk <= np.asarray(self.shape) - 0.5 - m), axis=-1)

    def box(self, lo_ras: np.ndarray, hi_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel indices (N, 3) of the grid box covering a world box (any rotation), and
        their centres in world mm (N, 3)."""
        corners = np.array([[a, b, c] for a in (lo_ras[0], hi_ras[0]) for b in (lo_ras[1], hi_ras[1])
                            for c in (lo_ras[2], hi_ras[2])])
        ijk = self.voxel_of(corners)
        lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
        hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, self.shape)
        if np.any(hi <= lo):
            return np.zeros((0, 3), np.intp), np.zeros((0, 3))
        axes = [np.arange(a, b) for a, b in zip(lo, hi)]
        g = np.meshgrid(*axes, indexing="ij")
        idx = np.stack([x.ravel() for x in g], axis=-1)
        # The grid is affine: world = t + i L0 + j L1 + k L2, summed by broadcasting.
        world = (
            self.affine[:3, 3]
            + axes[0][:, None, None, None] * self.linear[:, 0]
            + axes[1][None, :, None, None] * self.linear[:, 1]
            + axes[2][None, None, :, None] * self.linear[:, 2]
        ).reshape(-1, 3)
        return idx, world

    def ball(self, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Voxels whose centre is within ``radius`` + half a voxel diagonal; and the centres."""
        idx, world = self.box(centre - radius - self.half_diag, centre + radius + self.half_diag)
        keep = np.linalg.norm(world - centre, axis=-1) <= radius + self.half_diag
        return idx[keep], world[keep]


@dataclass
class _Layers:
    """What the objects draw into."""

    factor: np.ndarray  # multiplicative magnitude factor
    phase: np.ndarray | None  # local-field phase (rad)
    instances: np.ndarray  # uint16
    mimics: np.ndarray  # uint8

    def apply(self, idx: np.ndarray, factor: np.ndarray, phase: np.ndarray | None) -> None:
        i, j, k = idx.T
        self.factor[i, j, k] *= factor.astype(np.float32)
        if self.phase is not None and phase is not None:
            self.phase[i, j, k] += phase.astype(np.float32)


def _voxel_phase(mag: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Phase of the voxel-averaged complex signal, sub-samples on the last axis."""
    return np.angle(np.mean(mag * np.exp(1j * phi), axis=-1))


def _render_sphere(
    grid: _Grid, layers: _Layers, centre: np.ndarray, r_true: float, r_vis: float, signal: float,
    dchi: float, rad_per_ppm: float, label: tuple[str, int] | None,
) -> int:
    """Draw a haemosiderin/calcium sphere; returns the number of voxels labelled.

    Magnitude: the visible sphere (radius ``r_vis``) scales the signal by ``signal``,
    partial-volumed by supersampling. Phase: macroscopic sphere field (see module
    docstring), tapered to 0 between 2.5 and 3 true radii, beyond which it is < 4 %;
    supersampled where a voxel may touch the sphere, taken at the voxel centre further
    out, where it is smooth. Label: voxels at least half inside the visible sphere, and
    the voxel of the centre.
    """

    def shift(rel: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(rel, axis=-1)
        rs = np.maximum(r, 1e-6)
        out = dchi / 3.0 * (r_true / rs) ** 3 * (3.0 * (rel[..., 2] / rs) ** 2 - 1.0)
        taper = np.clip((3.0 * r_true - r) / (0.5 * r_true), 0.0, 1.0)
        return np.where(r < r_true, 2.0 / 3.0 * dchi, out * taper)

    reach = max(r_vis, 3.0 * r_true) if layers.phase is not None else r_vis
    idx, world = grid.ball(centre, reach)
    if len(idx) == 0:
        return 0
    near = np.linalg.norm(world - centre, axis=-1) <= max(r_vis, r_true) + grid.half_diag
    if layers.phase is not None and not near.all():
        far = ~near
        layers.apply(idx[far], np.ones(int(far.sum())), shift(world[far] - centre) * rad_per_ppm)
    idx, world = idx[near], world[near]
    rel = world[:, None, :] + grid.sub_world[None, :, :] - centre  # (N, S, 3)
    inside_vis = np.linalg.norm(rel, axis=-1) < r_vis
    pv = inside_vis.mean(axis=1)
    mag = np.where(inside_vis, signal, 1.0)
    phase = _voxel_phase(mag, shift(rel) * rad_per_ppm) if layers.phase is not None else None
    layers.apply(idx, mag.mean(axis=1), phase)
    if label is None:
        return 0
    kind, value = label
    target = layers.instances if kind == "instance" else layers.mimics
    sel = idx[pv >= 0.5]
    c = np.rint(grid.voxel_of(centre)).astype(int)
    if np.all((c >= 0) & (c < np.asarray(grid.shape))):
        sel = np.vstack([sel, c[None, :]])
    target[sel[:, 0], sel[:, 1], sel[:, 2]] = value
    return int(len(np.unique(sel, axis=0)))


def _segments_closest(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest points on segments a-b to points p (broadcast); returns (vector p - q, t-hat)."""
    ab = b - a
    length2 = np.maximum((ab**2).sum(axis=-1, keepdims=True), 1e-12)
    t = np.clip(((p - a) * ab).sum(axis=-1, keepdims=True) / length2, 0.0, 1.0)
    return p - (a + t * ab), ab / np.sqrt(length2)


def _path_geometry(
    pts: np.ndarray, a: np.ndarray, b: np.ndarray, nearest: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance, radial vector and axis of the path at points (N, S, 3).

    ``nearest`` (N,) is the segment nearest each voxel centre; a sub-sample's nearest
    segment is that one or a neighbour (segments are ~1 mm, curvature is gentle).
    """
    best_d = np.full(pts.shape[:2], np.inf)
    best_v = np.zeros(pts.shape)
    best_t = np.zeros(pts.shape)
    for off in (-1, 0, 1):
        s = np.clip(nearest + off, 0, len(a) - 1)
        v, t = _segments_closest(pts, a[s][:, None, :], b[s][:, None, :])
        d = np.linalg.norm(v, axis=-1)
        better = d < best_d
        best_d = np.where(better, d, best_d)
        best_v = np.where(better[..., None], v, best_v)
        best_t = np.where(better[..., None], np.broadcast_to(t, v.shape), best_t)
    return best_d, best_v, best_t


def _render_vein(
    grid: _Grid, layers: _Layers, path: np.ndarray, r_true: float, r_vis: float, signal: float,
    dchi: float, rad_per_ppm: float,
) -> None:
    """Draw a vein: a tube of radius ``r_vis`` along a polyline (1 mm segments).

    Phase: infinite-cylinder field of the nearest segment (macroscopic form, see module
    docstring), tapered to 0 between 3 and 4 true radii; supersampled where a voxel may
    touch the tube, taken at voxel centres further out. Label 1 where at least half the
    voxel is inside the tube and along the centre line (so a thin vein stays connected).
    """

    def shift(d: np.ndarray, v: np.ndarray, t: np.ndarray) -> np.ndarray:
        cos_t = t[..., 2]
        b_perp = np.stack([-cos_t * t[..., 0], -cos_t * t[..., 1], 1.0 - cos_t * t[..., 2]], -1)
        rho = np.maximum(d, 1e-6)
        proj = (v * b_perp).sum(axis=-1) / rho  # |b_perp| cos(psi)
        sin2 = 1.0 - cos_t**2
        out = dchi / 2.0 * (r_true / rho) ** 2 * (2.0 * proj**2 - sin2)  # = dchi/2 sin2 (a/rho)^2 cos 2psi
        taper = np.clip((4.0 * r_true - d) / r_true, 0.0, 1.0)
        return np.where(d < r_true, dchi * (1.0 + cos_t**2) / 2.0, out * taper)

    reach = max(r_vis, 4.0 * r_true) if layers.phase is not None else r_vis
    idx, world = grid.box(path.min(axis=0) - reach - grid.half_diag, path.max(axis=0) + reach + grid.half_diag)
    if len(idx) == 0:
        return
    a, b = path[:-1], path[1:]
    # Voxels near the centre line, and the segment nearest each (from points 0.25 mm apart).
    seg_len = np.linalg.norm(b - a, axis=1)
    fine_t = [np.arange(0.0, 1.0, 0.25 / max(float(L), 1e-6)) for L in seg_len]
    fine = np.concatenate([a[s] + t[:, None] * (b[s] - a[s]) for s, t in enumerate(fine_t)] + [b[-1:]])
    fine_seg = np.concatenate([np.full(len(t), s) for s, t in enumerate(fine_t)] + [[len(a) - 1]])
    d_vox, nearest_fine = cKDTree(fine).query(world, distance_upper_bound=reach + grid.half_diag + 0.25)
    keep = np.isfinite(d_vox)
    idx, world, d_vox, nearest = idx[keep], world[keep], d_vox[keep], fine_seg[nearest_fine[keep]]
    if len(idx) == 0:
        return
    near = d_vox <= max(r_vis, r_true) + grid.half_diag + 0.25
    if layers.phase is not None and not near.all():
        far = ~near
        d, v, t = _path_geometry(world[far][:, None, :], a, b, nearest[far])
        layers.apply(idx[far], np.ones(int(far.sum())), shift(d, v, t)[:, 0] * rad_per_ppm)
    idx, world, nearest = idx[near], world[near], nearest[near]
    pts = world[:, None, :] + grid.sub_world[None, :, :]  # (N, S, 3)
    d, v, t = _path_geometry(pts, a, b, nearest)
    inside_vis = d < r_vis
    pv = inside_vis.mean(axis=1)
    mag = np.where(inside_vis, signal, 1.0)
    phase = _voxel_phase(mag, shift(d, v, t) * rad_per_ppm) if layers.phase is not None else None
    layers.apply(idx, mag.mean(axis=1), phase)
    sel = idx[pv >= 0.5]
    fine = _resample_path(path, 0.3)
    line = np.rint(grid.voxel_of(fine)).astype(int)
    line = line[np.all((line >= 0) & (line < np.asarray(grid.shape)), axis=1)]
    sel = np.vstack([sel, line])
    layers.mimics[sel[:, 0], sel[:, 1], sel[:, 2]] = _MIMIC_LABEL_OF["vein"]


def _render_blob(
    grid: _Grid, layers: _Layers, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], signal: float,
    phase_fn: Callable[[np.ndarray], np.ndarray] | None, reach_extra: float, label: int,
) -> None:
    """Draw an irregular blob, the union of ellipsoids ``(centre, frame, semi_axes)``.

    ``phase_fn`` maps world points (..., 3) to a phase (rad); it may reach
    ``reach_extra`` mm beyond the blob, where it is smooth and taken at voxel centres.
    Voxels that may touch the blob are supersampled.
    """
    centres = np.array([c for c, _, _ in parts])
    extent = max(float(np.max(s)) for _, _, s in parts)
    lo, hi = centres.min(axis=0) - extent - reach_extra, centres.max(axis=0) + extent + reach_extra
    idx, world = grid.box(lo, hi)
    if len(idx) == 0:
        return
    dist = np.min(np.linalg.norm(world[:, None, :] - centres[None, :, :], axis=-1), axis=1)
    near = dist <= extent + grid.half_diag
    if layers.phase is not None and phase_fn is not None:
        far = ~near
        layers.apply(idx[far], np.ones(int(far.sum())), phase_fn(world[far]))
    idx, world = idx[near], world[near]
    if len(idx) == 0:
        return
    pts = world[:, None, :] + grid.sub_world[None, :, :]
    inside = np.zeros(pts.shape[:2], bool)
    for c, frame, semi in parts:
        q = ((pts - c) @ frame) / semi
        inside |= (q**2).sum(axis=-1) < 1.0
    mag = np.where(inside, signal, 1.0)
    phase = None
    if layers.phase is not None and phase_fn is not None:
        phase = _voxel_phase(mag, phase_fn(pts))
    layers.apply(idx, mag.mean(axis=1), phase)
    sel = idx[inside.mean(axis=1) >= 0.5]
    layers.mimics[sel[:, 0], sel[:, 1], sel[:, 2]] = label


def _resample_path(path: np.ndarray, step: float) -> np.ndarray:
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(0.0, s[-1] + 1e-9, step)
    if t[-1] < s[-1]:
        t = np.append(t, s[-1])
    return np.stack([np.interp(t, s, path[:, a]) for a in range(3)], axis=-1)


# --------------------------------------------------------------------------- placement


@dataclass
class _Obstacles:
    """Visible extents already placed: spheres and tubes; used to keep objects apart."""

    spheres: list[tuple[np.ndarray, float]] = field(default_factory=list)
    tubes: list[tuple[np.ndarray, float]] = field(default_factory=list)
    ellipsoids: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def clear(self, p: np.ndarray, r: float, gap: float = _GAP_MM) -> bool:
        for c, rc in self.spheres:
            if np.linalg.norm(p - c) < r + rc + gap:
                return False
        for path, rt in self.tubes:
            v, _ = _segments_closest(p, path[:-1], path[1:])
            if np.linalg.norm(v, axis=-1).min() < r + rt + gap:
                return False
        for c, semi in self.ellipsoids:
            q = (p - c) / (semi + r + gap + _EDGE_MM / 2)
            if (q**2).sum() < 1.0:
                return False
        return True


def _draw_diameter(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Diameter skewed to small ones: lo + (hi - lo) * Beta(1.3, 4) (78 % below 5 mm for 2-10)."""
    return float(lo + (hi - lo) * rng.beta(1.3, 4.0))


def _medullary_vein(rng: np.random.Generator, starts: np.ndarray) -> np.ndarray | None:
    """A medullary vein: from the ventricle wall outwards and upwards to the cortex."""
    anat = load_mni_anatomy()
    start = starts[rng.integers(len(starts))]
    side = 1.0 if start[0] >= 0 else -1.0
    el = math.radians(rng.uniform(30.0, 70.0))
    az = math.radians(rng.uniform(-25.0, 25.0))
    d = np.array([side * math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    max_len = rng.uniform(20.0, 40.0)
    wobble = rng.normal(0.0, 0.06, size=(int(max_len) + 1, 3))
    pts = [start.copy()]
    p = start.copy()
    for step in range(int(max_len)):
        d = _unit(d + wobble[step])
        p = p + d
        g, w, c, b = (_lookup(m, p) for m in (anat.gm, anat.wm, anat.csf, anat.brain))
        if not b or c > 0.4:
            break
        pts.append(p.copy())
        if g > 0.55:  # reached the cortex
            break
    path = np.array(pts)
    if len(path) < 16 or np.ptp(path[:, 2]) < 7.0:
        return None
    return path


def _cortical_vein(rng: np.random.Generator) -> np.ndarray | None:
    """A superficial cortical vein: along the surface, up towards the superior sagittal sinus."""
    side = rng.choice([-1.0, 1.0])
    v0 = _unit(np.array([side * rng.uniform(0.55, 0.95), rng.uniform(-0.6, 0.6), rng.uniform(0.1, 0.6)]))
    v1 = _unit(np.array([side * 0.12, v0[1] + rng.uniform(-0.15, 0.15), 0.95]))
    angle = math.acos(float(np.clip(v0 @ v1, -1.0, 1.0)))
    n = max(int(angle * 70.0), 8)  # ~1 mm steps at a 70 mm radius
    t = np.linspace(0.0, 1.0, n)[:, None]
    dirs = _unit(np.sin((1 - t) * angle) * v0 + np.sin(t * angle) * v1)  # slerp
    length_frac = rng.uniform(0.5, 1.0)
    dirs = dirs[: max(int(len(dirs) * length_frac), 8)]
    radius = _surface_radius(dirs)
    if np.any(radius < 30.0):
        return None
    radius = ndimage.uniform_filter1d(radius, size=7, mode="nearest") - rng.uniform(1.5, 2.5)
    path = _SURFACE_CENTRE + dirs * radius[:, None]
    return path if len(path) >= 12 else None


# --------------------------------------------------------------------------- the scene


def _template_signal(
    te_ms: float, pd_jitter: np.ndarray, t2_jitter: np.ndarray, iron_jitter: float, iron_on: bool
) -> tuple[np.ndarray, dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Noiseless GRE signal on the 1 mm template: tissue mixture, iron nuclei blended in.

    Each tissue's signal is ``PD * exp(-TE / T2*)`` with seeded jitter (PD +-4 %, T2*
    +-8 %); a voxel's signal is the partial-volume mix of its tissue fractions. Inside a
    nucleus (soft ellipsoid weight ``w``) the parenchyma takes the nucleus's signal:
    ``(1 - w) * S + w * (S_nucleus * (gm + wm) + S_csf * csf)``. One jitter of the
    nuclei's T2* (+-10 %) is shared by both sides, so the iron stays symmetric.
    """
    anat = load_mni_anatomy()
    tissue: dict[str, dict[str, float]] = {}
    for (name, pd), dj, tj in zip(_TISSUE_PD.items(), pd_jitter, t2_jitter):
        t2 = _TISSUE_T2STAR_MS[name] * (1.0 + tj)
        tissue[name] = {"pd": pd * (1.0 + dj), "t2star_ms": t2, "signal": pd * (1.0 + dj) * math.exp(-te_ms / t2)}
    s_csf, s_gm, s_wm = (np.float32(tissue[n]["signal"]) for n in ("csf", "gm", "wm"))
    signal = anat.csf * s_csf + anat.gm * s_gm + anat.wm * s_wm
    nuclei: dict[str, dict[str, float]] = {}
    if not iron_on:
        return signal, tissue, nuclei
    for name, nuc in NUCLEI_MNI.items():
        t2 = nuc["t2star_ms"] * (1.0 + iron_jitter)
        s_nuc = _NUCLEUS_PD * math.exp(-te_ms / t2)
        nuclei[name] = {"t2star_ms": round(t2, 4), "signal": round(s_nuc, 6)}
        semi = np.asarray(nuc["semi_axes"])
        for sx in (1.0, -1.0):
            c = np.asarray(nuc["centre"]) * np.array([sx, 1.0, 1.0])
            ilo = np.maximum(np.floor(world_to_voxel(anat.affine, c - semi - 2 * _EDGE_MM)).astype(int), 0)
            ihi = np.minimum(np.ceil(world_to_voxel(anat.affine, c + semi + 2 * _EDGE_MM)).astype(int) + 1, anat.shape)
            sl = tuple(slice(a, b) for a, b in zip(ilo, ihi))
            g = np.meshgrid(*[np.arange(a, b) for a, b in zip(ilo, ihi)], indexing="ij")
            w = _ellipsoid_weight(voxel_to_world(anat.affine, np.stack(g, -1)), c, semi).astype(np.float32)
            parenchyma = anat.gm[sl] + anat.wm[sl]
            signal[sl] = (1 - w) * signal[sl] + w * (s_nuc * parenchyma + s_csf * anat.csf[sl])
    return signal, tissue, nuclei


class _Scene:
    """The objects of one case: drawn into layers on the grid, kept apart, recorded."""

    def __init__(self, grid: _Grid, rng: np.random.Generator, te_ms: float, with_phase: bool):
        shape = grid.shape
        self.grid, self.rng = grid, rng
        self.rad_per_ppm, self.bloom = _rad_per_ppm(te_ms), _bloom(te_ms)
        self.layers = _Layers(
            factor=np.ones(shape, np.float32),
            phase=np.zeros(shape, np.float32) if with_phase else None,
            instances=np.zeros(shape, np.uint16),
            mimics=np.zeros(shape, np.uint8),
        )
        self.obstacles = _Obstacles()
        self.mimic_truth: list[dict[str, Any]] = []

    def _record(self, kind: str, ras: np.ndarray, **extra: Any) -> None:
        ras = np.round(np.asarray(ras, float), 4)
        self.mimic_truth.append({"type": kind, "world_ras_mm": _r(ras), "voxel_ijk": _r(self.grid.voxel_of(ras)),
                                 **extra})

    def add_iron(self, nuclei_params: dict[str, dict[str, float]]) -> None:
        """Phase and labels of the iron nuclei (their magnitude is in the tissue signal).

        Inside: the uniform field of a magnetised ellipsoid, ``dchi (1 - N_z)`` with
        ``N_z`` its demagnetising factor along B0; outside: the dipole of the
        equal-volume sphere. Only the mimic nuclei (:data:`NUCLEI_MNI`) are labelled and
        kept clear of bleeds; deep bleeds may lie in the putamen, caudate and thalamus.
        """
        grid, layers = self.grid, self.layers
        for name, nuc in NUCLEI_MNI.items():
            semi = np.asarray(nuc["semi_axes"], float)
            a_eq = float(np.prod(semi) ** (1 / 3))
            inside_shift = nuc["dchi_ppm"] * (1.0 - _demag_z(tuple(nuc["semi_axes"])))
            for sx, side in ((1.0, "right"), (-1.0, "left")):
                c = np.asarray(nuc["centre"]) * np.array([sx, 1.0, 1.0])
                reach = float(semi.max()) + 1.5 * a_eq
                idx, world = grid.ball(c, reach)
                if len(idx) == 0:
                    continue
                w = _ellipsoid_weight(world, c, semi)
                if layers.phase is not None:
                    rel = world - c
                    r = np.maximum(np.linalg.norm(rel, axis=-1), a_eq)
                    cos2 = (rel[:, 2] / r) ** 2
                    out = nuc["dchi_ppm"] / 3.0 * (a_eq / r) ** 3 * (3 * cos2 - 1)
                    taper = np.clip((reach - r) / (0.5 * a_eq), 0.0, 1.0)
                    shift = w * inside_shift + (1 - w) * out * taper
                    layers.apply(idx, np.ones(len(idx)), shift * self.rad_per_ppm)
                if not nuc["mimic"]:
                    continue
                self.obstacles.ellipsoids.append((c, semi))
                if grid.contains(c)[0]:
                    sel = idx[w >= 0.5]
                    layers.mimics[sel[:, 0], sel[:, 1], sel[:, 2]] = _MIMIC_LABEL_OF["iron"]
                    self._record("iron", c, structure=name, side=side, semi_axes_mm=_r(semi),
                                 t2star_ms=nuclei_params[name]["t2star_ms"], susceptibility_ppm=nuc["dchi_ppm"])

    def add_veins(self, count: int) -> None:
        """Medullary (60 % on average) and cortical veins, at least 60 % inside the view."""
        rng, grid = self.rng, self.grid
        starts = _periventricular_starts()
        starts = starts[grid.contains(starts, margin_mm=2.0)]
        n_medullary = int(rng.binomial(count, 0.6))
        for v in range(count):
            kind = "medullary" if v < n_medullary else "cortical"
            path = None
            for _attempt in range(40):
                if kind == "medullary":
                    path = _medullary_vein(rng, starts) if len(starts) else None
                else:
                    path = _cortical_vein(rng)
                if path is not None and grid.contains(path, margin_mm=1.0).mean() >= 0.6:
                    break
                path = None
            if path is None:
                continue
            d_vis = rng.uniform(1.0, 2.0) if kind == "medullary" else rng.uniform(1.5, 2.5)
            r_vis, r_true = d_vis / 2, d_vis / 2 / self.bloom
            dchi = float(rng.uniform(0.10, 0.20))
            f = float(rng.uniform(0.3, 0.55))
            _render_vein(grid, self.layers, path, r_true, r_vis, f, dchi, self.rad_per_ppm)
            self.obstacles.tubes.append((path, r_vis))
            mid = _resample_path(path, 0.5)
            self._record("vein", mid[len(mid) // 2], subtype=kind, path=[_r(p, 4) for p in path],
                         diameter_mm=round(2 * r_true, 4), visible_diameter_mm=round(d_vis, 4),
                         susceptibility_ppm=round(dchi, 4), signal_fraction=round(f, 4))

    def add_sulcal(self, count: int) -> None:
        """Irregular dark spots 1-2.5 mm under the surface: 2-4 small ellipsoids in the
        surface's tangent plane, a weak paramagnetic source (pial vessels)."""
        rng, grid = self.rng, self.grid
        rad_per_ppm = self.rad_per_ppm
        for _ in range(count):
            c = None
            for _attempt in range(40):
                n = _unit(np.array([rng.uniform(-1, 1), rng.uniform(-0.8, 0.8), rng.uniform(0.0, 1.0)]))
                r_s = _surface_radius(n[None])[0] - rng.uniform(1.0, 2.5)
                c = _SURFACE_CENTRE + r_s * n
                k = int(rng.integers(2, 5))
                offs = rng.normal(0.0, 1.2, size=(k, 2))
                semis = rng.uniform(0.8, 1.8, size=(k, 3))
                if r_s > 30 and grid.contains(c, 3.0)[0] and self.obstacles.clear(c, 4.0):
                    break
                c = None
            if c is None:
                continue
            frame = _tangent_frame(n)
            parts = [(c + frame[:, 0] * o[0] + frame[:, 1] * o[1], frame, s) for o, s in zip(offs, semis)]
            f = float(rng.uniform(0.35, 0.6))
            dchi = float(rng.uniform(0.03, 0.08))
            a_eq = float(np.mean(semis))

            def sulcal_phase(p: np.ndarray, parts=parts, dchi=dchi, a=a_eq) -> np.ndarray:
                shift = np.zeros(p.shape[:-1])
                for pc, _, _ in parts:
                    rel = p - pc
                    r = np.maximum(np.linalg.norm(rel, axis=-1), 1e-6)
                    out = dchi / 3 * (a / r) ** 3 * (3 * (rel[..., 2] / r) ** 2 - 1) * np.clip((3 * a - r) / a, 0, 1)
                    shift += np.where(r < a, 2 / 3 * dchi, out)
                return shift * rad_per_ppm

            _render_blob(grid, self.layers, parts, f, sulcal_phase, 3.0 * a_eq, _MIMIC_LABEL_OF["sulcal"])
            self.obstacles.spheres.append((c, 4.0))
            self._record("sulcal", c, size_mm=round(2 * (2.4 + float(semis.max())), 3),
                         susceptibility_ppm=round(dchi, 4), signal_fraction=round(f, 4))

    def add_airbone(self, count: int) -> None:
        """Flattened, irregular voids 2-3.5 mm under the inferior frontal (above the
        sinuses) or inferior temporal (above the mastoid) surface, with a residual phase
        ramp under a 6 mm Gaussian window (it may wrap)."""
        rng, grid = self.rng, self.grid
        for _ in range(count):
            site = "frontal" if rng.random() < 0.5 else "temporal"
            c = None
            for _attempt in range(40):
                if site == "frontal":
                    n = _unit(np.array([rng.uniform(-0.35, 0.35), 0.75, rng.uniform(-0.7, -0.45)]))
                else:
                    n = _unit(np.array([rng.choice([-1.0, 1.0]) * 0.8, rng.uniform(-0.2, 0.25),
                                        rng.uniform(-0.7, -0.45)]))
                r_s = _surface_radius(n[None])[0] - rng.uniform(2.0, 3.5)
                c = _SURFACE_CENTRE + r_s * n
                if r_s > 30 and grid.contains(c, 2.0)[0] and self.obstacles.clear(c, 8.0):
                    break
                c = None
            if c is None:
                continue
            frame = _tangent_frame(n)
            k = int(rng.integers(3, 6))
            offs = rng.normal(0.0, 3.0, size=(k, 2))
            semis = np.column_stack([rng.uniform(2.5, 5.0, k), rng.uniform(2.5, 5.0, k), rng.uniform(1.0, 2.0, k)])
            parts = [(c + frame[:, 0] * o[0] + frame[:, 1] * o[1], frame, s) for o, s in zip(offs, semis)]
            f = float(rng.uniform(0.15, 0.45))
            amp = float(rng.uniform(1.5, 3.0))
            u = _unit(rng.normal(size=3))
            sigma = 6.0

            def airbone_phase(p: np.ndarray, c=c, u=u, amp=amp, sigma=sigma) -> np.ndarray:
                rel = p - c
                g = np.exp(-(rel**2).sum(axis=-1) / (2 * sigma**2))
                return amp * g * (rel @ u) / sigma

            _render_blob(grid, self.layers, parts, f, airbone_phase, 2.5 * sigma, _MIMIC_LABEL_OF["airbone"])
            self.obstacles.spheres.append((c, 8.0))
            self._record("airbone", c, site=site, signal_fraction=round(f, 4), residual_phase_rad=round(amp, 4))

    def add_calcifications(self, count: int) -> None:
        """Round, dark, diamagnetic spheres (true diameter 2-4.5 mm) at :data:`_CALC_SITES`."""
        rng, grid = self.rng, self.grid
        site_names = list(_CALC_SITES)
        for _ in range(count):
            placed = False
            for _attempt in range(40):
                site = site_names[int(rng.choice(len(site_names), p=_CALC_SITE_WEIGHTS))]
                base = np.asarray(_CALC_SITES[site]) * np.array([rng.choice([-1.0, 1.0]), 1.0, 1.0])
                c = base + rng.uniform(-1.5, 1.5, size=3) * np.array([0.0 if site == "pineal" else 1.0, 1.0, 1.0])
                d_true = float(rng.uniform(2.0, 4.5))
                r_true, r_vis = d_true / 2, d_true / 2 * self.bloom
                if grid.contains(c, r_vis)[0] and self.obstacles.clear(c, r_vis):
                    placed = True
                    break
            if not placed:
                continue
            f = float(rng.uniform(0.1, 0.35))
            dchi = -float(rng.uniform(0.10, 0.25))
            label = ("mimic", _MIMIC_LABEL_OF["calcification"])
            _render_sphere(grid, self.layers, c, r_true, r_vis, f, dchi, self.rad_per_ppm, label)
            self.obstacles.spheres.append((c, r_vis))
            self._record("calcification", c, site=site, diameter_mm=round(d_true, 4),
                         visible_diameter_mm=round(2 * r_vis, 4), susceptibility_ppm=round(dchi, 4),
                         signal_fraction=round(f, 4))

    def add_microbleeds(
        self, count: int, weights: dict[str, float], diameter_range: tuple[float, float]
    ) -> list[dict[str, Any]]:
        """Place and draw microbleeds; returns their truth (ids 1..n in placement order).

        Each try draws a class (by ``weights``, over the classes the view contains), a
        candidate centre of that class (:func:`_location_candidates`, jittered within its
        1 mm voxel) and a diameter; it is kept if the centre lies at least 0.7 visible
        radii from CSF or the brain's edge, the visible sphere is inside the view and clear
        of everything placed. A bleed with no room after 200 tries is left out.
        """
        rng, grid = self.rng, self.grid
        cands = _location_candidates()
        available: dict[str, _Candidates] = {}
        for loc in LOCATIONS:
            cand = cands[loc]
            keep = grid.contains(cand.points, margin_mm=1.0)
            if weights.get(loc, 0.0) > 0 and keep.any():
                available[loc] = _Candidates(cand.points[keep], cand.depth[keep], cand.region[keep], cand.names)
        locs = list(available)
        p_loc = np.array([weights[loc] for loc in locs], float)
        truth: list[dict[str, Any]] = []
        vox_mm3 = float(abs(np.linalg.det(grid.linear)))
        for _ in range(count if locs else 0):
            for _attempt in range(200):
                loc = locs[int(rng.choice(len(locs), p=p_loc / p_loc.sum()))]
                cand = available[loc]
                j = int(rng.integers(len(cand.points)))
                c = cand.points[j].astype(float) + rng.uniform(-0.5, 0.5, size=3)
                d_true = _draw_diameter(rng, *diameter_range)
                r_true, r_vis = d_true / 2, d_true / 2 * self.bloom
                if cand.depth[j] >= 0.7 * r_vis and grid.contains(c, r_vis)[0] and self.obstacles.clear(c, r_vis):
                    break
            else:
                continue
            cmb_id = len(truth) + 1
            f = float(rng.uniform(0.1, 0.3))
            dchi = float(rng.uniform(0.10, 0.25))
            n_vox = _render_sphere(grid, self.layers, c, r_true, r_vis, f, dchi, self.rad_per_ppm, ("instance", cmb_id))
            self.obstacles.spheres.append((c, r_vis))
            c = np.round(c, 4)
            truth.append({
                "id": cmb_id,
                "world_ras_mm": _r(c),
                "voxel_ijk": _r(grid.voxel_of(c)),
                "diameter_mm": round(d_true, 4),
                "visible_diameter_mm": round(2 * r_vis, 4),
                "volume_mm3": round(n_vox * vox_mm3, 4),
                "location": loc,
                "region": cand.names[int(cand.region[j])],
                "susceptibility_ppm": round(dchi, 4),
                "signal_fraction": round(f, 4),
            })
        return truth


# --------------------------------------------------------------------------- the case


@dataclass(eq=False)
class SWICase:
    """A simulated SWI scan, its filtered phase and the ground truth.

    Attributes
    ----------
    magnitude : nib.Nifti1Image
        T2*-weighted GRE magnitude (int16 by default), affine in qform and sform (code 1).
    phase : nib.Nifti1Image or None
        float32 filtered phase in radians, [-pi, pi], same grid; 0 outside the brain.
        Sign convention: :data:`PHASE_CONVENTION`.
    truth : dict
        ``'instances'``: uint16 image, microbleed ``id`` (1..n) over its visible extent
        (blooming included; voxels at least half inside, plus the centre's voxel);
        ``'cmbs'``: list of dicts (id, world_ras_mm, voxel_ijk, diameter_mm (true),
        visible_diameter_mm, volume_mm3 (of the instance mask), location, region,
        susceptibility_ppm, signal_fraction); ``'mimics'``: list of dicts (type, world_ras_mm,
        voxel_ijk, ..., ``path`` for veins), those inside the field of view;
        ``'mimic_labels'``: uint8 image (:data:`MIMIC_LABELS`); ``'brain_mask'``: uint8
        image; ``'params'``: everything needed to reproduce the case.
        Never give any of it to a model under test.
    """

    magnitude: nib.Nifti1Image
    phase: nib.Nifti1Image | None
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        """The case's parameters (same object as ``truth['params']``)."""
        return self.truth["params"]


def _nifti(data: np.ndarray, affine: np.ndarray, descrip: str, intent_label: bool = False) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = descrip[:79].encode("ascii")
    if intent_label:
        img.header.set_intent("label")
    return img


def _r(v: Any, nd: int = 4) -> list[float]:
    return [round(float(x), nd) for x in np.ravel(v)]


def _resolve_mimics(rng: np.random.Generator, mimics: dict[str, int] | None) -> dict[str, int]:
    defaults = {
        "vein": int(rng.integers(6, 11)),
        "iron": 1,
        "sulcal": int(rng.integers(1, 4)),
        "airbone": int(rng.integers(1, 3)),
        "calcification": int(rng.integers(0, 3)),
    }
    if mimics is None:
        return defaults
    unknown = set(mimics) - set(MIMIC_TYPES)
    if unknown:
        raise ValueError(f"unknown mimic types {sorted(unknown)}; known: {', '.join(MIMIC_TYPES)}")
    out = dict(defaults)
    for k, v in mimics.items():
        if int(v) < 0:
            raise ValueError(f"mimic count for {k!r} must be >= 0, got {v!r}")
        out[k] = int(v)
    return out


def make_swi_case(
    seed: int,
    voxel_size: tuple[float, float, float] = (0.9, 0.9, 1.8),
    orientation: str = "LAS",
    rotation_deg: tuple[float, float, float] | None = None,
    n_cmb: int | None = None,
    cmb_diameter_mm: tuple[float, float] = (2.0, 10.0),
    location_weights: dict[str, float] | None = None,
    mimics: dict[str, int] | None = None,
    with_phase: bool = True,
    slab: tuple[float, float] | None = None,
    bias_strength: float = 0.2,
    noise_sd: float = 0.03,
    te_ms: float = 20.0,
    intensity_scale: float = 1000.0,
    dtype: Any = np.int16,
    margin_mm: float = 5.0,
) -> SWICase:
    """Simulate an SWI scan (GRE magnitude + filtered phase) with microbleeds and mimics.

    See the module docstring for the physics and anatomy. Every random draw comes from
    ``numpy.random.default_rng(seed)`` in a fixed order, so the same arguments always give
    the same case.

    Parameters
    ----------
    seed : int
        Seed of all random draws.
    voxel_size, orientation
        The grid (see :func:`~.anatomy.make_affine`); default 0.9 x 0.9 x 1.8 mm stored
        LAS, a common clinical SWI.
    rotation_deg : tuple of 3 floats or None
        Head rotation in the scanner (degrees about x, y, z). None draws a slight one,
        uniform in +-3 degrees per axis; ``(0, 0, 0)`` for none.
    n_cmb : int or None
        Number of microbleeds; None draws Poisson(6) (may be 0). Fewer are placed if the
        field of view has no room (``params['n_cmb_placed']``).
    cmb_diameter_mm : (float, float)
        Range of the true (deposit) diameter; draws are skewed to small bleeds
        (``Beta(1.3, 4)`` over the range: 78 % below 5 mm for 2-10 mm). The visible
        diameter is ``(1 + k TE)`` times larger (:data:`BLOOMING_K_PER_MS`).
    location_weights : dict or None
        Share of ``'lobar'``, ``'deep'``, ``'infratentorial'`` bleeds (default 0.5, 0.3,
        0.2); renormalised over the classes the field of view contains.
    mimics : dict or None
        Counts per mimic type (:data:`MIMIC_TYPES`); missing types get seeded defaults:
        veins 6-10, sulcal spots 1-3, air-bone artefacts 1-2, calcifications 0-2; ``iron``
        is on (1, the default: globus pallidus, substantia nigra, red nucleus and dentate
        on both sides, plus the weaker putamen, caudate, thalamus) or off (0).
    with_phase : bool
        Simulate the phase image too (the magnitude is the same either way).
    slab : (float, float) or None
        ``(z_min, z_max)`` world mm of an axial slab, as clinical SWI often is; None
        covers the whole brain.
    bias_strength : float
        Amplitude of the log bias field (spans ``exp(+-bias_strength)``).
    noise_sd : float
        Complex noise SD per channel in normalised signal units (white matter ~0.44 at
        TE 20 ms).
    te_ms : float
        Echo time: sets tissue contrast, blooming and phase.
    intensity_scale : float
        Stored value per unit of normalised signal.
    dtype : numpy dtype
        Magnitude dtype (int16 rounded and clipped, or float32).
    margin_mm : float
        Field of view margin around the brain (in-plane, and in z without ``slab``).

    Returns
    -------
    SWICase
    """
    if bias_strength < 0 or noise_sd < 0 or te_ms <= 0 or not intensity_scale > 0:
        raise ValueError("bias_strength and noise_sd must be >= 0; te_ms and intensity_scale > 0")
    if n_cmb is not None and int(n_cmb) < 0:
        raise ValueError(f"n_cmb must be >= 0 or None, got {n_cmb!r}")
    lo_d, hi_d = (float(v) for v in cmb_diameter_mm)
    if not 0 < lo_d <= hi_d:
        raise ValueError(f"cmb_diameter_mm must be 0 < low <= high, got {cmb_diameter_mm!r}")
    weights = {"lobar": 0.5, "deep": 0.3, "infratentorial": 0.2} if location_weights is None else dict(location_weights)
    if set(weights) - set(LOCATIONS) or any(float(v) < 0 for v in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"location_weights must map {LOCATIONS} to weights >= 0 (sum > 0), got {weights!r}")
    anat = load_mni_anatomy()
    rng = np.random.default_rng(int(seed))

    # 1. draws that fix the case's set-up (always drawn, so one option never shifts others)
    drawn_rotation = rng.uniform(-3.0, 3.0, size=3)
    rotation = drawn_rotation if rotation_deg is None else np.asarray(rotation_deg, float)
    pd_jitter = rng.uniform(-0.04, 0.04, size=3)
    t2_jitter = rng.uniform(-0.08, 0.08, size=3)
    iron_jitter = float(rng.uniform(-0.1, 0.1))
    drawn_n = int(rng.poisson(6.0))
    n_requested = drawn_n if n_cmb is None else int(n_cmb)
    counts = _resolve_mimics(rng, mimics)

    # 2. grid
    lo, hi = anat.brain_bbox_mm
    if slab is None:
        affine, shape = make_affine(voxel_size, orientation, tuple(rotation), margin_mm=margin_mm)
    else:
        z0, z1 = (float(v) for v in slab)
        if not z1 > z0:
            raise ValueError(f"slab must be (z_min, z_max) with z_max > z_min, got {slab!r}")
        fov = (hi[0] - lo[0] + 2 * margin_mm, hi[1] - lo[1] + 2 * margin_mm, z1 - z0)
        centre = ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (z0 + z1) / 2)
        affine, shape = make_affine(voxel_size, orientation, tuple(rotation), fov_mm=fov, center_ras=centre)
    grid = _Grid(affine, shape)

    # 3. tissue signal on the template, iron nuclei included; partial-volume sampled
    iron_on = counts["iron"] > 0
    signal_1mm, tissue, nuclei_params = _template_signal(te_ms, pd_jitter, t2_jitter, iron_jitter, iron_on)
    maps = sample_template_maps({"signal": signal_1mm, "brain": anat.brain}, affine, shape, max_workers=2)
    del signal_1mm
    brain_mask = (maps["brain"] >= 0.5).astype(np.uint8)

    # 4-9. objects, in a fixed order (each draws from rng in turn)
    scene = _Scene(grid, rng, te_ms, with_phase)
    if iron_on:
        scene.add_iron(nuclei_params)
    scene.add_veins(counts["vein"])
    scene.add_sulcal(counts["sulcal"])
    scene.add_airbone(counts["airbone"])
    scene.add_calcifications(counts["calcification"])
    cmb_truth = scene.add_microbleeds(n_requested, weights, (lo_d, hi_d))
    layers, mimic_truth = scene.layers, scene.mimic_truth

    # 10. scanner: bias field, complex noise, magnitude and phase
    bias, coeffs = random_bias_field(rng, float(bias_strength), affine, shape)
    signal = maps.pop("signal") * bias * layers.factor
    del bias
    n_re, n_im = complex_noise(rng, float(noise_sd), shape)
    n_re += signal
    magnitude = np.hypot(n_re, n_im)
    phase_img = None
    if layers.phase is not None:
        # Rotating the noise by the local phase leaves it white: magnitude = |S + n| and
        # phase = phi + angle(S + n), the same as angle(S e^{i phi} + n') with n' = n e^{i phi}.
        phase = layers.phase + np.arctan2(n_im, n_re)
        phase = (np.mod(phase + np.float32(np.pi), np.float32(2 * np.pi)) - np.float32(np.pi)).astype(np.float32)
        phase *= brain_mask
        phase_img = _nifti(phase, affine, "neuroreview simulated SWI filtered phase (rad), not a patient")
    magnitude *= np.float32(intensity_scale)
    out_dtype = np.dtype(dtype)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        mag_data = np.clip(np.rint(magnitude), info.min, info.max).astype(out_dtype)
    else:
        mag_data = magnitude.astype(out_dtype)

    params: dict[str, Any] = {
        "generator": "napari_neuroreview.core.phantoms.swi.make_swi_case",
        "template": "MNI152 ICBM 2009 nonlinear symmetric (nilearn), 1 mm",
        "seed": int(seed),
        "voxel_size": [float(v) for v in voxel_size],
        "orientation": "".join(tuple(str(orientation).upper())),
        "rotation_deg": _r(rotation, 6),
        "rotation_drawn": rotation_deg is None,
        "slab": None if slab is None else [float(v) for v in slab],
        "margin_mm": float(margin_mm),
        "shape": [int(n) for n in shape],
        "affine": np.round(affine, 6).tolist(),
        "n_cmb": None if n_cmb is None else int(n_cmb),
        "n_cmb_requested": n_requested,
        "n_cmb_placed": len(cmb_truth),
        "cmb_diameter_mm": [lo_d, hi_d],
        "location_weights": {k: float(v) for k, v in weights.items()},
        "mimics": counts,
        "with_phase": bool(with_phase),
        "te_ms": float(te_ms),
        "b0_t": B0_T,
        "blooming_k_per_ms": BLOOMING_K_PER_MS,
        "blooming_factor": round(_bloom(te_ms), 6),
        "tissue": {k: {kk: round(float(vv), 6) for kk, vv in v.items()} for k, v in tissue.items()},
        "nuclei": nuclei_params,
        "bias_strength": float(bias_strength),
        "bias_coefficients": [float(c) for c in coeffs],
        "noise_sd": float(noise_sd),
        "noise_model": "rician magnitude / phase of complex gaussian",
        "intensity_scale": float(intensity_scale),
        "dtype": out_dtype.name,
        "phase_convention": PHASE_CONVENTION,
        "mimic_labels": {str(k): v for k, v in MIMIC_LABELS.items()},
    }
    magnitude_img = _nifti(mag_data, affine, "neuroreview simulated SWI magnitude (MNI152 2009), not a patient")
    truth: dict[str, Any] = {
        "instances": _nifti(layers.instances, affine, "neuroreview CMB instance truth", intent_label=True),
        "cmbs": cmb_truth,
        "mimics": mimic_truth,
        "mimic_labels": _nifti(layers.mimics, affine, "neuroreview mimic truth 1 vein 2 iron 3 sulc/air 4 calc",
                               intent_label=True),
        "brain_mask": _nifti(brain_mask, affine, "neuroreview brain mask truth"),
        "params": params,
    }
    return SWICase(magnitude=magnitude_img, phase=phase_img, truth=truth)


# --------------------------------------------------------------------------- writing


def phase_nifti_bytes(phase: nib.Nifti1Image, step: float = PHASE_STEP_RAD) -> bytes:
    """A phase image as NIfTI bytes: int16 with ``scl_slope = step`` (radians per unit).

    Noise compresses badly and float32 costs 4 bytes a voxel; the default 0.005 rad step
    is far below the phase noise (~0.07 rad in white matter at the default noise). nibabel resets
    the scaling of in-memory arrays when it writes, so the slope is set in the header
    bytes after writing; any reader applies it (``get_fdata`` returns radians).
    """
    data = np.rint(np.asarray(phase.dataobj, dtype=np.float64) / step)
    data = np.clip(data, -32768, 32767).astype(np.int16)
    img = _nifti(data, phase.affine, phase.header["descrip"].tobytes().split(b"\0")[0].decode("ascii", "replace"))
    raw = bytearray(img.to_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)))
    header.set_slope_inter(float(step), 0.0)
    raw[: header.sizeof_hdr] = header.binaryblock
    return bytes(raw)


def _gz(payload: bytes) -> bytes:
    return gzip.compress(payload, compresslevel=9, mtime=0)


def _write_bytes(path: Path, payload: bytes) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(payload))


def _truth_json(case: SWICase, files: dict[str, str]) -> dict[str, Any]:
    img = case.magnitude
    return {
        "description": (
            "Simulated data, not a patient: an SWI (T2*-weighted GRE magnitude and filtered phase) "
            "made from the MNI152 ICBM 2009 template shipped with nilearn, with seeded microbleeds "
            "and mimics (veins, iron, sulcal/air-bone spots, calcifications)."
        ),
        "files": files,
        "voxel_size_mm": [round(float(z), 6) for z in img.header.get_zooms()[:3]],
        "axcodes": "".join(nib.aff2axcodes(img.affine)),
        "coordinates": "world RAS+ mm (MNI152 2009 space); voxel_ijk through the image affine",
        "phase_convention": PHASE_CONVENTION,
        "mimic_labels": {str(k): v for k, v in MIMIC_LABELS.items()},
        "cmbs": case.truth["cmbs"],
        "mimics": case.truth["mimics"],
        "params": case.params,
    }


def _cohort_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def write_swi_cohort(out_dir: str | Path, n_cases: int, seed: int, **make_swi_case_kwargs: Any) -> list[Path]:
    """Write ``n_cases`` simulated SWI cases with their truth, one folder each.

    ``out_dir/case-XXX/`` holds ``swi.nii.gz`` (magnitude), ``phase.nii.gz`` (filtered
    phase, int16 radians x :data:`PHASE_STEP_RAD`; absent with ``with_phase=False``),
    ``truth_instances.nii.gz`` (microbleed ids), ``truth_mimics.nii.gz``
    (:data:`MIMIC_LABELS`) and ``truth.json`` (microbleeds, mimics, parameters, and a note
    that the data are simulated). Case ``i``'s seed is derived from ``(seed, i)``
    (``numpy.random.SeedSequence``) and recorded in its ``truth.json``
    (``cohort.case_seed``), so a case does not depend on how many are written. Files are
    written atomically and reproducibly (gzip without timestamp).

    Returns
    -------
    list of Path
        Every file written, case by case (``swi.nii.gz`` first in each); a case's folder
        is its files' parent.
    """
    out_dir = Path(out_dir)
    written: list[Path] = []
    for index in range(int(n_cases)):
        case_seed = _cohort_seed(seed, index)
        case = make_swi_case(case_seed, **make_swi_case_kwargs)
        case_dir = out_dir / f"case-{index:03d}"
        payloads = {"magnitude": ("swi.nii.gz", case.magnitude.to_bytes())}
        if case.phase is not None:
            payloads["phase"] = ("phase.nii.gz", phase_nifti_bytes(case.phase))
        payloads["instances"] = ("truth_instances.nii.gz", case.truth["instances"].to_bytes())
        payloads["mimics"] = ("truth_mimics.nii.gz", case.truth["mimic_labels"].to_bytes())
        for name, raw in payloads.values():
            written.append(_write_bytes(case_dir / name, _gz(raw)))
        truth = _truth_json(case, {key: name for key, (name, _) in payloads.items()})
        truth["cohort"] = {"seed": int(seed), "index": index, "case_seed": case_seed}
        text = json.dumps(truth, indent=2, ensure_ascii=False) + "\n"
        written.append(_write_bytes(case_dir / "truth.json", text.encode("utf-8")))
    return written


def load_swi_truth(case_dir: str | Path) -> dict[str, Any]:
    """Read a case's truth back (for evaluation code; models never read it).

    Works on a :func:`write_swi_cohort` folder and on the ``cmb`` sample folder.

    Returns
    -------
    dict
        The truth JSON (``cmbs``, ``mimics``, ``params``, ...), plus ``'instances'`` and
        ``'mimic_labels'`` as nibabel images where their files exist.
    """
    case_dir = Path(case_dir)
    jsons = [case_dir / "truth.json"] + sorted(case_dir.glob("*_truth.json"))
    found = [p for p in jsons if p.is_file()]
    if not found:
        raise FileNotFoundError(f"{case_dir}: no truth.json")
    truth = json.loads(found[0].read_text(encoding="utf-8"))
    files = truth.get("files", {})
    for key, name in (("instances", files.get("instances")), ("mimic_labels", files.get("mimics"))):
        if name and (case_dir / name).is_file():
            truth[key] = nib.load(case_dir / name)
    return truth


# --------------------------------------------------------------------------- sample case

#: Settings of the committed ``cmb`` sample: an axial slab from the lower pallidum to the
#: centrum semiovale (z -10..62 mm: 40 slices of 1.8 mm), 0.9 x 0.9 mm in plane, LAS,
#: lobar and deep bleeds, veins, the pallidal iron and one calcification. Gzip compresses
#: noise poorly, so noise, dynamic range and slice count set the folder's size (budget
#: 1.6 MB): noise 0.02 (white-matter SNR ~22, as SWI has) and a receiver scale putting
#: white matter near 35, so the noise (1.6 units) stays above the int16 step; the phase
#: is stored in steps of :data:`SAMPLE_PHASE_STEP_RAD`, a third of its noise in white
#: matter.
CMB_SAMPLE: dict[str, Any] = {
    "seed": 20240607,
    "voxel_size": (0.9, 0.9, 1.8),
    "orientation": "LAS",
    "rotation_deg": (1.5, -1.0, 2.0),
    "n_cmb": 7,
    "location_weights": {"lobar": 0.6, "deep": 0.4},
    "mimics": {"vein": 8, "iron": 1, "sulcal": 2, "airbone": 0, "calcification": 1},
    "slab": (-10.0, 62.0),
    "bias_strength": 0.15,
    "noise_sd": 0.02,
    "te_ms": 20.0,
    "intensity_scale": 80.0,
    "margin_mm": 3.0,
}


def write_cmb_sample(case_dir: Path) -> list[Path]:
    """Susceptibility-weighted slab with microbleeds and their mimics, with truth.

    ``sub-demo_swi.nii.gz``: int16 T2*-weighted GRE magnitude, an axial slab of 40 slices
    (0.9 x 0.9 x 1.8 mm, stored LAS, head slightly rotated) from the lower basal ganglia
    (z = -10 mm) to the centrum semiovale (z = 62 mm), made by
    :func:`napari_neuroreview.core.phantoms.swi.make_swi_case` from the MNI152 2009
    template (partial volume, GRE tissue contrast with iron in the deep grey nuclei, bias
    field, Rician noise). ``sub-demo_phase.nii.gz``: filtered phase in radians (int16 with
    a scale factor of 0.015 rad; positive = paramagnetic). ``sub-demo_cmb-instances.nii.gz``: one label
    per microbleed (visible extent, blooming included). ``sub-demo_truth.json``: the
    microbleeds (world RAS mm, voxel, diameter, location lobar/deep) and the mimics
    (veins with their paths, the iron of the globus pallidus and red nucleus on both sides,
    a calcification with the opposite phase sign, sulcal spots), and every simulation parameter.
    """
    case_dir = Path(case_dir)
    case = make_swi_case(**CMB_SAMPLE)
    assert case.phase is not None
    written = [
        _write_bytes(case_dir / "sub-demo_swi.nii.gz", _gz(case.magnitude.to_bytes())),
        _write_bytes(case_dir / "sub-demo_phase.nii.gz", _gz(phase_nifti_bytes(case.phase, SAMPLE_PHASE_STEP_RAD))),
        _write_bytes(case_dir / "sub-demo_cmb-instances.nii.gz", _gz(case.truth["instances"].to_bytes())),
    ]
    files = {"magnitude": written[0].name, "phase": written[1].name, "instances": written[2].name}
    truth = _truth_json(case, files)
    text = json.dumps(truth, indent=2, ensure_ascii=False) + "\n"
    written.append(_write_bytes(case_dir / "sub-demo_truth.json", text.encode("utf-8")))
    return written
