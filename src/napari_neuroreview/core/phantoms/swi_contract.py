"""What both SWI simulators share: the case they return and where they put lesions.

Why a module of its own: the phenomenological simulator (:mod:`.swi`) and the physics
simulator (:mod:`.swi_physics`) must stay independent in their physics (a detector is
tested on the one it did not train on), yet training, evaluation and the benchmark read
their cases the same way, and both place microbleeds in the same MARS classes. Importing
one simulator's package from the other would run its whole physics; this module holds
only the contract and the anatomical tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

__all__ = [
    "CALC_SITES", "CALC_SITE_WEIGHTS", "LOCATIONS", "REGION_BOXES_MNI", "CMBSite", "SWICase", "SiderosisSite",
    "check_sites", "lesion_weights", "phantom_image", "skipped_site",
]

#: Microbleed location classes (MARS: Gregoire et al. 2009, Neurology 73:1759).
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

#: Calcification sites (right side, mirrored; MNI mm): choroid plexus glomus in the
#: atrium of the lateral ventricle, the pineal gland behind the third ventricle (midline),
#: the putamen; drawn with :data:`CALC_SITE_WEIGHTS`.
CALC_SITES: dict[str, tuple[float, float, float]] = {
    "choroid_plexus": (23.0, -40.0, 14.0),
    "pineal": (0.0, -32.0, 1.0),
    "basal_ganglia": (26.0, 6.0, 3.0),
}
CALC_SITE_WEIGHTS: tuple[float, ...] = (0.45, 0.3, 0.25)


@dataclass(eq=False)
class SWICase:
    """A simulated SWI scan, its filtered phase and the ground truth.

    Attributes
    ----------
    magnitude : nib.Nifti1Image
        T2*-weighted GRE magnitude, affine in qform and sform (code 1).
    phase : nib.Nifti1Image or None
        float32 filtered phase in radians, [-pi, pi], same grid; 0 outside the brain.
        Sign convention: the simulator's ``PHASE_CONVENTION`` (the same text in both).
    truth : dict
        ``'instances'``: uint16 image, microbleed ``id`` (1..n) over its visible extent
        (blooming included); ``'cmbs'``: list of dicts (id, world_ras_mm, voxel_ijk,
        diameter_mm (true), visible_diameter_mm, volume_mm3 (of the instance mask),
        location, region, susceptibility_ppm, ...); ``'mimics'``: list of dicts (type,
        world_ras_mm, voxel_ijk, ..., ``path`` for veins), those inside the field of view;
        ``'mimic_labels'``: uint8 image; ``'brain_mask'``: uint8 image; ``'params'``:
        everything needed to reproduce the case. Never give any of it to a model under test.
    """

    magnitude: nib.Nifti1Image
    phase: nib.Nifti1Image | None
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        """The case's parameters (same object as ``truth['params']``)."""
        return self.truth["params"]


def phantom_image(data: np.ndarray, affine: np.ndarray, descrip: str, intent_label: bool = False) -> nib.Nifti1Image:
    """An in-memory NIfTI of a simulated volume: both forms code 1 (scanner), mm/s, a description."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = descrip[:79].encode("ascii")
    if intent_label:
        img.header.set_intent("label")
    return img


def lesion_weights(cmb_diameter_mm: tuple[float, float], location_weights: dict[str, float] | None) -> dict[str, float]:
    """Check the microbleed size range and return the share of each MARS class (default 0.5/0.3/0.2).

    Why here: both simulators take these two arguments and must refuse the same bad values.
    """
    lo_d, hi_d = (float(v) for v in cmb_diameter_mm)
    if not 0 < lo_d <= hi_d:
        raise ValueError(f"cmb_diameter_mm must be 0 < low <= high, got {cmb_diameter_mm!r}")
    weights = {"lobar": 0.5, "deep": 0.3, "infratentorial": 0.2} if location_weights is None else dict(location_weights)
    if set(weights) - set(LOCATIONS) or any(float(v) < 0 for v in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"location_weights must map {LOCATIONS} to weights >= 0 (sum > 0), got {weights!r}")
    return weights


@dataclass(frozen=True)
class CMBSite:
    """A microbleed to draw exactly here (``make_swi_case(cmb_sites=...)`` of either simulator).

    Why: a cohort whose sites follow a disease (``core.phantoms.csvd``) must decide
    where every bleed is, while each simulator keeps its own physics (size -> blooming,
    susceptibility, signal). ``region`` and ``location`` are copied into the truth record
    (e.g. a MARS region and class).
    """

    world_ras_mm: tuple[float, float, float]
    diameter_mm: float
    region: str = ""
    location: str = ""


@dataclass(frozen=True)
class SiderosisSite:
    """Cortical superficial siderosis to draw along a path: a thin haemosiderin layer.

    ``path_ras_mm``: the polyline (world RAS mm, >= 2 points) along the cortical surface;
    ``thickness_mm``: the layer's true thickness (drawn as a tube of that diameter).
    """

    path_ras_mm: tuple[tuple[float, float, float], ...]
    thickness_mm: float
    region: str = ""


def check_sites(cmb_sites: Sequence[CMBSite] | None, n_cmb: int | None,
                siderosis: Sequence[SiderosisSite] | None = None) -> None:
    """Refuse explicit sites given with ``n_cmb``, and sites with a bad position, size or path.

    Why here: both simulators take the same arguments and must refuse the same bad values.
    """
    if cmb_sites is not None and n_cmb is not None:
        raise ValueError("give n_cmb or cmb_sites, not both")
    for s in cmb_sites or ():
        if not isinstance(s, CMBSite):
            raise ValueError(f"cmb_sites must hold CMBSite objects, got {s!r}")
        if len(s.world_ras_mm) != 3 or not all(math.isfinite(float(v)) for v in s.world_ras_mm) or not (
                math.isfinite(float(s.diameter_mm)) and float(s.diameter_mm) > 0):
            raise ValueError(f"a CMB site needs 3 finite coordinates and a diameter > 0, got {s!r}")
    for s in siderosis or ():
        if not isinstance(s, SiderosisSite):
            raise ValueError(f"siderosis must hold SiderosisSite objects, got {s!r}")
        path = np.asarray(s.path_ras_mm, float)
        if path.ndim != 2 or path.shape[1] != 3 or len(path) < 2 or not np.isfinite(path).all() or not (
                float(s.thickness_mm) > 0):
            raise ValueError(f"a siderosis site needs a path of >= 2 finite 3D points and a thickness > 0, got {s!r}")


def skipped_site(site: CMBSite, reason: str) -> dict[str, Any]:
    """The truth record of a site a simulator did not draw (``truth['skipped_sites']``)."""
    rec = asdict(site)
    rec["world_ras_mm"] = [round(float(v), 4) for v in site.world_ras_mm]
    rec["reason"] = reason
    return rec
