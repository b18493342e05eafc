"""``neuroreview networks ...``: rs-fMRI ICA, network matching and overrides from the shell.

* ``networks extract BOLD.nii.gz --out DIR``: spatial ICA of one scan, matched to the five
  networks; writes DIR/components.nii.gz, DIR/timecourses.tsv, DIR/networks.json.
* ``networks extract --cohort DIR``: the same for every ``sub-*/ses-*/bold.nii.gz`` of a
  cohort whose ``ica/`` folder is missing or unfinished (no networks.json).
* ``networks match DIR [--set NETWORK=COMPONENT ...]``: (re)match a folder (ours or FSL
  MELODIC's) and store a radiologist's choices in DIR/networks.json (``automatic: false``).
  COMPONENT is a label as in the TSV header (``IC03``), a 0-based index (``2``), or
  ``auto`` to return the network to the automatic assignment.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from .cli import bounded_float, bounded_int, config_from_args, config_type
from .core.io.outputs import disk_errors, write_together
from .core.errors import InputFileError, OutputPathError
from .core.progress import Progress, run_to_completion

#: Bounds of the numeric options, refused by the parser before any work. Why each:
#: components: one per network at least; beyond 100, single-scan ICA splits networks
#: into fragments (MELODIC's own estimates stay below) and the maps grow K-fold.
N_COMPONENTS_RANGE = (5, 100)
#: smoothing FWHM, mm (0: none): networks are centimetre-sized; wider kernels merge
#: neighbouring networks, and the cost grows with the kernel (1e6 mm ran for > 600 s).
SMOOTHING_RANGE_MM = (0.0, 20.0)
SEED_RANGE = (0, 2**32 - 1)  # numpy's seed range


def _progress(prefix: str = "") -> Any:
    def show(update: Progress) -> None:
        text = f"{prefix}{update.message}"
        print(f"\r[{update.fraction:6.1%}] {text:<70.70}", end="", file=sys.stderr, flush=True)

    return show


def _drive(task: Any, quiet: bool, prefix: str = "") -> Any:
    result = run_to_completion(task, None if quiet else _progress(prefix))
    if not quiet:
        print(file=sys.stderr)
    return result


def _summary(assignment: Any) -> dict[str, Any]:
    return {
        name: {"component": m.label, "score": round(m.score, 3), "second_score": round(m.second_score, 3),
               "sign": m.sign, "confident": m.confident, "automatic": m.automatic}
        for name, m in assignment.matches.items()
    }


def extract_one(bold_path: Path, out_dir: Path, n_components: int, seed: int, smoothing_mm: float | None,
                quiet: bool, prefix: str = "") -> dict[str, Any]:
    """ICA + matching of one scan into ``out_dir``; returns the summary printed as JSON."""
    from .core.io.ica_folder import check_output_folder, check_tr
    from .core.io.nifti import load_volume
    from .core.tasks.networks.assignment_io import write_ica_folder
    from .core.tasks.networks.ica import provenance, run_ica
    from .core.tasks.networks.matching import match_networks

    check_output_folder(out_dir, inputs=[bold_path])  # refuse before an ICA is spent on a folder we will not write
    volume = load_volume(bold_path)
    if volume.tr_s is not None:
        check_tr(volume.tr_s, str(bold_path))  # it goes into networks.json; an absent TR stays null
    start = time.perf_counter()
    comps = _drive(run_ica(volume, n_components=n_components, seed=seed, smoothing_fwhm_mm=smoothing_mm),
                   quiet, prefix)
    assignment = match_networks(comps)
    seconds = time.perf_counter() - start
    for sentence in comps.warnings:
        print(f"warning: {sentence}", file=sys.stderr)
    extra = {"source": bold_path.name, "source_sha256": volume.sha256, "tr_s": volume.tr_s,
             **provenance(n_components, seed, **comps.info)}
    with disk_errors([out_dir]):
        write_ica_folder(out_dir, comps, assignment, extra)
    return {"bold": str(bold_path), "out": str(out_dir), "n_components": n_components,
            "seconds": round(seconds, 2), "networks": _summary(assignment)}


def cohort_sessions(cohort: Path) -> list[Path]:
    """Every ``sub-*/ses-*/`` folder of a cohort that holds a ``bold.nii.gz``, sorted."""
    if not cohort.is_dir():
        raise InputFileError(f"{cohort}: is not a folder; --cohort needs the cohort folder (sub-*/ses-*/bold.nii.gz)")
    sessions = sorted(p.parent for p in cohort.glob("sub-*/ses-*/bold.nii.gz"))
    if not sessions:
        raise InputFileError(f"{cohort}: holds no sub-*/ses-*/bold.nii.gz, so there is nothing to extract")
    return sessions


def cmd_extract(args: argparse.Namespace) -> int:
    """ICA of one scan (BOLD --out DIR) or of every unfinished session of a cohort (--cohort DIR)."""
    from .core.io import strict_json
    from .core.io.ica_folder import NETWORKS_FILE, check_output_folder

    if (args.bold is None) == (args.cohort is None):
        raise InputFileError("networks extract: give either one BOLD file with --out DIR, or --cohort DIR")
    smoothing = args.smoothing if args.smoothing > 0 else None
    if args.bold is not None:
        if args.out is None:
            raise InputFileError(f"{args.bold}: --out DIR is needed (the folder the ICA is written to)")
        summary = extract_one(Path(args.bold), Path(args.out), args.n_components, args.seed, smoothing, args.quiet)
        print(strict_json.dumps(summary, indent=2))
        return 0
    cohort = Path(args.cohort)
    sessions = cohort_sessions(cohort)
    for session in sessions:  # every output folder checked before the first ICA
        if not (session / "ica" / NETWORKS_FILE).exists():
            check_output_folder(session / "ica", inputs=[session / "bold.nii.gz"])
    done, skipped = [], []
    for n, session in enumerate(sessions, start=1):
        if (session / "ica" / NETWORKS_FILE).exists():
            skipped.append(str(session))
            continue
        name = str(session.relative_to(cohort))
        summary = extract_one(session / "bold.nii.gz", session / "ica", args.n_components, args.seed, smoothing,
                              args.quiet, prefix=f"{n}/{len(sessions)} {name}: ")
        done.append({"session": name, "seconds": summary["seconds"],
                     "networks": {k: v["component"] for k, v in summary["networks"].items()},
                     "unconfident": [k for k, v in summary["networks"].items() if not v["confident"]]})
    print(strict_json.dumps({"cohort": str(cohort), "extracted": done, "already_done": len(skipped)}, indent=2))
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    """Match a folder's components to the networks and store overrides in its networks.json."""
    from .core.anatomy import atlas
    from .core.io import strict_json
    from .core.io.ica_folder import NETWORKS_FILE, load_ica, parse_component
    from .core.io.outputs import Output, check_outputs
    from .core.tasks.networks.assignment_io import load_ica_folder, store_assignment
    from .core.tasks.networks.matching import match_networks

    folder = Path(args.folder)
    if folder.exists() and not folder.is_dir():
        raise InputFileError(f"{folder}: networks match needs the ICA folder (networks.json is stored in it)")
    if folder.is_dir():  # networks.json is updated in place, by design: only writability is checked
        check_outputs([Output(folder / NETWORKS_FILE, (".json",), NETWORKS_FILE)])
    if (folder / NETWORKS_FILE).exists() and not args.rematch:
        comps, assignment = load_ica_folder(folder)  # the checks compare and the cohort loader make too
    else:
        comps = load_ica(folder)
        assignment = None
    automatic = match_networks(comps)
    assignment = assignment or automatic
    for item in args.set or []:
        network, sep, component = item.partition("=")
        network = network.strip()
        if not sep or network not in atlas.NETWORKS:
            raise InputFileError(
                f"--set {item}: write NETWORK=COMPONENT with NETWORK one of {', '.join(atlas.NETWORKS)}"
            )
        if component.strip().lower() == "auto":
            assignment = assignment.reset(network, automatic)
        else:
            index = parse_component(component, comps.n_components, where=f"--set {item}")
            assignment = assignment.override(network, index)
    with disk_errors([folder]):
        store_assignment(folder, assignment, comps)
    shared = assignment.shared_components()
    for k, names in shared.items():
        print(f"warning: component IC{k + 1:02d} is assigned to {' and '.join(names)}", file=sys.stderr)
    print(strict_json.dumps({"folder": str(folder), "networks": _summary(assignment)}, indent=2))
    return 0


def cmd_phantoms(args: argparse.Namespace) -> int:
    """Write a simulated pre/post cohort (BOLD + ground truth per session)."""
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs
    from .core.phantoms.rsfmri import write_bold_cohort

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: is a file; the cohort is written into a folder")
    check_outputs([Output(out / "cohort.json", what="cohort.json")] if out.is_dir()
                  else [Output(out, what="cohort folder")])
    with disk_errors([out]):
        paths = _drive(write_bold_cohort(out, n_patients=args.n, seed=args.seed, effect_size=args.effect_size,
                                         n_volumes=args.n_volumes, voxel_mm=args.voxel_mm), args.quiet)
    print(strict_json.dumps({"out": str(args.out), "patients": args.n, "files": len(paths)}))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """P(post) of every network of one patient's pre and post scans, as JSON."""
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs
    from .core.tasks.networks.compare import compare, write_comparison

    inputs = [Path(args.pre), Path(args.post)]
    check_outputs([Output(args.out, (".json",), "comparison JSON")], inputs=inputs,
                  protected_folders=[p for p in inputs if p.is_dir()])  # an ICA folder's networks.json is an input
    result = _drive(compare(args.pre, args.post, version=args.version, device=args.device, tr_s=args.tr,
                            with_tsne=False), args.quiet)
    for sentence in result.messages:
        print(f"warning: {sentence}", file=sys.stderr)
    write_together([(args.out, lambda tmp: write_comparison(result, tmp))])
    table = {name: {state: round(result.probabilities[state][name], 3) for state in ("pre", "post")}
             for name in result.probabilities["pre"]}
    print(strict_json.dumps({"out": str(args.out), "model": result.model, "p_post": table}, indent=2))
    return 0


def stage1_config(args: argparse.Namespace) -> Any:
    """Stage-1 settings of ``networks evaluate / train``: the options given, the rest ``Stage1Config``'s defaults."""
    from .core.tasks.networks.train import Stage1Config

    return config_from_args(Stage1Config, args, epochs="epochs", seed="seed")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Patient-grouped cross-validation of the two-stage model and the baseline on a cohort."""
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs
    from .core.tasks.networks import evaluate
    from .core.tasks.networks.cohort import check_trainable

    check_outputs([Output(args.json, (".json",), "evaluation JSON"), Output(args.tsne, (".png",), "t-SNE PNG")],
                  protected_folders=[args.data])
    config = evaluate.EvaluationConfig(folds=args.folds, seed=args.seed, n_boot=args.n_boot, tsne=bool(args.tsne),
                              stage1=stage1_config(args))
    check_trainable(Path(args.data), args.folds)  # before minutes of loading: a bug in what follows keeps its traceback
    result, warnings = _drive(evaluate.evaluate_cohort(Path(args.data), config, args.device), args.quiet)
    for sentence in warnings:
        print(f"warning: {sentence}", file=sys.stderr)
    print(result.table())
    print(f"{config.folds}-fold cross-validation by patient; {result.seconds:.0f} s on {result.device}")
    writes = []
    if args.json:  # NaN (an undefined metric) becomes null in to_json; strict_json refuses any other
        writes.append((args.json, lambda tmp: tmp.write_text(strict_json.dumps(result.to_json(), indent=2) + "\n",
                                                             encoding="utf-8")))
    if args.tsne:
        writes.append((args.tsne, lambda tmp: evaluate.save_tsne_png(result, tmp)))
    write_together(writes)  # both or neither
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train both stages on a cohort and save a version (card metrics from --cv folds)."""
    from .core.io import strict_json
    from .core.registry import default_registry_root
    from .core.tasks.networks.train import train_on_cohort

    root = Path(args.out) if args.out else default_registry_root()
    check_registry_root(root, Path(args.data), args.version)
    card, report = _drive(train_on_cohort(Path(args.data), root, args.version, device=args.device,
                                          stage1=stage1_config(args),
                                          cv_folds=args.cv), args.quiet)
    if report.get("cv_table"):
        print(report["cv_table"])
    print(strict_json.dumps({"name": card.name, "version": card.version, "root": str(root),
                             "auc_mean": card.metrics.get("auc_mean"), "seconds": report["seconds"]}, indent=2))
    return 0


def check_registry_root(root: Path, data: Path, version: str) -> None:
    """Refuse, before training, a registry folder that is inside the cohort or cannot be written.

    The version folder is created by the registry (parents included), so the nearest
    folder that exists must be a writable folder. That the version is new is the
    registry's own check when it saves.
    """
    from .core.registry import version_dir
    from .core.tasks.networks.model import MODEL_NAME

    if root.resolve().is_relative_to(data.resolve()):
        raise OutputPathError(f"{root} is inside the input folder {data}; save the model elsewhere "
                              "(input folders are never written)")
    existing = next(p for p in (version_dir(root, MODEL_NAME, version), *version_dir(root, MODEL_NAME, version).parents)
                    if p.exists())
    if not existing.is_dir():
        raise OutputPathError(f"{existing} is a file; --out is the registry folder the version is saved in")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"the folder {existing} is not writable (for model version {version})")


def add_parser(sub: Any) -> None:
    """Register ``neuroreview networks`` and its subcommands."""
    from .core.io.ica_folder import TR_RANGE_S
    from .core.tasks.networks import DEFAULT_N_COMPONENTS, DEFAULT_SMOOTHING_FWHM_MM

    networks = sub.add_parser("networks", help="rs-fMRI: ICA, the five networks, overrides").add_subparsers(
        dest="networks_command", required=True)

    p = networks.add_parser("extract", help="spatial ICA of a BOLD scan (or a cohort), matched to the five networks")
    p.add_argument("bold", nargs="?", default=None, help="4D BOLD NIfTI in MNI space")
    p.add_argument("--out", default=None, help="output folder (components.nii.gz, timecourses.tsv, networks.json)")
    p.add_argument("--cohort", default=None, help="cohort folder: every sub-*/ses-*/bold.nii.gz lacking ica/")
    p.add_argument("--n-components", type=bounded_int(*N_COMPONENTS_RANGE, "number of components"),
                   default=DEFAULT_N_COMPONENTS)
    p.add_argument("--seed", type=bounded_int(*SEED_RANGE, "seed"), default=0)
    p.add_argument("--smoothing", type=bounded_float(*SMOOTHING_RANGE_MM, "smoothing FWHM (mm)"),
                   default=DEFAULT_SMOOTHING_FWHM_MM, help="Gaussian FWHM in mm before ICA (0: none)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_extract)

    p = networks.add_parser("match", help="match an ICA folder to the networks; store overrides (--set)")
    p.add_argument("folder", help="an ICA folder written by extract, or an FSL MELODIC folder")
    p.add_argument("--set", action="append", metavar="NETWORK=COMPONENT",
                   help="assign a component by hand (IC03, a 0-based index, or auto); repeatable")
    p.add_argument("--rematch", action="store_true", help="discard stored choices and match afresh")
    p.set_defaults(func=cmd_match)

    p = networks.add_parser("compare", help="P(post) of each network for a patient's pre and post scans")
    p.add_argument("--pre", required=True, help="pre-operative: BOLD, ICA folder, MELODIC folder or session folder")
    p.add_argument("--post", required=True, help="post-operative: the same kinds")
    p.add_argument("--out", required=True, help="res.json")
    p.add_argument("--version", default=None, help="pre/post model version (default: the registry's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--tr", type=bounded_float(*TR_RANGE_S, "repetition time (s)"), default=None,
                   help="repetition time (s) for inputs that do not say it")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_compare)

    def model_args(name: str, helptext: str, func: Any) -> argparse.ArgumentParser:
        p = networks.add_parser(name, help=helptext)
        p.add_argument("--data", required=True, help="cohort folder: sub-*/ses-pre|ses-post/ (bold.nii.gz or ica/)")
        p.add_argument("--epochs", type=config_type("epochs"), default=None,
                       help="stage-1 epochs (default: the stage-1 config's)")
        p.add_argument("--seed", type=bounded_int(*SEED_RANGE, "seed"), default=0)
        p.add_argument("--device", default="auto")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(func=func)
        return p

    p = model_args("evaluate", "cross-validation by patient of the pre/post model and the baseline", cmd_evaluate)
    p.add_argument("--folds", type=bounded_int(2, 50, "number of folds"), default=5)
    p.add_argument("--n-boot", type=bounded_int(0, 100_000, "number of resamples"), default=1000,
                   help="patient-bootstrap resamples per CI")
    p.add_argument("--tsne", default=None, help="PNG of the t-SNE of held-out embeddings")
    p.add_argument("--json", default=None, help="the full result as JSON")

    p = model_args("train", "train the pre/post model on a cohort and save a version", cmd_train)
    p.add_argument("--out", default=None, help="registry folder (default: the user data folder)")
    p.add_argument("--version", required=True)
    p.add_argument("--cv", type=bounded_int(0, 50, "number of folds"), default=5,
                   help="folds of the CV whose held-out metrics go into the card (0: none)")

    p = networks.add_parser("phantoms", help="simulated pre/post rs-fMRI cohort with ground truth")
    p.add_argument("--out", required=True, help="cohort folder (sub-*/ses-pre|ses-post/bold.nii.gz + truth)")
    # Bounds: one phantom session at 2 mm (91 x 109 x 91) and 1000 volumes is 3.6 GB as float32.
    p.add_argument("--n", type=bounded_int(1, 1000, "number of patients"), default=56,
                   help="patients (each scanned pre and post)")
    p.add_argument("--seed", type=bounded_int(*SEED_RANGE, "seed"), default=0)
    p.add_argument("--effect-size", type=bounded_float(0.0, 10.0, "effect size"), default=1.0,
                   help="strength of the simulated surgery effect")
    p.add_argument("--n-volumes", type=bounded_int(10, 1000, "number of volumes"), default=150)
    p.add_argument("--voxel-mm", type=bounded_float(2.0, 8.0, "voxel size (mm)"), default=3.0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_phantoms)
