"""The review widget's "+ DICOM SEG" export: offered for a scan opened from DICOM, written with the others."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from dicom_synthetic import write_series

from napari_neuroreview.core.io.dicom_seg import read_seg
from napari_neuroreview.core.io.nifti import load_volume
from napari_neuroreview.core.registry import default_registry_root, set_default
from napari_neuroreview.core.tasks.cmb import model

from cmb_synthetic import synthetic_swi
from synthetic import reorient_to
from test_cmb_review_widget import new_widget, run_detection, save_detector, user_data  # noqa: F401 (fixture)


def test_a_dicom_scan_exports_its_review_as_a_seg_too(make_napari_viewer, qtbot, tmp_path) -> None:
    volume, _ = synthetic_swi(seed=1, shape=(40, 44, 24), zooms=(1.0, 1.0, 2.0))
    data, affine = reorient_to(volume.data, volume.affine, "LPS")
    series = tmp_path / "study" / "swi"
    write_series(nib.Nifti1Image(data.astype(np.float32), affine), series, description="SWI", slope=1e-4, intercept=0.0)
    save_detector(default_registry_root(), "0.1.0")
    set_default(model.MODEL_NAME, "0.1.0")
    viewer = make_napari_viewer()
    viewer.open(str(series), plugin="napari-neuroreview")
    widget = new_widget(viewer, tmp_path / "reviews.sqlite")
    run_detection(widget, qtbot)
    assert widget.session.findings and widget.seg_check.isEnabled() and not widget.seg_check.isChecked()
    for finding in widget.session.findings:
        widget.session.accept(finding.id)
    widget.seg_check.setChecked(True)
    written = widget.export_to(tmp_path / "study" / "export", bids=False)
    assert [p.name for p in written] == ["swi_desc-cmb_dseg.nii.gz", "swi_desc-cmb_points.json",
                                         "swi_desc-cmb_points.tsv", "swi_desc-cmb_seg.dcm"]
    labels = load_volume(written[0])
    seg = read_seg(written[3])  # the series is found beside the export folder
    assert labels.data.any()
    np.testing.assert_array_equal(seg.data, labels.data)
    np.testing.assert_allclose(seg.affine, labels.affine)

    # The default export (the BIDS box): the SEG deep in derivatives/ still finds its series.
    bids = widget.export_to(tmp_path / "study" / "export-bids")
    [seg_path] = [p for p in bids if p.suffix == ".dcm"]
    assert "derivatives" in seg_path.parts
    np.testing.assert_array_equal(read_seg(seg_path).data, labels.data)


def _reviewed(widget, layer, voxel=(5, 6, 3)):
    """The review of ``layer`` shown, with one microbleed added at ``voxel`` (no detector run: fast)."""
    widget.swi_combo.setCurrentText(layer.name)  # the scan picked, as the user does
    widget._show_session(layer, widget._open_session(layer))
    affine = np.asarray(widget.session.affine, float)
    widget.session.add((affine @ [*voxel, 1.0])[:3])
    widget._sync()
    return widget.session


def _oblique(folder, number=301):
    """A small 10-degree oblique series, a frame 13 x 11 (not a multiple of 8)."""
    turn = np.deg2rad(10.0)
    affine = np.array([[0.9 * np.cos(turn), -0.9 * np.sin(turn), 0, -6], [0.9 * np.sin(turn), 0.9 * np.cos(turn), 0, -5],
                       [0, 0, 2.0, -4], [0, 0, 0, 1.0]])
    data = np.random.default_rng(number).uniform(0, 400, (13, 11, 6)).astype(np.float32)
    write_series(nib.Nifti1Image(data, affine), folder, number=number, description="SWI")


def test_an_oblique_series_of_a_study_folder_exports_a_seg_named_without_colons(make_napari_viewer, tmp_path) -> None:
    study = tmp_path / "study" / "mixed"
    _oblique(study, 301)
    _oblique(study, 302)  # two series: each layer's source is FOLDER::SERIES
    viewer = make_napari_viewer()
    viewer.open(str(study), plugin="napari-neuroreview")
    widget = new_widget(viewer, tmp_path / "reviews.sqlite")
    layer = next(one for one in viewer.layers if one.metadata["neuroreview"]["source_path"].endswith("::301"))
    _reviewed(widget, layer)
    assert widget.seg_check.isEnabled()
    written = widget.export_to(tmp_path / "study" / "export", seg=True, bids=False)
    assert [p.name for p in written] == ["mixed_301_desc-cmb_dseg.nii.gz", "mixed_301_desc-cmb_points.json",
                                         "mixed_301_desc-cmb_points.tsv", "mixed_301_desc-cmb_seg.dcm"]
    np.testing.assert_array_equal(read_seg(written[3]).data, load_volume(written[0]).data)
    widget.session.reject(widget.session.findings[0].id)  # nothing accepted: the other files, no SEG
    again = widget.export_to(tmp_path / "study" / "export-2", seg=True, bids=False)
    assert [p.name for p in again] == [p.name for p in written[:3]]


def test_the_box_is_off_for_nifti_and_a_moved_series_and_follows_a_reopened_one(make_napari_viewer, tmp_path) -> None:
    series, moved = tmp_path / "study" / "swi", tmp_path / "study" / "swi-moved"
    _oblique(series)
    nifti = tmp_path / "swi.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((13, 11, 6), np.float32), np.eye(4)), nifti)
    viewer = make_napari_viewer()
    widget = new_widget(viewer, tmp_path / "reviews.sqlite")
    [nifti_layer] = viewer.open(str(nifti), plugin="napari-neuroreview")
    _reviewed(widget, nifti_layer)
    assert not widget.seg_check.isEnabled()
    [layer] = viewer.open(str(series), plugin="napari-neuroreview")
    _reviewed(widget, layer)
    assert widget.seg_check.isEnabled()
    series.rename(moved)  # the series moved: the stored path and the layer's are gone
    widget._sync()
    assert not widget.seg_check.isEnabled()
    [again] = viewer.open(str(moved), plugin="napari-neuroreview")  # reopened where it is now: the same voxels
    widget.swi_combo.setCurrentText(again.name)  # its stored review restored (same voxels)
    assert widget.session.image.path == str(series) and widget.seg_check.isEnabled()
    written = widget.export_to(tmp_path / "study" / "export", seg=True, bids=False)
    assert written[-1].name == "swi_desc-cmb_seg.dcm"
    assert read_seg(written[-1]).data.any()
