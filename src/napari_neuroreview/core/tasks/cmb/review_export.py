"""What a microbleed review puts on disk: instance labels, point records, a DICOM SEG, and the reviewer's name.

Why apart from :mod:`.review` (the session that writes each edit to the store): an export
leaves the machine, so its rules are privacy rules (the scan's file name and voxel
sha256, never its folder nor the OS login; :func:`export_reviewer`), and it is written
through the package's output contract (``check_outputs`` first, ``write_together``: all
files or none, the labels through the one NIfTI writer). :class:`~.review.ReviewSession`
keeps ``instances``, ``to_records`` and ``export`` as its entry points and calls these.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import GeometryError, NeuroreviewError, OutputPathError, StoreError
from ...io.bids import (
    bids_scan,
    check_same_scan,
    derivative_root,
    description_write,
    json_write,
    sidecar,
    sidecar_path,
)
from ...io.dicom import is_dicom_path, split_selector
from ...io.export import save_points
from ...io.nifti import label_dtype, volume_writer
from ...io.outputs import Output, check_outputs, write_together
from ...store import Finding

if TYPE_CHECKING:  # the session calls this module
    from ...store import CaseStore
    from .review import ReviewSession

__all__ = [
    "BIDS_DESC", "EXPORT_STATUSES", "POINT_COLUMNS", "STATUSES", "UNNAMED_REVIEWER", "default_reviewer",
    "draw_instances", "export_bids", "export_review",
    "export_reviewer", "finding_records", "stored_reviewer",
]

#: The store's task name of a microbleed finding (and what exports record).
TASK = "cmb"
#: What a finding can show: the store's latest action ('reset' reads as 'pending').
STATUSES = ("pending", "accepted", "rejected", "added", "moved")
#: What the exported labels hold unless asked otherwise: the decided microbleeds only.
EXPORT_STATUSES = ("accepted", "added", "moved")
#: The BIDS ``desc`` entity of the review's files (``sub-01_desc-cmb_dseg.nii.gz``).
BIDS_DESC = "cmb"
#: The points TSV's columns as its BIDS sidecar describes them (``core.io.export`` writes them).
POINT_COLUMNS: dict[str, dict[str, str]] = {
    "x_ras_mm": {"Description": "world position, right (+) / left (-)", "Units": "mm"},
    "y_ras_mm": {"Description": "world position, anterior (+) / posterior (-)", "Units": "mm"},
    "z_ras_mm": {"Description": "world position, superior (+) / inferior (-)", "Units": "mm"},
    "i": {"Description": "voxel index along the source file's first axis"},
    "j": {"Description": "voxel index along the source file's second axis"},
    "k": {"Description": "voxel index along the source file's third axis"},
    "id": {"Description": "finding id: the value of its voxels in the dseg labels"},
    "score": {"Description": "the model's score in [0, 1] (n/a for a finding added by the reviewer)"},
    "status": {"Description": "the review's decision", "Levels": {s: s for s in ("pending", "accepted", "rejected",
                                                                                  "added", "moved")}},
    "source": {"Description": "who found it: the model or the reviewer ('user')"},
    "model": {"Description": "the model that found it"},
    "model_version": {"Description": "that model's version"},
    "volume_mm3": {"Description": "the finding's volume", "Units": "mm^3"},
}
#: The reviewer written into exports when the session's reviewer is the OS login name.
UNNAMED_REVIEWER = "unnamed reviewer"


def draw_instances(findings: Sequence[Finding], shape: tuple[int, int, int], include_rejected: bool = False,
                   statuses: Iterable[str] | None = None) -> np.ndarray:
    """Instance labels on the scan's file grid; value = finding id.

    A model detection keeps its mask (shifted with the finding when it was moved); a
    user-added microbleed, whose extent nobody drew, is its one voxel. Rejected
    findings are left out unless ``include_rejected``; ``statuses``, when given,
    names exactly which statuses are drawn (what an export holds). Higher scores win
    overlaps.
    """
    if statuses is not None:
        wanted = set(_valid_statuses(statuses))
        findings = [f for f in findings if f.status in wanted]
    else:
        findings = [f for f in findings if include_rejected or f.status != "rejected"]
    top = max((f.id for f in findings), default=0)
    out = np.zeros(shape, dtype=np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32)
    bounds = np.asarray(shape)
    for f in findings:
        ijk = np.asarray(f.extra.get("mask_ijk") or [], dtype=int).reshape(-1, 3)
        detected = f.extra.get("detected_voxel")
        if len(ijk) and detected is not None:
            ijk = ijk + np.rint(np.asarray(f.voxel) - np.asarray(detected)).astype(int)
        if not len(ijk):
            ijk = np.rint(np.asarray(f.voxel, float)).astype(int).reshape(1, 3)
        ijk = ijk[np.all((ijk >= 0) & (ijk < bounds), axis=1)]
        free = out[tuple(ijk.T)] == 0
        out[tuple(ijk[free].T)] = f.id
    return out


def finding_records(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """One record per visible finding, for JSON/TSV export (world RAS+ mm first)."""
    return [
        {
            "world_ras_mm": [round(float(v), 4) for v in f.world],
            "voxel_ijk": [round(float(v), 4) for v in f.voxel],
            "id": f.id,
            "score": f.score,
            "status": f.status,
            "source": f.source,
            "model": f.model[0] if f.model else None,
            "model_version": f.model[1] if f.model else None,
            "volume_mm3": f.extra.get("volume_mm3"),
        }
        for f in findings
    ]


def export_review(
    session: ReviewSession, labels_path: str | Path | None = None, json_path: str | Path | None = None,
    tsv_path: str | Path | None = None, instances: np.ndarray | None = None,
    statuses: Iterable[str] = EXPORT_STATUSES, include_paths: bool = False, seg_path: str | Path | None = None,
    seg_source: str | Path | None = None,
) -> list[Path]:
    """Write the review: instance labels NIfTI on the source grid, points JSON and/or TSV, a DICOM SEG.

    Parameters
    ----------
    session : ReviewSession
        The review written (its scan, store, findings and reviewer).
    labels_path, json_path, tsv_path : str or Path, optional
        Where to write each file (``.nii``/``.nii.gz``, ``.json``, ``.tsv``). All are
        checked before anything is computed (an export path that is the scan or the
        store is refused) and written together: all of them land, or none changes.
    instances : numpy.ndarray, optional
        File-grid labels that replace :func:`draw_instances` in the labels file.
    statuses : iterable of str
        Which findings the labels hold (default accepted, added, moved: decided
        microbleeds, not pending or rejected ones); the JSON records the choice. The
        points files list every visible finding with its status.
    include_paths : bool
        Also write the scan's full path into the JSON. Off by default: a folder name
        often holds the patient's name; the file name and voxel sha256 identify it.
    seg_path : str or Path, optional
        A DICOM SEG (``.dcm``) of the same labels, one segment per microbleed, referencing
        the source series (:func:`core.io.dicom_seg.cmb_seg_dataset`); only for a scan opened
        from DICOM. It carries the source's patient module (PACS files it with the study);
        the JSON/TSV never do. For a DICOM scan no output may go into the series' folder.
        With no microbleed in the exported statuses there is no segment to write: the SEG is
        skipped (the other files are written) and the returned paths do not hold it.
    seg_source : str or Path, optional
        Where the reviewed series is now (the open layer's path; default the path stored
        when the scan was first registered): its voxels must still be the reviewed scan's.

    Raises
    ------
    OutputPathError
        A path that is an input, a folder, has the wrong suffix or cannot be written.
    """
    chosen = _valid_statuses(statuses)
    source = session.image.path if seg_source is None else seg_source
    _check_paths(session, source, [Output(labels_path, (".nii.gz", ".nii"), "labels"),
                                   Output(json_path, (".json",), "points JSON"), Output(tsv_path, (".tsv",), "points TSV"),
                                   Output(seg_path, (".dcm",), "DICOM SEG")])
    writes, _seg_written = _review_writes(session, chosen, labels_path, json_path, tsv_path, instances, seg_path, source,
                                          _provenance(session, chosen, include_paths))
    return write_together(writes)


def export_bids(
    session: ReviewSession, out: str | Path, statuses: Iterable[str] = EXPORT_STATUSES, seg: bool = False,
    seg_source: str | Path | None = None,
) -> list[Path]:
    """Write the review as BIDS derivatives: ``<out>/derivatives/neuroreview/sub-<label>/[ses-<label>/]anat/``.

    The same files as :func:`export_review`, by the same writers, named by :mod:`core.io.bids`
    (``<entities>_desc-cmb_dseg.nii.gz``, ``_points.tsv``, ``_seg.dcm``), each with its JSON
    sidecar (the models with version and threshold, the source's voxel sha256, ``Sources``);
    the points TSV's sidecar is the points JSON itself (records, columns and provenance), so
    the one file keeps its reader (``core.io.export.load_points``). ``dataset_description.json``
    is written with them, all together or none. The subject is the source's own BIDS label,
    else a pseudonym from the voxel sha256: nothing of a non-BIDS file name is written.

    Parameters
    ----------
    out : str or Path
        The raw dataset's root (or any folder): ``derivatives/neuroreview`` is made under it.
    seg : bool
        Also the DICOM SEG (a scan opened from DICOM only; skipped with its sidecar when no
        microbleed is exported). It is the one file that carries the patient's identity. An
        export without a SEG removes this scan's SEG of a previous export (in the same write).
    statuses, seg_source
        As in :func:`export_review`.
    """
    chosen = _valid_statuses(statuses)
    source = session.image.path if seg_source is None else seg_source
    scan = bids_scan(str(session.image.path), session.sha256)
    labels_path = scan.path(out, BIDS_DESC, "dseg", ".nii.gz")
    tsv_path = scan.path(out, BIDS_DESC, "points", ".tsv")
    json_path = sidecar_path(tsv_path)
    seg_path = scan.path(out, BIDS_DESC, "seg", ".dcm") if seg else None
    description = derivative_root(out) / "dataset_description.json"
    sidecars = [sidecar_path(labels_path)] + ([sidecar_path(seg_path)] if seg_path is not None else [])
    outputs = [Output(labels_path, (".nii.gz",), "labels"), Output(json_path, (".json",), "points JSON"),
               Output(tsv_path, (".tsv",), "points TSV"), Output(seg_path, (".dcm",), "DICOM SEG"),
               Output(description, (".json",), "dataset description"),
               *(Output(p, (".json",), "sidecar") for p in sidecars)]
    models = _models(session)
    common = {"Reviewer": export_reviewer(session.reviewer), "LabelStatuses": list(chosen)}
    provenance = {**_provenance(session, chosen, include_paths=False), "image": Path(scan.source).name or None,
                  **sidecar("Microbleed findings of the review, one row per finding: world RAS+ mm, the file's "
                            "voxel indices, score, status, who found it", scan, session.sha256, models,
                            **common, **POINT_COLUMNS)}
    made = _make_folders(Path(out), labels_path.parent)
    try:  # the folders exist now, so every file can be checked; a refusal (paths, SEG) leaves no empty folder
        _check_paths(session, source, outputs)
        for path in (sidecar_path(labels_path), json_path):  # one subject's two scans may share the names
            check_same_scan(path, session.sha256)
        writes = [description_write(out, "napari-neuroreview microbleed reviews")]
        files, seg_written = _review_writes(session, chosen, labels_path, json_path, tsv_path, None, seg_path,
                                            source, provenance)
    except NeuroreviewError:
        for folder in reversed(made):
            folder.rmdir()
        raise
    writes += files
    writes.append(json_write(sidecar_path(labels_path), sidecar(
        "Microbleed instance labels on the source scan's grid: value = finding id (0 = none)", scan,
        session.sha256, models, **common)))
    if seg_written:
        writes.append(json_write(sidecar_path(seg_path), sidecar(
            "DICOM SEG of the same microbleeds, one segment per finding, referencing the source series; it carries "
            "the patient module of that series (for PACS)", scan, session.sha256, models, **common)))
    else:  # a previous export's SEG would segment findings this review no longer exports: removed with the write
        stale = scan.path(out, BIDS_DESC, "seg", ".dcm")
        writes += [(p, None) for p in (stale, sidecar_path(stale)) if p.exists()]
    return write_together(writes)


def _make_folders(out: Path, folder: Path) -> list[Path]:
    """Make ``folder`` (under ``out``, which must exist); the folders made, outermost first."""
    if not out.is_dir():
        raise OutputPathError(f"the folder {out} does not exist (for the BIDS derivatives); create it first")
    made = [p for p in reversed([folder, *folder.parents]) if p.is_relative_to(out) and not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot make {folder.relative_to(out)} in {out.name}: {exc.strerror}") from exc
    return made


def _models(session: ReviewSession) -> list[dict[str, Any]]:
    """The model versions behind the findings: name, version, and their card's operating threshold.

    Why ``CardThreshold`` and not ``Threshold``: the store keeps no record of the threshold a
    detection ran at (the widget's box, ``cmb detect --threshold``); the card's is what is
    known, read by the one rule :func:`card_threshold` (None when the card is not stored).
    """
    from ...registry import ModelCard
    from .model import card_threshold

    keys = sorted({tuple(f.model) for f in session.findings if f.model})
    models = []
    for name, version in keys:
        card = next((r.card for r in session.store.model_versions(name) if r.version == version), {}) or {}
        threshold = card_threshold(ModelCard.from_dict(card, "stored model card")) if card else None
        models.append({"Name": name, "Version": version, "CardThreshold": threshold})
    return models


def _check_paths(session: ReviewSession, source: str | Path, outputs: list[Output]) -> None:
    """Every output checked before anything is computed: not an input, writable, never in a DICOM series' folder."""
    check_outputs(outputs, inputs=[session.image.path, source, session.store.path],
                  protected_folders=[_series_folder(source)] if is_dicom_path(source) else ())


def _review_writes(
    session: ReviewSession, chosen: tuple[str, ...], labels_path: str | Path | None, json_path: str | Path | None,
    tsv_path: str | Path | None, instances: np.ndarray | None, seg_path: str | Path | None, source: str | Path,
    provenance: dict[str, Any],
) -> tuple[list[tuple[Path, Any]], bool]:
    """``(path, writer)`` of each file asked for (one writer per format), and whether a SEG is among them."""
    writes: list[tuple[Path, Any]] = []
    if labels_path is not None or seg_path is not None:
        labels = draw_instances(session.findings, session.shape, statuses=chosen) if instances is None else np.asarray(instances)
        if tuple(labels.shape) != session.shape:
            raise GeometryError(f"The instance labels {tuple(labels.shape)} are not on the scan's grid {session.shape}")
    if labels_path is not None:
        writes.append((Path(labels_path), volume_writer(
            labels, session.affine, dtype=label_dtype(int(labels.max()) if labels.size else 0, smallest=np.uint16),
            descrip="napari-neuroreview CMB instances")))
    records = finding_records(session.findings)
    for path in (json_path, tsv_path):
        if path is not None:
            writes.append((Path(path), lambda tmp: save_points(tmp, records, provenance)))
    if seg_path is not None and labels.any():  # no microbleed, no segment: the SEG is skipped
        from ...io.dicom_seg import (  # highdicom only when a SEG is asked for
            cmb_seg_dataset,
            save_seg,
        )

        reviewer = export_reviewer(session.reviewer)
        seg = cmb_seg_dataset(labels, source, session.affine, sha256=session.sha256,
                              manual={f.id for f in session.findings if f.source == "user"},
                              reviewer=None if reviewer == UNNAMED_REVIEWER else reviewer)
        writes.append((Path(seg_path), lambda tmp: save_seg(seg, tmp)))
        return writes, True
    return writes, False


def _series_folder(source: str | Path) -> Path:
    """The folder a DICOM scan was read from (a series file's folder): exports never go there."""
    where, _selector = split_selector(source)
    return where if where.is_dir() else where.parent


def _provenance(session: ReviewSession, statuses: tuple[str, ...], include_paths: bool) -> dict[str, Any]:
    """What an export says about its scan and review: no folder, no OS login by default."""
    doc: dict[str, Any] = {"image": Path(session.image.path).name, "image_sha256": session.sha256, "task": TASK,
                           "reviewer": export_reviewer(session.reviewer), "label_statuses": list(statuses)}
    if include_paths:
        doc["image_path"] = str(session.image.path)
    return doc


def _valid_statuses(statuses: Iterable[str]) -> tuple[str, ...]:
    """The statuses an export may hold, each one known (a typo would silently export nothing)."""
    chosen = tuple(dict.fromkeys(str(s) for s in ([statuses] if isinstance(statuses, str) else statuses)))
    unknown = [s for s in chosen if s not in STATUSES]
    if unknown or not chosen:
        raise StoreError(f"The review cannot export status {', '.join(map(repr, unknown)) or '(none)'}; "
                         f"choose among {', '.join(STATUSES)}")
    return chosen


def default_reviewer() -> str:
    """The OS user name: who is reviewing, unless the reviewer types a name.

    It stays in the local store's reviews and audit log (who did what, on this machine);
    :func:`export_reviewer` keeps it out of files that leave the machine.
    """
    try:
        return getpass.getuser()
    except Exception:  # no user database (some containers)
        return "unknown"


def stored_reviewer(store: CaseStore, sha256: str) -> str | None:
    """Who the store says reviewed the scan, as an export may name them; None when nobody named.

    The sign-off's reviewer while the scan is signed off (who vouches for it), else the
    named reviewers of its findings' decisions, in order of first decision. Why: an export
    made later (``cmb export``) should credit the review, not an ``'unnamed reviewer'``.
    """
    signed = store.scan_state(sha256, task=TASK).signed_by
    if signed and export_reviewer(signed) != UNNAMED_REVIEWER:
        return export_reviewer(signed)
    names = [export_reviewer(r.reviewer) for f in store.findings_for(sha256, task=TASK) for r in store.reviews_for(f.id)]
    named = list(dict.fromkeys(n for n in names if n != UNNAMED_REVIEWER))
    return ", ".join(named) or None


def export_reviewer(reviewer: str) -> str:
    """The reviewer as written into an export: a typed name as is, the OS login never.

    Why: the login is filled in by default, not chosen as a name to publish, and often
    identifies a person on a site's network; an export carries a generic
    ``'unnamed reviewer'`` instead (type a name or a pseudonym to have it exported).
    """
    name = (reviewer or "").strip()
    if not name or name in (default_reviewer(), "unknown"):
        return UNNAMED_REVIEWER
    return name
