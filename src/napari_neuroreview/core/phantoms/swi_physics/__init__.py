"""A second SWI simulator, on susceptibility physics: chi map -> dipole field -> complex GRE -> SWI.

Why a second one: a detector trained on one generator learns its look; the
phenomenological simulator (:mod:`napari_neuroreview.core.phantoms.swi`) paints dark
spots and their phase from formulas. This package starts from a susceptibility map and
lets the physics make the image, so what a model sees here (blooming, dipole phase,
dark bands at the skull base, iron contrast) comes from a different generator. It
imports only :mod:`napari_neuroreview.core.anatomy` and :mod:`napari_neuroreview.core.io`,
never the other simulator (tests/core/test_swi_physics.py checks it).

What is imitated
----------------
*Field.* Susceptibility (ppm, relative to tissue) is turned into the field perturbation
along B0 by the dipole kernel in k-space, ``D(k) = 1/3 - (k.b)**2/|k|**2``, zero-padded
(:mod:`.dipole`); B0 may point in any direction (default world +z). Two scales
(:mod:`.render`): the whole head on a 1.5 mm grid (grey/white matter, iron nuclei,
dural sinuses and deep veins, air of the sinuses and mastoids), and fine patches
subdividing the acquired voxels around each small source (microbleeds, calcifications,
medullary and cortical veins).

*Phase.* ``2 pi gamma-bar B0 TE dB`` at 1.5 or 3 T; the physical precession phase is the
negative of that, and the stored sign follows :data:`PHASE_CONVENTION` (the same text
as the other simulator's, so the phase images are interchangeable). The kernel holds the
Lorentz correction, so the inside of a sphere has no shift and a bleed's phase is its
dipole: positive above and below it along B0, negative around its equator (the reverse
for calcium). An axial slice through a bleed's centre therefore shows a negative ring,
and a vein across B0 has negative phase inside (``chi/6 (3 cos**2 theta - 1)``); the
other simulator keeps a core whose sign follows chi, a look this one does not copy.

*Magnitude.* Spoiled GRE: ``PD sin a (1 - E1)/(1 - cos a E1) exp(-TE/T2*)`` per tissue,
T1, T2* and PD at 1.5 and 3 T from the literature (:mod:`.tissue`), iron adding R2*
proportional to its susceptibility and to B0. Intravoxel dephasing: the complex signal
of the fine sub-samples is averaged into each voxel (patches), and the whole-head
field's gradient gives ``sinc`` losses (skull-base dark bands). Blooming therefore grows
with TE and B0 without a parameter for it.

*Sources* (:mod:`.sources`, :mod:`.objects`; values and citations in :mod:`.tissue`):
veins as chi tubes with deoxygenated blood ``Hct (1 - Y) 3.39 ppm`` (0.30-0.45 ppm) --
cortical veins along sulci, medullary veins radial to the lateral ventricles, internal
cerebral and basal veins, great vein, superior sagittal, straight and transverse sinuses;
microbleeds as haemosiderin spheres (0.5-1.5 ppm, 2-10 mm) in the MARS classes (lobar,
deep, infratentorial; :data:`REGION_BOXES_MNI`); calcifications with negative chi; iron
in the globus pallidus, putamen, caudate, red nucleus, substantia nigra and dentate; air
(+9.4 ppm relative to tissue) in the frontal, ethmoid and sphenoid sinuses and mastoids.

*SWI processing* (:mod:`.processing`, Haacke et al. 2004, Magn Reson Med 52:612):
homodyne high-pass phase (complex division by an in-plane Gaussian low-pass), a phase
mask on the paramagnetic sign, ``magnitude x mask**4``, minIP over a slab
(:func:`swi_images`).

*Output contract.* :func:`make_swi_case` returns an :class:`SWICase` with the fields and
truth keys of the other simulator's, on any grid (orientation, voxel size, rotation,
slab); :func:`write_physics_cohort` writes the same folder layout through the one NIfTI
writer (``core.io.nifti.save_volume``).

*Not simulated.* The head outside the brain (scalp, bone; only the air spaces are
there), flow, motion, multi-channel coil combination, and the chemical shift of fat.

Where things are
----------------
:mod:`.case` the recipe, :mod:`.dipole` the kernel, :mod:`.render` grids and patches,
:mod:`.objects` small sources, :mod:`.sources` anatomy tables, :mod:`.tissue` numbers,
:mod:`.processing` SWI, :mod:`.cohort` writing cases.
"""

from __future__ import annotations

from ..swi_contract import LOCATIONS, REGION_BOXES_MNI, SWICase
from .case import MIMIC_TYPES, make_swi_case
from .cohort import write_physics_cohort
from .dipole import dipole_kernel, field_ppm, rad_per_ppm
from .objects import MIMIC_LABELS
from .processing import highpass_phase, phase_mask, swi_images
from .tissue import FIELD_STRENGTHS_T, PHASE_CONVENTION

__all__ = [
    "FIELD_STRENGTHS_T",
    "LOCATIONS",
    "MIMIC_LABELS",
    "MIMIC_TYPES",
    "PHASE_CONVENTION",
    "REGION_BOXES_MNI",
    "SWICase",
    "dipole_kernel",
    "field_ppm",
    "highpass_phase",
    "make_swi_case",
    "phase_mask",
    "rad_per_ppm",
    "swi_images",
    "write_physics_cohort",
]
