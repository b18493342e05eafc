"""The store's SQL schema, its version, and the runner that brings a store up to it.

Why a separate module: the schema is the contract with every store already on a
radiologist's disk. Keeping the SQL and the migration runner here, apart from the code
that reads and writes rows, makes it obvious that :data:`MIGRATIONS` is append-only and
that opening a store is the only place the schema changes.

The version lives in SQLite's ``PRAGMA user_version``; migration ``i`` takes a store from
version ``i`` to ``i + 1`` in one transaction, so a crash mid-migration leaves the store
at the old version, never half-way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from napari_neuroreview.core.errors import StoreError
from napari_neuroreview.core.store.audit import CONTENT_COLUMNS, GENESIS, row_hash

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "configure_and_migrate", "damaged_message"]

#: One migration: a SQL script, or a function of the migration's cursor when a step needs
#: Python (hashing existing rows). Either runs inside the migration's single transaction.
Migration = str | Callable[[sqlite3.Cursor], None]

_AUDIT_NO_UPDATE = """
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN
        SELECT RAISE(ABORT, 'audit log is append-only');
    END;
"""


def _chain_audit_and_version_findings(cur: sqlite3.Cursor) -> None:
    """2 -> 3: hash-chain the audit log (existing rows too) and give findings a row version.

    Why: the append-only triggers can be dropped, and ``INSERT OR REPLACE`` rewrites a row
    without firing them; a hash chain makes such edits evident (:mod:`.audit`). The
    finding's ``version`` counts its reviews, so that a review session can tell that
    another session changed a finding since it last read it (optimistic concurrency).
    Existing rows are chained in id order; the update trigger is lifted only for that,
    inside this migration's transaction.
    """
    cur.execute("ALTER TABLE audit ADD COLUMN prev_hash TEXT")
    cur.execute("ALTER TABLE audit ADD COLUMN hash TEXT")
    cur.execute("DROP TRIGGER audit_no_update")
    prev = GENESIS
    rows = cur.execute(f"SELECT {', '.join(CONTENT_COLUMNS)} FROM audit ORDER BY id").fetchall()
    for row in rows:
        digest = row_hash(prev, row)
        cur.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", (prev, digest, row[0]))
        prev = digest
    cur.execute(_AUDIT_NO_UPDATE)
    cur.execute(
        "CREATE TRIGGER audit_needs_hash BEFORE INSERT ON audit "
        "WHEN NEW.hash IS NULL OR NEW.prev_hash IS NULL "
        "BEGIN SELECT RAISE(ABORT, 'audit rows are hash-chained'); END"
    )
    cur.execute("ALTER TABLE findings ADD COLUMN version INTEGER NOT NULL DEFAULT 0")
    cur.execute("UPDATE findings SET version = "
                "(SELECT COUNT(*) FROM reviews r WHERE r.finding_id = findings.id)")

# Migration i takes a store from schema version i to i + 1. Never edit a released entry:
# append a new one, so that every store in the field can be brought forward step by step.
MIGRATIONS: list[Migration] = [
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
    # 1 -> 2: review action 'reset' (a finding back to pending: how the review widget's
    # undo is written in an append-only store). SQLite cannot alter a CHECK constraint,
    # so the reviews table is rebuilt: new table, copy every row with its id, drop,
    # rename, re-index; all in the migration's single transaction. Nothing references
    # reviews by foreign key, so the drop cannot cascade or fail.
    """
    CREATE TABLE reviews_v2 (
        id         INTEGER PRIMARY KEY,
        finding_id INTEGER NOT NULL REFERENCES findings(id),
        action     TEXT NOT NULL
                   CHECK (action IN ('accepted', 'rejected', 'added', 'moved', 'reset')),
        reviewer   TEXT NOT NULL,
        at         TEXT NOT NULL,
        from_world TEXT,
        to_world   TEXT,
        note       TEXT
    );
    INSERT INTO reviews_v2 (id, finding_id, action, reviewer, at, from_world, to_world, note)
        SELECT id, finding_id, action, reviewer, at, from_world, to_world, note FROM reviews;
    DROP TABLE reviews;
    ALTER TABLE reviews_v2 RENAME TO reviews;
    CREATE INDEX reviews_by_finding ON reviews(finding_id, id);
    """,
    # 2 -> 3: audit hash chain and finding row versions (a Python step: it hashes rows).
    _chain_audit_and_version_findings,
    # 3 -> 4: a scan's sign-off and re-opening (signoffs.py), append-only like the audit:
    # the latest row per image is its state; every scan of an older store starts unsigned.
    """
    CREATE TABLE signoffs (
        id        INTEGER PRIMARY KEY,
        image_id  INTEGER NOT NULL REFERENCES images(id),
        action    TEXT NOT NULL CHECK (action IN ('signed_off', 'reopened')),
        reviewer  TEXT NOT NULL,
        at        TEXT NOT NULL,
        note      TEXT
    );
    CREATE INDEX signoffs_by_image ON signoffs(image_id, id);
    CREATE TRIGGER signoffs_no_update BEFORE UPDATE ON signoffs
    BEGIN
        SELECT RAISE(ABORT, 'sign-offs are append-only');
    END;
    CREATE TRIGGER signoffs_no_delete BEFORE DELETE ON signoffs
    BEGIN
        SELECT RAISE(ABORT, 'sign-offs are append-only');
    END;
    """,
]
SCHEMA_VERSION: int = len(MIGRATIONS)


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


def _run_migration(cur: sqlite3.Cursor, migration: Migration) -> None:
    """Run one migration (SQL script or Python step) on the migration's cursor."""
    if callable(migration):
        migration(cur)
        return
    for statement in _split_sql(migration):
        cur.execute(statement)


def damaged_message(path: Path, detail: object) -> str:
    """The one sentence for a store SQLite finds damaged (a bad page, a truncated file)."""
    text = " ".join(str(detail).split()) or "unreadable"
    return f"The annotation store {path} is damaged (sqlite: {text}); restore it from a backup."


def _refuse_damaged(conn: sqlite3.Connection, path: Path) -> None:
    """Run ``PRAGMA quick_check`` before anything could write to the file.

    Why: a damaged page otherwise surfaces later as a raw ``sqlite3.DatabaseError`` in the
    middle of a review; and switching a damaged file to WAL or migrating it would write
    into it. Refusing here leaves the file exactly as it was for recovery from a backup.
    """
    found = [str(row[0]) for row in conn.execute("PRAGMA quick_check(1)").fetchall()]
    if found != ["ok"]:
        lines = [line for text in found for line in text.splitlines() if line.strip()]
        detail = next((line for line in lines if not line.startswith("***")), "; ".join(lines))
        raise StoreError(damaged_message(path, detail))


def _refuse_newer(path: Path, version: int) -> None:
    """Refuse a store whose schema is newer than this code knows.

    Why: an older plugin writing rows into a newer schema could silently drop columns
    the newer release relies on; the user must upgrade instead.
    """
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"The annotation store {path} was written by a newer "
            f"napari-neuroreview (schema {version}, this one knows up to "
            f"{SCHEMA_VERSION}); upgrade the plugin to open it."
        )


def configure_and_migrate(
    conn: sqlite3.Connection,
    transaction: Callable[[], AbstractContextManager[sqlite3.Cursor]],
    path: Path,
) -> None:
    """Set the connection's pragmas and migrate the store to :data:`SCHEMA_VERSION`.

    Parameters
    ----------
    conn : sqlite3.Connection
        The freshly opened connection (autocommit mode, ``isolation_level=None``).
    transaction : callable
        Returns a context manager that runs one ``BEGIN IMMEDIATE`` ... ``COMMIT``
        transaction and yields its cursor (``CaseStore._transaction``), so each migration
        is all-or-nothing and holds the write lock against other processes.
    path : Path
        The store's file, for error messages.

    Raises
    ------
    StoreError
        If the store is newer than this code, or cannot use WAL (e.g. a network share).
    """
    # Read the version before anything that could write, so a store from a newer
    # release is left exactly as it was.
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    _refuse_newer(path, version)
    _refuse_damaged(conn, path)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(
            f"The annotation store {path} cannot use write-ahead logging "
            f"(journal mode stays {mode!r}); put it on a local disk."
        )
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=FULL")
    while version < SCHEMA_VERSION:
        with transaction() as cur:
            # Re-read under the write lock: another process may have migrated.
            version = cur.execute("PRAGMA user_version").fetchone()[0]
            _refuse_newer(path, version)
            if version >= SCHEMA_VERSION:
                break
            _run_migration(cur, MIGRATIONS[version])
            cur.execute(f"PRAGMA user_version = {version + 1:d}")
            version += 1
