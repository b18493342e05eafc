"""Screenshot the Metastasis origin panel on the metastasis sample, classified by the shipped demo model.

Run under Xvfb: ``xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshot_metastasis.py
docs/screenshots/metastasis_gradcam.png``. What ``neuroreview view --sample metastasis`` opens, then
*Classify* clicked: the lesion table, the first lesion's probability tree, and the SCLC vs NSCLC
Grad-CAM over the contrast T1, centred on that lesion. A temporary user data folder: only the
shipped model is listed.
"""

from __future__ import annotations

import argparse

from _gui import run_sample_panel, wait
from qtpy.QtWidgets import QApplication

from napari_neuroreview.widgets.metastasis import MetastasisWidget


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--node", type=int, default=1, help="the node shown: 0 lung, 1 SCLC vs NSCLC, 2 breast vs GI")
    args = parser.parse_args()
    viewer, panel = run_sample_panel("metastasis", MetastasisWidget)
    if panel.result is None:
        raise SystemExit(f"no classification: {panel.runner.status.text()}")
    panel.gradcam.node.setCurrentIndex(args.node)
    panel.results.table.selectRow(0)  # centres the view on the first lesion and shows its tree
    wait(lambda: False, 1.5)
    QApplication.processEvents()
    viewer.screenshot(args.out, canvas_only=False)
    first = panel.result.lesions[0]
    print(args.out, f"model {panel.result.model}", f"lesion {first.id}: {first.prediction}")


if __name__ == "__main__":
    main()
