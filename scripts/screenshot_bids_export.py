"""Screenshot a microbleed review exported as BIDS derivatives and opened back over its scan.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python
scripts/screenshot_bids_export.py docs/screenshots/bids_export.png``.
The CMB sample opens, the detector runs, every finding is accepted, the review widget's
Export writes its default layout (``EXPORT/derivatives/neuroreview/sub-demo/anat/...``) into a
temporary folder; the exported instance labels are opened back through the plugin's reader
over the scan (the detector's own layers hidden); the written tree is printed (the viewer's
text overlay holds the radiological banner).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from qtpy.QtWidgets import QApplication

from _gui import wait  # scripts/_gui.py


def main(out: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="neuroreview-bids-"))
    os.environ["XDG_DATA_HOME"] = str(work / "user-data")
    from napari_neuroreview.viewer import open_viewer
    from napari_neuroreview.widgets.cmb_review import CMBReviewWidget, find_docked

    viewer, _case = open_viewer([], sample="cmb", run=False)
    viewer.window.resize(1900, 1150)
    wait(lambda: bool(find_docked(viewer, CMBReviewWidget)), 30)
    review = find_docked(viewer, CMBReviewWidget)[0]
    if review.session is None:
        review.runner.run()
    wait(lambda: not review.runner.running)
    for finding in review.session.findings:
        review.session.accept(finding.id)
    review._sync()
    export = work / "export"
    written = review.export_to(export)  # the default: the BIDS box is checked
    [dseg] = [p for p in written if p.name.endswith("_dseg.nii.gz")]
    for layer in list(viewer.layers):
        if "truth" in layer.name or "CMB" in layer.name:
            layer.visible = False
    [labels] = viewer.open(str(dseg), plugin="napari-neuroreview", layer_type="labels")
    labels.contour = 1
    tree = "\n".join(str(p.relative_to(export)) for p in sorted(export.rglob("*")) if p.is_file())
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    from napari_neuroreview.widgets.csvd_subtype import SubtypeWidget

    subtype = find_docked(viewer, SubtypeWidget)  # the sample docks it: let it and the locator finish
    wait(lambda: not review.locator.runner.running and not (subtype and subtype[0].runner.running))
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):  # other panels' messages: closed
        toast.close()
    viewer.reset_view()
    review.jump_to(review.session.findings[0].id)
    viewer.camera.zoom = viewer.camera.zoom * 0.6
    for _ in range(30):
        QApplication.processEvents()
    viewer.window._qt_window.grab().save(out)
    print(out, tree, sep="\n")
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1])
