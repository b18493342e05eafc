"""Screenshot the SWI reading panel on the microbleed sample: SWI, minIP and phase side by side.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python
scripts/screenshot_swi_reading.py docs/screenshots/swi_reading_minip.png [--slab 6]``.
Opens what ``neuroreview view --sample cmb`` opens (its detector runs, into a temporary
store), goes to the first detection's slice, sets the SWI and phase presets, computes the
minIP in the panel's worker and turns on side by side, as a user would with the panel.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from qtpy.QtWidgets import QApplication, QDockWidget

from napari_neuroreview.viewer import open_viewer


def settle(seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--slab", type=float, default=6.0, help="minIP slab thickness in mm")
    args = parser.parse_args()
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="neuroreview-screenshot-")  # never the user's store
    from napari_neuroreview.widgets.cmb_review import CMBReviewWidget, find_docked
    from napari_neuroreview.widgets.csvd_subtype import SubtypeWidget
    from napari_neuroreview.widgets.swi_reading import SWIReadingWidget

    viewer, _case = open_viewer(sample="cmb", run=False)
    viewer.window.resize(1900, 1150)
    (review,) = find_docked(viewer, CMBReviewWidget)
    while review.runner.running or review.session is None:
        QApplication.processEvents()
    if review.session.findings:
        review.jump_to(review.session.findings[0].id)
    (panel,) = find_docked(viewer, SWIReadingWidget)
    dock = panel.parentWidget()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    if dock is not None:
        dock.raise_()
    for name in ("SWI", "phase"):  # each preset as the user applies it: pick the image, the preset follows its name
        panel.image.setCurrentText(name)
        panel.apply_window()
    panel.thickness.setValue(args.slab)
    panel.minip_runner.run()
    while panel.minip_runner.running:
        QApplication.processEvents()
    panel.side_by_side.setChecked(True)
    subtype = find_docked(viewer, SubtypeWidget)  # the sample docks it: let it finish, and the notifications fade
    while subtype and (subtype[0].runner.running or subtype[0].result is None):
        QApplication.processEvents()
    settle(2.0)
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):  # other panels' messages: closed
        toast.close()
    settle(1.0)
    viewer.screenshot(args.out, canvas_only=False)
    print(args.out, panel.slab_note.text())
    review.cleanup()
    viewer.close()


if __name__ == "__main__":
    main()
