"""The :class:`CaseStore` façade: the one object callers hold, over the store's repositories.

Why a façade: callers (widgets, CLI, retraining, export) want one handle with one
lifetime, while the store's parts are cohesive classes with explicit collaborators: a
:class:`~.database.Database` (connection, lock, transactions, WAL checkpoint) that
:class:`~.images.Images`, :class:`~.model_versions.ModelVersions`,
:class:`~.findings.Findings`, :class:`~.reviews.Reviews` and :class:`~.audit.AuditLog`
each receive. The methods here only delegate; the rules live in those classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import platformdirs

from napari_neuroreview.core.store.audit import AuditLog, AuditReport
from napari_neuroreview.core.store.database import Database
from napari_neuroreview.core.store.findings import Findings
from napari_neuroreview.core.store.images import Images
from napari_neuroreview.core.store.model_versions import ModelVersions
from napari_neuroreview.core.store.records import (
    Finding,
    ImageRecord,
    ModelVersionRecord,
    Review,
    ScanState,
)
from napari_neuroreview.core.store.reviews import Reviews
from napari_neuroreview.core.store.schema import SCHEMA_VERSION
from napari_neuroreview.core.store.signoffs import SignOffs

__all__ = ["APP_NAME", "CaseStore", "default_store_path"]

APP_NAME = "napari-neuroreview"


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


class CaseStore:
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
    the database's lock. Use it as a context manager, or call :meth:`close`, which also
    moves every committed write from the ``-wal`` file into the main file.
    """

    def __init__(self, path: str | Path | None = None, *, create: bool = True) -> None:
        path = Path(path) if path is not None else default_store_path(create_folder=create)
        self._db = Database(path, create=create)
        self._images = Images(self._db)
        self._models = ModelVersions(self._db)
        self._signoffs = SignOffs(self._db, self._images)
        self._reviews = Reviews(self._db, self._signoffs)
        self._findings = Findings(self._db, self._images, self._models, self._reviews, self._signoffs)
        self._audit = AuditLog(self._db)

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
        return self._db.path

    def close(self) -> None:
        """Checkpoint the write-ahead log into the main file and close; safe to call twice."""
        self._db.close()

    def __enter__(self) -> CaseStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._db.is_open else "closed"
        return f"CaseStore({str(self.path)!r}, {state})"

    # ----------------------------------------------------------------- images

    def register_image(
        self, path: str | Path, sha256: str, shape: Sequence[int], affine: Any, *, actor: str | None = None
    ) -> ImageRecord:
        """Register a scan by its voxel-data sha256, or return it if known (see :meth:`.Images.register`)."""
        return self._images.register(path, sha256, shape, affine, actor=actor)

    def image_by_sha(self, sha256: str) -> ImageRecord | None:
        """The image with this voxel-data sha256, or ``None`` if it was never registered."""
        return self._images.by_sha(sha256)

    def images(self) -> list[ImageRecord]:
        """Every registered scan, oldest first (e.g. to gather reviewed scans for training)."""
        return self._images.all()

    def images_at_path(self, path: str | Path) -> list[ImageRecord]:
        """Every scan ever registered from ``path``, oldest first (more than one: the file was replaced)."""
        return self._images.at_path(path)

    def check_image(self, image: int | ImageRecord, sha256: str) -> ImageRecord:
        """Refuse to pair a stored image's annotations with a different loaded scan (see :meth:`.Images.check`)."""
        return self._images.check(image, sha256)

    # ----------------------------------------------------------------- model versions

    def register_model_version(
        self, name: str, version: str, task: str, card: Mapping[str, Any], *, actor: str | None = None
    ) -> ModelVersionRecord:
        """Record a model version; the same label with another card is refused (see :meth:`.ModelVersions.register`)."""
        return self._models.register(name, version, task, card, actor=actor)

    def model_versions(self, name: str | None = None) -> list[ModelVersionRecord]:
        """Registered model versions (of ``name`` if given), in registration order."""
        return self._models.all(name)

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
        """Store one finding on the scan whose voxel data has ``image_sha256`` (see :meth:`.Findings.add_finding`)."""
        return self._findings.add_finding(
            image_sha256, task, world_ras_mm, voxel_ijk, score=score, model=model, source=source,
            extra=extra, actor=actor,
        )

    def add_findings(
        self, image_sha256: str, findings: Iterable[Mapping[str, Any]], actor: str = "model"
    ) -> list[Finding]:
        """Store many findings on one scan in a single transaction: all or none."""
        return self._findings.add_findings(image_sha256, findings, actor=actor)

    def add_user_finding(
        self, image_sha256: str, task: str, world_ras_mm: Sequence[float], reviewer: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Finding:
        """A finding the reviewer added by hand, with its ``'added'`` review, in ONE transaction."""
        return self._findings.add_user_finding(image_sha256, task, world_ras_mm, reviewer, extra=extra)

    def findings_for(self, image_sha256: str, task: str | None = None) -> list[Finding]:
        """Findings on the scan with this voxel-data hash (of ``task`` if given)."""
        return self._findings.findings_for(image_sha256, task)

    # ----------------------------------------------------------------- reviews

    def review(
        self,
        finding_id: int,
        action: str,
        reviewer: str,
        to_world: Sequence[float] | None = None,
        to_voxel: Sequence[float] | None = None,
        note: str | None = None,
        expected_version: int | None = None,
    ) -> Review:
        """Record one reviewer decision about one finding (see :meth:`.Reviews.review`)."""
        return self._reviews.review(
            finding_id, action, reviewer, to_world=to_world, to_voxel=to_voxel, note=note,
            expected_version=expected_version,
        )

    def review_many(self, reviews: Iterable[Mapping[str, Any]]) -> list[Review]:
        """Record many decisions in one transaction: all or none ("accept all")."""
        return self._reviews.review_many(reviews)

    def reviews_for(self, finding_id: int) -> list[Review]:
        """Every decision about one finding, oldest first (the last one is its status)."""
        return self._reviews.for_finding(finding_id)

    # ----------------------------------------------------------------- sign-off

    def sign_off(self, image_sha256: str, reviewer: str, note: str | None = None) -> ScanState:
        """Declare a scan's review complete; its findings are frozen until re-opened (see :meth:`.SignOffs.sign_off`)."""
        return self._signoffs.sign_off(image_sha256, reviewer, note)

    def reopen(self, image_sha256: str, reviewer: str, note: str | None = None) -> ScanState:
        """Re-open a signed-off scan so its findings can be edited again (audited)."""
        return self._signoffs.reopen(image_sha256, reviewer, note)

    def scan_states(self, task: str | None = None) -> list[ScanState]:
        """Every scan's review state (pending, in review, signed off) and counts, oldest first."""
        return self._signoffs.states(task)

    def scan_state(self, image_sha256: str, task: str | None = None) -> ScanState:
        """One scan's review state and counts (of ``task``'s findings if given)."""
        return self._signoffs.state(image_sha256, task)

    # ----------------------------------------------------------------- audit

    def audit_log(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The audit log, oldest first; with ``limit``, only the latest ``limit`` entries."""
        return self._audit.entries(limit)

    def verify(self) -> AuditReport:
        """Check the audit log's hash chain, then each review and sign-off against its audit row (read only)."""
        return self._audit.verify()

    def summary(self) -> dict[str, Any]:
        """Counts of what the store holds, for the Case widget and ``neuroreview store``."""
        counts = {
            table: int(self._db.read(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])
            for table in ("images", "findings", "reviews", "model_versions", "audit")
        }
        return {"path": str(self.path), "schema_version": SCHEMA_VERSION, **counts}
