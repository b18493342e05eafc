"""Scanning a subject: T1 and FLAIR from the image markers only.

The recipe (standard MRI knowledge; values approximate, the tissue signals those of the
metastasis render's :data:`~..metastasis.render.CONTRAST`, one table for every phantom):

1. *Template on the grid* (:mod:`.template`, cached): tissue fractions, the distance to the
   ventricles' wall.
2. *Ventricles* grow ex vacuo (the tissue around them is lost, as in ageing): everything
   within ``d`` mm of their wall becomes CSF, ``d`` the distance whose volume is the
   marker's (the template's lookup; a marker below the template's ~17 ml closes them).
3. *Lesions.* Periventricular WMH: the white matter within ``t`` of the new wall, the
   distance divided by :mod:`.template`'s cap factor (thicker caps at the frontal and
   occipital horns, a thin band along the bodies, as Fazekas grades them), ``t`` the one
   whose volume on this grid is the marker's, with a soft 1.5-voxel edge; deep WMH: 1-12
   spheres in deep white matter sharing the marker's volume (Dirichlet); lacunes: 3-15 mm
   CSF-filled spheres (STRIVE) in the deep grey nuclei or deep white matter, each with a
   1.5 mm gliotic rim that is bright on FLAIR. Partial volume: a linear ramp at every edge.
4. *Atrophy and head size.* Cortical grey matter (more than 12 mm from the ventricles) gives
   the share of brain the marker's atrophy removes, less what the ventricles took, to CSF
   (wider sulci); then every map is sampled through the head's scale (the marker's
   intracranial volume over :data:`REFERENCE_ICV_ML`, the template taken as the mean head;
   ``scipy.ndimage.map_coordinates``).
5. *Contrast and scanner.* T1 and FLAIR: fraction-weighted signals (WMH has vasogenic
   oedema's T2 prolongation: bright on FLAIR, a little dark on T1; a lacune is CSF), one
   bias field (``anatomy.scanner.random_bias_field``), Rician noise, int16.

The rendered volumes (``truth['rendered']``) are on the template's scale: nilearn's MNI152
grey matter map and brain mask are generous (parenchyma ~1.67 l at scale 1), so brain volume
reads ~1.4 x the marker's while WMH and ventricles follow theirs; a marker and its rendered
volume rise together (the tests check it).

Microbleeds are NOT drawn: on T1 and FLAIR they are invisible (they need T2*/SWI, whose
susceptibility blooming makes a 2-5 mm spot; REF: the study's images are T1 and T2-FLAIR)
and at this cohort's 3-4 mm voxels they would be sub-voxel; their count is a marker (the
table and truth) and the CMB task's own phantoms draw them. Nothing here reads the clinical
table or the outcome: the images depend on the markers and the scanner only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from ...anatomy.grids import world_to_voxel
from ..anatomy.scanner import complex_noise, random_bias_field
from ..metastasis.render import CONTRAST
from ..swi_contract import phantom_image
from .template import GridAnatomy, grid_anatomy, mni_lookups

__all__ = ["LESION_LABELS", "REFERENCE_ICV_ML", "StrokeCase", "render_markers"]

#: The template is taken as the mean head: intracranial volume (ml) of scale 1 (literature.ICV_ML's mean).
REFERENCE_ICV_ML: float = 1450.0
#: Truth labels of ``truth_lesions.nii.gz``.
LESION_LABELS: dict[int, str] = {0: "none", 1: "periventricular WMH", 2: "deep WMH", 3: "lacune"}
#: Deep WMH spheres at most, and lacunes drawn at most (chosen: a bounded render).
MAX_DEEP_WMH: int = 12
MAX_LACUNES: int = 10
#: Lacune diameter (mm): 3-15 (STRIVE, Wardlaw et al. 2013); the gliotic rim's width.
LACUNE_DIAMETER_MM: tuple[float, float] = (3.0, 15.0)
_RIM_MM = 1.5
_CORTEX_MIN_MM = 12.0
#: The thickest periventricular WMH (cap distance, mm; chosen: confluent WMH reach ~2-3 cm).
_MAX_PV_MM = 25.0
_SCALE = 1000.0
_DESCRIP = "neuroreview simulated {} (MNI152 2009), not a patient"


@dataclass(eq=False)
class StrokeCase:
    """A rendered subject: ``images`` (``t1``, ``flair``: int16 NIfTI in MNI world mm),
    ``lesions`` (:data:`LESION_LABELS` on the same grid) and ``truth`` (the markers as drawn
    and as rendered: volumes measured on the grid; scanner; grid)."""

    images: dict[str, nib.Nifti1Image]
    lesions: nib.Nifti1Image
    truth: dict[str, Any] = field(default_factory=dict)

    def files(self) -> dict[str, nib.Nifti1Image]:
        """Every image by file stem: ``t1``, ``flair``, ``truth_lesions``."""
        return {**self.images, "truth_lesions": self.lesions}


def _ramp(distance: np.ndarray, radius: Any, voxel: float) -> np.ndarray:
    """Partial volume of "closer than ``radius``" with a one-voxel linear edge."""
    return np.clip((radius - distance) / voxel + 0.5, 0.0, 1.0)


def _spheres(g: GridAnatomy, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Union (max) of partial-volume spheres (world mm centres, radii in mm) on the grid."""
    out = np.zeros(g.shape, np.float32)
    v = g.voxel_mm
    for c, r in zip(centres, radii):
        lo = np.floor(world_to_voxel(g.affine, c - r - v) - 1).astype(int)
        hi = np.ceil(world_to_voxel(g.affine, c + r + v) + 2).astype(int)
        box = tuple(slice(max(int(min(a, b)), 0), min(int(max(a, b)), n)) for a, b, n in zip(lo, hi, g.shape))
        d = np.sqrt(((g.world[(slice(None), *box)] - c[:, None, None, None]) ** 2).sum(axis=0))
        out[box] = np.maximum(out[box], _ramp(d, float(r), v))
    return out


def _interp(target: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """x where the increasing lookup ``ys(xs)`` reaches ``target`` (clipped to its range)."""
    return float(np.interp(target, ys, xs))


def _scaled(g: GridAnatomy, scale: float) -> np.ndarray:
    """Source voxel coordinates (3, X, Y, Z) of every output voxel for a head ``scale`` times the
    template's: a uniform scale about the grid's centre is the same scale in voxel coordinates."""
    centre = (np.asarray(g.shape, np.float32)[:, None, None, None] - 1.0) / 2.0
    return centre + (np.indices(g.shape, dtype=np.float32) - centre) / np.float32(scale)


def _grid_thickness(target_ml: float, distance: np.ndarray, weight: np.ndarray, voxel: float, edge: float) -> float:
    """The thickness ``t`` at which ``weight x _ramp(distance, t, edge)`` sums to ``target_ml``: the
    periventricular WMH's, measured on the very grid it is drawn on (the ramp's volume included)."""
    near = (weight > 0) & (distance < _MAX_PV_MM + edge)
    d, w = distance[near][None, :], weight[near][None, :]
    ts = np.linspace(-edge / 2.0, _MAX_PV_MM, 80)[:, None]
    volumes = (w * _ramp(d, ts, edge)).sum(axis=1) * voxel**3 / 1000.0
    return float(np.interp(target_ml, volumes, ts[:, 0]))


def render_markers(markers: dict[str, float], scanner: dict[str, Any]) -> StrokeCase:
    """Render T1 and FLAIR of a subject with ``markers`` (``burden.Population.markers``'s keys,
    one value each) on ``scanner`` (``cohort.draw_scanner``: voxel_mm, noise_sd, bias_strength,
    gain, tissue_jitter, seed). Every draw (lesion places and sizes, contrast jitter, bias,
    noise) comes from ``default_rng(scanner['seed'])`` in that order."""
    rng = np.random.default_rng(int(scanner["seed"]))
    g, look = grid_anatomy(float(scanner["voxel_mm"])), mni_lookups()
    v = g.voxel_mm
    scale = float(markers["icv_ml"] / REFERENCE_ICV_ML) ** (1.0 / 3.0)
    s3 = scale**3

    # Step 2: the ventricles grow ex vacuo: what lies within ``d`` mm of their wall becomes CSF.
    d = _interp(markers["ventricles_ml"] / s3, look.distances_mm, look.gained_ml)
    vent = _ramp(g.distance, d, v)
    closed = np.clip(_ramp(g.distance, 0.0, v) - vent, 0.0, 1.0)  # ventricles smaller than the template's
    csf, gm, wm = g.csf * (1.0 - closed), g.gm * (1.0 - vent), (g.wm + g.csf * closed) * (1.0 - vent)
    csf = csf + (g.gm + g.wm) * vent

    # Step 3: lesions.
    wall = np.maximum(g.distance - max(d, 0.0), 0.0) / g.cap_factor
    t_pv = _grid_thickness(markers["wmh_pv_ml"] / s3, wall, wm * (g.distance > d), v, 1.5 * v)
    pv = wm * _ramp(wall, t_pv, 1.5 * v) * (g.distance > d)
    n_deep = int(min(MAX_DEEP_WMH, 1 + rng.poisson(markers["wmh_deep_ml"] / 1.5)))
    vols = rng.dirichlet(np.ones(n_deep)) * markers["wmh_deep_ml"] / s3
    deep_c = look.deep_wm_points[rng.integers(len(look.deep_wm_points), size=n_deep)]
    deep = np.minimum(_spheres(g, deep_c, (3.0 * vols / (4.0 * np.pi)) ** (1.0 / 3.0)), wm - pv)
    n_lac = int(min(MAX_LACUNES, markers["lacunes"]))
    lac_c = look.lacune_points[rng.integers(len(look.lacune_points), size=n_lac)]
    lac_r = rng.uniform(*LACUNE_DIAMETER_MM, size=n_lac) / 2.0 / scale
    lacune = _spheres(g, lac_c, lac_r) * (1.0 - vent)
    rim = np.clip(_spheres(g, lac_c, lac_r + _RIM_MM) - lacune, 0.0, 1.0)

    # Step 4: cortical atrophy (grey matter to CSF), then every map through the head's scale.
    vent_gain = max(markers["ventricles_ml"] / s3 - look.ventricles_ml, 0.0)
    cortex = gm * (g.distance > _CORTEX_MIN_MM)
    cortex_ml = float(cortex.sum()) * v**3 / 1000.0
    loss = float(np.clip((markers["atrophy"] * look.parenchyma_ml - vent_gain) / max(cortex_ml, 1e-6), 0.0, 0.6))
    keep = 1.0 - lacune
    white = np.clip(wm - pv - deep, 0.0, 1.0)
    maps = {"csf": csf + (gm + wm) * lacune + loss * cortex * keep, "gm": (gm - loss * cortex) * keep,
            "wm": white * keep * (1.0 - rim), "wmh": np.clip((pv + deep) * keep + white * keep * rim, 0.0, 1.0)}
    vox_ml = v**3 / 1000.0 * s3
    rendered = {"wmh_ml": float(maps["wmh"].sum()) * vox_ml,
                "brain_ml": float((maps["gm"] + maps["wm"] + maps["wmh"]).sum()) * vox_ml,
                "ventricles_ml": float(np.maximum(vent, g.csf * (g.distance < 0) * (1.0 - closed)).sum()) * vox_ml}
    src = _scaled(g, scale)
    maps = {k: ndimage.map_coordinates(m.astype(np.float32), src, order=1, mode="constant", cval=0.0)
            for k, m in maps.items()}
    codes = np.zeros(g.shape, np.uint8)
    for code, part in ((1, pv), (2, deep), (3, lacune)):
        codes[part >= 0.5] = code
    lesions = ndimage.map_coordinates(codes, src, order=0, mode="constant", cval=0)

    # Step 5: contrast and scanner.
    amount = float(scanner["tissue_jitter"])
    jitter = {seq: {k: 1.0 + amount * float(rng.uniform(-1, 1)) for k in maps} for seq in ("t1", "flair")}
    bias, _ = random_bias_field(rng, float(scanner["bias_strength"]), g.affine, g.shape)
    gain, noise = _SCALE * float(scanner["gain"]), float(scanner["noise_sd"])
    images = {}
    for seq in ("t1", "flair"):
        table = {**{k: CONTRAST[seq][k] for k in ("csf", "gm", "wm")}, "wmh": CONTRAST[seq]["oedema"]}
        signal = sum(maps[k] * np.float32(table[k] * jitter[seq][k]) for k in table) * bias
        real, imag = complex_noise(rng, noise, g.shape)
        magnitude = np.hypot(signal + real, imag) * gain
        images[seq] = phantom_image(np.clip(np.rint(magnitude), -32768, 32767).astype(np.int16), g.affine,
                                    _DESCRIP.format(seq))
    truth = {
        "markers": {k: float(val) for k, val in markers.items()},
        "rendered": {**{k: round(val, 3) for k, val in rendered.items()},
                     "periventricular_mm": round(t_pv, 3), "ventricle_growth_mm": round(d, 3),
                     "cortical_gm_loss": round(loss, 4), "deep_wmh_spheres": n_deep, "lacunes": n_lac,
                     "cmbs_drawn": 0},
        "scanner": dict(scanner),
        "grid": {"affine": np.round(g.affine, 6).tolist(), "shape": [int(n) for n in g.shape]},
        "labels": {str(k): name for k, name in LESION_LABELS.items()},
    }
    return StrokeCase(images=images, lesions=phantom_image(lesions, g.affine, "neuroreview WMH/lacune truth",
                                                           intent_label=True), truth=truth)
