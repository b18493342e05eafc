"""The case report of the CMB sample as a browser shows it (docs/screenshots/case_report.png).

``.venv/bin/python scripts/screenshot_report.py OUT.png [--work DIR]``: detects the sample's
microbleeds (``cmb detect``), classifies its subtype (``csvd classify``), compares the rsfMRI
sample's pre and post networks (``networks extract`` twice, ``networks compare``), reviews
in a new store as a reader would (the detections on a true microbleed accepted; a point
added on the sample's calcification mimic, then rejected), signs the scan off, writes the
report with ``neuroreview report`` (HTML and PDF) and screenshots it with headless
Chromium. Everything goes into --work (a temporary folder by default); the user's data
folder is not touched. Takes a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
REVIEWER = "Dr Grey"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="neuroreview-report-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_DATA_HOME"] = str(work / "user-data")  # no user registry or store involved

    from napari_neuroreview.cli import main as cli
    from napari_neuroreview.core.io.nifti import load_volume
    from napari_neuroreview.core.report.browser import screenshot
    from napari_neuroreview.core.store import CaseStore
    from napari_neuroreview.core.tasks.cmb.review import ReviewSession

    os.chdir(work)
    for name in ("sub-demo_swi.nii.gz", "sub-demo_phase.nii.gz"):
        shutil.copy(SAMPLE / "cmb" / name, name)
    steps = [
        ["cmb", "detect", "sub-demo_swi.nii.gz", "--phase", "sub-demo_phase.nii.gz", "--out", "det.json",
         "--labels", "det_labels.nii.gz"],
        ["csvd", "classify", "sub-demo_swi.nii.gz", "--phase", "sub-demo_phase.nii.gz", "--detections", "det.json",
         "--out", "subtype.json"],
        *[["networks", "extract", str(SAMPLE / "rsfmri" / "sub-001" / f"ses-{s}" / "bold.nii.gz"), "--out", f"{s}_ica"]
          for s in ("pre", "post")],
        ["networks", "compare", "--pre", "pre_ica", "--post", "post_ica", "--out", "networks.json"],
    ]
    for argv in steps:
        if cli([*argv, "--quiet"]) != 0:
            raise SystemExit(f"neuroreview {' '.join(argv)} failed")

    truth = json.loads((SAMPLE / "cmb" / "sub-demo_truth.json").read_text())
    true_world = np.array([c["world_ras_mm"] for c in truth["cmbs"]])
    volume = load_volume("sub-demo_swi.nii.gz")
    with CaseStore("cases.sqlite") as store:
        session = ReviewSession.open(store, "sub-demo_swi.nii.gz", volume.sha256, volume.shape, volume.affine,
                                     reviewer=REVIEWER)
        session.import_detections("det.json", "det_labels.nii.gz", phase_path="sub-demo_phase.nii.gz")
        for finding in session.findings:
            near = np.linalg.norm(true_world - np.asarray(finding.world), axis=1).min() < 3.0
            (session.accept if near else session.reject)(finding.id)
        calcification = next(m for m in truth["mimics"] if m["type"] == "calcification")
        session.reject(session.add(calcification["world_ras_mm"]))  # dark on magnitude; the phase says calcium
        store.sign_off(volume.sha256, REVIEWER)

    report = ["report", "--store", "cases.sqlite", "--scan", "sub-demo_swi.nii.gz", "--out", "case_report.html",
              "--pdf", "case_report.pdf", "--subtype", "subtype.json", "--networks", "networks.json",
              "--network-maps", "pre_ica", "post_ica", "--quiet"]
    if cli(report) != 0:
        raise SystemExit("neuroreview report failed")
    from PIL import Image

    png = screenshot("case_report.html", work / "case_report_page.png", (1100, 5000))
    page = np.asarray(Image.open(png).convert("L"))
    last = int(np.nonzero((page < 250).any(axis=1))[0].max()) + 24  # the page's end, not the window's
    Image.open(png).crop((0, 0, page.shape[1], min(last, page.shape[0]))).save(args.out)
    print(f"{args.out} (work files in {work})")


if __name__ == "__main__":
    main()
