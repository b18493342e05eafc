"""A patient's metastases: how many, where, how large and how each looks, drawn from its origin.

Only attributes are drawn here (no image): :func:`draw_lesions` gives the :class:`Lesion`
tuple that :mod:`.render` draws on any grid. Numbers are :mod:`.literature`'s; the places
are MNI152 points of ``core.anatomy.mars`` (the cortico-subcortical junction of the lobes,
the cerebellum, the deep grey nuclei) with room for the tumour inside the brain.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ...anatomy import load_mni_anatomy, mars, world_to_voxel
from . import literature as lit

__all__ = ["LOCATIONS", "WATERSHED_BOXES_MNI", "Lesion", "draw_lesion_count", "draw_lesions", "in_watershed"]

#: Where a lesion sits (the ``location`` of a :class:`Lesion`).
LOCATIONS: tuple[str, ...] = ("grey_white_junction", "watershed", "cerebellum", "deep_grey_matter")
#: The cortical watershed (border) zones as MNI boxes, both sides, ``(|x|, y, z)`` ranges in mm
#: (approximate): the ACA/MCA border zone, a parasagittal strip over the frontal and
#: parietal convexity, and the MCA/PCA border zone over the parieto-occipital region. Sized so
#: that they hold :data:`~.literature.WATERSHED_SURFACE_SHARE` (29 %, REF) of the junction.
WATERSHED_BOXES_MNI: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "aca_mca": ((10.0, 45.0), (-55.0, 45.0), (28.0, 200.0)),
    "mca_pca": ((20.0, 200.0), (-95.0, -50.0), (-5.0, 50.0)),
}
_LOBES: tuple[str, ...] = tuple(r for r in mars.REGIONS if mars.REGION_CLASS[r] == "lobar")
#: A tumour centre lies at least ``_DEPTH_PER_D x diameter + 1 mm`` inside the brain (chosen: a
#: junction metastasis may bulge to the cortical surface, not beyond half its radius).
_DEPTH_PER_D: float = 0.3
#: Clearance (mm) between two tumours, beyond their radii (chosen: separate lesions).
_GAP_MM: float = 3.0
_TRIES: int = 40


@dataclass(frozen=True)
class Lesion:
    """One drawn metastasis (MNI152 = world RAS mm: the phantom's anatomy sits in MNI space).

    ``enhancement``: ``"solid"`` or ``"ring"`` (an enhancing rim around a necrotic core of
    ``necrosis_fraction`` of the diameter; 0 when solid). ``oedema_ratio``: peritumoural
    oedema volume / tumour volume as drawn (0: none; rendered in white matter only, so the
    rendered volume is smaller). ``adc_ratio``: ADC of the solid part / normal white matter.
    ``t2_dark``: a T2-hypointense solid part. ``location``: one of :data:`LOCATIONS`;
    ``region``: its MARS region. ``shape_seed``: the irregular outline's draws.
    """

    id: int
    centre_mni_mm: tuple[float, float, float]
    diameter_mm: float
    enhancement: str
    necrosis_fraction: float
    oedema_ratio: float
    adc_ratio: float
    t2_dark: bool
    haemorrhage: bool
    location: str
    region: str
    shape_seed: int


def in_watershed(points_mni_mm: np.ndarray) -> np.ndarray:
    """bool per (n, 3) MNI point: inside a box of :data:`WATERSHED_BOXES_MNI` (either side)."""
    p = np.atleast_2d(np.asarray(points_mni_mm, float))
    x, y, z = np.abs(p[:, 0]), p[:, 1], p[:, 2]
    out = np.zeros(len(p), bool)
    for (xr, yr, zr) in WATERSHED_BOXES_MNI.values():
        out |= (x >= xr[0]) & (x <= xr[1]) & (y >= yr[0]) & (y <= yr[1]) & (z >= zr[0]) & (z <= zr[1])
    return out


@functools.lru_cache(maxsize=1)
def _depth_map() -> np.ndarray:
    """mm from each template voxel to the outside of the brain mask (a tumour's room)."""
    return ndimage.distance_transform_edt(load_mni_anatomy().brain).astype(np.float32)


@functools.cache
def _pool(location: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate centres of ``location`` (MNI mm), their depth in the brain (mm) and MARS
    region index (cached)."""
    if location in ("grey_white_junction", "watershed"):
        pts = np.concatenate([mars.region_points(lobe, None, True) for lobe in _LOBES])
        ws = in_watershed(pts)
        pts = pts[ws if location == "watershed" else ~ws]
    elif location == "cerebellum":
        pts = mars.region_points("cerebellum")
    else:
        pts = np.concatenate([mars.region_points(r) for r in ("basal_ganglia", "thalamus")])
    anat = load_mni_anatomy()
    ijk = np.clip(np.rint(world_to_voxel(anat.affine, pts)).astype(int), 0, np.asarray(anat.shape) - 1)
    depth = _depth_map()[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
    return pts, depth, mars.region_indices_at(pts)


def _location(rng: np.random.Generator, origin: str) -> str:
    """Cerebellum (:data:`~.literature.CEREBELLUM_SHARE`), deep grey (:data:`~.literature.DEEP_SHARE`),
    else the supratentorial junction, in a watershed zone with :data:`~.literature.WATERSHED_SHARE`."""
    u = rng.uniform()
    cb = lit.CEREBELLUM_SHARE[origin]
    if u < cb:
        return "cerebellum"
    if u < cb + lit.DEEP_SHARE:
        return "deep_grey_matter"
    return "watershed" if rng.uniform() < lit.WATERSHED_SHARE else "grey_white_junction"


def draw_lesion_count(rng: np.random.Generator, origin: str) -> int:
    """``1 + NegBin`` lesions (:data:`~.literature.LESION_COUNT_NB`); one draw."""
    mean, k = lit.LESION_COUNT_NB[origin]
    return 1 + int(rng.negative_binomial(k, k / (k + mean)))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _attributes(rng: np.random.Generator, origin: str) -> dict[str, object]:
    """One lesion's size and appearance (every draw always made, in one order)."""
    med, sig = lit.DIAMETER_MM[origin]
    d = float(np.clip(med * math.exp(sig * rng.standard_normal()), *lit.DIAMETER_RANGE_MM))
    z_ring = _logit(lit.RING_SHARE[origin]) + lit.RING_SIZE_SLOPE_PER_MM * (d - med)
    ring = rng.uniform() < 1.0 / (1.0 + math.exp(-z_ring))
    necrosis = float(rng.uniform(*lit.NECROSIS_FRACTION))
    p_oedema = lit.OEDEMA_SHARE[origin] * (1.0 if d >= lit.OEDEMA_MIN_DIAMETER_MM else 0.2)
    has_oedema = rng.uniform() < p_oedema
    o_med, o_sig = lit.OEDEMA_RATIO[origin]
    ratio = float(o_med * math.exp(o_sig * rng.standard_normal()))
    a_mu, a_sd = lit.ADC_RATIO[origin]
    adc = float(np.clip(rng.normal(a_mu, a_sd), *lit.ADC_RATIO_RANGE))
    t2_dark = bool(rng.uniform() < lit.T2_DARK_SHARE[origin])
    haem = bool(rng.uniform() < lit.HAEMORRHAGE_SHARE[origin])
    return {"diameter_mm": round(d, 3), "enhancement": "ring" if ring else "solid",
            "necrosis_fraction": round(necrosis, 4) if ring else 0.0,
            "oedema_ratio": round(ratio, 4) if has_oedema else 0.0, "adc_ratio": round(adc, 4),
            "t2_dark": t2_dark, "haemorrhage": haem}


def draw_lesions(rng: np.random.Generator, origin: str, n: int) -> tuple[Lesion, ...]:
    """Up to ``n`` lesions (at most :data:`~.literature.MAX_RENDERED_LESIONS`) of ``origin``.

    Each: attributes, a location, then up to :data:`_TRIES` candidate centres of that
    location until one lies deep enough for its size and clear of the earlier tumours;
    a lesion with no room is dropped (rare). Ids 1.. in drawing order.
    """
    if origin not in lit.ORIGINS:
        raise ValueError(f"origin must be one of {lit.ORIGINS}, got {origin!r}")
    out: list[Lesion] = []
    for _ in range(min(int(n), lit.MAX_RENDERED_LESIONS)):
        attrs = _attributes(rng, origin)
        location = _location(rng, origin)
        shape_seed = int(rng.integers(2**31 - 1))
        d = float(attrs["diameter_mm"])  # type: ignore[arg-type]
        pts, depth, region = _pool(location)
        for _try in range(_TRIES):
            j = int(rng.integers(len(pts)))
            p = pts[j]
            if depth[j] < _DEPTH_PER_D * d + 1.0:
                continue
            if any(np.linalg.norm(p - np.asarray(q.centre_mni_mm)) < (d + q.diameter_mm) / 2 + _GAP_MM for q in out):
                continue
            out.append(Lesion(id=len(out) + 1, centre_mni_mm=tuple(round(float(v), 3) for v in p),  # type: ignore[arg-type]
                              location=location, region=mars.REGIONS[int(region[j])] if region[j] >= 0 else "outside",
                              shape_seed=shape_seed, **attrs))  # type: ignore[arg-type]
            break
    return tuple(out)
