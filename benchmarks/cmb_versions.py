#!/usr/bin/env python
"""Which microbleed detector version should be the default: two versions on the same held-out scans.

A version trained on phantoms becomes the shipped default only if it is at least as good
as the current default on simulated scans no training or threshold choice saw. This
script measures both in one run, each at its own card threshold, on four sets of
``--scans`` scans each (A = phenomenological ``core.phantoms.swi``, B = physics
``core.phantoms.swi_physics``; each on its default scanner or on a scanner drawn per scan,
``scanner_draws.case_scanner``), and applies the rule written before 1.0.1's training
ended (:func:`verdict`). ``--record`` writes the comparison into the candidate's card
(``held_out_simulated``; ``not_default`` when the rule fails), with its digest renewed.

    python benchmarks/cmb_versions.py --versions 1.0.1 1.1.0 --weights REGISTRY --json out.json
    python benchmarks/cmb_versions.py --versions 1.0.1 1.1.0 --weights REGISTRY --record

Seeds (the first seeds of the hand-made sets 1.0.1 was first compared on; those held 199
CMBs, these 181, so the scans differ): A default 500000+i at 0.9 x 0.9 x 1.8 mm
(benchmarks/cmb.py's held-out scans), A random 740000+i and B random 750000+i
(the leave-one-simulator-out test scans), B default 7000+i. Training uses 0..39 and
validation 100000+i. Cached per version and set in ``--workdir``.

``--seed-offset N`` adds N to every set's first seed: a second comparison on scans no
earlier comparison saw, for when a version was changed after a look at these sets (say so
beside its figures). 50000 moves the sets to 550000, 790000, 57000 and 800000, seeds no
training, threshold choice or other benchmark uses.

``--loso-results J...`` (``benchmarks/cmb.py --loso --json`` results of both versions'
recipes, over seeds) adds :data:`RULE_GENERALISATION`: a candidate whose recipe meets issue
10's held-out-simulator targets where the default's recipe does not may replace it within
non-inferiority margins. 1.0.4 was judged so, once, with ``--seed-offset 150000``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common as common
from cmb import CLINICAL_MM

#: set name -> (simulator, first seed, scanner drawn per scan, fixed simulator keywords).
SETS: dict[str, tuple[str, int, bool, dict[str, Any]]] = {
    "A_default": ("phenomenological", 500_000, False, {"voxel_size": CLINICAL_MM}),
    "A_random": ("phenomenological", 740_000, True, {}),
    "B_default": ("physics", 7_000, False, {}),
    "B_random": ("physics", 750_000, True, {}),
}
#: Rule 2's allowance: FROC sensitivity at 1 FP/scan per set may fall this much.
PER_SET_SLACK = 0.025
RULE = ("default only if, against the current default: pooled CPM >= its; FROC sensitivity at 1 FP/scan "
        f"per set not below by more than {PER_SET_SLACK}; pooled F1 >= its; Dice per matched CMB >= its "
        "(written before 1.0.1's training ended)")
#: Issue 10's targets on the simulator left out of training: sensitivity at <= 1 FP/scan by size, and Dice.
HELD_OUT_TARGETS = {"size all >= 3 mm": 0.90, "size 2-3 mm": 0.80, "dice_per_cmb_mean": 0.70}
#: The generalisation route's non-inferiority margins on rules 1, 3 and 4 (rule 2 keeps its slack).
MARGINS = {"cpm": 0.01, "f1_pooled": 0.02, "dice_per_cmb_mean": 0.01}
#: Trainings (seeds) per held-out direction that a recipe's mean must rest on.
MIN_SEEDS = 2
DIRECTIONS = ("A->B", "B->A")
RULE_GENERALISATION = (
    "or, when rules 1-4 do not all hold: default if the candidate's recipe meets every held-out-simulator target "
    "of issue 10 (sensitivity at <= 1 FP/scan >= 0.90 for CMBs >= 3 mm and >= 0.80 for 2-3 mm, Dice per matched "
    f"CMB >= 0.70) on the mean over >= {MIN_SEEDS} training seeds in each direction (A->B, B->A) while the current "
    "default's recipe misses one on its mean, and, against the current default: pooled CPM >= its - "
    f"{MARGINS['cpm']}; rule 2; pooled F1 >= its - {MARGINS['f1_pooled']}; Dice per matched CMB >= its - "
    f"{MARGINS['dice_per_cmb_mean']} (written 2026-12-03, before the training it was first applied to)")


def scan_of(simulator: str, seed: int, randomise: bool, kwargs: dict[str, Any]) -> Any:
    """One labelled held-out scan, made by the CLI's one phantom recipe (``cli_cmb.simulated_case``)."""
    import numpy as np

    from napari_neuroreview.cli_cmb import simulated_case
    from napari_neuroreview.core.io.nifti import volume_from_image
    from napari_neuroreview.core.tasks.cmb.train import labelled_from_instances

    case, _ = simulated_case(simulator, seed, randomise, **kwargs)
    phase = volume_from_image(case.phase) if case.phase is not None else None
    instances = np.asarray(case.truth["instances"].dataobj).astype(np.int64)
    return labelled_from_instances(f"{simulator}-{seed}", volume_from_image(case.magnitude), phase, instances)


def set_spec(set_name: str, offset: int = 0) -> tuple[str, int, bool, dict[str, Any]]:
    """The set's (simulator, first seed, scanner drawn per scan, keywords), its seeds moved by ``offset``."""
    simulator, first, randomise, kwargs = SETS[set_name]
    return simulator, first + offset, randomise, kwargs


def offset_problem(offset: int, scans: int) -> str | None:
    """Why ``--seed-offset`` would not give unseen scans, in one sentence, or None.

    Why: a moved set must not land on the shipped trainings' validation seeds
    (100000..109999, ``cmb train --val`` up to 10000) or on another set's scans.
    """
    if offset < 0:
        return "--seed-offset must be 0 or more (negative offsets reach seeds training and validation use)"
    if not offset:
        return None
    taken = [(100_000, 110_000)] + [(first, first + scans) for _, first, _, _ in SETS.values()]
    for name in SETS:
        first = set_spec(name, offset)[1]
        if any(first < end and low < first + scans for low, end in taken):
            return f"--seed-offset {offset} moves {name} onto seeds validation or another set uses"
    return None


def case_results(version: str, roots: list[Path], set_name: str, n: int, offset: int = 0) -> dict[str, Any]:
    """The version's matched results on one set: all detections above the sweep floor, and at its threshold."""
    from napari_neuroreview.core.progress import run_to_completion
    from napari_neuroreview.core.tasks.cmb.detect import run
    from napari_neuroreview.core.tasks.cmb.evaluate import at_threshold
    from napari_neuroreview.core.tasks.cmb.model import card_threshold, load_detector
    from napari_neuroreview.core.tasks.cmb.train import SWEEP_FLOOR, match_to_labels

    detector = load_detector(version, device="cpu", roots=roots)
    threshold = card_threshold(detector.card)
    simulator, first, randomise, kwargs = set_spec(set_name, offset)
    swept, at_point = [], []
    for i in range(n):
        scan = scan_of(simulator, first + i, randomise, kwargs)
        result = run_to_completion(run(scan.magnitude, scan.phase, detector, threshold=SWEEP_FLOOR))
        swept.append(match_to_labels(scan, result))
        at_point.append(match_to_labels(scan, at_threshold(result, threshold)))
        print(f"  {version} {set_name} {i + 1}/{n}", file=sys.stderr, flush=True)
    return {"threshold": threshold, "swept": swept, "at_point": at_point,
            "weights_sha256": detector.card.weights_sha256}


def figures(swept: list[Any], at_point: list[Any], threshold: float) -> dict[str, Any]:
    """The card's figures of a set of scans (each named by its averaging unit)."""
    from napari_neuroreview.core.metrics import froc, summarize

    summary, curve = summarize(at_point), froc(swept)
    return {"scans": len(at_point), "cmbs": int(summary["n_truth"]), "threshold": round(float(threshold), 4),
            "sensitivity": round(float(summary["sensitivity"]), 4),
            "fp_per_scan": round(float(summary["fp_per_subject"]), 4),
            "f1_pooled": round(float(summary["f1_pooled"]), 4),
            "dice_per_cmb_mean": round(float(summary["dice_per_cmb_mean"]), 4),
            "froc_sensitivity_at_1_fp_per_scan": round(float(curve["at_fp"][1.0]), 4),
            "cpm": round(float(curve["mean_sensitivity"]), 4)}


def recipe_seeds(loso_results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Per recipe, per held-out direction ("A->B"), each training's figures at <= 1 FP/scan.

    Read from ``benchmarks/cmb.py --loso --json`` results: a training's recipe is its
    ``--loso-variant`` ("baseline" when it has none: the shipped recipe, as the "base" twins
    are). A training named in several files (the seed-0 baseline is in every run) counts once.
    """
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for results in loso_results:
        trainings = {t["name"]: t for t in results.get("trainings", [])}
        for key, pair in results["pairs"].items():
            name, test = key.split("->")
            training, ours = trainings.get(name), pair.get("ours")
            if ours is None or training is None or len(training["sims"]) != 1 or test in training["sims"]:
                continue
            strata = ours["strata"]
            out.setdefault(training.get("variant") or "baseline", {}).setdefault(
                f"{training['sims'][0]}->{test}", {})[name] = {
                "size all >= 3 mm": round(float(strata["size all >= 3 mm"]["sensitivity_at_1fp"]), 4),
                "size 2-3 mm": round(float(strata["size 2-3 mm"]["sensitivity_at_1fp"]), 4),
                "dice_per_cmb_mean": round(float(ours["summary"]["dice_per_cmb_mean"]), 4)}
    return out


def generalisation(seeds: dict[str, dict[str, dict[str, dict[str, float]]]], candidate_recipe: str,
                   reference_recipe: str) -> dict[str, Any]:
    """Whether the candidate's recipe opens :data:`RULE_GENERALISATION`'s route, with the means it rests on.

    Why the recipe and not the weights: a model trained on both simulators has no simulator
    left to be tested on; its recipe trained on one and tested on the other shows how it
    meets a scanner it never saw, and the mean over seeds keeps one lucky training out.
    """
    means = {recipe: {d: {"seeds": len(seeds.get(recipe, {}).get(d, {})),
                          **{k: round(sum(f[k] for f in seeds[recipe][d].values()) / len(seeds[recipe][d]), 4)
                             for k in HELD_OUT_TARGETS}}
                      for d in DIRECTIONS if seeds.get(recipe, {}).get(d)}
             for recipe in (candidate_recipe, reference_recipe)}

    def missed(recipe: str) -> list[str]:
        return [f"{d} {k.removeprefix('size ').removeprefix('all ')} {means[recipe][d][k]:.3f}"
                for d in DIRECTIONS for k, target in HELD_OUT_TARGETS.items() if means[recipe][d][k] < target]

    short = [f"{who} recipe ({recipe}) on {d}" for who, recipe in (("the candidate's", candidate_recipe),
                                                                     ("the current default's", reference_recipe))
             for d in DIRECTIONS if means[recipe].get(d, {}).get("seeds", 0) < MIN_SEEDS]
    if short:
        opened, why = False, f"fewer than {MIN_SEEDS} training seeds for " + ", ".join(short)
    elif missed(candidate_recipe):
        opened, why = False, (f"the candidate's recipe ({candidate_recipe}) misses "
                              + ", ".join(missed(candidate_recipe)) + " on the mean over seeds")
    elif not missed(reference_recipe):
        opened, why = False, f"the current default's recipe ({reference_recipe}) meets every held-out target too"
    else:
        opened, why = True, (f"the candidate's recipe ({candidate_recipe}) meets every held-out-simulator target on "
                             f"the mean over seeds; the current default's ({reference_recipe}) misses "
                             + ", ".join(missed(reference_recipe)))
    return {"opened": opened, "why": why, "means": means,
            "seeds": {r: seeds.get(r, {}) for r in (candidate_recipe, reference_recipe)}}


def verdict(reference: str, candidate: str, per_set: dict[str, dict[str, Any]], pooled: dict[str, Any],
            route: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Apply :data:`RULE` (and, given :func:`generalisation`'s ``route``, :data:`RULE_GENERALISATION`).

    Returns whether ``candidate`` may replace ``reference``, and the reason in words.
    """
    ref, new = pooled[reference], pooled[candidate]

    def pair(key: str) -> str:  # as many decimals as it takes to show the two apart (up to 5)
        digits = next((d for d in range(3, 6) if f"{new[key]:.{d}f}" != f"{ref[key]:.{d}f}"), 5)
        return f"{new[key]:.{digits}f} vs {ref[key]:.{digits}f}"

    def fails_with(margins: dict[str, float]) -> list[str]:
        fails = []
        if new["cpm"] < ref["cpm"] - margins["cpm"]:
            fails.append(f"rule 1 fails (pooled CPM {pair('cpm')})")
        low = [name for name, row in per_set.items() if row[candidate]["froc_sensitivity_at_1_fp_per_scan"]
               < row[reference]["froc_sensitivity_at_1_fp_per_scan"] - PER_SET_SLACK]
        if low:
            fails.append(f"rule 2 fails on {', '.join(low)} (FROC sensitivity at 1 FP/scan)")
        if new["f1_pooled"] < ref["f1_pooled"] - margins["f1_pooled"]:
            fails.append(f"rule 3 fails (pooled F1 {pair('f1_pooled')})")
        if new["dice_per_cmb_mean"] < ref["dice_per_cmb_mean"] - margins["dice_per_cmb_mean"]:
            fails.append(f"rule 4 fails (Dice per matched CMB {pair('dice_per_cmb_mean')})")
        return fails

    strict = fails_with(dict.fromkeys(MARGINS, 0.0))
    if not strict:
        return True, f"default: rules 1-4 hold against {reference}"
    if route is None:
        return False, "not default: " + "; ".join(strict)
    if not route["opened"]:
        return False, "not default: " + "; ".join(strict) + f"; no generalisation route: {route['why']}"
    within = fails_with(MARGINS)
    if within:
        return False, ("not default: " + "; ".join(strict) + "; generalisation route open, but within its margins "
                       + "; ".join(within))
    return True, (f"default by the generalisation route against {reference}: {route['why']}; within the margins, "
                  + "; ".join(f.replace(" fails ", " holds within its margin ") for f in strict))


def recipe_of(config: dict[str, Any]) -> str:
    """The training recipe a card names (its leave-one-out figures' ``--loso-variant``); "baseline" if none."""
    figures = config.get("held_out_simulator_figures") or {}
    return (figures.get("recipe") or {}).get("loso_variant") or "baseline"


def record(card_path: Path, comparison: dict[str, Any], passed: bool) -> None:
    """Write the comparison into the candidate's card (``not_default`` when it failed), its digest renewed."""
    from napari_neuroreview.core.registry import card_digest

    data = json.loads(card_path.read_text(encoding="utf-8"))
    data["config"]["held_out_simulated"] = comparison
    if passed:
        data["config"].pop("not_default", None)
    else:
        data["config"]["not_default"] = comparison["verdict"].removeprefix("not default: ")
    data["card_sha256"] = card_digest(data)
    tmp = card_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(card_path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--versions", nargs=2, required=True, metavar=("REFERENCE", "CANDIDATE"))
    p.add_argument("--weights", action="append", default=[], help="a registry folder holding a version (repeatable)")
    p.add_argument("--scans", type=int, default=8, help="scans per set")
    p.add_argument("--seed-offset", type=int, default=0,
                   help="add this to every set's first seed: scans no earlier comparison saw (>= 0)")
    p.add_argument("--workdir", default=None, help="cache folder (default: a temporary one)")
    p.add_argument("--json", default=None)
    p.add_argument("--record", action="store_true", help="write the comparison into the candidate's card")
    p.add_argument("--loso-results", nargs="+", default=None, metavar="JSON",
                   help="benchmarks/cmb.py --loso --json results: each recipe's held-out-simulator figures per seed, "
                        "for the generalisation route (RULE_GENERALISATION; the recipes are read from the cards)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    from napari_neuroreview.core.registry import (
        SHIPPED_WEIGHTS_ROOT,
        installed_versions,
        version_dir,
    )

    args = parse_args(argv)
    problem = offset_problem(args.seed_offset, args.scans)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    machine = common.print_run_header("napari-neuroreview core")
    roots = [Path(w) for w in args.weights] + [SHIPPED_WEIGHTS_ROOT]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="cmb_versions_"))
    work.mkdir(parents=True, exist_ok=True)
    installed = {card.version: (Path(root), card) for root, card in installed_versions("cmb-detector", roots)}
    missing = [v for v in args.versions if v not in installed]
    if missing:
        print(f"not installed in {[str(r) for r in roots]}: {', '.join(missing)}", file=sys.stderr)
        return 2
    results = {}
    offset = args.seed_offset
    for version in args.versions:
        for name in SETS:
            key = (version, name, args.scans, set_spec(name, offset))
            stem = f"{version}_{name}" + (f"_offset{offset}" if offset else "")
            results[version, name], reused = common.cached(
                work / f"{stem}.pkl", key, lambda v=version, s=name: case_results(v, roots, s, args.scans, offset))
            if reused and results[version, name]["weights_sha256"] != installed[version][1].weights_sha256:
                results[version, name] = case_results(version, roots, name, args.scans, offset)
    per_set = {name: {v: figures(results[v, name]["swept"], results[v, name]["at_point"], results[v, name]["threshold"])
                      for v in args.versions} for name in SETS}
    pooled = {v: figures([c for s in SETS for c in results[v, s]["swept"]],
                         [c for s in SETS for c in results[v, s]["at_point"]], results[v, "A_default"]["threshold"])
              for v in args.versions}
    reference, candidate = args.versions
    route = None
    if args.loso_results:
        seeds = recipe_seeds([json.loads(Path(f).read_text(encoding="utf-8")) for f in args.loso_results])
        route = generalisation(seeds, recipe_of(installed[candidate][1].config),
                               recipe_of(installed[reference][1].config))
    passed, why = verdict(reference, candidate, per_set, pooled, route)
    keys = ("cmbs", "threshold", "sensitivity", "fp_per_scan", "f1_pooled", "dice_per_cmb_mean",
            "froc_sensitivity_at_1_fp_per_scan", "cpm")
    rows = [[f"{name} {v}", *(common.fmt(table[v][k], 0 if k == "cmbs" else 3) for k in keys)]
            for name, table in [*per_set.items(), ("pooled", pooled)] for v in args.versions]
    print(common.table(rows, ["set, version", "CMBs", "thr", "sens", "FP/scan", "F1 pooled", "Dice/CMB",
                              "FROC@1", "CPM"]))
    if offset:
        print(f"scans moved by --seed-offset {offset}: first seeds "
              + ", ".join(f"{name} {set_spec(name, offset)[1]}" for name in SETS))
    rule = RULE if route is None else f"{RULE}; {RULE_GENERALISATION}"
    if route is not None:
        for recipe, directions in route["means"].items():
            print(f"recipe {recipe}, mean over seeds at <= 1 FP/scan on the simulator left out: " + "; ".join(
                f"{d} ({m['seeds']} seeds) >= 3 mm {m['size all >= 3 mm']:.3f}, 2-3 mm {m['size 2-3 mm']:.3f}, "
                f"Dice {m['dice_per_cmb_mean']:.3f}" for d, m in directions.items()))
    print(f"rule: {rule}\nverdict for {candidate}: {why}")
    comparison = {
        "what": (f"each model at its own card threshold on {args.scans * len(SETS)} held-out simulated scans "
                 f"({args.scans} per set; none used for training or thresholds): A = core.phantoms.swi "
                 "(phenomenological), B = core.phantoms.swi_physics (physics), default or random scanner; "
                 "CPM = mean FROC sensitivity at 1/8..8 FP per scan; sensitivity and F1 pooled over CMBs, "
                 "FP per scan the mean, Dice the mean over matched CMBs"),
        "seeds_first": {name: set_spec(name, offset)[1] for name in SETS},
        "per_set": per_set, "pooled": pooled, "rule": rule, "verdict": why,
        "command": "python benchmarks/cmb_versions.py --versions " + " ".join(args.versions)
                   + (f" --seed-offset {offset}" if offset else "")
                   + (" --loso-results " + " ".join(Path(f).name for f in args.loso_results) if route else ""),
    }
    if route is not None:
        comparison["generalisation"] = route
    if args.json:
        Path(args.json).write_text(json.dumps(common.clean_json({**comparison, "machine": machine}), indent=2) + "\n")
    if args.record:
        record(version_dir(installed[candidate][0], "cmb-detector", candidate) / "card.json", comparison, passed)
        print(f"recorded in {candidate}'s card")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
