"""Screenshot the Stroke risk panel on the stroke sample after a prediction with the shipped demo model.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshot_stroke.py
docs/screenshots/stroke_risk.png``. What ``neuroreview view --sample stroke`` opens, then *Predict
stroke risk* clicked: the risk, the shares, the Grad-CAM over the T1 on an axial slice through
the white matter hyperintensities, and the subject among the training subjects. A temporary
user data folder: only the shipped model is listed.
"""

from __future__ import annotations

import argparse

from _gui import run_sample_panel, wait
from qtpy.QtWidgets import QApplication

from napari_neuroreview.widgets.stroke_risk import StrokeRiskWidget

#: The axial slice shown (MNI z, mm): through the lateral ventricles' bodies, where periventricular WMH lie.
SLICE_Z_MM = 20.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    args = parser.parse_args()
    viewer, panel = run_sample_panel("stroke", StrokeRiskWidget)
    if panel.result is None:
        raise SystemExit(f"no prediction: {panel.runner.status.text()}")
    viewer.layers.selection.active = viewer.layers["T1"]
    viewer.dims.set_point(viewer.dims.ndim - 3, SLICE_Z_MM)  # napari's first world axis is S (RAS z)
    viewer.reset_view()
    bar = panel.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())  # the answer and the plot in view, as the user scrolls to them
    wait(lambda: False, 1.5)
    QApplication.processEvents()
    viewer.screenshot(args.out, canvas_only=False)
    print(args.out, f"risk {panel.result.risk:.3f}", f"threshold {panel.result.threshold:.3f}")


if __name__ == "__main__":
    main()
