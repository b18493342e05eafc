"""Microbleeds and calcifications: where they may lie, how they are drawn and placed.

Both are round and dark on the magnitude; the phase tells them apart (paramagnetic
haemosiderin, diamagnetic calcium). Microbleeds are centred on template voxels of their
MARS location class (:data:`LOCATIONS`, :data:`REGION_BOXES_MNI`), calcifications at
their usual sites; each is a sphere drawn with partial volume and blooming
(:func:`_render_sphere`), kept clear of everything already placed. Why: the package
docstring (:mod:`napari_neuroreview.core.phantoms.swi`, *Microbleeds*, *Calcifications*).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from napari_neuroreview.core.anatomy import load_mni_anatomy, voxel_to_world

from ..swi_contract import (
    CALC_SITE_WEIGHTS,
    CALC_SITES,
    LOCATIONS,
    REGION_BOXES_MNI,
    CMBSite,
    SiderosisSite,
    skipped_site,
)
from .mimics import _MIMIC_LABEL_OF, _render_vein
from .scene import _Grid, _Layers, _Obstacles, _r, _Scene
from .susceptibility import _voxel_phase

def in_region_box(ras_mm: Any, location: str) -> bool:
    """Whether a world (MNI) point lies in one of the boxes of a deep/infratentorial class.

    Parameters
    ----------
    ras_mm : sequence of 3 floats
        World RAS mm.
    location : str
        ``'deep'`` or ``'infratentorial'`` (see :data:`REGION_BOXES_MNI`).
    """
    return _box_name(np.asarray(ras_mm, float), location) is not None


def _box_name(p: np.ndarray, location: str) -> str | None:
    for name, ((x0, x1), (y0, y1), (z0, z1)) in REGION_BOXES_MNI[location].items():
        if x0 <= abs(p[0]) <= x1 and y0 <= p[1] <= y1 and z0 <= p[2] <= z1:
            return name
    return None


def _in_boxes(xyz: np.ndarray, location: str, pad: float = 0.0) -> np.ndarray:
    out = np.zeros(len(xyz), bool)
    ax = np.abs(xyz[:, 0])
    for (x0, x1), (y0, y1), (z0, z1) in REGION_BOXES_MNI[location].values():
        out |= (
            (ax >= x0 - pad) & (ax <= x1 + pad) & (xyz[:, 1] >= y0 - pad) & (xyz[:, 1] <= y1 + pad)
            & (xyz[:, 2] >= z0 - pad) & (xyz[:, 2] <= z1 + pad)
        )
    return out


@dataclass(frozen=True)
class _Candidates:
    points: np.ndarray  # (N, 3) world mm of 1 mm template voxel centres
    depth: np.ndarray  # (N,) mm to the nearest CSF (>= 0.5) or outside the brain
    region: np.ndarray  # (N,) index into names
    names: tuple[str, ...]


@functools.lru_cache(maxsize=1)
def _location_candidates() -> dict[str, _Candidates]:
    """Template voxels where microbleeds of each MARS class may be centred (cached).

    deep: parenchyma (grey + white >= 0.9, CSF < 0.1) in the deep boxes (0.5 mm inside
    their faces: centres are jittered by up to 0.5 mm); infratentorial:
    the same in the brainstem/cerebellum boxes; lobar: grey/white junction (both >= 0.3,
    CSF < 0.1) outside the deep boxes (padded 3 mm) and above the tentorium (not below
    z = -12 behind y = -40, not in the diencephalon/midbrain below the thalami).
    """
    anat = load_mni_anatomy()
    gm, wm, csf, brain = anat.gm, anat.wm, anat.csf, anat.brain
    ijk = np.argwhere(brain)
    xyz = voxel_to_world(anat.affine, ijk).astype(np.float32)
    g, w, c = gm[brain], wm[brain], csf[brain]
    # Depth below CSF/outside, on a 2 mm grid (ample for a clearance test).
    solid = brain & (csf < 0.5)
    depth2 = ndimage.distance_transform_edt(solid[::2, ::2, ::2], sampling=2.0).astype(np.float32)
    depth = depth2[ijk[:, 0] // 2, ijk[:, 1] // 2, ijk[:, 2] // 2]

    parenchyma = (g + w >= 0.9) & (c < 0.1)
    out: dict[str, _Candidates] = {}
    for loc in ("deep", "infratentorial"):
        names = tuple(REGION_BOXES_MNI[loc])
        region = np.full(len(xyz), -1, np.int8)
        ax = np.abs(xyz[:, 0])
        for r, ((x0, x1), (y0, y1), (z0, z1)) in enumerate(REGION_BOXES_MNI[loc].values()):
            # 0.5 mm inside the box, so that the sub-millimetre jitter of a centre keeps it in
            h = 0.5
            inbox = (ax >= (x0 + h if x0 > 0 else 0.0)) & (ax <= x1 - h) & (xyz[:, 1] >= y0 + h)
            inbox &= (xyz[:, 1] <= y1 - h) & (xyz[:, 2] >= z0 + h) & (xyz[:, 2] <= z1 - h)
            region[inbox & (region < 0)] = r
        keep = parenchyma & (region >= 0)
        out[loc] = _Candidates(xyz[keep], depth[keep], region[keep], names)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    junction = (g >= 0.3) & (w >= 0.3) & (c < 0.1)
    below_tentorium = (y < -40.0) & (z < -12.0)
    diencephalon = (np.abs(x) < 16.0) & (y > -45.0) & (y < 5.0) & (z < -2.0)
    keep = (
        junction & ~below_tentorium & ~diencephalon & (z > -40.0)
        & ~_in_boxes(xyz, "deep", pad=3.0) & ~_in_boxes(xyz, "infratentorial", pad=3.0)
    )
    out["lobar"] = _Candidates(xyz[keep], depth[keep], np.zeros(int(keep.sum()), np.int8), ("cerebral_lobes",))
    return out


def _render_sphere(
    grid: _Grid, layers: _Layers, centre: np.ndarray, r_true: float, r_vis: float, signal: float,
    dchi: float, rad_per_ppm: float, label: tuple[str, int] | None,
) -> int:
    """Draw a haemosiderin/calcium sphere; returns the number of voxels labelled.

    Magnitude: the visible sphere (radius ``r_vis``) scales the signal by ``signal``,
    partial-volumed by supersampling. Phase: macroscopic sphere field (see the
    package docstring), tapered to 0 between 2.5 and 3 true radii, beyond which it is < 4 %;
    supersampled where a voxel may touch the sphere, taken at the voxel centre further
    out, where it is smooth. Label: voxels at least half inside the visible sphere, and
    the voxel of the centre.
    """

    def shift(rel: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(rel, axis=-1)
        rs = np.maximum(r, 1e-6)
        out = dchi / 3.0 * (r_true / rs) ** 3 * (3.0 * (rel[..., 2] / rs) ** 2 - 1.0)
        taper = np.clip((3.0 * r_true - r) / (0.5 * r_true), 0.0, 1.0)
        return np.where(r < r_true, 2.0 / 3.0 * dchi, out * taper)

    reach = max(r_vis, 3.0 * r_true) if layers.phase is not None else r_vis
    idx, world = grid.ball(centre, reach)
    if len(idx) == 0:
        return 0
    near = np.linalg.norm(world - centre, axis=-1) <= max(r_vis, r_true) + grid.half_diag
    if layers.phase is not None and not near.all():
        far = ~near
        layers.apply(idx[far], np.ones(int(far.sum())), shift(world[far] - centre) * rad_per_ppm)
    idx, world = idx[near], world[near]
    rel = world[:, None, :] + grid.sub_world[None, :, :] - centre  # (N, S, 3)
    inside_vis = np.linalg.norm(rel, axis=-1) < r_vis
    pv = inside_vis.mean(axis=1)
    mag = np.where(inside_vis, signal, 1.0)
    phase = _voxel_phase(mag, shift(rel) * rad_per_ppm) if layers.phase is not None else None
    layers.apply(idx, mag.mean(axis=1), phase)
    if label is None:
        return 0
    kind, value = label
    target = layers.instances if kind == "instance" else layers.mimics
    sel = idx[pv >= 0.5]
    c = np.rint(grid.voxel_of(centre)).astype(int)
    if np.all((c >= 0) & (c < np.asarray(grid.shape))):
        sel = np.vstack([sel, c[None, :]])
    target[sel[:, 0], sel[:, 1], sel[:, 2]] = value
    return int(len(np.unique(sel, axis=0)))


def _draw_diameter(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Diameter skewed to small ones: lo + (hi - lo) * Beta(1.3, 4) (78 % below 5 mm for 2-10)."""
    return float(lo + (hi - lo) * rng.beta(1.3, 4.0))


def add_calcifications(scene: _Scene, count: int) -> None:
    """Round, dark, diamagnetic spheres (true diameter 2-4.5 mm) at :data:`CALC_SITES`."""
    rng, grid = scene.rng, scene.grid
    site_names = list(CALC_SITES)
    for _ in range(count):
        placed = False
        for _attempt in range(40):
            site = site_names[int(rng.choice(len(site_names), p=CALC_SITE_WEIGHTS))]
            base = np.asarray(CALC_SITES[site]) * np.array([rng.choice([-1.0, 1.0]), 1.0, 1.0])
            c = base + rng.uniform(-1.5, 1.5, size=3) * np.array([0.0 if site == "pineal" else 1.0, 1.0, 1.0])
            d_true = float(rng.uniform(2.0, 4.5))
            r_true, r_vis = d_true / 2, d_true / 2 * scene.bloom
            if grid.contains(c, r_vis)[0] and scene.obstacles.clear(c, r_vis):
                placed = True
                break
        if not placed:
            continue
        f = float(rng.uniform(0.1, 0.35))
        dchi = -float(rng.uniform(0.10, 0.25))
        label = ("mimic", _MIMIC_LABEL_OF["calcification"])
        _render_sphere(grid, scene.layers, c, r_true, r_vis, f, dchi, scene.rad_per_ppm, label)
        scene.obstacles.spheres.append((c, r_vis))
        scene.record("calcification", c, site=site, diameter_mm=round(d_true, 4),
                     visible_diameter_mm=round(2 * r_vis, 4), susceptibility_ppm=round(dchi, 4),
                     signal_fraction=round(f, 4))


def add_microbleeds(
    scene: _Scene, count: int, weights: dict[str, float], diameter_range: tuple[float, float]
) -> list[dict[str, Any]]:
    """Place and draw microbleeds; returns their truth (ids 1..n in placement order).

    Each try draws a class (by ``weights``, over the classes the view contains), a
    candidate centre of that class (:func:`_location_candidates`, jittered within its
    1 mm voxel) and a diameter; it is kept if the centre lies at least 0.7 visible
    radii from CSF or the brain's edge, the visible sphere is inside the view and clear
    of everything placed. A bleed with no room after 200 tries is left out.
    """
    rng, grid = scene.rng, scene.grid
    cands = _location_candidates()
    available: dict[str, _Candidates] = {}
    for loc in LOCATIONS:
        cand = cands[loc]
        keep = grid.contains(cand.points, margin_mm=1.0)
        if weights.get(loc, 0.0) > 0 and keep.any():
            available[loc] = _Candidates(cand.points[keep], cand.depth[keep], cand.region[keep], cand.names)
    locs = list(available)
    p_loc = np.array([weights[loc] for loc in locs], float)
    truth: list[dict[str, Any]] = []
    for _ in range(count if locs else 0):
        for _attempt in range(200):
            loc = locs[int(rng.choice(len(locs), p=p_loc / p_loc.sum()))]
            cand = available[loc]
            j = int(rng.integers(len(cand.points)))
            c = cand.points[j].astype(float) + rng.uniform(-0.5, 0.5, size=3)
            d_true = _draw_diameter(rng, *diameter_range)
            r_vis = d_true / 2 * scene.bloom
            if cand.depth[j] >= 0.7 * r_vis and grid.contains(c, r_vis)[0] and scene.obstacles.clear(c, r_vis):
                break
        else:
            continue
        _draw_cmb(scene, c, d_true, loc, cand.names[int(cand.region[j])], truth)
    return truth


def _draw_cmb(scene: _Scene, c: np.ndarray, d_true: float, location: str, region: str,
              truth: list[dict[str, Any]]) -> None:
    """Draw one placed microbleed (signal and susceptibility drawn here) and append its truth."""
    rng, grid = scene.rng, scene.grid
    r_true, r_vis = d_true / 2, d_true / 2 * scene.bloom
    vox_mm3 = float(abs(np.linalg.det(grid.linear)))
    cmb_id = len(truth) + 1
    f = float(rng.uniform(0.1, 0.3))
    dchi = float(rng.uniform(0.10, 0.25))
    n_vox = _render_sphere(grid, scene.layers, c, r_true, r_vis, f, dchi, scene.rad_per_ppm, ("instance", cmb_id))
    scene.obstacles.spheres.append((c, r_vis))
    c = np.round(c, 4)
    truth.append({
        "id": cmb_id,
        "world_ras_mm": _r(c),
        "voxel_ijk": _r(grid.voxel_of(c)),
        "diameter_mm": round(d_true, 4),
        "visible_diameter_mm": round(2 * r_vis, 4),
        "volume_mm3": round(n_vox * vox_mm3, 4),
        "location": location,
        "region": region,
        "susceptibility_ppm": round(dchi, 4),
        "signal_fraction": round(f, 4),
    })


def add_microbleed_sites(scene: _Scene, sites: Sequence[CMBSite]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Draw microbleeds exactly at ``sites`` (in order); returns (truth, skipped sites).

    Size, blooming, signal and susceptibility as :func:`add_microbleeds` draws them; no
    depth rule (the caller chose the site). A site is skipped, with its reason, when its
    visible sphere leaves the view or comes within the clearance of an earlier site or
    of a mimic.
    """
    grid = scene.grid
    truth: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    placed: list[tuple[np.ndarray, float]] = []
    for site in sites:
        c = np.asarray(site.world_ras_mm, float)
        r_vis = float(site.diameter_mm) / 2 * scene.bloom
        if not grid.contains(c, r_vis)[0]:
            skipped.append(skipped_site(site, "outside the field of view"))
        elif not _Obstacles(spheres=placed).clear(c, r_vis):
            skipped.append(skipped_site(site, "overlaps an earlier site"))
        elif not scene.obstacles.clear(c, r_vis):
            skipped.append(skipped_site(site, "overlaps a mimic"))
        else:
            placed.append((c, r_vis))
            _draw_cmb(scene, c, float(site.diameter_mm), site.location, site.region, truth)
    return truth, skipped


def add_siderosis(scene: _Scene, sites: Sequence[SiderosisSite]) -> None:
    """Cortical superficial siderosis: a thin paramagnetic, dark layer along each site's path.

    Drawn as a vein is (:func:`~.mimics._render_vein`: a tube of the site's thickness,
    blooming with TE, cylinder phase), with a microbleed's signal drop and susceptibility
    (haemosiderin, as in a bleed), after the microbleeds and over whatever lies there.
    Labelled with the superficial-spot mimic label (3, "sulcal/airbone") where no
    microbleed is, and recorded as a ``siderosis`` mimic.
    """
    rng, layers = scene.rng, scene.layers
    for site in sites:
        path = np.asarray(site.path_ras_mm, float)
        r_true = float(site.thickness_mm) / 2
        r_vis = r_true * scene.bloom
        f = float(rng.uniform(0.1, 0.3))
        dchi = float(rng.uniform(0.10, 0.25))
        before = layers.mimics.copy()
        _render_vein(scene.grid, layers, path, r_true, r_vis, f, dchi, scene.rad_per_ppm)
        new = (layers.mimics != before) & (layers.instances == 0)
        layers.mimics[:] = before
        layers.mimics[new] = _MIMIC_LABEL_OF["sulcal"]
        length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
        mid = path[len(path) // 2]
        scene.record("siderosis", mid, region=site.region, path=[_r(p, 4) for p in path],
                     thickness_mm=round(2 * r_true, 4), visible_thickness_mm=round(2 * r_vis, 4),
                     length_mm=round(length, 4), susceptibility_ppm=round(dchi, 4), signal_fraction=round(f, 4))
