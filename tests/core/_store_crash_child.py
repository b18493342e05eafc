"""Child process for the crash-safety test of ``core.store`` (run as a script, not a test).

Usage: ``python _store_crash_child.py STORE BATCH_SIZE PAUSE_S``

Registers an image and one finding, then writes reviews in batches of BATCH_SIZE, one
transaction per batch, forever. It prints ``committed N`` after batch N's COMMIT and
``inside N`` once batch N's transaction holds at least one uncommitted row; it pauses
between rows so that the parent's SIGKILL lands inside a transaction.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator

import numpy as np

from napari_neuroreview.core.store import CaseStore

SHA = "c" * 64


def batch(finding_id: int, number: int, size: int, pause: float) -> Iterator[dict]:
    for item in range(size):
        if item == 1:  # resumed after row 0 was inserted: we are mid-transaction
            print(f"inside {number}", flush=True)
        time.sleep(pause)
        yield {
            "finding_id": finding_id,
            "action": "accepted",
            "reviewer": "crash-child",
            "note": f"batch {number} item {item}",
        }


def main() -> None:
    path, size, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    store = CaseStore(path)
    store.register_image("/scans/sub-01_swi.nii.gz", SHA, (8, 8, 8), np.eye(4))
    finding = store.add_finding(SHA, "cmb", (1.0, 2.0, 3.0), (1.0, 2.0, 3.0), score=0.9)
    print(f"finding {finding.id}", flush=True)
    for number in itertools.count(1):
        store.review_many(batch(finding.id, number, size, pause))
        print(f"committed {number}", flush=True)


if __name__ == "__main__":
    main()
