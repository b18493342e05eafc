#!/usr/bin/env python
"""Brain metastasis origin benchmark: the paper's tables on a rendered cohort, with the protocol fixed.

One run on a cohort written by ``neuroreview metastasis phantoms`` (``--data DIR``; with
``--render N`` it is rendered first when ``DIR/labels.tsv`` is missing, ``--workers``
processes). Every lesion's crop is cut once from the files (``crops_from_cohort``: all six
sequences, the lesion and its oedema, each scan through its own affine, exactly as
``metastasis classify`` cuts them) and kept beside the cohort in
``DIR/.bench-crops-<settings>.pkl`` (``_common.cached``, keyed by the cohort's files, the
crop code (``_common.cohort_fingerprint``) and the crop settings), so a second run with the
same crops reads no scan.

Item 5 of issue 12 (``core.tasks.metastasis.evaluate.evaluate_sites``), in one run:

* development CV on sites A + B (``--folds`` patient-grouped folds stratified by origin),
  then every model fitted once on all development patients and tested once on the
  independent site C;
* models in the same folds: the radiomics logistic regression on the paper's five
  sequences, each named network of ``--models`` (:data:`NETWORKS`), and the **nested
  choice**: an inner patient-grouped CV (``--inner-folds``) on each outer training fold
  picks the best of the radiomics ablation rows by inner macro AUC. The network's own
  nested choice and its sequence ablation take one network fit per row per fold, so
  they need a GPU; ``--network-ablation`` runs the ablation rows with the first network
  instead of the radiomics model;
* the ADC-ratio rule for SCLC vs NSCLC (lung lesions), compared with each model's SCLC
  node by a paired patient bootstrap;
* per model: the three node AUCs, the four-class macro AUC and balanced accuracy, each
  with a patient-bootstrap 95 % CI, at lesion and patient level; the external four-class
  confusion matrices; the sequence ablation table laid out like the paper's; the paper's
  figures beside (``evaluate.PAPER``).

Then (``_metastasis_cam``) item 4: each network as fitted once on the development sites
explains every external lesion per node (energy in the lesion and its oedema shell beside
chance, pointing game, the drop after weight randomisation, means with patient-bootstrap
CIs); item 8: Grad-CAM time and peak memory, ours beside ``monai.visualize.GradCAM`` on the
same network and input (a lesion crop with three nodes; a whole brain, ``--brain-size``,
ResNet18-CBAM ``--brain-width``), maps compared raw. ``--save-model REGISTRY --version V``
saves the first network as fitted once on all development patients, its card holding the
external figures. ``--json`` is written after the evaluation and again at the end.

The tuning rule: nothing is tuned on the external site. The network's recipe is fixed
beforehand (:data:`NETWORKS`, ``--epochs``); the only choice made from data is the nested
one, inside each outer training fold, and for the external test once on all development
patients.

    python benchmarks/metastasis.py --data /tmp/met/cohort300 --json met.json
    python benchmarks/metastasis.py --data /tmp/tiny --render 30 --render-seed 962 --render-voxel-size 4 4 4 --quick
    python benchmarks/metastasis.py --data DIR --save-model /tmp/registry --version 0.1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cached, cohort_fingerprint, print_run_header  # noqa: E402

#: Named network configs (``MetastasisConfig`` keywords) ``--models`` chooses from; the paper's
#: two backbones with attention. Width 16: what trains on a CPU (module docstring of ``train``).
NETWORKS: dict[str, dict[str, Any]] = {
    "ResNet6-CBAM": {"arch": "resnet6", "attention": "cbam", "width": 16},
    "ResNet18-SE": {"arch": "resnet18", "attention": "se", "width": 16},
}
#: The crops hold every sequence: the paper's five for the models, ADC for the rule.
CROP_SEQUENCES = ("t1", "t2", "flair", "dwi", "adc", "ce_t1")
#: The code that decides what a crop holds: a change to it cuts the crops again (``_common.cohort_fingerprint``).
CROP_MODULES = ("napari_neuroreview.core.tasks.metastasis.cohort_items", "napari_neuroreview.core.tasks.metastasis.crops",
                "napari_neuroreview.core.tasks.metastasis.lesion_input", "napari_neuroreview.core.io.resample")
#: Seed of a cohort rendered by ``--render`` (no training run draws from it).
RENDER_SEED = 512_000
#: ``--quick``: a few minutes on two cores for a tiny cohort.
QUICK = {"crop_voxels": 16, "crop_mm": 48.0, "epochs": 2, "folds": 2, "inner_folds": 2, "boot": 50, "brain_size": 64,
         "brain_width": 8}
GPU_NOTE = ("the networks' own nested choice and sequence ablation (one network fit per row and fold) need a GPU; "
            "here the nested choice and the ablation table use the radiomics model"
            " (--network-ablation: the ablation rows with the first network)")
#: The note when ``--network-ablation`` is given.
NETWORK_ABLATION_NOTE = ("the sequence ablation table: the first network on each row (one fit per row and fold); "
                         "the nested choice among the radiomics rows (the networks' own needs a GPU)")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="a cohort folder (metastasis phantoms)")
    p.add_argument("--render", type=int, metavar="N", help="render N patients into --data first when it has none")
    p.add_argument("--workers", type=int, default=2, help="with --render: processes rendering")
    p.add_argument("--render-seed", type=int, default=RENDER_SEED, help="with --render: the cohort's seed")
    p.add_argument("--render-voxel-size", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="with --render: one structural voxel size (default: each site's scanner)")
    p.add_argument("--external", default="C", help="the independent site (never fitted on nor chosen with)")
    # 32 mm at 2 mm: the lesion a median 3 % of the cube (0.4 % at 64 mm); the network learned there and
    # not on 64 mm crops (benchmarks/README.md, the lesion-channel run)
    p.add_argument("--crop-voxels", type=int, default=16, help="voxels per crop edge")
    p.add_argument("--crop-mm", type=float, default=32.0, help="crop edge in mm")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--inner-folds", type=int, default=3)
    p.add_argument("--boot", type=int, default=1000, help="patient-bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="ResNet6-CBAM", help=f"comma-separated networks of {', '.join(NETWORKS)}")
    p.add_argument("--network-ablation", action="store_true",
                   help="the sequence ablation rows with the first network (a GPU's job) instead of radiomics")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cam-repeats", type=int, default=5, help="timed Grad-CAM calls per method (after a warm-up)")
    p.add_argument("--brain-size", type=int, default=128, help="voxels per edge of the whole-brain timing input")
    p.add_argument("--brain-width", type=int, default=64, help="width of the whole-brain timing's ResNet18-CBAM")
    p.add_argument("--brain-stem-stride", type=int, default=2, choices=(1, 2),
                   help="the whole-brain ResNet18's stem stride: 2 as in He et al. and MedicalNet, 1 as MONAI's default")
    p.add_argument("--save-model", type=Path, metavar="REGISTRY",
                   help="save the first network, as fitted once on all development patients, in this registry folder")
    p.add_argument("--version", help="with --save-model: the new version (default: the next free one)")
    p.add_argument("--json", type=Path)
    p.add_argument("--quick", action="store_true", help="tiny defaults: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    if p.parse_args(argv).quick:  # tiny defaults; an option given beside --quick still wins
        p.set_defaults(**QUICK)
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in NETWORKS]
    if unknown or not args.models:
        p.error(f"--models: {', '.join(unknown) or 'none'} not among {', '.join(NETWORKS)}")
    return args


def network_config(name: str, args: argparse.Namespace, sequences: tuple[str, ...] | None = None) -> Any:
    """The ``MetastasisConfig`` of a named network with this run's epochs and seed."""
    from napari_neuroreview.core.tasks.metastasis.train import PAPER_SEQUENCES, MetastasisConfig

    return MetastasisConfig(**NETWORKS[name], sequences=sequences or PAPER_SEQUENCES, epochs=args.epochs,
                            seed=args.seed)


def network_factory(config: Any, device: str) -> Callable[[], Any]:
    """A fresh network estimator per fold, reading its own channels of the six-sequence crops."""
    from napari_neuroreview.core.tasks.metastasis.evaluate import OnCrops
    from napari_neuroreview.core.tasks.metastasis.train import MetastasisEstimator

    return lambda: OnCrops(MetastasisEstimator(config, device, output="four_class"), config.sequences)


def read_crops(args: argparse.Namespace) -> tuple[list, list[str], float, bool]:
    """The cohort's lesions as ``LesionItem`` s with their origins (cut once, then from the cache)."""
    from napari_neuroreview.core.progress import run_to_completion
    from napari_neuroreview.core.tasks.metastasis.cohort_items import lesion_items
    from napari_neuroreview.core.tasks.metastasis.crops import CropSpec

    spec = CropSpec(args.crop_mm, args.crop_voxels)
    settings = {"sequences": CROP_SEQUENCES, "size_mm": spec.size_mm, "shape": spec.shape, "oedema": True}
    key = (cohort_fingerprint(args.data, CROP_MODULES), settings)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]

    def cut() -> tuple[list, list[str], float]:
        t0 = time.perf_counter()
        items, origins = run_to_completion(lesion_items(args.data, CROP_SEQUENCES, spec, oedema=True))
        return items, origins, time.perf_counter() - t0

    (items, origins, seconds), hit = cached(args.data / f".bench-crops-{digest}.pkl", key, cut)
    return items, origins, seconds, hit


def render_if_missing(args: argparse.Namespace) -> str | None:
    """Render ``--render`` patients into ``--data`` when it holds no cohort; what was done, or None."""
    if (args.data / "labels.tsv").is_file() or args.render is None:
        return None
    from napari_neuroreview.core.phantoms.metastasis import write_metastasis_cohort

    t0 = time.perf_counter()
    overrides = {"voxel_size": tuple(args.render_voxel_size)} if args.render_voxel_size else {}
    write_metastasis_cohort(args.data, args.render, args.render_seed, workers=args.workers, resume=True, **overrides)
    return f"{args.render} patients (seed {args.render_seed}) rendered in {time.perf_counter() - t0:.0f} s with {args.workers} processes"


def evaluate(args: argparse.Namespace, items: list, origins: list[str]) -> Any:
    """``evaluate_sites`` with the radiomics model, the named networks, the nested choice and the rule."""
    from napari_neuroreview.core.progress import run_to_completion
    from napari_neuroreview.core.tasks.metastasis.evaluate import default_factories, evaluate_sites

    factories = dict(default_factories())
    for name in args.models:
        factories[name] = network_factory(network_config(name, args), args.device)
    ablation = None
    if args.network_ablation:
        first = args.models[0]
        ablation = lambda seqs: network_factory(network_config(first, args, tuple(seqs)), args.device)()  # noqa: E731
    return run_to_completion(evaluate_sites(items, origins, external=args.external, factories=factories,
                                            n_folds=args.folds, seed=args.seed, n_boot=args.boot,
                                            inner_folds=args.inner_folds, ablation=ablation))


def explain_and_time(args: argparse.Namespace, result: Any, items: list, origins: list[str],
                     seconds: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Item 4 (Grad-CAM on the external lesions) and item 8 (our time beside MONAI's), printed."""
    from _metastasis_cam import explain_external, explain_table, time_gradcam, timing_table

    t0 = time.perf_counter()
    explained = explain_external(result, items, origins, args.models, args.external, args.boot, args.seed)
    seconds["gradcam_external"] = time.perf_counter() - t0
    print(f"\nGrad-CAM on the external lesions (raw maps at the attention block; the networks fitted once on the "
          f"development sites; {seconds['gradcam_external']:.0f} s with the weight randomisations)")
    print(explain_table(explained))
    first = result.fitted[args.models[0]]
    from napari_neuroreview.core.tasks.metastasis.train import network_input

    crop = next(i.crop for i in items if i.site == args.external)
    config = first.estimator.config
    net = {"arch": config.arch, "attention": config.attention, "width": config.width,
           "in_channels": config.in_channels, "seed": args.seed}
    setups = {"lesion crop": {**net, "shape": [crop.spec.shape] * 3, "targets": [0, 1, 2],
                              "state": first.estimator.state_dict(),
                              "array": network_input([crop], config.sequences, config.lesion_channel)},
              "whole brain": {"arch": "resnet18", "attention": "cbam", "width": args.brain_width, "in_channels": 5,
                              "stem_stride": args.brain_stem_stride, "seed": args.seed,
                              "shape": [args.brain_size] * 3, "targets": [0]}}
    t0 = time.perf_counter()
    timed = time_gradcam(Path(__file__).resolve(), setups, args.cam_repeats, args.threads)
    seconds["gradcam_timing"] = time.perf_counter() - t0
    print(f"\nGrad-CAM time, ours (core.explain.grad_cams: one forward, a backward per node down to the layer) "
          f"beside MONAI's GradCAM (a call per node) on the same network and input, each in a fresh interpreter: "
          f"median of {args.cam_repeats} after a warm-up; peak = resident-memory high-water mark above what was "
          f"resident before the calls; maps compared raw (Pearson). The lesion crop: {args.models[0]} as fitted, "
          f"an external crop; the whole brain: random weights. Targets: <= 1 s per crop, <= 3 s whole brain on "
          f"the CPU (MONAI's took 16.5 s at 128^3 in the issue)")
    print(timing_table(timed))
    return explained, timed


def check_save(args: argparse.Namespace) -> str | None:
    """``--save-model``'s version, checked before any training (a version taken, the shipped folder refused)."""
    from napari_neuroreview.core.errors import InputFileError

    if args.save_model is None:
        if args.version is not None:
            raise InputFileError("--version names the version --save-model writes; give --save-model REGISTRY too")
        return None
    from napari_neuroreview.cli_metastasis import check_registry_folder
    from napari_neuroreview.core.registry import (
        SHIPPED_WEIGHTS_ROOT, check_new_version, default_registry_root, next_version)
    from napari_neuroreview.core.tasks.metastasis.model import MODEL_NAME

    if args.save_model.resolve().is_relative_to(SHIPPED_WEIGHTS_ROOT.resolve()):
        raise InputFileError(f"--save-model {args.save_model}: the package's shipped weights are never written by "
                             "a benchmark")
    roots = list(dict.fromkeys([args.save_model, default_registry_root(), SHIPPED_WEIGHTS_ROOT]))
    version = args.version or next_version(MODEL_NAME, roots)
    check_new_version(MODEL_NAME, version, roots)
    check_registry_folder(args.save_model, args.data)
    return version


def save(args: argparse.Namespace, version: str, result: Any, items: list, origins: list[str]) -> dict[str, Any]:
    """The first network as fitted once on all development patients, its card holding the external figures."""
    from napari_neuroreview.cli_metastasis import training_data_text
    from napari_neuroreview.core.tasks.metastasis.classes import NODES, ORIGINS
    from napari_neuroreview.core.tasks.metastasis.labels import read_metastasis_labels
    from napari_neuroreview.core.tasks.metastasis.model import save_origin_model

    name = args.models[0]
    dev = [k for k, i in enumerate(items) if i.site != args.external]
    ext = [k for k, i in enumerate(items) if i.site == args.external]
    trained = {items[k].patient for k in dev}
    train_rows = [r for r in read_metastasis_labels(args.data) if r["patient"] in trained]
    lesions = {o: sum(origins[k] == o for k in dev) for o in ORIGINS}
    n_ext = (len({items[k].patient for k in ext}), len(ext))
    metrics: dict[str, float] = {}
    for level in ("lesion", "patient"):
        res = result.results[name]["external"][level]
        cells = {**{f"auc_{node}": res.nodes[node].metrics["auc"] for node in NODES},
                 "auc_macro": res.leaves.metrics["auc_macro"]}
        for key, cell in cells.items():
            for part, suffix in (("value", ""), ("low", "_low"), ("high", "_high")):
                metrics[f"external_{level}_{key}{suffix}"] = cell[part]
    extra = {"metrics_on": (f"external site {args.external} ({n_ext[0]} patients, {n_ext[1]} lesions), lesion and "
                            f"patient level, 95 % CI by patient bootstrap ({args.boot} resamples); benchmarks/"
                            f"metastasis.py"),
             "n_train_patients": len(trained), "n_train_lesions": len(dev), "train_seed": args.seed,
             "train_sites": sorted({items[k].site for k in dev}), "per_class_train": lesions}
    card = save_origin_model(result.fitted[name].estimator, args.save_model, version,
                             training_data_text(args.data.resolve().name, train_rows, lesions, args.external, n_ext),
                             metrics=metrics, extra=extra)
    print(f"\nsaved {card.name} {card.version} ({name}, fitted once on the development patients) in {args.save_model}")
    return {"name": card.name, "version": card.version, "root": str(args.save_model), "metrics": card.metrics}


def write_json(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    """``--json`` (strict JSON: NaN as null), moved into place whole."""
    if args.json is None:
        return
    from napari_neuroreview.core.io.atomic import write_text_atomic
    from napari_neuroreview.core.io.strict_json import dumps

    write_text_atomic(args.json, dumps(doc, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # a timing child (``_common`` workers): one method in a fresh interpreter
        from _common import write_answer
        from _metastasis_cam import timing_worker

        spec = json.loads(Path(argv[1]).read_text())
        write_answer(spec, timing_worker(spec))
        return 0
    args = parse(argv)
    from napari_neuroreview.core.errors import NeuroreviewError

    try:
        return run(args)
    except NeuroreviewError as exc:  # a user's mistake (a cohort file, a taken version): one sentence, exit 2
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """The benchmark proper (module docstring); the JSON is written after the evaluation and again at the end."""
    from napari_neuroreview.core.io.outputs import Output, check_outputs
    from napari_neuroreview.core.tasks.metastasis.evaluate import lesions_with_inside

    if args.json is not None:
        check_outputs([Output(args.json, (".json",), "benchmark JSON")], protected_folders=[args.data])
    version = check_save(args)
    import torch

    machine = print_run_header(f"torch {torch.__version__}")
    torch.set_num_threads(args.threads)
    seconds: dict[str, Any] = {}
    rendered = render_if_missing(args)
    if rendered:
        seconds["render"] = rendered
    items, origins, secs, hit = read_crops(args)
    seconds["crops"] = (f"{len(items)} lesion crops " + (f"from the cache (cut in {secs:.0f} s)" if hit else
                                                         f"cut in {secs:.0f} s"))
    items, origins, gone = lesions_with_inside(items, origins)  # --quick's 3 mm voxels lose the smallest
    if gone:
        seconds["crops"] += f"; {len(gone)} left out, their mask empty on the crop's grid: {', '.join(gone)}"
    print(f"# {args.data.name}: {seconds['crops']}; crops {args.crop_mm:g} mm at {args.crop_voxels} voxels; "
          f"{args.folds} outer / {args.inner_folds} inner folds; {args.epochs} epochs; {args.boot} patient-bootstrap "
          f"resamples; seed {args.seed}; {args.threads} threads")
    note = NETWORK_ABLATION_NOTE if args.network_ablation else GPU_NOTE
    print(f"# note: {note}")
    t0 = time.perf_counter()
    result = evaluate(args, items, origins)
    seconds["evaluate"] = time.perf_counter() - t0
    print(f"# evaluation (CV, external test, bootstrap) {seconds['evaluate']:.0f} s")
    print(result.table())
    doc: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                           "machine": machine, "note": note, "seconds": seconds,
                           "networks": {m: dataclasses.asdict(network_config(m, args)) for m in args.models},
                           "evaluation": result.to_json()}
    write_json(args, doc)  # a later failure keeps the hour's tables
    if version is not None:
        doc["saved_model"] = save(args, version, result, items, origins)
    doc["gradcam_external"], doc["gradcam_timing"] = explain_and_time(args, result, items, origins, seconds)
    write_json(args, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
