"""The MNI152 anatomy and the network atlas: what the tasks, the widgets and the phantoms share.

Why a room of its own: the MNI template, its tissue maps and the five networks' templates
are read at run time (network matching, the Networks widget's template view), and the
simulators build their cases on the same anatomy. Kept here, the run-time code never
imports the simulators (``core/phantoms`` imports from here, never the reverse;
tests/core/test_anatomy_imports.py keeps it so).

Where things are
----------------
:mod:`.mni`
    :func:`load_mni_anatomy` (the template and tissue maps nilearn ships) and
    :data:`LANDMARKS_MNI`.
:mod:`.grids`
    :func:`make_affine` (scanner-like grids), voxel/world mapping (moving an array between
    grids is ``core.io.resample.resample_to_grid``).
:mod:`.sampling`
    :func:`sample_template_maps`: partial-volume sampling of the 1 mm maps onto a grid.
:mod:`.atlas`
    The five resting-state networks' ROI tables and template maps (imported as a module:
    ``from napari_neuroreview.core.anatomy import atlas``).
:mod:`.mars`
    MARS microbleed regions (lobar, deep, infratentorial, per side) in MNI space:
    :func:`~.mars.regions_at`, :func:`~.mars.region_points` (imported as a module).
:mod:`.registration`
    :func:`~.registration.register_to_mni`: a scan's world -> MNI152 by SimpleITK affine
    registration (imported as a module; SimpleITK is loaded when first used).
"""

from __future__ import annotations

from .grids import make_affine, voxel_to_world, world_to_voxel
from .mni import LANDMARKS_MNI, MNIAnatomy, load_mni_anatomy
from .sampling import sample_template_maps

__all__ = [
    "LANDMARKS_MNI",
    "MNIAnatomy",
    "load_mni_anatomy",
    "make_affine",
    "sample_template_maps",
    "voxel_to_world",
    "world_to_voxel",
]
