"""Tiny synthetic pre/post cohorts for the network model tests (no ICA, no phantoms).

Each (patient, state, network) gets a map on a 12 mm MNI grid = the network's template
times a patient loading, plus a patient-specific smooth pattern (the same pre and post)
and noise, and an AR(1) time course whose coefficient varies by patient. With
``effect > 0`` the post scan loses part of the left-hemisphere loading and its time
course becomes smoother (higher AR coefficient); with ``effect = 0`` pre and post are
drawn from the same distribution, so any above-chance result is a leak.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from napari_neuroreview.core.anatomy import atlas
from napari_neuroreview.core.tasks.networks.features import GridContext, ScanInputs


@functools.lru_cache(maxsize=1)
def tiny_context() -> GridContext:
    """The model grid at 12 mm (13 x 16 x 14): same field of view, 8 x fewer voxels."""
    affine, shape = atlas.model_grid()
    small = affine.copy()
    small[:3, :3] *= 2
    return GridContext.for_grid(small, tuple(int(np.ceil(n / 2)) for n in shape))


def _ar1(rng: np.random.Generator, phi: float, n: int) -> np.ndarray:
    x = np.zeros(n + 20)
    e = rng.standard_normal(n + 20)
    for t in range(1, n + 20):
        x[t] = phi * x[t - 1] + e[t]
    x = x[20:]
    return (x - x.mean()) / x.std()


def synthetic_scans(n_patients: int = 16, effect: float = 1.0, seed: int = 0, n_volumes: int = 90,
                    tr_s: float = 2.0, context: GridContext | None = None) -> list[ScanInputs]:
    """Two scans (pre, post) per patient, all five networks each; labels from ``state`` only."""
    context = context or tiny_context()
    rng = np.random.default_rng(seed)
    x_world = (np.indices(context.shape).reshape(3, -1).T @ context.affine[:3, :3].T
               + context.affine[:3, 3])[:, 0].reshape(context.shape)
    left = x_world < 0
    scans = []
    for p in range(n_patients):
        loading = rng.uniform(0.8, 1.2, size=len(context.networks))
        phi = np.clip(0.35 + rng.normal(0, 0.08, size=len(context.networks)), 0.05, 0.9)
        pattern = [ndimage.gaussian_filter(rng.standard_normal(context.shape), 1.0) * 2.0
                   for _ in context.networks]
        for state in ("pre", "post"):
            inputs = {}
            for k, name in enumerate(context.networks):
                t = context.templates[k] * 3.0 * loading[k]
                a = phi[k]
                if state == "post":
                    t = np.where(left, t * (1.0 - 0.5 * effect), t)
                    a = min(0.95, a + 0.3 * effect)
                m = (t + 0.4 * pattern[k] + rng.normal(0, 0.3, context.shape)) * context.mask
                inputs[name] = (m.astype(np.float32), _ar1(rng, a, n_volumes).astype(np.float32))
            scans.append(ScanInputs(inputs, tr_s, patient=f"sub-{p:03d}", state=state, source=f"sub-{p:03d}/{state}"))
    return scans
