"""Tissue and iron contrast: the noiseless GRE signal of the template, iron nuclei included.

Grey matter, white matter and CSF get ``PD * exp(-TE / T2*)`` (seeded jitter), mixed by
their partial volumes on the 1 mm template; the deep grey nuclei (:data:`NUCLEI_MNI`) are
blended in as soft-edged ellipsoids with their shorter, iron-shortened T2*. The nuclei's
phase and their labels as iron mimics are drawn on the scanner grid by
:func:`~.mimics.add_iron`. Why these numbers: the package docstring
(:mod:`napari_neuroreview.core.phantoms.swi`, *Tissue contrast*).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_neuroreview.core.anatomy import load_mni_anatomy, voxel_to_world, world_to_voxel

#: Deep grey nuclei (right-hemisphere centre, mirrored to the left; MNI152 2009 mm),
#: soft-edged axis-aligned ellipsoids with approximate 3 T T2* (ms) and effective
#: susceptibility after background removal (ppm). Centres from the template (the pallidum
#: is the white-matter-like strip medial to the putamen at x 16-24) and from Seitzman
#: 2018's subcortical ROIs; T2*: globus pallidus ~20 ms (R2* ~ 50/s), substantia nigra and
#: red nucleus ~22-25 ms, dentate ~23 ms, putamen ~32 ms, caudate ~40 ms, thalamus
#: ~44 ms. ``mimic``: labelled as iron in the mimic truth (small, dark, round enough to be
#: mistaken for a bleed on one slice).
NUCLEI_MNI: dict[str, dict[str, Any]] = {
    "putamen": {"centre": (27.0, 2.0, 1.0), "semi_axes": (5.0, 13.0, 8.0), "t2star_ms": 32.0,
                "dchi_ppm": 0.05, "mimic": False},
    "caudate_head": {"centre": (13.0, 13.0, 9.0), "semi_axes": (3.5, 7.0, 7.0), "t2star_ms": 40.0,
                     "dchi_ppm": 0.03, "mimic": False},
    "thalamus": {"centre": (11.0, -18.0, 6.0), "semi_axes": (7.0, 11.0, 7.0), "t2star_ms": 44.0,
                 "dchi_ppm": 0.02, "mimic": False},
    "globus_pallidus": {"centre": (19.5, -4.0, -2.0), "semi_axes": (3.8, 8.0, 5.0), "t2star_ms": 20.0,
                        "dchi_ppm": 0.12, "mimic": True},
    "substantia_nigra": {"centre": (11.0, -18.0, -12.0), "semi_axes": (3.0, 6.0, 2.5), "t2star_ms": 23.0,
                         "dchi_ppm": 0.10, "mimic": True},
    "red_nucleus": {"centre": (5.0, -20.0, -8.5), "semi_axes": (3.0, 3.5, 3.0), "t2star_ms": 24.0,
                    "dchi_ppm": 0.08, "mimic": True},
    "dentate": {"centre": (15.0, -57.0, -35.0), "semi_axes": (5.0, 7.0, 5.0), "t2star_ms": 23.0,
                "dchi_ppm": 0.08, "mimic": True},
}

#: Effective proton density (T1 saturation at SWI's TR folded in) and T2* (ms) at 3 T.
_TISSUE_PD: dict[str, float] = {"csf": 0.86, "gm": 0.80, "wm": 0.69}
_TISSUE_T2STAR_MS: dict[str, float] = {"csf": 300.0, "gm": 52.0, "wm": 44.0}
_NUCLEUS_PD = 0.76
_EDGE_MM = 1.5  # soft edge of the nuclei ellipsoids


def _ellipsoid_weight(pts: np.ndarray, centre: np.ndarray, semi: np.ndarray) -> np.ndarray:
    """Soft inside weight (1 inside, 0 outside, linear over :data:`_EDGE_MM` at the edge)."""
    q = (pts - centre) / semi
    rho = np.linalg.norm(q, axis=-1)
    grad = np.linalg.norm(q / semi, axis=-1) / np.maximum(rho, 1e-6)
    d = (rho - 1.0) / np.maximum(grad, 1e-6)  # first-order signed distance (mm)
    return np.clip(0.5 - d / _EDGE_MM, 0.0, 1.0)


def _template_signal(
    te_ms: float, pd_jitter: np.ndarray, t2_jitter: np.ndarray, iron_jitter: float, iron_on: bool
) -> tuple[np.ndarray, dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Noiseless GRE signal on the 1 mm template: tissue mixture, iron nuclei blended in.

    Each tissue's signal is ``PD * exp(-TE / T2*)`` with seeded jitter (PD +-4 %, T2*
    +-8 %); a voxel's signal is the partial-volume mix of its tissue fractions. Inside a
    nucleus (soft ellipsoid weight ``w``) the parenchyma takes the nucleus's signal:
    ``(1 - w) * S + w * (S_nucleus * (gm + wm) + S_csf * csf)``. One jitter of the
    nuclei's T2* (+-10 %) is shared by both sides, so the iron stays symmetric.
    """
    anat = load_mni_anatomy()
    tissue: dict[str, dict[str, float]] = {}
    for (name, pd), dj, tj in zip(_TISSUE_PD.items(), pd_jitter, t2_jitter):
        t2 = _TISSUE_T2STAR_MS[name] * (1.0 + tj)
        tissue[name] = {"pd": pd * (1.0 + dj), "t2star_ms": t2, "signal": pd * (1.0 + dj) * math.exp(-te_ms / t2)}
    s_csf, s_gm, s_wm = (np.float32(tissue[n]["signal"]) for n in ("csf", "gm", "wm"))
    signal = anat.csf * s_csf + anat.gm * s_gm + anat.wm * s_wm
    nuclei: dict[str, dict[str, float]] = {}
    if not iron_on:
        return signal, tissue, nuclei
    for name, nuc in NUCLEI_MNI.items():
        t2 = nuc["t2star_ms"] * (1.0 + iron_jitter)
        s_nuc = _NUCLEUS_PD * math.exp(-te_ms / t2)
        nuclei[name] = {"t2star_ms": round(t2, 4), "signal": round(s_nuc, 6)}
        semi = np.asarray(nuc["semi_axes"])
        for sx in (1.0, -1.0):
            c = np.asarray(nuc["centre"]) * np.array([sx, 1.0, 1.0])
            ilo = np.maximum(np.floor(world_to_voxel(anat.affine, c - semi - 2 * _EDGE_MM)).astype(int), 0)
            ihi = np.minimum(np.ceil(world_to_voxel(anat.affine, c + semi + 2 * _EDGE_MM)).astype(int) + 1, anat.shape)
            sl = tuple(slice(a, b) for a, b in zip(ilo, ihi))
            g = np.meshgrid(*[np.arange(a, b) for a, b in zip(ilo, ihi)], indexing="ij")
            w = _ellipsoid_weight(voxel_to_world(anat.affine, np.stack(g, -1)), c, semi).astype(np.float32)
            parenchyma = anat.gm[sl] + anat.wm[sl]
            signal[sl] = (1 - w) * signal[sl] + w * (s_nuc * parenchyma + s_csf * anat.csf[sl])
    return signal, tissue, nuclei
