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
    written = widget.export_to(tmp_path / "study" / "export")
    assert [p.name for p in written] == ["swi_desc-cmb_dseg.nii.gz", "swi_desc-cmb_points.json",
                                         "swi_desc-cmb_points.tsv", "swi_desc-cmb_seg.dcm"]
    labels = load_volume(written[0])
    seg = read_seg(written[3])  # the series is found beside the export folder
    assert labels.data.any()
    np.testing.assert_array_equal(seg.data, labels.data)
    np.testing.assert_allclose(seg.affine, labels.affine)
