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

With ``--end-to-end DIR`` the drawn run is kept and its external patients are also
rendered (centre C's scanner, into ``DIR``, in ``--workers`` processes; a folder already
there is reused: ``write_csvd_cohort(resume=True)``) and read back from their scans twice:
with their true microbleeds, and with the shipped detector's (end to end). The models,
fitted once on the drawn development patients, are tested on all three views of the same
240 patients (``evaluate_centres(external_views=...)``), so the columns differ only in what
the models read: drawn vs registered positions, then true vs detected microbleeds. Rendering
takes about 20 s per 1.5 T physics patient per process; reading one back 3 s, detecting 2-3 s.

The paper's figures (external test, 28 patients, real data) are printed beside ours for
reference; they are not targets for a phantom. With 28 patients an accuracy of 0.82 has
a 95 % CI of about 0.64-0.92; the default external size here (240) gives about +-0.05.

    python benchmarks/csvd.py                 # 600 development + 240 external patients, 10 folds
    python benchmarks/csvd.py --quick         # 120 + 60 patients, 3 folds, 5 epochs
    python benchmarks/csvd.py --json out.json
    python benchmarks/csvd.py --data COHORT --source detector --features patch --quick
    python benchmarks/csvd.py --end-to-end /tmp/ext240 --workers 2 --json e2e.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


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
                   help="also render the external patients into DIR (reused if there) and test on their scans, "
                        "with the true and with the detected microbleeds")
    p.add_argument("--workers", type=int, default=2, help="with --end-to-end: rendering processes")
    args = p.parse_args(argv)
    if args.end_to_end is not None and args.data is not None:
        p.error("--end-to-end adds views of the drawn external patients; it does not combine with --data")
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
        described = "oracle location-only"
    t_draw = time.perf_counter() - t0
    views, view_seconds = {}, {}
    if args.end_to_end is not None:
        views, view_seconds = end_to_end_views(args, labels[-args.external:])
    config = MILConfig() if args.epochs is None else MILConfig(epochs=args.epochs)
    t0 = time.perf_counter()
    result = run_to_completion(evaluate_centres(items, labels, centres, "C", default_factories(config, "cpu"),
                                                n_folds=args.folds, n_boot=args.boot, external_views=views))
    t_eval = time.perf_counter() - t0

    print(f"# CSVD subtype, {described}: {args.dev} development (A+B), {args.external} external (C) patients; "
          f"{args.folds}-fold CV; MIL {config.epochs} epochs; {args.boot} patient-bootstrap resamples")
    per_patient = f" ({t_draw / max(1, len(items)):.1f} s per patient)" if args.data is not None else ""
    print(f"# {'read' if args.data is not None else 'drawn'} in {t_draw:.1f} s{per_patient}, evaluated in {t_eval:.1f} s on {args.threads} threads; sizes {result.sizes}")
    for view, secs in view_seconds.items():
        print(f"# {view}: {secs}")
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
    if args.json:
        doc = {"setting": described,
               "config": vars(args) | {"json": str(args.json), "data": args.data and str(args.data),
                                       "end_to_end": args.end_to_end and str(args.end_to_end)},
               "seconds": {"draw": t_draw, "evaluate": t_eval, **view_seconds}, "paper_external": PAPER,
               **result.to_json()}
        from napari_neuroreview.core.io.strict_json import dumps

        args.json.write_text(dumps(doc, indent=1) + "\n")
    return 0


def end_to_end_views(args: argparse.Namespace, drawn_labels: list[str]) -> tuple[dict[str, list], dict[str, str]]:
    """The external patients rendered into ``args.end_to_end`` and read back: true and detected microbleeds.

    Returns the views for ``evaluate_centres(external_views=...)`` and a timing line each.
    """
    from napari_neuroreview.core.phantoms.csvd import write_csvd_cohort
    from napari_neuroreview.core.progress import run_to_completion
    from napari_neuroreview.core.tasks.csvd.cohort_items import items_from_cohort

    n = args.external
    t0 = time.perf_counter()
    write_csvd_cohort(args.end_to_end, n, EXT_SEED, ("C",), workers=args.workers, resume=True)
    seconds = {"render": f"rendered (or found) in {time.perf_counter() - t0:.0f} s with {args.workers} processes "
                         f"({(time.perf_counter() - t0) * args.workers / n:.1f} process-s per patient)"}
    views = {}
    for source, view in (("truth", "scans, true CMBs"), ("detector", "scans, detected CMBs")):
        t0 = time.perf_counter()
        items, labels, _ = run_to_completion(items_from_cohort(args.end_to_end, source, None, args.device))
        if labels != drawn_labels:  # the rendered cohort must be the drawn external patients
            raise SystemExit(f"{args.end_to_end}: its labels are not those of the {n} drawn external patients "
                             f"(seed {EXT_SEED}); remove it and run again")
        views[view] = items
        n_cmb = sum(len(i.regions) for i in items)
        seconds[view] = (f"read in {time.perf_counter() - t0:.0f} s ({(time.perf_counter() - t0) / n:.1f} s per "
                         f"patient: registration to MNI{', detection' if source == 'detector' else ''}); "
                         f"{n_cmb} microbleeds")
    return views, seconds


if __name__ == "__main__":
    sys.exit(main())
