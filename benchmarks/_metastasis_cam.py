"""Grad-CAM parts of ``benchmarks/metastasis.py``: the maps on held-out lesions, and our time beside MONAI's.

* :func:`explain_external` (issue 12 item 4): each network fitted once on the development
  sites (``MetastasisEvaluation.fitted``) explains every EXTERNAL lesion's crop per node at
  its ``cam_layer`` (``core.explain.grad_cams``: one forward pass, one backward per node).
  Per node: the share of the raw map's energy inside the lesion and inside its oedema
  shell (``energy_in_mask``), the pointing game (``pointing_game``), and after cascading
  weight randomisation from the head down to the input (``randomisation_check``) the
  energy's drop and the rank correlation of the randomised map with the trained one. Only
  the cascade's end is reported, and it is computed in one step (``mode="full"``: the same
  layers re-drawn in the same order from the same seed, so the same weights) because the
  cascade's intermediate maps cost one Grad-CAM per layer (16 for ResNet6-CBAM) per node
  per lesion, half an hour of a CPU for the external site. Each figure is a mean
  over external lesions (every lesion a row, for every node: a node's map is where the
  network looks for that decision, also on lesions the node does not classify) with a
  patient-bootstrap 95 % CI; beside it the chance level, the lesion's (shell's) share of
  the crop's volume: what a uniform map would put there.
* :func:`time_gradcam` (item 8): ours against ``monai.visualize.GradCAM`` on the same
  network (same seed, same weights) and the same input, each method in a fresh
  interpreter (``_common`` workers: peak memory is only meaningful per process), median of
  ``repeats`` calls after one warm-up. (a) one lesion crop, all three nodes (ours: one
  forward and three backward passes; MONAI: three calls); (b) a whole-brain input, one
  node. Peak memory: the kernel's high-water mark of resident memory reset just before
  the calls (``/proc/self/clear_refs``), minus what was resident then. The maps are
  compared raw (MONAI's default post-processing inverts and rescales them, so its raw map
  is taken with an identity post-processing after the timed calls).
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _common import fmt, run_worker, table, time_repeated

#: What a figure of :func:`explain_external` is averaged over (printed and in the JSON).
AVERAGED = ("mean over the external site's lesions (every lesion a row, every node on every lesion); "
            "95 % CI by patient bootstrap")
_CAM_METRICS = ("energy_in_lesion", "energy_in_oedema", "pointing_game", "energy_drop_randomised",
                "spearman_randomised")


def _mean_ci(values: Sequence[float], groups: Sequence[str], n_boot: int, seed: int) -> dict[str, float | None]:
    """The mean of the finite values with its patient-bootstrap 95 % CI (``core.metrics`` resampling)."""
    from napari_neuroreview.core.metrics.classification import bootstrap_ci

    v = np.asarray(values, float)
    keep = np.isfinite(v)
    if not keep.any():
        return {"value": None, "low": None, "high": None, "n": 0}
    point, low, high = bootstrap_ci(lambda _y, s: float(np.mean(s)), np.zeros(int(keep.sum())), v[keep],
                                    np.asarray(groups)[keep], n_boot, seed, require_both_classes=False)
    return {"value": point, "low": low, "high": high, "n": int(keep.sum())}


def lesion_maps(net: Any, crop: Any, sequences: Sequence[str], lesion_channel: bool, seed: int
                ) -> list[dict[str, float]]:
    """Per node, one external lesion's localisation figures (module docstring)."""
    import torch

    from napari_neuroreview.core.explain import energy_in_mask, grad_cams, pointing_game, randomisation_check
    from napari_neuroreview.core.tasks.metastasis.classes import NODES
    from napari_neuroreview.core.tasks.metastasis.train import network_input

    x = torch.from_numpy(network_input([crop], sequences, lesion_channel))
    x = x.to(next(net.parameters()).device)
    lesion = crop.mask
    shell = (crop.oedema & ~lesion) if crop.oedema is not None else np.zeros_like(lesion)
    out = []
    for k, cam in enumerate(grad_cams(net, x, net.cam_layer, range(len(NODES)))):
        raw = cam.raw[0]
        check = randomisation_check(net, x, net.cam_layer, lesion, target=k, mode="full", seed=seed)
        out.append({"energy_in_lesion": energy_in_mask(raw, lesion),
                    "energy_in_oedema": energy_in_mask(raw, shell) if shell.any() else float("nan"),
                    "pointing_game": float(pointing_game(raw, lesion)),
                    "energy_drop_randomised": check.energy_before - check.energy_after,
                    "spearman_randomised": check.spearman,
                    "chance_lesion": float(lesion.mean()), "chance_oedema": float(shell.mean()),
                    "grid": list(cam.feature_map.shape[1:])})
    return out


def explain_external(result: Any, items: Sequence[Any], origins: Sequence[str], networks: Sequence[str],
                     external: str, n_boot: int, seed: int) -> dict[str, Any]:
    """Each fitted network's maps on every external lesion: per node, mean figures with CIs (module docstring)."""
    from napari_neuroreview.core.tasks.metastasis.classes import NODES

    ext = [i for i in items if i.site == external]
    groups = [i.patient for i in ext]
    out: dict[str, Any] = {}
    for name in networks:
        fitted = result.fitted[name]
        net = fitted.estimator.net
        net.eval()
        lesion_channel = fitted.estimator.config.lesion_channel
        rows = [lesion_maps(net, item.crop, fitted.sequences, lesion_channel, seed) for item in ext]
        nodes = {}
        for k, node in enumerate(NODES):
            nodes[node] = {m: _mean_ci([r[k][m] for r in rows], groups, n_boot, seed) for m in _CAM_METRICS}
            nodes[node]["chance_lesion"] = float(np.mean([r[k]["chance_lesion"] for r in rows]))
            with_shell = [r[k]["chance_oedema"] for r in rows if np.isfinite(r[k]["energy_in_oedema"])]
            # over the lesions whose energy in the shell is averaged (those with a shell), as that mean is
            nodes[node]["chance_oedema"] = float(np.mean(with_shell)) if with_shell else float("nan")
        out[name] = {"nodes": nodes, "lesions": len(ext), "patients": len(set(groups)), "layer": net.cam_layer,
                     "layer_grid": rows[0][0]["grid"] if rows else None, "averaged_over": AVERAGED}
    return out


def explain_table(explained: dict[str, Any]) -> str:
    """Plain text of :func:`explain_external`: a row per network and node."""
    def cell(m: dict[str, Any]) -> str:
        return "n/a" if m["value"] is None else f"{fmt(m['value'])} [{fmt(m['low'], 2)}, {fmt(m['high'], 2)}]"

    rows: list[list[str]] = []
    for name, res in explained.items():
        grid = "x".join(map(str, res["layer_grid"] or []))
        coarse = " (one voxel: every map is uniform, no localisation to measure)" if grid == "1x1x1" else ""
        rows.append([f"{name}: {res['lesions']} external lesions of {res['patients']} patients, layer "
                     f"{res['layer']!r} on a {grid} grid{coarse}; {res['averaged_over']}"])
        for node, by in res["nodes"].items():
            rows.append([f"  {node}", cell(by["energy_in_lesion"]), fmt(by["chance_lesion"]),
                         cell(by["energy_in_oedema"]), fmt(by["chance_oedema"]), cell(by["pointing_game"]),
                         cell(by["energy_drop_randomised"]), cell(by["spearman_randomised"])])
    return table(rows, ["node", "energy in lesion", "chance", "energy in oedema shell", "chance", "pointing game",
                        "energy drop, randomised", "rank corr., randomised"])


# --------------------------------------------------------------------------- timings


def _reset_peak() -> float:
    """Reset this process's resident-memory high-water mark; the resident GiB now (Linux; NaN elsewhere)."""
    from _common import GIB

    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(int(line.split()[1]) * 1024 / GIB for line in fh if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return float("nan")


def timing_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One method's timed Grad-CAM calls in this fresh interpreter (the ``--worker`` side)."""
    import torch

    from _common import peak_memory
    from napari_neuroreview.core.explain import grad_cams
    from napari_neuroreview.core.models.metastasis_net import MetastasisNet

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    net = MetastasisNet(spec["in_channels"], spec["arch"], spec["attention"], spec["width"],
                        stem_stride=spec.get("stem_stride", 1))
    if spec.get("weights"):
        net.load_state_dict(torch.load(spec["weights"], weights_only=True))
    net.eval()
    if spec.get("input"):
        x = torch.from_numpy(np.load(spec["input"]))
    else:
        gen = torch.Generator().manual_seed(spec["seed"])
        x = torch.randn(1, spec["in_channels"], *spec["shape"], generator=gen)
    targets = list(spec["targets"])
    if spec["method"] == "ours":
        def call() -> list[np.ndarray]:
            return [r.raw[0] for r in grad_cams(net, x, net.cam_layer, targets)]
        raw = call
    else:
        from monai.visualize import GradCAM

        default = GradCAM(nn_module=net, target_layers=net.cam_layer)  # as a user calls it (normalised, inverted)

        def call() -> list[Any]:
            return [default(x, class_idx=k) for k in targets]

        def raw() -> list[np.ndarray]:  # built after the timed calls: its hooks never run during them
            identity = GradCAM(nn_module=net, target_layers=net.cam_layer, postprocessing=lambda t: t)
            return [identity(x, class_idx=k).detach().numpy()[0, 0] for k in targets]
    resident = _reset_peak()
    times = time_repeated(call, repeats=spec["repeats"], warmup=1)
    peak = peak_memory()["vmhwm_gib"]
    return {"times": times, "median_s": statistics.median(times), "peak_gib": peak - resident,
            "maps": np.stack(raw()).astype(np.float32)}


def _compare(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    a, b = ours["maps"], theirs["maps"]
    corr = [float(np.corrcoef(p.ravel(), q.ravel())[0, 1]) if p.std() > 0 and q.std() > 0 else float("nan")
            for p, q in zip(a, b)]
    scale = float(max(np.abs(a).max(), 1e-12))
    return {"ours_s": ours["median_s"], "monai_s": theirs["median_s"], "ratio": ours["median_s"] / theirs["median_s"],
            "ours_times": ours["times"], "monai_times": theirs["times"],
            "ours_peak_gib": ours["peak_gib"], "monai_peak_gib": theirs["peak_gib"],
            "memory_ratio": ours["peak_gib"] / theirs["peak_gib"] if theirs["peak_gib"] > 0 else float("nan"),
            "map_correlation": corr, "max_abs_difference_over_max": float(np.abs(a - b).max() / scale)}


def time_gradcam(script: Path, setups: dict[str, dict[str, Any]], repeats: int, threads: int) -> dict[str, Any]:
    """Per setup, ours and MONAI's, each in its own interpreter (module docstring)."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="met-cam-") as tmp:
        work = Path(tmp)
        for name, setup in setups.items():
            setup = dict(setup)
            state, x = setup.pop("state", None), setup.pop("array", None)
            if state is not None:
                import torch

                setup["weights"] = str(work / f"{name}.pt")
                torch.save(state, setup["weights"])
            if x is not None:
                setup["input"] = str(work / f"{name}.npy")
                np.save(setup["input"], np.ascontiguousarray(x, dtype=np.float32))
            spec = {**setup, "repeats": repeats, "threads": threads}
            answers = {m: run_worker(script, {**spec, "method": m}, work, f"{name}-{m}") for m in ("ours", "monai")}
            out[name] = {**{k: v for k, v in setup.items() if k not in ("weights", "input")},
                         **_compare(answers["ours"], answers["monai"])}
    return out


def timing_table(timed: dict[str, Any]) -> str:
    rows = [[name, (f"{t['arch']}-{t['attention']} w{t['width']} stem stride {t.get('stem_stride', 1)}, "
                    f"{t['in_channels']} x {'x'.join(map(str, t['shape']))}, {len(t['targets'])} node(s)"), fmt(t["ours_s"], 2), fmt(t["monai_s"], 2), fmt(t["ratio"], 2),
             fmt(t["ours_peak_gib"], 2), fmt(t["monai_peak_gib"], 2), fmt(min(t["map_correlation"]), 4)]
            for name, t in timed.items()]
    return table(rows, ["input", "network and input", "ours s", "MONAI s", "ours/MONAI", "ours GiB", "MONAI GiB",
                        "min map corr."])
