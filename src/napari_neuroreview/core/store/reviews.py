"""Reviews: what readers decided about each finding, append-only and row-versioned.

Why a repository of its own: a review is the store's most expensive row (retraining reads
it) and its most contended one (two sessions on one scan). The version check that refuses
a stale session's write (:class:`~.records.ReviewConflictError`) and the move of a
finding's position live here together, inside one transaction with the audit row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from napari_neuroreview.core.errors import StoreError
from napari_neuroreview.core.store import audit
from napari_neuroreview.core.store.database import Database
from napari_neuroreview.core.store.records import (
    REVIEW_ACTIONS,
    Review,
    ReviewConflictError,
    _chunks,
    _dumps,
    _now,
    _world_and_voxel,
)
from napari_neuroreview.core.store.signoffs import SignOffs

__all__ = ["Reviews"]


class Reviews:
    """The ``reviews`` table of one store.

    Parameters
    ----------
    db : Database
        The store's connection.
    signoffs : SignOffs
        Refuses a review of a signed-off scan's finding inside the review's transaction.
    """

    def __init__(self, db: Database, signoffs: SignOffs) -> None:
        self._db = db
        self._signoffs = signoffs

    def review(
        self,
        finding_id: int,
        action: str,
        reviewer: str,
        to_world: Sequence[float] | None = None,
        to_voxel: Sequence[float] | None = None,
        note: str | None = None,
        expected_version: int | None = None,
    ) -> Review:
        """Record one reviewer decision about one finding.

        Parameters
        ----------
        finding_id : int
            The finding reviewed.
        action : {'accepted', 'rejected', 'added', 'moved', 'reset'}
            ``'added'`` only for findings with ``source='user'``; ``'moved'`` needs
            ``to_world`` and also moves the finding (its old position stays in the review).
        reviewer : str
            Who decided; also the audit actor.
        to_world, to_voxel : sequence of 3 float, optional
            New position for ``'moved'`` (RAS+ mm; file-order voxel, computed from the
            affine when omitted).
        note : str, optional
            Free text.
        expected_version : int, optional
            The finding's :attr:`Finding.version` as the caller last saw it. If the finding
            has changed since, :class:`ReviewConflictError` is raised and nothing is written.

        Raises
        ------
        ReviewConflictError
            Another session reviewed the finding after ``expected_version``.
        SignedOffError
            The finding's scan is signed off (re-open it first); nothing is written.
        """
        return self.review_many(
            [
                {
                    "finding_id": finding_id,
                    "action": action,
                    "reviewer": reviewer,
                    "to_world": to_world,
                    "to_voxel": to_voxel,
                    "note": note,
                    "expected_version": expected_version,
                }
            ]
        )[0]

    def review_many(self, reviews: Iterable[Mapping[str, Any]]) -> list[Review]:
        """Record many decisions in one transaction: all or none ("accept all").

        Each mapping takes the keyword arguments of :meth:`review`. ``reviews`` is
        consumed *inside* the transaction, so pass a list unless you mean to hold the
        write lock while it is produced.
        """
        ids: list[int] = []
        with self._db.transaction() as cur:
            for item in reviews:
                ids.append(self.insert(cur, **item))
        rows: list[sqlite3.Row] = []
        for chunk in _chunks(ids):
            rows += self._db.read(
                "SELECT * FROM reviews WHERE id IN (%s) ORDER BY id" % ",".join("?" * len(chunk)),
                chunk,
            )
        return [_review(row) for row in rows]

    def insert(
        self,
        cur: sqlite3.Cursor,
        *,
        finding_id: int,
        action: str,
        reviewer: str,
        to_world: Sequence[float] | None = None,
        to_voxel: Sequence[float] | None = None,
        note: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Inside the caller's write transaction: one review, its version bump and audit row."""
        if action not in REVIEW_ACTIONS:
            raise StoreError(
                f"Review action {action!r} is not one of {', '.join(REVIEW_ACTIONS)}."
            )
        row = cur.execute(
            "SELECT f.source, f.world_x, f.world_y, f.world_z, i.affine, f.version, f.image_id FROM findings f "
            "JOIN images i ON i.id = f.image_id WHERE f.id = ?",
            (finding_id,),
        ).fetchone()
        if row is None:
            raise StoreError(f"The annotation store {self._db.path} has no finding {finding_id}.")
        source, current = row[0], (row[1], row[2], row[3])
        self._signoffs.require_open(cur, int(row[6]))
        if expected_version is not None and int(row[5]) != int(expected_version):
            _refuse_stale(cur, finding_id, int(row[5]), int(expected_version))
        if action == "added" and source != "user":
            raise StoreError(
                f"Finding {finding_id} was found by a model, so it cannot be reviewed as 'added'."
            )
        from_world = to_world_t = None
        if action == "moved":
            if to_world is None:
                raise StoreError(f"Moving finding {finding_id} needs its new world position.")
            affine = np.array(json.loads(row[4]), dtype=np.float64)
            to_world_t, voxel = _world_and_voxel(affine, to_world, to_voxel)
            from_world = current
            cur.execute(
                "UPDATE findings SET world_x = ?, world_y = ?, world_z = ?, "
                "vox_i = ?, vox_j = ?, vox_k = ? WHERE id = ?",
                (*to_world_t, *voxel, finding_id),
            )
        elif to_world is not None or to_voxel is not None:
            raise StoreError(
                f"A new position for finding {finding_id} only makes sense with action 'moved'."
            )
        cur.execute(
            "INSERT INTO reviews (finding_id, action, reviewer, at, from_world, to_world, note) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                finding_id,
                action,
                reviewer,
                _now(),
                _dumps(list(from_world), "old position") if from_world else None,
                _dumps(list(to_world_t), "new position") if to_world_t else None,
                note,
            ),
        )
        review_id = int(cur.lastrowid)
        cur.execute("UPDATE findings SET version = version + 1 WHERE id = ?", (finding_id,))
        audit.append(
            cur,
            reviewer,
            f"review.{action}",
            "review",
            review_id,
            {
                "finding_id": finding_id,
                "from_world": list(from_world) if from_world else None,
                "to_world": list(to_world_t) if to_world_t else None,
                "note": note,
            },
        )
        return review_id

    def for_finding(self, finding_id: int) -> list[Review]:
        """Every decision about one finding, oldest first (the last one is its status)."""
        rows = self._db.read(
            "SELECT * FROM reviews WHERE finding_id = ? ORDER BY id", (finding_id,)
        )
        return [_review(row) for row in rows]


def _refuse_stale(cur: sqlite3.Cursor, finding_id: int, current: int, seen: int) -> None:
    """Raise :class:`ReviewConflictError` naming who changed the finding, and when.

    Why: two sessions on one scan (two widgets, two processes) each hold a view of the
    findings; a write from the stale one (an undo above all) would silently overwrite
    the other reviewer's decision. The transaction is rolled back by the caller.
    """
    last = cur.execute(
        "SELECT reviewer, at FROM reviews WHERE finding_id = ? ORDER BY id DESC LIMIT 1", (finding_id,)
    ).fetchone()
    who, when = (last[0], last[1]) if last is not None else ("someone", "an unknown time")
    raise ReviewConflictError(
        f"Finding {finding_id} was changed by {who} at {when} in another session "
        f"(version {current}, this session saw {seen}); reload the review."
    )


def _review(row: sqlite3.Row) -> Review:
    def point(text: str | None) -> tuple[float, float, float] | None:
        return None if text is None else tuple(json.loads(text))  # type: ignore[return-value]

    return Review(
        id=row["id"],
        finding_id=row["finding_id"],
        action=row["action"],
        reviewer=row["reviewer"],
        at=row["at"],
        from_world=point(row["from_world"]),
        to_world=point(row["to_world"]),
        note=row["note"],
    )
