"""Screenshot: the Worklist beside the microbleed review, three scans in three states.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python
scripts/screenshot_worklist.py out.png``. Three scans made from the CMB sample (the second
and third with other voxels, so other scans to the store) are detected in the review
widget; the first is decided and signed off, the second half reviewed, the third left
pending; then Open next moves from the first to the second. Everything goes to a
temporary store, never the user's.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="nr-worklist-")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "widgets"))

import napari
import napari_user as user
import nibabel as nib
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication


def pump(n: int = 30) -> None:
    for _ in range(n):
        QApplication.processEvents()


def wait(runner) -> None:
    while runner.running:
        QApplication.processEvents()
    pump()


def main(out: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="nr-worklist-scans-"))
    sample = nib.load(ROOT / "sample_data" / "cmb" / "sub-demo_swi.nii.gz")
    data = np.asarray(sample.dataobj, dtype=np.float32)
    scans = []
    for n, gain in ((1, 1.0), (2, 0.97), (3, 1.03)):  # other voxels: other scans to the store
        path = folder / f"sub-0{n}_swi.nii.gz"
        nib.save(nib.Nifti1Image(data * gain, sample.affine, sample.header), path)
        scans.append(path)

    viewer = napari.Viewer(title="napari-neuroreview")
    viewer.window.resize(1900, 1150)
    review_dock, review = viewer.window.add_plugin_dock_widget(user.PLUGIN, "Microbleed review")
    review.reviewer.setText("dr.demo")
    worklist_dock, worklist = viewer.window.add_plugin_dock_widget(user.PLUGIN, "Worklist")
    pump()
    # as a user drags the splitter between the two docks: room for the whole list
    viewer.window._qt_window.resizeDocks([review_dock, worklist_dock], [560, 500], Qt.Orientation.Vertical)
    for path in scans:  # each detected, as a batch would leave them
        layer = viewer.open(str(path), plugin="napari-neuroreview")[0]
        review.swi_combo.setCurrentText(layer.name)
        pump()
        review.runner.run()
        wait(review.runner)
        if path.name.startswith("sub-02"):
            for row in (0, 1):
                review.table.selectRow(row)
                review.accept_button.click()
        if path.name.startswith("sub-01"):
            for row in range(review.table.rowCount()):
                review.table.selectRow(row)
                (review.accept_button if row < 4 else review.reject_button).click()
    review.swi_combo.setCurrentText("sub-01_swi")  # back to sub-01, all decided
    for name in ("sub-02_swi", "sub-03_swi"):  # closed: Open next reads sub-02 again from its file
        viewer.layers.remove(name)
    pump()
    worklist.sign_button.click()  # sub-01 (the open scan) signed off
    pump()
    worklist.runner.run()  # Open next: sub-02, in review
    wait(worklist.runner)
    viewer.reset_view()
    pump(60)
    viewer.window._qt_window.grab().save(out)
    print([(s.label, s.file_name, s.state, s.reviewed, s.findings) for s in worklist.states])


if __name__ == "__main__":
    main(sys.argv[1])
