"""The audit log's hash chain: how a row is hashed and how the chain is checked.

Why a chain: the audit table refuses ``UPDATE`` and ``DELETE`` by trigger, but anyone with
a SQLite shell can drop the triggers or rewrite a row with ``INSERT OR REPLACE`` (which
deletes without firing delete triggers). Each row therefore carries ``prev_hash`` (the
previous row's hash) and ``hash`` = sha256 over ``prev_hash`` and the row's canonical
content, so an edited, replaced, inserted or removed row breaks the chain at that row.

Limits, stated plainly: the chain lives in the same file and has no secret, so someone
who rewrites every later row with the right hashes, or removes the *latest* rows, is not
caught by the chain alone; it makes casual or accidental edits evident, not impossible.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["GENESIS", "AuditReport", "row_hash", "verify_chain"]

#: ``prev_hash`` of the first row of the chain.
GENESIS = "0" * 64

#: Columns that make up a row's content, in hashing order (the row id is part of it, so a
#: row moved to another id or a row inserted between two others is caught).
CONTENT_COLUMNS: tuple[str, ...] = ("id", "at", "actor", "action", "entity", "entity_id", "payload")


@dataclass(frozen=True)
class AuditReport:
    """What :meth:`CaseStore.verify` found.

    ``ok`` is True when every row's hash matches its content and follows the row before;
    otherwise ``first_bad_id`` names the first row where the chain breaks and ``problem``
    says how, in one sentence.
    """

    ok: bool
    rows: int
    first_bad_id: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, for ``neuroreview store --verify``."""
        return {"ok": self.ok, "audit_rows": self.rows, "first_bad_row": self.first_bad_id,
                "problem": self.problem}


def row_hash(prev_hash: str, content: Iterable[Any]) -> str:
    """sha256 of the previous hash and the row's content (canonical JSON, stored payload text)."""
    text = json.dumps(list(content), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{text}".encode("utf-8")).hexdigest()


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
            return AuditReport(False, count, int(row_id), problem)
        expected_prev, previous_id = stored, row_id
    return AuditReport(True, count)
