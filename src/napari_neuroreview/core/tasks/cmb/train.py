"""Train or fine-tune the microbleed detector, pick its operating point, save a version.

One path for both sources of labels: phantom truth (how the shipped weights are made)
and radiologists' reviews (how users improve them). Training scans and validation scans
are different scans; the score threshold is chosen on the validation scans (the highest
sensitivity at no more than ``max_fp_per_subject`` false positives per scan, ties broken
toward the LOWER threshold: the review is a screening, a missed microbleed costs more
than a false alarm the radiologist rejects) and frozen in the model card, with the
validation metrics beside it. Never on the scans the network was fitted on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from ...device import resolve_device
from ...io.nifti import Volume
from ...metrics import CaseResult, evaluate_case, froc, summarize
from ...progress import Progress, TaskGenerator, relay, run_to_completion
from ...registry import DEMO_NOTE, ModelCard, save_model
from ...train.loop import fit
from .detect import run as detect
from .evaluate import at_threshold, evaluate_result
from .model import MODEL_NAME, TASK, LoadedDetector, build_net, state_dict_cpu
from .training import FitConfig, PatchSet, PatchTrainable
from .training_data import build_patch_set

#: Detections below this score are never kept (they only matter for the FROC sweep).
SWEEP_FLOOR = 0.05


@dataclass
class LabelledScan:
    """A scan with what is known about its microbleeds (truth or reviews).

    Attributes
    ----------
    positives : numpy.ndarray
        (P, 3) voxel centres of microbleeds.
    positive_masks : list
        A boolean mask per positive, or None where only the position is known.
    hard_negatives : numpy.ndarray
        (H, 3) voxel centres known not to be microbleeds (rejected detections).
    truth_instances : numpy.ndarray or None
        Instance labels, when whole masks are known (phantoms); used for Dice/IoU.
    """

    name: str
    magnitude: Volume
    phase: Volume | None
    positives: np.ndarray
    positive_masks: list[np.ndarray | None]
    hard_negatives: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    truth_instances: np.ndarray | None = None


class LazyScans(Sequence[LabelledScan]):
    """Labelled scans made one at a time when read (simulated or loaded), none kept.

    Why: training reads each scan once to cut its patches, and validation once to detect on
    it; holding 40-80 whole scans (volumes plus a full-size mask per microbleed) would
    cost gigabytes for nothing.
    """

    def __init__(self, makers: Sequence[Callable[[], LabelledScan]]) -> None:
        self.makers = list(makers)

    def __len__(self) -> int:
        return len(self.makers)

    @overload
    def __getitem__(self, index: int) -> LabelledScan: ...
    @overload
    def __getitem__(self, index: slice) -> list[LabelledScan]: ...
    def __getitem__(self, index: int | slice) -> LabelledScan | list[LabelledScan]:
        if isinstance(index, slice):
            return [maker() for maker in self.makers[index]]
        return self.makers[index]()


def labelled_from_instances(name: str, magnitude: Volume, phase: Volume | None, instances: np.ndarray) -> LabelledScan:
    """A scan labelled by an instance-label image (phantom truth or an expert's masks)."""
    from scipy import ndimage

    ids = [int(i) for i in np.unique(instances) if i != 0]
    centres = np.array(ndimage.center_of_mass(np.ones(instances.shape), instances, ids)).reshape(-1, 3)
    return LabelledScan(name, magnitude, phase, centres, [instances == i for i in ids], truth_instances=instances)


def match_to_labels(scan: LabelledScan, result: Any) -> CaseResult:
    """Match a result to the scan's labels: by mask when known, else by position only."""
    if scan.truth_instances is not None:
        return evaluate_result(result, scan.truth_instances)
    affine = scan.magnitude.affine
    truth_mm = scan.positives @ affine[:3, :3].T + affine[:3, 3] if len(scan.positives) else np.zeros((0, 3))
    pred_mm = np.array([d.world_ras_mm for d in result.detections]).reshape(-1, 3)
    return evaluate_case(pred_mm, [d.score for d in result.detections], truth_mm)


def score_scan(scan: LabelledScan, detector: LoadedDetector, threshold: float = SWEEP_FLOOR) -> tuple[CaseResult, Any]:
    """Detect on one labelled scan (the detector never sees the labels) and match."""
    result = run_to_completion(detect(scan.magnitude, scan.phase, detector, threshold=threshold))
    return match_to_labels(scan, result), result


def choose_threshold(cases: list[CaseResult], max_fp_per_subject: float) -> float:
    """The lowest threshold reaching the highest sensitivity at most ``max_fp_per_subject`` FP/scan.

    Ties go to the lower threshold (sensitivity first, as in a screening), unlike
    ``metrics.operating_point``. 1.0 when no detection can be afforded.
    """
    curve = froc(cases, fp_per_subject=())
    sens = np.nan_to_num(curve["sensitivity"], nan=0.0)
    ok = np.flatnonzero(curve["fp_per_subject"] <= max_fp_per_subject)
    best = ok[np.flatnonzero(sens[ok] == sens[ok].max())[-1]]  # thresholds decrease: last = lowest
    threshold = float(curve["thresholds"][best])
    return min(max(threshold, SWEEP_FLOOR), 1.0) if np.isfinite(threshold) else 1.0


def validation_report(scans: Sequence[LabelledScan], detector: LoadedDetector,
                      max_fp_per_subject: float) -> TaskGenerator[dict[str, Any]]:
    """Operating threshold chosen on these scans and the metrics at it (a task: one update per scan).

    Each scan is read once (``scans`` may be :class:`LazyScans`, simulated as it is read);
    only what the matching needs (labels and grid) is kept until the threshold is known.
    Why a task: 100 validation scans take minutes, and the bar and Cancel must reach them.
    """
    swept = []
    for index, scan in enumerate(scans):
        yield Progress(index, len(scans), f"validation scan {index + 1} of {len(scans)}")
        case, result = score_scan(scan, detector)
        swept.append((replace(scan, phase=None, positive_masks=[]), case, result))
    threshold = choose_threshold([c for _, c, _ in swept], max_fp_per_subject)
    at_point = [match_to_labels(scan, at_threshold(result, threshold)) for scan, _, result in swept]
    return {"threshold": threshold, "summary": summarize(at_point), "cases": at_point}


def train_detector(
    train_scans: Sequence[LabelledScan],
    val_scans: Sequence[LabelledScan] | None,
    config: FitConfig,
    device: str = "auto",
    base: LoadedDetector | None = None,
    width: int = 8,
    max_fp_per_subject: float = 0.5,
    seed: int = 0,
) -> TaskGenerator[tuple[LoadedDetector, dict[str, Any]]]:
    """Build patches, fit (from ``base`` when fine-tuning), choose the threshold on ``val_scans``.

    Returns the trained detector (card not yet saved: see :func:`save_detector`) and the
    validation report. With ``val_scans`` None the caller chooses the threshold (fine-tuning
    does it on held-out reviewed scans) and the report holds no threshold or summary.
    """
    rng = np.random.default_rng(seed)
    # Progress units: one per training scan's patches, as many again for fitting, one for validation.
    n = len(train_scans)
    steps = 2 * n + 1
    sets: list[PatchSet] = []
    for index, scan in enumerate(train_scans):
        yield Progress(index, steps, f"Patches of {scan.name}")
        sets.append(build_patch_set(scan.magnitude, scan.phase, scan.positives, scan.positive_masks,
                                    scan.hard_negatives, index, rng))
    train = PatchSet.concat(sets)
    choice = resolve_device(device)
    torch.manual_seed(seed)  # the initial weights, so a training run is reproducible
    if base is not None:
        net = build_net(base.card)
        net.load_state_dict(base.net.state_dict())
        parent_card = base.card
    else:
        net = build_net(ModelCard(name=MODEL_NAME, version="0.0.0", task=TASK, config={"width": width}))
        parent_card = None
    history = yield from relay(fit(net, PatchTrainable(train, config), config.loop_config(), choice.device),
                               lambda update: Progress(int((n + n * update.fraction) * 100), steps * 100, update.message))
    card = ModelCard(
        name=MODEL_NAME, version="0.0.0", task=TASK, parent=parent_card.version if parent_card else None,
        config={"width": int(net.width), "threshold": 0.5},
    )
    detector = LoadedDetector(net=net.eval(), card=card)
    report: dict[str, Any] = {}
    if val_scans is not None:
        report = yield from relay(validation_report(val_scans, detector, max_fp_per_subject),
                                  lambda update: Progress((steps - 1) * 100 + int(100 * update.fraction), steps * 100,
                                                          f"Choosing the operating point: {update.message}"))
        card.config["threshold"] = report["threshold"]
    report["history"] = {"train_loss": history.train_loss}
    report["n_train_patches"] = len(train)
    report["n_train_positive_patches"] = int(train.labels.sum())
    yield Progress(steps, steps, "Done")
    return detector, report


def save_detector(
    detector: LoadedDetector, report: dict[str, Any], root: str | Path, version: str, training_data: str,
    notes: str = DEMO_NOTE, extra_config: dict[str, Any] | None = None,
) -> ModelCard:
    """Write the detector and its card (metrics on the validation scans) to a registry."""
    summary = report["summary"]
    keys = ("sensitivity", "precision", "f1_pooled", "fp_per_subject", "dice_per_cmb_mean", "iou_per_cmb_mean")
    metrics = {
        key: float(summary[key]) for key in keys
        if key in summary and summary[key] is not None and np.isfinite(summary[key])
    }
    card = ModelCard(
        name=MODEL_NAME, version=version, task=TASK, parent=detector.card.parent, training_data=training_data,
        metrics=metrics, notes=notes,
        config={**detector.card.config, "metrics_on": "validation scans (not used for fitting)",
                "n_train_patches": report.get("n_train_patches"), **(extra_config or {})},
    )
    save_model(state_dict_cpu(detector.net), card, root)
    return card
