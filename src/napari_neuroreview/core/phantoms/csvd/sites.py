"""Where a patient's microbleeds and siderosis go: MARS regions, sites the simulators keep.

A site is an atlas voxel centre of its MARS region (``core.anatomy.mars.region_points``;
lobar ones at the cortico-subcortical junction) with room for its size under both
simulators' placement rules, so that the cohort's truth is what was drawn; region
weights per subtype are :mod:`.literature`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from napari_neuroreview.core.anatomy import load_mni_anatomy, mars

from ..swi.contrast import NUCLEI_MNI as _PHEN_NUCLEI
from ..swi.lesions import _draw_diameter
from ..swi_contract import CMBSite, SiderosisSite
from ..swi_physics.objects import _lookup  # a template map's value at world points (nearest voxel)
from ..swi_physics.sources import NUCLEI_MNI as _PHYS_NUCLEI
from ..swi_physics.sources import large_vein_paths, polyline_distance
from .literature import (
    ASVD_PATTERN,
    ASVD_REGIONS,
    BACKGROUND_CLASSES,
    BACKGROUND_REGIONS,
    CAA_LOBE_FACTORS,
    CADASIL_REGIONS,
    CADASIL_TEMPORAL_SHARE,
    CMB_DIAMETER_MM,
    CSS_LENGTH_MM,
    CSS_THICKNESS_MM,
)

#: Placement rules the simulators apply, met here so no site is refused: visible radius
#: estimated as the deposit's diameter (physics' x2 blooming, above the phenomenological
#: x1.2-1.45), a centre >= 0.7 of it from CSF, the clearance between objects, and clear
#: of the iron nuclei that are mimics in both simulators.
_R_VIS_PER_D: float = 1.0
_DEPTH_PER_R: float = 0.7
_GAP_MM: float = 1.5 + 0.75  # both simulators' gap, plus the phenomenological nuclei's half edge
_TRIES: int = 40


@functools.lru_cache(maxsize=1)
def _depth_map() -> np.ndarray:
    """mm from each template voxel to CSF (>= 0.5) or the brain's edge: the simulators' depth rule."""
    anat = load_mni_anatomy()
    return ndimage.distance_transform_edt(anat.brain & (anat.csf < 0.5)).astype(np.float32)


@functools.cache
def _pool(region: str, side: str, juxtacortical: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """A region's candidate centres on one side, and the largest visible radius each has room
    for (cached): atlas voxel centres where the smallest bleed fits.

    Room: the simulators' depth rule (a centre >= 0.7 visible radii from CSF) and clearance
    (:func:`_fixed_mimic_room`) from the mimics every case has.
    """
    pts = np.asarray(mars.region_points(region, side, juxtacortical), float)
    room = np.minimum(_lookup(_depth_map(), pts) / _DEPTH_PER_R, _fixed_mimic_room(pts))
    keep = room >= _R_VIS_PER_D * CMB_DIAMETER_MM[0]
    return pts[keep], room[keep]


def _fixed_mimic_room(pts: np.ndarray) -> np.ndarray:
    """Largest radius of a sphere at each point that keeps clear of the mimics every case
    has: the iron nuclei that are mimics in either simulator (the phenomenological
    simulator's rule: outside the ellipsoid grown by radius + gap), and the physics
    simulator's dural sinuses and deep veins (tube radius + 1 mm + gap)."""
    room = np.full(len(pts), np.inf)
    for _name, path, rt in large_vein_paths():
        room = np.minimum(room, polyline_distance(pts, path) - rt - 1.0 - _GAP_MM)
    for table in (_PHEN_NUCLEI, _PHYS_NUCLEI):
        for nuc in table.values():
            if not nuc["mimic"]:
                continue
            c = np.asarray(nuc["centre"], float) * np.stack([np.where(pts[:, 0] < 0, -1.0, 1.0), np.ones(len(pts)),
                                                             np.ones(len(pts))], -1)
            semi = np.asarray(nuc["semi_axes"], float)
            lo, hi = np.full(len(pts), -semi.max()), np.full(len(pts), 200.0)
            for _ in range(30):  # bisection on t: inside the ellipsoid grown by t <=> t > the room
                t = (lo + hi) / 2
                inside = (((pts - c) / (semi + t[:, None] + _GAP_MM)) ** 2).sum(-1) < 1.0
                hi, lo = np.where(inside, t, hi), np.where(inside, lo, t)
            room = np.minimum(room, lo)
    return room


def lobes() -> tuple[str, ...]:
    return tuple(r for r in mars.REGIONS if mars.REGION_CLASS[r] == "lobar")


@functools.lru_cache(maxsize=1)
def lobe_volumes() -> dict[str, float]:
    """Junction volume share of each lobe (both sides): the 'expected' of observed / expected."""
    n = {lobe: sum(len(mars.region_points(lobe, s, True)) for s in mars.SIDES) for lobe in lobes()}
    total = sum(n.values())
    return {k: v / total for k, v in n.items()}


def caa_lobe_weights() -> dict[str, float]:
    vol = lobe_volumes()
    rest = [lobe for lobe in vol if lobe not in CAA_LOBE_FACTORS]
    f_rest = (1.0 - sum(vol[k] * f for k, f in CAA_LOBE_FACTORS.items())) / sum(vol[k] for k in rest)
    return {k: vol[k] * CAA_LOBE_FACTORS.get(k, f_rest) for k in vol}


def _cadasil_lobe_weights() -> dict[str, float]:
    vol = lobe_volumes()
    rest = sum(v for k, v in vol.items() if k != "temporal")
    return {k: CADASIL_TEMPORAL_SHARE if k == "temporal" else (1 - CADASIL_TEMPORAL_SHARE) * v / rest
            for k, v in vol.items()}


def _expand(weights: Mapping[str, float], lobes: Mapping[str, float]) -> dict[str, float]:
    """Region weights with ``'lobar'`` spread over the lobes by ``lobes`` (normalised)."""
    out: dict[str, float] = {}
    for k, w in weights.items():
        if k == "lobar":
            t = sum(lobes.values())
            out.update({lobe: w * v / t for lobe, v in lobes.items()})
        else:
            out[k] = w
    s = sum(out.values())
    return {k: v / s for k, v in out.items()}


def choose(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def draw_site(rng: np.random.Generator, region: str, placed: list[tuple[np.ndarray, float]]) -> CMBSite | None:
    """One site in ``region`` (side 50/50: no side predilection, chosen) that the simulators keep.

    Each try draws a side, a diameter and a candidate centre; kept when the centre has room
    for it (:func:`_pool`) and it is clear of the patient's earlier sites. None after
    :data:`_TRIES`.
    """
    cls = mars.REGION_CLASS[region]
    for _ in range(_TRIES):
        side = mars.SIDES[int(rng.integers(2))]
        d = _draw_diameter(rng, *CMB_DIAMETER_MM)
        pts, room = _pool(region, side, True if cls == "lobar" else None)
        if len(pts) == 0:
            continue
        j = int(rng.integers(len(pts)))
        p, r = pts[j], _R_VIS_PER_D * d
        if room[j] < r:
            continue
        if placed and np.any(np.linalg.norm(np.array([q for q, _ in placed]) - p, axis=1)
                             < r + np.array([rq for _, rq in placed]) + _GAP_MM):
            continue
        placed.append((p, r))
        return CMBSite(tuple(round(float(v), 4) for v in p), round(d, 4), region, cls)
    return None


def disease_regions(rng: np.random.Generator, subtype: str, n: int) -> list[str]:
    """The region of each of ``n`` disease microbleeds (aSVD: per-patient pattern first)."""
    if n == 0:
        return []
    if subtype == "CAA":
        w = _expand({"lobar": 1.0}, caa_lobe_weights())
        return [choose(rng, w) for _ in range(n)]
    if subtype == "CADASIL":
        w = _expand(CADASIL_REGIONS, _cadasil_lobe_weights())
        return [choose(rng, w) for _ in range(n)]
    all_w = _expand(ASVD_REGIONS, lobe_volumes())
    lobar = {k: v for k, v in all_w.items() if k in lobes()}
    deep = {k: v for k, v in all_w.items() if k not in lobar}
    pattern = choose(rng, ASVD_PATTERN)
    if n == 1:
        return [choose(rng, all_w)]
    if pattern == "lobar":
        return [choose(rng, lobar) for _ in range(n)]
    if pattern == "deep":
        return [choose(rng, deep) for _ in range(n)]
    # Mixed: one of each, the rest lobar with the probability that keeps aSVD's overall
    # lobar share (41/104) given the strictly lobar and strictly deep patients.
    share = ASVD_REGIONS["lobar"] / sum(ASVD_REGIONS.values())
    p_lobar = (share - ASVD_PATTERN["lobar"]) / ASVD_PATTERN["mixed"]
    out = [choose(rng, lobar), choose(rng, deep)]
    for _ in range(n - 2):
        out.append(choose(rng, lobar if rng.uniform() < p_lobar else deep))
    return out


def background_regions(rng: np.random.Generator, subtype: str, n: int) -> list[str]:
    out = []
    for _ in range(n):
        cls = "lobar" if subtype == "CAA" else choose(rng, BACKGROUND_CLASSES)
        out.append(choose(rng, lobe_volumes()) if cls == "lobar" else choose(rng, BACKGROUND_REGIONS[cls]))
    return out


@functools.lru_cache(maxsize=1)
def _edge_map() -> np.ndarray:
    """mm from each template voxel to outside the brain: sulci are within :data:`_SULCUS_MM` of it."""
    return ndimage.distance_transform_edt(load_mni_anatomy().brain).astype(np.float32)


#: How deep a sulcus reaches from the brain's outer edge (chosen: the template's sulci are
#: up to ~15 mm deep); keeps siderosis off the ventricles' walls.
_SULCUS_MM: float = 15.0


@functools.cache
def _surface(lobe: str, side: str) -> np.ndarray:
    """Junction points of a lobe at its pial surface (template CSF 0.2-0.8, within a
    sulcus's depth of the brain's edge), cached."""
    pts = np.asarray(mars.region_points(lobe, side, True), float)
    csf = _lookup(load_mni_anatomy().csf, pts)
    edge = _lookup(_edge_map(), pts)
    return pts[(csf >= 0.2) & (csf <= 0.8) & (edge <= _SULCUS_MM)]


def siderosis_path(rng: np.random.Generator, lobe: str) -> SiderosisSite | None:
    """A layer along the cortical surface of ``lobe``: a walk of 2 mm steps on the pial boundary.

    Starts at a junction voxel of the lobe at its surface (:func:`_surface`), each step
    going on within 60 degrees of the last towards the neighbour whose CSF is nearest
    0.5 (plus a little noise): the layer follows a sulcus or the convexity. None when the
    walk stops short of 10 mm in 20 tries.
    """
    anat = load_mni_anatomy()
    dirs = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if (a, b, c) != (0, 0, 0)],
                    float)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    length = float(rng.uniform(*CSS_LENGTH_MM))
    thick = float(rng.uniform(*CSS_THICKNESS_MM))
    for _ in range(20):
        surface = _surface(lobe, mars.SIDES[int(rng.integers(2))])
        if len(surface) == 0:
            continue
        path = [surface[int(rng.integers(len(surface)))]]
        heading = None
        while (len(path) - 1) * 2.0 < length:
            cand = path[-1] + 2.0 * dirs
            ok = np.ones(len(dirs), bool) if heading is None else dirs @ heading >= 0.5
            score = np.abs(_lookup(anat.csf, cand) - 0.5) + rng.uniform(0, 0.05, len(dirs))
            score[~ok] = np.inf
            edge = _lookup(_edge_map(), cand)
            score[(edge <= 0) | (edge > _SULCUS_MM)] = np.inf  # left the brain, or deeper than a sulcus
            j = int(np.argmin(score))
            if not np.isfinite(score[j]) or score[j] > 0.4:
                break
            heading = dirs[j]
            path.append(cand[j])
        if (len(path) - 1) * 2.0 >= CSS_LENGTH_MM[0]:
            return SiderosisSite(tuple(tuple(round(float(v), 3) for v in q) for q in path), round(thick, 3), lobe)
    return None
