"""The row records the store hands out, and the value helpers shared by its writers.

Why a separate module: callers (widgets, CLI, exporters) only ever see these frozen
dataclasses, never ``sqlite3.Row``; keeping them apart from the SQL lets a newcomer read
what a finding or a review *is* without reading how it is stored. The helpers here
validate and encode values (timestamps, JSON, coordinates) the same way for every table.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_neuroreview.core.errors import GeometryError, StoreError
from napari_neuroreview.core.io import strict_json

__all__ = [
    "stored_time",
    "FINDING_SOURCES",
    "REVIEW_ACTIONS",
    "SCAN_STATES",
    "Finding",
    "ImageRecord",
    "ModelVersionRecord",
    "Review",
    "ReviewConflictError",
    "ScanState",
    "SignedOffError",
]

class ReviewConflictError(StoreError):
    """A finding was changed by another session since this one read it; nothing was written.

    Why a class of its own: the review widget answers it by offering to reload the review,
    not just by showing the sentence.
    """


class SignedOffError(StoreError):
    """An edit of a signed-off scan's findings was refused; nothing was written.

    Why refuse rather than re-open silently: a sign-off is the reviewer vouching for the
    scan's findings as they stand (what exports, reports and retraining read); changing
    them must be a decision of its own, a re-open, which the audit log records.
    """


#: A scan's review state, in worklist order: no decision yet, some findings decided or
#: edited, signed off (the reviewer vouches for every finding).
SCAN_STATES: tuple[str, ...] = ("pending", "in review", "signed off")

# Both must match the CHECK constraints in ``schema.MIGRATIONS``. ``'reset'`` (schema 2)
# puts a finding back to pending: the append-only store's way to undo a decision.
REVIEW_ACTIONS: tuple[str, ...] = ("accepted", "rejected", "added", "moved", "reset")
FINDING_SOURCES: tuple[str, ...] = ("model", "user")


@dataclass(frozen=True)
class ImageRecord:
    """One scan, identified by the sha256 of its voxel data.

    ``affine`` maps file-order voxel indices to world RAS+ millimetres.
    """

    id: int
    path: str
    sha256: str
    shape: tuple[int, ...]
    affine: tuple[tuple[float, ...], ...]
    registered_at: str

    @property
    def affine_matrix(self) -> np.ndarray:
        """The affine as a 4x4 float64 array (a fresh copy, safe to modify)."""
        return np.array(self.affine, dtype=np.float64)


@dataclass(frozen=True)
class ModelVersionRecord:
    """A model version whose outputs are in the store, with its model card."""

    id: int
    name: str
    version: str
    task: str
    card: dict[str, Any]
    registered_at: str


@dataclass(frozen=True)
class Finding:
    """One thing a model or a user found, at its *current* (possibly moved) position.

    ``world`` is RAS+ mm; ``voxel`` is the matching file-order index (i, j, k).
    ``status`` is the action of the latest review, or ``'pending'`` if none (or if the
    latest review is a ``'reset'``). ``version`` counts the reviews written about it: a
    session names the version it last saw when it writes, so that it cannot overwrite a
    decision it never saw (:class:`ReviewConflictError`).
    """

    id: int
    image_id: int
    image_sha256: str
    task: str
    world: tuple[float, float, float]
    voxel: tuple[float, float, float]
    score: float | None
    model: tuple[str, str] | None
    source: str
    extra: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    status: str = "pending"
    version: int = 0


@dataclass(frozen=True)
class Review:
    """One decision of a reviewer about one finding.

    For ``'moved'``, ``from_world`` and ``to_world`` (RAS+ mm) keep where the finding was
    and where it went, so the correction itself is training data.
    """

    id: int
    finding_id: int
    action: str
    reviewer: str
    at: str
    from_world: tuple[float, float, float] | None = None
    to_world: tuple[float, float, float] | None = None
    note: str | None = None


@dataclass(frozen=True)
class ScanState:
    """Where the review of one scan stands, for a worklist.

    ``findings`` counts the scan's visible findings (a user-added point the reviewer
    deleted is not one, as in the review widget), ``reviewed`` those with a decision.
    ``signed_by`` and ``signed_at`` name the latest sign-off while ``state`` is
    ``'signed off'``, else they are ``None``. ``opened_from`` is where the scan was last
    opened from (``image.path`` keeps the first); the worklist reads it from there, and it
    is never exported.
    """

    image: ImageRecord
    state: str
    findings: int
    reviewed: int
    signed_by: str | None = None
    signed_at: str | None = None
    opened_from: str = ""

    @property
    def sha256(self) -> str:
        """The scan's voxel-data hash (its identity)."""
        return self.image.sha256

    @property
    def label(self) -> str:
        """A pseudonymous label from the voxel data (the store holds no patient identity)."""
        return f"scan-{self.image.sha256[:8]}"

    @property
    def path(self) -> str:
        """Where to read the scan again: where it was last opened from, else where it was first."""
        return self.opened_from or self.image.path

    @property
    def file_name(self) -> str:
        """The scan file's (or DICOM folder's) name as first opened, without its folder."""
        return Path(self.image.path).name

    @property
    def signed(self) -> str:
        """Who signed it off and when (``dr.a, 2026-12-02 07:45 UTC``), or ``''`` while not signed off."""
        return f"{self.signed_by}, {stored_time(self.signed_at)}" if self.signed_by and self.signed_at else ""


# --------------------------------------------------------------------------- helpers


def _now() -> str:
    """ISO 8601 UTC timestamp; UTC so that stores from several sites sort together."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def stored_time(at: str) -> str:
    """A stored ISO timestamp to the minute in UTC, for a sentence, a table or a report (``2026-12-02 07:45 UTC``).

    The one format: the store's refusals, its scan states and the case report all write times so.
    """
    moment = datetime.fromisoformat(at)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _default_actor() -> str:
    """The OS user name, the best guess at who did a write when nobody said."""
    try:
        return getpass.getuser()
    except Exception:  # no user database (some containers): still audit the write
        return "unknown"


def _dumps(value: Any, what: str) -> str:
    """JSON text without NaN/Infinity, which standard JSON readers reject."""
    try:
        # Task outputs are usually numpy; NaN is kept so that it is refused here.
        return json.dumps(strict_json.plain(value, nonfinite="keep"), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"The {what} cannot be stored as JSON: {exc}.") from exc


def _short(sha256: str) -> str:
    return sha256[:12]


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    """Validate three finite numbers; a NaN coordinate would be unfindable forever."""
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"The {what} must be three numbers, got {value!r}.") from exc
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise StoreError(f"The {what} must be three finite numbers, got {value!r}.")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


# A stored voxel index may be rounded, but it must name the voxel that contains the world
# point; an axis swap or flip almost always breaks this by more than half a voxel.
_VOXEL_TOLERANCE = 0.5 + 1e-6


def _world_and_voxel(
    affine: np.ndarray, world: Sequence[float], voxel: Sequence[float] | None
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Validate a world position and its voxel index against each other.

    Why: the classic bug is a voxel index in display order (or flipped) stored next to
    a correct world position; the two then disagree by more than half a voxel. Findings
    (where they are added) and reviews (where they are moved) check the same way.
    """
    world_t = _triple(world, "world position (RAS+ mm)")
    expected = (np.linalg.inv(affine) @ np.array([*world_t, 1.0]))[:3]
    if voxel is None:
        return world_t, (float(expected[0]), float(expected[1]), float(expected[2]))
    voxel_t = _triple(voxel, "voxel index (i, j, k)")
    gap = float(np.max(np.abs(np.array(voxel_t) - expected)))
    if gap > _VOXEL_TOLERANCE:
        raise GeometryError(
            f"The voxel index {voxel_t} is {gap:.2f} voxels away from world position "
            f"{world_t} mm under the image affine (is it in display order, not file order?)."
        )
    return world_t, voxel_t


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    """Slices of ``ids`` small enough for SQLite's limit on bound parameters."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
