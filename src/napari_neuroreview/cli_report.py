"""``neuroreview report``: the case report of one reviewed scan, as one HTML file (and a PDF).

``neuroreview report --store DB --scan SHA|PATH --out report.html [--pdf report.pdf]
[--subtype res.json] [--networks res.json [--network-maps PRE POST]]``: the Case widget's Report button's twin
(:func:`core.report.write.write_report`). The store must exist; the scan is named by its
path or the start of its voxel sha256, and its voxels must be the reviewed ones.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .core.progress import Progress, run_to_completion


def _progress(update: Progress) -> None:
    print(f"\r[{update.fraction:6.1%}] {update.message:<60.60}", end="", file=sys.stderr, flush=True)


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report; print what was written as one JSON line."""
    from .core.io import strict_json
    from .core.report.write import write_report
    from .core.store import CaseStore

    with CaseStore.open_existing(args.store) as store:  # a mistyped --store creates nothing
        task = write_report(store, args.scan, args.out, args.pdf, args.subtype, args.networks, args.network_maps)
        written = run_to_completion(task, None if args.quiet else _progress)
    if not args.quiet:
        print(file=sys.stderr)
    print(strict_json.dumps({"out": [str(p) for p in written]}))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``neuroreview report``."""
    p = sub.add_parser("report", help="the case report of a reviewed scan (HTML, and a PDF with Chromium)")
    p.add_argument("--store", required=True, help="the annotation store (SQLite) holding the review")
    p.add_argument("--scan", required=True,
                   help="the scan's path (NIfTI, MGH or DICOM series) or the start of its voxel sha256 (8+ digits)")
    p.add_argument("--out", required=True, help="the report (.html): one file, images embedded")
    p.add_argument("--pdf", default=None, help="also print it to this PDF (needs chromium)")
    p.add_argument("--subtype", default=None, help="this scan's 'neuroreview csvd classify' result (.json)")
    p.add_argument("--networks", default=None, help="a 'neuroreview networks compare' result (.json)")
    p.add_argument("--network-maps", nargs=2, default=None, metavar=("PRE", "POST"),
                   help="the pre and post scans --networks was computed from (ICA folders): map thumbnails")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_report)
