"""``neuroreview metastasis ...``: the metastasis cohort phantom and lesion origin from the shell.

``metastasis phantoms`` writes an origin cohort (``core.phantoms.metastasis``, imported
lazily: the run-time code never imports the simulators); ``metastasis classify`` gives the
origin of every lesion of one session's labels from its sequences, with the Grad-CAM maps
on the contrast T1 (:mod:`core.tasks.metastasis.classify`); ``metastasis train --data DIR``
makes an origin model version from a cohort's files
(:func:`core.tasks.metastasis.cohort_items.crops_from_cohort`), tested once on its external site;
``metastasis evaluate --data DIR`` runs the cohort evaluation
(:func:`core.tasks.metastasis.evaluate.evaluate_sites`, the benchmark's).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from .cli import add_cohort_arguments, bounded_float, bounded_int, name_list, config_from_args, config_type, write_cohort_command
from .cli_cmb import _drive
from .core.errors import OutputPathError

#: ``metastasis train``: the site tested once unless ``--external`` says otherwise (the
#: cohort's independent 1.5 T site, ``core.phantoms.metastasis.SITES['C']``).
DEFAULT_EXTERNAL = "C"

#: ``metastasis classify``'s sequence options: (option, sequence name of ``classes.SEQUENCES``).
SEQUENCE_OPTIONS: tuple[tuple[str, str], ...] = (
    ("--ce-t1", "ce_t1"), ("--t1", "t1"), ("--t2", "t2"), ("--flair", "flair"), ("--dwi", "dwi"), ("--adc", "adc"))


def _sites() -> tuple[str, ...]:
    from .core.phantoms.metastasis import SITES

    return tuple(SITES)


#: ``--sites``: comma-separated sites of ``core.phantoms.metastasis.SITES``.
site_list = name_list(_sites, "site", "the metastasis cohort")


def sequence_list(text: str) -> tuple[str, ...]:
    """An argparse ``type``: distinct sequence names of ``classes.SEQUENCES``, comma-separated, in channel order."""
    from .core.tasks.metastasis.classes import SEQUENCES

    names = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in names if c not in SEQUENCES]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"{(unknown or [text])[0]!r} is not a list of distinct sequences (sequences: {', '.join(SEQUENCES)})")
    return names


def arch_name(text: str) -> str:
    """An argparse ``type``: a backbone of ``models.metastasis_net.ARCHS`` (read only when the option is given)."""
    from .core.models.metastasis_net import ARCHS

    if text not in ARCHS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a backbone (backbones: {', '.join(ARCHS)})")
    return text


def attention_name(text: str) -> str:
    """An argparse ``type``: an attention of ``models.metastasis_net.ATTENTIONS``, ``none`` for None (kept as
    text, so that an option not given, None, stays apart from ``none``)."""
    from .core.models.metastasis_net import ATTENTIONS

    if (None if text == "none" else text) not in ATTENTIONS:
        raise argparse.ArgumentTypeError(f"{text!r} is not an attention (attentions: cbam, se, none)")
    return text


def crop_mm(text: str) -> float:
    """An argparse ``type``: a crop edge in mm within what a model card may hold (``model.MAX_CROP_MM``)."""
    from .core.tasks.metastasis.model import MAX_CROP_MM

    return bounded_float(1.0, MAX_CROP_MM, "crop edge in mm")(text)


def crop_spec_of(args: argparse.Namespace) -> Any:
    """The lesion cube of ``--crop-mm``/``--crop-voxels``, each defaulting to :class:`CropSpec`'s.

    Why one function: ``train`` and ``evaluate`` must cut the same cubes the benchmark
    measured unless asked otherwise (``evaluate`` once defaulted to 64 mm / 32 voxels
    while ``train`` took CropSpec's 32 mm / 16).
    """
    from .core.tasks.metastasis.crops import CropSpec

    default = CropSpec()
    return CropSpec(args.crop_mm if args.crop_mm is not None else default.size_mm,
                    args.crop_voxels if args.crop_voxels is not None else default.shape)


def crop_voxels(text: str) -> int:
    """An argparse ``type``: voxels per crop edge within what a model card may hold (``model.MAX_CROP_SHAPE``)."""
    from .core.tasks.metastasis.model import MAX_CROP_SHAPE

    return bounded_int(4, MAX_CROP_SHAPE, "number of voxels per crop edge")(text)


def cmd_phantoms(args: argparse.Namespace) -> int:
    """Write a metastasis cohort: ``patient-NNNN/`` (six sequences, lesions, oedema, truth) and ``labels.tsv``."""
    from .core.phantoms.metastasis import write_metastasis_cohort

    return write_cohort_command(args, write_metastasis_cohort, "sites")


def cmd_classify(args: argparse.Namespace) -> int:
    """The origin of each lesion of ``--lesion``; writes the JSON (and ``--cam``), both or neither.

    The outputs are checked (not an input, writable, right suffix) before anything is read.
    """
    from .core.io import strict_json
    from .core.io.nifti import load_volume, volume_writer
    from .core.io.outputs import Output, check_outputs, write_together
    from .core.tasks.metastasis.classify import classify_lesions
    from .core.tasks.metastasis.model import load_origin_model

    given = {name: getattr(args, name) for _option, name in SEQUENCE_OPTIONS if getattr(args, name)}
    outputs = [Output(args.out, (".json",), "result JSON")]
    if args.cam:
        outputs.append(Output(args.cam, (".nii.gz", ".nii"), "Grad-CAM volume"))
    check_outputs(outputs, inputs=[*given.values(), args.lesion])
    model = load_origin_model(args.model, device=args.device)
    sequences = {name: load_volume(path) for name, path in given.items()}
    lesions = load_volume(args.lesion)
    result = _drive(classify_lesions(sequences, lesions, model, cam=bool(args.cam)), args.quiet)
    for sentence in result.messages:
        print(f"warning: {sentence}", file=sys.stderr)
    doc = result.to_json()
    text = strict_json.dumps(doc, indent=2) + "\n"
    writes: list[tuple[Any, Any]] = [(args.out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))]
    if args.cam:
        writes.append((args.cam, volume_writer(result.cam, result.affine, dtype="float32",
                                               descrip="neuroreview metastasis Grad-CAM per node")))
    write_together(writes)
    print(strict_json.dumps({"model": doc["model"], "out": str(args.out), "cam": args.cam,
                             "lesions": {str(d["id"]): d["prediction"] for d in doc["lesions"]}}))
    return 0


def check_registry_folder(root: Path, data: Path) -> None:
    """Refuse, before any scan is read, a registry folder inside the cohort or one that cannot be written.

    The registry creates the version folder with its parents, so the nearest folder that
    exists must be a writable folder.
    """
    if root.resolve().is_relative_to(data.resolve()):
        raise OutputPathError(f"{root} is inside the input folder {data}; save the model elsewhere "
                              "(input folders are never written)")
    existing = next(p for p in (root, *root.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise OutputPathError(f"{existing} is a file; --out is the registry folder the version is saved in")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"the folder {existing} is not writable (for the registry folder {root})")


def training_data_text(folder: str, train: list[dict[str, Any]], lesions: dict[str, int], external: str,
                       n_external: tuple[int, int]) -> str:
    """The card's training data in words: the cohort's folder NAME (never a path), counts per origin, the sites."""
    from .core.tasks.metastasis.classes import ORIGINS

    sites = sorted({r["site"] for r in train})
    patients = ", ".join(f"{o} {sum(r['origin'] == o for r in train)}" for o in ORIGINS)
    per_origin = ", ".join(f"{o} {lesions.get(o, 0)}" for o in ORIGINS)
    text = (f"metastasis cohort '{folder}' (neuroreview metastasis phantoms layout), site(s) {', '.join(sites)}: "
            f"{len(train)} patients ({patients}), {sum(lesions.values())} lesions ({per_origin})")
    if n_external[0]:
        text += f"; tested once on the {n_external[0]} patients ({n_external[1]} lesions) of external site {external}"
    return text


def cmd_train(args: argparse.Namespace) -> int:
    """Train an origin model on every patient of ``--data`` not of the external site; save a version.

    The outputs (registry folder, new version) are checked and every file of the cohort is
    checked to exist before the first scan is read. When the external site has patients,
    their lesion-level node AUCs go to stderr and into the card's metrics. Like the other
    train commands, the new version is the default only if no other one is.
    """
    from .core.errors import InsufficientDataError
    from .core.io import strict_json
    from .core.registry import (
        SHIPPED_WEIGHTS_ROOT, check_new_version, default_registry_root, default_version, next_version)
    from .core.tasks.metastasis.classes import ORIGINS
    from .core.tasks.metastasis.cohort_items import crops_from_cohort, node_aucs
    from .core.tasks.metastasis.labels import read_metastasis_labels
    from .core.tasks.metastasis.model import MODEL_NAME, save_origin_model
    from .core.tasks.metastasis.train import MetastasisConfig, MetastasisEstimator

    data, root = Path(args.data), Path(args.out)
    roots = list(dict.fromkeys([root, default_registry_root(), SHIPPED_WEIGHTS_ROOT]))
    version = args.version or next_version(MODEL_NAME, roots)
    check_new_version(MODEL_NAME, version, roots)  # before training, not after
    check_registry_folder(root, data)
    config = config_from_args(MetastasisConfig, args, sequences="sequences", arch="arch", epochs="epochs",
                              seed="seed")
    if args.attention is not None:
        config = MetastasisConfig(**{**vars(config), "attention": None if args.attention == "none" else args.attention})
    spec = crop_spec_of(args)
    rows = read_metastasis_labels(data)
    train_rows = [r for r in rows if r["site"] != args.external]
    if not train_rows:
        raise InsufficientDataError(f"{data / 'labels.tsv'}: every patient is of the external site {args.external}; "
                                    "training needs patients of another site")
    if not args.quiet and len(train_rows) == len(rows):
        print(f"The external site {args.external} has no patient in {data / 'labels.tsv'}: every patient is trained "
              "on and nothing is tested.", file=sys.stderr)
    estimator = MetastasisEstimator(config, device=args.device, output="nodes")  # the device, before any scan
    crops, origins, patients, sites = _drive(crops_from_cohort(data, config.sequences, spec), args.quiet)
    dev = [i for i, s in enumerate(sites) if s != args.external]
    ext = [i for i, s in enumerate(sites) if s == args.external]
    if not dev:
        raise InsufficientDataError(f"{data}: the development patients hold no lesion to train on")
    _drive(estimator.fit([crops[i] for i in dev], [origins[i] for i in dev]), args.quiet)
    metrics: dict[str, float] = {}
    aucs: dict[str, float | None] = {}
    if ext:
        aucs = node_aucs(estimator.predict_nodes([crops[i] for i in ext]), [origins[i] for i in ext])
        metrics = {f"external_auc_{node}": v for node, v in aucs.items() if v is not None}
        if not args.quiet:
            words = ", ".join(f"{node} {v:.3f}" if v is not None else f"{node} n/a (one branch only)"
                              for node, v in aucs.items())
            print(f"External site {args.external} ({len({patients[i] for i in ext})} patients, {len(ext)} lesions), "
                  f"lesion-level node AUC: {words}", file=sys.stderr)
    lesions = {o: sum(origins[i] == o for i in dev) for o in ORIGINS}
    n_ext = (len({patients[i] for i in ext}), len(ext))
    extra = {"metrics_on": (f"lesions of external site {args.external} ({n_ext[0]} patients, {n_ext[1]} lesions)"
                            if ext else "none: the external site has no patients"),
             "n_train_patients": len(train_rows), "n_train_lesions": len(dev), "train_seed": config.seed,
             "train_sites": sorted({r["site"] for r in train_rows}), "per_class_train": lesions}
    card = save_origin_model(estimator, root, version, training_data_text(data.resolve().name, train_rows, lesions,
                                                                          args.external, n_ext),
                             metrics=metrics, extra=extra)
    default = default_version(MODEL_NAME, roots)
    made_default = default == card.version
    if not made_default and not args.quiet:
        print(f"{card.version} is saved but the default stays {default}: "
              f"`neuroreview models set-default {MODEL_NAME} {card.version}` to use it.", file=sys.stderr)
    print(strict_json.dumps({"name": card.name, "version": card.version, "root": str(root), "metrics": card.metrics,
                             "external_auc": aucs, "patients": len(train_rows), "lesions": len(dev),
                             "default": default, "made_default": made_default}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """The origin evaluation of a cohort (``core.tasks.metastasis.evaluate.evaluate_sites``), printed and in JSON.

    Development CV on every site but ``--external`` (patient-grouped folds stratified by
    origin), then one test on the external site, at lesion and patient level, with
    patient-bootstrap CIs: the radiomics logistic regression, the nested choice among its
    sequence rows, the sequence ablation table and the ADC-ratio rule; with ``--network``
    also an origin network trained in every fold (slow on a CPU: ``benchmarks/metastasis.py``
    is the same evaluation with Grad-CAM and timings). Outputs are checked before any scan is read.
    """
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs, write_together
    from .core.tasks.metastasis.classes import SEQUENCES
    from .core.tasks.metastasis.cohort_items import lesion_items
    from .core.tasks.metastasis.evaluate import OnCrops, default_factories, evaluate_sites, lesions_with_inside
    from .core.tasks.metastasis.labels import read_metastasis_labels
    from .core.tasks.metastasis.train import MetastasisConfig, MetastasisEstimator

    data = Path(args.data)
    if args.json:
        check_outputs([Output(args.json, (".json",), "evaluation JSON")], protected_folders=[data])
    read_metastasis_labels(data)  # a malformed labels.tsv is one sentence before any scan is read
    factories = default_factories()
    config = None
    if args.network:
        config = config_from_args(MetastasisConfig, args, arch="arch", epochs="epochs", seed="seed")
        if args.attention is not None:
            config = MetastasisConfig(**{**vars(config), "attention": None if args.attention == "none"
                                         else args.attention})
        factories[f"{config.arch} {config.attention or 'no attention'}"] = lambda: OnCrops(
            MetastasisEstimator(config, args.device, output="four_class"), config.sequences)
    spec = crop_spec_of(args)
    items, origins, gone = lesions_with_inside(*_drive(lesion_items(data, SEQUENCES, spec), args.quiet))
    if gone and not args.quiet:
        print(f"{len(gone)} lesion(s) left out, their mask empty on the crop's grid: {', '.join(gone)}",
              file=sys.stderr)
    result = _drive(evaluate_sites(items, origins, external=args.external, factories=factories,
                                   n_folds=args.folds, seed=args.seed if args.seed is not None else 0,
                                   n_boot=args.boot, inner_folds=args.inner_folds), args.quiet)
    print(result.table())
    if args.json:
        doc = {"cohort": data.resolve().name, "crop": {"size_mm": spec.size_mm, "voxels": spec.shape},
               "network": dataclasses.asdict(config) if config is not None else None, "left_out": gone,
               "evaluation": result.to_json()}
        text = strict_json.dumps(doc, indent=1) + "\n"
        write_together([(Path(args.json), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))])
    return 0


def add_parser(sub: Any) -> None:
    """Register ``neuroreview metastasis`` and its subcommands."""
    meta = sub.add_parser("metastasis", help="brain metastasis origin from five MRI sequences").add_subparsers(
        dest="metastasis_command", required=True)

    p = meta.add_parser("phantoms", help="write a simulated metastasis cohort (six sequences per patient, labels.tsv)")
    add_cohort_arguments(p, "sites", site_list,
                         "comma-separated sites the patients are dealt to in equal blocks (default A,B,C; C is the "
                         "independent external site)",
                         "one structural voxel size for every patient (a coarse grid for quick looks; DWI/ADC stay "
                         "coarser; default: each site's scanner)", "render patients in this many processes")
    p.set_defaults(func=cmd_phantoms)

    p = meta.add_parser("train", help="train an origin model on a cohort's development sites; test once on the "
                                      "external site")
    p.add_argument("--data", required=True, help="a cohort folder (metastasis phantoms)")
    p.add_argument("--out", required=True, help="registry folder the version is saved in")
    p.add_argument("--version", default=None, help="the new version (default: next minor after every installed one)")
    p.add_argument("--sequences", type=sequence_list, default=None,
                   help="comma-separated input sequences in channel order (default: the paper's "
                        "t1,t2,flair,dwi,ce_t1)")
    p.add_argument("--arch", type=arch_name, default=None, help="resnet6 or resnet18 (default: resnet6)")
    p.add_argument("--attention", type=attention_name, default=None,
                   help="cbam, se or none (default: cbam)")
    p.add_argument("--epochs", type=config_type("epochs"), default=None,
                   help="epochs (default: MetastasisConfig's)")
    p.add_argument("--crop-mm", type=crop_mm, default=None, help="edge of the lesion's cube in mm (default 32)")
    p.add_argument("--crop-voxels", type=crop_voxels, default=None, help="voxels per cube edge (default 16: 2 mm voxels)")
    p.add_argument("--external", default=DEFAULT_EXTERNAL,
                   help="the site left out of training and tested once (default C)")
    p.add_argument("--seed", type=int, default=None, help="network and training seed (default: MetastasisConfig's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = meta.add_parser("evaluate", help="development CV and one external test of origin models on a cohort, at "
                                         "lesion and patient level, with patient-bootstrap CIs")
    p.add_argument("--data", required=True, help="a cohort folder (metastasis phantoms)")
    p.add_argument("--json", default=None, help="also write every figure here")
    p.add_argument("--external", default=DEFAULT_EXTERNAL, help="the site only tested, never fitted on (default C)")
    p.add_argument("--folds", type=bounded_int(2, 20, "number of folds"), default=5, help="outer patient-grouped folds")
    p.add_argument("--inner-folds", type=bounded_int(2, 10, "number of inner folds"), default=3,
                   help="folds of the nested choice")
    p.add_argument("--boot", type=bounded_int(10, 100000, "number of resamples"), default=1000, help="patient-bootstrap resamples")
    p.add_argument("--network", action="store_true",
                   help="also train an origin network (the paper's five sequences) in every fold (slow on a CPU)")
    p.add_argument("--arch", type=arch_name, default=None, help="with --network: resnet6 or resnet18")
    p.add_argument("--attention", type=attention_name, default=None, help="with --network: cbam, se or none")
    p.add_argument("--epochs", type=config_type("epochs"), default=None, help="with --network: epochs")
    p.add_argument("--crop-mm", type=crop_mm, default=None, help="edge of the lesion's cube in mm (default 32)")
    p.add_argument("--crop-voxels", type=crop_voxels, default=None, help="voxels per cube edge (default 16: 2 mm voxels)")
    p.add_argument("--seed", type=int, default=None, help="folds, bootstrap and network seed (default 0)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = meta.add_parser("classify", help="the origin of each metastasis of a lesion labels file, with Grad-CAM")
    for option, name in SEQUENCE_OPTIONS:
        p.add_argument(option, dest=name, required=name == "ce_t1", default=None,
                       help="contrast T1 (the grid of the results and of --cam)" if name == "ce_t1"
                       else f"{option[2:].upper()} image, any grid of the same session")
    p.add_argument("--lesion", required=True, help="lesion labels (one id per lesion, 0 outside), NIfTI")
    p.add_argument("--out", required=True, help="the result JSON")
    p.add_argument("--cam", default=None, help="also write the Grad-CAM of each node here (4D NIfTI on the "
                                               "--ce-t1 grid, one volume per node as named in the JSON)")
    p.add_argument("--model", default=None, help="origin model version (default: the registry's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_classify)
