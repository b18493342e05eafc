"""What both SWI simulators share: the case they return and where they put lesions.

Why a module of its own: the phenomenological simulator (:mod:`.swi`) and the physics
simulator (:mod:`.swi_physics`) must stay independent in their physics (a detector is
tested on the one it did not train on), yet training, evaluation and the benchmark read
their cases the same way, and both place microbleeds in the same MARS classes. Importing
one simulator's package from the other would run its whole physics; this module holds
only the contract and the anatomical tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

__all__ = [
    "CALC_SITES", "CALC_SITE_WEIGHTS", "LOCATIONS", "REGION_BOXES_MNI", "SWICase", "lesion_weights", "phantom_image",
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
