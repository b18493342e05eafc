"""Simulated susceptibility-weighted (SWI) scans with cerebral microbleeds and their mimics.

A microbleed (CMB) detector is only useful if it rejects what looks like a microbleed on a
single slice: veins cut across, the iron of the deep grey nuclei, calcifications, the
dark spots at sulci and at air-bone interfaces. This package simulates a T2*-weighted
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
the scanner grid with partial volume (:func:`~napari_neuroreview.core.anatomy.sample_template_maps`). Contrast
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

Where things are
----------------
:mod:`.case`
    :func:`make_swi_case`, the recipe step by step, and :class:`SWICase`.
:mod:`.contrast`
    Tissue and iron contrast: the GRE signal of the template, :data:`NUCLEI_MNI`.
:mod:`.lesions`
    Microbleeds (MARS classes, :data:`REGION_BOXES_MNI`) and calcifications: placement
    and drawing.
:mod:`.mimics`
    Veins, the iron nuclei's phase and labels, sulcal and air-bone spots.
:mod:`.susceptibility`
    Phase per ppm at 3 T, blooming, voxel-averaged phase, demagnetising factor.
:mod:`.scene`
    The scanner grid, the layers objects draw into, and keeping objects apart.
:mod:`.cohort`
    Writing cases and the committed ``cmb`` sample to disk; reading truth back.

Everything public is importable from this package, as before it was split.
"""

from __future__ import annotations

from napari_neuroreview.core.io.atomic import write_with  # noqa: F401

from ..swi_contract import LOCATIONS, REGION_BOXES_MNI, SWICase
from .case import make_swi_case
from .cohort import (
    CMB_SAMPLE,
    PHASE_STEP_RAD,
    SAMPLE_PHASE_STEP_RAD,
    load_swi_truth,
    phase_nifti_bytes,
    write_cmb_sample,
    write_swi_cohort,
)
from .contrast import NUCLEI_MNI
from .lesions import in_region_box
from .mimics import MIMIC_LABELS, MIMIC_TYPES
from .susceptibility import B0_T, BLOOMING_K_PER_MS, PHASE_CONVENTION

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
