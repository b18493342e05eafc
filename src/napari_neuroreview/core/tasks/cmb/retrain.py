"""Where detector versions come from: phantom training, and fine-tuning from reviews.

Reviews to labels: an accepted, added or moved microbleed is a positive (at its current
position; accepted model detections keep their mask), a rejected detection is a hard
negative, a detection nobody reviewed yet is left out (neither positive nor negative).
Scans are split into training and held-out by a hash of their voxel data, so the split
is fixed and persisted by construction: a scan never moves from held-out into training
when more reviews arrive (the leak MONAI Label users complain about). The threshold of
the new version is chosen on the training reviewed scans (fine-tuning moves the score
scale), and the held-out metrics of parent (at its threshold) and child (at its own) are
both saved in the new model card, so the user sees whether the new version is better.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import NeuroreviewError, StoreError
from ...io.nifti import load_volume, volume_from_image
from ...progress import Progress, TaskGenerator
from ...registry import SHIPPED_WEIGHTS_ROOT, ModelCard, default_registry_root, list_versions, version_key
from ...store import CaseStore
from ...train.loop import FitConfig
from .model import MODEL_NAME, load_detector
from .train import LabelledScan, labelled_from_instances, save_detector, train_detector

TASK_NAME = "cmb"
HELD_OUT_SHARE = 0.3
POSITIVE_STATUSES = ("accepted", "added", "moved")


def is_held_out(sha256: str, share: float = HELD_OUT_SHARE) -> bool:
    """Fixed split by scan: the same scan is always on the same side."""
    return (int(sha256[:8], 16) % 1000) < share * 1000


def phantom_scans(n: int, seed: int, **case_kwargs: Any) -> TaskGenerator[list[LabelledScan]]:
    """Simulated SWI scans with their truth, made in memory."""
    from ...phantoms.swi import make_swi_case

    scans = []
    for index in range(n):
        yield Progress(index, n, f"Simulating scan {index + 1} of {n}")
        case = make_swi_case(seed=seed + index, **case_kwargs)
        magnitude = volume_from_image(case.magnitude)
        phase = volume_from_image(case.phase) if case.phase is not None else None
        instances = np.asarray(case.truth["instances"].dataobj).astype(np.int64)
        scans.append(labelled_from_instances(f"phantom-{seed + index}", magnitude, phase, instances))
    return scans


def _next_version(root: Path, base: str | None) -> str:
    versions = [c.version for c in list_versions(root, MODEL_NAME)] + ([base] if base else [])
    if not versions:
        return "1.0.0"
    top = max(versions, key=version_key).split(".")
    return ".".join([top[0], str(int(top[1]) + 1), "0"])


def train_from_phantoms(
    root: str | Path, n_train: int, n_val: int, seed: int, config: FitConfig, version: str = "1.0.0",
    device: str = "auto", **case_kwargs: Any,
) -> TaskGenerator[ModelCard]:
    """Train a detector from scratch on simulated scans and save it (how demo weights are made)."""
    train = yield from phantom_scans(n_train, seed, **case_kwargs)
    val = yield from phantom_scans(n_val, seed + 100_000, **case_kwargs)
    detector, report = yield from train_detector(train, val, config, device=device, seed=seed)
    description = (
        f"{n_train} simulated SWI scans (core.phantoms.swi, seeds {seed}..{seed + n_train - 1}); "
        f"threshold and metrics on {n_val} other simulated scans"
    )
    return save_detector(detector, report, root, version, description)


def reviewed_scans(store_path: str | Path) -> tuple[list[LabelledScan], list[str]]:
    """Scans with at least one review, labelled by the reviews; and why others were skipped."""
    scans, skipped = [], []
    with CaseStore(store_path) as store:
        for image in store.images():
            findings = store.findings_for(image.sha256, task=TASK_NAME)
            if not any(f.status != "pending" for f in findings):
                continue
            try:
                magnitude = load_volume(image.path)
                store.check_image(image, magnitude.sha256)
            except NeuroreviewError as exc:
                skipped.append(str(exc))
                continue
            phase_path = next((f.extra.get("phase_path") for f in findings if f.extra.get("phase_path")), None)
            phase = load_volume(phase_path) if phase_path and Path(phase_path).exists() else None
            positives, masks, negatives = [], [], []
            for finding in findings:
                if finding.status in POSITIVE_STATUSES:
                    positives.append(finding.voxel)
                    masks.append(_mask(finding, magnitude.spatial_shape))
                elif finding.status == "rejected" and finding.source == "model":
                    # A user's own point that they deleted was a slip, not a mimic: not a negative.
                    negatives.append(finding.voxel)
            scans.append(LabelledScan(
                name=Path(image.path).name, magnitude=magnitude, phase=phase,
                positives=np.array(positives, float).reshape(-1, 3), positive_masks=masks,
                hard_negatives=np.array(negatives, float).reshape(-1, 3),
            ))
    return scans, skipped


def _mask(finding: Any, shape: tuple[int, int, int]) -> np.ndarray | None:
    """An accepted model detection's mask (kept in the finding), else None."""
    voxels = finding.extra.get("mask_ijk")
    if finding.status != "accepted" or not voxels:
        return None
    mask = np.zeros(shape, bool)
    ijk = np.asarray(voxels, dtype=int).reshape(-1, 3)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(shape)), axis=1)
    mask[tuple(ijk[inside].T)] = True
    return mask


def retrain_from_store(
    store_path: str | Path, root: str | Path, base_version: str | None, config: FitConfig,
    version: str | None = None, device: str = "auto",
) -> TaskGenerator[ModelCard]:
    """Fine-tune a detector on reviewed scans; save it with held-out metrics before and after."""
    yield Progress(0, 3, "Reading reviewed scans from the store")
    scans, skipped = reviewed_scans(store_path)
    train = [s for s in scans if not is_held_out(s.magnitude.sha256)]
    held_out = [s for s in scans if is_held_out(s.magnitude.sha256)]
    if not train or not held_out:
        raise StoreError(
            f"{store_path}: {len(scans)} reviewed scans ({len(train)} for training, {len(held_out)} held out); "
            "fine-tuning needs at least one of each: review more scans first"
        )
    root = Path(root)
    roots = list(dict.fromkeys([root, default_registry_root(), SHIPPED_WEIGHTS_ROOT]))
    base = load_detector(base_version, device=device, roots=roots)
    threshold = float(base.card.config.get("threshold", 0.5))
    yield Progress(1, 3, "Scoring the parent version on held-out reviewed scans")
    before = _report_at(held_out, base, threshold)
    # Fine-tuning moves the score scale, so the new version gets its own operating point,
    # chosen on the TRAINING reviewed scans (never on the held-out ones it is judged on).
    detector, _ = yield from train_detector(train, train, config, device=device, base=base, seed=config.seed)
    after = _report_at(held_out, detector, float(detector.card.config["threshold"]))
    version = version or _next_version(root, base.card.version)
    description = (
        f"fine-tuned from {base.card.name} {base.card.version} on {len(train)} reviewed scans of {store_path}; "
        f"metrics on {len(held_out)} held-out reviewed scans (fixed split by voxel-data hash)"
    )
    keys = ("sensitivity", "fp_per_subject", "f1", "precision")
    card = save_detector(
        detector, {"summary": after}, root, version, description, notes=base.card.notes,
        extra_config={
            "held_out_before": {k: _finite_or_none(before[k]) for k in keys},
            "held_out_after": {k: _finite_or_none(after[k]) for k in keys},
            "n_reviewed_train_scans": len(train), "n_reviewed_held_out_scans": len(held_out),
            "skipped_scans": skipped,
        },
    )
    yield Progress(3, 3, "Done")
    return card


def _report_at(scans: list[LabelledScan], detector: Any, threshold: float) -> dict[str, Any]:
    from ...metrics import summarize
    from ...progress import run_to_completion
    from .detect import run as detect
    from .train import match_to_labels

    cases = [match_to_labels(s, run_to_completion(detect(s.magnitude, s.phase, detector, threshold=threshold)))
             for s in scans]
    return summarize(cases)


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined metric (precision with no detections) is stored as null."""
    return float(value) if np.isfinite(value) else None
