"""One pair of functions maps file voxels <-> display; the display is axial, anterior up,
patient right on screen left, and proportioned by voxel size, whatever the file order."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from napari_neuroreview.core.io.orientation import FRAME, from_display, plan_display, to_display

from synthetic import reorient_to

ORIENTATIONS = ["RAS", "LPS", "LAS", "PIR", "ILA"]


def _napari_world(index: np.ndarray, geometry) -> np.ndarray:
    """Where napari draws a display index: data coordinate * scale + translate."""
    return np.asarray(index) * np.asarray(geometry.scale) + np.asarray(geometry.translate)


@pytest.mark.parametrize("axcodes", ORIENTATIONS)
def test_landmark_lands_at_same_display_and_world_position(ras_image, axcodes: str) -> None:
    data, affine = ras_image
    landmark_ras = nib.affines.apply_affine(affine, [30, 10, 5])
    stored, stored_affine = reorient_to(data, affine, axcodes)
    assert "".join(nib.aff2axcodes(stored_affine)) == axcodes
    geometry = plan_display(stored.shape, stored_affine)
    display = to_display(stored, geometry)
    peak = np.array(np.unravel_index(np.argmax(display), display.shape))
    np.testing.assert_allclose(_napari_world(peak, geometry), FRAME @ landmark_ras, atol=1e-9)
    np.testing.assert_allclose(geometry.display_to_world(peak), landmark_ras, atol=1e-9)
    # Display axes are (S, P, L) with the voxel sizes of the file axes that feed them.
    assert display.shape == (24, 48, 40)
    np.testing.assert_allclose(geometry.scale, (2.5, 1.25, 1.0))
    np.testing.assert_array_equal(from_display(display, geometry), stored)


def test_display_directions_are_axial_anterior_up_radiological(ras_image) -> None:
    data, affine = ras_image
    stored, stored_affine = reorient_to(data, affine, "LPS")
    geometry = plan_display(stored.shape, stored_affine)
    origin = geometry.display_to_world([0, 0, 0])
    up_slider = geometry.display_to_world([1, 0, 0]) - origin
    down_rows = geometry.display_to_world([0, 1, 0]) - origin
    across_cols = geometry.display_to_world([0, 0, 1]) - origin
    assert up_slider[2] > 0 and np.allclose(up_slider[:2], 0)  # slider moves superior
    assert down_rows[1] < 0 and np.allclose(down_rows[[0, 2]], 0)  # row 0 is most anterior
    assert across_cols[0] < 0 and np.allclose(across_cols[1:], 0)  # column 0 is patient right


def _oblique_blob(rotation_deg: tuple[float, float, float], landmark_ras: np.ndarray):
    shape = (60, 70, 40)
    zooms = np.array([1.0, 1.2, 2.0])
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", rotation_deg, degrees=True).as_matrix() @ np.diag(zooms)
    affine[:3, 3] = -affine[:3, :3] @ (np.array(shape) / 2 - 0.5)
    ras = nib.affines.apply_affine(affine, np.indices(shape).reshape(3, -1).T)
    data = np.exp(-((ras - landmark_ras) ** 2).sum(1) / (2 * 3.0**2)).reshape(shape).astype(np.float32)
    return data, affine


def test_oblique_scan_is_resampled_with_a_warning_and_lands_right() -> None:
    landmark = np.array([10.0, -15.0, 12.0])
    data, affine = _oblique_blob((20.0, 0.0, 10.0), landmark)
    geometry = plan_display(data.shape, affine)
    assert geometry.resampled and geometry.warning and "Oblique" in geometry.warning
    display = to_display(data, geometry)
    peak = np.array(np.unravel_index(np.argmax(display), display.shape))
    # Within one display voxel of the truth, in napari's frame and in world RAS.
    assert np.all(np.abs(_napari_world(peak, geometry) - FRAME @ landmark) <= np.asarray(geometry.scale))
    assert np.linalg.norm(geometry.display_to_world(peak) - landmark) <= 2.0
    # The true affine is kept untouched.
    np.testing.assert_array_equal(geometry.source_affine, affine)


def test_tiny_obliquity_is_shown_without_resampling() -> None:
    data, affine = _oblique_blob((0.05, 0.0, 0.0), np.zeros(3))
    geometry = plan_display(data.shape, affine)
    assert not geometry.resampled and geometry.warning is None
    assert geometry.obliquity_deg == pytest.approx(0.05, abs=1e-3)


def test_labels_drawn_on_oblique_display_return_to_file_grid() -> None:
    landmark = np.array([10.0, -15.0, 12.0])
    data, affine = _oblique_blob((20.0, 0.0, 10.0), landmark)
    geometry = plan_display(data.shape, affine)
    labels = np.zeros(geometry.display_shape, np.uint8)
    index = np.rint(geometry.world_to_display(landmark)).astype(int)
    labels[tuple(index)] = 7  # smaller than a file voxel: must not vanish
    lo, hi = index - 2, index + 3
    labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == 0] = 3
    back = from_display(labels, geometry)
    assert back.shape == data.shape
    assert set(np.unique(back)) == {0, 3, 7}
    where7 = np.argwhere(back == 7)[0]
    assert np.linalg.norm(nib.affines.apply_affine(affine, where7) - landmark) <= 2.5
    centre3 = np.argwhere(back == 3).mean(axis=0)
    assert np.linalg.norm(nib.affines.apply_affine(affine, centre3) - landmark) <= 2.5


def test_4d_time_axis_goes_first(ras_image) -> None:
    data, affine = ras_image
    series = np.stack([data, data * 2, data * 3], axis=-1)
    stored, stored_affine = reorient_to(series, affine, "LAS")
    geometry = plan_display(stored.shape, stored_affine)
    display = to_display(stored, geometry)
    assert display.shape == (3, 24, 48, 40)
    np.testing.assert_array_equal(from_display(display, geometry), stored)
