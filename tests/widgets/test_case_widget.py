"""The Case widget driven as a radiologist would: open, look, annotate, save, mask."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from napari_neuroreview.core.device import resolve_device
from napari_neuroreview.core.io.layers import geometry_of
from napari_neuroreview.core.store import CaseStore
from napari_neuroreview.widgets.case import cursor_text, text_overlay

from synthetic import reorient_to, save_nifti


@pytest.fixture
def case(make_napari_viewer, tmp_path, ras_image):
    data, affine = ras_image
    stored, stored_affine = reorient_to(data, affine, "LPS")
    path = save_nifti(tmp_path / "scan.nii.gz", stored, stored_affine)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-neuroreview")
    _, widget = viewer.window.add_plugin_dock_widget("napari-neuroreview", "Case")
    return viewer, widget, affine, stored_affine


def test_shows_the_scan_and_switches_convention(case) -> None:
    viewer, widget, _, _ = case
    assert widget.scan.currentText() == "scan"
    text = widget.info.text()
    assert "LPS" in text and "1 x 1.25 x 2.5 mm" in text and "40 x 48 x 24" in text
    assert not widget.warning.isVisible()
    assert viewer.scene.camera.orientation2d[1] == "right"  # radiological by default
    assert "radiological" in text_overlay(viewer).text
    widget.neurological.setChecked(True)
    assert viewer.scene.camera.orientation2d[1] == "left"
    assert "neurological" in text_overlay(viewer).text
    assert viewer.layers["scan"].data[0, 0, 0] == viewer.layers["scan"].data[0, 0, 0]  # data untouched
    assert widget.device.label.isVisibleTo(widget)  # what will run is said before anything runs
    assert widget.device.label.text() == f"Using {resolve_device('auto').label}"


def test_oblique_warning_stays_visible(make_napari_viewer, tmp_path) -> None:
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("x", 25, degrees=True).as_matrix() * 2.0
    path = save_nifti(tmp_path / "oblique.nii.gz", np.random.default_rng(0).random((30, 30, 20)).astype(np.float32), affine)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-neuroreview")
    _, widget = viewer.window.add_plugin_dock_widget("napari-neuroreview", "Case")
    assert not widget.warning.isHidden()
    assert "Oblique" in widget.warning.text() and "resampled" in widget.warning.text()


def test_new_labels_save_aligned_with_the_scan(case, tmp_path) -> None:
    viewer, widget, affine, stored_affine = case
    labels = widget.new_labels()
    target_ras = nib.affines.apply_affine(affine, [30, 10, 5])
    index = np.rint(labels.world_to_data([target_ras[2], -target_ras[1], -target_ras[0]])).astype(int)
    labels.data[tuple(index)] = 4
    out = tmp_path / "drawn.nii.gz"
    labels.save(str(out), plugin="napari-neuroreview")
    saved = nib.load(str(out))
    np.testing.assert_allclose(saved.affine, stored_affine, atol=1e-5)
    ijk = np.argwhere(np.asarray(saved.dataobj) == 4)
    np.testing.assert_allclose(nib.affines.apply_affine(saved.affine, ijk[0]), target_ras, atol=1e-4)


def test_new_points_save_in_world_ras(case, tmp_path) -> None:
    viewer, widget, affine, _ = case
    points = widget.new_points()
    target_ras = nib.affines.apply_affine(affine, [30, 10, 5])
    points.add(points.world_to_data([target_ras[2], -target_ras[1], -target_ras[0]]))
    out = tmp_path / "points.json"
    points.save(str(out), plugin="napari-neuroreview")
    doc = json.loads(out.read_text())
    assert doc["image_sha256"] == viewer.layers["scan"].metadata["neuroreview"]["sha256"]
    np.testing.assert_allclose(doc["points"][0]["world_ras_mm"], target_ras, atol=1e-3)


def test_foreground_mask_runs_in_a_worker_and_adds_labels(case, qtbot) -> None:
    viewer, widget, _, _ = case
    scan = viewer.layers["scan"]
    scan.data[:] = 0
    scan.data[5:20, 10:40, 8:32] = 100.0  # a box with a hole, on a zero background
    scan.data[10, 20, 20] = 0
    widget.mask_runner.run_button.click()
    qtbot.waitUntil(lambda: not widget.mask_runner.running, timeout=20_000)
    mask = viewer.layers["scan foreground mask"].data.astype(bool)
    box = np.zeros_like(mask)
    box[5:20, 10:40, 8:32] = True
    assert mask[10, 20, 20]  # the hole is filled
    assert (mask & box).sum() >= 0.95 * box.sum()  # smoothing only rounds the corners
    assert not (mask & ~ndimage.binary_dilation(box)).any()
    mask = viewer.layers["scan foreground mask"]
    np.testing.assert_allclose(mask.scale, scan.scale)


def test_store_opens_and_registers_the_scan(case, tmp_path) -> None:
    viewer, widget, _, _ = case
    widget.store_path.setText(str(tmp_path / "reviews.sqlite"))
    widget.store_button.click()  # a path that is no store: refused, nothing created
    assert "no annotation store" in widget.store_label.text() and not (tmp_path / "reviews.sqlite").exists()
    CaseStore(tmp_path / "reviews.sqlite").close()
    widget.store_button.click()
    assert "1 scans" in widget.store_label.text()
    with CaseStore(tmp_path / "reviews.sqlite") as store:
        assert store.image_by_sha(viewer.layers["scan"].metadata["neuroreview"]["sha256"]) is not None


def test_cursor_readout_is_world_ras_and_file_voxel(case) -> None:
    viewer, widget, affine, stored_affine = case
    target_ras = nib.affines.apply_affine(affine, [30, 10, 5])
    geometry = geometry_of(widget.selected_image().metadata)
    text = cursor_text(np.array([target_ras[2], -target_ras[1], -target_ras[0]]), geometry)
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(stored_affine), target_ras)).astype(int)
    assert "RAS ({:.1f}, {:.1f}, {:.1f}) mm".format(*target_ras) in text
    assert "voxel ({}, {}, {})".format(*ijk) in text
    assert "outside the scan" in cursor_text(np.array([500.0, 0.0, 0.0]), geometry)
