"""Where the susceptibility sources sit in the MNI152 2009 anatomy.

Tables of world (MNI RAS mm) positions: the iron-rich deep grey nuclei
(:data:`NUCLEI_MNI`), the air spaces of the skull base (:data:`AIR_MNI`), the dural
sinuses and deep veins (:func:`large_vein_paths`), and the boxes of the MARS microbleed
classes (:data:`REGION_BOXES_MNI`); plus the geometry they share (soft ellipsoids, the
distance to a polyline) and the candidate centres of microbleeds.

Positions are read off the MNI152 2009 template (nilearn's) and checked against the
standard atlases named with each table; they are approximate (a few mm), which is
what a simulator needs: the object lies in the right tissue on this template.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from napari_neuroreview.core.anatomy import (
    load_mni_anatomy,
    voxel_to_world,
    world_to_voxel,
)

from ..swi_contract import REGION_BOXES_MNI

#: Iron-rich nuclei: right-side centre (mirrored to the left), semi-axes (mm) of a
#: soft-edged ellipsoid. Centres after Keuken et al. 2014 (NeuroImage 94:40, 7 T atlas
#: of the subcortex) and the template's own contrast; the susceptibility of each is
#: :data:`~.tissue.CHI_IRON_PPM`. ``mimic``: small and dark enough to be labelled a
#: microbleed mimic.
NUCLEI_MNI: dict[str, dict[str, Any]] = {
    "putamen": {"centre": (26.0, 2.0, 1.0), "semi_axes": (5.0, 13.0, 8.0), "mimic": False},
    "caudate_head": {"centre": (13.0, 13.0, 9.0), "semi_axes": (3.5, 7.0, 7.0), "mimic": False},
    "globus_pallidus": {"centre": (19.5, -4.0, -2.0), "semi_axes": (3.8, 8.0, 5.0), "mimic": True},
    "substantia_nigra": {"centre": (11.0, -18.0, -12.0), "semi_axes": (3.0, 6.0, 2.5), "mimic": True},
    "red_nucleus": {"centre": (5.0, -20.0, -8.5), "semi_axes": (3.0, 3.5, 3.0), "mimic": True},
    "dentate": {"centre": (15.0, -57.0, -35.0), "semi_axes": (5.0, 7.0, 5.0), "mimic": True},
}
EDGE_MM: float = 1.5  # soft edge of the nuclei ellipsoids

#: Air spaces (ellipsoids, MNI mm; ``mirror``: one on each side): the frontal sinus in
#: front of the frontal poles, the ethmoid cells under the gyri recti, the sphenoid
#: sinus under the sella, the mastoid air cells behind the petrous bone. After standard
#: CT anatomy registered to MNI space; approximate. Air is never put within 2 mm of the
#: brain mask (the whole-head field keeps it 4 mm away): it lies in bone, outside the brain. ``air``: the
#: air fraction of the space (ethmoid and mastoid cells are a honeycomb of bone and air).
AIR_MNI: dict[str, dict[str, Any]] = {
    "frontal_sinus": {"centre": (0.0, 76.0, 2.0), "semi_axes": (12.0, 5.0, 8.0), "mirror": False, "air": 1.0},
    "ethmoid": {"centre": (11.0, 40.0, -40.0), "semi_axes": (5.0, 12.0, 6.0), "mirror": True, "air": 0.7},
    "sphenoid": {"centre": (0.0, 12.0, -46.0), "semi_axes": (10.0, 9.0, 7.0), "mirror": False, "air": 1.0},
    "mastoid": {"centre": (56.0, -42.0, -56.0), "semi_axes": (8.0, 10.0, 8.0), "mirror": True, "air": 0.5},
}



def ellipsoid_weight(pts: np.ndarray, centre: np.ndarray, semi: np.ndarray, edge_mm: float = EDGE_MM) -> np.ndarray:
    """Soft inside weight of an axis-aligned ellipsoid (1 in, 0 out, linear over ``edge_mm``)."""
    q = (pts - centre) / semi
    rho = np.linalg.norm(q, axis=-1)
    grad = np.linalg.norm(q / semi, axis=-1) / np.maximum(rho, 1e-6)
    d = (rho - 1.0) / np.maximum(grad, 1e-6)  # first-order signed distance (mm)
    return np.clip(0.5 - d / edge_mm, 0.0, 1.0)


def polyline_distance(pts: np.ndarray, path: np.ndarray, within: float | None = None) -> np.ndarray:
    """Distance (mm) of points (..., 3) to a polyline (M, 3).

    With ``within``, only points closer than ``within`` get their exact distance; the
    others get ``inf``. Why: a tube's partial-volume fraction is zero beyond its radius
    plus a sample, so the exact point-to-segment distances (M per point) are computed only
    for points a KD-tree of the densely sampled path puts near it (the renders' slowest
    step otherwise). The exact values are those of the full computation.
    """
    pts = np.asarray(pts, np.float64)
    path = np.asarray(path, np.float64)
    if within is None:
        return _segments_distance(pts, path)
    from scipy.spatial import cKDTree

    flat = pts.reshape(-1, 3)
    step = max(float(within) / 2.0, 0.05)
    seg = np.diff(path, axis=0)
    n = np.maximum(np.ceil(np.linalg.norm(seg, axis=1) / step).astype(int), 1)
    dense = np.concatenate([path[i] + np.linspace(0.0, 1.0, k, endpoint=False)[:, None] * seg[i]
                            for i, k in enumerate(n)] + [path[-1:]])
    # the nearest dense sample is at most step/2 farther than the polyline itself
    near, _ = cKDTree(dense).query(flat, distance_upper_bound=float(within) + step / 2.0)
    out = np.full(len(flat), np.inf)
    close = np.flatnonzero(np.isfinite(near))
    for start in range(0, len(close), 65536):
        rows = close[start:start + 65536]
        out[rows] = _segments_distance(flat[rows], path)
    out[out >= within] = np.inf
    return out.reshape(pts.shape[:-1])


def _segments_distance(pts: np.ndarray, path: np.ndarray) -> np.ndarray:
    """Exact distance of points (..., 3) to every segment of ``path``, minimum over segments."""
    p = pts[..., None, :]
    a, b = path[:-1], path[1:]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1).min(axis=-1)


def nuclei_sides() -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """Every nucleus on both sides: (name, side, centre, semi-axes)."""
    out = []
    for name, nuc in NUCLEI_MNI.items():
        for side, sx in (("right", 1.0), ("left", -1.0)):
            out.append((name, side, np.asarray(nuc["centre"]) * np.array([sx, 1, 1]), np.asarray(nuc["semi_axes"], float)))
    return out


def air_cavities() -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """Every air space of :data:`AIR_MNI` on its side(s): (name, centre, semi-axes, air fraction)."""
    out = []
    for name, cav in AIR_MNI.items():
        for sx in ((1.0, -1.0) if cav["mirror"] else (1.0,)):
            out.append((name, np.asarray(cav["centre"]) * np.array([sx, 1, 1]), np.asarray(cav["semi_axes"], float),
                        float(cav["air"])))
    return out


@functools.lru_cache(maxsize=1)
def large_vein_paths() -> tuple[tuple[str, np.ndarray, float], ...]:
    """Dural sinuses and deep veins: (name, path (M, 3) MNI mm, radius mm).

    The superior sagittal sinus follows the top of the midline brain surface on the
    template (1.5 mm inside the mask, from the frontal pole to the torcula); the straight
    sinus runs from the great vein of Galen (behind the splenium) to the torcula; the
    transverse sinuses from the torcula along the tentorium's attachment to the
    sigmoid bend; the internal cerebral veins along the roof of the third ventricle to
    Galen; the basal veins (Rosenthal) around the midbrain to Galen. Radii (lumen):
    sinuses 3-4 mm, Galen 2.5 mm, internal cerebral 1.2 mm, basal 1.0 mm (Kiliç & Akakin
    2008, Neurosurgery 62:1319 (venous anatomy review); approximate).
    """
    anat = load_mni_anatomy()
    out: list[tuple[str, np.ndarray, float]] = []
    # Superior sagittal sinus: top of the mask at x = 0 along y, lowered by 1.5 mm.
    i0 = round(float(world_to_voxel(anat.affine, [0.0, 0.0, 0.0])[0]))
    col = anat.brain[i0]
    pts = []
    for y in np.arange(50.0, -96.0, -6.0):
        j = round(float(world_to_voxel(anat.affine, [0.0, y, 0.0])[1]))
        ks = np.nonzero(col[j])[0]
        if len(ks):
            pts.append(voxel_to_world(anat.affine, [i0, j, ks.max()]) - np.array([0.0, 0.0, 1.5]))
    sss = np.array(pts)
    out.append(("superior_sagittal_sinus", sss, 3.5))
    torcula = np.array([0.0, -96.0, 2.0])
    galen = np.array([0.0, -46.0, 6.0])
    out.append(("straight_sinus", np.array([galen, [0.0, -70.0, 4.0], torcula]), 3.0))
    out.append(("great_vein", np.array([[0.0, -40.0, 9.0], galen]), 2.5))
    for sx in (1.0, -1.0):
        m = np.array([sx, 1.0, 1.0])
        out.append(("transverse_sinus", np.array([torcula, [18, -95, -4], [38, -85, -14], [50, -68, -24],
                                                  [52, -55, -34]]) * m, 3.5))
        out.append(("internal_cerebral_vein", np.array([[3, -2, 14], [3, -18, 14], [2, -32, 12], [0.5, -40, 9]]) * m,
                    1.2))
        out.append(("basal_vein", np.array([[20, 2, -12], [19, -14, -10], [14, -30, -4], [6, -40, 4],
                                            [0.5, -43, 7]]) * m, 1.0))
    return tuple(out)


@dataclass(frozen=True)
class Candidates:
    """Template voxel centres where a microbleed of one class may be centred."""

    points: np.ndarray  # (N, 3) world mm
    depth: np.ndarray  # (N,) mm to CSF or the brain's edge
    region: np.ndarray  # (N,) index into names
    names: tuple[str, ...]


def _in_boxes(xyz: np.ndarray, location: str, pad: float = 0.0) -> np.ndarray:
    out = np.zeros(len(xyz), bool)
    ax = np.abs(xyz[:, 0])
    for (x0, x1), (y0, y1), (z0, z1) in REGION_BOXES_MNI[location].values():
        out |= ((ax >= x0 - pad) & (ax <= x1 + pad) & (xyz[:, 1] >= y0 - pad) & (xyz[:, 1] <= y1 + pad)
                & (xyz[:, 2] >= z0 - pad) & (xyz[:, 2] <= z1 + pad))
    return out


@functools.lru_cache(maxsize=1)
def cmb_candidates() -> dict[str, Candidates]:
    """Microbleed centres per MARS class on the template (cached).

    deep / infratentorial: parenchyma (grey + white >= 0.9, CSF < 0.1) inside the class's
    boxes; lobar: grey/white junction (both >= 0.3, CSF < 0.1) outside every box (3 mm
    margin), above the tentorium and the diencephalon.
    """
    anat = load_mni_anatomy()
    ijk = np.argwhere(anat.brain)
    xyz = voxel_to_world(anat.affine, ijk).astype(np.float32)
    g, w, c = anat.gm[anat.brain], anat.wm[anat.brain], anat.csf[anat.brain]
    solid = anat.brain & (anat.csf < 0.5)
    depth2 = ndimage.distance_transform_edt(solid[::2, ::2, ::2], sampling=2.0).astype(np.float32)
    depth = depth2[ijk[:, 0] // 2, ijk[:, 1] // 2, ijk[:, 2] // 2]
    parenchyma = (g + w >= 0.9) & (c < 0.1)
    out: dict[str, Candidates] = {}
    for loc in ("deep", "infratentorial"):
        names = tuple(REGION_BOXES_MNI[loc])
        region = np.full(len(xyz), -1, np.int8)
        ax = np.abs(xyz[:, 0])
        for r, ((x0, x1), (y0, y1), (z0, z1)) in enumerate(REGION_BOXES_MNI[loc].values()):
            inbox = (ax >= x0) & (ax <= x1) & (xyz[:, 1] >= y0) & (xyz[:, 1] <= y1)
            inbox &= (xyz[:, 2] >= z0) & (xyz[:, 2] <= z1)
            region[inbox & (region < 0)] = r
        keep = parenchyma & (region >= 0)
        out[loc] = Candidates(xyz[keep], depth[keep], region[keep], names)
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    keep = ((g >= 0.3) & (w >= 0.3) & (c < 0.1) & ~((y < -40.0) & (z < -12.0))
            & ~((np.abs(x) < 16.0) & (y > -45.0) & (y < 5.0) & (z < -2.0)) & (z > -40.0)
            & ~_in_boxes(xyz, "deep", 3.0) & ~_in_boxes(xyz, "infratentorial", 3.0))
    out["lobar"] = Candidates(xyz[keep], depth[keep], np.zeros(int(keep.sum()), np.int8), ("cerebral_lobes",))
    return out


@functools.lru_cache(maxsize=1)
def vein_seeds() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template points where small veins start (cached).

    Returns (ventricle wall points, their outward unit directions, sulcal CSF points):
    medullary veins start at the lateral ventricles' wall (CSF >= 0.7 next to white
    matter, |x| 8-30, y -40..25, z 5-28) and run away from the ventricles' axis; cortical
    veins start in sulcal CSF (CSF >= 0.6 within 12 mm of the brain's edge, z > 5).
    """
    anat = load_mni_anatomy()
    brain = anat.brain
    ijk = np.argwhere(brain & (anat.csf >= 0.6))
    xyz = voxel_to_world(anat.affine, ijk)
    wm_near = ndimage.maximum_filter(anat.wm, size=3)[tuple(ijk.T)] > 0.7
    x, y, z = xyz.T
    vent = wm_near & (anat.csf[tuple(ijk.T)] >= 0.7) & (np.abs(x) > 8) & (np.abs(x) < 30) & (y > -40) & (y < 25)
    vent &= (z > 5) & (z < 28)
    vp = xyz[vent]
    axis_pt = np.stack([np.sign(vp[:, 0]) * 12.0, vp[:, 1], np.full(len(vp), 12.0)], -1)
    d = vp - axis_pt
    d[:, 2] = np.abs(d[:, 2]) + 4.0  # outward and upward, as medullary veins run
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    edge = ndimage.distance_transform_edt(brain[::2, ::2, ::2], sampling=2.0)
    e = edge[ijk[:, 0] // 2, ijk[:, 1] // 2, ijk[:, 2] // 2]
    sulc = (e <= 12.0) & (z > 5) & (anat.csf[tuple(ijk.T)] >= 0.6)
    return vp, d, xyz[sulc]
