"""The same simulated brain, stored RAS, LPS, LAS and oblique at anisotropic spacing, is
displayed with its anatomy at the same place, through the same code the reader uses."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_neuroreview.core.io.layers import image_layer_data
from napari_neuroreview.core.io.nifti import load_volume
from napari_neuroreview.core.io.orientation import FRAME
from napari_neuroreview.core.phantoms.anatomy import make_t1_case

#: A lesion-like bright spot in the patient's LEFT hemisphere: the template is symmetric,
#: so only an asymmetric mark can reveal a left-right flip.
LEFT_MARK_RAS = np.array([-38.0, -20.0, 28.0])
GRIDS = {
    "RAS": dict(voxel_size=(1.5, 1.5, 1.5), orientation="RAS"),
    "LPS": dict(voxel_size=(1.2, 1.2, 2.5), orientation="LPS"),
    "LAS": dict(voxel_size=(2.0, 1.1, 1.4), orientation="LAS"),
    "oblique": dict(voxel_size=(1.3, 1.3, 2.0), orientation="RAS", rotation_deg=(15.0, 0.0, 8.0)),
}


def _write_case(tmp_path: Path, name: str) -> tuple[Path, Path]:
    case = make_t1_case(seed=3, noise_sd=0.0, bias_strength=0.0, **GRIDS[name])
    data = np.asarray(case.image.dataobj).astype(np.float32)
    ras = nib.affines.apply_affine(case.image.affine, np.indices(data.shape).reshape(3, -1).T)
    mark = np.exp(-((ras - LEFT_MARK_RAS) ** 2).sum(1) / (2 * 2.5**2)).reshape(data.shape)
    img = nib.Nifti1Image(data + 3000.0 * mark.astype(np.float32), case.image.affine)
    img.set_sform(case.image.affine, code=1)
    scan = tmp_path / f"{name}_T1w.nii.gz"
    nib.save(img, str(scan))
    tissue = tmp_path / f"{name}_dseg.nii.gz"
    nib.save(case.truth["tissue"], str(tissue))
    return scan, tissue


@pytest.fixture(scope="module")
def displayed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grids")
    out = {}
    for name in GRIDS:
        scan, tissue = _write_case(tmp, name)
        image, kwargs, _, geometry = image_layer_data(load_volume(scan))
        labels, lkwargs, layer_type, _ = image_layer_data(load_volume(tissue))
        assert layer_type == "labels"
        out[name] = (image, kwargs, labels, lkwargs, geometry)
    return out


@pytest.mark.parametrize("name", list(GRIDS))
def test_left_mark_lands_at_its_world_position_on_screen_right(displayed, name) -> None:
    image, kwargs, _, _, geometry = displayed[name]
    peak = np.array(np.unravel_index(np.argmax(image), image.shape))
    napari_xyz = peak * np.asarray(kwargs["scale"]) + np.asarray(kwargs["translate"])
    tolerance = np.asarray(kwargs["scale"])  # one display voxel
    assert np.all(np.abs(napari_xyz - FRAME @ LEFT_MARK_RAS) <= tolerance), (napari_xyz, FRAME @ LEFT_MARK_RAS)
    assert np.linalg.norm(geometry.display_to_world(peak) - LEFT_MARK_RAS) <= np.linalg.norm(tolerance)
    # Radiological: the patient's left hemisphere is drawn on the right half of the screen.
    assert peak[2] > image.shape[2] / 2
    assert geometry.resampled == (name == "oblique")


def test_white_matter_centroid_is_the_same_display_point_on_every_grid(displayed) -> None:
    centres = {}
    for name, (_, _, labels, lkwargs, _) in displayed.items():
        centroid = np.array(ndimage.center_of_mass(labels == 3))
        centres[name] = centroid * np.asarray(lkwargs["scale"]) + np.asarray(lkwargs["translate"])
    reference = centres["RAS"]
    for name, centre in centres.items():
        assert np.linalg.norm(centre - reference) < 1.5, (name, centres)


def test_anatomy_is_proportioned_by_voxel_size(displayed) -> None:
    """The brain's extent in mm on screen is the same whatever the voxel size."""
    extents = {}
    for name, (_, _, labels, lkwargs, _) in displayed.items():
        brain = np.argwhere(labels > 0)
        extents[name] = (brain.max(0) - brain.min(0) + 1) * np.asarray(lkwargs["scale"])
    for name, extent in extents.items():
        np.testing.assert_allclose(extent, extents["RAS"], atol=5.0, err_msg=name)
