"""Findings: what models (or readers, by hand) found on a scan, with validated positions.

Why a repository of its own: these are the store's busiest and most validated writes
(positions checked against the image affine, model versions resolved, one model run's
detections written as one batch). It receives its collaborators explicitly: the
:class:`~.database.Database` it writes through, :class:`~.images.Images` for the scan a
finding belongs to, :class:`~.model_versions.ModelVersions` for the model that made it,
and :class:`~.reviews.Reviews` for the ``'added'`` review of a hand-placed finding.
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
from napari_neuroreview.core.store.images import Images
from napari_neuroreview.core.store.model_versions import ModelVersions
from napari_neuroreview.core.store.records import (
    FINDING_SOURCES,
    Finding,
    _chunks,
    _dumps,
    _now,
    _world_and_voxel,
)
from napari_neuroreview.core.store.reviews import Reviews
from napari_neuroreview.core.store.signoffs import SignOffs

__all__ = ["Findings"]


class Findings:
    """The ``findings`` table of one store.

    Parameters
    ----------
    db : Database
        The store's connection.
    images : Images
        Resolves the scan (by voxel-data sha256) that findings are written on.
    models : ModelVersions
        Resolves the ``(name, version)`` a model finding names.
    reviews : Reviews
        Writes the ``'added'`` review of a user finding in the same transaction.
    signoffs : SignOffs
        Refuses a new finding on a signed-off scan inside the same transaction.
    """

    def __init__(
        self, db: Database, images: Images, models: ModelVersions, reviews: Reviews, signoffs: SignOffs
    ) -> None:
        self._db = db
        self._images = images
        self._models = models
        self._reviews = reviews
        self._signoffs = signoffs

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
            A model version registered with ``CaseStore.register_model_version``.
        source : {'model', 'user'}
            Who found it. A user-added finding is then reviewed with action ``'added'``.
        extra : dict, optional
            Task-specific fields (instance label, size, ...), stored as JSON.
        actor : str
            Who wrote it, for the audit log.

        Raises
        ------
        StoreError
            Unknown scan or model version, bad values; a signed-off scan (SignedOffError).
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
        with self._db.transaction() as cur:
            image_id, affine = self._images.require(cur, image_sha256)
            self._signoffs.require_open(cur, image_id)
            model_ids: dict[tuple[str, str], int] = {}
            for item in findings:
                ids.append(self._insert(cur, image_id, affine, model_ids, actor, **item))
        found: list[Finding] = []
        for chunk in _chunks(ids):
            found += self._where("f.id IN (%s)" % ",".join("?" * len(chunk)), chunk)
        return found

    def _insert(
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
        """Inside the caller's write transaction: one validated finding and its audit row."""
        if source not in FINDING_SOURCES:
            raise StoreError(f"A finding's source must be 'model' or 'user', not {source!r}.")
        world, voxel = _world_and_voxel(affine, world_ras_mm, voxel_ijk)
        if score is not None:
            score = float(score)
            if not np.isfinite(score):
                raise StoreError(f"A finding's score must be a finite number, not {score!r}.")
        model_id = self._models.id_of(cur, model, model_ids) if model is not None else None
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
        audit.append(
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

    def add_user_finding(
        self, image_sha256: str, task: str, world_ras_mm: Sequence[float], reviewer: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Finding:
        """A finding the reviewer added by hand, with its ``'added'`` review, in ONE transaction.

        Why one: a crash between the two writes would leave a user point that looks
        unreviewed (pending), which retraining would then ignore.
        """
        with self._db.transaction() as cur:
            image_id, affine = self._images.require(cur, image_sha256)
            self._signoffs.require_open(cur, image_id)
            fid = self._insert(cur, image_id, affine, {}, reviewer, task=task, world_ras_mm=world_ras_mm,
                               voxel_ijk=None, score=None, model=None, source="user", extra=extra or {})
            self._reviews.insert(cur, finding_id=fid, action="added", reviewer=reviewer)
        return self._where("f.id = ?", (fid,))[0]

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
        return self._where(where, params)

    def _where(self, where: str, params: Sequence[Any]) -> list[Finding]:
        """Findings matching a SQL condition, each with its status (its latest review)."""
        rows = self._db.read(
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
