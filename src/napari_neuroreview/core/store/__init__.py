"""The annotation store: images, findings, reviews, model versions and an audit log.

Why SQLite (stdlib ``sqlite3``) in WAL mode: a radiologist's corrections are the most
expensive data the plugin handles, so a crash, a power cut or a killed napari must never
lose a committed review nor leave half of a batch behind. WAL with ``synchronous=FULL``
gives exactly that, with no server and no extra dependency, and lets the CLI read the
store while napari writes to it.

Three rules shape this module:

* **Every write is one explicit transaction** (``BEGIN IMMEDIATE`` ... ``COMMIT``) that
  writes its rows *and* their audit rows, so the audit log can never disagree with the
  data. The audit table refuses ``UPDATE`` and ``DELETE`` by trigger, and each audit row
  is hash-chained to the one before, so an edit made around the triggers is evident.
* **Annotations are tied to voxel data, not to file names.** An image is identified by
  the sha256 of its voxel data; a re-acquired scan saved under the same name is a new
  image, and :meth:`CaseStore.check_image` refuses to show one scan's annotations on
  another.
* **Coordinates that leave memory are world RAS+ millimetres**, stored with the file-order
  voxel indices beside them (never voxel indices alone), and the two are checked against
  the image affine so that a display-order or flipped index cannot slip in.

The package is split by responsibility; import everything from here, not from the
submodules, which may move:

* :mod:`.schema` -- the SQL schema, :data:`SCHEMA_VERSION`, :data:`MIGRATIONS` and the
  migration runner.
* :mod:`.records` -- the frozen row records (:class:`ImageRecord`, :class:`Finding`,
  :class:`Review`, :class:`ModelVersionRecord`) and the JSON/validation helpers.
* :mod:`.casestore` -- :class:`CaseStore`, the façade callers hold (it only delegates), and
  :func:`default_store_path`.
* :mod:`.database` -- :class:`~.database.Database`: the connection, its lock, the one write
  transaction, reads, and the WAL checkpoint on close; every repository below receives it.
* :mod:`.images`, :mod:`.model_versions`, :mod:`.findings`, :mod:`.reviews` -- one
  repository class per table (findings receive images, model versions and reviews).
* :mod:`.signoffs` -- a scan's sign-off and re-opening (its findings frozen meanwhile),
  each scan's state (:class:`ScanState`: pending, in review, signed off) and
  :func:`next_to_review`, the worklist's next scan.
* :mod:`.audit` -- the audit log: the chained append every write makes, and
  :class:`~.audit.AuditLog` (read, :meth:`CaseStore.verify`, :class:`AuditReport`).
"""

from __future__ import annotations

from napari_neuroreview.core.store.audit import AuditReport
from napari_neuroreview.core.store.casestore import CaseStore, default_store_path
from napari_neuroreview.core.store.records import (
    FINDING_SOURCES,
    REVIEW_ACTIONS,
    SCAN_STATES,
    Finding,
    ImageRecord,
    ModelVersionRecord,
    Review,
    ReviewConflictError,
    ScanState,
    SignedOffError,
)
from napari_neuroreview.core.store.schema import MIGRATIONS, SCHEMA_VERSION
from napari_neuroreview.core.store.signoffs import next_to_review

__all__ = [
    "FINDING_SOURCES",
    "MIGRATIONS",
    "REVIEW_ACTIONS",
    "SCAN_STATES",
    "SCHEMA_VERSION",
    "AuditReport",
    "CaseStore",
    "Finding",
    "ImageRecord",
    "ModelVersionRecord",
    "Review",
    "ReviewConflictError",
    "ScanState",
    "SignedOffError",
    "default_store_path",
    "next_to_review",
]
