"""Screenshot the demo window (napari + the plugin's widgets + a sample case) to a PNG.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python
scripts/screenshot.py out.png [--sample cmb] [--neurological] [--mask] [--store FILE]
[--dock "Microbleed retraining"] [--detect --review N --subtype]``.
Used to look at what ``make demo`` shows, as a user would see it. Reviews go to a
temporary store unless ``--store`` names one: a screenshot never writes into the user's
real annotation store.
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
    parser.add_argument("files", nargs="*")
    parser.add_argument("--sample", default="t1")
    parser.add_argument("--neurological", action="store_true")
    parser.add_argument("--mask", action="store_true", help="run the foreground mask first")
    parser.add_argument("--detect", action="store_true", help="run the microbleed review widget's detector")
    parser.add_argument("--review", type=int, default=0, help="then accept the top N and reject the next one")
    parser.add_argument("--subtype", action="store_true",
                        help="then classify the small vessel disease subtype from the review in its panel")
    parser.add_argument("--network", default=None, help="rsfmri sample: the network to show")
    parser.add_argument("--store", default=None, help="annotation store to use (default: a temporary one)")
    parser.add_argument("--dock", action="append", default=[],
                        help="also open this plugin widget (its Plugins-menu name), e.g. 'Microbleed retraining'")
    args = parser.parse_args()
    if args.store is None:  # the default store lives in the user data folder: point that at a temporary one
        os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="neuroreview-screenshot-")
    viewer, widget = open_viewer(args.files, sample=args.sample or None, run=False, store=args.store)
    viewer.window.resize(1900, 1150)
    for _ in range(20):
        QApplication.processEvents()
    for name in args.dock:
        viewer.window.add_plugin_dock_widget("napari-neuroreview", name)
    if args.neurological:
        widget.neurological.setChecked(True)
    if args.mask:
        widget.mask_runner.run()
        while widget.mask_runner.running:
            QApplication.processEvents()
    if args.detect:
        from napari_neuroreview.widgets.cmb_review import CMBReviewWidget, find_docked

        docked = find_docked(viewer, CMBReviewWidget)
        review = docked[0] if docked else viewer.window.add_plugin_dock_widget("napari-neuroreview",
                                                                               "Microbleed review")[1]
        if review.session is None and not review.runner.running:
            review.runner.run()
        while review.runner.running:
            QApplication.processEvents()
        findings = review.session.findings if review.session else []
        for finding in findings[: args.review]:
            review.session.accept(finding.id)
        if len(findings) > args.review and args.review:
            review.session.reject(findings[args.review].id)
        review._sync()
        if findings:
            review.jump_to(findings[0].id)
    if args.subtype:
        from napari_neuroreview.widgets.cmb_review import find_docked
        from napari_neuroreview.widgets.csvd_subtype import SubtypeWidget

        docked = find_docked(viewer, SubtypeWidget)  # the cmb sample docks it already
        panel = docked[0] if docked else viewer.window.add_plugin_dock_widget(
            "napari-neuroreview", "Small vessel disease subtype")[1]
        if not panel.runner.running:
            panel.runner.run()
        while panel.runner.running:
            QApplication.processEvents()
    if args.sample == "rsfmri":  # the Networks widget compares the sample pair in a worker
        from napari_neuroreview.widgets.cmb_review import find_docked
        from napari_neuroreview.widgets.networks import NetworksWidget

        networks = find_docked(viewer, NetworksWidget)[0]
        while networks.runner.running:
            QApplication.processEvents()
        if args.network:
            networks.network_combo.setCurrentText(args.network)
    for _ in range(20):
        QApplication.processEvents()
    viewer.reset_view()
    for _ in range(5):
        QApplication.processEvents()
    viewer.screenshot(args.out, canvas_only=False)
    print(args.out)
    viewer.close()


if __name__ == "__main__":
    main()
