"""``neuroreview csvd ...``: the small vessel disease subtype cohort and its evaluation from the shell.

``csvd phantoms`` writes a subtype cohort (``core.phantoms.csvd``, imported lazily: the
run-time code never imports the simulators); ``csvd evaluate --data DIR`` reads a cohort's
patients from their scans (:func:`core.tasks.csvd.cohort_items.items_from_cohort`) and
runs the paper's protocol, fixed (:func:`core.tasks.csvd.evaluate.evaluate_centres`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli import bounded_float, bounded_int, config_from_args, config_type
from .cli_cmb import _drive
from .core.errors import OutputPathError

#: The external centre of ``csvd evaluate`` unless ``--external`` says otherwise (the
#: cohort's 1.5 T centre, ``core.phantoms.csvd.CENTRES['C']``).
DEFAULT_EXTERNAL = "C"
#: ``--features``: bags with the detector's patch embedding, or location-only.
FEATURES = {"location": None, "patch": "detector"}


def centre_list(text: str) -> tuple[str, ...]:
    """An argparse ``type``: comma-separated centre names of ``core.phantoms.csvd.CENTRES``, else one sentence."""
    from .core.phantoms.csvd import CENTRES

    names = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in names if c not in CENTRES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{(unknown or [text])[0]!r} is not a centre of the subtype cohort (centres: {', '.join(CENTRES)})")
    return tuple(dict.fromkeys(names))


def cmd_phantoms(args: argparse.Namespace) -> int:
    """Write a subtype cohort: ``patient-NNNN/`` (SWI, phase, truth) per patient and ``labels.tsv``."""
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs, disk_errors
    from .core.phantoms.csvd import write_csvd_cohort

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: is a file; the cohort is written into a folder")
    check_outputs([Output(out / "labels.tsv", (".tsv",), "labels.tsv")] if out.is_dir()
                  else [Output(out, what="cohort folder")])
    overrides = {"voxel_size": tuple(args.voxel_size)} if args.voxel_size else {}
    if not args.quiet:
        print(f"Rendering {args.n} patients of centres {', '.join(args.centres)} into {out}", file=sys.stderr)
    with disk_errors([out]):
        paths = write_csvd_cohort(out, args.n, args.seed, args.centres, **overrides)
    print(strict_json.dumps({"out": str(args.out), "patients": args.n, "centres": list(args.centres),
                             "files": len(paths), **({"voxel_size": list(args.voxel_size)} if args.voxel_size else {})}))
    return 0


def vs_rule_lines(vs_rule: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """One line per model and setting: its macro-AUC difference from the Boston rule (paired bootstrap)."""
    lines = []
    for name, settings in vs_rule.items():
        for setting, d in settings.items():
            if "error" in d:
                lines.append(f"  {name:<22} {setting:<12} {d['error']}")
            else:
                lines.append(f"  {name:<22} {setting:<12} {d['difference']:+.3f} "
                             f"[{d['low']:+.3f}, {d['high']:+.3f}] p={d['p']:.3f}")
    return lines


def check_design(data: str | Path, external: str, n_folds: int, seed: int) -> None:
    """Refuse, from ``labels.tsv`` alone, a cohort too small for the protocol (one sentence, before any scan is read).

    Why: reading, registering and detecting takes seconds to a minute per patient; a
    cohort without the external centre, or whose development patients cannot fill the
    folds, must fail at once with the harness's own sentence (``metrics.cohort.patient_folds``).
    """
    import numpy as np

    from .core.errors import InsufficientDataError
    from .core.metrics.cohort import Cohort, patient_folds
    from .core.phantoms.csvd import read_csvd_labels
    from .core.tasks.csvd.baselines import SUBTYPES

    rows = read_csvd_labels(data)
    present = sorted({r["centre"] for r in rows})
    if external not in present or len(present) < 2:
        raise InsufficientDataError(
            f"{data}: the external centre {external} and at least one development centre need patients; "
            f"the cohort's centres are {', '.join(present) or 'none'}")
    dev = [r for r in rows if r["centre"] != external]
    patient_folds(Cohort(dev, np.array([r["subtype"] for r in dev]), np.array([r["patient"] for r in dev]), SUBTYPES),
                  n_folds, seed)


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
    print("\n".join(vs_rule_lines(result.vs_rule)))
    if args.json:
        text = strict_json.dumps({"setting": setting, **result.to_json()}, indent=1) + "\n"
        write_together([(args.json, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))])
    return 0


def add_parser(sub: Any) -> None:
    """Register ``neuroreview csvd`` and its subcommands."""
    csvd = sub.add_parser("csvd", help="small vessel disease subtype from the microbleeds").add_subparsers(
        dest="csvd_command", required=True)

    p = csvd.add_parser("phantoms", help="write a simulated subtype cohort (SWI per patient, labels.tsv)")
    p.add_argument("--out", required=True, help="cohort folder (patient-NNNN/ and labels.tsv)")
    p.add_argument("--n", type=bounded_int(1, 10_000, "number of patients"), default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--centres", type=centre_list, default=("A", "B", "C"),
                   help="comma-separated centres the patients are dealt to in equal shares (default A,B,C)")
    p.add_argument("--voxel-size", nargs=3, type=bounded_float(0.3, 4.0, "voxel size in mm"), default=None,
                   metavar=("X", "Y", "Z"), help="one voxel size for every patient (a coarse grid for quick looks; "
                                                 "default: each centre's scanner)")
    p.add_argument("--quiet", action="store_true")
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
