#!/usr/bin/env python
"""Small vessel disease subtype benchmark: the MIL models against the Boston rule, like the paper, fixed.

One run, on the subtype cohort phantom (``core.phantoms.csvd``): patients of the two
development centres (A: phenomenological SWI simulator, 3 T; B: physics simulator, 3 T)
and of the external centre (C: physics simulator, 1.5 T, another class mix) are drawn
from seeds no training used. ``core.tasks.csvd.evaluate.evaluate_centres`` then runs
patient-grouped stratified 10-fold CV of every model in the same folds on A + B, fits each
model once on all of A + B and tests it once on C; every figure has a patient-bootstrap
95 % CI. Models: gated-attention MIL and mean-pooling MIL (Ilse et al. 2018), the Boston
criteria v2.0 rule with our documented else branch, multinomial logistic regression on
MARS counts.

Setting of this script (the only one built so far): **oracle, location only**. Each
patient's microbleeds are the generator's sites (true positions, no detector), their MNI
position is the phantom's world position (the phantoms are drawn in MNI space), and the
instances carry location, size and MARS region but no patch embedding (no image is
rendered, so thousands of patients take seconds). What it measures: how much of the
subtype the microbleeds' number and places carry, and whether MIL finds more of it than
the rule.

With ``--data DIR`` (a cohort written by ``neuroreview csvd phantoms``) the patients are
read from their scans instead (``core.tasks.csvd.cohort_items.items_from_cohort``): each
SWI registered to MNI, the microbleeds from ``truth.json`` (``--source truth``, the oracle)
or from the shipped detector (``--source detector``, end to end), the bags location-only
or with the detector's patch embedding (``--features patch``); the external centre is C.
Rendering takes 40-80 s per physics patient on 2 CPU cores; reading one back, seconds.

With ``--end-to-end DIR`` (item 4's "twice") patients are also rendered, in ``--workers``
processes, into ``DIR/external`` (the drawn external patients themselves: same seed and
count, centre C's scanner) and ``DIR/development`` (``--rendered-dev`` patients of A and B);
folders already there are reused (``write_csvd_cohort(resume=True)``). Each is read back
from its scans twice: with the true microbleeds (oracle) and with the shipped detector's
(end to end). Three evaluations follow in the same run:

1. the drawn run above, whose models (fitted once on the drawn development patients) are
   also tested on the rendered external patients read both ways
   (``evaluate_centres(external_views=...)``): the same patients, so the columns differ
   only in what the models read (drawn vs registered positions, true vs detected CMBs);
2. CV on the rendered development patients and external test, true microbleeds;
3. the same with the detector's microbleeds in development and test: end to end;

and 2 and 3 again with each microbleed's patch embedding (the detector's frozen encoder)
in its instance, the ablation "does the image add anything to the locations?".

A 1.5 T physics patient renders in about 20 s per process, a 3 T one in about 40 s;
reading one back takes about 3 s (registration) plus 2-3 s with detection.

The paper's figures (external test, 28 patients, real data) are printed beside ours for
reference; they are not targets for a phantom. With 28 patients an accuracy of 0.82 has
a 95 % CI of about 0.64-0.92; the default external size here (240) gives about +-0.05.

    python benchmarks/csvd.py                 # 600 development + 240 external patients, 10 folds
    python benchmarks/csvd.py --quick         # 120 + 60 patients, 3 folds, 5 epochs
    python benchmarks/csvd.py --json out.json
    python benchmarks/csvd.py --data COHORT --source detector --features patch --quick
    python benchmarks/csvd.py --end-to-end /tmp/csvd_e2e --workers 2 --json e2e.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any


#: Seeds of the benchmark cohorts; no training run draws from them.
DEV_SEED, EXT_SEED = 411_000, 412_000
#: The paper's external test (Table 3 of the microbleed study, 28 patients).
PAPER = {"auc_weighted": 0.908, "accuracy": 0.819, "precision_weighted": 0.864, "f1_weighted": 0.829}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dev", type=int, default=600, help="development patients (centres A and B)")
    p.add_argument("--external", type=int, default=240, help="external patients (centre C)")
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--epochs", type=int, default=None, help="MIL epochs (default: MILConfig's)")
    p.add_argument("--boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", type=Path)
    p.add_argument("--data", type=Path, help="a rendered cohort (csvd phantoms) instead of drawn patients")
    p.add_argument("--source", choices=("truth", "detector"), default="truth", help="with --data: whose microbleeds")
    p.add_argument("--features", choices=("location", "patch"), default="location", help="with --data: bag features")
    p.add_argument("--device", default="cpu", help="with --data or --end-to-end: the detector's device")
    p.add_argument("--end-to-end", type=Path, metavar="DIR",
                   help="also render patients into DIR/development and DIR/external (reused if there) and "
                        "evaluate on their scans, with the true and with the detected microbleeds")
    p.add_argument("--rendered-dev", type=int, default=200,
                   help="with --end-to-end: development patients rendered (A and B in equal shares)")
    p.add_argument("--workers", type=int, default=2, help="with --end-to-end: processes rendering and reading")
    p.add_argument("--read-only", type=Path, metavar="FOLDER",
                   help="only read a rendered cohort folder with both sources into its item cache, then stop")
    args = p.parse_args(argv)
    if args.read_only is not None:
        for source in SOURCES:
            items, _, _, secs = _read((args.read_only, source, args.device))
            print(f"{args.read_only} {source}: {len(items)} patients, {secs:.0f} s")
        return 0
    if args.end_to_end is not None and args.data is not None:
        p.error("--end-to-end renders its own cohorts; it does not combine with --data")
    if args.quick:
        args.dev, args.external, args.folds, args.epochs, args.boot = 120, 60, 3, 5, 200

    import torch

    from napari_neuroreview.core.phantoms.csvd import csvd_patients
    from napari_neuroreview.core.progress import run_to_completion
    from napari_neuroreview.core.tasks.csvd.evaluate import default_factories, evaluate_centres, items_from_patients
    from napari_neuroreview.core.tasks.csvd.train import MILConfig

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.data is not None:
        from napari_neuroreview.cli_csvd import FEATURES
        from napari_neuroreview.core.tasks.csvd.cohort_items import items_from_cohort
        from napari_neuroreview.core.tasks.csvd.labels import check_design

        check_design(args.data, "C", args.folds, MILConfig().seed)  # before the scans are read
        items, labels, centres = run_to_completion(items_from_cohort(args.data, args.source, FEATURES[args.features],
                                                                     args.device))
        described = f"{args.source} microbleeds from the scans of {args.data.name}, {args.features} features"
        args.dev, args.external = sum(c != "C" for c in centres), sum(c == "C" for c in centres)
    else:
        patients = (csvd_patients(args.dev, DEV_SEED, centres=("A", "B"))
                    + csvd_patients(args.external, EXT_SEED, centres=("C",)))
        items, labels, centres = items_from_patients(patients)
        items = [type(i)(f"{c}-{k:04d}", i.bag, i.regions, i.age) for k, (i, c) in enumerate(zip(items, centres))]
        described = "oracle location-only, drawn patients"
    t_draw = time.perf_counter() - t0
    config = MILConfig() if args.epochs is None else MILConfig(epochs=args.epochs)
    factories = default_factories(config, "cpu")
    rendered, seconds = ({}, {}) if args.end_to_end is None else read_rendered(args, labels[-args.external:])
    views = {f"scans, {source} CMBs": location_only(rendered[("external", source)][0]) for source in SOURCES
             if rendered}
    t0 = time.perf_counter()
    result = run_to_completion(evaluate_centres(items, labels, centres, "C", factories, n_folds=args.folds,
                                                n_boot=args.boot, external_views=views))
    seconds["evaluate"] = time.perf_counter() - t0
    seconds["draw" if args.data is None else "read"] = t_draw
    header = (f"# {args.folds}-fold CV; MIL {config.epochs} epochs; {args.boot} patient-bootstrap resamples; "
              f"{args.threads} threads")
    print(header)
    for key, value in seconds.items():
        print(f"# {key}: {value if isinstance(value, str) else f'{value:.1f} s'}")
    if args.data is not None:
        print(f"# read {t_draw / max(1, len(items)):.1f} s per patient")
    report(f"{described}: {args.dev} development (A+B), {args.external} external (C)"
           + (" (and the same external patients from their scans)" if views else ""), result)
    results = {described: result.to_json()}
    settings = [(source, features) for source in SOURCES for features in ("location-only", "patch + location")]
    for source, features in settings if rendered else ():
        dev_items, dev_labels, dev_centres = rendered[("development", source)]
        ext_items, ext_labels, ext_centres = rendered[("external", source)]
        if features == "location-only":
            dev_items, ext_items = location_only(dev_items), location_only(ext_items)
        t0 = time.perf_counter()
        res = run_to_completion(evaluate_centres(
            dev_items + ext_items, dev_labels + ext_labels, dev_centres + ext_centres, "C", factories,
            n_folds=args.folds, n_boot=args.boot))
        what = f"scans, {source} CMBs, {features}"
        report(f"{what}: {len(dev_items)} rendered development (A+B), {len(ext_items)} rendered external (C) "
               f"patients; evaluated in {time.perf_counter() - t0:.0f} s", res)
        results[what] = res.to_json()
    if args.json:
        from napari_neuroreview.core.io.strict_json import dumps

        doc = {"config": vars(args) | {"json": str(args.json), "data": args.data and str(args.data),
                                       "end_to_end": args.end_to_end and str(args.end_to_end)},
               "seconds": seconds, "paper_external": PAPER, "settings": results}
        args.json.write_text(dumps(doc, indent=1) + "\n")
    return 0


def report(title: str, result: Any) -> None:
    """Print one evaluation: the table, the external test(s) beside the paper, the rule, the confusions."""
    print(f"\n## {title}; sizes {result.sizes}")
    print(result.table())
    for view, external in {"external test": result.external, **result.external_views}.items():
        print(f"\n{view} beside the paper's (28 real patients):")
        for metric, paper in PAPER.items():
            row = "  ".join(f"{name}: {r.metrics[metric]['value']:.3f}" for name, r in external.items())
            print(f"  {metric:<20} paper {paper:.3f} | {row}")
        acc = external["attention MIL"].metrics["accuracy"]
        print(f"  accuracy CI half-width (attention MIL): {(acc['high'] - acc['low']) / 2:.3f}")
    print("\nmacro AUC difference vs the Boston rule (paired patient bootstrap):")
    print("\n".join(result.vs_rule_lines()))
    for view, external in {"external test": result.external, **result.external_views}.items():
        print(f"\n{view} confusion (rows true aSVD, CAA, CADASIL; columns predicted):")
        for name, r in external.items():
            print(f"  {name:<22} {r.confusion}")


#: Where the rendered patients' microbleeds come from (``items_from_cohort``'s sources).
SOURCES = ("truth", "detector")


def location_only(items: list) -> list:
    """The items with their bags' patch embeddings dropped (``Bag.location_only``)."""
    return [dataclasses.replace(i, bag=i.bag.location_only()) for i in items]


#: The code that decides what is read from a cohort: a change to it reads the scans again.
READ_MODULES = ("napari_neuroreview.core.tasks.csvd.cohort_items", "napari_neuroreview.core.tasks.cmb.detect",
                "napari_neuroreview.core.tasks.cmb.candidates")


def _read(job: tuple[Path, str, str]) -> tuple[list, list[str], list[str], float]:
    """One rendered cohort's items from one source (a worker's unit), and the seconds it took.

    The items are kept in ``DIR/.bench-items-{source}.pkl`` beside the cohort, with the
    cohort's files and reading code (``_common.cohort_fingerprint``) and the detector's
    weights digest as the key (``_common.cached``):
    a later run (or one started while another folder still renders: ``python
    benchmarks/csvd.py --read-only FOLDER``) reuses them while both match.
    """
    import torch

    from _common import cached, cohort_fingerprint
    from napari_neuroreview.core.progress import run_to_completion
    from napari_neuroreview.core.tasks.cmb.model import load_detector
    from napari_neuroreview.core.tasks.csvd.cohort_items import items_from_cohort

    torch.set_num_threads(1)
    folder, source, device = job
    key = (cohort_fingerprint(folder, READ_MODULES), load_detector(device="cpu").card.weights_sha256)

    def read() -> tuple[list, list[str], list[str], float]:
        t0 = time.perf_counter()
        items, labels, centres = run_to_completion(items_from_cohort(folder, source, "detector", device))
        prefix = f"{folder.name}-"  # development and external folders both count from patient-0000
        items = [dataclasses.replace(i, patient=prefix + i.patient) for i in items]
        return items, labels, centres, time.perf_counter() - t0

    return cached(folder / f".bench-items-{source}.pkl", key, read)[0]


def read_rendered(args: argparse.Namespace, drawn_external_labels: list[str]
                  ) -> tuple[dict[tuple[str, str], tuple[list, list[str], list[str]]], dict[str, Any]]:
    """Render (or find) the development and external patients under ``args.end_to_end``, read them from both sources.

    The external folder holds the drawn external patients themselves (same seed and count);
    the development folder ``args.rendered_dev`` patients of A and B. Reading runs in
    ``args.workers`` processes, one (folder, source) each.
    """
    from concurrent.futures import ProcessPoolExecutor

    from napari_neuroreview.core.phantoms.csvd import write_csvd_cohort

    folders = {"development": (args.end_to_end / "development", args.rendered_dev, DEV_SEED, ("A", "B")),
               "external": (args.end_to_end / "external", args.external, EXT_SEED, ("C",))}
    seconds: dict[str, Any] = {}
    for part, (folder, n, seed, centres) in folders.items():
        t0 = time.perf_counter()
        write_csvd_cohort(folder, n, seed, centres, workers=args.workers, resume=True)
        seconds[f"render {part}"] = (f"{n} patients rendered or found in {time.perf_counter() - t0:.0f} s "
                                     f"with {args.workers} processes")
    jobs = [(folders[part][0], source, args.device) for part in folders for source in SOURCES]
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        done = list(pool.map(_read, jobs))
    rendered = {}
    for (folder, source, _), (items, labels, centres, secs) in zip(jobs, done):
        part = folder.name
        if part == "external" and labels != drawn_external_labels:
            raise SystemExit(f"{folder}: its labels are not those of the {args.external} drawn external patients "
                             f"(seed {EXT_SEED}); remove it and run again")
        rendered[(part, source)] = (items, labels, centres)
        steps = "registration to MNI" + (", detection" if source == "detector" else "") + ", patch embedding"
        seconds[f"read {part}, {source}"] = (f"{secs:.0f} s ({secs / max(1, len(items)):.1f} s per patient on one "
                                             f"thread: {steps}); {sum(len(i.regions) for i in items)} microbleeds")
    return rendered, seconds


if __name__ == "__main__":
    sys.exit(main())
