"""Leave-one-simulator-out for ``benchmarks/cmb.py --loso`` (issue 10 items 3 and 5).

The shipped detector was only ever tested on its own simulator. Here simulator A
(``core.phantoms.swi``, phenomenological) and simulator B (``core.phantoms.swi_physics``)
each simulate train, validation and test scans with a random scanner per case
(``scanner_draws.case_scanner``); our detector is trained on A, on B and on A+B, each
operating threshold chosen on the validation scans of the training simulator(s) only,
and every model is scored on the test scans of both simulators. The pairs A->B and
B->A are the held-out ones the targets are judged on. LoG (threshold tuned on the same
validation scans) and BasicUNet (trained on one simulator only, to save time) run beside.

What it trains and simulates, and the seeds: ``_cmb_loso_plan``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common as common
import cmb as bench
import numpy as np
from _cmb_loso_plan import (
    SEEDS,
    SIMULATORS,
    TRAININGS,
    VARIANTS,
    paths_of,
    plan_cases,
    plan_trainings,
    trained_sims,
)
from cmb_candidates import recall, strata

#: Targets on the held-out simulator, pooled over CMBs at <= 1 FP/scan.
TARGET_SENS = {"size all >= 3 mm": 0.90, "size 2-3 mm": 0.80}
#: ``--quick --loso``: fewer epochs/steps of our detector (FitConfig's defaults otherwise).
QUICK_FIT = {"epochs": 2, "max_steps_per_epoch": 40}


# =============================================================================== scans


class NpzScans(Sequence):
    """Labelled scans read from case files one at a time (``train_detector`` only iterates).

    Why: 40 randomised scans of up to ~0.5 mm do not fit in memory together; the detector's
    training builds its patches scan by scan, so loading on ``__getitem__`` is enough.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        from napari_neuroreview.core.tasks.cmb.train import labelled_from_instances

        path = self.paths[index]  # raises IndexError past the end, which ends iteration
        magnitude, phase, instances = bench.load_case(path, truth=True)
        return labelled_from_instances(Path(path).stem, magnitude, phase, instances)


def truth_meta(path: str) -> list[dict[str, Any]]:
    """Each true CMB present in the instances (``truth_centres_mm`` order: ascending id) with its metadata."""
    with np.load(path) as z:
        meta = {c["id"]: c for c in json.loads(str(z["cmbs"]))}
        ids = np.unique(z["instances"])
    return [meta.get(int(i), {"id": int(i), "diameter_mm": float("nan"), "location": "?", "region": "?"})
            for i in ids if i != 0]


# =============================================================================== worker


def w_train_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: train our detector on the given scans, threshold on the given validation scans, save it."""
    import torch

    from napari_neuroreview.core.progress import run_to_completion
    from napari_neuroreview.core.tasks.cmb.train import save_detector, train_detector
    from napari_neuroreview.core.tasks.cmb.training import FitConfig

    torch.set_num_threads(int(spec["threads"]))
    t0 = time.perf_counter()
    config = FitConfig(**spec.get("fit", {}))
    detector, report = run_to_completion(train_detector(NpzScans(spec["train"]), NpzScans(spec["val"]), config,
                                                        device="cpu", seed=config.seed))
    seconds = time.perf_counter() - t0
    card = save_detector(detector, report, root=spec["root"], version=spec["version"],
                         training_data=spec["training_data"])
    return {"seconds": seconds, "threshold": report["threshold"], "card_metrics": card.metrics,
            "n_train_patches": report["n_train_patches"], "fit": vars(config),
            "final_train_loss": (report["history"]["train_loss"] or [None])[-1], "memory": common.peak_memory()}


# =============================================================================== per-CMB strata


def per_cmb_found(records: list[dict[str, Any]], cases: list[Any], metas: list[list[dict[str, Any]]],
                  key: str, max_fp_per_scan: float = 1.0) -> tuple[list[dict[str, Any]], float]:
    """Each true CMB with ``found`` (at the operating threshold) and ``found_1fp`` (at <= 1 FP/scan).

    ``found_1fp``: the FROC rule restricted per CMB: on the low-threshold run (``key``
    'sweep'), the lowest score threshold whose false positives, averaged per scan over this
    test set, stay <= ``max_fp_per_scan``; a CMB counts when its matched detection scores
    above it. Like ``core.metrics.froc``, the matching is that of the low-threshold run.
    """
    fp_scores, rows = [], []
    for record, case, meta in zip(records, cases, metas):
        scores = np.asarray(record[key]["score"], float)
        fp_scores += [float(scores[i]) for i in case.matching.unmatched_pred]
        hit = {t: float(scores[p]) for p, t in case.matching.pairs}
        rows += [{**m, "score": hit.get(k)} for k, m in enumerate(meta)]
    allowed = math.floor(max_fp_per_scan * len(records) + 1e-9)
    ranked = sorted(fp_scores, reverse=True)
    cut = ranked[allowed] if len(ranked) > allowed else -math.inf  # a CMB must score above the first unaffordable FP
    for row in rows:
        row["found_1fp"] = row["score"] is not None and row["score"] > cut
    return rows, cut


def strata_report(answer: dict[str, Any], truths: list[np.ndarray], metas: list[list[dict[str, Any]]],
                  method: str, threshold: float) -> dict[str, Any]:
    """Sensitivity per size/location stratum, pooled over CMBs: at the operating threshold and at <= 1 FP/scan."""
    records = answer["records"]
    op = bench.score_cases(records, truths, method, threshold, "op")
    swept = bench.score_cases(records, truths, method, threshold, "sweep")
    at_op, _ = per_cmb_found(records, op, metas, "op")
    at_1fp, cut = per_cmb_found(records, swept, metas, "sweep")
    for row, op_row in zip(at_1fp, at_op):
        row["found"] = op_row["score"] is not None
    out = {}
    for label, group in strata(at_1fp):
        n, sens_op = recall(group, "found")
        _, sens_1fp = recall(group, "found_1fp")
        out[label.strip()] = {"n": n, "sensitivity_at_threshold": sens_op, "sensitivity_at_1fp": sens_1fp}
    return {"strata": out, "threshold_at_1fp": cut, "cmbs": at_1fp}


# =============================================================================== the run


def cached_answer(spec: dict[str, Any], work: Path, name: str, after: Path | None = None) -> Any | None:
    """The answer a previous run in this workdir left for the same worker spec, or None.

    Why: a --loso run trains five models and scores sixteen method/pair runs; an
    interrupted run resumes where it stopped. An answer is reused only when its spec is
    identical and it is newer than ``after`` (the model it scored), so a retrained model
    is always re-scored.
    """
    import pickle

    spec_path, out_path = work / f"{name}.spec.json", work / f"{name}.out.pkl"
    if not (spec_path.is_file() and out_path.is_file()):
        return None
    if json.loads(spec_path.read_text()) != common.clean_json(dict(spec, out=str(out_path))):
        return None
    if after is not None and not (after.exists() and out_path.stat().st_mtime > after.stat().st_mtime):
        return None
    bench.log(f"  reusing {out_path.name}")
    with out_path.open("rb") as fh:
        return pickle.load(fh)


def run_cached(script: Path, spec: dict[str, Any], work: Path, name: str, after: Path | None = None) -> Any:
    """:func:`cached_answer`, else ``common.run_worker``."""
    answer = cached_answer(spec, work, name, after)
    return answer if answer is not None else common.run_worker(script, spec, work, name)


def simulate(cases: list[dict[str, Any]], script: Path, work: Path) -> float:
    todo = [c for c in cases if not Path(c["path"]).is_file()]
    bench.log(f"simulating {len(todo)} scans ({len(cases) - len(todo)} reused) in 2 processes -> {work}")
    t0 = time.perf_counter()
    jobs = [common.start_worker(script, {"task": "generate", "cases": todo[i::2]}, work, f"loso_generate{i}")
            for i in range(2) if todo[i::2]]
    for job in jobs:
        common.finish_worker(*job)
    return time.perf_counter() - t0


def train_ours(script: Path, work: Path, base: dict[str, Any], cases: list[dict[str, Any]],
               args: Any, trainings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Our detector trained once per planned training; each a fresh version under ``<work>/loso_weights``.

    Up to ``--loso-jobs`` trainings run at once, each in its own process with ``--threads``
    torch threads: one training keeps about one core busy (its patch cutting and augmentation
    are single-threaded), so a baseline and its variant twin on a 2-core machine take the
    time of one at 1 thread each.
    """
    from napari_neuroreview.core.tasks.cmb.model import MODEL_NAME

    root = work / "loso_weights"
    out: dict[str, Any] = {}
    todo: list[tuple[str, dict[str, Any]]] = []
    for t in trainings:
        name, sims, version = t["name"], t["sims"], t["version"]
        fit = {**(QUICK_FIT if args.quick else {}), **t["fit"]}
        train, val = paths_of(cases, "train", sims), paths_of(cases, "val", sims)
        bench.log(f"training ours on {name}: {len(train)} scans, threshold on {len(val)} validation scans"
                  + (f", FitConfig {fit}" if t["fit"] else ""))
        seeds = ", ".join(f"{SIMULATORS[s]} train {SEEDS[('train', s)]}+, val {SEEDS[('val', s)]}+" for s in sims)
        spec = {**base, "task": "train_ours", "train": train, "val": val, "fit": fit, "root": str(root),
                "version": version, "training_data": f"loso {name}: randomised scanners; {seeds}"}
        folder = root / MODEL_NAME / version
        out[name] = cached_answer(spec, work, f"loso_train_ours_{name}", after=folder)
        if out[name] is None:
            shutil.rmtree(folder, ignore_errors=True)  # versions are immutable: retrain into a fresh one
            todo.append((name, spec))
    jobs = max(1, int(args.loso_jobs))
    for start in range(0, len(todo), jobs):
        running = [(name, common.start_worker(script, spec, work, f"loso_train_ours_{name}"))
                   for name, spec in todo[start:start + jobs]]
        for name, job in running:
            out[name] = common.finish_worker(*job)
    for t in trainings:
        bench.log(f"  {t['name']}: {out[t['name']]['seconds']:.0f} s, threshold {out[t['name']]['threshold']:.3g}")
    return out


def tune_peers(script: Path, work: Path, base: dict[str, Any], cases: list[dict[str, Any]],
               args: Any, trainings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """LoG thresholds (on each training's validation scans) and BasicUNet (single simulators only).

    Peers run once per baseline training (not again for a ``--loso-variant`` twin, which only
    changes ours); ``--loso-no-unet`` leaves BasicUNet out.
    """
    bench.log("LoG at its sweep threshold on the validation scans of each trained simulator")
    log_sweeps = {sim: run_cached(script, {**base, "task": "eval", "method": "log",
                                           "cases": paths_of(cases, "val", (sim,)),
                                           "threshold": base["log_sweep_threshold"]},
                                  work, f"loso_tune_log_{sim}")["records"] for sim in sorted(trained_sims(trainings))}
    out: dict[str, Any] = {"log": {}, "unet": {}, "unet_training": {}}
    for t in trainings:
        name, sims, with_unet = t["name"], t["sims"], t["unet"] and not args.loso_no_unet
        if "variant" in t:
            continue
        records = [r for s in sims for r in log_sweeps[s]]
        val = paths_of(cases, "val", sims)
        out["log"][name] = bench.tune_log(records, [bench.load_truth(p) for p in val])
        if not with_unet:
            continue
        weights = str(work / f"loso_basicunet_{name}.pt")
        train = paths_of(cases, "train", sims)
        bench.log(f"training BasicUNet on {name}: {len(train)} scans, {args.unet_steps} steps")
        out["unet_training"][name] = run_cached(
            script, {**base, "task": "train_unet", "cases": train, "steps": args.unet_steps, "batch": args.unet_batch,
                     "lr": args.unet_lr, "patch": args.unet_patch, "seed": args.seed, "unet_weights": weights},
            work, f"loso_train_unet_{name}", after=Path(weights))
        prob = run_cached(script, {**base, "task": "eval", "method": "unet", "cases": val, "mode": "prob",
                                   "unet_weights": weights}, work, f"loso_tune_unet_{name}", after=Path(weights))
        out["unet"][name] = bench.tune_unet(prob["records"], [bench.load_truth(p) for p in val],
                                            [np.load(p)["affine"] for p in val])
        out["unet"][name]["weights"] = weights
    return out


def evaluate_pairs(script: Path, work: Path, base: dict[str, Any], cases: list[dict[str, Any]],
                   trained: dict[str, Any], peers: dict[str, Any], errors: list[str],
                   trainings: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every trained model on the test scans of both simulators: metrics and strata per method.

    A variant twin's pair (e.g. "B+pr->A") holds ours only; its peers are the baseline's.
    """
    from napari_neuroreview.core.tasks.cmb.model import MODEL_NAME

    results: dict[str, Any] = {}
    for t in trainings:
        name, version = t["name"], t["version"]
        for test in SIMULATORS:
            paths = paths_of(cases, "test", (test,))
            truths = [bench.load_truth(p) for p in paths]
            metas = [truth_meta(p) for p in paths]
            model = {"ours": work / "loso_weights" / MODEL_NAME / version, "log": None,
                     "unet": Path(peers["unet"].get(name, {}).get("weights", work))}
            specs = {"ours": {"weights": str(work / "loso_weights"), "version": version,
                              "threshold": trained[name]["threshold"]}}
            if name in peers["log"]:
                specs["log"] = {"threshold": peers["log"][name]["threshold"]}
            if name in peers["unet"]:
                specs["unet"] = {"threshold": peers["unet"][name]["threshold"],
                                 "unet_weights": peers["unet"][name]["weights"]}
            pair = results.setdefault(f"{name}->{test}", {})
            for method, extra in specs.items():
                if not math.isfinite(extra["threshold"]):
                    continue
                bench.log(f"{name} -> {test}: {method} on {len(paths)} scans")
                try:
                    answer = run_cached(script, {**base, **extra, "task": "eval", "method": method, "cases": paths,
                                                 "sweep": True}, work, f"loso_eval_{name}_{test}_{method}",
                                        after=model[method])
                except common.WorkerError as exc:
                    bench.log(f"  FAILED: {exc}")
                    errors.append(f"{name}->{test} {method}: {exc}")
                    continue
                report = bench.method_report(answer, truths, method, extra["threshold"])
                report.update(strata_report(answer, truths, metas, method, extra["threshold"]))
                pair[method] = report
    return results


def speed_512(script: Path, work: Path, base: dict[str, Any], cases: list[dict[str, Any]],
              trained: dict[str, Any]) -> dict[str, Any]:
    """The A+B model on one 512 x 512 x 160 scan at 0.45 x 0.45 x 1.2 mm (one run after a warm-up)."""
    path = next(c["path"] for c in cases if c["kind"] == "speed512")
    bench.log("speed: ours (A+B) on 512 x 512 x 160")
    from napari_neuroreview.core.tasks.cmb.model import MODEL_NAME

    version = next(v for n, _, v, _ in TRAININGS if n == "A+B")
    return run_cached(script, {**base, "task": "speed", "method": "ours", "case": path, "device": "cpu",
                               "weights": str(work / "loso_weights"), "version": version,
                               "threshold": trained["A+B"]["threshold"], "repeats": 1}, work, "loso_speed512",
                      after=work / "loso_weights" / MODEL_NAME / version)


# =============================================================================== output


def _cell(report: dict[str, Any] | None, label: str) -> str:
    if report is None or label not in report["strata"]:
        return "-"
    s = report["strata"][label]
    return f"{common.fmt(s['sensitivity_at_threshold'], 2)} / {common.fmt(s['sensitivity_at_1fp'], 2)}"


def pair_rows(key: str, pair: dict[str, Any], held_out: bool) -> list[list[str]]:
    """One (training -> test) table: the cmb.py metric rows, then the strata with their CMB counts."""
    name, test = key.split("->")
    any_report = next(iter(pair.values()), None)
    n = any_report["summary"]["n_truth"] if any_report else 0
    n_scans = len(any_report["per_case"]) if any_report else 0
    title = (f"Trained on {name}, tested on {test} ({SIMULATORS[test]}): {n_scans} scans, {n} CMBs"
             f"{'  [HELD OUT]' if held_out else ''}")
    sources = {m: "its validation scans" for m in bench.METHODS}
    rows = [r for r in bench.section_rows(title, pair, sources)
            if not r[0].startswith(("  IoU", "  machine load", "  count difference"))]
    rows.append(["  sensitivity by stratum, pooled over CMBs: at threshold / at <= 1 FP/scan"])
    for label in (any_report["strata"] if any_report else {}):
        count = any_report["strata"][label]["n"]
        rows.append([f"    {label} (n={count})"] + [_cell(pair.get(m), label) for m in bench.METHODS])
    return rows


def target_lines(results: dict[str, Any]) -> list[str]:
    """PASS/FAIL for ours on the held-out pairs (A->B, B->A); peers in brackets."""
    out = []
    held_out = [k for k in results["pairs"] if k.split("->")[1] not in k.split("->")[0]]
    for key in held_out or ["A->B", "B->A"]:
        pair = results["pairs"].get(key, {})
        if "ours" not in pair:
            out.append(f"FAIL  {key}: ours was not evaluated")
            continue
        def peers(value: Any, pair: dict[str, Any] = pair) -> str:
            return "  [" + ", ".join(f"{bench.LABELS[m].split()[0]} {value(pair[m])}" for m in pair if m != "ours") + "]"

        for label, target in TARGET_SENS.items():
            value = pair["ours"]["strata"].get(label, {}).get("sensitivity_at_1fp", float("nan"))
            n = pair["ours"]["strata"].get(label, {}).get("n", 0)
            ok = math.isfinite(value) and value >= target
            out.append(f"{'PASS' if ok else 'FAIL'}  {key} sensitivity {label.removeprefix('size ')} >= {target:.2f} "
                       f"at <= 1 FP/scan: {common.fmt(value)} (n={n})"
                       + peers(lambda r, lab=label: common.fmt(r["strata"].get(lab, {}).get("sensitivity_at_1fp"))))
        dice = pair["ours"]["summary"]["dice_per_cmb_mean"]
        ok = dice is not None and math.isfinite(dice) and dice >= bench.TARGETS["dice"]
        out.append(f"{'PASS' if ok else 'FAIL'}  {key} Dice per matched CMB >= {bench.TARGETS['dice']:.2f}: "
                   f"{common.fmt(dice)} (n={pair['ours']['summary']['n_matched_with_masks']})"
                   + peers(lambda r: common.fmt(r["summary"]["dice_per_cmb_mean"])))
    speed = results.get("speed_512")
    if speed:
        out.append(f"INFO  ours (A+B) on 512x512x160 at 0.45 x 0.45 x 1.2 mm: {speed['best']:.1f} s, peak "
                   f"{speed['memory']['peak_gib']:.2f} GiB (CPU, one run after a warm-up; no target)")
    return out


def variant_rows(results: dict[str, Any]) -> list[list[str]]:
    """Ours, each baseline beside its ``--loso-variant`` twin, per test simulator: headline metrics and strata."""
    rows: list[list[str]] = []
    for t in results.get("trainings", []):
        if "variant" not in t:
            continue
        for test in SIMULATORS:
            base = results["pairs"].get(f"{t['base']}->{test}", {}).get("ours")
            var = results["pairs"].get(f"{t['name']}->{test}", {}).get("ours")
            if base is None or var is None:
                continue
            held = "" if test in t["sims"] else "  [HELD OUT]"
            title = (f"{t['base']} vs {t['name']} ({t['variant']}), tested on {test}{held}: "
                     f"{var['summary']['n_truth']} CMBs, {len(var['per_case'])} scans")
            rows.append([title])
            rows.append(["  score threshold (training simulator's validation scans)"]
                        + [common.fmt(r["threshold"]) for r in (base, var)])
            for label, key, digits in (("  sensitivity, pooled over CMBs", "sensitivity", 3),
                                       ("  FP / scan, mean", "fp_per_subject", 2), ("  F1, pooled", "f1_pooled", 3),
                                       ("  Dice per matched CMB, mean", "dice_per_cmb_mean", 3)):
                rows.append([label] + [common.fmt(r["summary"][key], digits) for r in (base, var)])
            rows.append(["  FROC sensitivity @ 0.5 / 1 / 2 FP/scan"] + [
                " / ".join(common.fmt(r["froc_at_fp"][str(float(k))], 2) for k in bench.FROC_POINTS)
                for r in (base, var)])
            rows.append(["  by stratum: at threshold / at <= 1 FP/scan"])
            for label, s in base["strata"].items():
                rows.append([f"    {label} (n={s['n']})", _cell(base, label), _cell(var, label)])
    return rows


def print_report(results: dict[str, Any], args: Any) -> None:
    header = ["", bench.LABELS["ours"], bench.LABELS["log"], bench.LABELS["unet"]]
    for key, pair in results["pairs"].items():
        name, test = key.split("->")
        print()
        print(common.table(pair_rows(key, pair, test not in name), header))
    print()
    n = results["sizes"]
    print(f"Scans per simulator: train {n['train']}, validation {n['val']}, test {n['test']}, each with a random "
          "scanner (scanner_draws.case_scanner). A = phenomenological (core.phantoms.swi), B = physics "
          "(core.phantoms.swi_physics). Seeds: train 700000+/710000+, val 720000+/730000+, test 740000+/750000+.")
    print("Thresholds: ours chosen by train_detector on the validation scans of its training simulator(s); LoG tuned "
          "there too (best sensitivity at <= 1 FP/scan); BasicUNet trained on the training simulator's train scans "
          "and tuned on its validation scans, for A and B only (not A+B: its sliding window costs ~19 s a scan).")
    print("Averaging: sensitivity and the strata pooled over CMBs; FP/scan a mean over scans; precision pooled over "
          "detections; F1 pooled (and the per-scan median); Dice per matched CMB (VALDO's unit) and per scan of whole "
          "masks; FROC sensitivity pooled over CMBs at a mean FP/scan.")
    print("Strata 'at <= 1 FP/scan': on each method's low-threshold run, the lowest score threshold whose mean FP/scan "
          "on that test set is <= 1 (the FROC rule at 1 FP/scan, restricted to the stratum); 'at threshold': the "
          "method's own operating threshold. Sizes are the true diameters, locations the simulators' MARS classes.")
    for name, t in results["trained"].items():
        print(f"Ours on {name}: {t['seconds']:.0f} s training (epochs {t['fit']['epochs']}, "
              f"<= {t['fit']['max_steps_per_epoch']} steps/epoch, {t['n_train_patches']} patches), threshold "
              f"{t['threshold']:.3g}")
    for line in results["errors"]:
        print(f"ERROR {line.splitlines()[0]}")
    comparison = variant_rows(results)
    if comparison:
        print()
        print(common.table(comparison, ["ours", "baseline", "variant"]))
    print()
    print("Targets on the simulator held out of training (ours; peers in brackets):")
    for line in target_lines(results):
        print("  " + line)


def card_figures(results: dict[str, Any], variant: str | None = None) -> dict[str, Any]:
    """Our detector's figures per (training -> test) pair, compact, for a model card.

    ``neuroreview cmb train --card-figures`` records them in the shipped detector's card:
    how the training recipe does on a simulator it never saw (A->B, B->A) and on held-out
    scans of each simulator it trained on (A+B->A, A+B->B). Without ``variant`` a
    ``--loso-variant`` twin's pairs ("B+pr->A") are left out: they are another recipe than
    the baseline the card then describes. With ``variant`` (a card for weights trained with
    that recipe, ``cmb train --scanner-augment``) only that variant's twins are kept, under
    their baseline's names ("B+pr->A" as "B->A"), and the recipe is named.
    """
    def num(value: Any) -> float | None:
        return round(float(value), 4) if value is not None and math.isfinite(float(value)) else None

    suffixes = {suffix: name for name, (suffix, _, _) in VARIANTS.items()}

    def recipe_of(training: str) -> str | None:
        found = re.search(r"\+([a-z0-9]+)(?:\.s\d+)?$", training)
        return suffixes.get(found.group(1)) if found else None

    twin_fits = [t["fit"] for t in results.get("trainings", []) if variant and t.get("variant") == variant]
    recipe_fit = dict(twin_fits[0]) if twin_fits else dict(VARIANTS[variant][2]) if variant else {}
    pairs = {}
    for key, pair in results["pairs"].items():
        ours = pair.get("ours")
        training, test = key.split("->")
        if ours is None or recipe_of(training) != variant:
            continue
        if variant is not None:
            training = training[: training.rindex("+")]
        s = ours["summary"]
        pairs[f"{training}->{test}"] = {
            "held_out_simulator": test not in training,
            "scans": len(ours["per_case"]), "cmbs": s["n_truth"], "threshold": num(ours["threshold"]),
            "sensitivity": num(s["sensitivity"]), "fp_per_scan": num(s["fp_per_subject"]),
            "f1_pooled": num(s["f1_pooled"]), "dice_per_cmb_mean": num(s["dice_per_cmb_mean"]),
            "froc_sensitivity_at_1_fp_per_scan": num(ours["froc_at_fp"].get("1.0")),
            "sensitivity_at_1_fp_per_scan_by_stratum": {
                label: {"n": v["n"], "sensitivity": num(v["sensitivity_at_1fp"])} for label, v in ours["strata"].items()},
        }
    return {
        "what": "benchmarks/cmb.py --loso: ours trained on simulator A (phenomenological), B (physics) or both, "
                "random scanner per scan, tested on held-out scans of each; sensitivity pooled over CMBs, FP per "
                "scan a mean, Dice per matched CMB",
        "sizes_per_simulator": results["sizes"], "seeds_first": {k: v[0] for k, v in results["seeds"].items() if v},
        "recipe": {"loso_variant": variant, "fit": recipe_fit},
        "pairs": pairs,
    }


def run_loso(args: Any, script: Path, work: Path) -> int:
    """``cmb.py --loso``: simulate, train (three ways, or ``--loso-only``; each with its
    ``--loso-variant`` twin), tune peers, evaluate every model on both simulators, report."""
    n = {"train": args.loso_train, "val": args.loso_val, "test": args.loso_test}
    trainings = plan_trainings(args.loso_only, args.loso_variant, args.loso_variant_seed)
    cases = plan_cases(work, n, trainings)
    base = bench.worker_base(args, work)
    results: dict[str, Any] = {"sizes": n, "errors": [], "simulate_seconds": simulate(cases, script, work),
                               "trainings": trainings}
    results["trained"] = train_ours(script, work, base, cases, args, trainings)
    results["peers"] = tune_peers(script, work, base, cases, args, trainings)
    results["pairs"] = evaluate_pairs(script, work, base, cases, results["trained"], results["peers"],
                                      results["errors"], trainings)
    if any(t["name"] == "A+B" for t in trainings):
        try:
            results["speed_512"] = speed_512(script, work, base, cases, results["trained"])
        except common.WorkerError as exc:
            results["errors"].append(f"speed 512: {exc}")
    results["seeds"] = {f"{split}_{sim}": [c["seed"] for c in cases if c["kind"] == f"loso_{split}_{sim}"]
                        for split, sim in SEEDS}
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"}
    results["machine_at_end"] = common.machine_info()
    print_report(results, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(common.clean_json(results), indent=1, allow_nan=False))
        print(f"\nAll numbers: {args.json}")
    if args.card_json:
        variant = args.loso_variant if args.card_variant else None
        args.card_json.write_text(json.dumps(common.clean_json(card_figures(results, variant)), indent=1,
                                             allow_nan=False))
        print(f"Figures for the model card (cmb train --card-figures): {args.card_json}")
    return 0
