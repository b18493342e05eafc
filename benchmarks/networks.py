#!/usr/bin/env python
"""rs-fMRI networks benchmark: ICA speed against nilearn CanICA, matched maps against the truth, pre/post AUC.

One run prints, on a held-out simulated pre/post cohort (``core.phantoms.rsfmri``,
``write_bold_cohort(seed=7)`` by default; the shipped pre/post weights are trained on
``seed=0`` patients, and a patient's seed is derived from ``(cohort seed, index)``, so
no benchmark patient was seen in training):

1. **ICA seconds per scan.** Our ``run_ica`` (package defaults: 20 components, 6 mm
   smoothing) against ``nilearn.decomposition.CanICA`` with its default settings
   (``n_components=20``, ``smoothing_fwhm=6``, EPI mask, CCA, ``n_init=10``,
   ``threshold='auto'``; only ``random_state=0`` is set, for reproducibility) on the
   SAME scan (``sub-001/ses-pre``), the image already in memory. CanICA takes minutes on
   a 3 mm scan, so it is timed on that ONE scan, once; ours is timed three times there
   (the median is reported). Each method runs in its own fresh child process, with
   ``OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = MKL_NUM_THREADS = --threads`` for both
   (BLAS threading on a small shared machine makes timings erratic; the value is
   printed). Our ICA time on every cohort scan (from the extraction that caches the ICA
   folders) is printed too. CanICA's maps on that scan are matched by the same code
   (``matching.match_networks``) and scored against the truth beside ours.
2. **Matched maps against the phantom's true network maps.** For every scan of the
   cohort (``--n-map-patients`` limits it), the ICA folder written by ``neuroreview
   networks extract`` (``cli_networks.extract_one``, cached under ``--workdir``) and the
   truth (``load_bold_truth``, read by this benchmark only). Definitions:

   * *brain*: the voxels where the scan's temporal mean BOLD is non-zero (the phantom is
     brain-extracted), the same set for every method;
   * ``R[n, k]``: Pearson correlation over the brain between the true map of network
     ``n`` and component map ``k`` (same grid: both are on the BOLD grid);
   * *matched r* of network ``n``: ``sign_n * R[n, c_n]``, where ``c_n`` and ``sign_n``
     are the component and sign the automatic matching chose (against the atlas
     templates, never the truth);
   * network ``n`` is *matched right* when ``c_n = argmax_k |R[n, k]|`` (the component
     that truly is that network) and its matched r is positive (the sign is right too);
   * a scan has *all five right* when all five networks are matched right.

   Targets: median matched r over all (scan, network) pairs >= 0.8; share of scans with
   all five right >= 95 %.
3. **Per-network AUC, model against baseline.** ``evaluate.cross_validate`` on the whole
   cohort (``--n-patients``, default 30): patient-grouped stratified 5-fold CV, stage 1,
   stage 2 and the baseline fitted inside each fold, patient-bootstrap 95 % CIs (1000
   resamples). When a ``network-prepost`` model is installed (shipped weights or
   ``--weights ROOT``), it is also applied as shipped (no training) to every scan of the
   cohort, with a patient-bootstrap CI on its AUC. The study's reported per-network AUC
   (0.90-0.94, real patients) is printed for reference; it is not a target for phantoms.

Nothing is hard-coded: every number is measured by the run that prints it (cached ICA
folders keep the per-scan seconds they were made with; the run says so).

    python benchmarks/networks.py                      # full run (~20 min on 2 busy CPU cores)
    python benchmarks/networks.py --quick              # smoke test (3 patients, 4 mm, 60 volumes)
    python benchmarks/networks.py --workdir DIR --json out.json

See benchmarks/NETWORKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common as common  # noqa: E402

TARGETS = {"median_r": 0.8, "all_right_share": 0.95}
#: Per-network AUC the study reports (stratified CV on 56 real patients): a reference, not a target.
PAPER_AUC = (0.90, 0.94)
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
TIMED_SESSION = ("sub-001", "ses-pre")

_T0 = time.perf_counter()


def log(message: str) -> None:
    """Progress on stderr with the elapsed time (the tables go to stdout)."""
    elapsed = time.perf_counter() - _T0
    print(f"[{int(elapsed // 60):3d}:{int(elapsed % 60):02d}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def thread_env(n: int) -> Iterator[None]:
    """BLAS/OpenMP thread counts for the children started inside (set before their numpy loads)."""
    old = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(int(n)) for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _drive(task: Any) -> Any:
    from napari_neuroreview.core.progress import run_to_completion

    return run_to_completion(task)


# =============================================================================== scoring against the truth


def brain_of(bold_path: str | Path) -> np.ndarray:
    """The benchmark's brain: voxels whose temporal mean BOLD is non-zero (brain-extracted phantom)."""
    import nibabel as nib

    data = np.asarray(nib.load(str(bold_path)).dataobj)
    return np.any(data != 0, axis=3)


def truth_scores(maps: np.ndarray, affine: np.ndarray, assignment: Any, truth_img: Any,
                 brain: np.ndarray) -> dict[str, Any]:
    """Matched r, the truly best component and 'matched right' per network (module docstring).

    ``maps`` (X, Y, Z, K) and the truth maps (X, Y, Z, 5 in ``atlas.NETWORKS`` order) must
    share a grid; ``assignment`` is the automatic matching (``matching.match_networks``).
    """
    from napari_neuroreview.core.anatomy import atlas

    truth = np.asarray(truth_img.dataobj, dtype=np.float64)
    if truth.shape[:3] != maps.shape[:3] or not np.allclose(truth_img.affine, affine, atol=1e-3):
        raise ValueError(f"truth maps {truth.shape} and components {maps.shape} are not on the same grid")
    t = truth[brain]  # (V, 5)
    m = maps[brain].astype(np.float64)  # (V, K)
    t = t - t.mean(axis=0)
    m = m - m.mean(axis=0)
    denom = np.linalg.norm(t, axis=0)[:, None] * np.linalg.norm(m, axis=0)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        R = np.where(denom > 0, (t.T @ m) / np.where(denom > 0, denom, 1.0), 0.0)  # (5, K)
    out: dict[str, Any] = {"networks": {}, "R": R}
    for n, name in enumerate(atlas.NETWORKS):
        match = assignment.matches[name]
        c, sign = int(match.component), int(match.sign)
        best = int(np.argmax(np.abs(R[n])))
        r = float(sign * R[n, c])
        out["networks"][name] = {
            "component": c, "sign": sign, "r": r, "best_component": best, "best_abs_r": float(abs(R[n, best])),
            "right": bool(c == best and r > 0), "template_score": float(match.score),
            "confident": bool(match.confident),
        }
    out["all_right"] = all(v["right"] for v in out["networks"].values())
    return out


# =============================================================================== workers


def w_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: simulate and write the cohort (``write_bold_cohort``)."""
    from napari_neuroreview.core.phantoms.rsfmri import write_bold_cohort

    t0 = time.perf_counter()
    task = write_bold_cohort(spec["cohort"], n_patients=spec["n_patients"], seed=spec["seed"],
                             effect_size=spec["effect_size"], n_volumes=spec["n_volumes"], voxel_mm=spec["voxel_mm"])
    while True:
        try:
            update = next(task)
        except StopIteration:
            break
        print(f"{time.perf_counter() - t0:7.1f} s  {update.message}", flush=True)
    return {"seconds": time.perf_counter() - t0}


def w_extract(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: ``neuroreview networks extract`` (``extract_one``) for each session lacking its ICA folder."""
    from napari_neuroreview.cli_networks import extract_one
    from napari_neuroreview.core.tasks.networks import DEFAULT_N_COMPONENTS, DEFAULT_SMOOTHING_FWHM_MM

    done = {}
    for session in spec["sessions"]:
        s = Path(session)
        summary = extract_one(s / "bold.nii.gz", s / "ica", DEFAULT_N_COMPONENTS, 0, DEFAULT_SMOOTHING_FWHM_MM,
                              quiet=True)
        done[session] = {"seconds": summary["seconds"], "loadavg": common.machine_info().get("loadavg_1_5_15")}
        print(f"{s.parent.name}/{s.name}: {summary['seconds']:.2f} s", flush=True)
    return {"extracted": done, "threads": {k: os.environ.get(k) for k in THREAD_VARS}}


def _timed_bold(path: str) -> tuple[Any, Any]:
    """(Volume, in-memory Nifti1Image) of a BOLD file: decompression is not timed."""
    import nibabel as nib

    from napari_neuroreview.core.io.nifti import load_volume

    volume = load_volume(path)
    img = nib.load(path)
    return volume, nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header)


def w_time_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: ``run_ica`` (package defaults) ``repeats`` times on one scan, then matching and truth scores."""
    from napari_neuroreview.core.phantoms.rsfmri import load_bold_truth
    from napari_neuroreview.core.tasks.networks import DEFAULT_N_COMPONENTS, DEFAULT_SMOOTHING_FWHM_MM
    from napari_neuroreview.core.tasks.networks.ica import run_ica
    from napari_neuroreview.core.tasks.networks.matching import match_networks

    volume, _ = _timed_bold(spec["bold"])
    times, comps = [], None
    for _ in range(int(spec["repeats"])):
        t0 = time.perf_counter()
        comps = _drive(run_ica(volume, n_components=DEFAULT_N_COMPONENTS, seed=0,
                               smoothing_fwhm_mm=DEFAULT_SMOOTHING_FWHM_MM))
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    assignment = match_networks(comps)
    match_s = time.perf_counter() - t0
    truth_img = load_bold_truth(Path(spec["bold"]).parent)["truth_maps"]
    scores = truth_scores(comps.maps, comps.affine, assignment, truth_img, brain_of(spec["bold"]))
    return {"times": times, "median": statistics.median(times), "match_seconds": match_s,
            "n_components": comps.n_components, "mask_voxels": comps.info.get("mask_voxels"),
            "shape": list(volume.data.shape), "scores": scores, "memory": common.peak_memory(),
            "loadavg_at_end": common.machine_info().get("loadavg_1_5_15"),
            "threads": {k: os.environ.get(k) for k in THREAD_VARS}}


def w_time_canica(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: nilearn CanICA with default settings (random_state=0) on one scan, once; matching, truth scores."""
    import warnings

    import nilearn
    from nilearn.decomposition import CanICA

    from napari_neuroreview.core.io.ica_folder import ICAComponents
    from napari_neuroreview.core.phantoms.rsfmri import load_bold_truth
    from napari_neuroreview.core.tasks.networks.matching import match_networks

    _, img = _timed_bold(spec["bold"])
    canica = CanICA(random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        canica.fit(img)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        timecourses = np.asarray(canica.transform([img])[0], dtype=np.float64)  # (T, K)
        transform_s = time.perf_counter() - t0
    maps_img = canica.components_img_
    maps = np.asarray(maps_img.dataobj, dtype=np.float32)
    comps = ICAComponents(maps=maps, affine=np.asarray(maps_img.affine, float), timecourses=timecourses,
                          tr_s=None, source=f"CanICA of {spec['bold']}", kind="map+tsv")
    t0 = time.perf_counter()
    assignment = match_networks(comps)
    match_s = time.perf_counter() - t0
    truth_img = load_bold_truth(Path(spec["bold"]).parent)["truth_maps"]
    scores = truth_scores(comps.maps, comps.affine, assignment, truth_img, brain_of(spec["bold"]))
    params = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v))
              for k, v in canica.get_params().items()}
    return {"fit_seconds": fit_s, "transform_seconds": transform_s, "match_seconds": match_s,
            "n_components": int(maps.shape[3]), "nonzero_share": float(np.mean(maps[brain_of(spec["bold"])] != 0)),
            "params": params, "nilearn": nilearn.__version__, "scores": scores, "memory": common.peak_memory(),
            "loadavg_at_end": common.machine_info().get("loadavg_1_5_15"),
            "threads": {k: os.environ.get(k) for k in THREAD_VARS}}


def w_truth(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: truth scores of the cached ICA folders (our extraction) of a list of sessions."""
    from napari_neuroreview.core.io.ica_folder import load_ica
    from napari_neuroreview.core.phantoms.rsfmri import load_bold_truth
    from napari_neuroreview.core.tasks.networks.assignment_io import load_networks_json

    out = {}
    for session in spec["sessions"]:
        s = Path(session)
        comps = load_ica(s / "ica")
        scores = truth_scores(comps.maps, comps.affine, load_networks_json(s / "ica"),
                              load_bold_truth(s)["truth_maps"], brain_of(s / "bold.nii.gz"))
        scores.pop("R")
        out[session] = scores
    return {"sessions": out}


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if np.unique(y).size == 2 else float("nan")


def w_cv(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: load the cohort (cached ICA), shipped model if any, then ``cross_validate``."""
    import torch

    from napari_neuroreview.core.metrics.classification import binary_metrics, bootstrap_ci
    from napari_neuroreview.core.tasks.networks import evaluate as E
    from napari_neuroreview.core.tasks.networks import train as T
    from napari_neuroreview.core.tasks.networks.cohort import load_cohort
    from napari_neuroreview.core.tasks.networks.features import build_rows

    torch.set_num_threads(int(spec["torch_threads"]))
    t0 = time.perf_counter()
    scans, load_warnings = _drive(load_cohort(spec["cohort"]))
    rows = build_rows(scans)
    load_s = time.perf_counter() - t0
    out: dict[str, Any] = {"load_seconds": load_s, "n_scans": len(scans), "n_rows": len(rows),
                           "n_patients": int(np.unique(rows.groups).size), "warnings": load_warnings}

    shipped = None
    if spec.get("shipped", True):
        from napari_neuroreview.core.errors import RegistryError
        from napari_neuroreview.core.registry import installed_versions
        from napari_neuroreview.core.tasks.networks.model import MODEL_NAME, load_prepost_model

        roots = [Path(r) for r in spec["weights_roots"]]
        versions = installed_versions(MODEL_NAME, roots)
        if versions:
            try:
                model = load_prepost_model(spec.get("version"), device=spec["device"], roots=roots)
            except RegistryError as exc:
                shipped = {"error": str(exc)}
            else:
                t1 = time.perf_counter()
                model_rows = build_rows(scans, model.context, model.networks)
                p = model.predict_rows(model_rows)
                per = {}
                for k, name in enumerate(model_rows.network_names):
                    sel = model_rows.networks == k
                    if not sel.any():
                        continue
                    y, g = model_rows.labels[sel], model_rows.groups[sel]
                    point, low, high = bootstrap_ci(_auc, y, p[sel], g, n_boot=int(spec["n_boot"]), seed=0)
                    m = binary_metrics(y, p[sel], 0.5)
                    per[name] = {"auc": {"value": point, "low": low, "high": high},
                                 "accuracy": {"value": float(m["accuracy"])}, "n": int(sel.sum())}
                card = model.card
                shipped = {"version": card.version, "training_data": card.training_data, "metrics": card.metrics,
                           "notes": card.notes, "per_network": per, "seconds": time.perf_counter() - t1,
                           "p_post": p.tolist(), "root": str(next(r for r, c in versions if c.version == card.version))}
    out["shipped"] = shipped

    stage1 = T.Stage1Config(**({"epochs": int(spec["epochs"])} if spec.get("epochs") else {}))
    config = E.EvaluationConfig(folds=int(spec["folds"]), seed=0, n_boot=int(spec["n_boot"]), stage1=stage1,
                                tsne=bool(spec.get("tsne_png")))
    t1 = time.perf_counter()
    last = [0.0]

    def show(update: Any) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"{time.perf_counter() - t1:7.1f} s  [{update.fraction:5.1%}] {update.message}", flush=True)

    from napari_neuroreview.core.progress import run_to_completion

    result = run_to_completion(E.cross_validate(rows, config, spec["device"]), show)
    out["cv_seconds"] = time.perf_counter() - t1
    if spec.get("tsne_png") and result.tsne is not None:
        out["tsne_png"] = str(E.save_tsne_png(result, spec["tsne_png"],
                                              f"t-SNE of held-out embeddings, benchmark cohort ({out['n_patients']} "
                                              "patients)"))
    out["cv"] = result.to_json()
    out["memory"] = common.peak_memory()
    out["loadavg_at_end"] = common.machine_info().get("loadavg_1_5_15")
    return out


WORKERS = {"generate": w_generate, "extract": w_extract, "time_ours": w_time_ours, "time_canica": w_time_canica,
           "truth": w_truth, "cv": w_cv}


def worker_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    common.write_answer(spec, WORKERS[spec["task"]](spec))


# =============================================================================== report


def summarise_truth(per_session: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Medians of matched r (pooled and per network), share matched right, share of scans all right."""
    from napari_neuroreview.core.anatomy import atlas

    pooled = [v["r"] for s in per_session.values() for v in s["networks"].values()]
    out: dict[str, Any] = {
        "n_scans": len(per_session), "median_r": float(np.median(pooled)) if pooled else float("nan"),
        "min_r": float(np.min(pooled)) if pooled else float("nan"),
        "n_all_right": int(sum(s["all_right"] for s in per_session.values())),
        "per_network": {},
    }
    out["all_right_share"] = out["n_all_right"] / len(per_session) if per_session else float("nan")
    for name in atlas.NETWORKS:
        rs = [s["networks"][name]["r"] for s in per_session.values()]
        right = [s["networks"][name]["right"] for s in per_session.values()]
        conf = [s["networks"][name]["confident"] for s in per_session.values()]
        out["per_network"][name] = {
            "median_r": float(np.median(rs)), "q25_r": float(np.quantile(rs, 0.25)), "min_r": float(np.min(rs)),
            "right_share": float(np.mean(right)), "confident_share": float(np.mean(conf)),
        }
    out["median_of_network_medians"] = float(np.median([v["median_r"] for v in out["per_network"].values()]))
    out["wrong"] = {k: [n for n, v in s["networks"].items() if not v["right"]]
                    for k, s in per_session.items() if not s["all_right"]}
    return out


def ci_cell(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "-"
    v, lo, hi = cell.get("value"), cell.get("low"), cell.get("high")
    if lo is None or hi is None:
        return common.fmt(v, 2)
    return f"{common.fmt(v, 2)} [{common.fmt(lo, 2)}, {common.fmt(hi, 2)}]"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from napari_neuroreview.core.registry import SHIPPED_WEIGHTS_ROOT

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep the cohort, its ICA folders and every child's output here (reused when present); "
                        "default: a temporary folder, removed at the end")
    p.add_argument("--seed", type=int, default=7, help="cohort seed (the shipped weights are trained on seed 0)")
    p.add_argument("--n-patients", type=int, default=30, help="patients in the benchmark cohort (x2 scans)")
    p.add_argument("--n-map-patients", type=int, default=None,
                   help="score matched maps on the first N patients only (default: all)")
    p.add_argument("--n-volumes", type=int, default=150)
    p.add_argument("--voxel-mm", type=float, default=3.0)
    p.add_argument("--effect-size", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1,
                   help="OPENBLAS/OMP/MKL_NUM_THREADS of the ICA children (ours and CanICA alike)")
    p.add_argument("--torch-threads", type=int, default=2, help="torch threads of the cross-validation child")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of our ICA on the timed scan (median)")
    p.add_argument("--no-canica", action="store_true", help="skip CanICA (minutes on a 3 mm scan)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--n-boot", type=int, default=1000, help="patient-bootstrap resamples per CI")
    p.add_argument("--epochs", type=int, default=None, help="stage-1 epochs per fold (default: Stage1Config's)")
    p.add_argument("--device", default="cpu", help="where stage 1 trains (cpu, cuda, auto)")
    p.add_argument("--weights", type=Path, action="append", default=None,
                   help=f"registry root(s) searched for the network-prepost model applied without training "
                        f"(default: the shipped weights, {SHIPPED_WEIGHTS_ROOT})")
    p.add_argument("--version", default=None, help="network-prepost version to apply as shipped (default: newest)")
    p.add_argument("--no-tsne", action="store_true", help="skip the held-out t-SNE PNG (saved in the workdir)")
    p.add_argument("--json", type=Path, default=None, help="save every number here")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 3 patients, 60 volumes at 4 mm, 3 folds, 2 epochs, 200 bootstrap resamples")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.n_patients, args.n_volumes, args.voxel_mm = min(args.n_patients, 3), 60, 4.0
        args.folds, args.epochs, args.n_boot = 3, 2, 200
    return args


def cohort_name(args: argparse.Namespace) -> str:
    return (f"cohort-seed{args.seed}-n{args.n_patients}-v{args.n_volumes}-{args.voxel_mm:g}mm"
            f"-e{args.effect_size:g}")


def cohort_ready(folder: Path, args: argparse.Namespace) -> bool:
    """True when ``folder`` holds a finished cohort made with these settings (cohort.json is written last)."""
    try:
        meta = json.loads((folder / "cohort.json").read_text())
    except (OSError, ValueError):
        return False
    want = {"n_patients": args.n_patients, "seed": args.seed, "n_volumes": args.n_volumes}
    return (all(meta.get(k) == v for k, v in want.items()) and math.isclose(meta.get("voxel_mm", -1), args.voxel_mm)
            and math.isclose(meta.get("effect_size", -1), args.effect_size))


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - a linear script
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    import nilearn
    import sklearn
    import torch

    from napari_neuroreview.core.anatomy import atlas
    from napari_neuroreview.core.registry import SHIPPED_WEIGHTS_ROOT
    from napari_neuroreview.core.tasks.networks import DEFAULT_N_COMPONENTS, DEFAULT_SMOOTHING_FWHM_MM

    machine = common.print_run_header(f"nilearn {nilearn.__version__}, scikit-learn {sklearn.__version__}, "
                                      f"torch {torch.__version__}")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="networks-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).resolve()
    cohort = work / cohort_name(args)
    weights_roots = [str(p) for p in (args.weights or [SHIPPED_WEIGHTS_ROOT])]
    errors: list[str] = []
    results: dict[str, Any] = {}

    # ---------------------------------------------------------------- 1. cohort
    if cohort_ready(cohort, args):
        log(f"reusing the cohort {cohort}")
        simulate_s = None
    else:
        if cohort.exists():
            shutil.rmtree(cohort)  # an unfinished cohort: its ICA folders may not fit new scans
        log(f"simulating {args.n_patients} patients x pre/post ({2 * args.n_patients} scans, {args.voxel_mm:g} mm, "
            f"{args.n_volumes} volumes, seed {args.seed}) -> {cohort}")
        answer = common.run_worker(script, {"task": "generate", "cohort": str(cohort), "n_patients": args.n_patients,
                                            "seed": args.seed, "effect_size": args.effect_size,
                                            "n_volumes": args.n_volumes, "voxel_mm": args.voxel_mm}, work, "generate")
        simulate_s = answer["seconds"]
        log(f"  {simulate_s:.0f} s ({simulate_s / (2 * args.n_patients):.1f} s per scan)")
    sessions = sorted(p.parent for p in cohort.glob("sub-*/ses-*/bold.nii.gz"))
    meta = json.loads((cohort / "cohort.json").read_text())

    # ---------------------------------------------------------------- 2. ICA of every scan (cached)
    seconds_file = work / f"{cohort.name}.ica_seconds.json"
    ica_seconds: dict[str, Any] = json.loads(seconds_file.read_text()) if seconds_file.is_file() else {}
    todo = [s for s in sessions if not (s / "ica" / "networks.json").is_file()]
    if todo:
        log(f"our ICA + matching of {len(todo)} scans ({len(sessions) - len(todo)} cached), "
            f"{args.threads} BLAS thread(s)")
        with thread_env(args.threads):
            answer = common.run_worker(script, {"task": "extract", "sessions": [str(s) for s in todo]}, work,
                                       "extract")
        ica_seconds.update({k: dict(v, cached=False) for k, v in answer["extracted"].items()})
        seconds_file.write_text(json.dumps(ica_seconds, indent=1))
    fresh_ica = [v["seconds"] for k, v in ica_seconds.items() if Path(k) in set(todo)]
    all_ica = [ica_seconds[str(s)]["seconds"] for s in sessions if str(s) in ica_seconds]

    # ---------------------------------------------------------------- 3. ICA speed on one scan
    timed = cohort / TIMED_SESSION[0] / TIMED_SESSION[1] / "bold.nii.gz"
    speed: dict[str, Any] = {}
    with thread_env(args.threads):
        log(f"timing our ICA on {TIMED_SESSION[0]}/{TIMED_SESSION[1]}: {args.repeats} runs in a fresh child")
        try:
            speed["ours"] = common.run_worker(script, {"task": "time_ours", "bold": str(timed),
                                                       "repeats": args.repeats}, work, "time_ours")
            log(f"  {[round(t, 2) for t in speed['ours']['times']]} s")
        except common.WorkerError as exc:
            log(f"  FAILED: {exc}")
            errors.append(f"time ours: {exc}")
        if not args.no_canica:
            log("timing nilearn CanICA (default settings) on the same scan, once, in a fresh child (minutes)")
            try:
                speed["canica"] = common.run_worker(script, {"task": "time_canica", "bold": str(timed)}, work,
                                                    "time_canica")
                log(f"  fit {speed['canica']['fit_seconds']:.1f} s")
            except common.WorkerError as exc:
                log(f"  FAILED: {exc}")
                errors.append(f"time CanICA: {exc}")

    # ---------------------------------------------------------------- 4. matched maps against the truth
    n_map = args.n_map_patients or args.n_patients
    map_sessions = [s for s in sessions if int(s.parent.name.split("-")[1]) <= n_map]
    log(f"matched maps against the true maps on {len(map_sessions)} scans")
    truth = common.run_worker(script, {"task": "truth", "sessions": [str(s) for s in map_sessions]}, work, "truth")
    truth_summary = summarise_truth(truth["sessions"])

    # ---------------------------------------------------------------- 5. pre/post AUC
    log(f"cross-validation on {args.n_patients} patients ({args.folds} folds, stage 1 "
        f"{args.epochs or 'default'} epochs, {args.n_boot} bootstrap resamples, device {args.device}); "
        "shipped model if installed")
    cv: dict[str, Any] = {}
    try:
        cv = common.run_worker(script, {"task": "cv", "cohort": str(cohort), "folds": args.folds,
                                        "n_boot": args.n_boot, "epochs": args.epochs, "device": args.device,
                                        "torch_threads": args.torch_threads, "weights_roots": weights_roots,
                                        "version": args.version,
                                        "tsne_png": None if args.no_tsne else str(work / "tsne_heldout.png")},
                               work, "cv")
        log(f"  {cv['cv_seconds']:.0f} s (loading {cv['load_seconds']:.0f} s)")
    except common.WorkerError as exc:
        log(f"  FAILED: {exc}")
        errors.append(f"cross-validation: {exc}")

    # ---------------------------------------------------------------- 6. report
    results.update({
        "command": machine.pop("command"), "machine": machine, "machine_load_at_end": common.machine_info().get("loadavg_1_5_15"),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
        "cohort": {"path": str(cohort), "meta": meta, "simulate_seconds": simulate_s, "n_scans": len(sessions)},
        "ica_defaults": {"n_components": DEFAULT_N_COMPONENTS, "smoothing_fwhm_mm": DEFAULT_SMOOTHING_FWHM_MM},
        "ica_seconds_per_scan": {"all": ica_seconds, "fresh_this_run": fresh_ica},
        "speed": speed, "truth": {"summary": truth_summary, "per_session": truth["sessions"]}, "errors": errors,
        "targets": TARGETS, "paper_auc": PAPER_AUC,
    })
    if cv:
        results["cv"] = cv
    threads_txt = f"OPENBLAS/OMP/MKL_NUM_THREADS={args.threads}"
    shape = speed.get("ours", {}).get("shape")
    print()
    print(f"Held-out cohort: write_bold_cohort(seed={args.seed}) -> {args.n_patients} patients x pre/post = "
          f"{len(sessions)} scans, {args.voxel_mm:g} mm, {args.n_volumes} volumes, TR {meta.get('tr_s')} s, "
          f"effect size {args.effect_size:g}; patient seeds derive from ({args.seed}, index), so no patient of a seed-0 "
          "training cohort (the shipped weights') is among them")
    print()

    # ICA speed
    rows: list[list[str]] = []
    ours_s, can = speed.get("ours"), speed.get("canica")
    rows.append([f"One scan: {TIMED_SESSION[0]}/{TIMED_SESSION[1]} {tuple(shape) if shape else ''}, image in memory, "
                 f"fresh child per method, {threads_txt}"])
    rows.append(["  ICA seconds", f"{ours_s['median']:.2f} (median of {len(ours_s['times'])}: "
                 f"{', '.join(f'{t:.2f}' for t in ours_s['times'])})" if ours_s else "-",
                 f"{can['fit_seconds']:.1f} (fit, one run)" if can else "not run"])
    if ours_s and can:
        rows.append(["  time / ours", "x1", f"x{can['fit_seconds'] / ours_s['median']:.0f}"])
        rows.append(["  + time courses, + matching (s)", f"- (inside), {ours_s['match_seconds']:.2f}",
                     f"{can['transform_seconds']:.2f}, {can['match_seconds']:.2f}"])
    for label, key in (("  peak memory, GiB", "memory"),):
        rows.append([label, common.fmt(ours_s[key]["peak_gib"], 2) if ours_s else "-",
                     common.fmt(can[key]["peak_gib"], 2) if can else "-"])
    if ours_s or can:
        for name in atlas.NETWORKS:
            def cell(x: dict[str, Any] | None) -> str:
                if not x:
                    return "-"
                v = x["scores"]["networks"][name]
                return f"{v['r']:.3f} (IC{v['component'] + 1:02d}{'' if v['right'] else ', WRONG'})"
            rows.append([f"  matched r, {name}", cell(ours_s), cell(can)])
        rows.append(["  median matched r", *(common.fmt(np.median([v["r"] for v in x["scores"]["networks"].values()]))
                                             if x else "-" for x in (ours_s, can))])
        rows.append(["  all five matched right", ("yes" if ours_s["scores"]["all_right"] else "no") if ours_s else "-",
                     ("yes" if can["scores"]["all_right"] else "no") if can else "-"])
        rows.append(["  machine load (1 min) after", common.fmt((ours_s or {}).get("loadavg_at_end", [None])[0], 2),
                     common.fmt((can or {}).get("loadavg_at_end", [None])[0], 2)])
    print(common.table(rows, ["", f"ours: run_ica (K={DEFAULT_N_COMPONENTS}, {DEFAULT_SMOOTHING_FWHM_MM:g} mm)",
                              "nilearn CanICA (defaults, random_state=0)"]))
    if all_ica:
        tag = f"{len(fresh_ica)} measured this run" + (f", {len(all_ica) - len(fresh_ica)} cached from an earlier "
                                                       "run" if len(all_ica) > len(fresh_ica) else "")
        print(f"Our ICA + matching on every cohort scan ({tag}, {threads_txt}, one child after the other): median "
              f"{statistics.median(all_ica):.2f} s, range {min(all_ica):.2f}-{max(all_ica):.2f} s per scan")
    if can:
        keys = ("n_components", "smoothing_fwhm", "do_cca", "threshold", "n_init", "mask_strategy", "standardize",
                "detrend", "random_state")
        settings = ", ".join(f"{k}={can['params'].get(k)}" for k in keys)
        print(f"CanICA {can['nilearn']} settings: {settings}; its maps are thresholded (non-zero in "
              f"{can['nonzero_share']:.0%} of brain voxels x components)")
    print()

    # matched maps
    ts = truth_summary
    rows = [[f"{ts['n_scans']} held-out scans"]]
    for name in atlas.NETWORKS:
        v = ts["per_network"][name]
        rows.append([name, common.fmt(v["median_r"]), common.fmt(v["q25_r"]), common.fmt(v["min_r"]),
                     f"{v['right_share']:.0%}", f"{v['confident_share']:.0%}"])
    rows.append(["all (scan, network) pairs", common.fmt(ts["median_r"]), "", common.fmt(ts["min_r"]), "", ""])
    print(common.table(rows, ["Matched maps vs true maps", "median r", "25th pct", "min", "matched right",
                              "confident"]))
    print(f"Scans with all five networks matched right: {ts['n_all_right']}/{ts['n_scans']} = "
          f"{ts['all_right_share']:.1%}" + (f"; wrong: {ts['wrong']}" if ts["wrong"] else ""))
    print("r = Pearson correlation over the brain (temporal mean BOLD != 0) of the matched component map (its sign "
          "applied) with the phantom's true map; 'right' = the matched component is the one with the highest |r| "
          "with that network's true map, and r > 0; 'confident' = the matching's own confidence flag")
    print()

    # AUC
    if cv:
        metrics = cv["cv"]["metrics"]
        shipped = cv.get("shipped") or {}
        have_shipped = bool(shipped.get("per_network"))
        header = ["AUC (95% CI, patient bootstrap)", "two-stage model (CV)", "baseline (CV)"]
        if have_shipped:
            kind = "shipped" if Path(shipped["root"]).resolve() == Path(SHIPPED_WEIGHTS_ROOT).resolve() else "installed"
            header.append(f"{kind} {shipped['version']} (no training)")
        header.append("study (real patients)")
        rows = []
        for name in atlas.NETWORKS:
            r = [name, ci_cell(metrics["model"][name]["auc"]), ci_cell(metrics["baseline"][name]["auc"])]
            if have_shipped:
                r.append(ci_cell(shipped["per_network"].get(name, {}).get("auc")))
            r.append(f"{PAPER_AUC[0]:.2f}-{PAPER_AUC[1]:.2f}")
            rows.append(r)
        mean = ["mean over networks",
                common.fmt(np.mean([metrics["model"][n]["auc"]["value"] for n in atlas.NETWORKS]), 2),
                common.fmt(np.mean([metrics["baseline"][n]["auc"]["value"] for n in atlas.NETWORKS]), 2)]
        if have_shipped:
            mean.append(common.fmt(np.mean([shipped["per_network"][n]["auc"]["value"] for n in atlas.NETWORKS]), 2))
        rows.append(mean + [""])
        acc = ["accuracy, mean over networks",
               common.fmt(np.mean([metrics["model"][n]["accuracy"]["value"] for n in atlas.NETWORKS]), 2),
               common.fmt(np.mean([metrics["baseline"][n]["accuracy"]["value"] for n in atlas.NETWORKS]), 2)]
        if have_shipped:
            acc.append(common.fmt(np.mean([shipped["per_network"][n]["accuracy"]["value"] for n in atlas.NETWORKS]), 2))
        rows.append(acc + ["0.85-0.90"])
        print(common.table(rows, header))
        cfg = cv["cv"]["config"]
        print(f"Cross-validation: {cfg['n_patients']} patients, {cfg['folds']} folds grouped by patient (stratified), "
              f"stage 1 ({cfg['stage1']['epochs']} epochs), stage 2 and the baseline fitted inside each fold; "
              f"{cfg['n_boot']} patient-bootstrap resamples; threshold {cfg['threshold']} for accuracy; "
              f"{cv['cv_seconds']:.0f} s (device {cv['cv']['device']}, {args.torch_threads} torch threads)")
        if have_shipped:
            print(f"Shipped model {shipped['version']}: trained on {shipped['training_data']}; applied unchanged to "
                  f"all {cv['n_scans']} scans here ({shipped['seconds']:.1f} s)")
            if re.search(rf"\bseed {args.seed}\b", str(shipped.get("training_data", ""))):
                print(f"WARNING: the shipped model's training data mentions seed {args.seed}: not held out")
        elif shipped.get("error"):
            print(f"Shipped model: could not be loaded ({shipped['error']})")
        else:
            print(f"Shipped model: no network-prepost version installed under {', '.join(weights_roots)}")
        if cv.get("tsne_png"):
            print(f"t-SNE of held-out embeddings: {cv['tsne_png']}")
        if cv.get("warnings"):
            print(f"Loading warnings: {len(cv['warnings'])} (e.g. {cv['warnings'][0]})")
    if simulate_s is not None:
        print(f"Simulating {len(sessions)} scans took {simulate_s:.0f} s.", end=" ")
    print(f"Whole run {time.perf_counter() - _T0:.0f} s; load average at the end {results['machine_load_at_end']}")
    for line in errors:
        print(f"ERROR {line.splitlines()[0]} (see {work})")

    print()
    print("Targets (ours; CanICA on its one scan in brackets):")
    ok = ts["median_r"] >= TARGETS["median_r"]
    can_r = f"  [CanICA {np.median([v['r'] for v in can['scores']['networks'].values()]):.3f}]" if can else ""
    print(f"  {'PASS' if ok else 'FAIL'}  median matched r with the true maps >= {TARGETS['median_r']}: "
          f"{ts['median_r']:.3f} over {ts['n_scans']} scans x 5 networks{can_r}")
    ok = ts["all_right_share"] >= TARGETS["all_right_share"]
    can_a = f"  [CanICA {'1/1' if can['scores']['all_right'] else '0/1'}]" if can else ""
    print(f"  {'PASS' if ok else 'FAIL'}  scans with all five networks matched right >= "
          f"{TARGETS['all_right_share']:.0%}: {ts['all_right_share']:.1%} ({ts['n_all_right']}/{ts['n_scans']}){can_a}")
    if ours_s and can:
        print(f"  info  ICA seconds on one scan: ours {ours_s['median']:.2f} s, CanICA {can['fit_seconds']:.1f} s "
              f"(x{can['fit_seconds'] / ours_s['median']:.0f})")
    if cv:
        better = [n for n in atlas.NETWORKS
                  if metrics["model"][n]["auc"]["value"] > metrics["baseline"][n]["auc"]["value"]]
        print(f"  info  per-network AUC, model above baseline in {len(better)}/5 networks "
              f"({', '.join(better) or 'none'}); no AUC target on phantoms (study: {PAPER_AUC[0]}-{PAPER_AUC[1]})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(common.clean_json(results), indent=1, allow_nan=False))
        print(f"\nAll numbers: {args.json}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
