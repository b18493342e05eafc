"""Findings and reviews: the writes and reads of what models found and what readers decided.

Why a mixin module: these are the store's busiest and most validated writes (positions
checked against the image affine, model versions resolved, reviews that move findings),
and together they are as long as the rest of :class:`~.casestore.CaseStore`. Keeping them
here keeps each file short enough to read in one sitting; :class:`FindingsMixin` is not
meant to be used on its own.

Every method relies on the plumbing of ``CaseStore`` (``_transaction``, ``_read``,
``_audit``, ``_require_image``, ``_path``), so the three rules of the package hold here
too: one transaction per call with its audit rows, findings tied to a scan by voxel-data
sha256, and world RAS+ mm stored beside file-order voxel indices that agree with it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_neuroreview.core.errors import GeometryError, StoreError
from napari_neuroreview.core.store.records import (
    FINDING_SOURCES,
    REVIEW_ACTIONS,
    Finding,
    Review,
    ReviewConflictError,
    _chunks,
    _dumps,
    _now,
    _triple,
)

__all__ = ["FindingsMixin"]

# A stored voxel index may be rounded, but it must name the voxel that contains the world
# point; an axis swap or flip almost always breaks this by more than half a voxel.
_VOXEL_TOLERANCE = 0.5 + 1e-6


class FindingsMixin:
    """The findings and reviews part of :class:`~.casestore.CaseStore`.

    Notes
    -----
    Mixed into ``CaseStore`` only; it has no state of its own and needs the store's
    connection plumbing, declared below for type checkers.
    """

    if TYPE_CHECKING:  # provided by CaseStore
        _path: Path

        def _transaction(self) -> AbstractContextManager[sqlite3.Cursor]: ...

        def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        @staticmethod
        def _audit(
            cur: sqlite3.Cursor,
            actor: str,
            action: str,
            entity: str,
            entity_id: int | None,
            payload: Mapping[str, Any],
        ) -> None: ...

        def _require_image(self, cur: sqlite3.Cursor, sha256: str) -> tuple[int, np.ndarray]: ...

    # ----------------------------------------------------------------- findings

    def add_finding(
        self,
        image_sha256: str,
        task: str,
        world_ras_mm: Sequence[float],
        voxel_ijk: Sequence[float] | None,
        score: float | None = None,
        model: tuple[str, str] | None = None,
        source: str = "model",
        extra: Mapping[str, Any] | None = None,
        actor: str = "model",
    ) -> Finding:
        """Store one finding on the scan whose voxel data has ``image_sha256``.

        Parameters
        ----------
        image_sha256 : str
            The scan, looked up by voxel-data hash (never by path).
        task : str
            Which system produced it (e.g. ``'cmb'``).
        world_ras_mm : sequence of 3 float
            Position in world RAS+ mm.
        voxel_ijk : sequence of 3 float or None
            The same position as file-order voxel indices; ``None`` computes it from the
            image affine. If given, it must lie within half a voxel of ``world_ras_mm``.
        score : float, optional
            Model confidence; ``None`` for user-added findings.
        model : (name, version), optional
            A model version registered with :meth:`register_model_version`.
        source : {'model', 'user'}
            Who found it. A user-added finding is then reviewed with action ``'added'``.
        extra : dict, optional
            Task-specific fields (instance label, size, ...), stored as JSON.
        actor : str
            Who wrote it, for the audit log.

        Raises
        ------
        StoreError
            Unknown scan or model version, bad values.
        GeometryError
            ``voxel_ijk`` does not match ``world_ras_mm`` under the image affine.
        """
        return self.add_findings(
            image_sha256,
            [
                {
                    "task": task,
                    "world_ras_mm": world_ras_mm,
                    "voxel_ijk": voxel_ijk,
                    "score": score,
                    "model": model,
                    "source": source,
                    "extra": extra,
                }
            ],
            actor=actor,
        )[0]

    def add_findings(
        self,
        image_sha256: str,
        findings: Iterable[Mapping[str, Any]],
        actor: str = "model",
    ) -> list[Finding]:
        """Store many findings on one scan in a single transaction: all or none.

        Each mapping takes the keyword arguments of :meth:`add_finding` after
        ``image_sha256`` (``task``, ``world_ras_mm``, ``voxel_ijk`` required; ``score``,
        ``model``, ``source``, ``extra`` optional). One model run's output is one batch,
        so a crash never leaves half of a run's detections in the store.
        """
        ids: list[int] = []
        with self._transaction() as cur:
            image_id, affine = self._require_image(cur, image_sha256)
            model_ids: dict[tuple[str, str], int] = {}
            for item in findings:
                ids.append(self._insert_finding(cur, image_id, affine, model_ids, actor, **item))
        found: list[Finding] = []
        for chunk in _chunks(ids):
            found += self._findings_where("f.id IN (%s)" % ",".join("?" * len(chunk)), chunk)
        return found

    def _insert_finding(
        self,
        cur: sqlite3.Cursor,
        image_id: int,
        affine: np.ndarray,
        model_ids: dict[tuple[str, str], int],
        actor: str,
        *,
        task: str,
        world_ras_mm: Sequence[float],
        voxel_ijk: Sequence[float] | None = None,
        score: float | None = None,
        model: tuple[str, str] | None = None,
        source: str = "model",
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        if source not in FINDING_SOURCES:
            raise StoreError(f"A finding's source must be 'model' or 'user', not {source!r}.")
        world, voxel = self._world_and_voxel(affine, world_ras_mm, voxel_ijk)
        if score is not None:
            score = float(score)
            if not np.isfinite(score):
                raise StoreError(f"A finding's score must be a finite number, not {score!r}.")
        model_id = self._model_id(cur, model, model_ids) if model is not None else None
        cur.execute(
            "INSERT INTO findings (image_id, task, world_x, world_y, world_z, vox_i, vox_j, "
            "vox_k, score, model_version_id, source, extra, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                image_id,
                task,
                *world,
                *voxel,
                score,
                model_id,
                source,
                _dumps(dict(extra or {}), "finding's extra fields"),
                _now(),
            ),
        )
        finding_id = int(cur.lastrowid)
        self._audit(
            cur,
            actor,
            "finding.added",
            "finding",
            finding_id,
            {
                "image_id": image_id,
                "task": task,
                "world": list(world),
                "voxel": list(voxel),
                "score": score,
                "model": list(model) if model is not None else None,
                "source": source,
            },
        )
        return finding_id

    def _model_id(
        self, cur: sqlite3.Cursor, model: tuple[str, str], cache: dict[tuple[str, str], int]
    ) -> int:
        key = (str(model[0]), str(model[1]))
        if key not in cache:
            row = cur.execute(
                "SELECT id FROM model_versions WHERE name = ? AND version = ?", key
            ).fetchone()
            if row is None:
                raise StoreError(
                    f"The annotation store {self._path} has no model {key[0]} version "
                    f"{key[1]}; register the model version before storing its findings."
                )
            cache[key] = row[0]
        return cache[key]

    @staticmethod
    def _world_and_voxel(
        affine: np.ndarray, world: Sequence[float], voxel: Sequence[float] | None
    ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Validate a world position and its voxel index against each other.

        Why: the classic bug is a voxel index in display order (or flipped) stored next to
        a correct world position; the two then disagree by more than half a voxel.
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

    def add_user_finding(
        self, image_sha256: str, task: str, world_ras_mm: Sequence[float], reviewer: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Finding:
        """A finding the reviewer added by hand, with its ``'added'`` review, in ONE transaction.

        Why one: a crash between the two writes would leave a user point that looks
        unreviewed (pending), which retraining would then ignore.
        """
        with self._transaction() as cur:
            image_id, affine = self._require_image(cur, image_sha256)
            fid = self._insert_finding(cur, image_id, affine, {}, reviewer, task=task, world_ras_mm=world_ras_mm,
                                       voxel_ijk=None, score=None, model=None, source="user", extra=extra or {})
            self._insert_review(cur, finding_id=fid, action="added", reviewer=reviewer)
        return self._findings_where("f.id = ?", (fid,))[0]

    def findings_for(self, image_sha256: str, task: str | None = None) -> list[Finding]:
        """Findings on the scan with this voxel-data hash (of ``task`` if given).

        A scan that was never registered simply has none: annotations of another scan
        that happens to share the file name are never returned.
        """
        where = "i.sha256 = ?"
        params: list[Any] = [str(image_sha256).lower()]
        if task is not None:
            where += " AND f.task = ?"
            params.append(task)
        return self._findings_where(where, params)

    def _findings_where(self, where: str, params: Sequence[Any]) -> list[Finding]:
        rows = self._read(
            "SELECT f.*, i.sha256 AS image_sha256, m.name AS model_name, "
            "m.version AS model_version, "
            "(SELECT r.action FROM reviews r WHERE r.finding_id = f.id "
            " ORDER BY r.id DESC LIMIT 1) AS status "
            "FROM findings f JOIN images i ON i.id = f.image_id "
            "LEFT JOIN model_versions m ON m.id = f.model_version_id "
            f"WHERE {where} ORDER BY f.id",
            params,
        )
        return [
            Finding(
                id=row["id"],
                image_id=row["image_id"],
                image_sha256=row["image_sha256"],
                task=row["task"],
                world=(row["world_x"], row["world_y"], row["world_z"]),
                voxel=(row["vox_i"], row["vox_j"], row["vox_k"]),
                score=row["score"],
                model=(
                    (row["model_name"], row["model_version"])
                    if row["model_name"] is not None
                    else None
                ),
                source=row["source"],
                extra=json.loads(row["extra"]),
                created_at=row["created_at"],
                # 'reset' (an undone decision) reads back as never decided.
                status="pending" if row["status"] in (None, "reset") else row["status"],
                version=int(row["version"]),
            )
            for row in rows
        ]

    # ----------------------------------------------------------------- reviews

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
        with self._transaction() as cur:
            for item in reviews:
                ids.append(self._insert_review(cur, **item))
        rows: list[sqlite3.Row] = []
        for chunk in _chunks(ids):
            rows += self._read(
                "SELECT * FROM reviews WHERE id IN (%s) ORDER BY id" % ",".join("?" * len(chunk)),
                chunk,
            )
        return [self._review(row) for row in rows]

    def _insert_review(
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
        if action not in REVIEW_ACTIONS:
            raise StoreError(
                f"Review action {action!r} is not one of {', '.join(REVIEW_ACTIONS)}."
            )
        row = cur.execute(
            "SELECT f.source, f.world_x, f.world_y, f.world_z, i.affine, f.version FROM findings f "
            "JOIN images i ON i.id = f.image_id WHERE f.id = ?",
            (finding_id,),
        ).fetchone()
        if row is None:
            raise StoreError(f"The annotation store {self._path} has no finding {finding_id}.")
        source, current = row[0], (row[1], row[2], row[3])
        if expected_version is not None and int(row[5]) != int(expected_version):
            self._refuse_stale(cur, finding_id, int(row[5]), int(expected_version))
        if action == "added" and source != "user":
            raise StoreError(
                f"Finding {finding_id} was found by a model, so it cannot be reviewed as 'added'."
            )
        from_world = to_world_t = None
        if action == "moved":
            if to_world is None:
                raise StoreError(f"Moving finding {finding_id} needs its new world position.")
            affine = np.array(json.loads(row[4]), dtype=np.float64)
            to_world_t, voxel = self._world_and_voxel(affine, to_world, to_voxel)
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
        self._audit(
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

    def _refuse_stale(self, cur: sqlite3.Cursor, finding_id: int, current: int, seen: int) -> None:
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

    def reviews_for(self, finding_id: int) -> list[Review]:
        """Every decision about one finding, oldest first (the last one is its status)."""
        rows = self._read(
            "SELECT * FROM reviews WHERE finding_id = ? ORDER BY id", (finding_id,)
        )
        return [self._review(row) for row in rows]

    @staticmethod
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
