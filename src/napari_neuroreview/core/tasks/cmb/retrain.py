"""Where detector versions come from: phantom training, and fine-tuning from reviews.

Reviews to labels: an accepted, added or moved microbleed is a positive (at its current
position; accepted model detections keep their mask), a rejected detection is a hard
negative, a detection nobody reviewed yet is left out (neither positive nor negative).
Scans are split into training and held-out by a hash of their voxel data, so the split
is fixed and persisted by construction: a scan never moves from held-out into training
when more reviews arrive (the leak MONAI Label users complain about).

Why the operating point and the default are decided as they are (a user once got a
fine-tuned 1.1.0 whose held-out sensitivity fell from 0.90 to 0.40, made the default):

* The new version's threshold is chosen on the HELD-OUT reviewed scans, never on the
  scans it was fitted on (its scores there are overconfident), ties toward the lower
  threshold (``train.choose_threshold``). Its held-out figures are cross-validated over
  the held-out scans (each scored at a threshold chosen on the others), so choosing the
  threshold there does not flatter it; the parent is scored at its own card threshold.
* Both versions are measured on the same held-out scans and both figures go into the new
  card (``config["held_out"]``).
* The new version becomes the registry's default only if it is :func:`not_worse`;
  otherwise it is kept, flagged in its card (``config["not_default"]``), and the result
  says so in one sentence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import NeuroreviewError, StoreError
from ...io.nifti import load_volume
from ...io.strict_json import plain
from ...metrics import summarize
from ...progress import Progress, TaskGenerator, relay
from ...registry import (
    SHIPPED_WEIGHTS_ROOT,
    ModelCard,
    check_new_version,
    default_registry_root,
    default_version,
    next_version,
    set_default,
)
from ...store import CaseStore
from .evaluate import at_threshold
from .model import MODEL_NAME, LoadedDetector, card_threshold, load_detector
from .train import (
    LabelledScan,
    choose_threshold,
    match_to_labels,
    save_detector,
    score_scan,
    train_detector,
)
from .training import FitConfig

TASK_NAME = "cmb"
HELD_OUT_SHARE = 0.3
POSITIVE_STATUSES = ("accepted", "added", "moved")
#: The operating point allows at most this many false positives per held-out scan.
MAX_FP_PER_SCAN = 0.5
#: "Not worse": held-out sensitivity not lower than the parent's (less this), and ...
SENSITIVITY_MARGIN = 0.0
#: ... held-out false positives per scan not higher than the parent's by more than this.
FP_MARGIN_PER_SCAN = 0.5
_EPS = 1e-9


def is_held_out(sha256: str, share: float = HELD_OUT_SHARE) -> bool:
    """Fixed split by scan: the same scan is always on the same side."""
    return (int(sha256[:8], 16) % 1000) < share * 1000


def train_from_scans(
    root: str | Path, train: Sequence[LabelledScan], val: Sequence[LabelledScan], config: FitConfig, version: str,
    training_data: str, device: str = "auto", extra_config: dict[str, Any] | None = None,
) -> TaskGenerator[ModelCard]:
    """Train a detector from scratch on labelled scans and save it (how demo weights are made).

    ``training_data`` describes the scans in the card (the CLI builds phantom scans and
    says which; ``extra_config`` adds to the card's config what the recipe was). The
    threshold and the card's metrics come from ``val``. The new version
    does not become the default by itself (``neuroreview models set-default``), unless it
    is saved into the shipped weights, whose newest version is the fallback default.
    """
    detector, report = yield from train_detector(train, val, config, device=device, seed=config.seed)
    return save_detector(detector, report, root, version, training_data, extra_config=extra_config)


def reviewed_scans(store_path: str | Path) -> tuple[list[LabelledScan], list[str]]:
    """Scans with at least one review, labelled by the reviews; and why others were skipped.

    Raises
    ------
    StoreError
        If there is no store at ``store_path`` (nothing is created).
    """
    scans, skipped = [], []
    with CaseStore.open_existing(store_path) as store:
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


@dataclass
class RetrainResult:
    """What a fine-tuning run made and decided, for the CLI and the widget to report.

    Attributes
    ----------
    card : ModelCard
        The saved new version.
    before, after : dict
        Held-out figures (``threshold``, ``sensitivity``, ``fp_per_subject``, ...) of the
        parent at its threshold and of the new version at its own, on the same scans.
    made_default : bool
        Whether the new version is now the registry's default.
    verdict : str
        One sentence: made the default, or kept but not the default and why.
    default : str or None
        The registry's default after the run.
    skipped : list of str
        Why some reviewed scans could not be used (full messages, shown, never in the card).
    """

    card: ModelCard
    before: dict[str, Any]
    after: dict[str, Any]
    made_default: bool
    verdict: str
    default: str | None
    skipped: list[str] = field(default_factory=list)

    def comparison_lines(self) -> list[str]:
        """Before -> after on the held-out reviews, both versions at their own thresholds."""
        n = self.card.config.get("held_out", {}).get("n_scans", "?")
        rows = [(self.card.parent or "parent", self.before), (self.card.version, self.after)]
        return [f"held-out reviewed scans ({n}), each version at its own threshold:"] + [
            f"  {version:<8} threshold {_fmt(fig['threshold'], 3)}  sensitivity {_fmt(fig['sensitivity'])}  "
            f"FP/scan {_fmt(fig['fp_per_subject'])}"
            for version, fig in rows
        ]


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and np.isfinite(value) else "n/a"


def not_worse(before: dict[str, Any], after: dict[str, Any]) -> tuple[bool, str]:
    """Whether the new version may become the default, and a reason if not.

    Not worse = held-out sensitivity not lower than the parent's (minus
    :data:`SENSITIVITY_MARGIN`) and held-out FP/scan not higher by more than
    :data:`FP_MARGIN_PER_SCAN`. Sensitivity first: a screening must not miss more.
    """
    sens_b, sens_a = before["sensitivity"], after["sensitivity"]
    fp_b, fp_a = before["fp_per_subject"], after["fp_per_subject"]
    problems = []
    if np.isfinite(sens_b) and not (np.isfinite(sens_a) and sens_a >= sens_b - SENSITIVITY_MARGIN - _EPS):
        problems.append(f"sensitivity {_fmt(sens_b)} \u2192 {_fmt(sens_a)}")
    if fp_a > fp_b + FP_MARGIN_PER_SCAN + _EPS:
        problems.append(f"FP/scan {_fmt(fp_b)} \u2192 {_fmt(fp_a)} (more than +{FP_MARGIN_PER_SCAN:g})")
    return (not problems), "; ".join(problems)


def _figures(cases: list[Any], threshold: float, how: str) -> dict[str, Any]:
    summary = summarize(cases)
    keys = ("sensitivity", "fp_per_subject", "precision", "f1_pooled")
    return {"threshold": float(threshold), **{k: float(summary[k]) for k in keys}, "how": how}


def parent_figures(swept: list[tuple[LabelledScan, Any]], threshold: float) -> dict[str, Any]:
    """The parent at its own card threshold on the held-out scans."""
    cases = [match_to_labels(scan, at_threshold(result, threshold)) for scan, result in swept]
    return _figures(cases, threshold, "the parent's card threshold")


def candidate_operating_point(swept: list[tuple[LabelledScan, Any]]) -> tuple[float, dict[str, Any]]:
    """The new version's threshold, chosen on the held-out scans, and its held-out figures.

    The threshold frozen in the card is chosen on all held-out scans. The figures are
    cross-validated by scan: each held-out scan at a threshold chosen on the others, so
    that choosing the threshold on these scans does not flatter the new version. With one
    held-out scan that cannot be done; the figures are then optimistic, and say so.
    """
    cases = [match_to_labels(scan, result) for scan, result in swept]
    threshold = choose_threshold(cases, MAX_FP_PER_SCAN)
    if len(swept) < 2:
        at_point = [match_to_labels(scan, at_threshold(result, threshold)) for scan, result in swept]
        return threshold, _figures(at_point, threshold, "threshold chosen on the same single held-out scan (optimistic)")
    crossed = []
    for i, (scan, result) in enumerate(swept):
        own = choose_threshold([c for j, c in enumerate(cases) if j != i], MAX_FP_PER_SCAN)
        crossed.append(match_to_labels(scan, at_threshold(result, own)))
    return threshold, _figures(crossed, threshold, "each held-out scan at a threshold chosen on the other ones")


def _sweep(scans: list[LabelledScan], detector: LoadedDetector) -> list[tuple[LabelledScan, Any]]:
    """Every detection above the sweep floor on each scan (thresholds are applied afterwards)."""
    return [(scan, score_scan(scan, detector)[1]) for scan in scans]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def retrain_from_store(
    store_path: str | Path, root: str | Path, base_version: str | None, config: FitConfig,
    version: str | None = None, device: str = "auto", roots: list[Path] | None = None,
) -> TaskGenerator[RetrainResult]:
    """Fine-tune a detector on reviewed scans; save it; make it the default only if not worse.

    Parameters
    ----------
    store_path : str or Path
        An existing annotation store (a missing one is refused; nothing is created).
    root : str or Path
        Registry folder the new version is saved into; also where the default is kept.
    base_version : str or None
        Version to fine-tune (the default when None).
    roots : list of Path, optional
        Other registry roots searched for the base and for clashing versions (default:
        the user's registry and the shipped weights).

    Raises
    ------
    StoreError
        If the store is missing or has too few reviewed scans on either side of the split.
    RegistryError
        If ``version`` is installed already (checked before any training).
    """
    store_path = Path(store_path)
    if not store_path.is_file():  # before anything: a mistyped path must not become a store
        raise StoreError(f"There is no annotation store at {store_path}; check the path, or review scans first.")
    root = Path(root)
    roots = list(dict.fromkeys([root, *(roots if roots is not None else [default_registry_root(),
                                                                          SHIPPED_WEIGHTS_ROOT])]))
    if version is not None:
        check_new_version(MODEL_NAME, version, roots)
    yield Progress(0, 4, "Reading reviewed scans from the store")
    scans, skipped = reviewed_scans(store_path)
    train = [s for s in scans if not is_held_out(s.magnitude.sha256)]
    held_out = [s for s in scans if is_held_out(s.magnitude.sha256)]
    if not train or not held_out:
        raise StoreError(
            f"{store_path}: {len(scans)} reviewed scans ({len(train)} for training, {len(held_out)} held out); "
            "fine-tuning needs at least one of each: review more scans first"
        )
    base = load_detector(base_version, device=device, roots=roots)
    version = version or next_version(MODEL_NAME, roots, base.card.version)
    check_new_version(MODEL_NAME, version, roots)
    yield Progress(1, 4, "Scoring the parent version on held-out reviewed scans")
    before = parent_figures(_sweep(held_out, base), card_threshold(base.card))
    detector, report = yield from relay(
        train_detector(train, None, config, device=device, base=base, seed=config.seed),
        lambda update: Progress(int(100 + 200 * update.fraction), 400, update.message),
    )
    yield Progress(3, 4, "Choosing the new version's threshold on held-out reviewed scans")
    threshold, after = candidate_operating_point(_sweep(held_out, detector))
    detector.card.config["threshold"] = threshold
    ok, problems = not_worse(before, after)
    current_default = default_version(MODEL_NAME, roots)
    card = save_detector(detector, {**report, "summary": after}, root, version,
                         _description(base.card, train, held_out, store_path), notes=base.card.notes,
                         extra_config=_card_extra(base.card, before, after, train, held_out, skipped, ok, problems))
    if ok:
        set_default(MODEL_NAME, card.version, roots)
        verdict = f"{card.version} is now the default: not worse than {base.card.version} on held-out reviews."
    else:
        if current_default is not None:  # recorded explicitly: the newcomer must never become it by fallback
            set_default(MODEL_NAME, current_default, roots)
        verdict = (f"{card.version} is kept but is not the default: worse than {base.card.version} on held-out "
                   f"reviews ({problems}).")
    yield Progress(4, 4, "Done")
    return RetrainResult(card, before, after, ok, verdict, default_version(MODEL_NAME, roots), skipped)


def _description(base: ModelCard, train: list[LabelledScan], held_out: list[LabelledScan], store: Path) -> str:
    """Training data in words: file names and counts, never a folder (it can name a patient)."""
    return (
        f"fine-tuned from {base.name} {base.version} on {len(train)} reviewed scans of the store {store.name} "
        f"(sha256 {_file_sha256(store)[:12]} when trained); threshold and metrics on {len(held_out)} held-out "
        "reviewed scans (fixed split by voxel-data hash)"
    )


def _card_extra(base: ModelCard, before: dict[str, Any], after: dict[str, Any], train: list[LabelledScan],
                held_out: list[LabelledScan], skipped: list[str], ok: bool, problems: str) -> dict[str, Any]:
    """What the new card records beyond the architecture: both versions' held-out figures, the verdict."""
    extra: dict[str, Any] = {
        "metrics_on": "held-out reviewed scans (not used for fitting), cross-validated threshold",
        "max_fp_per_subject": MAX_FP_PER_SCAN,
        "held_out": {"parent": base.version, "n_scans": len(held_out),
                     "before": plain(before), "after": plain(after)},
        "reviewed_scans": [{"file": s.name, "voxel_sha256": s.magnitude.sha256, "held_out": is_held_out(s.magnitude.sha256)}
                           for s in [*train, *held_out]],
        "n_reviewed_train_scans": len(train), "n_reviewed_held_out_scans": len(held_out),
        "skipped_scans": len(skipped),
    }
    if not ok:
        extra["not_default"] = f"worse on held-out reviews than {base.version}: {problems}"
    return extra

