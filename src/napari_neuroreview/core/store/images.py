"""The store's scans: registering them by voxel-data sha256, finding them, and the guard.

Why a repository of its own: the rule that annotations belong to voxel data, not to a
file name, lives here (:meth:`Images.check`, :meth:`Images.require`); findings ask it
for the scan they are written on.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_neuroreview.core.errors import ImageMismatchError, StoreError
from napari_neuroreview.core.store import audit
from napari_neuroreview.core.store.database import Database
from napari_neuroreview.core.store.records import ImageRecord, _default_actor, _dumps, _now, _short

__all__ = ["Images"]

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class Images:
    """The ``images`` table of one store.

    Parameters
    ----------
    db : Database
        The store's connection; every write is one of its transactions with its audit row.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(
        self,
        path: str | Path,
        sha256: str,
        shape: Sequence[int],
        affine: Any,
        *,
        actor: str | None = None,
    ) -> ImageRecord:
        """Register a scan, or return it if its voxel data is already known.

        Parameters
        ----------
        path : str or Path
            Where the scan was loaded from (informative only: files move and get reused).
        sha256 : str
            Lower-case hex sha256 of the voxel data; this, not the path, is the identity.
        shape : sequence of int
            Array shape in file order (3 or 4 dims).
        affine : array-like, 4x4
            File-order voxel index -> world RAS+ mm.
        actor : str, optional
            Who opened it, for the audit log (default: the OS user).

        Returns
        -------
        ImageRecord
            The existing record if ``sha256`` is known (an audit row ``image.reopened`` is
            added, nothing else changes), else the new one. A different sha256 at a known
            path is a *new* image (a re-acquired scan); :meth:`check` is the guard.
        """
        actor = actor or _default_actor()
        sha256 = self._valid_sha(sha256, path)
        shape_t = _valid_shape(shape, path)
        affine_m = _valid_affine(affine, path)
        path_s = str(path)
        with self._db.transaction() as cur:
            row = cur.execute("SELECT id FROM images WHERE sha256 = ?", (sha256,)).fetchone()
            if row is not None:
                audit.append(cur, actor, "image.reopened", "image", row[0], {"path": path_s})
                image_id = row[0]
            else:
                cur.execute(
                    "INSERT INTO images (path, sha256, shape, affine, registered_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        path_s,
                        sha256,
                        _dumps(list(shape_t), "image shape"),
                        _dumps(affine_m.tolist(), "image affine"),
                        _now(),
                    ),
                )
                image_id = cur.lastrowid
                audit.append(
                    cur,
                    actor,
                    "image.registered",
                    "image",
                    image_id,
                    {"path": path_s, "sha256": sha256, "shape": list(shape_t)},
                )
        record = self.by_id(image_id)
        assert record is not None  # just written in a committed transaction
        return record

    def by_sha(self, sha256: str) -> ImageRecord | None:
        """The image with this voxel-data sha256, or ``None`` if it was never registered."""
        rows = self._db.read("SELECT * FROM images WHERE sha256 = ?", (str(sha256).lower(),))
        return _image(rows[0]) if rows else None

    def by_id(self, image_id: int) -> ImageRecord | None:
        """The image with this row id, or ``None``."""
        rows = self._db.read("SELECT * FROM images WHERE id = ?", (image_id,))
        return _image(rows[0]) if rows else None

    def all(self) -> list[ImageRecord]:
        """Every registered scan, oldest first."""
        return [_image(row) for row in self._db.read("SELECT * FROM images ORDER BY id")]

    def at_path(self, path: str | Path) -> list[ImageRecord]:
        """Every scan ever registered from ``path``, oldest first.

        More than one means the file was replaced by another scan; the caller decides
        (with :meth:`check`) which annotations belong to what is loaded now.
        """
        rows = self._db.read("SELECT * FROM images WHERE path = ? ORDER BY id", (str(path),))
        return [_image(row) for row in rows]

    def check(self, image: int | ImageRecord, sha256: str) -> ImageRecord:
        """Refuse to pair a stored image's annotations with a different loaded scan.

        Parameters
        ----------
        image : int or ImageRecord
            The stored image (or its id) whose annotations are about to be shown or edited.
        sha256 : str
            sha256 of the voxel data actually loaded.

        Returns
        -------
        ImageRecord
            The stored record, when the voxel data matches.

        Raises
        ------
        ImageMismatchError
            If the loaded voxels differ (e.g. same file name, re-acquired scan).
        StoreError
            If the image id is unknown.
        """
        image_id = image.id if isinstance(image, ImageRecord) else int(image)
        record = self.by_id(image_id)
        if record is None:
            raise StoreError(f"The annotation store {self._db.path} has no image with id {image_id}.")
        loaded = str(sha256).lower()
        if record.sha256 != loaded:
            raise ImageMismatchError(
                f"The annotations in {self._db.path} belong to scan {_short(record.sha256)} of "
                f"{record.path}, not to the loaded scan {_short(loaded)}."
            )
        return record

    def require(self, cur: sqlite3.Cursor, sha256: str) -> tuple[int, np.ndarray]:
        """Inside a write transaction: the id and affine of a registered scan, or a StoreError."""
        row = cur.execute(
            "SELECT id, affine FROM images WHERE sha256 = ?", (str(sha256).lower(),)
        ).fetchone()
        if row is None:
            raise StoreError(
                f"The annotation store {self._db.path} has no scan with sha256 "
                f"{_short(str(sha256))}; register the image before adding findings."
            )
        return row[0], np.array(json.loads(row[1]), dtype=np.float64)

    def _valid_sha(self, sha256: str, path: str | Path) -> str:
        sha = str(sha256).lower()
        if not _SHA256_RE.fullmatch(sha):
            raise StoreError(
                f"Cannot register {path} in {self._db.path}: {sha256!r} is not a hex sha256."
            )
        return sha


def _image(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        id=row["id"],
        path=row["path"],
        sha256=row["sha256"],
        shape=tuple(int(n) for n in json.loads(row["shape"])),
        affine=tuple(tuple(float(v) for v in r) for r in json.loads(row["affine"])),
        registered_at=row["registered_at"],
    )


def _valid_shape(shape: Sequence[int], path: str | Path) -> tuple[int, ...]:
    try:
        shape_t = tuple(int(n) for n in shape)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"Cannot register {path}: its shape {shape!r} is not integers."
        ) from exc
    if len(shape_t) not in (3, 4) or min(shape_t) < 1:
        raise StoreError(f"Cannot register {path}: shape {shape_t} is not a 3D or 4D image.")
    return shape_t


def _valid_affine(affine: Any, path: str | Path) -> np.ndarray:
    try:
        mat = np.asarray(affine, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"Cannot register {path}: its affine is not numeric.") from exc
    if (
        mat.shape != (4, 4)
        or not np.all(np.isfinite(mat))
        or not np.allclose(mat[3], [0.0, 0.0, 0.0, 1.0])
        or abs(np.linalg.det(mat[:3, :3])) < 1e-12
    ):
        raise StoreError(
            f"Cannot register {path}: its affine is not an invertible 4x4 voxel-to-world "
            "matrix."
        )
    return mat
