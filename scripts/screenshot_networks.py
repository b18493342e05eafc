"""Screenshot the Networks view explaining itself: ``docs/screenshots/networks_pre_post.png``.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python
scripts/screenshot_networks.py OUT.png [--network motor] [--template]``. The simulated rs-fMRI
sample pair is compared by the widget (as ``neuroreview view --sample rsfmri`` does), then
the T1 sample (a simulated T1 in the same MNI space) is opened with the widget's *T1 file...*
as the anatomy under the maps, unless ``--template`` keeps the MNI152 template.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from qtpy.QtWidgets import QApplication

from napari_neuroreview.viewer import open_viewer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--network", default="motor")
    parser.add_argument("--template", action="store_true", help="keep the MNI152 template under the maps")
    args = parser.parse_args()
    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="neuroreview-screenshot-")
    from napari_neuroreview._sample_data import sample_case_paths
    from napari_neuroreview.widgets.cmb_review import find_docked
    from napari_neuroreview.widgets.networks import NetworksWidget

    viewer, _ = open_viewer(sample="rsfmri", run=False)
    viewer.window.resize(1900, 1150)
    widget = find_docked(viewer, NetworksWidget)[0]
    while widget.runner.running:
        QApplication.processEvents()
    if widget.runner.last_error is not None:
        raise SystemExit(str(widget.runner.last_error))
    widget.network_combo.setCurrentText(args.network)
    if not args.template:
        t1 = next(p for p in sample_case_paths("t1") if "T1w" in str(p))
        widget.open_anatomy(str(t1))
    for _ in range(30):
        QApplication.processEvents()
    viewer.screenshot(args.out, canvas_only=False)
    print(args.out)
    viewer.close()


if __name__ == "__main__":
    main()
