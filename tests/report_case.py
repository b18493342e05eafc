"""A reviewed microbleed case for the report tests (core and widget): the CMB sample, its store.

The sample's true microbleeds stand in for a detector run (seconds saved, same store rows
as ``ReviewSession.add_detections`` writes), then a reviewer accepts two, rejects one,
leaves one pending and adds one by hand.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_neuroreview.core.io.nifti import load_volume
from napari_neuroreview.core.store import CaseStore
from napari_neuroreview.core.tasks.cmb.detect import CMBDetection, CMBResult
from napari_neuroreview.core.tasks.cmb.review import ReviewSession

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "cmb"
REVIEWER = "Dr Grey"
MODEL = {"name": "cmb-detector", "version": "1.0.1"}


@dataclass(frozen=True)
class ReviewedCase:
    """Where the case lies and what its review decided (finding ids by status)."""

    scan: Path
    store: Path
    sha256: str
    accepted: tuple[int, ...]
    rejected: tuple[int, ...]
    pending: tuple[int, ...]
    added: tuple[int, ...]
    world: dict[int, tuple[float, float, float]]


def reviewed_case(folder: Path, reviewer: str = REVIEWER) -> ReviewedCase:
    """Copy the CMB sample's SWI into ``folder`` and review it in ``folder/cases.sqlite``."""
    folder.mkdir(parents=True, exist_ok=True)
    scan = folder / "sub-demo_swi.nii.gz"
    shutil.copyfile(SAMPLE / "sub-demo_swi.nii.gz", scan)
    volume = load_volume(scan)
    instances = np.asarray(load_volume(SAMPLE / "sub-demo_cmb-instances.nii.gz").data, np.uint16)
    truth = json.loads((SAMPLE / "sub-demo_truth.json").read_text())["cmbs"]
    detections = [CMBDetection(c["id"], tuple(c["world_ras_mm"]), tuple(c["voxel_ijk"]), 0.95 - 0.05 * n,
                               c["volume_mm3"]) for n, c in enumerate(truth[:4])]
    result = CMBResult(detections, instances, str(scan), volume.sha256, volume.affine, dict(MODEL), 0.3, "cpu", 10)
    with CaseStore(folder / "cases.sqlite") as store:
        session = ReviewSession.open(store, str(scan), volume.sha256, volume.shape, volume.affine, reviewer=reviewer)
        session.add_detections(result)
        first, second, third, fourth = sorted(f.id for f in session.findings)
        session.accept(first)
        session.accept(second)
        session.reject(third)
        added = session.add(truth[4]["world_ras_mm"])
        world = {f.id: f.world for f in session.findings}
    return ReviewedCase(scan, folder / "cases.sqlite", volume.sha256, (first, second), (third,), (fourth,), (added,),
                        world)
