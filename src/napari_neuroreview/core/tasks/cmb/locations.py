"""Where each microbleed is: the patient's side and the MARS region, from the scan registered to MNI.

A scan is registered to MNI152 once (:func:`mni_transform`: SimpleITK's affine
registration, :func:`~...anatomy.registration.register_to_mni`, kept per voxel-data
sha256), and each microbleed's world RAS position is carried into MNI and read in the
MARS parcellation (:func:`~...anatomy.mars.regions_at`). The subtype classification
(``tasks.csvd.classify``) registers through the same :func:`mni_transform`, so the review's
location columns and the subtype panel share one registration per scan.

Side is the PATIENT's side, from the MNI x coordinate: MNI is RAS, so x < 0 is the
patient's left and x >= 0 the right (``anatomy.mars``'s rule). It depends on the scan's
world coordinates only, never on how the voxels are stored (LPS or RAS) nor on how the
viewer shows them (radiological or neurological).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...anatomy.mars import MarsRegion, regions_at
from ...anatomy.registration import MniTransform, register_to_mni
from ...io.nifti import Volume
from ...progress import Progress, TaskGenerator

__all__ = ["SIDE_LETTERS", "Location", "locate", "locate_findings", "mni_transform"]

#: MARS side -> the letter a table shows (the patient's side: MNI x < 0 is left).
SIDE_LETTERS = {"left": "L", "right": "R"}
#: Registrations kept (one per scan sha256; a review rarely holds more scans open).
CACHE_SIZE = 8

#: Decimals of the affine (mm) in the cache key: a header fixed or mirrored is another registration.
AFFINE_DECIMALS = 3

_cache: OrderedDict[tuple[str, tuple[float, ...]], MniTransform] = OrderedDict()
_lock = threading.Lock()  # the review's worker and the subtype panel's may ask at once


@dataclass(frozen=True)
class Location:
    """One microbleed's place: the patient's side (``"L"``/``"R"``) and MARS region (``"outside"``: none)."""

    side: str
    region: str

    @classmethod
    def from_mars(cls, region: MarsRegion) -> Location:
        """Side letter and region of a MARS lookup; outside the brain the side is still the patient's."""
        return cls(SIDE_LETTERS[region.side], region.region)


def mni_transform(volume: Volume, name: str | None = None) -> TaskGenerator[MniTransform]:
    """The scan's world -> MNI transform, registered once per voxel-data sha256 and affine (a task generator).

    Why cached: the registration takes seconds, and the review (after each detection or
    restore) and the subtype panel (after each edit) ask for the same scan again and again.
    Why the affine is in the key: the same voxels under a corrected or mirrored header lie
    elsewhere in the world (another side, another region). A volume without a sha256 is
    registered every time.

    Raises
    ------
    InputFileError
        The scan cannot be registered to MNI (one sentence, from ``register_to_mni``).
    """
    key = (volume.sha256, tuple(np.round(np.asarray(volume.affine, dtype=float), AFFINE_DECIMALS).ravel().tolist()))
    with _lock:
        cached = _cache.get(key) if volume.sha256 else None
        if cached is not None:
            _cache.move_to_end(key)
    if cached is not None:
        yield Progress(1, 1, "Registration to MNI already done for this scan")
        return cached
    transform = yield from register_to_mni(volume, name)
    if volume.sha256:
        with _lock:
            _cache[key] = transform
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return transform


def locate(transform: MniTransform, world_ras_mm: np.ndarray) -> list[Location]:
    """(n, 3) world RAS mm of a scan -> each point's :class:`Location` through ``transform``."""
    world = np.asarray(world_ras_mm, dtype=float).reshape(-1, 3)
    return [Location.from_mars(r) for r in regions_at(transform.to_mni(world))] if len(world) else []


def locate_findings(volume: Volume, ids: Sequence[int], world_ras_mm: np.ndarray,
                    name: str | None = None) -> TaskGenerator[dict[int, Location]]:
    """Finding id -> :class:`Location` for microbleeds at ``world_ras_mm`` on ``volume`` (registered once).

    Raises
    ------
    InputFileError
        The scan cannot be registered to MNI (one sentence).
    """
    transform = yield from mni_transform(volume, name)
    locations = locate(transform, world_ras_mm)
    if len(locations) != len(ids):
        raise ValueError(f"{len(ids)} ids for {len(locations)} positions: one of each per microbleed")
    yield Progress(1, 1, f"{len(ids)} microbleeds located")
    return dict(zip((int(i) for i in ids), locations))
