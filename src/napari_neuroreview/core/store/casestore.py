"""The :class:`CaseStore` class: opening a store, its transactions, images and model versions.

Why here: this is the one object callers hold. It owns the connection, the lock and the
single write path (:meth:`CaseStore._transaction`, which every write goes through together
with its audit rows); findings and reviews come from :class:`~.findings.FindingsMixin`, the
schema and migrations from :mod:`.schema`, the row records from :mod:`.records`.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from napari_neuroreview.core.errors import ImageMismatchError, StoreError
from napari_neuroreview.core.store.audit import (
    CONTENT_COLUMNS,
    GENESIS,
    REVIEW_CHECK_SQL,
    AuditReport,
    row_hash,
    verify_chain,
    verify_reviews,
)
from napari_neuroreview.core.store.findings import FindingsMixin
from napari_neuroreview.core.store.records import (
    ImageRecord,
    ModelVersionRecord,
    _default_actor,
    _dumps,
    _now,
    _short,
)
from napari_neuroreview.core.store.schema import SCHEMA_VERSION, configure_and_migrate, damaged_message

__all__ = ["APP_NAME", "CaseStore", "default_store_path"]

APP_NAME = "napari-neuroreview"

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def default_store_path(create_folder: bool = True) -> Path:
    """Return the store used when the user names none, creating its folder unless told not to.

    Parameters
    ----------
    create_folder : bool
        False when only an existing store will be opened (``neuroreview store``), so that
        asking about a store creates nothing on disk.

    Returns
    -------
    Path
        ``<user data dir>/napari-neuroreview/neuroreview.sqlite``; the user data directory
        survives upgrades of the plugin, unlike anything inside the package.
    """
    folder = platformdirs.user_data_path(APP_NAME)
    if create_folder:
        folder.mkdir(parents=True, exist_ok=True)
    return folder / "neuroreview.sqlite"


#: Card keys that describe the card itself, not the model: a card recorded before they existed is the same model.
_CARD_BOOKKEEPING = ("card_sha256",)


def _card_content(card: Mapping[str, Any]) -> dict[str, Any]:
    """A model card without its own integrity hash (added to cards in schema 3 of the registry).

    Why: a store that recorded the shipped 1.0.0 before cards carried ``card_sha256``
    must still accept the same model; anything else that differs is another model.
    """
    return {k: v for k, v in dict(card).items() if k not in _CARD_BOOKKEEPING}


class CaseStore(FindingsMixin):
    """An open annotation store (one SQLite file).

    Parameters
    ----------
    path : str or Path or None
        The SQLite file. ``None`` uses :func:`default_store_path`.
    create : bool
        True (the default, what the review widget's "new store" needs): a missing file is
        created, with its folder. False: only an existing store is opened, and a missing
        one is refused with nothing created (see :meth:`open_existing`).

    Raises
    ------
    StoreError
        If the file is missing (``create=False``), not a SQLite database, damaged, was
        written by a newer version of the plugin, or cannot be opened or migrated.

    Notes
    -----
    One instance may be shared between the GUI thread and a worker: every access takes
    an internal lock. Use it as a context manager, or call :meth:`close`, which also moves
    every committed write from the ``-wal`` file into the main file.
    """

    def __init__(self, path: str | Path | None = None, *, create: bool = True) -> None:
        self._path = Path(path) if path is not None else default_store_path(create_folder=create)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._ready = False
        self._refuse_foreign_file()
        if not create:
            self._refuse_missing()
        try:
            if create:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._sqlite_errors("opened"):
                self._conn = self._connect(create)
                self._configure_and_migrate()
            self._ready = True
        except OSError as exc:
            self.close()
            raise StoreError(
                f"The annotation store {self._path} cannot be created: {exc.strerror or exc}."
            ) from exc
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    def open_existing(cls, path: str | Path | None = None) -> CaseStore:
        """Open a store that must already exist; a missing one is refused, nothing is created.

        Why: a mistyped ``--store`` must not silently become a new, empty store (a summary
        of nothing, a retraining on no reviews) nor leave a file, folder, ``-wal`` or
        ``-shm`` behind. Only the review widget's explicit "new store" creates one.
        """
        return cls(path, create=False)

    @property
    def path(self) -> Path:
        """The SQLite file this store reads and writes."""
        return self._path

    def close(self) -> None:
        """Checkpoint the write-ahead log into the main file and close; safe to call twice.

        Why the checkpoint: committed reviews are safe in the ``-wal`` file, but a user who
        copies or backs up the store file alone (or another open connection that keeps the
        log alive) would otherwise miss them. ``TRUNCATE`` leaves the log empty.
        """
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                if self._ready:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:
                pass  # busy or read-only: the data stays committed in the log; the next open checkpoints it
            finally:
                conn.close()

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"CaseStore({str(self._path)!r}, {state})"

    def _refuse_missing(self) -> None:
        """For :meth:`open_existing`: a missing or empty file is not a store (nothing is created)."""
        if not self._path.exists():
            raise StoreError(
                f"There is no annotation store at {self._path}; check the path, or create a "
                "store from the review widget."
            )
        if self._path.stat().st_size == 0:
            raise StoreError(f"The annotation store {self._path} is an empty file, not a store.")

    def _connect(self, create: bool) -> sqlite3.Connection:
        """Open the SQLite connection; without ``create``, SQLite itself may not create the file."""
        target, uri = str(self._path), False
        if not create:
            target, uri = f"file:{urllib.parse.quote(str(self._path.absolute()))}?mode=rw", True
        return sqlite3.connect(target, isolation_level=None, timeout=10.0, check_same_thread=False, uri=uri)

    @contextmanager
    def _sqlite_errors(self, doing: str) -> Iterator[None]:
        """Turn SQLite's reports about the file into one-sentence :class:`StoreError`.

        ``OperationalError`` (locked, read-only, disk full, I/O) is the environment; plain
        ``DatabaseError`` (malformed page, not a database) is a damaged file. Integrity,
        programming and interface errors are bugs in this code and keep their traceback.
        """
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise StoreError(f"The annotation store {self._path} cannot be {doing}: {exc}.") from exc
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.NotSupportedError):
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(damaged_message(self._path, exc)) from exc

    def _refuse_foreign_file(self) -> None:
        """Check the magic bytes *before* SQLite touches the file.

        Why: opening any file with SQLite and setting WAL mode may write to it; a user who
        picks the wrong file (a NIfTI, a CSV) must get an error and an untouched file.
        """
        if self._path.is_dir():
            raise StoreError(f"The annotation store {self._path} is a folder, not a file.")
        if not self._path.exists():
            return
        try:
            with self._path.open("rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(
                f"The annotation store {self._path} cannot be read: {exc.strerror or exc}."
            ) from exc
        if head and head != _SQLITE_MAGIC:
            raise StoreError(
                f"The annotation store {self._path} is not a SQLite database; "
                "choose another file or a new file name."
            )

    def _configure_and_migrate(self) -> None:
        """Switch the new connection to WAL and migrate its schema (see :mod:`.schema`)."""
        configure_and_migrate(self._connection(), self._transaction, self._path)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"The annotation store {self._path} is closed.")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: all of its rows land, or none do.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a concurrent writer waits
        at the start instead of failing at ``COMMIT`` after work was done.
        """
        with self._lock:
            conn = self._connection()
            with self._sqlite_errors("written"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn.cursor()
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._connection().cursor()
            cur.row_factory = sqlite3.Row
            with self._sqlite_errors("read"):
                return cur.execute(sql, params).fetchall()

    @staticmethod
    def _audit(
        cur: sqlite3.Cursor,
        actor: str,
        action: str,
        entity: str,
        entity_id: int | None,
        payload: Mapping[str, Any],
    ) -> None:
        """Append one audit row, chained to the latest one (see :mod:`.audit`).

        The id is chosen here (latest + 1) because it is part of the hashed content; the
        caller's ``BEGIN IMMEDIATE`` holds the write lock, so no other writer can take it.
        """
        last = cur.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        row_id, prev = (1, GENESIS) if last is None else (int(last[0]) + 1, last[1] or GENESIS)
        content = (row_id, _now(), str(actor), action, entity, None if entity_id is None else int(entity_id),
                   _dumps(dict(payload), "audit payload"))
        cur.execute(
            "INSERT INTO audit (id, at, actor, action, entity, entity_id, payload, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*content, prev, row_hash(prev, content)),
        )

    # ----------------------------------------------------------------- images

    def register_image(
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
            path is a *new* image (a re-acquired scan); :meth:`check_image` is the guard.
        """
        actor = actor or _default_actor()
        sha256 = self._valid_sha(sha256, path)
        shape_t = self._valid_shape(shape, path)
        affine_m = self._valid_affine(affine, path)
        path_s = str(path)
        with self._transaction() as cur:
            row = cur.execute("SELECT id FROM images WHERE sha256 = ?", (sha256,)).fetchone()
            if row is not None:
                self._audit(cur, actor, "image.reopened", "image", row[0], {"path": path_s})
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
                self._audit(
                    cur,
                    actor,
                    "image.registered",
                    "image",
                    image_id,
                    {"path": path_s, "sha256": sha256, "shape": list(shape_t)},
                )
        record = self._image_by_id(image_id)
        assert record is not None  # just written in a committed transaction
        return record

    def image_by_sha(self, sha256: str) -> ImageRecord | None:
        """The image with this voxel-data sha256, or ``None`` if it was never registered."""
        rows = self._read("SELECT * FROM images WHERE sha256 = ?", (str(sha256).lower(),))
        return self._image(rows[0]) if rows else None

    def images(self) -> list[ImageRecord]:
        """Every registered scan, oldest first (e.g. to gather reviewed scans for training)."""
        return [self._image(row) for row in self._read("SELECT * FROM images ORDER BY id")]

    def images_at_path(self, path: str | Path) -> list[ImageRecord]:
        """Every scan ever registered from ``path``, oldest first.

        More than one means the file was replaced by another scan; the caller decides
        (with :meth:`check_image`) which annotations belong to what is loaded now.
        """
        rows = self._read("SELECT * FROM images WHERE path = ? ORDER BY id", (str(path),))
        return [self._image(row) for row in rows]

    def check_image(self, image: int | ImageRecord, sha256: str) -> ImageRecord:
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
        record = self._image_by_id(image_id)
        if record is None:
            raise StoreError(f"The annotation store {self._path} has no image with id {image_id}.")
        loaded = str(sha256).lower()
        if record.sha256 != loaded:
            raise ImageMismatchError(
                f"The annotations in {self._path} belong to scan {_short(record.sha256)} of "
                f"{record.path}, not to the loaded scan {_short(loaded)}."
            )
        return record

    def _image_by_id(self, image_id: int) -> ImageRecord | None:
        rows = self._read("SELECT * FROM images WHERE id = ?", (image_id,))
        return self._image(rows[0]) if rows else None

    def _require_image(self, cur: sqlite3.Cursor, sha256: str) -> tuple[int, np.ndarray]:
        row = cur.execute(
            "SELECT id, affine FROM images WHERE sha256 = ?", (str(sha256).lower(),)
        ).fetchone()
        if row is None:
            raise StoreError(
                f"The annotation store {self._path} has no scan with sha256 "
                f"{_short(str(sha256))}; register the image before adding findings."
            )
        return row[0], np.array(json.loads(row[1]), dtype=np.float64)

    @staticmethod
    def _image(row: sqlite3.Row) -> ImageRecord:
        return ImageRecord(
            id=row["id"],
            path=row["path"],
            sha256=row["sha256"],
            shape=tuple(int(n) for n in json.loads(row["shape"])),
            affine=tuple(tuple(float(v) for v in r) for r in json.loads(row["affine"])),
            registered_at=row["registered_at"],
        )

    def _valid_sha(self, sha256: str, path: str | Path) -> str:
        sha = str(sha256).lower()
        if not _SHA256_RE.fullmatch(sha):
            raise StoreError(
                f"Cannot register {path} in {self._path}: {sha256!r} is not a hex sha256."
            )
        return sha

    def _valid_shape(self, shape: Sequence[int], path: str | Path) -> tuple[int, ...]:
        try:
            shape_t = tuple(int(n) for n in shape)
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"Cannot register {path}: its shape {shape!r} is not integers."
            ) from exc
        if len(shape_t) not in (3, 4) or min(shape_t) < 1:
            raise StoreError(f"Cannot register {path}: shape {shape_t} is not a 3D or 4D image.")
        return shape_t

    def _valid_affine(self, affine: Any, path: str | Path) -> np.ndarray:
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

    # ----------------------------------------------------------------- model versions

    def register_model_version(
        self,
        name: str,
        version: str,
        task: str,
        card: Mapping[str, Any],
        *,
        actor: str | None = None,
    ) -> ModelVersionRecord:
        """Record a model version so that findings can name the model that made them.

        Registering the same (name, version, card) again returns the existing record,
        so a widget may call this before every run. The same name and version with a
        *different* card raises :class:`StoreError`: two different models under one
        label would make every later comparison meaningless.
        """
        actor = actor or _default_actor()
        card_json = _dumps(dict(card), "model card")
        with self._transaction() as cur:
            row = cur.execute(
                "SELECT id, task, card FROM model_versions WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
            if row is not None:
                if row[1] != task or _card_content(json.loads(row[2])) != _card_content(json.loads(card_json)):
                    raise StoreError(
                        f"The annotation store {self._path} already has model {name} "
                        f"version {version} with a different task or model card."
                    )
                model_id = row[0]
            else:
                cur.execute(
                    "INSERT INTO model_versions (name, version, task, card, registered_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, version, task, card_json, _now()),
                )
                model_id = cur.lastrowid
                self._audit(
                    cur,
                    actor,
                    "model_version.registered",
                    "model_version",
                    model_id,
                    {"name": name, "version": version, "task": task},
                )
        rows = self._read("SELECT * FROM model_versions WHERE id = ?", (model_id,))
        return self._model_version(rows[0])

    def model_versions(self, name: str | None = None) -> list[ModelVersionRecord]:
        """Registered model versions (of ``name`` if given), in registration order."""
        if name is None:
            rows = self._read("SELECT * FROM model_versions ORDER BY id")
        else:
            rows = self._read("SELECT * FROM model_versions WHERE name = ? ORDER BY id", (name,))
        return [self._model_version(row) for row in rows]

    @staticmethod
    def _model_version(row: sqlite3.Row) -> ModelVersionRecord:
        return ModelVersionRecord(
            id=row["id"],
            name=row["name"],
            version=row["version"],
            task=row["task"],
            card=json.loads(row["card"]),
            registered_at=row["registered_at"],
        )

    # ----------------------------------------------------------------- audit

    def audit_log(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The audit log, oldest first; with ``limit``, only the latest ``limit`` entries.

        Each entry has ``id, at, actor, action, entity, entity_id`` and the decoded
        ``payload`` dict.
        """
        if limit is None:
            rows = self._read("SELECT * FROM audit ORDER BY id")
        else:
            rows = self._read(
                "SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id",
                (int(limit),),
            )
        return [{**dict(row), "payload": json.loads(row["payload"])} for row in rows]

    def verify(self) -> AuditReport:
        """Check the audit log's hash chain, then each review against its audit row.

        Read only. An edited, replaced, inserted or removed audit row breaks the chain at
        that row; an edited, added or removed review disagrees with the audit. The report
        names the first bad row (and its table); see :mod:`.audit` for the limits.
        """
        columns = ", ".join((*CONTENT_COLUMNS, "prev_hash", "hash"))
        with self._lock:
            cur = self._connection().cursor()
            with self._sqlite_errors("read"):
                cur.execute("BEGIN")  # one snapshot for both checks, while others may write
                try:
                    report = verify_chain(cur.execute(f"SELECT {columns} FROM audit ORDER BY id"))
                    if report.ok:
                        report = verify_reviews(cur.execute(REVIEW_CHECK_SQL)) or report
                    total = cur.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
                finally:
                    cur.execute("COMMIT")
        return replace(report, rows=int(total))

    def summary(self) -> dict[str, Any]:
        """Counts of what the store holds, for the Case widget and ``neuroreview store``."""
        counts = {
            table: int(self._read(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])
            for table in ("images", "findings", "reviews", "model_versions", "audit")
        }
        return {"path": str(self.path), "schema_version": SCHEMA_VERSION, **counts}
