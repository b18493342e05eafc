"""The annotation store: images, findings, reviews, model versions and an audit log.

Why SQLite (stdlib ``sqlite3``) in WAL mode: a radiologist's corrections are the most
expensive data the plugin handles, so a crash, a power cut or a killed napari must never
lose a committed review nor leave half of a batch behind. WAL with ``synchronous=FULL``
gives exactly that, with no server and no extra dependency, and lets the CLI read the
store while napari writes to it.

Three rules shape this module:

* **Every write is one explicit transaction** (``BEGIN IMMEDIATE`` ... ``COMMIT``) that
  writes its rows *and* their audit rows, so the audit log can never disagree with the
  data. The audit table refuses ``UPDATE`` and ``DELETE`` by trigger.
* **Annotations are tied to voxel data, not to file names.** An image is identified by
  the sha256 of its voxel data; a re-acquired scan saved under the same name is a new
  image, and :meth:`CaseStore.check_image` refuses to show one scan's annotations on
  another.
* **Coordinates that leave memory are world RAS+ millimetres**, stored with the file-order
  voxel indices beside them (never voxel indices alone), and the two are checked against
  the image affine so that a display-order or flipped index cannot slip in.
"""

from __future__ import annotations

import getpass
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from napari_neuroreview.core.errors import GeometryError, ImageMismatchError, StoreError

__all__ = [
    "FINDING_SOURCES",
    "MIGRATIONS",
    "REVIEW_ACTIONS",
    "SCHEMA_VERSION",
    "CaseStore",
    "Finding",
    "ImageRecord",
    "ModelVersionRecord",
    "Review",
    "default_store_path",
]

APP_NAME = "napari-neuroreview"
REVIEW_ACTIONS: tuple[str, ...] = ("accepted", "rejected", "added", "moved")
FINDING_SOURCES: tuple[str, ...] = ("model", "user")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# A stored voxel index may be rounded, but it must name the voxel that contains the world
# point; an axis swap or flip almost always breaks this by more than half a voxel.
_VOXEL_TOLERANCE = 0.5 + 1e-6

# Migration i takes a store from schema version i to i + 1. Never edit a released entry:
# append a new one, so that every store in the field can be brought forward step by step.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE images (
        id            INTEGER PRIMARY KEY,
        path          TEXT NOT NULL,
        sha256        TEXT NOT NULL UNIQUE,
        shape         TEXT NOT NULL,
        affine        TEXT NOT NULL,
        registered_at TEXT NOT NULL
    );
    CREATE INDEX images_by_path ON images(path);

    CREATE TABLE model_versions (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        version       TEXT NOT NULL,
        task          TEXT NOT NULL,
        card          TEXT NOT NULL,
        registered_at TEXT NOT NULL,
        UNIQUE (name, version)
    );

    CREATE TABLE findings (
        id               INTEGER PRIMARY KEY,
        image_id         INTEGER NOT NULL REFERENCES images(id),
        task             TEXT NOT NULL,
        world_x          REAL NOT NULL,
        world_y          REAL NOT NULL,
        world_z          REAL NOT NULL,
        vox_i            REAL NOT NULL,
        vox_j            REAL NOT NULL,
        vox_k            REAL NOT NULL,
        score            REAL,
        model_version_id INTEGER REFERENCES model_versions(id),
        source           TEXT NOT NULL CHECK (source IN ('model', 'user')),
        extra            TEXT NOT NULL DEFAULT '{}',
        created_at       TEXT NOT NULL
    );
    CREATE INDEX findings_by_image ON findings(image_id, task);

    CREATE TABLE reviews (
        id         INTEGER PRIMARY KEY,
        finding_id INTEGER NOT NULL REFERENCES findings(id),
        action     TEXT NOT NULL CHECK (action IN ('accepted', 'rejected', 'added', 'moved')),
        reviewer   TEXT NOT NULL,
        at         TEXT NOT NULL,
        from_world TEXT,
        to_world   TEXT,
        note       TEXT
    );
    CREATE INDEX reviews_by_finding ON reviews(finding_id, id);

    CREATE TABLE audit (
        id        INTEGER PRIMARY KEY,
        at        TEXT NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        entity    TEXT NOT NULL,
        entity_id INTEGER,
        payload   TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN
        SELECT RAISE(ABORT, 'audit log is append-only');
    END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN
        SELECT RAISE(ABORT, 'audit log is append-only');
    END;
    """,
]
SCHEMA_VERSION: int = len(MIGRATIONS)


def default_store_path() -> Path:
    """Return the store used when the user names none, creating its folder.

    Returns
    -------
    Path
        ``<user data dir>/napari-neuroreview/neuroreview.sqlite``; the user data directory
        survives upgrades of the plugin, unlike anything inside the package.
    """
    folder = platformdirs.user_data_path(APP_NAME)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "neuroreview.sqlite"


# --------------------------------------------------------------------------- records


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
    ``status`` is the action of the latest review, or ``'pending'`` if none.
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


# --------------------------------------------------------------------------- helpers


def _now() -> str:
    """ISO 8601 UTC timestamp; UTC so that stores from several sites sort together."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _default_actor() -> str:
    """The OS user name, the best guess at who did a write when nobody said."""
    try:
        return getpass.getuser()
    except Exception:  # no user database (some containers): still audit the write
        return "unknown"


def _json_default(value: Any) -> Any:
    """Let numpy scalars and arrays into JSON, since task outputs are usually numpy."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any, what: str) -> str:
    """JSON text without NaN/Infinity, which standard JSON readers reject."""
    try:
        return json.dumps(value, default=_json_default, allow_nan=False, sort_keys=True)
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


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    """Slices of ``ids`` small enough for SQLite's limit on bound parameters."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _split_sql(script: str) -> Iterator[str]:
    """Split a script into statements, keeping trigger bodies (``BEGIN ... END;``) whole.

    ``executescript`` would be simpler but commits any open transaction first, which
    would break the one-transaction-per-migration guarantee.
    """
    statement = ""
    for piece in script.split(";"):
        statement += piece + ";"
        if sqlite3.complete_statement(statement):
            if statement.strip(" \t\r\n;"):
                yield statement.strip()
            statement = ""


# --------------------------------------------------------------------------- the store


class CaseStore:
    """An open annotation store (one SQLite file).

    Parameters
    ----------
    path : str or Path or None
        The SQLite file; created (with its folder) if missing. ``None`` uses
        :func:`default_store_path`.

    Raises
    ------
    StoreError
        If the file is not a SQLite database, was written by a newer version of the
        plugin, or cannot be opened or migrated.

    Notes
    -----
    One instance may be shared between the GUI thread and a worker: every access takes
    an internal lock. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._path = Path(path) if path is not None else default_store_path()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._refuse_foreign_file()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self._path), isolation_level=None, timeout=10.0, check_same_thread=False
            )
            self._configure_and_migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(
                f"The annotation store {self._path} cannot be opened: {exc}."
            ) from exc
        except OSError as exc:
            self.close()
            raise StoreError(
                f"The annotation store {self._path} cannot be created: {exc.strerror or exc}."
            ) from exc
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- lifecycle

    @property
    def path(self) -> Path:
        """The SQLite file this store reads and writes."""
        return self._path

    def close(self) -> None:
        """Close the connection; safe to call twice. Committed data is already on disk."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"CaseStore({str(self._path)!r}, {state})"

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
        conn = self._connection()
        # Read the version before anything that could write, so a store from a newer
        # release is left exactly as it was.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        self._refuse_newer(version)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"The annotation store {self._path} cannot use write-ahead logging "
                f"(journal mode stays {mode!r}); put it on a local disk."
            )
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        while version < SCHEMA_VERSION:
            with self._transaction() as cur:
                # Re-read under the write lock: another process may have migrated.
                version = cur.execute("PRAGMA user_version").fetchone()[0]
                self._refuse_newer(version)
                if version >= SCHEMA_VERSION:
                    break
                for statement in _split_sql(MIGRATIONS[version]):
                    cur.execute(statement)
                cur.execute(f"PRAGMA user_version = {version + 1:d}")
                version += 1

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"The annotation store {self._path} was written by a newer "
                f"napari-neuroreview (schema {version}, this one knows up to "
                f"{SCHEMA_VERSION}); upgrade the plugin to open it."
            )

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
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn.cursor()
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                # Locked, read-only, disk full: the environment, not a bug.
                raise StoreError(
                    f"The annotation store {self._path} cannot be written: {exc}."
                ) from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._connection().cursor()
            cur.row_factory = sqlite3.Row
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
        cur.execute(
            "INSERT INTO audit (at, actor, action, entity, entity_id, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (_now(), actor, action, entity, entity_id, _dumps(dict(payload), "audit payload")),
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
                if row[1] != task or json.loads(row[2]) != json.loads(card_json):
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
                status=row["status"] or "pending",
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
    ) -> Review:
        """Record one reviewer decision about one finding.

        Parameters
        ----------
        finding_id : int
            The finding reviewed.
        action : {'accepted', 'rejected', 'added', 'moved'}
            ``'added'`` only for findings with ``source='user'``; ``'moved'`` needs
            ``to_world`` and also moves the finding (its old position stays in the review).
        reviewer : str
            Who decided; also the audit actor.
        to_world, to_voxel : sequence of 3 float, optional
            New position for ``'moved'`` (RAS+ mm; file-order voxel, computed from the
            affine when omitted).
        note : str, optional
            Free text.
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
    ) -> int:
        if action not in REVIEW_ACTIONS:
            raise StoreError(
                f"Review action {action!r} is not one of {', '.join(REVIEW_ACTIONS)}."
            )
        row = cur.execute(
            "SELECT f.source, f.world_x, f.world_y, f.world_z, i.affine FROM findings f "
            "JOIN images i ON i.id = f.image_id WHERE f.id = ?",
            (finding_id,),
        ).fetchone()
        if row is None:
            raise StoreError(f"The annotation store {self._path} has no finding {finding_id}.")
        source, current = row[0], (row[1], row[2], row[3])
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

    def summary(self) -> dict[str, Any]:
        """Counts of what the store holds, for the Case widget and ``neuroreview store``."""
        counts = {
            table: int(self._read(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])
            for table in ("images", "findings", "reviews", "model_versions", "audit")
        }
        return {"path": str(self.path), "schema_version": SCHEMA_VERSION, **counts}
