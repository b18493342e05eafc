"""The acquisition grid, the whole-head field, and fine patches around small sources.

Two scales, so that a case takes seconds:

*Macro field* (:func:`macro_field`). Tissue (grey/white), the iron of the deep nuclei,
the dural sinuses and deep veins, and the air of the skull base are put on a
world-aligned grid of ``macro_mm`` (1.5 mm) and turned into the field by the k-space
dipole kernel (:mod:`.dipole`). It is interpolated onto the acquired voxels, and its
gradient across each voxel gives the intravoxel dephasing of a linear field,
``prod_i sinc(phase step across axis i / 2)`` (Fernandez-Seara & Wehrli 2000, Magn Reson
Med 44:358): the dark bands at the air-tissue interfaces.

*Fine patches* (:func:`render_patch`). A microbleed, a calcification or a small vein is
drawn on a grid that subdivides the acquired voxels of a box around it (spacing
``<= fine_mm``, so the sub-grid has the acquisition's rotation and axis order). Its
susceptibility there gives its own field (zero-padded FFT in the patch); the complex
signal of the sub-samples, ``S(r) exp(i phi(r))``, is averaged into each acquired voxel.
Blooming is not a parameter: the dephasing of the dipole field around the source grows
with ``B0 * TE`` and with the voxel, and the averaged signal drops over a wider region.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from napari_neuroreview.core.anatomy import load_mni_anatomy, sample_template_maps

from .dipole import field_ppm
from .sources import (
    air_cavities,
    ellipsoid_weight,
    large_vein_paths,
    nuclei_sides,
    polyline_distance,
)
from .tissue import CHI_AIR_PPM, CHI_IRON_PPM, CHI_TISSUE_PPM


class AcqGrid:
    """The acquired grid: affine, shape, voxel sizes, B0 in the grid's axes."""

    def __init__(self, affine: np.ndarray, shape: tuple[int, int, int], b0_dir: np.ndarray):
        self.affine = np.asarray(affine, np.float64)
        self.shape = tuple(int(n) for n in shape)
        self.linear = self.affine[:3, :3]
        self.vs = np.sqrt((self.linear**2).sum(axis=0))
        self.rot = self.linear / self.vs  # columns: world direction of each voxel axis
        b = np.asarray(b0_dir, np.float64)
        self.b_world = b / np.linalg.norm(b)
        self.b_grid = self.rot.T @ self.b_world
        self.inv = np.linalg.inv(self.affine)

    def world(self, ijk: np.ndarray) -> np.ndarray:
        return ijk @ self.linear.T + self.affine[:3, 3]

    def voxel(self, ras: np.ndarray) -> np.ndarray:
        return np.asarray(ras, np.float64) @ self.inv[:3, :3].T + self.inv[:3, 3]

    def box_around(self, lo_ras: np.ndarray, hi_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel index box (lo inclusive, hi exclusive) covering a world box, clipped."""
        corners = np.array([[a, b, c] for a in (lo_ras[0], hi_ras[0]) for b in (lo_ras[1], hi_ras[1])
                            for c in (lo_ras[2], hi_ras[2])])
        ijk = self.voxel(corners)
        lo = np.maximum(np.floor(ijk.min(0)).astype(int), 0)
        hi = np.minimum(np.ceil(ijk.max(0)).astype(int) + 1, self.shape)
        return lo, hi

    def centres(self, lo: np.ndarray, hi: np.ndarray, sub: np.ndarray | None = None) -> np.ndarray:
        """World centres of the voxels of a box, or of their ``sub`` subdivisions, (..., 3)."""
        sub = np.ones(3, int) if sub is None else np.asarray(sub, int)
        axes = [lo[a] + (np.arange((hi[a] - lo[a]) * sub[a]) + 0.5) / sub[a] - 0.5 for a in range(3)]
        return (self.affine[:3, 3]
                + axes[0][:, None, None, None] * self.linear[:, 0]
                + axes[1][None, :, None, None] * self.linear[:, 1]
                + axes[2][None, None, :, None] * self.linear[:, 2])


def macro_field(grid: AcqGrid, brain_far_mm: float, macro_mm: float, vein_chi: float, iron_scale: float,
                with_air: bool, with_iron: bool) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Field (ppm) of the whole-head sources on the acquired voxels, and its step across each voxel.

    Returns ``(field, steps, maps)``: ``steps[..., a]`` is the field change (ppm) across
    one voxel along voxel axis ``a``; ``maps`` holds the macro grid's air fraction for the
    truth.
    """
    anat = load_mni_anatomy()
    lo, hi = anat.brain_bbox_mm
    lo = np.minimum(lo, [-70.0, -110.0, -60.0]) - 10.0
    hi = np.maximum(hi, [70.0, 85.0, 85.0]) + 10.0
    shape = tuple(math.ceil(float(v)) for v in (hi - lo) / macro_mm)
    aff = np.diag([macro_mm, macro_mm, macro_mm, 1.0])
    aff[:3, 3] = lo + macro_mm / 2
    maps = sample_template_maps({"gm": anat.gm, "wm": anat.wm, "brain": anat.brain}, aff, shape)
    chi = (CHI_TISSUE_PPM["gm"] * maps["gm"] + CHI_TISSUE_PPM["wm"] * maps["wm"]).astype(np.float32)
    axes = [lo[a] + macro_mm / 2 + macro_mm * np.arange(shape[a]) for a in range(3)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).astype(np.float32)

    def box(lo_w: np.ndarray, hi_w: np.ndarray) -> tuple[slice, ...]:
        return tuple(slice(int(np.searchsorted(ax, a)), int(np.searchsorted(ax, b))) for ax, a, b in zip(axes, lo_w, hi_w))

    if with_iron:
        parenchyma = maps["gm"] + maps["wm"]
        for name, _side, c, semi in nuclei_sides():
            sl = box(c - semi - 3.0, c + semi + 3.0)
            chi[sl] += (iron_scale * CHI_IRON_PPM[name]) * ellipsoid_weight(pts[sl], c, semi) * parenchyma[sl]
    for _name, path, r in large_vein_paths():
        sl = box(path.min(0) - r - 3.0, path.max(0) + r + 3.0)
        d = polyline_distance(pts[sl], path, within=r + macro_mm)
        chi[sl] += vein_chi * np.clip(0.5 - (d - r) / macro_mm, 0.0, 1.0).astype(np.float32)
    air = np.zeros(shape, np.float32)
    if with_air:
        for _name, c, semi, frac in air_cavities():
            sl = box(c - semi - 3.0, c + semi + 3.0)
            air[sl] = np.maximum(air[sl], frac * ellipsoid_weight(pts[sl], c, semi, 2.0))
        air *= ndimage.distance_transform_edt(maps["brain"] < 0.5, sampling=macro_mm) > brain_far_mm
        chi += CHI_AIR_PPM * air
    del pts
    field = field_ppm(chi, (macro_mm,) * 3, grid.b_world, pad=tuple(n // 2 for n in shape))
    grad = np.stack(np.gradient(field, macro_mm), 0)  # ppm / mm along world axes
    ijk = grid.centres(np.zeros(3, int), np.asarray(grid.shape)).reshape(-1, 3)
    coords = ((ijk - aff[:3, 3]) / macro_mm).T
    del ijk
    f = ndimage.map_coordinates(field, coords, order=1, mode="nearest").reshape(grid.shape)
    g = np.stack([ndimage.map_coordinates(grad[a], coords, order=1, mode="nearest") for a in range(3)], -1)
    steps = (g @ grid.linear).reshape(*grid.shape, 3).astype(np.float32)  # ppm across each voxel axis
    return f.astype(np.float32), steps, {"air": air, "macro_affine": aff}


def tube_fraction(grid: AcqGrid, path: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partial-volume fraction of a tube on the acquired voxels of its box: (lo, hi, fraction)."""
    lo, hi = grid.box_around(path.min(0) - r - 2.0, path.max(0) + r + 2.0)
    if np.any(hi <= lo):
        return lo, hi, np.zeros((0, 0, 0), np.float32)
    w = grid.centres(lo, hi)
    width = float(np.mean(grid.vs))
    d = polyline_distance(w, path, within=r + width)
    return lo, hi, np.clip(0.5 - (d - r) / width, 0.0, 1.0).astype(np.float32)


def render_patch(
    grid: AcqGrid, signal: np.ndarray, lo: np.ndarray, hi: np.ndarray, fine_mm: float,
    fraction: Callable[[np.ndarray, float], np.ndarray], chi: float, s_inside: float, rad_per_ppm: float,
) -> np.ndarray:
    """Draw one small source into the complex ``signal`` (in place) over the voxel box lo..hi.

    ``fraction(world_pts, h)`` is the source's partial-volume fraction at fine sample
    points of spacing ``h``; inside it the sub-sample signal is ``s_inside`` (with the
    voxel's phase), outside the voxel's own. Returns ``|new| / |old|`` on the box.
    """
    sub = np.maximum(np.ceil(grid.vs / fine_mm - 1e-6).astype(int), 1)
    h = grid.vs / sub
    pts = grid.centres(lo, hi, sub)
    frac = fraction(pts, float(h.min())).astype(np.float32)
    del pts
    n = frac.shape
    field = field_ppm(chi * frac, tuple(h), grid.b_grid, pad=tuple(max(16, k // 2) for k in n))
    old = signal[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    old_f = np.repeat(np.repeat(np.repeat(old, sub[0], 0), sub[1], 1), sub[2], 2)
    unit = np.where(np.abs(old_f) > 0, old_f / np.maximum(np.abs(old_f), 1e-12), 1.0)
    fine = ((1.0 - frac) * old_f + frac * np.float32(s_inside) * unit) * np.exp(1j * rad_per_ppm * field)
    shape6 = (hi[0] - lo[0], sub[0], hi[1] - lo[1], sub[1], hi[2] - lo[2], sub[2])
    new = fine.reshape(shape6).mean(axis=(1, 3, 5)).astype(np.complex64)
    ratio = np.abs(new) / np.maximum(np.abs(old), 1e-9)
    signal[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = new
    return ratio.astype(np.float32)
