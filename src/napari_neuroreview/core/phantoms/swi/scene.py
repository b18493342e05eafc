"""The scanner grid, the layers objects draw into, and the scene that keeps them apart.

Every object (microbleed, vein, spot, calcification, iron nucleus) is drawn locally: in a
small box of the scanner grid around itself, supersampled only where a voxel may touch
it (:class:`_Grid`). What it draws goes into shared layers (:class:`_Layers`): a
multiplicative magnitude factor, a phase, and the instance and mimic truth labels.
:class:`_Obstacles` keeps the visible extents of objects apart, and :class:`_Scene`
holds all of that for one case, with the truth record of the mimics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_neuroreview.core.anatomy import world_to_voxel

from .contrast import _EDGE_MM
from .susceptibility import _bloom, _rad_per_ppm

_SUB_MM = 0.35  # sub-voxel sample spacing
_MAX_SUB = 64  # sub-samples per voxel on coarse grids (about; ceil per axis)
_GAP_MM = 1.5  # minimum clearance between the visible extents of objects


class _Grid:
    """The scanner grid, with sub-voxel sample offsets and local-box helpers."""

    def __init__(self, affine: np.ndarray, shape: tuple[int, int, int]):
        self.affine = np.asarray(affine, np.float64)
        self.shape = tuple(int(n) for n in shape)
        self.linear = self.affine[:3, :3]
        self.vs = np.sqrt((self.linear**2).sum(axis=0))
        self.half_diag = 0.5 * float(np.linalg.norm(self.vs))
        self.inv = np.linalg.inv(self.affine)
        # Samples <= 0.35 mm apart on fine grids; on coarse grids at most ~100 per voxel
        # (spacing grows with the voxel), plenty for a voxel several times a bleed's size.
        spacing = max(_SUB_MM, float(np.prod(self.vs) / _MAX_SUB) ** (1 / 3))
        n = [max(2, int(math.ceil(v / spacing - 1e-9))) for v in self.vs]
        grids = np.meshgrid(*[(np.arange(k) + 0.5) / k - 0.5 for k in n], indexing="ij")
        self.sub_vox = np.stack([g.ravel() for g in grids], axis=-1)  # (S, 3) voxel units
        self.sub_world = self.sub_vox @ self.linear.T  # (S, 3) mm

    def voxel_of(self, ras: np.ndarray) -> np.ndarray:
        return world_to_voxel(self.affine, ras)

    def contains(self, ras: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        """Whether world points lie in the field of view, ``margin_mm`` inside its faces."""
        ras = np.atleast_2d(np.asarray(ras, np.float64))
        ijk = ras @ self.inv[:3, :3].T + self.inv[:3, 3]
        m = margin_mm / self.vs
        return np.all((ijk >= -0.5 + m) & (ijk <= np.asarray(self.shape) - 0.5 - m), axis=-1)

    def box(self, lo_ras: np.ndarray, hi_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Voxel indices (N, 3) of the grid box covering a world box (any rotation), and
        their centres in world mm (N, 3)."""
        corners = np.array([[a, b, c] for a in (lo_ras[0], hi_ras[0]) for b in (lo_ras[1], hi_ras[1])
                            for c in (lo_ras[2], hi_ras[2])])
        ijk = self.voxel_of(corners)
        lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
        hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, self.shape)
        if np.any(hi <= lo):
            return np.zeros((0, 3), np.intp), np.zeros((0, 3))
        axes = [np.arange(a, b) for a, b in zip(lo, hi)]
        g = np.meshgrid(*axes, indexing="ij")
        idx = np.stack([x.ravel() for x in g], axis=-1)
        # The grid is affine: world = t + i L0 + j L1 + k L2, summed by broadcasting.
        world = (
            self.affine[:3, 3]
            + axes[0][:, None, None, None] * self.linear[:, 0]
            + axes[1][None, :, None, None] * self.linear[:, 1]
            + axes[2][None, None, :, None] * self.linear[:, 2]
        ).reshape(-1, 3)
        return idx, world

    def ball(self, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Voxels whose centre is within ``radius`` + half a voxel diagonal; and the centres."""
        idx, world = self.box(centre - radius - self.half_diag, centre + radius + self.half_diag)
        keep = np.linalg.norm(world - centre, axis=-1) <= radius + self.half_diag
        return idx[keep], world[keep]


@dataclass
class _Layers:
    """What the objects draw into."""

    factor: np.ndarray  # multiplicative magnitude factor
    phase: np.ndarray | None  # local-field phase (rad)
    instances: np.ndarray  # uint16
    mimics: np.ndarray  # uint8

    def apply(self, idx: np.ndarray, factor: np.ndarray, phase: np.ndarray | None) -> None:
        i, j, k = idx.T
        self.factor[i, j, k] *= factor.astype(np.float32)
        if self.phase is not None and phase is not None:
            self.phase[i, j, k] += phase.astype(np.float32)


def _segments_closest(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest points on segments a-b to points p (broadcast); returns (vector p - q, t-hat)."""
    ab = b - a
    length2 = np.maximum((ab**2).sum(axis=-1, keepdims=True), 1e-12)
    t = np.clip(((p - a) * ab).sum(axis=-1, keepdims=True) / length2, 0.0, 1.0)
    return p - (a + t * ab), ab / np.sqrt(length2)


@dataclass
class _Obstacles:
    """Visible extents already placed: spheres and tubes; used to keep objects apart."""

    spheres: list[tuple[np.ndarray, float]] = field(default_factory=list)
    tubes: list[tuple[np.ndarray, float]] = field(default_factory=list)
    ellipsoids: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def clear(self, p: np.ndarray, r: float, gap: float = _GAP_MM) -> bool:
        for c, rc in self.spheres:
            if np.linalg.norm(p - c) < r + rc + gap:
                return False
        for path, rt in self.tubes:
            v, _ = _segments_closest(p, path[:-1], path[1:])
            if np.linalg.norm(v, axis=-1).min() < r + rt + gap:
                return False
        for c, semi in self.ellipsoids:
            q = (p - c) / (semi + r + gap + _EDGE_MM / 2)
            if (q**2).sum() < 1.0:
                return False
        return True


class _Scene:
    """The objects of one case: drawn into layers on the grid, kept apart, recorded.

    The objects themselves are added by the functions of :mod:`.mimics` and
    :mod:`.lesions`, in the order :func:`~.case.make_swi_case` calls them.
    """

    def __init__(self, grid: _Grid, rng: np.random.Generator, te_ms: float, with_phase: bool):
        shape = grid.shape
        self.grid, self.rng = grid, rng
        self.rad_per_ppm, self.bloom = _rad_per_ppm(te_ms), _bloom(te_ms)
        self.layers = _Layers(
            factor=np.ones(shape, np.float32),
            phase=np.zeros(shape, np.float32) if with_phase else None,
            instances=np.zeros(shape, np.uint16),
            mimics=np.zeros(shape, np.uint8),
        )
        self.obstacles = _Obstacles()
        self.mimic_truth: list[dict[str, Any]] = []

    def record(self, kind: str, ras: np.ndarray, **extra: Any) -> None:
        """Add a mimic to the truth: its type, world position (rounded to 1e-4 mm), voxel, details."""
        ras = np.round(np.asarray(ras, float), 4)
        self.mimic_truth.append({"type": kind, "world_ras_mm": _r(ras), "voxel_ijk": _r(self.grid.voxel_of(ras)),
                                 **extra})


def _r(v: Any, nd: int = 4) -> list[float]:
    return [round(float(x), nd) for x in np.ravel(v)]
