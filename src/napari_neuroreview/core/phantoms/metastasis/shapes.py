"""A lesion's parts as partial-volume fractions on any grid: tumour (solid or rim), necrosis,
haemorrhage and the peritumoural oedema shell.

Why computed on the target grid: a lesion is a few cm across, so its parts are evaluated
only in a box around it, at ``n x n x n`` points per voxel (sub-voxel spacing <= 0.75 mm),
in world mm: the same object on the structural grid and on the coarser DWI grid, whatever
the orientation. The outline is irregular, not a sphere: the radius along a direction
``u`` is ``r (1 + a g(u))`` with ``g`` a random smooth function on the sphere (a traceless
quadratic form plus a linear term, |g| <= 1), drawn from the lesion's ``shape_seed``;
``a`` is 0.12 for the tumour and 0.3 for the oedema (chosen: metastases are round,
vasogenic oedema is finger-like). Only the lesion's attributes are read here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ...anatomy import voxel_to_world, world_to_voxel
from .lesions import Lesion

__all__ = ["LesionParts", "lesion_parts", "oedema_radius_mm"]

_TUMOUR_IRREGULARITY = 0.12
_OEDEMA_IRREGULARITY = 0.30
#: Haemorrhage: a blob of this share of the tumour radius, its centre this share off-centre (chosen).
_HAEM_RADIUS = 0.45
_HAEM_OFFSET = 0.35
_MAX_SUB_MM = 0.75


@dataclass(frozen=True, eq=False)
class LesionParts:
    """Fractions (0-1) of each voxel of ``box`` (a tuple of slices of the grid)."""

    box: tuple[slice, slice, slice]
    solid: np.ndarray
    necrosis: np.ndarray
    haemorrhage: np.ndarray
    shell: np.ndarray

    @property
    def tumour(self) -> np.ndarray:
        return self.solid + self.necrosis + self.haemorrhage


def oedema_radius_mm(lesion: Lesion) -> float:
    """Outer radius of the oedema sphere whose shell holds ``oedema_ratio`` tumour volumes."""
    return lesion.diameter_mm / 2.0 * (1.0 + lesion.oedema_ratio) ** (1.0 / 3.0)


def _outline(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) of ``g(u) = u.A.u + b.u``, scaled so that |g| <= 1 on the unit sphere."""
    m = rng.standard_normal((3, 3))
    a = (m + m.T) / 2.0
    a -= np.trace(a) / 3.0 * np.eye(3)
    b = rng.standard_normal(3) * 0.5
    scale = float(np.abs(np.linalg.eigvalsh(a)).max() + np.linalg.norm(b))
    return a / scale, b / scale


def _g(a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.einsum("...i,ij,...j->...", u, a, u) + u @ b


def lesion_parts(lesion: Lesion, affine: np.ndarray, shape: tuple[int, int, int]) -> LesionParts | None:
    """The lesion's part fractions in its box on the grid ``(affine, shape)``; None if unseen."""
    rng = np.random.default_rng(lesion.shape_seed)
    a_t, b_t = _outline(rng)
    a_o, b_o = _outline(rng)
    v = rng.standard_normal(3)
    centre = np.asarray(lesion.centre_mni_mm, float)
    r = lesion.diameter_mm / 2.0
    r_out = oedema_radius_mm(lesion) if lesion.oedema_ratio > 0 else 0.0
    haem_c = centre + _HAEM_OFFSET * r * v / np.linalg.norm(v)
    vox = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    reach = max(r * (1 + _TUMOUR_IRREGULARITY), r_out * (1 + _OEDEMA_IRREGULARITY)) + float(vox.max())
    corners = np.array(list(itertools.product(*[(-reach, reach)] * 3))) + centre
    ijk = world_to_voxel(affine, corners)
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    box = tuple(slice(int(x), int(y)) for x, y in zip(lo, hi))
    grid = np.stack(np.meshgrid(*[np.arange(x, y, dtype=float) for x, y in zip(lo, hi)], indexing="ij"), axis=-1)
    n = np.clip(np.ceil(vox / _MAX_SUB_MM).astype(int), 2, 4)
    acc = {k: np.zeros(grid.shape[:3], np.float32) for k in ("solid", "necrosis", "haemorrhage", "shell")}
    offsets = list(itertools.product(*[(np.arange(k) + 0.5) / k - 0.5 for k in n]))
    for off in offsets:
        rel = voxel_to_world(affine, grid + np.asarray(off)) - centre
        dist = np.linalg.norm(rel, axis=-1)
        u = rel / np.maximum(dist, 1e-9)[..., None]
        r_t = r * (1.0 + _TUMOUR_IRREGULARITY * _g(a_t, b_t, u))
        tumour = dist < r_t
        haem = tumour & (np.linalg.norm(rel + centre - haem_c, axis=-1) < _HAEM_RADIUS * r) if lesion.haemorrhage \
            else np.zeros_like(tumour)
        necrosis = (dist < lesion.necrosis_fraction * r_t) & ~haem
        acc["haemorrhage"] += haem
        acc["necrosis"] += necrosis
        acc["solid"] += tumour & ~haem & ~necrosis
        if r_out > 0:
            acc["shell"] += (dist < r_out * (1.0 + _OEDEMA_IRREGULARITY * _g(a_o, b_o, u))) & ~tumour
    k = np.float32(1.0 / len(offsets))
    return LesionParts(box=box, **{name: a * k for name, a in acc.items()})  # type: ignore[arg-type]
