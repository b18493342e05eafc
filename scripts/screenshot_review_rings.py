"""Screenshot the microbleed review as a reader sees it: rings, mask outlines, the located table, k of n.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python
scripts/screenshot_review_rings.py docs/screenshots/review_rings_table.png``.
The CMB sample opens, the detector runs, the top two findings are accepted and the third
rejected; the side and region columns fill in when the registration to MNI ends; the view
stays at napari's default zoom on the first finding's slice. A temporary store is used.
"""

from __future__ import annotations

import os
import sys
import tempfile

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QDockWidget

from _gui import wait  # scripts/_gui.py


def main(out: str) -> None:
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="neuroreview-screenshot-")
    from napari_neuroreview.viewer import open_viewer
    from napari_neuroreview.widgets.cmb_review import CMBReviewWidget, find_docked

    viewer, _case = open_viewer([], sample="cmb", run=False)
    viewer.window.resize(1900, 1150)
    wait(lambda: bool(find_docked(viewer, CMBReviewWidget)), 30)
    review = find_docked(viewer, CMBReviewWidget)[0]
    if review.session is None:
        review.runner.run()
    wait(lambda: not review.runner.running)
    findings = review.session.findings
    for finding in findings[:2]:
        review.session.accept(finding.id)
    review.session.reject(findings[2].id)
    review._sync()
    wait(lambda: not review.locator.runner.running and review.table.item(0, 4).text() != "…")
    window = viewer.window._qt_window
    docks = [d for d in window.findChildren(QDockWidget) if d.isVisible() and "review" in d.windowTitle().lower()]
    window.resizeDocks(docks, [820] * len(docks), Qt.Orientation.Horizontal)  # the table's columns in view
    for _ in range(10):
        QApplication.processEvents()
    viewer.reset_view()
    review.jump_to(findings[3].id)
    review.table.select(findings[3].id)
    for _ in range(30):
        QApplication.processEvents()
    viewer.window._qt_window.grab().save(out)
    print(out, review.reviewed.text(), [review.table.item(r, 4).text() + review.table.item(r, 5).text()
                                        for r in range(review.table.rowCount())])
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1])
