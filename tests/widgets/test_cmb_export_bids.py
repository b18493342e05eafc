"""The review widget's Export with its BIDS box (checked by default): the same review, in the BIDS-derivatives layout."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from test_cmb_review_widget import case, run_detection, user_data  # noqa: F401 (fixtures)

from napari_neuroreview.core.io.bids import derivative_root


def test_export_with_the_bids_box_writes_bids_derivatives(case, qtbot, tmp_path) -> None:  # noqa: F811
    _viewer, widget, affine, _ = case
    run_detection(widget, qtbot)
    session = widget.session
    assert session is not None and session.findings
    session.accept(session.findings[0].id)
    assert widget.exports.bids_check.isEnabled() and widget.exports.bids_check.isChecked()  # the default
    written = widget.export_to(tmp_path / "out")
    root = derivative_root(tmp_path / "out")
    pseudonym = f"sub-{session.sha256[:12]}"
    names = sorted(str(p.relative_to(root)) for p in written)
    stem = f"{pseudonym}/anat/{pseudonym}_desc-cmb"
    assert names == sorted(["dataset_description.json", f"{stem}_dseg.nii.gz", f"{stem}_dseg.json",
                            f"{stem}_points.tsv", f"{stem}_points.json"])
    labels = nib.load(root / f"{stem}_dseg.nii.gz")
    np.testing.assert_allclose(labels.affine, affine)
    assert np.asarray(labels.dataobj).max() == session.findings[0].id
    sidecar = json.loads((root / f"{stem}_dseg.json").read_text())
    assert sidecar["SourceVoxelSHA256"] == session.sha256 and sidecar["Models"][0]["Version"] == "0.1.0"
    assert str(tmp_path) not in (root / f"{stem}_points.json").read_text()
