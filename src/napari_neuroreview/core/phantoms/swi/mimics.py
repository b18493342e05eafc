"""Mimics of microbleeds: veins, the iron of the deep grey nuclei, sulcal and air-bone spots.

What a detector must learn to reject. Veins are tubes along seeded paths (medullary
veins from the ventricle wall to the cortex, cortical veins along the surface up to the
superior sagittal sinus); sulcal and air-bone spots are irregular blobs (unions of small
ellipsoids) under the brain surface; the iron nuclei get their phase and labels here (their
darker magnitude is in the tissue signal, :mod:`.contrast`). Calcifications, round like
microbleeds, are drawn with them in :mod:`.lesions`. Each ``add_*`` function draws from
the scene's random generator in a fixed order. Why they look as they do: the package
docstring (:mod:`napari_neuroreview.core.phantoms.swi`, *Veins*, *Sulcal and air-bone
spots*, *Tissue contrast*).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from napari_neuroreview.core.anatomy import load_mni_anatomy, voxel_to_world, world_to_voxel

from .contrast import NUCLEI_MNI, _ellipsoid_weight
from .scene import _Grid, _Layers, _r, _Scene, _segments_closest
from .susceptibility import _demag_z, _voxel_phase

#: Labels of the mimic truth image.
MIMIC_LABELS: dict[int, str] = {0: "none", 1: "vein", 2: "iron", 3: "sulcal/airbone", 4: "calcification"}
_MIMIC_LABEL_OF = {"vein": 1, "iron": 2, "sulcal": 3, "airbone": 3, "calcification": 4}
#: Mimic types, as keys of ``make_swi_case(mimics=...)``.
MIMIC_TYPES: tuple[str, ...] = ("vein", "iron", "sulcal", "airbone", "calcification")
_SURFACE_CENTRE = np.array([0.0, -18.0, 12.0])  # where surface rays start


def _lookup(data: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Nearest-voxel value of a template map at world points (..., 3); 0 outside."""
    anat = load_mni_anatomy()
    ijk = np.rint(world_to_voxel(anat.affine, pts)).astype(np.intp)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(anat.shape)), axis=-1)
    ijk = np.clip(ijk, 0, np.asarray(anat.shape) - 1)
    out = data[ijk[..., 0], ijk[..., 1], ijk[..., 2]]
    return np.where(inside, out, np.zeros((), out.dtype))


@functools.lru_cache(maxsize=1)
def _periventricular_starts() -> np.ndarray:
    """World points in white matter just outside the lateral ventricles' bodies (cached)."""
    anat = load_mni_anatomy()
    lo = np.rint(world_to_voxel(anat.affine, (-30.0, -40.0, 0.0))).astype(int)
    hi = np.rint(world_to_voxel(anat.affine, (30.0, 25.0, 36.0))).astype(int) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    vent = anat.csf[box] >= 0.8
    near = ndimage.binary_dilation(vent, iterations=2) & ~ndimage.binary_dilation(vent, iterations=1)
    ok = near & (anat.wm[box] >= 0.6) & (anat.csf[box] < 0.2)
    pts = voxel_to_world(anat.affine, np.argwhere(ok) + lo)
    sel = (np.abs(pts[:, 0]) >= 8) & (np.abs(pts[:, 0]) <= 26) & (pts[:, 1] >= -35) & (pts[:, 1] <= 20)
    sel &= (pts[:, 2] >= 8) & (pts[:, 2] <= 32)
    return pts[sel]


def _surface_radius(directions: np.ndarray) -> np.ndarray:
    """Distance (mm) from :data:`_SURFACE_CENTRE` to the brain surface along unit rays."""
    anat = load_mni_anatomy()
    r = np.arange(0.0, 110.0, 0.5)
    pts = _SURFACE_CENTRE + directions[:, None, :] * r[None, :, None]
    inside = _lookup(anat.brain, pts)
    # outermost brain sample along each ray
    idx = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
    return np.where(inside.any(axis=1), r[idx], 0.0)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _tangent_frame(n: np.ndarray) -> np.ndarray:
    """3x3 rotation whose last column is the unit normal n."""
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    t1 = _unit(np.cross(n, a))
    t2 = np.cross(n, t1)
    return np.stack([t1, t2, n], axis=1)


def _path_geometry(
    pts: np.ndarray, a: np.ndarray, b: np.ndarray, nearest: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance, radial vector and axis of the path at points (N, S, 3).

    ``nearest`` (N,) is the segment nearest each voxel centre; a sub-sample's nearest
    segment is that one or a neighbour (segments are ~1 mm, curvature is gentle).
    """
    best_d = np.full(pts.shape[:2], np.inf)
    best_v = np.zeros(pts.shape)
    best_t = np.zeros(pts.shape)
    for off in (-1, 0, 1):
        s = np.clip(nearest + off, 0, len(a) - 1)
        v, t = _segments_closest(pts, a[s][:, None, :], b[s][:, None, :])
        d = np.linalg.norm(v, axis=-1)
        better = d < best_d
        best_d = np.where(better, d, best_d)
        best_v = np.where(better[..., None], v, best_v)
        best_t = np.where(better[..., None], np.broadcast_to(t, v.shape), best_t)
    return best_d, best_v, best_t


def _render_vein(
    grid: _Grid, layers: _Layers, path: np.ndarray, r_true: float, r_vis: float, signal: float,
    dchi: float, rad_per_ppm: float,
) -> None:
    """Draw a vein: a tube of radius ``r_vis`` along a polyline (1 mm segments).

    Phase: infinite-cylinder field of the nearest segment (macroscopic form, see the
    package docstring), tapered to 0 between 3 and 4 true radii; supersampled where a voxel may
    touch the tube, taken at voxel centres further out. Label 1 where at least half the
    voxel is inside the tube and along the centre line (so a thin vein stays connected).
    """

    def shift(d: np.ndarray, v: np.ndarray, t: np.ndarray) -> np.ndarray:
        cos_t = t[..., 2]
        b_perp = np.stack([-cos_t * t[..., 0], -cos_t * t[..., 1], 1.0 - cos_t * t[..., 2]], -1)
        rho = np.maximum(d, 1e-6)
        proj = (v * b_perp).sum(axis=-1) / rho  # |b_perp| cos(psi)
        sin2 = 1.0 - cos_t**2
        out = dchi / 2.0 * (r_true / rho) ** 2 * (2.0 * proj**2 - sin2)  # = dchi/2 sin2 (a/rho)^2 cos 2psi
        taper = np.clip((4.0 * r_true - d) / r_true, 0.0, 1.0)
        return np.where(d < r_true, dchi * (1.0 + cos_t**2) / 2.0, out * taper)

    reach = max(r_vis, 4.0 * r_true) if layers.phase is not None else r_vis
    idx, world = grid.box(path.min(axis=0) - reach - grid.half_diag, path.max(axis=0) + reach + grid.half_diag)
    if len(idx) == 0:
        return
    a, b = path[:-1], path[1:]
    # Voxels near the centre line, and the segment nearest each (from points 0.25 mm apart).
    seg_len = np.linalg.norm(b - a, axis=1)
    fine_t = [np.arange(0.0, 1.0, 0.25 / max(float(L), 1e-6)) for L in seg_len]
    fine = np.concatenate([a[s] + t[:, None] * (b[s] - a[s]) for s, t in enumerate(fine_t)] + [b[-1:]])
    fine_seg = np.concatenate([np.full(len(t), s) for s, t in enumerate(fine_t)] + [[len(a) - 1]])
    d_vox, nearest_fine = cKDTree(fine).query(world, distance_upper_bound=reach + grid.half_diag + 0.25)
    keep = np.isfinite(d_vox)
    idx, world, d_vox, nearest = idx[keep], world[keep], d_vox[keep], fine_seg[nearest_fine[keep]]
    if len(idx) == 0:
        return
    near = d_vox <= max(r_vis, r_true) + grid.half_diag + 0.25
    if layers.phase is not None and not near.all():
        far = ~near
        d, v, t = _path_geometry(world[far][:, None, :], a, b, nearest[far])
        layers.apply(idx[far], np.ones(int(far.sum())), shift(d, v, t)[:, 0] * rad_per_ppm)
    idx, world, nearest = idx[near], world[near], nearest[near]
    pts = world[:, None, :] + grid.sub_world[None, :, :]  # (N, S, 3)
    d, v, t = _path_geometry(pts, a, b, nearest)
    inside_vis = d < r_vis
    pv = inside_vis.mean(axis=1)
    mag = np.where(inside_vis, signal, 1.0)
    phase = _voxel_phase(mag, shift(d, v, t) * rad_per_ppm) if layers.phase is not None else None
    layers.apply(idx, mag.mean(axis=1), phase)
    sel = idx[pv >= 0.5]
    fine = _resample_path(path, 0.3)
    line = np.rint(grid.voxel_of(fine)).astype(int)
    line = line[np.all((line >= 0) & (line < np.asarray(grid.shape)), axis=1)]
    sel = np.vstack([sel, line])
    layers.mimics[sel[:, 0], sel[:, 1], sel[:, 2]] = _MIMIC_LABEL_OF["vein"]


def _render_blob(
    grid: _Grid, layers: _Layers, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], signal: float,
    phase_fn: Callable[[np.ndarray], np.ndarray] | None, reach_extra: float, label: int,
) -> None:
    """Draw an irregular blob, the union of ellipsoids ``(centre, frame, semi_axes)``.

    ``phase_fn`` maps world points (..., 3) to a phase (rad); it may reach
    ``reach_extra`` mm beyond the blob, where it is smooth and taken at voxel centres.
    Voxels that may touch the blob are supersampled.
    """
    centres = np.array([c for c, _, _ in parts])
    extent = max(float(np.max(s)) for _, _, s in parts)
    lo, hi = centres.min(axis=0) - extent - reach_extra, centres.max(axis=0) + extent + reach_extra
    idx, world = grid.box(lo, hi)
    if len(idx) == 0:
        return
    dist = np.min(np.linalg.norm(world[:, None, :] - centres[None, :, :], axis=-1), axis=1)
    near = dist <= extent + grid.half_diag
    if layers.phase is not None and phase_fn is not None:
        far = ~near
        layers.apply(idx[far], np.ones(int(far.sum())), phase_fn(world[far]))
    idx, world = idx[near], world[near]
    if len(idx) == 0:
        return
    pts = world[:, None, :] + grid.sub_world[None, :, :]
    inside = np.zeros(pts.shape[:2], bool)
    for c, frame, semi in parts:
        q = ((pts - c) @ frame) / semi
        inside |= (q**2).sum(axis=-1) < 1.0
    mag = np.where(inside, signal, 1.0)
    phase = None
    if layers.phase is not None and phase_fn is not None:
        phase = _voxel_phase(mag, phase_fn(pts))
    layers.apply(idx, mag.mean(axis=1), phase)
    sel = idx[inside.mean(axis=1) >= 0.5]
    layers.mimics[sel[:, 0], sel[:, 1], sel[:, 2]] = label


def _resample_path(path: np.ndarray, step: float) -> np.ndarray:
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(0.0, s[-1] + 1e-9, step)
    if t[-1] < s[-1]:
        t = np.append(t, s[-1])
    return np.stack([np.interp(t, s, path[:, a]) for a in range(3)], axis=-1)


def _medullary_vein(rng: np.random.Generator, starts: np.ndarray) -> np.ndarray | None:
    """A medullary vein: from the ventricle wall outwards and upwards to the cortex."""
    anat = load_mni_anatomy()
    start = starts[rng.integers(len(starts))]
    side = 1.0 if start[0] >= 0 else -1.0
    el = math.radians(rng.uniform(30.0, 70.0))
    az = math.radians(rng.uniform(-25.0, 25.0))
    d = np.array([side * math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    max_len = rng.uniform(20.0, 40.0)
    wobble = rng.normal(0.0, 0.06, size=(int(max_len) + 1, 3))
    pts = [start.copy()]
    p = start.copy()
    for step in range(int(max_len)):
        d = _unit(d + wobble[step])
        p = p + d
        g, w, c, b = (_lookup(m, p) for m in (anat.gm, anat.wm, anat.csf, anat.brain))
        if not b or c > 0.4:
            break
        pts.append(p.copy())
        if g > 0.55:  # reached the cortex
            break
    path = np.array(pts)
    if len(path) < 16 or np.ptp(path[:, 2]) < 7.0:
        return None
    return path


def _cortical_vein(rng: np.random.Generator) -> np.ndarray | None:
    """A superficial cortical vein: along the surface, up towards the superior sagittal sinus."""
    side = rng.choice([-1.0, 1.0])
    v0 = _unit(np.array([side * rng.uniform(0.55, 0.95), rng.uniform(-0.6, 0.6), rng.uniform(0.1, 0.6)]))
    v1 = _unit(np.array([side * 0.12, v0[1] + rng.uniform(-0.15, 0.15), 0.95]))
    angle = math.acos(float(np.clip(v0 @ v1, -1.0, 1.0)))
    n = max(int(angle * 70.0), 8)  # ~1 mm steps at a 70 mm radius
    t = np.linspace(0.0, 1.0, n)[:, None]
    dirs = _unit(np.sin((1 - t) * angle) * v0 + np.sin(t * angle) * v1)  # slerp
    length_frac = rng.uniform(0.5, 1.0)
    dirs = dirs[: max(int(len(dirs) * length_frac), 8)]
    radius = _surface_radius(dirs)
    if np.any(radius < 30.0):
        return None
    radius = ndimage.uniform_filter1d(radius, size=7, mode="nearest") - rng.uniform(1.5, 2.5)
    path = _SURFACE_CENTRE + dirs * radius[:, None]
    return path if len(path) >= 12 else None


def add_iron(scene: _Scene, nuclei_params: dict[str, dict[str, float]]) -> None:
    """Phase and labels of the iron nuclei (their magnitude is in the tissue signal).

    Inside: the uniform field of a magnetised ellipsoid, ``dchi (1 - N_z)`` with
    ``N_z`` its demagnetising factor along B0; outside: the dipole of the
    equal-volume sphere. Only the mimic nuclei (:data:`NUCLEI_MNI`) are labelled and
    kept clear of bleeds; deep bleeds may lie in the putamen, caudate and thalamus.
    """
    grid, layers = scene.grid, scene.layers
    for name, nuc in NUCLEI_MNI.items():
        semi = np.asarray(nuc["semi_axes"], float)
        a_eq = float(np.prod(semi) ** (1 / 3))
        inside_shift = nuc["dchi_ppm"] * (1.0 - _demag_z(tuple(nuc["semi_axes"])))
        for sx, side in ((1.0, "right"), (-1.0, "left")):
            c = np.asarray(nuc["centre"]) * np.array([sx, 1.0, 1.0])
            reach = float(semi.max()) + 1.5 * a_eq
            idx, world = grid.ball(c, reach)
            if len(idx) == 0:
                continue
            w = _ellipsoid_weight(world, c, semi)
            if layers.phase is not None:
                rel = world - c
                r = np.maximum(np.linalg.norm(rel, axis=-1), a_eq)
                cos2 = (rel[:, 2] / r) ** 2
                out = nuc["dchi_ppm"] / 3.0 * (a_eq / r) ** 3 * (3 * cos2 - 1)
                taper = np.clip((reach - r) / (0.5 * a_eq), 0.0, 1.0)
                shift = w * inside_shift + (1 - w) * out * taper
                layers.apply(idx, np.ones(len(idx)), shift * scene.rad_per_ppm)
            if not nuc["mimic"]:
                continue
            scene.obstacles.ellipsoids.append((c, semi))
            if grid.contains(c)[0]:
                sel = idx[w >= 0.5]
                layers.mimics[sel[:, 0], sel[:, 1], sel[:, 2]] = _MIMIC_LABEL_OF["iron"]
                scene.record("iron", c, structure=name, side=side, semi_axes_mm=_r(semi),
                             t2star_ms=nuclei_params[name]["t2star_ms"], susceptibility_ppm=nuc["dchi_ppm"])


def add_veins(scene: _Scene, count: int) -> None:
    """Medullary (60 % on average) and cortical veins, at least 60 % inside the view."""
    rng, grid = scene.rng, scene.grid
    starts = _periventricular_starts()
    starts = starts[grid.contains(starts, margin_mm=2.0)]
    n_medullary = int(rng.binomial(count, 0.6))
    for v in range(count):
        kind = "medullary" if v < n_medullary else "cortical"
        path = None
        for _attempt in range(40):
            if kind == "medullary":
                path = _medullary_vein(rng, starts) if len(starts) else None
            else:
                path = _cortical_vein(rng)
            if path is not None and grid.contains(path, margin_mm=1.0).mean() >= 0.6:
                break
            path = None
        if path is None:
            continue
        d_vis = rng.uniform(1.0, 2.0) if kind == "medullary" else rng.uniform(1.5, 2.5)
        r_vis, r_true = d_vis / 2, d_vis / 2 / scene.bloom
        dchi = float(rng.uniform(0.10, 0.20))
        f = float(rng.uniform(0.3, 0.55))
        _render_vein(grid, scene.layers, path, r_true, r_vis, f, dchi, scene.rad_per_ppm)
        scene.obstacles.tubes.append((path, r_vis))
        mid = _resample_path(path, 0.5)
        scene.record("vein", mid[len(mid) // 2], subtype=kind, path=[_r(p, 4) for p in path],
                     diameter_mm=round(2 * r_true, 4), visible_diameter_mm=round(d_vis, 4),
                     susceptibility_ppm=round(dchi, 4), signal_fraction=round(f, 4))


def add_sulcal(scene: _Scene, count: int) -> None:
    """Irregular dark spots 1-2.5 mm under the surface: 2-4 small ellipsoids in the
    surface's tangent plane, a weak paramagnetic source (pial vessels)."""
    rng, grid = scene.rng, scene.grid
    rad_per_ppm = scene.rad_per_ppm
    for _ in range(count):
        c = None
        for _attempt in range(40):
            n = _unit(np.array([rng.uniform(-1, 1), rng.uniform(-0.8, 0.8), rng.uniform(0.0, 1.0)]))
            r_s = _surface_radius(n[None])[0] - rng.uniform(1.0, 2.5)
            c = _SURFACE_CENTRE + r_s * n
            k = int(rng.integers(2, 5))
            offs = rng.normal(0.0, 1.2, size=(k, 2))
            semis = rng.uniform(0.8, 1.8, size=(k, 3))
            if r_s > 30 and grid.contains(c, 3.0)[0] and scene.obstacles.clear(c, 4.0):
                break
            c = None
        if c is None:
            continue
        frame = _tangent_frame(n)
        parts = [(c + frame[:, 0] * o[0] + frame[:, 1] * o[1], frame, s) for o, s in zip(offs, semis)]
        f = float(rng.uniform(0.35, 0.6))
        dchi = float(rng.uniform(0.03, 0.08))
        a_eq = float(np.mean(semis))

        def sulcal_phase(p: np.ndarray, parts=parts, dchi=dchi, a=a_eq) -> np.ndarray:
            shift = np.zeros(p.shape[:-1])
            for pc, _, _ in parts:
                rel = p - pc
                r = np.maximum(np.linalg.norm(rel, axis=-1), 1e-6)
                out = dchi / 3 * (a / r) ** 3 * (3 * (rel[..., 2] / r) ** 2 - 1) * np.clip((3 * a - r) / a, 0, 1)
                shift += np.where(r < a, 2 / 3 * dchi, out)
            return shift * rad_per_ppm

        _render_blob(grid, scene.layers, parts, f, sulcal_phase, 3.0 * a_eq, _MIMIC_LABEL_OF["sulcal"])
        scene.obstacles.spheres.append((c, 4.0))
        scene.record("sulcal", c, size_mm=round(2 * (2.4 + float(semis.max())), 3),
                     susceptibility_ppm=round(dchi, 4), signal_fraction=round(f, 4))


def add_airbone(scene: _Scene, count: int) -> None:
    """Flattened, irregular voids 2-3.5 mm under the inferior frontal (above the
    sinuses) or inferior temporal (above the mastoid) surface, with a residual phase
    ramp under a 6 mm Gaussian window (it may wrap)."""
    rng, grid = scene.rng, scene.grid
    for _ in range(count):
        site = "frontal" if rng.random() < 0.5 else "temporal"
        c = None
        for _attempt in range(40):
            if site == "frontal":
                n = _unit(np.array([rng.uniform(-0.35, 0.35), 0.75, rng.uniform(-0.7, -0.45)]))
            else:
                n = _unit(np.array([rng.choice([-1.0, 1.0]) * 0.8, rng.uniform(-0.2, 0.25),
                                    rng.uniform(-0.7, -0.45)]))
            r_s = _surface_radius(n[None])[0] - rng.uniform(2.0, 3.5)
            c = _SURFACE_CENTRE + r_s * n
            if r_s > 30 and grid.contains(c, 2.0)[0] and scene.obstacles.clear(c, 8.0):
                break
            c = None
        if c is None:
            continue
        frame = _tangent_frame(n)
        k = int(rng.integers(3, 6))
        offs = rng.normal(0.0, 3.0, size=(k, 2))
        semis = np.column_stack([rng.uniform(2.5, 5.0, k), rng.uniform(2.5, 5.0, k), rng.uniform(1.0, 2.0, k)])
        parts = [(c + frame[:, 0] * o[0] + frame[:, 1] * o[1], frame, s) for o, s in zip(offs, semis)]
        f = float(rng.uniform(0.15, 0.45))
        amp = float(rng.uniform(1.5, 3.0))
        u = _unit(rng.normal(size=3))
        sigma = 6.0

        def airbone_phase(p: np.ndarray, c=c, u=u, amp=amp, sigma=sigma) -> np.ndarray:
            rel = p - c
            g = np.exp(-(rel**2).sum(axis=-1) / (2 * sigma**2))
            return amp * g * (rel @ u) / sigma

        _render_blob(grid, scene.layers, parts, f, airbone_phase, 2.5 * sigma, _MIMIC_LABEL_OF["airbone"])
        scene.obstacles.spheres.append((c, 8.0))
        scene.record("airbone", c, site=site, signal_fraction=round(f, 4), residual_phase_rad=round(amp, 4))
