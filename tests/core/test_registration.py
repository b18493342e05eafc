"""A scan brought to MNI by SimpleITK's affine registration: the phantom's microbleeds land where they belong.

Both SWI simulators place their anatomy in MNI space (world == MNI). Each case is stored
on an oblique, LPS, anisotropic grid and then moved out of MNI by a known similarity
``T`` (its affine replaced by ``T @ affine``: 10 degrees, ~18 mm, scale 1.05), so the
registration must undo ``T``; the truth microbleeds' MNI positions are then known
exactly. Measured (these seeds): median error 0.20 mm (phenomenological) and 0.42 mm
(physics); the truth's location class for 12 and 11 of 12 microbleeds. The one miss is
no registration error: the physics phantom puts a "lobar" microbleed (its MARS boxes)
where the atlas has deep white matter, and its true MNI position gives the same answer.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine

from napari_neuroreview.core.anatomy import mars, registration
from napari_neuroreview.core.anatomy.grids import _rotation_matrix, make_affine
from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.io.nifti import volume_from_image
from napari_neuroreview.core.phantoms.swi_contract import SWICase
from napari_neuroreview.core.progress import Progress, run_to_completion

#: The grid both phantoms are stored on: oblique, LPS, anisotropic.
GRID = {"voxel_size": (0.9, 1.1, 2.0), "orientation": "LPS", "rotation_deg": (8.0, -5.0, 4.0), "n_cmb": 12}
#: What is switched off to keep the cases quick (no mimics, no phase: registration reads the magnitude).
QUICK = {"with_phase": False, "mimics": {"vein": 0, "calcification": 0}}


def _moved_out_of_mni() -> np.ndarray:
    """A similarity: rotation (10, -6, 8) degrees, scale 1.05, shift (15, -10, 8) mm."""
    t = np.eye(4)
    t[:3, :3] = 1.05 * _rotation_matrix((10.0, -6.0, 8.0))
    t[:3, 3] = (15.0, -10.0, 8.0)
    return t


def _check_case(case: SWICase) -> tuple[float, float]:
    """Register the moved case; return (median error mm, share of CMBs in the truth's location class)."""
    t = _moved_out_of_mni()
    moved = nib.Nifti1Image(np.asarray(case.magnitude.dataobj), t @ case.magnitude.affine)
    updates: list[Progress] = []
    result = run_to_completion(registration.register_to_mni(volume_from_image(moved)), updates.append)
    assert updates and updates[-1].step == updates[-1].total
    truth_mni = np.array([c["world_ras_mm"] for c in case.truth["cmbs"]])
    mapped = result.to_mni(apply_affine(t, truth_mni))
    assert np.allclose(result.from_mni(mapped), apply_affine(t, truth_mni), atol=1e-6)
    error = np.linalg.norm(mapped - truth_mni, axis=1)
    found = mars.regions_at(mapped)
    at_truth = mars.regions_at(truth_mni)
    same_class = np.mean([f.mars_class == c["location"] for f, c in zip(found, case.truth["cmbs"])])
    # registration loses nothing the atlas itself gives the true positions
    assert np.mean([(f.region, f.side) == (a.region, a.side) for f, a in zip(found, at_truth)]) >= 0.9
    assert result.brain_dice > 0.9 and np.all(np.abs(result.scales - 1 / 1.05) < 0.05)
    return float(np.median(error)), float(same_class)


def test_itk_geometry_is_the_nifti_geometry_in_lps() -> None:
    affine, _ = make_affine((0.9, 1.1, 2.0), "LPS", (8.0, -5.0, 4.0))
    image = registration._to_itk(np.zeros((7, 6, 5), np.float32), affine)
    for ijk in ((0, 0, 0), (6, 0, 0), (1, 5, 4)):
        ras = apply_affine(affine, ijk)
        assert np.allclose(image.TransformIndexToPhysicalPoint(ijk), (-ras[0], -ras[1], ras[2]))
    assert np.allclose(registration.ras_lps(registration.ras_lps(affine)), affine)


def test_phenomenological_phantom_cmbs_land_in_mni_and_their_mars_class() -> None:
    from napari_neuroreview.core.phantoms.swi import make_swi_case

    median_mm, share = _check_case(make_swi_case(3, **GRID, **QUICK))
    assert median_mm < 3.0
    assert share >= 0.9


def test_physics_phantom_cmbs_land_in_mni_and_their_mars_class() -> None:
    from napari_neuroreview.core.phantoms.swi_physics import make_swi_case

    median_mm, share = _check_case(make_swi_case(5, **GRID, **QUICK, macro_mm=3.0))
    assert median_mm < 3.0
    assert share >= 0.9


def test_noise_is_refused_in_one_sentence() -> None:
    affine, shape = make_affine((1.5, 1.5, 3.0), "LPS", (5.0, 0.0, 0.0))
    noise = np.random.default_rng(0).uniform(0, 1000, size=shape).astype(np.float32)
    volume = volume_from_image(nib.Nifti1Image(noise, affine))
    with pytest.raises(InputFileError, match=r"^noise\.nii\.gz could not be registered to the MNI brain: .*, so it is probably not a brain scan\.$"):
        run_to_completion(registration.register_to_mni(volume, name="noise.nii.gz"))
    with pytest.raises(InputFileError, match="3D volume"):
        run_to_completion(registration.register_to_mni(volume_from_image(nib.Nifti1Image(noise[..., None], affine))))


def test_a_blank_scan_is_refused_in_one_sentence_not_a_simpleitk_error() -> None:
    """SimpleITK's moments stage raises RuntimeError ('Total Mass of the image was zero') on a blank scan."""
    affine, shape = make_affine((1.5, 1.5, 3.0), "LPS", (5.0, 0.0, 0.0))
    volume = volume_from_image(nib.Nifti1Image(np.zeros(shape, np.float32), affine))
    with pytest.raises(InputFileError, match=r"^blank\.nii\.gz could not be registered to the MNI brain: .*not a brain scan\.$"):
        run_to_completion(registration.register_to_mni(volume, name="blank.nii.gz"))
