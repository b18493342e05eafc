"""A radiologist's review of the microbleeds on one scan, written to the store edit by edit.

:class:`ReviewSession` is the one object the review widget (and any script) edits
through. It holds the findings of one scan (task ``'cmb'``) and writes every edit to the
:class:`~napari_neuroreview.core.store.CaseStore` at once, one transaction per edit with
its audit rows, so a crash or a killed napari loses nothing that was clicked. Why pure
Python: the review rules (what delete means, what undo writes) are then tested without a
display, and the widget only turns clicks into calls.

Rules
-----
* The store is append-only, so **undo writes a compensating review**: a decision is
  undone by writing the previous status again (``'reset'`` for back to pending), a move
  by moving back. Undo/redo cover this session's edits.
* **Delete** never removes a row: a model detection becomes ``'rejected'`` (a hard
  negative for retraining), a user-added point becomes ``'rejected'`` with the note
  ``'deleted'`` and is then hidden.
* **Reopening** the same scan (same voxel-data sha256) restores every finding with its
  latest status and position; a detection file made on another scan is refused
  (:class:`ImageMismatchError`) before anything is written.
* **Two sessions on one scan** (two widgets, two processes) never overwrite each other:
  every write names the finding's row version this session last saw, and a finding
  changed elsewhere since is refused (:class:`ReviewConflictError`, nothing written);
  :meth:`ReviewSession.reload` then reads the store again.
* **Exports** hold the scan's file name and voxel sha256, never its folder (a patient's
  name is often in it) nor the OS login; the labels file holds only the statuses asked
  for (accepted, added and moved by default) and the JSON says which.
* Positions are world RAS+ mm; the store derives the file-order voxel from the affine.
  Each model detection keeps its mask (``extra['mask_ijk']``, file-order voxels) so that
  retraining can learn the mask of an accepted microbleed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from ...errors import GeometryError, ImageMismatchError, InputFileError, StoreError
from ...io.nifti import load_volume
from ...io.resample import same_grid
from ...store import CaseStore, Finding, ImageRecord, ReviewConflictError
from ...store.signoffs import WITHDRAWN_NOTE
from .detect import CMBResult
from .io import read_detections
from .review_export import EXPORT_STATUSES, TASK, default_reviewer, draw_instances, export_review, finding_records

#: Note of the review that deletes a finding (a deleted user-added point is hidden); the store's
#: sign-off counts leave such a point out by the same note.
DELETED_NOTE = WITHDRAWN_NOTE


@dataclass(frozen=True)
class Edit:
    """One undoable edit: what it changed, so that undo and redo can write it again.

    ``kind`` is ``'status'`` (accept/reject), ``'delete'``, ``'move'`` or ``'add'``.
    ``version`` is the finding's row version right after this session last wrote it
    (by the edit, its undo or its redo): undo and redo require the store to still be
    there, so that they never overwrite a decision made in another session.
    """

    kind: str
    fid: int
    before_status: str
    after_status: str
    before_world: tuple[float, float, float] | None = None
    after_world: tuple[float, float, float] | None = None
    version: int = 0


class ReviewSession:
    """The microbleed review of one scan (see the module docstring).

    Parameters
    ----------
    store : CaseStore
        An open store; the session never closes it.
    image : ImageRecord
        The registered scan (use :meth:`open` or :meth:`reopen`, which check it).
    reviewer : str, optional
        Who reviews (audit actor); the OS user by default. May be changed at any time.
    """

    def __init__(self, store: CaseStore, image: ImageRecord, reviewer: str | None = None) -> None:
        if len(image.shape) != 3:
            raise InputFileError(
                f"{image.path}: is not a 3D scan (shape {image.shape}); microbleeds are reviewed on one SWI volume"
            )
        self.store = store
        self.image = image
        self.reviewer = reviewer or default_reviewer()
        self._findings: dict[int, Finding] = {}
        self._hidden: set[int] = set()
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []
        # Per finding, the row versions this session's own writes produced: an undo may
        # only write over versions that are all its own (see _history_version).
        self._own: dict[int, set[int]] = {}
        self._reload()

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(
        cls, store: CaseStore, image_path: str | Path, sha256: str, shape: Sequence[int], affine: Any,
        reviewer: str | None = None,
    ) -> ReviewSession:
        """Register the scan (or find it by its sha256) and restore its review, if any."""
        if len(tuple(shape)) != 3:
            raise InputFileError(
                f"{Path(str(image_path)).name}: is a {len(tuple(shape))}D image; microbleeds are "
                "reviewed on one 3D SWI volume"
            )
        image = store.register_image(image_path, sha256, shape, affine, actor=reviewer or default_reviewer())
        return cls(store, image, reviewer)

    @classmethod
    def reopen(cls, store: CaseStore, image: int | ImageRecord, sha256: str, reviewer: str | None = None) -> ReviewSession:
        """Resume the review of a stored scan, refusing it for different loaded voxels.

        Raises
        ------
        ImageMismatchError
            If the loaded scan (``sha256``) is not the stored one (e.g. a re-acquired scan
            saved under the same file name).
        """
        return cls(store, store.check_image(image, sha256), reviewer)

    @staticmethod
    def has_review(store: CaseStore, sha256: str) -> bool:
        """True when the store holds microbleed findings for this voxel data (read only)."""
        return store.image_by_sha(sha256) is not None and bool(store.findings_for(sha256, task=TASK))

    @staticmethod
    def other_scans_at_path(store: CaseStore, image_path: str | Path, sha256: str) -> list[ImageRecord]:
        """Stored scans with microbleed findings saved under this path but with other voxels."""
        return [
            record for record in store.images_at_path(str(image_path))
            if record.sha256 != str(sha256).lower() and store.findings_for(record.sha256, task=TASK)
        ]

    # ----------------------------------------------------------------- reading
    @property
    def sha256(self) -> str:
        """The scan's voxel-data hash (its identity)."""
        return self.image.sha256

    @property
    def shape(self) -> tuple[int, int, int]:
        """The scan's grid in file order."""
        return tuple(self.image.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """File voxel -> world RAS+ mm."""
        return self.image.affine_matrix

    @property
    def findings(self) -> list[Finding]:
        """Visible findings: model detections by score (highest first), then user-added ones."""
        visible = [f for f in self._findings.values() if f.id not in self._hidden]
        return sorted(visible, key=lambda f: (f.source == "user", -(f.score or 0.0), f.id))

    def finding(self, fid: int) -> Finding:
        """One visible finding of this scan (StoreError if unknown, hidden or another scan's)."""
        finding = self._findings.get(int(fid))
        if finding is None or finding.id in self._hidden:
            raise StoreError(f"Finding {fid} is not a microbleed on the scan {Path(self.image.path).name}.")
        return finding

    @property
    def can_undo(self) -> bool:
        """True when this session has an edit to undo."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """True when an undone edit can be redone."""
        return bool(self._redo)

    def reload(self) -> None:
        """Read the review again from the store and forget this session's undo history.

        What to do after :class:`ReviewConflictError`: another session changed findings,
        so this session's view is stale and its undo steps would overwrite that work.
        """
        self._reload()
        self._undo.clear()
        self._redo.clear()
        self._own.clear()

    def _reload(self) -> None:
        """Read the findings back from the store: the store, not memory, is the truth."""
        found = self.store.findings_for(self.sha256, task=TASK)
        self._findings = {f.id: f for f in found}
        self._hidden = set()
        for f in found:
            if f.source == "user" and f.status == "rejected":
                last = self.store.reviews_for(f.id)[-1]
                if (last.note or "").startswith(DELETED_NOTE):
                    self._hidden.add(f.id)

    # ----------------------------------------------------------------- model detections
    def add_detections(
        self, result: CMBResult, card: Mapping[str, Any] | None = None, phase_path: str | Path | None = None,
        instances: np.ndarray | None = None,
    ) -> list[Finding]:
        """Store a detector run's findings (all in one transaction); returns the new ones.

        Parameters
        ----------
        result : CMBResult
            Must come from this scan's voxel data (checked by sha256).
        card : mapping, optional
            The model card, registered in the store with the version when first seen.
        phase_path : str or Path, optional
            Kept with every finding so that retraining can reload the phase.
        instances : numpy.ndarray, optional
            Instance labels on the *file* grid when ``result.instances`` is not (an oblique
            scan detected on its resampled display grid).

        Returns
        -------
        list of Finding
            Empty when this scan already has findings of the same model version: a rerun
            never duplicates them, and the stored review stays as it is.
        """
        if result.image_sha256 != self.sha256:
            raise ImageMismatchError(
                f"These detections were made on another scan (voxel data {result.image_sha256[:12]}), "
                f"not on {Path(self.image.path).name} ({self.sha256[:12]})"
            )
        rows = [(d.id, d.world_ras_mm, d.score, d.volume_mm3) for d in result.detections]
        labels = result.instances if instances is None else instances
        return self._add_model_findings(dict(result.model), rows, labels, card, phase_path)

    def import_detections(
        self, det_json: str | Path, labels: str | Path | None = None, card: Mapping[str, Any] | None = None,
        phase_path: str | Path | None = None,
    ) -> list[Finding]:
        """Store the findings of a det.json (``neuroreview cmb detect``), refused for another scan.

        The instance-labels NIfTI beside it, if given, must be on this scan's grid.
        """
        doc = read_detections(det_json, expected_sha256=self.sha256)
        instances = None
        if labels is not None:
            volume = load_volume(labels)
            if not same_grid(volume.spatial_shape, volume.affine, self.shape, self.affine):
                raise GeometryError(
                    f"{Path(labels).name}: the instance labels are on another grid ({volume.spatial_shape}) "
                    f"than the scan {Path(self.image.path).name} ({self.shape})"
                )
            instances = np.asarray(volume.data)
        rows = [(int(d["id"]), d["world_ras_mm"], float(d["score"]), float(d.get("volume_mm3", 0.0)))
                for d in doc["detections"]]
        model = doc.get("model") or {"name": "unknown", "version": "0"}
        return self._add_model_findings(model, rows, instances, card, phase_path)

    def _add_model_findings(
        self, model: Mapping[str, str], rows: list[tuple[int, Any, float, float]], instances: np.ndarray | None,
        card: Mapping[str, Any] | None, phase_path: str | Path | None,
    ) -> list[Finding]:
        key = (str(model["name"]), str(model["version"]))
        if any(f.source == "model" and f.model == key for f in self._findings.values()):
            return []
        if instances is not None and tuple(instances.shape) != self.shape:
            raise GeometryError(
                f"The instance labels {tuple(instances.shape)} are not on the grid of "
                f"{Path(self.image.path).name} {self.shape}"
            )
        masks = _masks_by_label(instances) if instances is not None else {}
        items = []
        for det_id, world, score, volume in rows:
            voxel = self._voxel_inside(world)
            items.append({
                "task": TASK, "world_ras_mm": world, "voxel_ijk": None, "score": score, "model": key,
                "source": "model",
                "extra": {
                    "detection_id": int(det_id), "volume_mm3": float(volume),
                    "mask_ijk": masks.get(int(det_id), []), "detected_voxel": [round(float(v), 4) for v in voxel],
                    "phase_path": str(phase_path) if phase_path else None,
                },
            })
        self._ensure_model(key, card)
        added = self.store.add_findings(self.sha256, items, actor=self.reviewer) if items else []
        self._reload()
        return added

    def _ensure_model(self, key: tuple[str, str], card: Mapping[str, Any] | None) -> None:
        """Register the model version once; an already stored card is never challenged."""
        if any(record.version == key[1] for record in self.store.model_versions(key[0])):
            return
        card = dict(card or {"name": key[0], "version": key[1], "task": "cmb-detection"})
        self.store.register_model_version(key[0], key[1], str(card.get("task", "cmb-detection")), card,
                                          actor=self.reviewer)

    # ----------------------------------------------------------------- edits
    def accept(self, fid: int) -> Finding:
        """Mark a finding as a true microbleed."""
        return self._decide(fid, "accepted", "status")

    def reject(self, fid: int) -> Finding:
        """Mark a finding as not a microbleed (a mimic: vein, calcification, artefact)."""
        return self._decide(fid, "rejected", "status")

    def delete(self, fid: int) -> Finding:
        """Delete: 'rejected' with the note 'deleted' (a user-added point is then hidden)."""
        return self._decide(fid, "rejected", "delete")

    def _decide(self, fid: int, status: str, kind: str) -> Finding:
        finding = self.finding(fid)
        if finding.status == status and kind == "status":
            return finding  # nothing changes: no review row, no undo step
        note = DELETED_NOTE if kind == "delete" else None
        version = self._write(finding.version, [self._status_review(finding, status, note)])
        self._push(Edit(kind, finding.id, finding.status, status, version=version))
        return self._findings[finding.id]

    def add(self, world_ras_mm: Sequence[float]) -> int:
        """Add a microbleed the model missed; returns its finding id.

        The finding (``source='user'``) and its ``'added'`` review are written in one
        transaction, so a crash never leaves an unreviewed user point behind.
        """
        world = _triple(world_ras_mm)
        self._voxel_inside(world)
        added = self.store.add_user_finding(self.sha256, TASK, world, self.reviewer)
        self._reload()
        self._own.setdefault(added.id, set()).update(range(1, added.version + 1))
        self._push(Edit("add", added.id, "absent", "added", None, world, version=added.version))
        return added.id

    def move(self, fid: int, world_ras_mm: Sequence[float]) -> Finding:
        """Move a finding to where the microbleed really is (the old place stays in the review)."""
        finding = self.finding(fid)
        world = _triple(world_ras_mm)
        self._voxel_inside(world)
        if np.allclose(world, finding.world, atol=1e-6):
            return finding
        version = self._write(finding.version, [self._move_review(fid, world)])
        self._push(Edit("move", fid, finding.status, "moved", tuple(finding.world), world, version=version))
        return self._findings[fid]

    def undo(self) -> int | None:
        """Undo this session's latest edit by writing its compensating review; its finding id.

        Raises
        ------
        ReviewConflictError
            The finding was changed in another session since this session's edit; nothing
            is written. :meth:`reload` shows that session's work (and clears this history).
        """
        if not self._undo:
            return None
        edit = self._undo[-1]
        self._redo.append(self._apply(edit, forward=False))
        self._undo.pop()
        return edit.fid

    def redo(self) -> int | None:
        """Write the latest undone edit again; its finding id (refused like :meth:`undo`)."""
        if not self._redo:
            return None
        edit = self._redo[-1]
        self._undo.append(self._apply(edit, forward=True))
        self._redo.pop()
        return edit.fid

    def _apply(self, edit: Edit, forward: bool) -> Edit:
        """Write an edit again (redo) or its compensation (undo); the edit with its new version."""
        finding = self._findings[edit.fid]
        tag = "redo" if forward else "undo"
        if edit.kind == "add":
            reviews = [self._status_review(finding, "added", tag) if forward
                       else self._status_review(finding, "rejected", f"{DELETED_NOTE} ({tag} of add)")]
        elif edit.kind == "move":
            target = edit.after_world if forward else edit.before_world
            reviews = [self._move_review(edit.fid, target, tag)]
            if not forward and edit.before_status != "moved":
                reviews.append(self._status_review(finding, edit.before_status, tag))
        else:
            status = edit.after_status if forward else edit.before_status
            note = f"{DELETED_NOTE} ({tag})" if edit.kind == "delete" and forward else tag
            reviews = [self._status_review(finding, status, note)]
        return replace(edit, version=self._write(self._history_version(edit), reviews))

    def _history_version(self, edit: Edit) -> int:
        """The version an undo/redo of ``edit`` must find: this session's latest write.

        Every version between the edit and that write must be this session's own; one
        written by another session (seen through a reload, since the store only checks
        the latest) means undoing would overwrite that reviewer's decision.
        """
        own = self._own.get(edit.fid, set())
        last = max(own, default=edit.version)
        foreign = next((v for v in range(edit.version + 1, last + 1) if v not in own), None)
        if foreign is not None:
            reviews = self.store.reviews_for(edit.fid)  # version v was written by the finding's v-th review
            who, when = ((reviews[foreign - 1].reviewer, reviews[foreign - 1].at) if len(reviews) >= foreign
                         else ("someone", "an unknown time"))
            raise ReviewConflictError(
                f"Finding {edit.fid} was changed by {who} at {when} in another session "
                f"(version {foreign}, after this session's edit); reload the review."
            )
        return last

    def _push(self, edit: Edit) -> None:
        self._undo.append(edit)
        self._redo.clear()

    def _write(self, seen_version: int, reviews: list[dict[str, Any]]) -> int:
        """One transaction (reviews + audit rows) on one finding, then read the truth back.

        Each review names the row version it expects (``seen_version``, then one more per
        review before it), so a finding changed in another session is refused whole.
        Returns the finding's version after the write, computed rather than re-read, so
        that a write from elsewhere right after it cannot slip into this session's history.
        """
        versioned = [{**review, "expected_version": seen_version + n} for n, review in enumerate(reviews)]
        self.store.review_many(versioned)
        self._reload()
        after = seen_version + len(reviews)
        self._own.setdefault(int(reviews[0]["finding_id"]), set()).update(range(seen_version + 1, after + 1))
        return after

    def _status_review(self, finding: Finding, status: str, note: str | None = None) -> dict[str, Any]:
        """The review that gives ``finding`` this status ('pending' is a 'reset')."""
        review: dict[str, Any] = {"finding_id": finding.id, "reviewer": self.reviewer, "note": note}
        if status == "pending":
            review["action"] = "reset"
        elif status == "moved":  # status back to 'moved': a move onto where it is now
            review.update(action="moved", to_world=finding.world)
        else:
            review["action"] = status
        return review

    def _move_review(self, fid: int, world: Sequence[float], note: str | None = None) -> dict[str, Any]:
        return {"finding_id": fid, "action": "moved", "reviewer": self.reviewer, "to_world": tuple(world),
                "note": note}

    def _voxel_inside(self, world: Sequence[float]) -> np.ndarray:
        """File voxel of a world point; a point outside the scan is refused."""
        voxel = nib.affines.apply_affine(np.linalg.inv(self.affine), np.asarray(world, float))
        if np.any(voxel < -0.5) or np.any(voxel > np.asarray(self.shape) - 0.5):
            x, y, z = (float(v) for v in world)
            raise GeometryError(
                f"RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm is outside the scan {Path(self.image.path).name}"
            )
        return voxel

    # ----------------------------------------------------------------- results
    def instances(self, include_rejected: bool = False, statuses: Iterable[str] | None = None) -> np.ndarray:
        """Instance labels on the scan's file grid; value = finding id (see :func:`.review_export.draw_instances`)."""
        return draw_instances(self.findings, self.shape, include_rejected, statuses)

    def to_records(self) -> list[dict[str, Any]]:
        """One record per visible finding, for JSON/TSV export (world RAS+ mm first)."""
        return finding_records(self.findings)

    def export(
        self, labels_path: str | Path | None = None, json_path: str | Path | None = None,
        tsv_path: str | Path | None = None, instances: np.ndarray | None = None,
        statuses: Iterable[str] = EXPORT_STATUSES, include_paths: bool = False, seg_path: str | Path | None = None,
        seg_source: str | Path | None = None,
    ) -> list[Path]:
        """Write the review: labels NIfTI on the source grid, points JSON and/or TSV, a DICOM SEG, all or none.

        See :func:`.review_export.export_review` for the parameters and what an export holds.
        """
        return export_review(self, labels_path, json_path, tsv_path, instances, statuses, include_paths, seg_path,
                             seg_source)


def _masks_by_label(instances: np.ndarray) -> dict[int, list[list[int]]]:
    """File-order voxels of every label, found box by box (fast on whole scans)."""
    labels = np.asarray(instances).astype(np.int64, copy=False)
    masks: dict[int, list[list[int]]] = {}
    for index, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        ijk = np.argwhere(labels[box] == index + 1) + [s.start for s in box]
        masks[index + 1] = ijk.astype(int).tolist()
    return masks


def _triple(value: Sequence[float]) -> tuple[float, float, float]:
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise GeometryError(f"A position must be three finite numbers (RAS mm), got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))
