"""Small sources drawn in fine patches: microbleeds, calcifications, medullary and cortical veins.

Each is a susceptibility shape (sphere or tube) with its own signal inside; placement
keeps them apart (:class:`Scene`), rendering is :func:`~.render.render_patch`. The
truth of an object is what a rater would outline: the acquired voxels whose signal
dropped to under half of what it was (:data:`DARK_RATIO`), connected to the object's
centre, plus the centre's voxel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from napari_neuroreview.core.anatomy import load_mni_anatomy, world_to_voxel

from ..swi_contract import CALC_SITE_WEIGHTS, CALC_SITES, LOCATIONS, CMBSite, SiderosisSite, skipped_site
from .render import AcqGrid, render_patch
from .sources import (
    Candidates,
    cmb_candidates,
    polyline_distance,
    vein_seeds,
)
from .tissue import (
    CHI_CALC_PPM,
    CHI_CMB_PPM,
    PD,
    T2STAR_CALC_MS,
    T2STAR_CMB_MS,
)

#: A voxel is in an object's visible extent when its signal fell below this fraction.
DARK_RATIO: float = 0.5
#: Mimic label values (the same as the phenomenological simulator's ``MIMIC_LABELS``).
MIMIC_LABELS: dict[int, str] = {0: "none", 1: "vein", 2: "iron", 3: "sulcal/airbone", 4: "calcification"}
MIMIC_LABEL_OF: dict[str, int] = {"vein": 1, "iron": 2, "airbone": 3, "calcification": 4}
_GAP_MM = 1.5
#: Visible radius / deposit radius assumed when placing a microbleed: about 2 at SWI's B0 x TE.
_BLOOM_EST = 2.0


def _r(v: Any, nd: int = 4) -> list[float]:
    return [round(float(x), nd) for x in np.ravel(v)]


@dataclass
class Scene:
    """One case's grid, complex signal, labels, and the objects placed so far."""

    grid: AcqGrid
    signal: np.ndarray  # complex64, acquired grid
    rng: np.random.Generator
    rad_per_ppm: float
    te_ms: float
    fine_mm: float
    instances: np.ndarray
    mimics: np.ndarray
    spheres: list[tuple[np.ndarray, float]] = field(default_factory=list)
    tubes: list[tuple[np.ndarray, float]] = field(default_factory=list)
    mimic_truth: list[dict[str, Any]] = field(default_factory=list)

    def clear(self, p: np.ndarray, r: float) -> bool:
        """Whether a sphere of radius ``r`` at ``p`` keeps ``_GAP_MM`` from every object."""
        for c, rc in self.spheres:
            if np.linalg.norm(p - c) < r + rc + _GAP_MM:
                return False
        for path, rt in self.tubes:
            if polyline_distance(p[None], path)[0] < r + rt + _GAP_MM:
                return False
        return True

    def inside(self, p: np.ndarray, margin_mm: float) -> bool:
        ijk = self.grid.voxel(p)
        m = margin_mm / self.grid.vs
        return bool(np.all((ijk >= -0.5 + m) & (ijk <= np.asarray(self.grid.shape) - 0.5 - m)))

    def record(self, type_: str, ras: np.ndarray, **extra: Any) -> None:
        ras = np.round(np.asarray(ras, float), 4)
        self.mimic_truth.append({"type": type_, "world_ras_mm": _r(ras), "voxel_ijk": _r(self.grid.voxel(ras)),
                                 **extra})

    def dark_extent(self, lo: np.ndarray, ratio: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Voxel indices (N, 3) of the dark region connected to ``centre`` (plus its voxel)."""
        dark = ratio < DARK_RATIO
        c = np.rint(self.grid.voxel(centre)).astype(int) - lo
        c = np.clip(c, 0, np.asarray(ratio.shape) - 1)
        lab, _ = ndimage.label(dark)
        sel = lab == lab[tuple(c)] if dark[tuple(c)] else np.zeros_like(dark)
        sel[tuple(c)] = True
        return np.argwhere(sel) + lo


def _sphere_fraction(centre: np.ndarray, radius: float):
    def frac(pts: np.ndarray, h: float) -> np.ndarray:
        return np.clip(0.5 - (np.linalg.norm(pts - centre, axis=-1) - radius) / h, 0.0, 1.0)
    return frac


def _tube_fraction(path: np.ndarray, radius: float):
    def frac(pts: np.ndarray, h: float) -> np.ndarray:
        shape = pts.shape[:-1]
        d = polyline_distance(pts.reshape(-1, 3), path, within=radius + h).reshape(shape)
        return np.clip(0.5 - (d - radius) / h, 0.0, 1.0)
    return frac


def draw_sphere(scene: Scene, c: np.ndarray, r: float, chi: float, s_in: float) -> tuple[np.ndarray, np.ndarray]:
    """Render a sphere in a patch reaching ``max(3 mm, 4 r)`` around it; returns (lo, ratio)."""
    reach = r + max(3.0, 4.0 * r)
    lo, hi = scene.grid.box_around(c - reach, c + reach)
    fine = min(scene.fine_mm, max(0.15, r / 3.0))
    ratio = render_patch(scene.grid, scene.signal, lo, hi, fine, _sphere_fraction(c, r), chi, s_in, scene.rad_per_ppm)
    return lo, ratio


def _draw_tube(scene: Scene, path: np.ndarray, r: float, chi: float, s_in: float) -> tuple[np.ndarray, np.ndarray]:
    reach = r + max(3.0, 4.0 * r)
    lo, hi = scene.grid.box_around(path.min(0) - reach, path.max(0) + reach)
    fine = max(scene.fine_mm, 0.45)
    ratio = render_patch(scene.grid, scene.signal, lo, hi, fine, _tube_fraction(path, r), chi, s_in, scene.rad_per_ppm)
    return lo, ratio


def _lookup(data: np.ndarray, pts: np.ndarray) -> np.ndarray:
    anat = load_mni_anatomy()
    ijk = np.rint(world_to_voxel(anat.affine, pts)).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.asarray(anat.shape)), axis=-1)
    out = np.zeros(len(pts), np.float32)
    out[ok] = data[tuple(ijk[ok].T)]
    return out


def _medullary_path(rng: np.random.Generator) -> np.ndarray:
    """From the ventricle wall, outward and upward through white matter, 12-30 mm."""
    anat = load_mni_anatomy()
    vp, vd, _ = vein_seeds()
    j = int(rng.integers(len(vp)))
    p, d = vp[j].astype(float), vd[j].astype(float)
    length = float(rng.uniform(12.0, 30.0))
    pts = [p]
    for _ in range(int(length / 2.0)):
        d = d + rng.normal(0, 0.12, 3)
        d /= np.linalg.norm(d)
        q = pts[-1] + 2.0 * d
        if _lookup(anat.brain.astype(np.float32), q[None])[0] < 0.5 or _lookup(anat.gm, q[None])[0] > 0.6:
            break
        pts.append(q)
    return np.array(pts)


def _cortical_path(rng: np.random.Generator) -> np.ndarray:
    """Along sulcal CSF towards the vertex (the superior sagittal sinus), 20-45 mm."""
    anat = load_mni_anatomy()
    _, _, sulc = vein_seeds()
    p = sulc[int(rng.integers(len(sulc)))].astype(float)
    length = float(rng.uniform(20.0, 45.0))
    offsets = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], float) * 1.5
    pts = [p]
    for _ in range(int(length / 2.5)):
        target = np.array([0.0, pts[-1][1], 80.0])
        d = target - pts[-1]
        d /= np.linalg.norm(d)
        cand = pts[-1] + 2.5 * d + offsets
        q = cand[int(np.argmax(_lookup(anat.csf, cand)))]
        if _lookup(anat.brain.astype(np.float32), q[None])[0] < 0.5:
            break
        pts.append(q)
    return np.array(pts)


def add_small_veins(scene: Scene, count: int, chi: float, s_blood: float) -> None:
    """Medullary (60 %; lumen radius 0.4-0.8 mm) and cortical veins (0.7-1.5 mm) as chi tubes.

    Labelled as veins where they darken the signal to under :data:`DARK_RATIO`. Radii: the
    lumen of medullary veins is sub-millimetre, of cortical veins 1-3 mm across (approximate).
    """
    rng = scene.rng
    for _ in range(count):
        kind = "medullary" if rng.random() < 0.6 else "cortical"
        for _attempt in range(20):
            path = _medullary_path(rng) if kind == "medullary" else _cortical_path(rng)
            r = float(rng.uniform(0.4, 0.8) if kind == "medullary" else rng.uniform(0.7, 1.5))
            if len(path) >= 4 and all(scene.inside(q, 2.0) for q in path[[0, -1]]) and all(
                    scene.clear(q, 2 * r) for q in path[::2]):
                break
        else:
            continue
        lo, ratio = _draw_tube(scene, path, r, chi, s_blood)
        idx = np.argwhere(ratio < DARK_RATIO) + lo
        scene.mimics[tuple(idx.T)] = MIMIC_LABEL_OF["vein"]
        scene.tubes.append((path, 2 * r + 1.0))
        scene.record("vein", path[len(path) // 2], kind=kind, path=[_r(q, 3) for q in path], radius_mm=round(r, 4),
                     susceptibility_ppm=round(chi, 4))




def add_calcifications(scene: Scene, count: int) -> None:
    """Diamagnetic, proton-poor spheres (2-4.5 mm) at the choroid plexus, pineal or basal ganglia."""
    rng = scene.rng
    names = list(CALC_SITES)
    s_in = PD["calcium"] / PD["gm"] * math.exp(-scene.te_ms / T2STAR_CALC_MS)
    for _ in range(count):
        for _attempt in range(40):
            site = names[int(rng.choice(len(names), p=CALC_SITE_WEIGHTS))]
            c = np.asarray(CALC_SITES[site]) * np.array([rng.choice([-1.0, 1.0]), 1, 1])
            c = c + rng.uniform(-1.5, 1.5, 3) * np.array([0.0 if site == "pineal" else 1.0, 1, 1])
            d = float(rng.uniform(2.0, 4.5))
            if scene.inside(c, d) and scene.clear(c, d):
                break
        else:
            continue
        chi = float(rng.uniform(*CHI_CALC_PPM))
        old = np.abs(scene.signal[tuple(np.rint(scene.grid.voxel(c)).astype(int))])
        lo, ratio = draw_sphere(scene, c, d / 2, chi, s_in * float(old))
        idx = scene.dark_extent(lo, ratio, c)
        scene.mimics[tuple(idx.T)] = MIMIC_LABEL_OF["calcification"]
        scene.spheres.append((c, d))
        scene.record("calcification", c, site=site, diameter_mm=round(d, 4), susceptibility_ppm=round(chi, 4))


def add_microbleeds(scene: Scene, count: int, weights: dict[str, float], diam: tuple[float, float]) -> list[dict]:
    """Place and draw microbleeds (MARS classes); returns their truth, ids 1..n."""
    rng, grid = scene.rng, scene.grid
    cands = cmb_candidates()
    avail: dict[str, Candidates] = {}
    for loc in LOCATIONS:
        cand = cands[loc]
        ijk = grid.voxel(cand.points)
        keep = np.all((ijk >= 1.0) & (ijk <= np.asarray(grid.shape) - 2.0), axis=-1)
        if weights.get(loc, 0.0) > 0 and keep.any():
            avail[loc] = Candidates(cand.points[keep], cand.depth[keep], cand.region[keep], cand.names)
    locs = list(avail)
    p = np.array([weights[k] for k in locs], float)
    truth: list[dict[str, Any]] = []
    for _ in range(count if locs else 0):
        for _attempt in range(200):
            loc = locs[int(rng.choice(len(locs), p=p / p.sum()))]
            cand = avail[loc]
            j = int(rng.integers(len(cand.points)))
            c = cand.points[j].astype(float) + rng.uniform(-0.5, 0.5, 3)
            d = float(diam[0] + (diam[1] - diam[0]) * rng.beta(1.3, 4.0))
            r_est = d / 2 * _BLOOM_EST
            if cand.depth[j] >= 0.7 * r_est and scene.inside(c, r_est) and scene.clear(c, r_est):
                break
        else:
            continue
        _draw_cmb(scene, c, d, loc, cand.names[int(cand.region[j])], truth)
    return truth


def _draw_cmb(scene: Scene, c: np.ndarray, d: float, location: str, region: str, truth: list[dict[str, Any]]) -> None:
    """Draw one placed microbleed (susceptibility drawn here) and append its truth."""
    rng, grid = scene.rng, scene.grid
    vox_mm3 = float(abs(np.linalg.det(grid.linear)))
    chi = float(rng.uniform(*CHI_CMB_PPM))
    s_in = 0.0 if T2STAR_CMB_MS <= 0 else math.exp(-scene.te_ms / T2STAR_CMB_MS)
    old = np.abs(scene.signal[tuple(np.clip(np.rint(grid.voxel(c)).astype(int), 0, np.asarray(grid.shape) - 1))])
    lo, ratio = draw_sphere(scene, c, d / 2, chi, s_in * float(old))
    idx = scene.dark_extent(lo, ratio, c)
    cmb_id = len(truth) + 1
    scene.instances[tuple(idx.T)] = cmb_id
    vol = len(idx) * vox_mm3
    vis = max(d, (6.0 * vol / math.pi) ** (1 / 3))
    scene.spheres.append((c, vis / 2))
    c = np.round(c, 4)
    truth.append({"id": cmb_id, "world_ras_mm": _r(c), "voxel_ijk": _r(grid.voxel(c)), "diameter_mm": round(d, 4),
                  "visible_diameter_mm": round(vis, 4), "volume_mm3": round(vol, 4), "location": location,
                  "region": region, "susceptibility_ppm": round(chi, 4)})


def add_microbleed_sites(scene: Scene, sites: Sequence[CMBSite]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Draw microbleeds exactly at ``sites`` (in order); returns (truth, skipped sites).

    Susceptibility and rendering as :func:`add_microbleeds`; no depth rule (the caller
    chose the site). A site is skipped, with its reason, when its estimated visible
    sphere (:data:`_BLOOM_EST` x the deposit) leaves the view or comes within the
    clearance of an earlier site or of a mimic.
    """
    truth: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    placed: list[tuple[np.ndarray, float]] = []
    for site in sites:
        c = np.asarray(site.world_ras_mm, float)
        d = float(site.diameter_mm)
        r_est = d / 2 * _BLOOM_EST
        if not scene.inside(c, r_est):
            skipped.append(skipped_site(site, "outside the field of view"))
        elif any(np.linalg.norm(c - q) < r_est + rq + _GAP_MM for q, rq in placed):
            skipped.append(skipped_site(site, "overlaps an earlier site"))
        elif not scene.clear(c, r_est):
            skipped.append(skipped_site(site, "overlaps a mimic"))
        else:
            placed.append((c, r_est))
            _draw_cmb(scene, c, d, site.location, site.region, truth)
    return truth, skipped


def add_siderosis(scene: Scene, sites: Sequence[SiderosisSite]) -> None:
    """Cortical superficial siderosis: a thin haemosiderin tube along each site's path.

    A microbleed's susceptibility and inner signal (haemosiderin) in a tube of the site's
    thickness, rendered as small veins are (:func:`_draw_tube`), after the microbleeds and
    over whatever lies there. Labelled with the superficial-spot mimic label (3,
    "sulcal/airbone") where its signal fell below :data:`DARK_RATIO` and no microbleed is;
    recorded as a ``siderosis`` mimic.
    """
    rng = scene.rng
    s_in = 0.0 if T2STAR_CMB_MS <= 0 else math.exp(-scene.te_ms / T2STAR_CMB_MS)
    for site in sites:
        path = np.asarray(site.path_ras_mm, float)
        r = float(site.thickness_mm) / 2
        chi = float(rng.uniform(*CHI_CMB_PPM))
        lo, ratio = _draw_tube(scene, path, r, chi, s_in)
        idx = np.argwhere(ratio < DARK_RATIO) + lo
        idx = idx[scene.instances[tuple(idx.T)] == 0]
        scene.mimics[tuple(idx.T)] = MIMIC_LABEL_OF["airbone"]
        length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
        scene.record("siderosis", path[len(path) // 2], region=site.region, path=[_r(q, 4) for q in path],
                     thickness_mm=round(2 * r, 4), length_mm=round(length, 4), susceptibility_ppm=round(chi, 4))
