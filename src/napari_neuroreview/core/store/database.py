"""The store's one SQLite connection: opening, the lock, transactions, reads and closing.

Why a class of its own: every repository of the store (images, model versions, findings,
reviews, the audit log) writes through the same lock and the same ``BEGIN IMMEDIATE``
transaction, and reads through the same error mapping. Holding those in one small object
that each repository receives makes the single write path explicit instead of inherited.
"""

from __future__ import annotations

import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from napari_neuroreview.core.errors import StoreError
from napari_neuroreview.core.store.schema import configure_and_migrate, damaged_message

__all__ = ["Database"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


class Database:
    """One open SQLite file in WAL mode, shared by the store's repositories.

    Parameters
    ----------
    path : Path
        The SQLite file.
    create : bool
        True: a missing file is created, with its folder. False: only an existing store
        is opened, and a missing one is refused with nothing created.

    Raises
    ------
    StoreError
        If the file is missing (``create=False``), not a SQLite database, damaged, was
        written by a newer version of the plugin, or cannot be opened or migrated.

    Notes
    -----
    Every access takes an internal re-entrant lock, so one instance may be shared between
    the GUI thread and a worker.
    """

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._ready = False
        self._refuse_foreign_file()
        if not create:
            self._refuse_missing()
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.sqlite_errors("opened"):
                self._conn = self._connect(create)
                configure_and_migrate(self.connection(), self.transaction, self.path)
            self._ready = True
        except OSError as exc:
            self.close()
            raise StoreError(
                f"The annotation store {self.path} cannot be created: {exc.strerror or exc}."
            ) from exc
        except BaseException:
            self.close()
            raise

    @property
    def is_open(self) -> bool:
        """False once :meth:`close` ran (or opening failed)."""
        return self._conn is not None

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

    def connection(self) -> sqlite3.Connection:
        """The open connection; a closed store is a :class:`StoreError`, not an AttributeError."""
        if self._conn is None:
            raise StoreError(f"The annotation store {self.path} is closed.")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: all of its rows land, or none do.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a concurrent writer waits
        at the start instead of failing at ``COMMIT`` after work was done.
        """
        with self._lock:
            conn = self.connection()
            with self.sqlite_errors("written"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn.cursor()
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Cursor]:
        """A read transaction: every query inside sees one state while others may write."""
        with self._lock:
            cur = self.connection().cursor()
            with self.sqlite_errors("read"):
                cur.execute("BEGIN")
                try:
                    yield cur
                finally:
                    cur.execute("COMMIT")

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run one query and return its rows, addressable by column name."""
        with self._lock:
            cur = self.connection().cursor()
            cur.row_factory = sqlite3.Row
            with self.sqlite_errors("read"):
                return cur.execute(sql, params).fetchall()

    @contextmanager
    def sqlite_errors(self, doing: str) -> Iterator[None]:
        """Turn SQLite's reports about the file into one-sentence :class:`StoreError`.

        ``OperationalError`` (locked, read-only, disk full, I/O) is the environment; plain
        ``DatabaseError`` (malformed page, not a database) is a damaged file. Integrity,
        programming and interface errors are bugs in this code and keep their traceback.
        """
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise StoreError(f"The annotation store {self.path} cannot be {doing}: {exc}.") from exc
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.NotSupportedError):
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(damaged_message(self.path, exc)) from exc

    def _connect(self, create: bool) -> sqlite3.Connection:
        """Open the SQLite connection; without ``create``, SQLite itself may not create the file."""
        target, uri = str(self.path), False
        if not create:
            target, uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=rw", True
        return sqlite3.connect(target, isolation_level=None, timeout=10.0, check_same_thread=False, uri=uri)

    def _refuse_missing(self) -> None:
        """For ``create=False``: a missing or empty file is not a store (nothing is created)."""
        if not self.path.exists():
            raise StoreError(
                f"There is no annotation store at {self.path}; check the path, or create a "
                "store from the review widget."
            )
        if self.path.stat().st_size == 0:
            raise StoreError(f"The annotation store {self.path} is an empty file, not a store.")

    def _refuse_foreign_file(self) -> None:
        """Check the magic bytes *before* SQLite touches the file.

        Why: opening any file with SQLite and setting WAL mode may write to it; a user who
        picks the wrong file (a NIfTI, a CSV) must get an error and an untouched file.
        """
        if self.path.is_dir():
            raise StoreError(f"The annotation store {self.path} is a folder, not a file.")
        if not self.path.exists():
            return
        try:
            with self.path.open("rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise StoreError(
                f"The annotation store {self.path} cannot be read: {exc.strerror or exc}."
            ) from exc
        if head and head != _SQLITE_MAGIC:
            raise StoreError(
                f"The annotation store {self.path} is not a SQLite database; "
                "choose another file or a new file name."
            )
