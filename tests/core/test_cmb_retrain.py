"""Retraining from reviews: a mimic that fools the base model is learnt from rejections.

The base detector was trained on labels that lumped calcifications (dark spheres with the
opposite phase sign) in with microbleeds, as a magnitude-only reading does, so it calls
them microbleeds. A radiologist (simulated from the truth) accepts the true
microbleeds, rejects the calcifications and adds the missed ones; fine-tuning on those
reviews must cut the false positives per scan on held-out reviewed scans.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_neuroreview.core.io.nifti import load_volume
from napari_neuroreview.core.metrics import match_detections
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.registry import save_model
from napari_neuroreview.core.store import CaseStore
from napari_neuroreview.core.tasks.cmb import retrain
from napari_neuroreview.core.tasks.cmb.detect import run as detect
from napari_neuroreview.core.tasks.cmb.model import load_detector, state_dict_cpu
from napari_neuroreview.core.tasks.cmb.train import labelled_from_instances, train_detector
from napari_neuroreview.core.train.loop import FitConfig

from cmb_synthetic import synthetic_swi_with_calcifications


def _save(path, volume) -> str:
    img = nib.Nifti1Image(volume.data, volume.affine)
    img.set_sform(volume.affine, code=1)
    nib.save(img, str(path))
    return str(path)


@pytest.mark.slow
def test_rejected_calcifications_teach_the_next_version(tmp_path) -> None:
    torch.manual_seed(0)
    base_scans = []
    for seed in range(6):  # calcifications labelled as microbleeds: the base model learns the mimic
        mag, phase, truth, calcs = synthetic_swi_with_calcifications(seed)
        lumped = np.where(calcs > 0, calcs.astype(np.int64) + int(truth.max()), truth.astype(np.int64))
        base_scans.append(labelled_from_instances(f"b{seed}", mag, phase, lumped))
    base, report = run_to_completion(train_detector(base_scans[:5], base_scans[5:], FitConfig(epochs=3), device="cpu"))
    base.card.version = "1.0.0"
    root = tmp_path / "registry"
    save_model(state_dict_cpu(base.net), base.card, root)
    base = load_detector("1.0.0", device="cpu", roots=[root])

    store_path = tmp_path / "reviews.sqlite"
    with CaseStore(store_path) as store:
        for seed in range(100, 112):
            mag, phase, truth, calcs = synthetic_swi_with_calcifications(seed)
            mag_path = _save(tmp_path / f"swi-{seed}.nii.gz", mag)
            phase_path = _save(tmp_path / f"phase-{seed}.nii.gz", phase)
            magnitude = load_volume(mag_path)
            store.register_image(mag_path, magnitude.sha256, list(magnitude.shape), magnitude.affine.tolist())
            result = run_to_completion(detect(magnitude, load_volume(phase_path), base))
            found = store.add_findings(magnitude.sha256, [
                {"task": "cmb", "world_ras_mm": d.world_ras_mm, "voxel_ijk": d.voxel_ijk, "score": d.score,
                 "extra": {"phase_path": phase_path}} for d in result.detections
            ])
            # The simulated radiologist: truth CMB -> accept, anything else -> reject, missed -> add.
            ids = [int(i) for i in np.unique(truth) if i]
            centres = np.array([np.argwhere(truth == i).mean(0) for i in ids])
            world = centres @ magnitude.affine[:3, :3].T + magnitude.affine[:3, 3]
            pred = np.array([f.world for f in found]).reshape(-1, 3)
            matching = match_detections(pred, world, max_distance_mm=3.0)
            matched = {p for p, _ in matching.pairs}
            store.review_many([{"finding_id": f.id, "action": "accepted" if n in matched else "rejected",
                                "reviewer": "sim"} for n, f in enumerate(found)])
            for t in matching.unmatched_truth:
                added = store.add_finding(magnitude.sha256, "cmb", world[t], None, source="user", actor="sim",
                                          extra={"phase_path": phase_path})
                store.review(added.id, "added", "sim")

    card = run_to_completion(retrain.retrain_from_store(
        store_path, root, base_version="1.0.0", config=FitConfig(epochs=3, lr=1e-3), device="cpu"))
    before, after = card.config["held_out_before"], card.config["held_out_after"]
    print(f"held-out reviewed scans: before {before}  after {after}")
    assert card.parent == "1.0.0" and card.version == "1.1.0"
    assert before["fp_per_subject"] >= 1.0, "the calcifications should fool the base model"
    assert after["fp_per_subject"] < 0.5 * before["fp_per_subject"]
    assert after["sensitivity"] >= before["sensitivity"] - 0.15
    assert load_detector(device="cpu", roots=[root]).card.version == "1.1.0"  # offered next
