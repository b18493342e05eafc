"""``neuroreview csvd ...``: the small vessel disease subtype cohort and its evaluation from the shell.

``csvd phantoms`` writes a subtype cohort (``core.phantoms.csvd``, imported lazily: the
run-time code never imports the simulators); ``csvd evaluate --data DIR`` reads a cohort's
patients from their scans (:func:`core.tasks.csvd.cohort_items.items_from_cohort`) and
runs the paper's protocol, fixed (:func:`core.tasks.csvd.evaluate.evaluate_centres`);
``csvd train`` makes a subtype model version (:func:`core.tasks.csvd.model.train_and_test`)
and ``csvd classify`` applies one to a scan (:mod:`core.tasks.csvd.classify`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli import add_cohort_arguments, bounded_int, name_list, config_from_args, config_type, write_cohort_command
from .cli_cmb import _drive

#: The external centre of ``csvd evaluate`` unless ``--external`` says otherwise (the
#: cohort's 1.5 T centre, ``core.phantoms.csvd.CENTRES['C']``).
DEFAULT_EXTERNAL = "C"
#: ``--features``: bags with the detector's patch embedding, or location-only.
FEATURES = {"location": None, "patch": "detector"}


def _centres() -> tuple[str, ...]:
    from .core.phantoms.csvd import CENTRES

    return tuple(CENTRES)


#: ``--centres``: comma-separated centres of ``core.phantoms.csvd.CENTRES``.
centre_list = name_list(_centres, "centre", "the subtype cohort")


def cmd_phantoms(args: argparse.Namespace) -> int:
    """Write a subtype cohort: ``patient-NNNN/`` (SWI, phase, truth) per patient and ``labels.tsv``."""
    from .core.phantoms.csvd import write_csvd_cohort

    return write_cohort_command(args, write_csvd_cohort, "centres")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Development CV on every centre but ``--external``, then one external test; the table and the comparisons."""
    import numpy as np

    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs, write_together
    from .core.tasks.csvd.cohort_items import items_from_cohort
    from .core.tasks.csvd.evaluate import default_factories, evaluate_centres
    from .core.tasks.csvd.train import MILConfig

    if args.json:
        check_outputs([Output(args.json, (".json",), "evaluation JSON")], protected_folders=[args.data])
    config = config_from_args(MILConfig, args, epochs="epochs", seed="seed")
    from .core.tasks.csvd.labels import check_design

    check_design(args.data, args.external, args.folds, config.seed)  # before the scans are read, not after
    items, labels, centres = _drive(items_from_cohort(args.data, args.source, FEATURES[args.features], args.device),
                                    args.quiet)
    present = sorted(set(centres))
    result = _drive(evaluate_centres(items, labels, centres, args.external, default_factories(config, args.device),
                                     n_folds=args.folds, seed=config.seed, n_boot=args.boot), args.quiet)
    setting = {"data": Path(args.data).name, "source": args.source, "features": args.features,
               "external": args.external, "folds": args.folds, "epochs": config.epochs, "boot": args.boot,
               "seed": config.seed, "device": args.device,
               "patients_per_centre": {c: int(np.sum(np.asarray(centres) == c)) for c in present}}
    print(f"# CSVD subtype, {args.source} microbleeds, {args.features} features: {setting['patients_per_centre']}; "
          f"external centre {args.external}; {args.folds}-fold CV; MIL {config.epochs} epochs; {args.boot} bootstrap")
    print(result.table())
    print("\nmacro AUC difference vs the Boston rule (paired patient bootstrap):")
    print("\n".join(result.vs_rule_lines()))
    if args.json:
        text = strict_json.dumps({"setting": setting, **result.to_json()}, indent=1) + "\n"
        write_together([(args.json, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))])
    return 0


#: ``csvd train``: the external test's patients are drawn from ``--seed`` plus this (another seed).
EXTERNAL_SEED_OFFSET = 1


def cmd_train(args: argparse.Namespace) -> int:
    """Train the location-only attention MIL on drawn development patients (A, B), test once on drawn C.

    No image is rendered: the patients are the cohort generator's draws
    (``core.phantoms.csvd.csvd_patients``) with their true microbleed sites, whose world
    position is their MNI position (:func:`core.tasks.csvd.evaluate.items_from_patients`).
    Like ``cmb train``, the new version becomes the default only if no other is installed.
    """
    import json

    from .core.phantoms.csvd import csvd_patients
    from .core.registry import (
        SHIPPED_WEIGHTS_ROOT, check_new_version, default_registry_root, default_version, next_version)
    from .core.tasks.csvd.evaluate import items_from_patients
    from .core.tasks.csvd.model import MODEL_NAME, train_and_test
    from .core.tasks.csvd.train import MILConfig

    root = Path(args.out) if args.out else default_registry_root()
    roots = list(dict.fromkeys([root, default_registry_root(), SHIPPED_WEIGHTS_ROOT]))
    version = args.version or next_version(MODEL_NAME, roots)
    check_new_version(MODEL_NAME, version, roots)  # before training, not after
    config = config_from_args(MILConfig, args, epochs="epochs")
    config = MILConfig(**{**vars(config), "pooling": "attention", "patch_embedding": False, "seed": args.seed})
    ext_seed = args.seed + EXTERNAL_SEED_OFFSET
    train, train_labels, _ = items_from_patients(csvd_patients(args.patients, args.seed, centres=("A", "B")))
    external, external_labels, _ = items_from_patients(csvd_patients(args.external, ext_seed, centres=("C",)))
    training_data = (
        f"{args.patients} drawn phantom patients, oracle locations: the subtype cohort generator's patients of "
        f"centres A and B (core.phantoms.csvd.csvd_patients, seed {args.seed}; no image rendered, the true "
        f"microbleed sites with their MNI positions, sizes and MARS regions; location-only features); tested once "
        f"on {args.external} drawn patients of the external centre C (seed {ext_seed})")
    extra = {"train_seed": args.seed, "external_seed": ext_seed, "train_centres": ["A", "B"],
             "external_centres": ["C"]}
    card = _drive(train_and_test(train, train_labels, external, external_labels, config, root, version,
                                 training_data, extra, device=args.device, n_boot=args.boot), args.quiet)
    default = default_version(MODEL_NAME, roots)
    made_default = default == card.version
    if not made_default:
        print(f"{card.version} is saved but the default stays {default}: "
              f"`neuroreview models set-default {MODEL_NAME} {card.version}` to use it.", file=sys.stderr)
    print(json.dumps({"name": card.name, "version": card.version, "metrics": card.metrics, "default": default,
                      "made_default": made_default, "root": str(root)}, indent=2))
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """The subtype of one SWI's patient from its microbleeds (a det.json's, or the detector's); writes the JSON.

    The output is checked (not an input, writable, ``.json``) before anything is read; a
    det.json is used only for the scan whose voxel data it was made from (its sha256).
    """
    from .core.io import strict_json
    from .core.io.nifti import load_volume
    from .core.io.outputs import Output, check_outputs, write_together
    from .core.tasks.cmb.io import read_detections
    from .core.tasks.csvd.classify import classify_findings, classify_scan, findings_from_detections
    from .core.tasks.csvd.model import load_subtype_model

    check_outputs([Output(args.out, (".json",), "subtype JSON")], inputs=[args.swi, args.phase, args.detections])
    magnitude = load_volume(args.swi)
    phase = load_volume(args.phase) if args.phase else None
    findings = None
    if args.detections:
        findings = findings_from_detections(read_detections(args.detections, magnitude.sha256)["detections"])
    model = load_subtype_model(args.version, device=args.device)
    task = (classify_scan(magnitude, phase, model, device=args.device) if findings is None
            else classify_findings(magnitude, phase, findings, model, device=args.device))
    doc = _drive(task, args.quiet).to_json()
    text = strict_json.dumps(doc, indent=2) + "\n"
    write_together([(args.out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))])
    print(strict_json.dumps({"prediction": doc["prediction"], "probabilities": doc["probabilities"],
                             "cmbs": len(doc["cmbs"]), "model": doc["model"], "out": str(args.out)}))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``neuroreview csvd`` and its subcommands."""
    csvd = sub.add_parser("csvd", help="small vessel disease subtype from the microbleeds").add_subparsers(
        dest="csvd_command", required=True)

    p = csvd.add_parser("phantoms", help="write a simulated subtype cohort (SWI per patient, labels.tsv)")
    add_cohort_arguments(p, "centres", centre_list,
                         "comma-separated centres the patients are dealt to in equal shares (default A,B,C)",
                         "one voxel size for every patient (a coarse grid for quick looks; default: each centre's "
                         "scanner)", "render patients in this many processes (a physics patient takes 15-75 s)")
    p.set_defaults(func=cmd_phantoms)

    p = csvd.add_parser("evaluate", help="development CV and an external test of the subtype models on a cohort")
    p.add_argument("--data", required=True, help="a cohort folder (csvd phantoms)")
    p.add_argument("--source", choices=("truth", "detector"), default="truth",
                   help="the true microbleeds (oracle) or the shipped detector's (end to end)")
    p.add_argument("--features", choices=tuple(FEATURES), default="location",
                   help="location-only bags, or with the detector's frozen patch embedding")
    p.add_argument("--external", default=DEFAULT_EXTERNAL, help="the centre tested once (default C)")
    p.add_argument("--folds", type=bounded_int(2, 100, "number of folds"), default=10)
    p.add_argument("--epochs", type=config_type("epochs"), default=None, help="MIL epochs (default: MILConfig's)")
    p.add_argument("--boot", type=bounded_int(100, 100_000, "number of bootstrap resamples"), default=1000)
    p.add_argument("--seed", type=int, default=None, help="folds, bootstrap and MIL seed (default: MILConfig's)")
    p.add_argument("--json", default=None, help="also write the figures and the setting here")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = csvd.add_parser("train", help="train the subtype model on drawn phantom patients; test once on centre C")
    p.add_argument("--out", default=None, help="registry folder (default: user data folder)")
    p.add_argument("--patients", type=bounded_int(10, 100_000, "number of training patients"), default=1200,
                   help="drawn development patients (centres A and B)")
    p.add_argument("--external", type=bounded_int(10, 100_000, "number of external test patients"), default=240,
                   help="drawn external patients (centre C), tested once")
    p.add_argument("--seed", type=int, default=0,
                   help="training draw and MIL seed; the external draw uses seed + 1 (benchmarks/csvd.py "
                        "draws from 411000 and 412000)")
    p.add_argument("--epochs", type=config_type("epochs"), default=None, help="MIL epochs (default: MILConfig's)")
    p.add_argument("--boot", type=bounded_int(100, 100_000, "number of bootstrap resamples"), default=1000)
    p.add_argument("--version", default=None, help="the new version (default: next minor after every installed one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = csvd.add_parser("classify", help="the subtype of one SWI's patient from its microbleeds")
    p.add_argument("swi")
    p.add_argument("--out", required=True, help="the result JSON")
    p.add_argument("--detections", default=None,
                   help="a det.json of this scan (cmb detect); without it the detector runs first")
    p.add_argument("--phase", default=None)
    p.add_argument("--version", default=None, help="subtype model version (default: the registry's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_classify)
