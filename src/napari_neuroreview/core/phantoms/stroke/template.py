"""The MNI anatomy the stroke cohort is drawn on, prepared once per grid (cached).

What a subject's render needs and never changes between subjects: the tissue fractions on
the cohort's grid (``core.anatomy.sample_template_maps``: partial volume), the lateral
ventricles (CSF >= 0.5 more than 10 mm inside the brain, the components through the
frontal horns at (+-5, 10, 15) mm: the template's ~17 ml), the signed distance to their
wall (mm, negative inside), the lookup that turns a ventricle volume into how far their wall
moves, and the world points where deep WMH and lacunes may sit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ...anatomy import load_mni_anatomy, make_affine, sample_template_maps
from ...anatomy.grids import voxel_to_world, world_to_voxel

__all__ = ["CAP_CENTRE_Y_MM", "FRONTAL_HORNS_MNI", "GridAnatomy", "grid_anatomy", "mni_lookups"]

#: Points in each frontal horn of the lateral ventricles (MNI mm), seeding the ventricle components.
FRONTAL_HORNS_MNI: tuple[tuple[float, float, float], ...] = ((5.0, 10.0, 15.0), (-5.0, 10.0, 15.0))
#: Periventricular WMH grow as caps at the horns and a thin band along the bodies: a point's
#: distance to the wall is divided by its ``cap_factor``, ``0.5 + clip((|y - Y| - 12) / 25, 0, 1)``
#: (MNI y in mm, Y = -18 the bodies' middle; chosen: caps ~3x the band's thickness).
CAP_CENTRE_Y_MM: float = -18.0
#: Lookup distances (mm) from the ventricles' wall.
_DISTANCES_MM = np.arange(-4.0, 30.01, 0.25)


@dataclass(frozen=True, eq=False)
class MniLookups:
    """On the 1 mm template: ventricle mask and signed wall distance, the volumes (ml) by distance
    and the candidate points (world mm) of deep WMH and lacunes."""

    ventricles: np.ndarray
    distance: np.ndarray
    ventricles_ml: float
    parenchyma_ml: float
    distances_mm: np.ndarray
    gained_ml: np.ndarray       # ventricle volume when its wall moves to distance d
    deep_wm_points: np.ndarray
    lacune_points: np.ndarray


@functools.lru_cache(maxsize=1)
def mni_lookups() -> MniLookups:
    """The template-level lookups (about 10 s once per process: distance transforms on 1 mm)."""
    anat = load_mni_anatomy()
    inner = ndimage.distance_transform_edt(anat.brain) > 10.0
    candidates = (anat.csf >= 0.5) & inner
    labels, _ = ndimage.label(candidates)
    inv = np.linalg.inv(anat.affine)
    seeds = {int(labels[tuple(np.round(inv[:3, :3] @ np.asarray(p) + inv[:3, 3]).astype(int))])
             for p in FRONTAL_HORNS_MNI}
    ventricles = np.isin(labels, sorted(seeds - {0}))
    distance = (ndimage.distance_transform_edt(~ventricles) - ndimage.distance_transform_edt(ventricles)).astype(
        np.float32)
    wm, tissue = anat.wm, anat.gm + anat.wm
    ijk = np.indices(anat.shape, sparse=True)
    z_mm = anat.affine[2, 2] * ijk[2] + anat.affine[2, 3]
    vent_ml = float(ventricles.sum()) / 1000.0
    outside = anat.brain & (distance > 0)
    inside = distance[ventricles]
    lost = float(inside.size) / 1000.0 - _cumulative(inside, np.ones(inside.size, np.float32))
    gained = vent_ml + _cumulative(distance[outside], np.ones(int(outside.sum()), np.float32)) - lost
    world = lambda mask: voxel_to_world(anat.affine, np.argwhere(mask)[::7])
    deep = (wm > 0.95) & (distance > 12.0) & (distance < 35.0)
    deep &= np.broadcast_to(z_mm > 0.0, anat.shape)
    lacune = ((anat.gm > 0.8) & (distance > 2.0) & (distance < 14.0)) | ((wm > 0.95) & (distance > 4.0)
                                                                        & (distance < 14.0))
    lacune &= np.broadcast_to((z_mm > -5.0) & (z_mm < 35.0), anat.shape)
    return MniLookups(ventricles=ventricles, distance=distance, ventricles_ml=vent_ml,
                      parenchyma_ml=float(tissue[anat.brain].sum()) / 1000.0, distances_mm=_DISTANCES_MM,
                      gained_ml=gained, deep_wm_points=world(deep), lacune_points=world(lacune))


def _cumulative(keys: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum of ``weights`` (ml per 1 mm voxel) where ``keys`` <= each lookup distance."""
    order = np.argsort(keys)
    cum = np.concatenate([[0.0], np.cumsum(weights[order], dtype=np.float64)]) / 1000.0
    return cum[np.searchsorted(keys[order], _DISTANCES_MM, side="right")]


@dataclass(frozen=True, eq=False)
class GridAnatomy:
    """The template on one cohort grid: ``affine``, ``shape``, tissue fractions (``csf``, ``gm``,
    ``wm``), ``distance`` (mm to the ventricle wall, negative inside), ``cap_factor`` (see
    :data:`CAP_CENTRE_Y_MM`) and ``world`` (3, X, Y, Z: voxel centres in mm)."""

    affine: np.ndarray
    shape: tuple[int, int, int]
    csf: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    distance: np.ndarray
    cap_factor: np.ndarray
    world: np.ndarray

    @property
    def voxel_mm(self) -> float:
        return float(np.sqrt((self.affine[:3, 0] ** 2).sum()))


@functools.lru_cache(maxsize=4)
def grid_anatomy(voxel_mm: float) -> GridAnatomy:
    """The template on the isotropic RAS grid of ``voxel_mm`` around the brain (``make_affine``)."""
    anat, look = load_mni_anatomy(), mni_lookups()
    affine, shape = make_affine((voxel_mm,) * 3, "RAS")
    maps = sample_template_maps({k: getattr(anat, k) for k in ("csf", "gm", "wm")}, affine, shape)
    world = np.moveaxis(voxel_to_world(affine, np.moveaxis(np.indices(shape), 0, -1)), -1, 0)
    at = np.moveaxis(world_to_voxel(anat.affine, np.moveaxis(world, 0, -1)), -1, 0)
    distance = ndimage.map_coordinates(look.distance, at, order=1, mode="nearest")  # a distance is not blurred
    cap = 0.5 + np.clip((np.abs(world[1] - CAP_CENTRE_Y_MM) - 12.0) / 25.0, 0.0, 1.0)
    return GridAnatomy(affine=affine, shape=shape, csf=maps["csf"], gm=maps["gm"], wm=maps["wm"],
                       distance=distance.astype(np.float32), cap_factor=cap.astype(np.float32),
                       world=world.astype(np.float32))
