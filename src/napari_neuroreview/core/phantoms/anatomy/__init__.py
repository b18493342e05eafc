"""Simulated T1-weighted head scans built on the MNI152 2009 template.

No patient data can be downloaded here, so every model in the plugin is trained and tested
on phantoms. They all share one anatomy, the MNI152 ICBM 2009 (nonlinear symmetric, 1 mm)
T1 template and its grey/white-matter probability maps, which nilearn ships offline
(:mod:`napari_neuroreview.core.anatomy`, where the run-time code reads it too); this
package "scans" that anatomy on any image grid a real scanner could produce: anisotropic
voxels, any voxel-axis order and sign (RAS, LPS, LAS, PIR ...), and oblique slice
prescriptions.

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

Where things are
----------------
:mod:`napari_neuroreview.core.anatomy`
    The template and tissue maps (:func:`load_mni_anatomy`), scanner grids
    (:func:`make_affine`), voxel/world mapping and partial-volume sampling (step 1).
:mod:`.scanner`
    Bias field and complex noise (steps 3 and 4).
:mod:`.t1`
    :func:`make_t1_case` (steps 2 and 5, and the truth) and :class:`AnatomyCase`.
"""

from __future__ import annotations

from .scanner import complex_noise, random_bias_field
from .t1 import INTENSITY_SCALE, TISSUE_LABELS, AnatomyCase, make_t1_case

__all__ = [
    "INTENSITY_SCALE",
    "TISSUE_LABELS",
    "AnatomyCase",
    "make_t1_case",
    "random_bias_field",
    "complex_noise",
]
