"""``neuroreview cmb ...``: microbleed detection, evaluation and training from the shell."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .cli import bounded_float, bounded_int, config_from_args, config_type
from .core.progress import Progress, run_to_completion


def _progress(update: Progress) -> None:
    print(f"\r[{update.fraction:6.1%}] {update.message:<70}", end="", file=sys.stderr, flush=True)


def _drive(task: Any, quiet: bool) -> Any:
    result = run_to_completion(task, None if quiet else _progress)
    if not quiet:
        print(file=sys.stderr)
    return result


def cmd_detect(args: argparse.Namespace) -> int:
    """Detect microbleeds on one SWI scan; write det.json (and labels), both or neither.

    The outputs are checked (not an input, writable, right suffix) before the scan is read.
    """
    from .core.io.outputs import write_together
    from .core.io import strict_json
    from .core.io.nifti import load_volume
    from .core.io.outputs import check_outputs
    from .core.tasks.cmb.detect import run
    from .core.tasks.cmb.io import detection_outputs, detection_writes
    from .core.tasks.cmb.model import load_detector

    check_outputs(detection_outputs(args.out, args.labels), inputs=[args.swi, args.phase])
    magnitude = load_volume(args.swi)
    phase = load_volume(args.phase) if args.phase else None
    detector = load_detector(args.version, device=args.device)
    result = _drive(run(magnitude, phase, detector, threshold=args.threshold, device=args.device), args.quiet)
    write_together(detection_writes(result, args.out, args.labels, with_paths=args.with_paths))
    if not result.detections:
        print(f"warning: {magnitude.path.name}: no microbleed scored at least {result.threshold:.3f} among "
              f"{result.n_candidates} candidate dark spots", file=sys.stderr)
    print(strict_json.dumps({"detections": len(result.detections), "out": str(args.out), "model": result.model,
                             "device": result.device}))
    return 0


def _num(value: Any, spec: str) -> str:
    """A figure for the table; "n/a" where it is undefined (an SD over one subject, a precision without detections)."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return format(value, spec)


def evaluation_table(summary: dict[str, Any], froc: dict[str, Any] | None = None) -> str:
    """Human-readable metrics, each label naming what it averages over (see ``summary['averaging']``)."""
    s = summary
    lines = [
        f"subjects {s['n_subjects']} (with CMB {s['n_subjects_with_cmb']}), true CMBs {s['n_truth']}",
        f"pooled over CMBs: sensitivity {_num(s['sensitivity'], '.3f')}  precision {_num(s['precision'], '.3f')}  "
        f"F1 {_num(s['f1_pooled'], '.3f')};  FP/subject (mean) {_num(s['fp_per_subject'], '.2f')}",
        f"per subject: F1 median {_num(s['f1_per_subject_median'], '.3f')} (mean {_num(s['f1_per_subject_mean'], '.3f')})  "
        f"recall mean {_num(s['recall_per_subject_mean'], '.3f')} ± {_num(s['recall_per_subject_sd'], '.3f')}  "
        f"count difference (pred - true) median {_num(s['count_difference_per_subject_median'], '+.1f')}, "
        f"|difference| mean {_num(s['abs_count_difference_per_subject_mean'], '.2f')}",
        f"per matched CMB (n={s['n_matched_with_masks']}): IoU {_num(s['iou_per_cmb_mean'], '.3f')} ± {_num(s['iou_per_cmb_sd'], '.3f')}  "
        f"Dice {_num(s['dice_per_cmb_mean'], '.3f')} ± {_num(s['dice_per_cmb_sd'], '.3f')};  misses as 0: "
        f"IoU {_num(s['iou_per_cmb_mean_misses_as_zero'], '.3f')}  Dice {_num(s['dice_per_cmb_mean_misses_as_zero'], '.3f')}",
        f"per subject, whole masks: IoU {_num(s['iou_per_subject_mean'], '.3f')} ± {_num(s['iou_per_subject_sd'], '.3f')}  "
        f"Dice {_num(s['dice_per_subject_mean'], '.3f')} ± {_num(s['dice_per_subject_sd'], '.3f')};  "
        f"per subject over its CMBs, misses as 0: IoU {_num(s['iou_per_subject_cmb_mean_misses_as_zero'], '.3f')}  "
        f"Dice {_num(s['dice_per_subject_cmb_mean_misses_as_zero'], '.3f')}",
    ]
    if froc:
        points = "  ".join(f"{k}: {v:.3f}" for k, v in froc["at_fp"].items())
        lines.append(f"FROC sensitivity (pooled over CMBs) at FP/subject  {points}")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Metrics of the detector over a folder of labelled cases."""
    from .core.io.outputs import write_together
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs
    from .core.metrics import froc, summarize
    from .core.tasks.cmb.dataset import load_cases
    from .core.tasks.cmb.evaluate import at_threshold
    from .core.tasks.cmb.model import card_threshold, load_detector
    from .core.tasks.cmb.train import SWEEP_FLOOR, match_to_labels
    from .core.tasks.cmb.detect import run

    if args.json:
        check_outputs([Output(args.json, (".json",), "metrics JSON")])
    scans = load_cases(args.data)  # a folder without cases is refused before the model loads
    detector = load_detector(args.version, device=args.device)
    threshold = card_threshold(detector.card) if args.threshold is None else args.threshold
    swept, at_point = [], []
    for scan in scans:
        result = _drive(run(scan.magnitude, scan.phase, detector, threshold=SWEEP_FLOOR), args.quiet)
        swept.append(match_to_labels(scan, result))
        at_point.append(match_to_labels(scan, at_threshold(result, threshold)))
    summary, curve = summarize(at_point), froc(swept)
    print(f"model {detector.card.name} {detector.card.version}, threshold {threshold:.3f}")
    print(evaluation_table(summary, curve))
    if args.json:
        doc = {
            "model": {"name": detector.card.name, "version": detector.card.version},
            "threshold": float(threshold),
            "threshold_from": "the model card" if args.threshold is None else "--threshold",
            "cases": [scan.name for scan in scans],
            "summary": summary,
            "froc_sensitivity_at_fp": curve["at_fp"],
            "froc_averaging": "sensitivity pooled over all CMBs; false positives per subject (mean)",
        }
        text = strict_json.dumps(doc, indent=2) + "\n"
        write_together([(args.json, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))])
    return 0


#: ``cmb train --simulator``: which SWI simulators make the training scans.
#: ``cmb train --scanner-augment`` choices: the names of ``training.SCANNER_RECIPES`` (spelled out so
#: that building the parser does not import torch; a test keeps the two equal).
SCANNER_RECIPE_NAMES = ("both", "phase", "magnitude", "phase_magnitude_half", "both_axial")
SIMULATORS = {"phenomenological": ("phenomenological",), "physics": ("physics",),
              "both": ("phenomenological", "physics")}


def simulated_case(simulator: str, seed: int, randomise: bool, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """``simulator``'s SWI case ``seed`` and the keywords it was made with.

    The one recipe for a phantom scan (``cmb train`` and the benchmarks call it):
    ``randomise`` draws the scanner with ``case_scanner(seed, simulator)``; otherwise
    ``kwargs`` (e.g. a fixed voxel size) go to the simulator as they are. The simulators are
    the CLI's to call (lazily, like ``cmb phantoms``), so that nothing in ``core.tasks``
    imports ``core.phantoms``.
    """
    if simulator == "physics":
        from .core.phantoms.swi_physics import make_swi_case
    else:
        from .core.phantoms.swi import make_swi_case
    if randomise:
        from .core.phantoms.scanner_draws import case_scanner

        kwargs = case_scanner(seed, simulator)
    return make_swi_case(seed, **kwargs), kwargs


def phantom_scan(simulator: str, seed: int, randomise: bool) -> Any:
    """One simulated, labelled SWI training scan (:func:`simulated_case`)."""
    import numpy as np

    from .core.io.nifti import volume_from_image
    from .core.tasks.cmb.train import labelled_from_instances

    case, _ = simulated_case(simulator, seed, randomise)
    magnitude = volume_from_image(case.magnitude)
    phase = volume_from_image(case.phase) if case.phase is not None else None
    instances = np.asarray(case.truth["instances"].dataobj).astype(np.int64)
    return labelled_from_instances(f"{simulator}-{seed}", magnitude, phase, instances)


def phantom_plan(simulators: tuple[str, ...], n: int, seed: int) -> list[tuple[str, int]]:
    """(simulator, seed) of ``n`` scans: seeds ``seed .. seed + n - 1``, simulators taken in turn."""
    return [(simulators[i % len(simulators)], seed + i) for i in range(n)]


def _phantom_training(args: argparse.Namespace, root: Path, config: Any, version: str) -> Any:
    """``cmb train`` without ``--store``: simulated scans, made one at a time as training reads them."""
    from .core.tasks.cmb.retrain import train_from_scans
    from .core.tasks.cmb.train import LazyScans

    simulators = SIMULATORS[args.simulator]
    randomise = args.scanner == "randomised"
    train_plan = phantom_plan(simulators, args.phantoms, args.seed)
    val_plan = phantom_plan(simulators, args.val, args.seed + 100_000)
    train = LazyScans([lambda s=s, k=k: phantom_scan(s, k, randomise) for s, k in train_plan])
    val = LazyScans([lambda s=s, k=k: phantom_scan(s, k, randomise) for s, k in val_plan])
    names = {"phenomenological": "core.phantoms.swi", "physics": "core.phantoms.swi_physics"}
    sims = " and ".join(f"{names[s]} ({s})" for s in simulators)
    scanner = "a random scanner per scan (core.phantoms.scanner_draws.case_scanner)" if randomise else "its default scanner"
    description = (
        f"{args.phantoms} simulated SWI scans from {sims}, taken in turn, seeds {args.seed}..{args.seed + args.phantoms - 1}, "
        f"each on {scanner}; threshold and metrics on {args.val} other simulated scans (seeds {args.seed + 100_000}..)"
    )
    if args.scanner_augment:
        from .core.tasks.cmb.training import SCANNER_RECIPES

        description += (f"; training patches re-rendered as another scanner would (recipe {args.scanner_augment!r}: "
                        f"FitConfig {SCANNER_RECIPES[args.scanner_augment]})")
    extra = {"simulators": list(simulators), "scanner": args.scanner, "scanner_augment": args.scanner_augment or False,
             "train_seeds": [args.seed, args.seed + args.phantoms - 1],
             "val_seeds": [args.seed + 100_000, args.seed + 100_000 + args.val - 1]}
    if args.card_figures:
        from .core.io.strict_json import read_object

        extra["held_out_simulator_figures"] = read_object(Path(args.card_figures), "held-out figures file")
    yield Progress(0, 1, f"Training on {args.phantoms} scans ({args.simulator}, {args.scanner} scanner)")
    return (yield from train_from_scans(root, train, val, config, version, description, device=args.device,
                                        extra_config=extra))


def train_config(args: argparse.Namespace) -> Any:
    """The training config of ``cmb train``: the options given, the rest the dataclass's defaults.

    ``--scanner-augment [NAME]`` switches on a scanner-randomisation recipe
    (``training.SCANNER_RECIPES``; "both" when no name is given).
    """
    from dataclasses import replace

    from .core.tasks.cmb.training import SCANNER_RECIPES, FitConfig

    config = config_from_args(FitConfig, args, epochs="epochs", seed="seed", lr="lr",
                              max_steps_per_epoch="steps_per_epoch")
    return replace(config, **SCANNER_RECIPES[args.scanner_augment]) if args.scanner_augment else config


def cmd_train(args: argparse.Namespace) -> int:
    """Train on phantoms (the shipped weights) or fine-tune from reviews in a store.

    A fine-tuned version becomes the default only if it is not worse than its parent on
    held-out reviews; both versions' held-out figures and the verdict are printed on stderr,
    the new card's summary as JSON on stdout.
    """
    from .core.registry import SHIPPED_WEIGHTS_ROOT, check_new_version, default_registry_root, default_version, next_version
    from .core.tasks.cmb import retrain
    from .core.tasks.cmb.model import MODEL_NAME

    root = Path(args.out) if args.out else default_registry_root()
    roots = list(dict.fromkeys([root, default_registry_root(), SHIPPED_WEIGHTS_ROOT]))
    config = train_config(args)
    if args.store:
        result = _drive(retrain.retrain_from_store(args.store, root, base_version=args.base, config=config,
                                                   version=args.version, device=args.device, roots=roots), args.quiet)
        card, made_default, default = result.card, result.made_default, result.default
        for line in [*result.comparison_lines(), result.verdict, *(f"skipped: {s}" for s in result.skipped)]:
            print(line, file=sys.stderr)
    else:
        version = args.version or next_version(MODEL_NAME, roots)
        check_new_version(MODEL_NAME, version, roots)  # before hours of training, not after
        card = _drive(_phantom_training(args, root, config, version), args.quiet)
        default = default_version(MODEL_NAME, roots)
        made_default = default == card.version
        if not made_default:
            print(f"{card.version} is saved but the default stays {default}: "
                  f"`neuroreview models set-default {MODEL_NAME} {card.version}` to use it.", file=sys.stderr)
    print(json.dumps({"name": card.name, "version": card.version, "parent": card.parent, "metrics": card.metrics,
                      "threshold": card.config.get("threshold"), "held_out": card.config.get("held_out"),
                      "default": default, "made_default": made_default, "root": str(root)}, indent=2))
    return 0


def cmd_phantoms(args: argparse.Namespace) -> int:
    """Write a cohort of simulated SWI cases with truth (for evaluate and benchmarks).

    ``--simulator physics`` uses the susceptibility-physics simulator
    (core.phantoms.swi_physics), an independent generator with the same folder layout.
    ``--randomise`` draws each case's scanner (voxel size, storage order, obliquity,
    coverage, TE/field, contrast, noise, bias, gain: core.phantoms.scanner_draws) from the
    case's seed, recorded in its truth.json (``params.per_case``).
    """
    if args.simulator == "physics":
        from .core.phantoms.swi_physics import write_physics_cohort as write_cohort
    else:
        from .core.phantoms.swi import write_swi_cohort as write_cohort
    per_case = None
    if args.randomise:
        from functools import partial

        from .core.phantoms.scanner_draws import case_scanner

        per_case = partial(case_scanner, simulator=args.simulator)
    for path in write_cohort(Path(args.out), args.n, args.seed, per_case=per_case):
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a stored review as BIDS derivatives (the review widget's Export twin); print the files as JSON.

    The scan is named by its path or the start of its voxel sha256 (``core.report.write.scan_source``)
    and read back: its voxels must be the reviewed ones, and a DICOM SEG references its series.
    """
    from .core.io import strict_json
    from .core.report.write import find_scan, scan_source
    from .core.store import CaseStore
    from .core.tasks.cmb.review import ReviewSession
    from .core.tasks.cmb.review_export import export_bids, stored_reviewer

    with CaseStore.open_existing(args.store) as store:  # a mistyped --store creates nothing
        source, image = scan_source(store, args.scan)
        image, volume = find_scan(store, source, image)
        reviewer = args.reviewer or stored_reviewer(store, volume.sha256)
        session = ReviewSession.reopen(store, image, volume.sha256, reviewer=reviewer)
        written = export_bids(session, args.out, statuses=args.statuses, seg=args.seg, seg_source=source)
    print(strict_json.dumps({"out": [str(p) for p in written]}))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``neuroreview cmb`` and its subcommands."""
    cmb = sub.add_parser("cmb", help="cerebral microbleeds on SWI").add_subparsers(dest="cmb_command", required=True)

    p = cmb.add_parser("detect", help="detect microbleeds; write det.json (and instance labels)")
    p.add_argument("swi")
    p.add_argument("--out", required=True)
    p.add_argument("--labels", default=None)
    p.add_argument("--phase", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--threshold", type=bounded_float(0.0, 1.0, "score threshold"), default=None)
    p.add_argument("--version", default=None, help="detector version (default: the registry's default)")
    p.add_argument("--with-paths", action="store_true",
                   help="also write the scan's full path into det.json (default: its file name only)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_detect)

    p = cmb.add_parser("export", help="a stored review as BIDS derivatives (OUT/derivatives/neuroreview)")
    p.add_argument("--store", required=True, help="the annotation store (SQLite) holding the review")
    p.add_argument("--scan", required=True,
                   help="the scan's path (NIfTI, MGH or DICOM series) or the start of its voxel sha256 (8+ digits)")
    p.add_argument("--out", required=True, help="the raw BIDS dataset's root (or any existing folder)")
    p.add_argument("--statuses", nargs="+", default=["accepted", "added", "moved"],
                   help="which findings the labels hold (the points list every finding)")
    p.add_argument("--seg", action="store_true",
                   help="also a DICOM SEG referencing the source series (DICOM scans only; it carries the "
                        "patient's identity from the series, for PACS)")
    p.add_argument("--reviewer", default=None,
                   help="the name written into the export (default: the scan's sign-off reviewer, else its "
                        "findings' named reviewers, else 'unnamed reviewer')")
    p.set_defaults(func=cmd_export)

    p = cmb.add_parser("evaluate", help="metrics over a folder of labelled cases")
    p.add_argument("--data", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--threshold", type=bounded_float(0.0, 1.0, "score threshold"), default=None)
    p.add_argument("--version", default=None)
    p.add_argument("--json", default=None, help="also write the metrics here")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = cmb.add_parser("train", help="train on phantoms, or fine-tune from reviews (--store)")
    p.add_argument("--store", default=None, help="annotation store with reviewed scans")
    p.add_argument("--base", default=None, help="version to fine-tune (default: the registry's default)")
    p.add_argument("--phantoms", type=bounded_int(1, 10_000, "number of phantom training scans"), default=40,
                   help="phantom training scans (without --store)")
    p.add_argument("--val", type=bounded_int(1, 10_000, "number of phantom validation scans"), default=10,
                   help="phantom validation scans")
    p.add_argument("--epochs", type=config_type("epochs"), default=None, help="(default: the training config's)")
    p.add_argument("--steps-per-epoch", type=config_type("max_steps_per_epoch"), default=None,
                   help="batches per epoch, a cap (default: the training config's)")
    p.add_argument("--lr", type=config_type("lr"), default=None, help="peak learning rate (default: the training config's)")
    p.add_argument("--simulator", choices=tuple(SIMULATORS), default="phenomenological",
                   help="SWI simulators of the phantom scans, taken in turn with 'both' (without --store)")
    p.add_argument("--scanner", choices=("randomised", "default"), default="default",
                   help="a random scanner per phantom scan (voxel size, orientation, obliquity, coverage, TE/field, "
                        "contrast, noise) or each simulator's default one")
    p.add_argument("--scanner-augment", nargs="?", const="both", default=None, choices=SCANNER_RECIPE_NAMES,
                   metavar="RECIPE",
                   help="re-render training patches as another scanner would: 'both' (the default) every patch's "
                        "phase and local contrast, 'phase' or 'magnitude' one of them, 'phase_magnitude_half' "
                        "every patch's phase and half the patches' contrast, 'both_axial' as 'both' with the "
                        "contrast blurred along S-I only (training.SCANNER_RECIPES)")
    p.add_argument("--card-figures", default=None,
                   help="a JSON object of held-out-simulator figures to record in the model card "
                        "(benchmarks/cmb.py --loso writes one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--version", default=None, help="the new version (default: next minor after every installed one)")
    p.add_argument("--out", default=None, help="registry folder (default: user data folder)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = cmb.add_parser("phantoms", help="write simulated SWI cases with ground truth")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=bounded_int(1, 10_000, "number of cases"), default=10)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--simulator", choices=("phenomenological", "physics"), default="phenomenological",
                   help="phenomenological (core.phantoms.swi, the default) or physics (core.phantoms.swi_physics)")
    p.add_argument("--randomise", action="store_true",
                   help="a random scanner per case, drawn from its seed (core.phantoms.scanner_draws)")
    p.set_defaults(func=cmd_phantoms)
