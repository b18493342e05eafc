"""A patient's microbleeds as a bag of instance feature vectors, for the subtype MIL model.

One instance per cerebral microbleed (CMB)::

    [patch embedding (4 x detector width) | MNI x, y, z / 100 | log diameter (mm)
     | one-hot region (anatomy.mars.REGIONS) | side (1 = right) | one-hot MARS class]

Why these parts:

* **The patch embedding** is the microbleed detector's own frozen encoder (``net.encode``,
  the deepest feature map averaged over the patch): the patch is sampled with the
  detector's :mod:`..cmb.channels` and :mod:`..cmb.patches` functions, so its
  normalisation (local contrast, phase in radians, the has-phase flag) and its 0.8 mm
  world-axis grid are exactly what the encoder was trained on. It carries what the
  location does not: the shape, the blooming, the surrounding tissue (cortex or deep
  white matter, siderosis nearby). It can be left out (``encoder=None``, or
  :meth:`Bag.location_only`) for the ablation "does the image add anything?".
* **The MNI position** (scaled to about [-1, 1]) and **the MARS region, side and class**
  carry the anatomy the subtypes differ by (lobar in CAA, deep in arteriolosclerosis,
  thalamus and temporal lobe in CADASIL); the one-hot order is ``anatomy.mars.REGIONS``
  and ``MARS_CLASSES``, and a point "outside" the brain has all of them zero.
* **The log diameter**: size spans a factor of ten (2-10 mm) and its effect is relative.

A patient without any CMB is a bag of zero instances, not a missing row: the MIL model
(``core.models.mil``) has an explicit embedding for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...anatomy.mars import MARS_CLASSES, REGIONS, MarsRegion, regions_at
from ...io.nifti import Volume
from ..cmb.channels import make_channels
from ..cmb.patches import sample_patches

__all__ = [
    "LOCATION_FEATURES",
    "Bag",
    "BagInstance",
    "ScanChannels",
    "build_bag",
    "equivalent_diameter_mm",
    "feature_names",
    "location_features",
    "make_sites",
    "patch_embeddings",
]

#: Names of the location columns, in order (after the patch embedding's columns).
LOCATION_FEATURES: tuple[str, ...] = (
    "mni_x", "mni_y", "mni_z", "log_diameter_mm",
    *(f"region[{r}]" for r in REGIONS), "side_right", *(f"class[{c}]" for c in MARS_CLASSES))
#: MNI millimetres are divided by this (the brain spans about +-100 mm).
MNI_SCALE_MM = 100.0
#: Smallest diameter put into the log (a one-voxel detection must not give log(0)).
MIN_DIAMETER_MM = 0.1
#: Patches per forward pass of the encoder.
BATCH = 128


def equivalent_diameter_mm(volume_mm3: float | np.ndarray) -> np.ndarray:
    """Diameter of the sphere of that volume: the size of a detection, which has a mask, not a diameter."""
    return np.cbrt(6.0 * np.asarray(volume_mm3, float) / np.pi)


@dataclass(frozen=True)
class BagInstance:
    """One microbleed as the bag needs it.

    Attributes
    ----------
    id : int
        The CMB's id in its source (truth or det.json), kept beside its attention.
    world_ras_mm : tuple of float
        Centre in the scan's world RAS mm (where its patch is sampled).
    mni_mm : tuple of float
        Centre in MNI152 RAS mm (after registration).
    diameter_mm : float
    region : MarsRegion
        Its MARS region, side and class (``anatomy.mars.regions_at`` of ``mni_mm``).
    """

    id: int
    world_ras_mm: tuple[float, float, float]
    mni_mm: tuple[float, float, float]
    diameter_mm: float
    region: MarsRegion


def make_sites(ids: Sequence[int], world_ras_mm: np.ndarray, mni_mm: np.ndarray,
               diameter_mm: Sequence[float] | np.ndarray) -> list[BagInstance]:
    """CMB sites with their MARS regions looked up from their MNI positions (``anatomy.mars.regions_at``)."""
    world = np.asarray(world_ras_mm, float).reshape(-1, 3)
    mni = np.asarray(mni_mm, float).reshape(-1, 3)
    diameter = np.asarray(diameter_mm, float).reshape(-1)
    if not (len(ids) == len(world) == len(mni) == len(diameter)):
        raise ValueError(f"{len(ids)} ids, {len(world)} world, {len(mni)} MNI positions and "
                         f"{len(diameter)} diameters: one of each per CMB")
    regions = regions_at(mni) if len(mni) else []
    return [BagInstance(int(i), tuple(map(float, w)), tuple(map(float, m)), float(d), r)
            for i, w, m, d, r in zip(ids, world, mni, diameter, regions)]


def location_features(sites: Sequence[BagInstance]) -> np.ndarray:
    """(n, len(LOCATION_FEATURES)) float32: MNI / 100, log diameter, one-hot region, side, one-hot class."""
    out = np.zeros((len(sites), len(LOCATION_FEATURES)), np.float32)
    region_col = {r: 4 + k for k, r in enumerate(REGIONS)}
    side_col = 4 + len(REGIONS)
    class_col = {c: side_col + 1 + k for k, c in enumerate(MARS_CLASSES)}
    for n, site in enumerate(sites):
        out[n, :3] = np.asarray(site.mni_mm, float) / MNI_SCALE_MM
        out[n, 3] = np.log(max(float(site.diameter_mm), MIN_DIAMETER_MM))
        if site.region.region in region_col:  # "outside": no region, no class
            out[n, region_col[site.region.region]] = 1.0
        out[n, side_col] = float(site.region.side == "right")
        if site.region.mars_class in class_col:
            out[n, class_col[site.region.mars_class]] = 1.0
    return out


@dataclass(frozen=True)
class ScanChannels:
    """The detector's input channels of one scan and the scan's affine: what patches are sampled from."""

    channels: list[np.ndarray]
    affine: np.ndarray

    @classmethod
    def from_scan(cls, magnitude: Volume, phase: Volume | None = None) -> ScanChannels:
        """The channels exactly as detection builds them (``cmb.channels.make_channels``)."""
        channels, _candidates, _mask = make_channels(magnitude, phase)
        return cls(channels, np.asarray(magnitude.affine, float))


def patch_embeddings(encoder: torch.nn.Module, scan: ScanChannels, world_ras_mm: np.ndarray) -> np.ndarray:
    """(n, C) float32: each point's detector patch through ``encoder.encode``, the deepest map averaged.

    ``encoder`` is a ``CMBPatchNet`` (frozen: evaluated without gradients, left in eval
    mode); the patches go to the device its weights are on.
    """
    world = np.asarray(world_ras_mm, float).reshape(-1, 3)
    inverse = np.linalg.inv(scan.affine)
    voxels = world @ inverse[:3, :3].T + inverse[:3, 3]
    device = next(encoder.parameters()).device
    encoder.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(voxels), BATCH):
            patches = sample_patches(scan.channels, scan.affine, voxels[start:start + BATCH])
            deepest = encoder.encode(torch.from_numpy(patches).to(device))[-1]
            parts.append(deepest.mean(dim=(2, 3, 4)).float().cpu().numpy())
    width = _embedding_width(encoder)
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, width), np.float32)


def _embedding_width(encoder: torch.nn.Module) -> int:
    """Channels of the encoder's deepest map (4 x width for ``CMBPatchNet``)."""
    return int(4 * encoder.width)


def feature_names(embedding_width: int) -> tuple[str, ...]:
    """The column names of a bag whose patch embedding has ``embedding_width`` columns (0: none)."""
    return (*(f"patch[{k}]" for k in range(embedding_width)), *LOCATION_FEATURES)


@dataclass(frozen=True, eq=False)
class Bag:
    """One patient's microbleeds as instance features.

    Attributes
    ----------
    patient : str
    features : numpy.ndarray
        (n, d) float32; ``n`` may be 0 (a patient without any CMB).
    ids : tuple of int
        The CMB id of each row (to report each CMB's attention).
    n_embedding : int
        How many leading columns are the patch embedding (0: location-only).
    """

    patient: str
    features: np.ndarray
    ids: tuple[int, ...] = ()
    n_embedding: int = 0

    def __post_init__(self) -> None:
        features = np.asarray(self.features, np.float32)
        width = self.n_embedding + len(LOCATION_FEATURES)
        if features.shape != (len(self.ids), width):  # built by code: a bug, not a user's mistake
            raise ValueError(f"bag {self.patient}: features of shape {features.shape}, expected "
                             f"({len(self.ids)}, {width}) for {len(self.ids)} ids")
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "ids", tuple(int(i) for i in self.ids))

    @property
    def names(self) -> tuple[str, ...]:
        """Column names (:func:`feature_names`)."""
        return feature_names(self.n_embedding)

    def __len__(self) -> int:
        return len(self.ids)

    def location_only(self) -> Bag:
        """The same bag without the patch embedding (the ablation)."""
        return Bag(self.patient, self.features[:, self.n_embedding:], self.ids, 0)


def build_bag(patient: str, sites: Sequence[BagInstance], encoder: torch.nn.Module | None = None,
              scan: ScanChannels | None = None) -> Bag:
    """The bag of one patient; with ``encoder``, ``scan`` is where the patches come from."""
    location = location_features(sites)
    ids = tuple(int(s.id) for s in sites)
    if encoder is None:
        return Bag(patient, location, ids, 0)
    if scan is None and sites:  # the caller's wiring, not the user's input
        raise ValueError(f"patient {patient}: patch embeddings need the scan's channels")
    width = _embedding_width(encoder)
    embedded = (patch_embeddings(encoder, scan, np.array([s.world_ras_mm for s in sites]))
                if sites and scan is not None else np.zeros((0, width), np.float32))
    return Bag(patient, np.concatenate([embedded, location], axis=1), ids, width)
