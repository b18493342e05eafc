"""The audit log's hash chain: how a row is hashed and how the chain is checked.

Why a chain: the audit table refuses ``UPDATE`` and ``DELETE`` by trigger, but anyone with
a SQLite shell can drop the triggers or rewrite a row with ``INSERT OR REPLACE`` (which
deletes without firing delete triggers). Each row therefore carries ``prev_hash`` (the
previous row's hash) and ``hash`` = sha256 over ``prev_hash`` and the row's canonical
content, so an edited, replaced, inserted or removed row breaks the chain at that row.

Each review row is also checked against its audit row (action, reviewer, finding, note,
positions), so the chained audit log vouches for the reviews too: an edited, removed or
added review, or a removed latest audit row, shows up as a disagreement.

Limits, stated plainly: the chain lives in the same file and has no secret, so someone
who rewrites every later row with the right hashes (or removes a review together with
the latest audit rows) is not caught; it makes casual or accidental edits evident, not
impossible.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from napari_neuroreview.core.store.records import _dumps, _now

if TYPE_CHECKING:  # the database imports the schema, which imports this module
    from napari_neuroreview.core.store.database import Database

__all__ = [
    "GENESIS", "REVIEW_CHECK_SQL", "SIGNOFF_CHECK_SQL", "AuditLog", "AuditReport", "append", "row_hash",
    "verify_chain", "verify_reviews", "verify_signoffs",
]

#: ``prev_hash`` of the first row of the chain.
GENESIS = "0" * 64

#: Columns that make up a row's content, in hashing order (the row id is part of it, so a
#: row moved to another id or a row inserted between two others is caught).
CONTENT_COLUMNS: tuple[str, ...] = ("id", "at", "actor", "action", "entity", "entity_id", "payload")


@dataclass(frozen=True)
class AuditReport:
    """What :meth:`AuditLog.verify` (``CaseStore.verify``) found.

    ``ok`` is True when every row's hash matches its content and follows the row before;
    otherwise ``first_bad_id`` names the first row where the chain breaks and ``problem``
    says how, in one sentence.
    """

    ok: bool
    rows: int
    first_bad_id: int | None = None
    problem: str | None = None
    table: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, for ``neuroreview store --verify``."""
        return {"ok": self.ok, "audit_rows": self.rows, "first_bad_row": self.first_bad_id,
                "table": self.table, "problem": self.problem}


def row_hash(prev_hash: str, content: Iterable[Any]) -> str:
    """sha256 of the previous hash and the row's content (canonical JSON, stored payload text)."""
    text = json.dumps(list(content), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{text}".encode("utf-8")).hexdigest()


def append(
    cur: sqlite3.Cursor,
    actor: str,
    action: str,
    entity: str,
    entity_id: int | None,
    payload: Mapping[str, Any],
) -> None:
    """Append one audit row, chained to the latest one, inside the caller's write transaction.

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


def verify_chain(rows: Iterable[tuple[Any, ...]]) -> AuditReport:
    """Check rows of ``(*CONTENT_COLUMNS, prev_hash, hash)`` in id order; stop at the first break."""
    expected_prev, previous_id, count = GENESIS, None, 0
    n = len(CONTENT_COLUMNS)
    for row in rows:
        count += 1
        content, prev_hash, stored = row[:n], row[n], row[n + 1]
        row_id = content[0]
        problem = None
        if stored is None or prev_hash is None:
            problem = f"audit row {row_id} has no hash (it was written outside napari-neuroreview)"
        elif prev_hash != expected_prev:
            problem = (f"audit row {row_id} does not follow "
                       + (f"row {previous_id}" if previous_id is not None else "the start of the log")
                       + ": a row before it was removed, replaced or inserted")
        elif row_hash(prev_hash, content) != stored:
            problem = f"audit row {row_id} was altered: its content no longer matches its hash"
        if problem is not None:
            return AuditReport(False, count, int(row_id), problem, "audit")
        expected_prev, previous_id = stored, row_id
    return AuditReport(True, count)


#: Every review with its audit row, and every review audit row without its review, by review id.
REVIEW_CHECK_SQL = """
    SELECT r.id, r.finding_id, r.action, r.reviewer, r.note, r.from_world, r.to_world,
           a.id, a.action, a.actor, a.payload
    FROM reviews r LEFT JOIN audit a ON a.entity = 'review' AND a.entity_id = r.id
    UNION ALL
    SELECT a.entity_id, NULL, NULL, NULL, NULL, NULL, NULL, a.id, a.action, a.actor, a.payload
    FROM audit a WHERE a.entity = 'review' AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.id = a.entity_id)
    ORDER BY 1
"""


def verify_reviews(rows: Iterable[tuple[Any, ...]]) -> AuditReport | None:
    """Check each review against its (chained) audit row; the first disagreement, or None.

    Why: the chain protects the audit rows only; a review edited in place (a rejection
    turned into an acceptance) would otherwise go unnoticed, and it is what retraining reads.
    """
    for rid, fid, action, reviewer, note, from_w, to_w, aid, a_action, actor, payload in rows:
        if fid is None:
            return _review_problem(rid, f"review {rid} is recorded in audit row {aid} but is missing")
        if aid is None:
            return _review_problem(rid, f"review {rid} has no audit row (it, or the latest audit rows, "
                                        "were written or removed outside napari-neuroreview)")
        recorded = json.loads(payload or "{}")
        expected = {"finding_id": fid, "note": note, "from_world": _point(from_w), "to_world": _point(to_w)}
        if a_action != f"review.{action}" or actor != reviewer or any(
            recorded.get(key) != value for key, value in expected.items()
        ):
            return _review_problem(rid, f"review {rid} disagrees with its audit row {aid} (it was edited)")
    return None


#: Every sign-off with its audit row, and every sign-off audit row without its sign-off, by sign-off id.
SIGNOFF_CHECK_SQL = """
    SELECT s.id, s.image_id, s.action, s.reviewer, s.note, a.id, a.action, a.actor, a.payload
    FROM signoffs s LEFT JOIN audit a ON a.entity = 'signoff' AND a.entity_id = s.id
    UNION ALL
    SELECT a.entity_id, NULL, NULL, NULL, NULL, a.id, a.action, a.actor, a.payload
    FROM audit a WHERE a.entity = 'signoff' AND NOT EXISTS (SELECT 1 FROM signoffs s WHERE s.id = a.entity_id)
    ORDER BY 1
"""


def verify_signoffs(rows: Iterable[tuple[Any, ...]]) -> AuditReport | None:
    """Check each sign-off against its (chained) audit row; the first disagreement, or None.

    Why: a sign-off row inserted around the store (the table's triggers refuse only
    updates and deletes) would freeze a scan in someone's name, or mark it read.
    """
    for sid, image_id, action, reviewer, note, aid, a_action, actor, payload in rows:
        if image_id is None:
            return _problem(sid, f"sign-off {sid} is recorded in audit row {aid} but is missing", "signoffs")
        if aid is None:
            return _problem(sid, f"sign-off {sid} has no audit row (it was written outside napari-neuroreview)",
                            "signoffs")
        recorded = json.loads(payload or "{}")
        if (a_action != f"scan.{action}" or actor != reviewer or recorded.get("image_id") != image_id
                or recorded.get("note") != note):
            return _problem(sid, f"sign-off {sid} disagrees with its audit row {aid} (it was edited)", "signoffs")
    return None


def _point(text: str | None) -> list[float] | None:
    return None if text is None else list(json.loads(text))


def _review_problem(review_id: Any, problem: str) -> AuditReport:
    return _problem(review_id, problem, "reviews")


def _problem(row_id: Any, problem: str, table: str) -> AuditReport:
    return AuditReport(False, 0, int(row_id), problem, table)


class AuditLog:
    """Reading and checking a store's audit log (writes go through :func:`append`).

    Parameters
    ----------
    db : Database
        The store's connection.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def entries(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The audit log, oldest first; with ``limit``, only the latest ``limit`` entries.

        Each entry has ``id, at, actor, action, entity, entity_id`` and the decoded
        ``payload`` dict.
        """
        if limit is None:
            rows = self._db.read("SELECT * FROM audit ORDER BY id")
        else:
            rows = self._db.read(
                "SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id",
                (int(limit),),
            )
        return [{**dict(row), "payload": json.loads(row["payload"])} for row in rows]

    def verify(self) -> AuditReport:
        """Check the audit log's hash chain, then each review and sign-off against its audit row.

        Read only, in one snapshot while others may write. An edited, replaced, inserted or
        removed audit row breaks the chain at that row; an edited, added or removed review
        disagrees with the audit. The report names the first bad row (and its table).
        """
        columns = ", ".join((*CONTENT_COLUMNS, "prev_hash", "hash"))
        with self._db.snapshot() as cur:
            report = verify_chain(cur.execute(f"SELECT {columns} FROM audit ORDER BY id"))
            if report.ok:
                report = (verify_reviews(cur.execute(REVIEW_CHECK_SQL))
                          or verify_signoffs(cur.execute(SIGNOFF_CHECK_SQL)) or report)
            total = cur.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
        return replace(report, rows=int(total))
