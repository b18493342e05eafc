"""``neuroreview stroke ...``: stroke risk from brain MRI and a clinical table (issue 13).

``stroke phantoms`` writes a stroke cohort (``core.phantoms.stroke``, imported lazily: the
run-time code never imports the simulators): T1 + FLAIR per subject, ``clinical.tsv``,
``labels.tsv`` apart (the labelled subjects' written label) and ``truth.tsv``.

``stroke pretrain`` pretrains the image and tabular encoders (``core.tasks.stroke.pretrain``)
on the split's train subjects. Scale-out: run it under ``torchrun`` (DDP on the one loop:
gloo on CPUs, NCCL on GPUs, several nodes through torchrun's rendezvous), or give
``--nproc N``, which starts ``torchrun --standalone`` on this machine with the same options.
Rank 0 alone writes the split and the weights.

``stroke train`` trains the risk heads on a pretrained version's encoders, frozen or trainable
(``core.tasks.stroke.downstream``), on the same persisted split; ``stroke evaluate`` scores a
risk version once on that split's test subjects (``core.tasks.stroke.evaluate``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .cli import bounded_float, bounded_int, config_from_args, config_type
from .core.errors import InputFileError, InsufficientDataError, OutputPathError

#: The files a cohort's folder gets besides the subjects' folders.
COHORT_TABLES: tuple[str, ...] = ("clinical.tsv", "labels.tsv", "truth.tsv")


def cmd_phantoms(args: argparse.Namespace) -> int:
    """Write a stroke cohort into ``--out``; one JSON line (out, subjects, labelled, files)."""
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs, disk_errors

    if args.labelled > args.n:
        raise InsufficientDataError(f"--labelled {args.labelled} is more than the --n {args.n} subjects of the cohort.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: is a file; the cohort is written into a folder")
    check_outputs([Output(out / name, (".tsv",), name) for name in COHORT_TABLES] if out.is_dir()
                  else [Output(out, what="cohort folder")])
    from .core.phantoms.stroke import write_stroke_cohort

    if not args.quiet:
        print(f"Rendering {args.n} subjects ({args.labelled} labelled) at {args.voxel_mm:g} mm into {out}",
              file=sys.stderr)
    with disk_errors([out]):
        paths = write_stroke_cohort(out, args.n, args.labelled, args.seed, voxel_mm=args.voxel_mm,
                                    image_volumes_in_table=args.image_volumes_in_table, workers=args.workers,
                                    resume=args.resume)
    print(strict_json.dumps({"out": str(args.out), "subjects": args.n, "labelled": args.labelled,
                             "voxel_mm": args.voxel_mm, "image_volumes_in_table": args.image_volumes_in_table,
                             "files": len(paths)}))
    return 0


#: ``stroke pretrain``'s options that are passed on as they are when ``--nproc`` starts torchrun.
_PRETRAIN_OPTIONS: tuple[str, ...] = ("data", "out", "split", "version", "epochs", "batch", "queue", "width", "seed",
                                      "device")


def _torchrun(args: argparse.Namespace) -> int:
    """``--nproc N``: this very command under ``torchrun --standalone`` on this machine; its exit status."""
    argv = ["stroke", "pretrain"]
    for name in _PRETRAIN_OPTIONS:
        if getattr(args, name) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    argv += ["--quiet"] if args.quiet else []
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "napari_neuroreview.cli", *argv]
    return subprocess.run(command, check=False).returncode


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Pretrain the stroke encoders on a cohort's split (read, or made and written); save a registry version.

    One JSON line (rank 0): name, version, root, split file, subjects, the loss per epoch.
    Outputs (registry folder, new version, split) are checked before any scan is read.
    """
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:
        from .core.tasks.stroke.pretrain import PretrainConfig

        batch = args.batch if args.batch is not None else PretrainConfig.batch
        if batch < args.nproc:  # refused before torchrun starts, not as a crash on one rank
            raise InsufficientDataError(f"--batch {batch} is smaller than --nproc {args.nproc}: every process needs "
                                        "at least one row of each batch.")
        return _torchrun(args)
    import torch

    from .cli_metastasis import check_registry_folder
    from .core.device import resolve_device
    from .core.io import strict_json
    from .core.progress import run_to_completion
    from .core.registry import (
        SHIPPED_WEIGHTS_ROOT,
        check_new_version,
        default_registry_root,
        next_version,
    )
    from .core.tasks.stroke.pretrain import (
        MODEL_NAME,
        PretrainConfig,
        pretrain,
        save_pretrained,
    )
    from .core.tasks.stroke.split import cohort_fingerprint, split_for_cohort
    from .core.train import distributed

    data, root = Path(args.data), Path(args.out)
    device = resolve_device(args.device).device
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per rank
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    distributed.init_from_env(device)
    main = distributed.is_main()
    roots = list(dict.fromkeys([root, default_registry_root(), SHIPPED_WEIGHTS_ROOT]))
    version = args.version or next_version(MODEL_NAME, roots)
    check_new_version(MODEL_NAME, version, roots)
    check_registry_folder(root, data)
    config = config_from_args(PretrainConfig, args, epochs="epochs", batch="batch", queue="queue", width="width",
                              seed="seed")
    split_path = Path(args.split) if args.split else root / f"stroke-split-{cohort_fingerprint(data)[:12]}.json"
    split = split_for_cohort(split_path, data, seed=config.seed, write=main)
    if main and not args.quiet:
        sizes = ", ".join(f"{p} {len(v)}" for p, v in split["subjects"].items())
        print(f"Split {split_path} ({sizes}); pretraining on train, validating on val, never reading test",
              file=sys.stderr)

    def progress(update: Any) -> None:
        print(f"\r{update.message}", end="", file=sys.stderr, flush=True)

    result = run_to_completion(pretrain(data, split, config, device), None if args.quiet or not main else progress)
    if main:
        if not args.quiet:
            print(file=sys.stderr)
        card = save_pretrained(result, config, root, version, data.resolve().name, split, split_path.name)
        world = distributed.rank_and_world()[1]
        print(strict_json.dumps({"name": card.name, "version": card.version, "root": str(root),
                                 "split": str(split_path), "ranks": world,
                                 "subjects": {p: len(v) for p, v in result.subjects.items()},
                                 "train_loss": result.history.train_loss, "val_loss": result.history.val_loss,
                                 "best_epoch": result.history.best_epoch, "val_retrieval": result.val_retrieval}))
    distributed.finish()
    return 0


def _progress(quiet: bool) -> Any:
    """A progress printer on stderr (one line, rewritten), or None when quiet."""
    if quiet:
        return None
    return lambda update: print(f"\r{update.message}", end="", file=sys.stderr, flush=True)


def _split_beside(root: Path, card: Any, data: Path) -> tuple[dict[str, Any], Path]:
    """The split a stroke card names (its file beside the weights in ``root``), checked against the cohort."""
    from .core.tasks.stroke.split import read_split

    path = root / card.config["split"]["file"]
    if not path.is_file():
        raise InputFileError(f"{path}: the split of {card.name} {card.version} is missing (it is written beside the "
                             "weights); give its file with --split.")
    return read_split(path, data), path


def cmd_train(args: argparse.Namespace) -> int:
    """Train the risk heads on a pretrained version's encoders and its split; save a ``stroke-risk`` version.

    One JSON line: name, version, root, parent, mode, thresholds, validation metrics, loss per epoch.
    The pretrained version, its cohort and the outputs are checked before any scan is read.
    """
    from .cli_metastasis import check_registry_folder
    from .core.device import resolve_device
    from .core.io import strict_json
    from .core.io.atomic import write_text_atomic
    from .core.progress import run_to_completion
    from .core.registry import (
        SHIPPED_WEIGHTS_ROOT,
        check_new_version,
        default_registry_root,
        next_version,
    )
    from .core.tasks.stroke.downstream import (
        MODEL_NAME,
        DownstreamConfig,
        check_same_cohort,
        load_pretrained,
        save_risk_model,
        train_downstream,
    )
    from .core.tasks.stroke.split import read_split

    data = Path(args.data)
    pre_root, clip, pre_card = load_pretrained(args.pretrained, args.weights)
    check_same_cohort(pre_card, data)
    if args.split:
        split, split_path = read_split(args.split, data), Path(args.split)
    else:
        split, split_path = _split_beside(pre_root, pre_card, data)
    root = Path(args.out) if args.out else pre_root if args.weights else default_registry_root()
    # the shipped weights too (as stroke pretrain): a user's first version must not clash with the shipped 1.0.0
    roots = list(dict.fromkeys([root, pre_root, default_registry_root(), SHIPPED_WEIGHTS_ROOT]))
    version = args.version or next_version(MODEL_NAME, roots)
    check_new_version(MODEL_NAME, version, roots)
    check_registry_folder(root, data)
    beside = root / split_path.name
    if beside.exists() and read_split(beside, data) != split:
        raise OutputPathError(f"{beside}: holds another split of this cohort; save the model in another --out.")
    config = DownstreamConfig(**{k: v for k, v in (("mode", args.mode), ("epochs", args.epochs), ("batch", args.batch),
                                                     ("lr", args.lr), ("seed", args.seed),
                                                     ("augment", False if args.no_augment else None)) if v is not None})
    device = resolve_device(args.device).device
    if not args.quiet:
        print(f"{pre_card.name} {pre_card.version} ({config.mode} encoders), split {split_path.name}: heads on "
              "train, thresholds on val, test never read", file=sys.stderr)
    result = run_to_completion(train_downstream(data, split, clip, pre_card, config, device), _progress(args.quiet))
    if not args.quiet:
        print(file=sys.stderr)
    for message in result.messages:  # warnings: printed even with --quiet
        print(f"Warning: {message}", file=sys.stderr)
    if not beside.exists():
        write_text_atomic(beside, strict_json.dumps(split, indent=1) + "\n")
    card = save_risk_model(result, config, root, version, data.resolve().name, split, split_path.name, pre_card)
    print(strict_json.dumps({"name": card.name, "version": card.version, "root": str(root), "parent": card.parent,
                             "mode": config.mode, "threshold": card.config["threshold"],
                             "thresholds": card.config["thresholds"], "validation": card.metrics,
                             "subjects": {p: len(v) for p, v in result.subjects.items() if p != "test"},
                             "train_loss": result.history.train_loss, "val_loss": result.history.val_loss,
                             "best_epoch": result.history.best_epoch}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a ``stroke-risk`` version once on its split's test subjects, per head; print it, and write --json."""
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs, write_together
    from .core.progress import run_to_completion
    from .core.registry import find_version
    from .core.tasks.stroke.downstream import (
        MODEL_NAME,
        TRAIN_COMMAND,
        WHAT,
        check_same_cohort,
        load_risk_model,
        registry_roots,
    )
    from .core.tasks.stroke.evaluate import METRICS, evaluate_test

    data = Path(args.data)
    if args.json:
        check_outputs([Output(args.json, (".json",), "evaluation JSON")], protected_folders=[data])
    root, card = find_version(MODEL_NAME, args.version, registry_roots(args.weights), WHAT, TRAIN_COMMAND)
    model = load_risk_model(root, card.version)
    check_same_cohort(model.card, data)
    split, _ = _split_beside(root, model.card, data)
    result = run_to_completion(evaluate_test(data, model, split, n_boot=args.boot, seed=args.seed),
                               _progress(args.quiet))
    if not args.quiet:
        print(file=sys.stderr)
    test = result["test"]
    print(f"{model.card.name} {model.card.version} ({result['mode']}), {test['subjects']} test subjects, "
          f"{test['strokes']} strokes (prevalence {test['prevalence']:.3f}); 95 % subject-bootstrap CIs")
    for head, m in result["heads"].items():
        print(f"  {head:9s} " + "  ".join(f"{k} {m[k]['value']:.3f} [{m[k]['ci95'][0]:.3f}, {m[k]['ci95'][1]:.3f}]"
                                          for k in METRICS))
    if args.json:
        text = strict_json.dumps({"cohort": data.resolve().name, **result}, indent=1) + "\n"
        write_together([(Path(args.json), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))])
    return 0


def add_parser(sub: Any) -> None:
    """Register ``neuroreview stroke`` and its subcommands."""
    stroke = sub.add_parser("stroke", help="stroke risk from brain MRI and a clinical table").add_subparsers(
        dest="stroke_command", required=True)

    p = stroke.add_parser("phantoms", help="write a simulated stroke cohort (T1 + FLAIR per subject, clinical.tsv, "
                                           "labels.tsv apart, truth.tsv)")
    p.add_argument("--out", required=True, help="cohort folder (sub-NNNNN/, clinical.tsv, labels.tsv, truth.tsv)")
    p.add_argument("--n", type=bounded_int(1, 100_000, "number of subjects"), default=100,
                   help="subjects in all (default 100)")
    p.add_argument("--labelled", type=bounded_int(0, 100_000, "number of labelled subjects"), default=20,
                   help="how many of them are labelled (the last ones; the others are for pretraining; default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-volumes-in-table", action="store_true",
                   help="add image-derived WMH, brain and ventricle volumes (ml) to clinical.tsv, as the study's "
                        "table held them")
    p.add_argument("--voxel-mm", type=bounded_float(1.0, 6.0, "voxel size in mm"), default=4.0,
                   help="isotropic voxel of T1 and FLAIR (default 4: cheap enough for thousands of subjects)")
    p.add_argument("--workers", type=bounded_int(1, 64, "number of worker processes"), default=1,
                   help="render subjects in this many processes")
    p.add_argument("--resume", action="store_true",
                   help="keep the subjects already complete in --out (an interrupted run taken up again)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_phantoms)

    p = stroke.add_parser("pretrain", help="pretrain the image and tabular encoders (CLIP + image-tabular matching) "
                                           "on a cohort's training subjects; DDP under torchrun or with --nproc")
    p.add_argument("--data", required=True, help="stroke cohort folder (stroke phantoms' layout)")
    p.add_argument("--out", required=True, help="registry folder the version (and the split) is saved in")
    p.add_argument("--split", default=None,
                   help="the subject split (split.json): read when it exists, else made and written there (default: "
                        "OUT/stroke-split-<cohort fingerprint>.json); downstream steps read the same file")
    p.add_argument("--version", default=None, help="the new version (default: next minor after every installed one)")
    p.add_argument("--epochs", type=config_type("epochs"), default=None, help="default PretrainConfig's (20)")
    p.add_argument("--batch", type=bounded_int(2, 4096, "global batch size"), default=None,
                   help="global batch, split across ranks (default 32)")
    p.add_argument("--queue", type=bounded_int(0, 65536, "queue length"), default=None,
                   help="past embeddings kept as extra contrastive negatives (default 256; 0: none)")
    p.add_argument("--width", type=bounded_int(2, 128, "network width"), default=None,
                   help="the image ResNet's first-stage channels (default 8)")
    p.add_argument("--seed", type=int, default=None, help="split, network and training seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (under torchrun each rank takes "
                                                   "cuda:LOCAL_RANK)")
    p.add_argument("--nproc", type=bounded_int(1, 256, "number of processes"), default=1,
                   help="run under torchrun --standalone with this many processes on this machine (several nodes: "
                        "start torchrun yourself, README)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_pretrain)

    p = stroke.add_parser("train", help="train the stroke risk heads (image, table, fused; their ensemble) on a "
                                        "pretrained version's encoders, frozen or trainable, on its split")
    p.add_argument("--data", required=True, help="the stroke cohort the pretrained version was trained on")
    p.add_argument("--pretrained", default=None,
                   help="the stroke-pretrain version (default: the registry's default one)")
    p.add_argument("--weights", default=None,
                   help="registry folder holding the pretrained version (default: the user's registry)")
    p.add_argument("--out", default=None, help="registry folder the new stroke-risk version is saved in "
                                               "(default: --weights, else the user's registry)")
    p.add_argument("--split", default=None, help="the pretrained version's split.json when it is not beside its "
                                                 "weights")
    p.add_argument("--mode", choices=("frozen", "trainable"), default=None,
                   help="frozen: heads only (a linear probe; default); trainable: the encoders too, at 0.1 x the lr")
    p.add_argument("--version", default=None, help="the new version (default: next minor after every installed one)")
    p.add_argument("--epochs", type=config_type("epochs"), default=None, help="default DownstreamConfig's (30)")
    p.add_argument("--batch", type=bounded_int(2, 4096, "batch size"), default=None, help="default 32")
    p.add_argument("--lr", type=bounded_float(1e-6, 1.0, "learning rate"), default=None,
                   help="the heads' learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=None, help="heads and batches seed (default 0)")
    p.add_argument("--no-augment", action="store_true",
                   help="do not turn the training images (default: up to 10 degrees about each axis, as pretraining)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = stroke.add_parser("evaluate", help="score a stroke-risk version once on its split's test subjects: ROC-AUC, "
                                           "PR-AUC, balanced accuracy, sensitivity, specificity per head, with "
                                           "subject-bootstrap CIs, at the cohort's prevalence")
    p.add_argument("--data", required=True, help="the stroke cohort the model was trained on")
    p.add_argument("--version", default=None, help="the stroke-risk version (default: the registry's default one)")
    p.add_argument("--weights", default=None, help="registry folder holding it (default: the user's registry)")
    p.add_argument("--json", default=None, help="write the evaluation here (.json)")
    p.add_argument("--boot", type=bounded_int(10, 100_000, "bootstrap resamples"), default=1000,
                   help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    from .cli_stroke_predict import add_predict_parser
    add_predict_parser(stroke)  # stroke predict: its own module (issue 13 item 7)
