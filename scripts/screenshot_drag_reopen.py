"""Screenshot: a point dragged with napari's select tool, napari closed, reopened, the move restored.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python
scripts/screenshot_drag_reopen.py out.png``. The drag is a real mouse drag on the canvas
(``tests/widgets/napari_user``); the store is a temporary one, never the user's.
"""
import os
import sys
import tempfile
from pathlib import Path

os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="nr-shot-")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "widgets"))
import numpy as np
from qtpy.QtWidgets import QApplication
import napari_user as user
from napari_neuroreview.viewer import open_viewer
from napari_neuroreview.widgets.cmb_review import CMBReviewWidget, find_docked

def pump(n=30):
    for _ in range(n):
        QApplication.processEvents()

viewer, case = open_viewer(sample="cmb", run=False)
viewer.window.resize(1900, 1150); pump()
(review,) = find_docked(viewer, CMBReviewWidget)
while review.runner.running or review.session is None:
    QApplication.processEvents()
pump()
points = viewer.layers["SWI CMBs"]
fid = int(points.features["id"][0])
world = np.asarray(points.data_to_world(points.data[0]), float)
review.jump_to(fid); viewer.reset_view(); viewer.dims.set_point(0, world[0]); pump()
points.mode = "select"
user.drag(viewer, world, world + np.array([0, 4.0, 4.0])); pump()
before = review.session.finding(fid)
print("after drag:", before.status, before.world)
store = review.store.path
viewer.close()
pump()
# reopen: a new viewer, the same scan, a fresh review widget on the same store
viewer2, case2 = open_viewer(sample="cmb", run=False, store=str(store))
viewer2.window.resize(1900, 1150); pump()
(review2,) = find_docked(viewer2, CMBReviewWidget)
while review2.runner.running:
    QApplication.processEvents()
pump()
f = review2.session.finding(fid)
print("reopened:", f.status, f.world, "restored without running:", review2.runner.status.text() == "")
review2.jump_to(fid); pump()
viewer2.scene.camera.zoom *= 2.5; pump(20)
viewer2.screenshot(sys.argv[1], canvas_only=False)
print(sys.argv[1])
