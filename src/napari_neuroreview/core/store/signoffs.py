"""Sign-offs: a scan's review declared complete by a reviewer, or re-opened, append-only.

Why a repository of its own: the sign-off is the one per-scan decision (findings and
reviews are per finding), and its rule reaches into every other write: the findings of
a signed-off scan are frozen. :meth:`SignOffs.require_open` is called inside the
finding and review transactions, so the refusal holds for every session and process
that writes to the store, not only for the widget that shows the state.

The state of a scan is read from its rows (:data:`~.records.SCAN_STATES`): *signed off*
when its latest sign-off row is a sign-off; *in review* when any of its findings was
decided or edited, or it was signed off once and re-opened; *pending* otherwise.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from napari_neuroreview.core.errors import StoreError
from napari_neuroreview.core.store import audit
from napari_neuroreview.core.store.database import Database
from napari_neuroreview.core.store.images import Images
from napari_neuroreview.core.store.records import (
    ImageRecord,
    ScanState,
    SignedOffError,
    _now,
    _short,
    stored_time,
)

__all__ = ["SIGNOFF_ACTIONS", "WITHDRAWN_NOTE", "SignOffs", "next_to_review"]

#: Must match the CHECK constraint of the ``signoffs`` table (schema 4).
SIGNOFF_ACTIONS: tuple[str, ...] = ("signed_off", "reopened")

#: The note that starts the rejection of a user-added point the reviewer deleted: such a
#: point is withdrawn, not a finding. The review session writes it (its ``DELETED_NOTE`` is this).
WITHDRAWN_NOTE = "deleted"

# Per finding: its scan, whether a review exists (version > 0), its latest action and note.
_FINDING_STATUS_SQL = """
    SELECT f.image_id, f.source, f.version,
           (SELECT r.action FROM reviews r WHERE r.finding_id = f.id ORDER BY r.id DESC LIMIT 1) AS action,
           (SELECT r.note FROM reviews r WHERE r.finding_id = f.id ORDER BY r.id DESC LIMIT 1) AS note
    FROM findings f
"""
# Per image: the payload of its latest registration or re-opening (it names the path it was read from).
_LAST_OPENED_SQL = """
    SELECT a.entity_id AS image_id, a.payload FROM audit a WHERE a.id IN (
        SELECT MAX(b.id) FROM audit b WHERE b.entity = 'image'
        AND b.action IN ('image.registered', 'image.reopened') GROUP BY b.entity_id)
"""
_LATEST_SIGNOFF_SQL = """
    SELECT s.image_id, s.action, s.reviewer, s.at FROM signoffs s
    WHERE s.id = (SELECT MAX(t.id) FROM signoffs t WHERE t.image_id = s.image_id)
"""


class SignOffs:
    """The ``signoffs`` table of one store.

    Parameters
    ----------
    db : Database
        The store's connection; every write is one of its transactions with its audit row.
    images : Images
        Resolves the scan (by voxel-data sha256) that is signed off or re-opened.
    """

    def __init__(self, db: Database, images: Images) -> None:
        self._db = db
        self._images = images

    def sign_off(self, sha256: str, reviewer: str, note: str | None = None) -> ScanState:
        """Declare the review of a scan complete; its findings are then frozen.

        Raises
        ------
        StoreError
            Unknown scan, a blank reviewer, a scan already signed off, or findings still
            undecided (the sign-off vouches for every finding).
        """
        return self._write(sha256, reviewer, "signed_off", note)

    def reopen(self, sha256: str, reviewer: str, note: str | None = None) -> ScanState:
        """Re-open a signed-off scan so that its findings can be edited again (audited).

        Raises
        ------
        StoreError
            Unknown scan, a blank reviewer, or a scan that is not signed off.
        """
        return self._write(sha256, reviewer, "reopened", note)

    def _write(self, sha256: str, reviewer: str, action: str, note: str | None) -> ScanState:
        reviewer = str(reviewer or "").strip()
        if not reviewer:
            raise StoreError("A sign-off or re-opening needs the reviewer's name.")
        image = self._image(sha256)
        with self._db.transaction() as cur:
            latest = cur.execute(
                "SELECT action, reviewer, at FROM signoffs WHERE image_id = ? ORDER BY id DESC LIMIT 1", (image.id,)
            ).fetchone()
            signed = latest is not None and latest[0] == "signed_off"
            name = Path(image.path).name
            if action == "signed_off" and signed:
                raise StoreError(f"Scan {name} is already signed off (by {latest[1]} at {stored_time(latest[2])}).")
            if action == "reopened" and not signed:
                raise StoreError(f"Scan {name} is not signed off, so there is nothing to re-open.")
            findings, reviewed = _counts(cur.execute(_FINDING_STATUS_SQL + " WHERE f.image_id = ?", (image.id,)))
            if action == "signed_off" and reviewed < findings:
                raise StoreError(
                    f"Scan {name} has {findings - reviewed} of {findings} findings still undecided; "
                    "accept or reject them before signing off."
                )
            cur.execute("INSERT INTO signoffs (image_id, action, reviewer, at, note) VALUES (?, ?, ?, ?, ?)",
                        (image.id, action, reviewer, _now(), note))
            audit.append(cur, reviewer, f"scan.{action}", "signoff", int(cur.lastrowid), {
                "image_id": image.id, "sha256": image.sha256, "findings": findings, "reviewed": reviewed, "note": note,
            })
        return self.state(image.sha256)

    def require_open(self, cur: sqlite3.Cursor, image_id: int) -> None:
        """Inside a finding or review write: refuse it when the scan is signed off.

        Raises
        ------
        SignedOffError
            The scan's latest sign-off row is a sign-off; the caller's transaction rolls back.
        """
        row = cur.execute(
            "SELECT s.action, s.reviewer, s.at, i.path FROM signoffs s JOIN images i ON i.id = s.image_id "
            "WHERE s.image_id = ? ORDER BY s.id DESC LIMIT 1", (image_id,)
        ).fetchone()
        if row is not None and row[0] == "signed_off":
            raise SignedOffError(
                f"Scan {Path(row[3]).name} was signed off by {row[1]} at {stored_time(row[2])}; "
                "re-open it (Worklist > Re-open) before changing its findings."
            )

    def states(self, task: str | None = None) -> list[ScanState]:
        """Every registered scan with its state and counts (of ``task``'s findings if given), oldest first."""
        images = self._images.all()
        where, params = (" WHERE f.task = ?", (task,)) if task is not None else ("", ())
        return _states(images, self._db.read(_FINDING_STATUS_SQL + where, params), self._db.read(_LATEST_SIGNOFF_SQL),
                       self._db.read(_LAST_OPENED_SQL))

    def state(self, sha256: str, task: str | None = None) -> ScanState:
        """One scan's state (see :meth:`states`); an unknown scan is a StoreError."""
        image = self._image(sha256)
        where, params = " WHERE f.image_id = ?", [image.id]
        if task is not None:
            where, params = where + " AND f.task = ?", [image.id, task]
        signoffs = [r for r in self._db.read(_LATEST_SIGNOFF_SQL) if r["image_id"] == image.id]
        return _states([image], self._db.read(_FINDING_STATUS_SQL + where, params), signoffs,
                       self._db.read(_LAST_OPENED_SQL))[0]

    def _image(self, sha256: str) -> ImageRecord:
        image = self._images.by_sha(sha256)
        if image is None:
            raise StoreError(f"The annotation store {self._db.path} has no scan with sha256 {_short(str(sha256))}.")
        return image


def next_to_review(states: Sequence[ScanState], current: str | None = None) -> ScanState | None:
    """The next scan that is not signed off, after ``current`` (a sha256) in list order, wrapping.

    Why here and not in a widget: which scan comes next is a rule of the worklist, the
    same for the dock widget and any script. ``current`` itself is never the answer.
    """
    start = next((i + 1 for i, s in enumerate(states) if s.sha256 == current), 0)
    ordered = [*states[start:], *states[:start]]
    return next((s for s in ordered if s.state != "signed off" and s.sha256 != current), None)


def _counts(rows: Sequence[sqlite3.Row] | sqlite3.Cursor) -> tuple[int, int]:
    """(visible findings, decided findings) of rows of :data:`_FINDING_STATUS_SQL`."""
    findings = reviewed = 0
    for row in rows:
        _image_id, source, _version, action, note = tuple(row)
        if source == "user" and action == "rejected" and str(note or "").startswith(WITHDRAWN_NOTE):
            continue
        findings += 1
        reviewed += action not in (None, "reset")
    return findings, reviewed


def _states(
    images: Sequence[ImageRecord], finding_rows: Sequence[sqlite3.Row], signoff_rows: Sequence[sqlite3.Row],
    opened_rows: Sequence[sqlite3.Row],
) -> list[ScanState]:
    opened = {row["image_id"]: str(json.loads(row["payload"] or "{}").get("path") or "") for row in opened_rows}
    by_image: dict[int, list[sqlite3.Row]] = {}
    for row in finding_rows:
        by_image.setdefault(row["image_id"], []).append(row)
    latest = {row["image_id"]: row for row in signoff_rows}
    states = []
    for image in images:
        rows = by_image.get(image.id, [])
        findings, reviewed = _counts(rows)
        signoff = latest.get(image.id)
        if signoff is not None and signoff["action"] == "signed_off":
            states.append(ScanState(image, "signed off", findings, reviewed, signoff["reviewer"], signoff["at"],
                                    opened.get(image.id, "")))
            continue
        edited = signoff is not None or any(int(row["version"]) > 0 for row in rows)
        states.append(ScanState(image, "in review" if edited else "pending", findings, reviewed,
                                opened_from=opened.get(image.id, "")))
    return states
