#!/usr/bin/env python
"""Microbleed (CMB) detection benchmark: our two-stage detector against two peers.

One run prints, side by side, on held-out simulated SWI scans (seeds no training used):

* (a) **ours**: ``core.tasks.cmb.detect`` (dark-spot candidates + 3D patch CNN), at the
  operating threshold frozen in its model card (chosen on its own validation scans);
* (b) **LoG**: scikit-image ``blob_log`` on the inverted local contrast inside the head
  mask, per-axis sigmas in voxels for CMB radii of 1-5 mm, threshold tuned on a separate
  tuning set;
* (c) **BasicUNet**: MONAI's BasicUNet of similar parameter count, trained here on other
  phantoms (patches, DiceCE), whole-volume sliding-window inference, probability
  threshold tuned on the tuning set (0.02-0.99), connected components as detections;

with the same metric code for all (``core.metrics`` via ``core.tasks.cmb.evaluate``):
sensitivity, FP/subject, precision, F1, per-matched-CMB Dice and IoU, FROC points,
seconds per case and peak memory (each method in a fresh child process), the time on a
256 x 256 x 96 volume (best of 3 after a warm-up), the GPU time when a GPU is present,
and PASS/FAIL lines for the targets. Nothing is hard-coded: every number is measured in
the run that prints it.

Seeds: held-out 500000+i (0.9 x 0.9 x 1.8 mm) and 510000+i (0.5 x 0.5 x 2.0 mm); tuning
200000+i; BasicUNet training 300000+i; speed volume 600000. The shipped detector was
trained on 0..39 and validated on 100000..100009.

    python benchmarks/cmb.py                 # full run (~9 min on 2 idle CPU cores; ~50 min busy)
    python benchmarks/cmb.py --quick         # smoke test (~4-5 min idle)
    python benchmarks/cmb.py --weights ROOT --json out.json
    python benchmarks/cmb.py --loso          # leave one SWI simulator out (_cmb_loso.py; trains ours 3 times)

See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _common as common

SEED_BASE = {"test": 500_000, "highres": 510_000, "tune": 200_000, "unet_train": 300_000, "speed": 600_000}
CLINICAL_MM = (0.9, 0.9, 1.8)
HIGHRES_MM = (0.5, 0.5, 2.0)
SPEED_SHAPE = (256, 256, 96)
#: FOV margin (mm) of the speed phantom, so that the 256 x 256 crop holds real background noise.
SPEED_MARGIN_MM = 45.0
TARGETS = {"sensitivity": 0.90, "max_fp_per_subject": 1.0, "dice": 0.70, "seconds_256": 3.0, "peak_gib": 2.0}
FROC_POINTS = (0.5, 1.0, 2.0)
#: BasicUNet probability thresholds tried on the tuning set.
UNET_GRID = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99)
#: BasicUNet's FROC: components of ``prob >= min(this, threshold)`` ranked by their peak probability.
UNET_SWEEP_LEVEL = 0.5
#: At most this many detections per scan are kept for any method (bounds memory for a bad model).
MAX_DETECTIONS = 2000
METHODS = ("ours", "log", "unet")
LABELS = {"ours": "ours (cmb-detector)", "log": "LoG (skimage)", "unet": "BasicUNet (MONAI)"}

_T0 = time.perf_counter()


def log(message: str) -> None:
    """Progress on stderr with the elapsed time (the table goes to stdout)."""
    elapsed = time.perf_counter() - _T0
    print(f"[{int(elapsed // 60):3d}:{int(elapsed % 60):02d}] {message}", file=sys.stderr, flush=True)


# =============================================================================== cases


def load_case(path: str | Path, truth: bool = False) -> tuple[Any, Any, np.ndarray | None]:
    """(magnitude Volume, phase Volume, truth instances or None) from a case file."""
    import nibabel as nib

    from napari_neuroreview.core.io.nifti import volume_from_image

    with np.load(path) as z:
        affine = z["affine"]
        magnitude = volume_from_image(nib.Nifti1Image(z["magnitude"], affine))
        phase = volume_from_image(nib.Nifti1Image(z["phase"], affine)) if z["phase"].ndim == 3 else None
        instances = z["instances"].astype(np.int64) if truth else None
    return magnitude, phase, instances


def load_truth(path: str | Path) -> np.ndarray:
    with np.load(path) as z:
        return z["instances"].astype(np.int64)


def w_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: simulate cases and save magnitude, phase, affine, truth instances and truth metadata.

    Cases come from ``cli_cmb.simulated_case`` (the recipe ``cmb train`` uses): an item with
    ``"randomise": true`` gets its random scanner, others the fixed voxel size given.

    ``cmbs`` (a JSON array: id, diameter_mm, location, region of each true CMB) and
    ``scanner`` (the keyword arguments) ride along as JSON strings, so the stratified
    tables need no second simulation. Speed items are cropped/padded to ``item["shape"]``.
    """
    from napari_neuroreview.cli_cmb import simulated_case

    made = []
    for item in spec["cases"]:
        path = Path(item["path"])
        if path.is_file():
            continue
        fixed: dict[str, Any] = {}
        if not item.get("randomise"):  # the default run's fixed grid
            fixed["voxel_size"] = tuple(item["voxel_size"])
            if item["kind"] == "speed":  # the 256 x 256 x 96 speed scan: a margin of background noise
                fixed["margin_mm"] = SPEED_MARGIN_MM
        t0 = time.perf_counter()
        case, kwargs = simulated_case(item.get("simulator", "phenomenological"), int(item["seed"]),
                                      bool(item.get("randomise")), **fixed)
        affine = np.asarray(case.magnitude.affine, float)
        magnitude = np.asarray(case.magnitude.dataobj)
        phase = np.asarray(case.phase.dataobj, dtype=np.float32) if case.phase is not None else np.zeros(0, np.float32)
        instances = np.asarray(case.truth["instances"].dataobj).astype(np.uint16)
        if item["kind"].startswith("speed"):
            shape = tuple(item.get("shape", SPEED_SHAPE))
            magnitude, new_affine = common.crop_or_pad(magnitude, affine, shape)
            phase, _ = common.crop_or_pad(phase, affine, shape)
            instances, _ = common.crop_or_pad(instances, affine, shape)
            affine = new_affine
        cmbs = [{"id": int(c["id"]), "diameter_mm": float(c["diameter_mm"]), "location": str(c["location"]),
                 "region": str(c["region"])} for c in case.truth["cmbs"]]
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, magnitude=magnitude, phase=phase, affine=affine, instances=instances,
                 cmbs=np.array(json.dumps(cmbs)), scanner=np.array(json.dumps(common.clean_json(kwargs))))
        os.replace(tmp, path)
        made.append({"path": str(path), "seconds": time.perf_counter() - t0, "shape": list(magnitude.shape)})
    return {"made": made}


# =============================================================================== payloads


def payload(instances: np.ndarray, ids: np.ndarray, ijk: np.ndarray, scores: np.ndarray, affine: np.ndarray,
            n_candidates: int = 0) -> dict[str, Any]:
    """A method's detections on one scan, compact (sparse labels) and method-independent."""
    ijk = np.asarray(ijk, float).reshape(-1, 3)
    affine = np.asarray(affine, float)
    flat = np.flatnonzero(instances)
    labels = instances.ravel()[flat]
    volumes = np.bincount(labels.astype(np.int64), minlength=int(ids.max()) + 1 if len(ids) else 1)
    voxel_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    return {
        "ids": np.asarray(ids, np.int64), "ijk": ijk, "world": ijk @ affine[:3, :3].T + affine[:3, 3],
        "score": np.asarray(scores, float), "volume_mm3": np.array([volumes[i] * voxel_mm3 for i in ids], float),
        "flat": flat.astype(np.int64), "labels": labels.astype(np.uint16), "shape": tuple(instances.shape),
        "affine": affine, "n_candidates": int(n_candidates),
    }


def result_from_payload(p: dict[str, Any], method: str, threshold: float) -> Any:
    """A ``CMBResult`` (what ``evaluate.evaluate_result`` scores) from any method's payload."""
    from napari_neuroreview.core.tasks.cmb.detect import CMBDetection, CMBResult

    instances = np.zeros(p["shape"], np.uint16)
    instances.ravel()[p["flat"]] = p["labels"]
    detections = [
        CMBDetection(id=int(i), world_ras_mm=tuple(float(v) for v in w), voxel_ijk=tuple(float(v) for v in c),
                     score=float(s), volume_mm3=float(v))
        for i, w, c, s, v in zip(p["ids"], p["world"], p["ijk"], p["score"], p["volume_mm3"])
    ]
    return CMBResult(detections=detections, instances=instances, image_path=None, image_sha256="",
                     affine=p["affine"], model={"name": method, "version": ""}, threshold=float(threshold),
                     device="", n_candidates=p["n_candidates"])


# =============================================================================== methods


class Ours:
    """(a) The plugin's detector, at its model card's threshold."""

    def __init__(self, spec: dict[str, Any], device: str) -> None:
        from napari_neuroreview.core.tasks.cmb.model import (
            card_threshold,
            load_detector,
        )
        from napari_neuroreview.core.tasks.cmb.train import SWEEP_FLOOR

        self.detector = load_detector(spec.get("version"), device=device, roots=[Path(spec["weights"])])
        self.threshold = card_threshold(self.detector.card)
        self.sweep_threshold = min(SWEEP_FLOOR, self.threshold)

    def _run(self, magnitude: Any, phase: Any, threshold: float) -> dict[str, Any]:
        from napari_neuroreview.core.progress import run_to_completion
        from napari_neuroreview.core.tasks.cmb.detect import run

        r = run_to_completion(run(magnitude, phase, self.detector, threshold=threshold))
        ids = np.array([d.id for d in r.detections], np.int64)
        ijk = np.array([d.voxel_ijk for d in r.detections], float).reshape(-1, 3)
        return payload(r.instances, ids, ijk, np.array([d.score for d in r.detections]), r.affine, r.n_candidates)

    def detect(self, magnitude: Any, phase: Any) -> dict[str, Any]:
        return self._run(magnitude, phase, self.threshold)

    def sweep(self, magnitude: Any, phase: Any) -> dict[str, Any]:
        return self._run(magnitude, phase, self.sweep_threshold)


def log_responses(image: np.ndarray, centres: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """``blob_log``'s scale-normalised response at each blob (``-LoG * mean(sigma)**2``).

    ``blob_log`` returns positions and sigmas but not the response its ``threshold``
    compares, so it is recomputed here with the same filter: on a crop holding the
    Gaussian's full support (``truncate=4``) for a few blobs, on the whole image once per
    sigma when many blobs share it.
    """
    from scipy import ndimage

    out = np.zeros(len(centres), float)
    keys = [tuple(np.round(s, 6)) for s in np.asarray(sigmas, float)]
    for key in set(keys):
        rows = [i for i, k in enumerate(keys) if k == key]
        sigma = np.asarray(key, float)
        norm = float(np.mean(sigma)) ** 2
        if len(rows) > 300:
            full = ndimage.gaussian_laplace(image, sigma)
            out[rows] = -full[tuple(np.asarray(centres, int)[rows].T)] * norm
            continue
        half = np.ceil(4.0 * sigma + 0.5).astype(int) + 2
        for i in rows:
            c = np.asarray(centres[i], int)
            lo = np.maximum(c - half, 0)
            hi = np.minimum(c + half + 1, image.shape)
            crop = image[tuple(slice(a, b) for a, b in zip(lo, hi))]
            out[i] = -ndimage.gaussian_laplace(crop, sigma)[tuple(c - lo)] * norm
    return out


def paint_ellipsoids(shape: tuple[int, ...], centres: np.ndarray, radii_vox: np.ndarray,
                     overlap: float) -> tuple[np.ndarray, list[int]]:
    """Instance labels of ellipsoids, in the given order; duplicates dropped as ``detect`` does.

    A blob whose centre is already labelled, or whose ellipsoid overlaps labelled voxels by
    more than ``overlap``, is a duplicate; a kept one gets its free voxels. Returns the
    labels (id = kept rank + 1) and the kept row indices.
    """
    instances = np.zeros(shape, np.uint16)
    kept: list[int] = []
    for row, (c, r) in enumerate(zip(np.asarray(centres, int), np.asarray(radii_vox, float))):
        if instances[tuple(c)] != 0:
            continue
        reach = np.ceil(r).astype(int)
        lo = np.maximum(c - reach, 0)
        hi = np.minimum(c + reach + 1, shape)
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        inside = sum(((g - ci) / max(ri, 1e-6)) ** 2 for g, ci, ri in zip(grids, c, r)) <= 1.0
        inside[tuple(c - lo)] = True
        region = instances[tuple(slice(a, b) for a, b in zip(lo, hi))]
        if (region[inside] != 0).mean() > overlap:
            continue
        kept.append(row)
        region[inside & (region == 0)] = len(kept)
        if len(kept) >= np.iinfo(np.uint16).max:
            break
    return instances, kept


class LoG:
    """(b) Laplacian-of-Gaussian blob detection on the inverted local contrast."""

    def __init__(self, spec: dict[str, Any], device: str) -> None:
        self.threshold = float(spec.get("threshold") or spec["log_sweep_threshold"])
        self.sweep_threshold = float(spec["log_sweep_threshold"])
        self.radii_mm = tuple(spec["log_radii_mm"])
        self.num_sigma = int(spec["log_num_sigma"])
        self.smooth_mm = float(spec["log_smooth_mm"])
        self.erode_mm = float(spec["log_erode_mm"])

    def _run(self, magnitude: Any, threshold: float) -> dict[str, Any]:
        from scipy import ndimage
        from skimage.feature import blob_log

        from napari_neuroreview.core.tasks.cmb.candidates import (
            head_mask,
            local_contrast,
        )
        from napari_neuroreview.core.tasks.cmb.detect import DUPLICATE_OVERLAP

        data = np.asarray(magnitude.data, np.float32)
        zooms = np.asarray(magnitude.zooms, float)
        mask = head_mask(data, magnitude.zooms)
        contrast = local_contrast(data, magnitude.zooms, mask)
        if self.smooth_mm > 0:  # the light denoising the detector's own screen uses
            contrast = ndimage.gaussian_filter(contrast, self.smooth_mm / zooms)
        if self.erode_mm > 0:  # keep off the dark rim where the mask meets the background
            mask = ndimage.distance_transform_edt(mask, sampling=zooms) >= self.erode_mm
        image = (np.clip(1.0 - contrast, 0.0, 1.0) * mask).astype(np.float32)
        # sigma = r / sqrt(3) for a 3D blob of radius r; per axis in voxels (anisotropic grids)
        min_sigma = self.radii_mm[0] / math.sqrt(3) / zooms
        max_sigma = self.radii_mm[1] / math.sqrt(3) / zooms
        blobs = blob_log(image, min_sigma=min_sigma, max_sigma=max_sigma, num_sigma=self.num_sigma,
                         threshold=threshold, overlap=0.5, log_scale=True, exclude_border=False)
        blobs = np.asarray(blobs, float).reshape(-1, 6)
        centres = np.rint(blobs[:, :3]).astype(int)
        sigmas = blobs[:, 3:]
        inside = mask[tuple(centres.T)] if len(centres) else np.zeros(0, bool)
        centres, sigmas = centres[inside], sigmas[inside]
        scores = log_responses(image, centres, sigmas)
        order = np.argsort(-scores, kind="stable")[:MAX_DETECTIONS]
        instances, kept = paint_ellipsoids(image.shape, centres[order], sigmas[order] * math.sqrt(3),
                                           DUPLICATE_OVERLAP)
        rows = order[kept]
        return payload(instances, np.arange(1, len(rows) + 1), centres[rows], scores[rows], magnitude.affine,
                       n_candidates=len(blobs))

    def detect(self, magnitude: Any, phase: Any) -> dict[str, Any]:
        return self._run(magnitude, self.threshold)

    def sweep(self, magnitude: Any, phase: Any) -> dict[str, Any]:
        return self._run(magnitude, self.sweep_threshold)


def unet_channels(magnitude: Any, phase: Any) -> tuple[np.ndarray, np.ndarray]:
    """(3, X, Y, Z) [contrast, phase, has-phase] and the head mask.

    Exactly what ``channels.make_channels`` gives the detector (same normalisation), made
    without its candidate search, which BasicUNet does not need.
    """
    from napari_neuroreview.core.tasks.cmb.candidates import head_mask, local_contrast
    from napari_neuroreview.core.tasks.cmb.channels import phase_radians

    data = np.asarray(magnitude.data, np.float32)
    mask = head_mask(data, magnitude.zooms)
    contrast = np.clip(local_contrast(data, magnitude.zooms, mask), 0.0, 2.0) * mask
    out = np.zeros((3, *data.shape), np.float32)
    out[0] = contrast
    if phase is not None:
        out[1] = phase_radians(phase.data) * mask
        out[2] = 1.0
    return out, mask


def build_unet(features: tuple[int, ...]) -> Any:
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=3, in_channels=3, out_channels=1, features=tuple(int(f) for f in features))


def components(prob: np.ndarray, threshold: float, affine: np.ndarray) -> dict[str, Any]:
    """Connected components of ``prob >= threshold``: score = max prob, centre = centroid."""
    from scipy import ndimage

    labels, n = ndimage.label(prob >= threshold)
    if n == 0:
        return payload(np.zeros(prob.shape, np.uint16), np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros(0), affine)
    ids = np.arange(1, n + 1)
    scores = np.asarray(ndimage.maximum(prob, labels, ids), float)
    order = np.argsort(-scores, kind="stable")[:MAX_DETECTIONS]
    centres = np.array(ndimage.center_of_mass(np.ones(prob.shape, np.float32), labels, ids[order])).reshape(-1, 3)
    lut = np.zeros(n + 1, np.uint16)
    lut[ids[order]] = np.arange(1, len(order) + 1)
    return payload(lut[labels], np.arange(1, len(order) + 1), centres, scores[order], affine, n_candidates=n)


class UNet:
    """(c) MONAI BasicUNet, sliding-window inference, thresholded probability, components."""

    def __init__(self, spec: dict[str, Any], device: str) -> None:
        import torch

        state = torch.load(spec["unet_weights"], map_location="cpu", weights_only=True)
        self.device = torch.device(device)
        self.net = build_unet(spec["unet_features"])
        self.net.load_state_dict(state["state_dict"])
        self.net = self.net.to(self.device, memory_format=torch.channels_last_3d).eval()
        self.train_zooms = np.asarray(state["train_zooms"], float)
        self.threshold = float(spec.get("threshold") or 0.5)
        self.sweep_level = min(UNET_SWEEP_LEVEL, self.threshold)
        self._last: tuple[int, np.ndarray] | None = None
        self.roi = (int(spec["unet_roi"]),) * 3
        self.overlap = float(spec["unet_overlap"])
        self.sw_batch = int(spec["sw_batch"])

    def probability(self, magnitude: Any, phase: Any) -> np.ndarray:
        """Foreground probability on the scan's grid (resampled to the training spacing and back)."""
        import torch
        from monai.inferers import sliding_window_inference
        from scipy import ndimage

        channels, mask = unet_channels(magnitude, phase)
        factors = np.asarray(magnitude.zooms, float) / self.train_zooms
        resample = bool(np.any(np.abs(factors - 1.0) > 0.01))
        if resample:
            channels = np.stack([ndimage.zoom(c, factors, order=1) for c in channels])
        x = torch.from_numpy(channels)[None].to(self.device)
        with torch.inference_mode():
            logits = sliding_window_inference(x, self.roi, self.sw_batch, self.net, overlap=self.overlap,
                                              mode="gaussian")
            prob = torch.sigmoid(logits)[0, 0].float().cpu().numpy()
        if resample:
            prob = ndimage.zoom(prob, np.asarray(mask.shape) / np.asarray(prob.shape), order=1)
            prob, _ = common.crop_or_pad(prob, np.eye(4), mask.shape)
        return prob * mask

    def detect(self, magnitude: Any, phase: Any) -> dict[str, Any]:
        prob = self.probability(magnitude, phase)
        self._last = (id(magnitude), prob)
        return components(prob, self.threshold, magnitude.affine)

    def sweep(self, magnitude: Any, phase: Any) -> dict[str, Any]:
        """Components at a lower level (hysteresis: kept when their peak passes the swept score)."""
        prob = self._last[1] if self._last and self._last[0] == id(magnitude) else self.probability(magnitude, phase)
        return components(prob, self.sweep_level, magnitude.affine)


RUNNERS = {"ours": Ours, "log": LoG, "unet": UNet}


# =============================================================================== workers


def _threads(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(int(spec["threads"]))


def w_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: memory of an interpreter that only imports (reference for the peaks)."""
    import torch  # noqa: F401

    if spec["imports"] == "full":
        import monai.inferers
        import monai.networks.nets  # noqa: F401
        import skimage.feature  # noqa: F401

        import napari_neuroreview.core.tasks.cmb.detect  # noqa: F401
    return {"memory": common.peak_memory()}


def unet_train_zooms(paths: list[str]) -> np.ndarray:
    """The spacing BasicUNet trains and infers at: the scans' own when they share one.

    Randomised scanners (``--loso``) differ in voxel size and in which stored axis is the
    thick one, so there a per-axis median means nothing: every scan is resampled to an
    isotropic grid at the median of the scans' geometric-mean voxel edge.
    """
    zooms = [np.sqrt((np.load(p)["affine"][:3, :3] ** 2).sum(axis=0)) for p in paths]
    if all(np.allclose(z, zooms[0], rtol=0.01) for z in zooms):
        return np.asarray(zooms[0], float)
    edge = float(np.median([np.prod(z) ** (1.0 / 3.0) for z in zooms]))
    return np.full(3, edge)


def w_train_unet(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: train BasicUNet on patches of the training phantoms (DiceCE, AdamW)."""
    import torch
    from monai.losses import DiceCELoss
    from scipy import ndimage

    _threads(spec)
    seed = int(spec["seed"])
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    size = int(spec["patch"])
    t0 = time.perf_counter()
    scans = []
    zooms = unet_train_zooms(spec["cases"])
    for path in spec["cases"]:
        magnitude, phase, instances = load_case(path, truth=True)
        channels, mask = unet_channels(magnitude, phase)
        factors = np.asarray(magnitude.zooms, float) / zooms
        if np.any(np.abs(factors - 1.0) > 0.01):  # the grid UNet.probability resamples every scan to
            channels = np.stack([ndimage.zoom(c, factors, order=1) for c in channels])
            mask = ndimage.zoom(mask.astype(np.uint8), factors, order=0).astype(bool)
            instances = ndimage.zoom(instances, factors, order=0)
        box = ndimage.find_objects(mask.astype(np.uint8))[0]
        box = tuple(slice(max(s.start - 8, 0), min(s.stop + 8, n)) for s, n in zip(box, mask.shape))
        channels, label, mask = channels[(slice(None), *box)], instances[box] > 0, mask[box]
        pad = [(0, max(0, size - n)) for n in label.shape]
        channels = np.pad(channels, [(0, 0), *pad])
        label, mask = np.pad(label, pad), np.pad(mask, pad)
        ids = [int(i) for i in np.unique(instances[box]) if i]
        cmbs = np.array(ndimage.center_of_mass(np.ones(label.shape, np.float32), np.pad(instances[box], pad),
                                               ids)).reshape(-1, 3)
        head = np.argwhere(mask)
        head = head[rng.choice(len(head), min(len(head), 50_000), replace=False)]
        scans.append({"x": channels, "y": label.astype(np.float32), "cmbs": cmbs, "head": head, "n_cmb": len(ids)})
    prep_s = time.perf_counter() - t0
    with_cmb = [s for s in scans if len(s["cmbs"])]

    def sample() -> tuple[np.ndarray, np.ndarray]:
        if with_cmb and rng.random() < 0.5:  # around a CMB (not always centred)
            scan = with_cmb[rng.integers(len(with_cmb))]
            centre = scan["cmbs"][rng.integers(len(scan["cmbs"]))] + rng.uniform(-size / 4, size / 4, 3)
        else:  # anywhere in the head
            scan = scans[rng.integers(len(scans))]
            centre = scan["head"][rng.integers(len(scan["head"]))].astype(float)
        shape = np.asarray(scan["y"].shape)
        start = np.clip(np.rint(centre).astype(int) - size // 2, 0, shape - size)
        sl = tuple(slice(a, a + size) for a in start)
        x, y = scan["x"][(slice(None), *sl)], scan["y"][sl]
        for axis in (0, 1):  # left-right / front-back flips keep B0 (z) as it is
            if rng.random() < 0.5:
                x, y = np.flip(x, axis + 1), np.flip(y, axis)
        return np.ascontiguousarray(x), np.ascontiguousarray(y)[None]

    net = build_unet(spec["unet_features"]).to(memory_format=torch.channels_last_3d).train()
    optimiser = torch.optim.AdamW(net.parameters(), lr=float(spec["lr"]))
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    losses = []
    t1 = time.perf_counter()
    for step in range(int(spec["steps"])):
        pairs = [sample() for _ in range(int(spec["batch"]))]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(memory_format=torch.channels_last_3d)
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))
        loss = loss_fn(net(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if (step + 1) % max(1, int(spec["steps"]) // 10) == 0:
            print(f"step {step + 1}: loss {np.mean(losses[-20:]):.4f}", flush=True)
    train_s = time.perf_counter() - t1
    net = net.to(memory_format=torch.contiguous_format)
    torch.save({"state_dict": {k: v.contiguous() for k, v in net.state_dict().items()},
                "train_zooms": [float(z) for z in zooms]}, spec["unet_weights"])
    return {
        "prep_seconds": prep_s, "train_seconds": train_s, "steps": int(spec["steps"]),
        "seconds_per_step": train_s / max(1, int(spec["steps"])),
        "loss_first_20": float(np.mean(losses[:20])), "loss_last_20": float(np.mean(losses[-20:])),
        "n_params": int(sum(p.numel() for p in net.parameters())), "n_train_cmbs": sum(s["n_cmb"] for s in scans),
        "memory": common.peak_memory(),
    }


def w_eval(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: run one method on a list of scans; time each scan's operating-point run."""
    _threads(spec)
    t0 = time.perf_counter()
    runner = RUNNERS[spec["method"]](spec, "cpu")
    load_s = time.perf_counter() - t0
    records = []
    for path in spec["cases"]:
        magnitude, phase, _ = load_case(path)  # the truth stays in the parent
        record: dict[str, Any] = {"path": path, "shape": list(magnitude.shape)}
        if spec.get("mode") == "prob":  # BasicUNet tuning: the probability map only
            record["prob"] = runner.probability(magnitude, phase).astype(np.float16)
        else:
            t1 = time.perf_counter()
            record["op"] = runner.detect(magnitude, phase)
            record["seconds"] = time.perf_counter() - t1
            if spec.get("sweep") and hasattr(runner, "sweep"):
                record["sweep"] = runner.sweep(magnitude, phase)
        records.append(record)
        print(f"{Path(path).name}: {record.get('seconds', 0):.2f} s", flush=True)
    return {"records": records, "model_load_seconds": load_s, "threshold": getattr(runner, "threshold", None),
            "memory": common.peak_memory(), "loadavg_at_end": common.machine_info().get("loadavg_1_5_15")}


def w_speed(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: best-of-N time of one method on the 256 x 256 x 96 volume, on one device."""
    import torch

    _threads(spec)
    device = spec["device"]
    runner = RUNNERS[spec["method"]](spec, device)
    magnitude, phase, _ = load_case(spec["case"])
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    if sync:
        torch.cuda.reset_peak_memory_stats()
    found: list[int] = []
    times = common.time_repeated(lambda: found.append(len(runner.detect(magnitude, phase)["ids"])),
                                 repeats=int(spec["repeats"]), warmup=1, sync=sync)
    out = {"times": times, "best": min(times), "median": statistics.median(times), "shape": list(magnitude.shape),
           "n_detections": found[-1], "memory": common.peak_memory(), "device": device,
           "loadavg_at_end": common.machine_info().get("loadavg_1_5_15")}
    if sync:
        out["cuda_peak_gib"] = torch.cuda.max_memory_allocated() / common.GIB
        out["cuda_name"] = torch.cuda.get_device_name()
    return out


def w_train_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: train our detector (``--loso``; the code lives in ``_cmb_loso``)."""
    from _cmb_loso import w_train_ours as train

    return train(spec)


WORKERS = {"generate": w_generate, "baseline": w_baseline, "train_unet": w_train_unet, "eval": w_eval,
           "speed": w_speed, "train_ours": w_train_ours}


def worker_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    common.write_answer(spec, WORKERS[spec["task"]](spec))


# =============================================================================== scoring


def score_cases(records: list[dict[str, Any]], truths: list[np.ndarray], method: str, threshold: float,
                key: str = "op") -> list[Any]:
    from napari_neuroreview.core.tasks.cmb.evaluate import evaluate_result

    return [evaluate_result(result_from_payload(r[key], method, threshold), t) for r, t in zip(records, truths)]


def choose_threshold(thresholds: list[float], cases_at: Any) -> dict[str, Any]:
    """Best sensitivity at <= 1 FP/subject (ties: higher threshold); if none, best F1."""
    from napari_neuroreview.core.metrics import summarize

    rows = []
    for t in sorted({float(x) for x in thresholds}):
        s = summarize(cases_at(t))
        rows.append({"threshold": t, "sensitivity": s["sensitivity"], "fp_per_subject": s["fp_per_subject"],
                     "f1_pooled": s["f1_pooled"]})
    num = lambda v: v if v is not None and math.isfinite(v) else -1.0
    ok = [r for r in rows if r["fp_per_subject"] <= TARGETS["max_fp_per_subject"] and num(r["sensitivity"]) > 0]
    if ok:
        best = max(ok, key=lambda r: (num(r["sensitivity"]), r["threshold"]))
        rule = "best sensitivity at <= 1 FP/subject on the tuning set"
    else:
        best = max(rows, key=lambda r: (num(r["f1_pooled"]), r["threshold"]))
        rule = "best F1 on the tuning set (no threshold reached <= 1 FP/subject)"
    return {"threshold": best["threshold"], "rule": rule, "at_choice": best, "grid": rows}


def tune_log(records: list[dict[str, Any]], truths: list[np.ndarray]) -> dict[str, Any]:
    """LoG threshold from the low-threshold runs on the tuning scans (detections filtered by response)."""
    from napari_neuroreview.core.metrics import operating_point
    from napari_neuroreview.core.tasks.cmb.evaluate import at_threshold, evaluate_result

    results = [result_from_payload(r["op"], "log", 0.0) for r in records]
    swept = [evaluate_result(r, t) for r, t in zip(results, truths)]
    scores = np.concatenate([r["op"]["score"] for r in records] + [np.zeros(0)])
    grid = list(np.quantile(scores, np.linspace(0.0, 0.995, 48))) if scores.size else []
    point = operating_point(swept, TARGETS["max_fp_per_subject"])
    if math.isfinite(point["threshold"]):
        grid.append(point["threshold"])
    if not grid:
        return {"threshold": float("nan"), "rule": "no blobs on the tuning set", "grid": []}
    return choose_threshold(grid, lambda t: [evaluate_result(at_threshold(r, t), tr) for r, tr in zip(results, truths)])


def tune_unet(records: list[dict[str, Any]], truths: list[np.ndarray], affines: list[np.ndarray]) -> dict[str, Any]:
    """BasicUNet probability threshold: components at each grid value, scored on the tuning scans."""
    from napari_neuroreview.core.tasks.cmb.evaluate import evaluate_result

    probs = [r["prob"].astype(np.float32) for r in records]

    def cases_at(t: float) -> list[Any]:
        return [evaluate_result(result_from_payload(components(p, t, a), "unet", t), tr)
                for p, a, tr in zip(probs, affines, truths)]

    return choose_threshold(list(UNET_GRID), cases_at)


def method_report(answer: dict[str, Any], truths: list[np.ndarray], method: str, threshold: float) -> dict[str, Any]:
    from napari_neuroreview.core.metrics import froc, summarize

    records = answer["records"]
    op = score_cases(records, truths, method, threshold, "op")
    swept = score_cases(records, truths, method, threshold, "sweep") if "sweep" in records[0] else op
    summary = summarize(op)
    curve = froc(swept, FROC_POINTS)
    seconds = [r["seconds"] for r in records]
    return {
        "threshold": threshold, "summary": summary,
        "froc_at_fp": {str(k): v for k, v in curve["at_fp"].items()},
        "froc_source": {"ours": "run at SWEEP_FLOOR", "log": "blob_log at --log-sweep-threshold",
                        "unet": f"components at prob >= {min(UNET_SWEEP_LEVEL, threshold):g}"}.get(method, ""),
        "seconds_per_case": seconds, "seconds_median": statistics.median(seconds),
        "peak_gib": answer["memory"]["peak_gib"], "memory": answer["memory"],
        "model_load_seconds": answer["model_load_seconds"], "loadavg_at_end": answer.get("loadavg_at_end"),
        "per_case": [{"case": Path(r["path"]).name, "shape": r["shape"], "seconds": r["seconds"], "tp": c.tp,
                      "fp": c.fp, "fn": c.fn, "n_candidates": r["op"]["n_candidates"],
                      "dice": c.dice} for r, c in zip(records, op)],
    }


# =============================================================================== output


def _mean_sd(summary: dict[str, Any], key: str) -> str:
    m, s = summary.get(f"{key}_mean"), summary.get(f"{key}_sd")
    if m is None or not math.isfinite(m):
        return "-"
    return f"{m:.3f} ± {s:.3f}" if s is not None and math.isfinite(s) else f"{m:.3f}"


def section_rows(title: str, reports: dict[str, dict[str, Any]], sources: dict[str, str]) -> list[list[str]]:
    rows: list[list[str]] = [[title]]
    get = lambda m, k: reports[m]["summary"][k] if m in reports else None
    rows.append(["  score threshold"] + [f"{common.fmt(reports[m]['threshold'])} ({sources[m]})" if m in reports
                                         else "-" for m in METHODS])
    for label, key, digits in (("  sensitivity, pooled over CMBs", "sensitivity", 3),
                               ("  FP / subject, mean", "fp_per_subject", 2),
                               ("  precision, pooled over detections", "precision", 3), ("  F1, pooled", "f1_pooled", 3),
                               ("  F1 per subject, median", "f1_per_subject_median", 3),
                               ("  count difference (pred - true) per subject, median",
                                "count_difference_per_subject_median", 1)):
        rows.append([label] + [common.fmt(get(m, key), digits) for m in METHODS])
    rows.append(["  Dice per matched CMB, mean ± SD"] + [_mean_sd(reports[m]["summary"], "dice_per_cmb") if m in reports
                                                        else "-" for m in METHODS])
    rows.append(["  IoU per matched CMB, mean ± SD"] + [_mean_sd(reports[m]["summary"], "iou_per_cmb") if m in reports
                                                       else "-" for m in METHODS])
    rows.append(["  Dice per subject (whole masks), mean ± SD"] + [
        _mean_sd(reports[m]["summary"], "dice_per_subject") if m in reports else "-" for m in METHODS])
    rows.append(["  FROC sensitivity @ 0.5 / 1 / 2 FP/subj"] + [
        " / ".join(common.fmt(reports[m]["froc_at_fp"][str(float(k))], 2) for k in FROC_POINTS) if m in reports
        else "-" for m in METHODS])
    rows.append(["  s / case, median (min-max)"] + [
        f"{common.fmt(reports[m]['seconds_median'], 2)} ({min(reports[m]['seconds_per_case']):.2f}-"
        f"{max(reports[m]['seconds_per_case']):.2f})" if m in reports else "-" for m in METHODS])
    rows.append(["  peak memory, GiB (fresh process)"] + [common.fmt(reports[m]["peak_gib"], 2) if m in reports
                                                         else "-" for m in METHODS])
    rows.append(["  machine load (1-min average) after"] + [
        common.fmt((reports[m].get("loadavg_at_end") or [None])[0], 2) if m in reports else "-" for m in METHODS])
    return rows


def target_lines(results: dict[str, Any]) -> list[str]:
    """PASS/FAIL per target, for ours, with the peers' values beside."""
    held = results["heldout"]
    out = []

    def peers(values: dict[str, str]) -> str:
        return "  [" + ", ".join(f"{LABELS[m].split()[0]} {v}" for m, v in values.items() if m != "ours") + "]"

    if "ours" in held:
        s = held["ours"]["summary"]
        ok = (s["sensitivity"] or 0) >= TARGETS["sensitivity"] and s["fp_per_subject"] <= TARGETS["max_fp_per_subject"]
        out.append(f"{'PASS' if ok else 'FAIL'}  sensitivity >= {TARGETS['sensitivity']:.2f} at <= "
                   f"{TARGETS['max_fp_per_subject']:.0f} FP/subject: {common.fmt(s['sensitivity'])} at "
                   f"{s['fp_per_subject']:.2f} FP/subject" + peers(
                       {m: f"{common.fmt(held[m]['summary']['sensitivity'])} at "
                           f"{held[m]['summary']['fp_per_subject']:.2f}" for m in held}))
        dice = s["dice_per_cmb_mean"]
        ok = dice is not None and math.isfinite(dice) and dice >= TARGETS["dice"]
        out.append(f"{'PASS' if ok else 'FAIL'}  mean Dice of matched CMBs >= {TARGETS['dice']:.2f}: "
                   f"{common.fmt(dice)} (n={s['n_matched_with_masks']})"
                   + peers({m: common.fmt(held[m]['summary']['dice_per_cmb_mean']) for m in held}))
    speed = results.get("speed", {}).get("cpu", {})
    if "ours" in speed:
        best = speed["ours"]["best"]
        out.append(f"{'PASS' if best <= TARGETS['seconds_256'] else 'FAIL'}  256x256x96 in <= "
                   f"{TARGETS['seconds_256']:.0f} s (CPU, {results['config']['threads']} threads): {best:.2f} s"
                   + peers({m: f"{speed[m]['best']:.2f} s" for m in speed}))
        peak = speed["ours"]["memory"]["peak_gib"]
        out.append(f"{'PASS' if peak <= TARGETS['peak_gib'] else 'FAIL'}  peak memory <= "
                   f"{TARGETS['peak_gib']:.0f} GiB on 256x256x96: {peak:.2f} GiB"
                   + peers({m: f"{speed[m]['memory']['peak_gib']:.2f} GiB" for m in speed}))
    return out


# =============================================================================== main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from napari_neuroreview.core.registry import SHIPPED_WEIGHTS_ROOT

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS_ROOT,
                   help="registry root holding cmb-detector/<version>/ (default: the package's weights)")
    p.add_argument("--version", default=None, help="detector version (default: the newest under --weights)")
    p.add_argument("--n-cases", type=int, default=8, help="held-out scans at 0.9 x 0.9 x 1.8 mm")
    p.add_argument("--n-highres", type=int, default=2, help="held-out scans at 0.5 x 0.5 x 2.0 mm (0: skip)")
    p.add_argument("--n-tune", type=int, default=4, help="tuning scans (LoG and BasicUNet thresholds)")
    p.add_argument("--n-train-unet", type=int, default=12, help="BasicUNet training scans")
    p.add_argument("--unet-steps", type=int, default=600)
    p.add_argument("--unet-batch", type=int, default=4)
    p.add_argument("--unet-lr", type=float, default=1e-3)
    p.add_argument("--unet-patch", type=int, default=48,
                   help="training patch edge (voxels); 64 doubles the training time")
    p.add_argument("--unet-roi", type=int, default=96, help="sliding-window ROI edge (voxels)")
    p.add_argument("--unet-overlap", type=float, default=0.25)
    p.add_argument("--sw-batch", type=int, default=2, help="sliding-window batch size")
    p.add_argument("--unet-features", default="4,4,8,16,32,4",
                   help="BasicUNet features (chosen so its parameter count is close to ours)")
    p.add_argument("--log-radii-mm", type=float, nargs=2, default=(1.0, 5.0), metavar=("MIN", "MAX"))
    p.add_argument("--log-num-sigma", type=int, default=8)
    p.add_argument("--log-sweep-threshold", type=float, default=0.5,
                   help="blob_log threshold of the low-threshold runs (tuning sweep and FROC)")
    p.add_argument("--log-smooth-mm", type=float, default=0.6,
                   help="Gaussian pre-smoothing of the contrast map (the detector's screen uses 0.6 mm)")
    p.add_argument("--log-erode-mm", type=float, default=3.0,
                   help="ignore the outer rim of the head mask (mm)")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every child")
    p.add_argument("--repeats", type=int, default=3, help="timed runs on 256x256x96 (after one warm-up)")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU timings even when CUDA is present")
    p.add_argument("--json", type=Path, default=None, help="save every number here")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep cases and children's outputs here (reused when present); default: a temp dir")
    p.add_argument("--seed", type=int, default=0, help="BasicUNet training seed")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 2 held-out, 1 high-res, 2 tuning, 3 BasicUNet-training scans, 60 steps")
    p.add_argument("--loso", action="store_true",
                   help="leave-one-simulator-out instead: train ours on each SWI simulator and both, test on both")
    p.add_argument("--loso-train", type=int, default=20, help="--loso: training scans per simulator")
    p.add_argument("--loso-val", type=int, default=6, help="--loso: validation (threshold) scans per simulator")
    p.add_argument("--loso-test", type=int, default=8, help="--loso: test scans per simulator")
    p.add_argument("--card-json", type=Path, default=None,
                   help="--loso: also write our figures per pair here, for `neuroreview cmb train --card-figures`")
    p.add_argument("--card-variant", action="store_true",
                   help="--card-json: the --loso-variant twins' figures (for weights trained with that recipe, "
                        "`cmb train --scanner-augment`), not the baseline's")
    p.add_argument("--loso-only", nargs="+", choices=("A", "B", "A+B"), default=None, metavar="TRAINING",
                   help="--loso: train only these (A, B, A+B); test scans of both simulators are still scored")
    p.add_argument("--loso-variant", default=None, metavar="NAME",
                   help="--loso: also train each selected training with this FitConfig variant (_cmb_loso_plan.VARIANTS: "
                        "scanner_randomised, phase_randomised, magnitude_randomised, phase_magnitude_half, "
                        "scanner_randomised_axial, baseline (no overrides: with --loso-variant-seed, the "
                        "baseline recipe's own spread over seeds); "
                        "e.g. phase_randomised -> 'B+pr' beside 'B') on the same scans, compared in one table")
    p.add_argument("--loso-variant-seed", type=int, default=0, metavar="S",
                   help="--loso-variant: train the twin from seed S (same scans; 'B+pr.s1', its own version) "
                        "for the spread over seeds; 0 is the first twin's seed")
    p.add_argument("--loso-jobs", type=int, default=1,
                   help="--loso: trainings of ours run at once (each with --threads threads; 2 on 2 cores with --threads 1)")
    p.add_argument("--loso-no-unet", action="store_true", help="--loso: leave BasicUNet out (saves its training)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.n_cases, args.n_tune, args.n_train_unet, args.unet_steps = 2, 2, 3, 60
        args.n_highres = min(args.n_highres, 1)
        args.loso_train, args.loso_val, args.loso_test = 3, 2, 2
    args.unet_features = tuple(int(v) for v in str(args.unet_features).split(","))
    return args


def worker_base(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """What every child worker's spec carries (method settings from the command line)."""
    return {
        "threads": args.threads, "weights": str(args.weights), "version": args.version,
        "unet_features": list(args.unet_features), "unet_roi": args.unet_roi, "unet_overlap": args.unet_overlap,
        "sw_batch": args.sw_batch, "log_radii_mm": list(args.log_radii_mm), "log_num_sigma": args.log_num_sigma,
        "log_smooth_mm": args.log_smooth_mm, "log_erode_mm": args.log_erode_mm,
        "log_sweep_threshold": args.log_sweep_threshold, "unet_weights": str(work / "basicunet.pt"),
    }


def loso_main(args: argparse.Namespace) -> int:
    """``--loso``: the leave-one-simulator-out run (``_cmb_loso``), with this file's header and workdir."""
    import monai
    import skimage
    import torch
    from _cmb_loso import run_loso
    from _cmb_loso_plan import request_problem

    problem = request_problem(args.loso_only, args.loso_variant, args.loso_variant_seed)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if args.card_variant and (args.loso_variant is None or args.card_json is None):
        print("--card-variant needs --loso-variant (the recipe) and --card-json (where to write)", file=sys.stderr)
        return 2

    common.print_run_header(f"torch {torch.__version__}, MONAI {monai.__version__}, "
                            f"scikit-image {skimage.__version__}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cmb-loso-"))
    work.mkdir(parents=True, exist_ok=True)
    code = run_loso(args, Path(__file__).resolve(), work)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    if args.loso:
        return loso_main(args)
    import monai
    import skimage
    import torch

    from napari_neuroreview.core.models.cmb_net import CMBPatchNet
    from napari_neuroreview.core.registry import installed_versions
    from napari_neuroreview.core.tasks.cmb.model import MODEL_NAME, card_threshold

    machine = common.print_run_header(f"torch {torch.__version__}, MONAI {monai.__version__}, "
                                      f"scikit-image {skimage.__version__}")

    versions = [c for _, c in installed_versions(MODEL_NAME, [args.weights])]
    if args.version:
        versions = [c for c in versions if c.version == args.version]
    if not versions:
        print(f"error: no cmb-detector{' ' + args.version if args.version else ''} under {args.weights}; "
              "train one (README) or pass --weights ROOT", file=sys.stderr)
        return 2
    card = versions[-1]
    args.version = card.version
    ours_params = sum(p.numel() for p in CMBPatchNet(width=int(card.config.get("width", 8))).parameters())

    work = args.workdir or Path(tempfile.mkdtemp(prefix="cmb-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).resolve()
    gpu = (not args.no_gpu) and torch.cuda.is_available()
    base_spec = worker_base(args, work)

    # ---------------------------------------------------------------- 1. scans
    plan = ([("test", SEED_BASE["test"] + i, CLINICAL_MM) for i in range(args.n_cases)]
            + [("highres", SEED_BASE["highres"] + i, HIGHRES_MM) for i in range(args.n_highres)]
            + [("tune", SEED_BASE["tune"] + i, CLINICAL_MM) for i in range(args.n_tune)]
            + [("unet_train", SEED_BASE["unet_train"] + i, CLINICAL_MM) for i in range(args.n_train_unet)]
            + [("speed", SEED_BASE["speed"], CLINICAL_MM)])
    cases = [{"kind": k, "seed": s, "voxel_size": list(v), "path": str(work / f"case_{k}_{s}.npz")} for k, s, v in plan]
    paths = {k: [c["path"] for c in cases if c["kind"] == k] for k in SEED_BASE}
    todo = [c for c in cases if not Path(c["path"]).is_file()]
    log(f"simulating {len(todo)} phantom scans ({len(cases) - len(todo)} reused) in 2 processes -> {work}")
    t0 = time.perf_counter()
    jobs = [common.start_worker(script, {"task": "generate", "cases": todo[i::2]}, work, f"generate{i}")
            for i in range(2) if todo[i::2]]
    for job in jobs:
        common.finish_worker(*job)
    simulate_s = time.perf_counter() - t0

    # ---------------------------------------------------------------- 2. reference memory
    log("reference memory of import-only children")
    baseline = {kind: common.run_worker(script, {**base_spec, "task": "baseline", "imports": kind}, work,
                                        f"baseline_{kind}")["memory"] for kind in ("minimal", "full")}

    # ---------------------------------------------------------------- 3. BasicUNet training
    log(f"training BasicUNet {args.unet_features} on {args.n_train_unet} scans: {args.unet_steps} steps, "
        f"batch {args.unet_batch}, {args.unet_patch}^3 patches")
    training = common.run_worker(script, {**base_spec, "task": "train_unet", "cases": paths["unet_train"],
                                          "steps": args.unet_steps, "batch": args.unet_batch, "lr": args.unet_lr,
                                          "patch": args.unet_patch, "seed": args.seed}, work, "train_unet")
    log(f"  {training['train_seconds']:.0f} s ({training['seconds_per_step']:.2f} s/step), loss "
        f"{training['loss_first_20']:.3f} -> {training['loss_last_20']:.3f}")

    # ---------------------------------------------------------------- 4. tuning
    tune_truth = [load_truth(p) for p in paths["tune"]]
    tune_affines = [np.load(p)["affine"] for p in paths["tune"]]
    log(f"tuning LoG and BasicUNet thresholds on {len(paths['tune'])} tuning scans")
    log_sweep = common.run_worker(script, {**base_spec, "task": "eval", "method": "log", "cases": paths["tune"],
                                           "threshold": args.log_sweep_threshold}, work, "tune_log")
    tuning = {"log": tune_log(log_sweep["records"], tune_truth)}
    unet_prob = common.run_worker(script, {**base_spec, "task": "eval", "method": "unet", "cases": paths["tune"],
                                           "mode": "prob"}, work, "tune_unet")
    tuning["unet"] = tune_unet(unet_prob["records"], tune_truth, tune_affines)
    del unet_prob
    thresholds = {"ours": card_threshold(card), "log": tuning["log"]["threshold"],
                  "unet": tuning["unet"]["threshold"]}
    sources = {"ours": "model card", "log": "tuned", "unet": "tuned"}
    for m in ("log", "unet"):
        t = tuning[m]
        log(f"  {m}: threshold {t['threshold']:.4g} ({t['rule']})")

    # ---------------------------------------------------------------- 5. held-out scans
    results: dict[str, Any] = {"heldout": {}, "highres": {}}
    errors: list[str] = []
    for group, key in (("heldout", "test"), ("highres", "highres")):
        if not paths[key]:
            continue
        truths = [load_truth(p) for p in paths[key]]
        for m in METHODS:
            log(f"{group}: {m} on {len(paths[key])} scans")
            if m == "log" and not math.isfinite(thresholds["log"]):
                continue
            try:
                answer = common.run_worker(script, {**base_spec, "task": "eval", "method": m, "cases": paths[key],
                                                    "threshold": thresholds[m], "sweep": True},
                                           work, f"{group}_{m}")
            except common.WorkerError as exc:  # report the others rather than lose the whole run
                log(f"  FAILED: {exc}")
                errors.append(f"{group} {m}: {exc}")
                continue
            results[group][m] = method_report(answer, truths, m, thresholds[m])

    # ---------------------------------------------------------------- 6. speed
    results["speed"] = {"cpu": {}, "cuda": {}}
    devices = ["cpu"] + (["cuda"] if gpu else [])
    for device in devices:
        for m in METHODS:
            if device == "cuda" and m == "log":
                continue  # scikit-image has no GPU path
            log(f"speed {SPEED_SHAPE} on {device}: {m}")
            try:
                results["speed"][device][m] = common.run_worker(
                    script, {**base_spec, "task": "speed", "method": m, "case": paths["speed"][0], "device": device,
                             "threshold": thresholds[m], "repeats": args.repeats}, work, f"speed_{device}_{m}")
            except common.WorkerError as exc:
                log(f"  FAILED: {exc}")
                errors.append(f"speed {device} {m}: {exc}")

    # ---------------------------------------------------------------- 7. report
    results["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"}
    results.update({
        "command": machine.pop("command"), "machine": machine, "machine_load_at_end": common.machine_info().get("loadavg_1_5_15"),
        "detector": {"version": card.version, "threshold": thresholds["ours"], "params": ours_params,
                     "card_metrics": card.metrics, "training_data": card.training_data},
        "basicunet": {"features": list(args.unet_features), "params": training["n_params"], "training": training},
        "tuning": tuning, "thresholds": thresholds, "reference_memory": baseline, "simulate_seconds": simulate_s,
        "seeds": {k: [c["seed"] for c in cases if c["kind"] == k] for k in SEED_BASE},
        "gpu": (torch.cuda.get_device_name() if gpu else None), "errors": errors,
    })
    n_truth = lambda g: next(iter(results[g].values()))["summary"]["n_truth"] if results[g] else 0
    rows: list[list[str]] = []
    rows += section_rows(f"Held-out scans, 0.9 x 0.9 x 1.8 mm: {args.n_cases} scans, {n_truth('heldout')} CMBs "
                         f"(seeds {SEED_BASE['test']}+)", results["heldout"], sources)
    if results["highres"]:
        rows += section_rows(f"Held-out scans, 0.5 x 0.5 x 2.0 mm: {args.n_highres} scans, {n_truth('highres')} "
                             f"CMBs (seeds {SEED_BASE['highres']}+)", results["highres"], sources)
    speed = results["speed"]
    rows.append([(f"One {'x'.join(map(str, SPEED_SHAPE))} volume at 0.9 x 0.9 x 1.8 mm (best of {args.repeats} "
                  f"after a warm-up, fresh process per method)")])
    rows.append([f"  CPU seconds ({args.threads} threads)"] + [
        common.fmt(speed["cpu"][m]["best"], 2) if m in speed["cpu"] else "-" for m in METHODS])
    ref = speed["cpu"].get("ours", {}).get("best")
    rows.append(["  CPU time / ours"] + [f"x{speed['cpu'][m]['best'] / ref:.1f}" if ref and m in speed["cpu"] else "-"
                                         for m in METHODS])
    rows.append(["  peak memory, GiB"] + [common.fmt(speed["cpu"][m]["memory"]["peak_gib"], 2)
                                          if m in speed["cpu"] else "-" for m in METHODS])
    rows.append(["  detections"] + [str(speed["cpu"][m]["n_detections"]) if m in speed["cpu"] else "-"
                                    for m in METHODS])
    rows.append(["  machine load (1-min average) after"] + [
        common.fmt((speed["cpu"][m].get("loadavg_at_end") or [None])[0], 2) if m in speed["cpu"] else "-"
        for m in METHODS])
    if gpu:
        rows.append([f"  GPU seconds ({results['gpu']})"] + [
            common.fmt(speed["cuda"][m]["best"], 3) if m in speed["cuda"] else "n/a" for m in METHODS])
        rows.append(["  GPU peak allocated, GiB"] + [
            common.fmt(speed["cuda"][m]["cuda_peak_gib"], 2) if m in speed["cuda"] else "n/a" for m in METHODS])
    rows.append(["Model"])
    rows.append(["  parameters"] + [f"{ours_params:,}", "none", f"{training['n_params']:,}"])
    rows.append(["  training"] + [
        "shipped weights", f"threshold on {args.n_tune} scans",
        f"{training['train_seconds']:.0f} s, {args.unet_steps} steps, {args.n_train_unet} scans"])
    header = ["", LABELS["ours"].replace("cmb-detector", f"cmb-detector {card.version}"), LABELS["log"],
              LABELS["unet"]]
    print()
    print(common.table(rows, header))
    print()
    if not gpu:
        print("GPU: none on this machine" if not torch.cuda.is_available() else "GPU: skipped (--no-gpu)")
    print(f"Parameters: ours CMBPatchNet(width={card.config.get('width', 8)}) {ours_params:,}; BasicUNet features "
          f"{args.unet_features} {training['n_params']:,} (x{training['n_params'] / ours_params:.2f})")
    print(f"BasicUNet training: {training['train_seconds']:.1f} s for {args.unet_steps} steps "
          f"({training['seconds_per_step']:.2f} s/step, batch {args.unet_batch}, {args.unet_patch}^3, DiceCE, AdamW "
          f"{args.unet_lr:g}) + {training['prep_seconds']:.1f} s data preparation; {training['n_train_cmbs']} CMBs "
          f"in {args.n_train_unet} scans; loss {training['loss_first_20']:.3f} -> {training['loss_last_20']:.3f}")
    print(f"Thresholds: ours {thresholds['ours']:.4g} from its model card (chosen on its own validation scans, "
          f"not re-tuned here); on {args.n_tune} tuning scans (seeds {SEED_BASE['tune']}+): LoG "
          f"{thresholds['log']:.4g} ({tuning['log']['rule']}), BasicUNet {thresholds['unet']:.4g} "
          f"({tuning['unet']['rule']})")
    print("Peak memory = VmHWM of a fresh child process, which includes the Python interpreter and its imports: "
          f"a child that only imports numpy+torch peaks at {baseline['minimal']['peak_gib']:.2f} GiB, one that also "
          f"imports MONAI, scikit-image and the detector at {baseline['full']['peak_gib']:.2f} GiB")
    print("Dice/IoU: per matched CMB (core.metrics.summarize). FROC sweeps each method's score over a low-threshold "
          f"output: ours at SWEEP_FLOOR, LoG at blob_log threshold {args.log_sweep_threshold:g}, BasicUNet components "
          f"of prob >= {min(UNET_SWEEP_LEVEL, thresholds['unet']):g} ranked by peak probability")
    print(f"Simulating {len(todo)} scans took {simulate_s:.0f} s; whole run {time.perf_counter() - _T0:.0f} s; load "
          f"average at the end {results['machine_load_at_end']}")
    for line in errors:
        print(f"ERROR {line.splitlines()[0]} (see {work})")
    print()
    print("Targets (ours; peers in brackets):")
    for line in target_lines(results):
        print("  " + line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(common.clean_json(results), indent=1, allow_nan=False))
        print(f"\nAll numbers: {args.json}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
