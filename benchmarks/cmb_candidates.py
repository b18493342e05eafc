#!/usr/bin/env python
"""Candidate recall of the microbleed detector's screen alone (issue 10 item 4).

The CNN only looks at the dark-spot screen's candidates, so a microbleed the screen
misses is lost whatever the network does. ``detect.run`` scores every candidate (no cap);
the 300 cap it had until issue 10 is reported beside, to show what a fixed cap drops.
This run measures, with ``core.tasks.cmb.candidate_recall`` (the screen exactly as the
detector runs it, scored with ``cmb evaluate``'s one-to-one matching: the
candidate inside the CMB's truth mask or within 5 mm of its centre):

* candidate recall, pooled over CMBs, without a cap and with the 300 cap, by true
  diameter (2-3, 3-5, >= 5 mm, and all >= 3 mm) and by location (lobar, deep,
  infratentorial) and region (cerebellum, brainstem), for each simulator
  (``core.phantoms.swi`` "phenomenological", ``core.phantoms.swi_physics`` "physics")
  with its default scanner and with a random scanner per case
  (``core.phantoms.scanner_draws.case_scanner``);
* the uncapped candidate count and the screen's seconds per scan (median and max);
* a "many CMBs" scan (``--many`` CMBs on one scan per simulator, default scanner): how many
  the 300 cap drops;
* a PASS/FAIL line per simulator for the target: >= 0.99 of CMBs >= 3 mm found.

Scans: seeds 530000 + i (no training in this repository uses them), ``--n-cmb`` CMBs
asked per scan (fewer are placed when the field of view has no room) with the three
locations equally likely, so that every region row has CMBs; the many-CMB scans use seed
539000. The screen has no trained part, so nothing here depends on model weights.

    python benchmarks/cmb_candidates.py            # 6 scans per simulator x scanner (~4 min on 2 busy cores)
    python benchmarks/cmb_candidates.py --quick    # 2 per set (< 3 min busy)

See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# log: progress on stderr with the elapsed time, printed as the detection benchmark prints it.
import _common as common
from cmb import log

SEED_BASE = 530_000
MANY_SEED = 539_000
SIMULATORS = ("phenomenological", "physics")
SCANNERS = ("default", "randomised")
#: Equal location shares, so that every region row holds CMBs (the simulators' default is 0.5/0.3/0.2).
LOCATION_WEIGHTS = {"lobar": 1.0, "deep": 1.0, "infratentorial": 1.0}
#: True-diameter bins (mm, [low, high)).
SIZE_BINS = (("2-3 mm", 0.0, 3.0), ("3-5 mm", 3.0, 5.0), (">= 5 mm", 5.0, np.inf), ("all >= 3 mm", 3.0, np.inf))
TARGET_RECALL_3MM = 0.99

_T0 = time.perf_counter()


def make_case(simulator: str, seed: int, scanner: str, n_cmb: int) -> Any:
    """One simulated SWI case of ``simulator`` (default scanner or ``case_scanner``'s draw)."""
    from napari_neuroreview.core.phantoms.scanner_draws import case_scanner

    if simulator == "physics":
        from napari_neuroreview.core.phantoms.swi_physics import make_swi_case
    else:
        from napari_neuroreview.core.phantoms.swi import make_swi_case
    kwargs: dict[str, Any] = case_scanner(seed, simulator) if scanner == "randomised" else {}
    return make_swi_case(seed, n_cmb=n_cmb, location_weights=LOCATION_WEIGHTS, **kwargs), kwargs


def screen_case(case: Any, max_candidates: int) -> dict[str, Any]:
    """Run the screen on the case's magnitude (only the image) and score it against its truth."""
    from napari_neuroreview.core.io.nifti import volume_from_image
    from napari_neuroreview.core.tasks.cmb.candidate_recall import candidate_recall

    magnitude = volume_from_image(case.magnitude)
    instances = np.asarray(case.truth["instances"].dataobj).astype(np.int64)
    truth = case.truth["cmbs"]
    result = candidate_recall(magnitude, truth, instances, max_candidates=max_candidates)
    # Mask only (no distance): with a thousand candidates per brain, one falls within 5 mm of any
    # point by chance about a third of the time, so the strict column is the screen's own merit.
    strict = candidate_recall(magnitude, truth, instances, max_candidates=max_candidates, max_distance_mm=0.0)
    cmbs = [{"id": r.id, "diameter_mm": float(t["diameter_mm"]), "location": t["location"], "region": t["region"],
             "found": r.found, "found_capped": r.found_capped, "dropped_by_cap": r.dropped_by_cap, "rank": r.rank,
             "distance_mm": r.distance_mm, "in_mask": m.found, "in_mask_capped": m.found_capped}
            for r, m, t in zip(result.cmbs, strict.cmbs, truth)]
    return {"shape": list(magnitude.spatial_shape), "zooms": list(magnitude.zooms), "n_candidates": result.n_candidates,
            "seconds": result.seconds, "cmbs": cmbs}


def recall(cmbs: list[dict[str, Any]], key: str) -> tuple[int, float]:
    """(number of CMBs, share with ``key`` true), pooled over CMBs."""
    n = len(cmbs)
    return n, (sum(bool(c[key]) for c in cmbs) / n if n else float("nan"))


def strata(cmbs: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The rows of a recall table: by size, then by location, then the infratentorial regions."""
    rows = [(f"size {name}", [c for c in cmbs if lo <= c["diameter_mm"] < hi]) for name, lo, hi in SIZE_BINS]
    rows += [(location, [c for c in cmbs if c["location"] == location]) for location in LOCATION_WEIGHTS]
    rows += [(f"  {region}", [c for c in cmbs if c["region"] == region]) for region in ("cerebellum", "brainstem")]
    rows.append(("all", cmbs))
    return rows


def recall_rows(records: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    rows: list[list[str]] = []
    for name, scans in records.items():
        cmbs = [c for s in scans for c in s["cmbs"]]
        rows.append([f"{name}: {len(scans)} scans, {len(cmbs)} CMBs"])
        for label, group in strata(cmbs):
            n, free = recall(group, "found")
            _, capped = recall(group, "found_capped")
            dropped = sum(c["dropped_by_cap"] for c in group)
            _, in_mask = recall(group, "in_mask")
            _, in_mask_capped = recall(group, "in_mask_capped")
            rows.append([label, str(n), common.fmt(free), common.fmt(capped), str(dropped), common.fmt(in_mask),
                         common.fmt(in_mask_capped)])
    return rows


def scan_rows(records: dict[str, list[dict[str, Any]]], cap: int) -> list[list[str]]:
    rows = []
    for name, scans in records.items():
        counts = [s["n_candidates"] for s in scans]
        seconds = [s["seconds"] for s in scans]
        ranks = [c["rank"] for s in scans for c in s["cmbs"] if c["rank"] is not None]
        rows.append([name, str(int(statistics.median(counts))), str(max(counts)),
                     f"{sum(c > cap for c in counts)}/{len(counts)}", str(max(ranks)) if ranks else "-",
                     common.fmt(statistics.median(seconds), 2), common.fmt(max(seconds), 2)])
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-scans", type=int, default=6, help="held-out scans per simulator x scanner")
    p.add_argument("--n-cmb", type=int, default=12, help="CMBs asked per scan")
    p.add_argument("--many", type=int, default=300, help="CMBs asked on the many-CMB scan (0: skip)")
    p.add_argument("--cap", type=int, default=300, help="the detector's candidate cap to report")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the screen's upsampling)")
    p.add_argument("--json", type=Path, default=None, help="save every number here")
    p.add_argument("--quick", action="store_true", help="2 scans per simulator x scanner")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.n_scans = min(args.n_scans, 2)
    import torch

    torch.set_num_threads(args.threads)
    machine = common.print_run_header(f"torch {torch.__version__}, numpy {np.__version__}")
    records: dict[str, list[dict[str, Any]]] = {}
    for simulator in SIMULATORS:
        for scanner in SCANNERS:
            name = f"{simulator}, {scanner} scanner"
            records[name] = []
            for i in range(args.n_scans):
                seed = SEED_BASE + i
                case, kwargs = make_case(simulator, seed, scanner, args.n_cmb)
                scan = screen_case(case, args.cap)
                scan.update(seed=seed, scanner=kwargs)
                records[name].append(scan)
                log(f"{name} seed {seed}: {scan['shape']} {sum(c['found'] for c in scan['cmbs'])}/{len(scan['cmbs'])} "
                    f"found, {scan['n_candidates']} candidates, {scan['seconds']:.2f} s")
    many: dict[str, dict[str, Any]] = {}
    if args.many:
        for simulator in SIMULATORS:
            case, _ = make_case(simulator, MANY_SEED, "default", args.many)
            many[simulator] = screen_case(case, args.cap)
            log(f"many-CMB scan, {simulator}: {len(many[simulator]['cmbs'])} CMBs placed")

    print(f"\nCandidate recall of the screen alone, pooled over CMBs (match: truth mask or <= 5 mm; cap {args.cap})")
    print(common.table(recall_rows(records), ["stratum", "CMBs", "recall, no cap", f"recall, cap {args.cap}",
                                              "dropped by cap", "in mask, no cap", f"in mask, cap {args.cap}"]))
    print("\nCandidates and screen time per scan (uncapped; median and max over scans)")
    print(common.table(scan_rows(records, args.cap), ["set", "candidates median", "max", f"scans > {args.cap}",
                                                      "worst CMB rank", "seconds median", "max"]))
    if many:
        print(f"\nMany-CMB scan (seed {MANY_SEED}, default scanner, {args.many} CMBs asked)")
        rows = []
        for simulator, scan in many.items():
            n, free = recall(scan["cmbs"], "found")
            _, capped = recall(scan["cmbs"], "found_capped")
            _, in_mask = recall(scan["cmbs"], "in_mask")
            rows.append([simulator, str(n), str(scan["n_candidates"]), common.fmt(free), common.fmt(capped),
                         str(sum(c["dropped_by_cap"] for c in scan["cmbs"])), common.fmt(in_mask),
                         common.fmt(scan["seconds"], 2)])
        print(common.table(rows, ["simulator", "CMBs placed", "candidates", "recall, no cap", f"recall, cap {args.cap}",
                                  "dropped by cap", "in mask, no cap", "seconds"]))
    print()
    targets = {}
    for simulator in SIMULATORS:
        cmbs = [c for name, scans in records.items() if name.startswith(simulator) for s in scans for c in s["cmbs"]
                if c["diameter_mm"] >= 3.0]
        n, free = recall(cmbs, "found")
        _, capped = recall(cmbs, "found_capped")
        _, in_mask = recall(cmbs, "in_mask")
        targets[simulator] = {"n": n, "recall_no_cap": free, "recall_capped": capped, "in_mask_no_cap": in_mask}
        verdict = "PASS" if free >= TARGET_RECALL_3MM else "FAIL"
        print(f"{verdict}  {simulator}: CMBs >= 3 mm found by the screen (no cap), pooled over {n} CMBs: "
              f"{common.fmt(free)} (target >= {TARGET_RECALL_3MM}); with the {args.cap} cap {common.fmt(capped)}; "
              f"candidate in the CMB's mask {common.fmt(in_mask)}")
    if args.json:
        results = {"machine": machine, "args": vars(args), "records": records, "many": many, "targets": targets,
                   "seconds_total": time.perf_counter() - _T0}
        args.json.write_text(json.dumps(common.clean_json(results), indent=1, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
