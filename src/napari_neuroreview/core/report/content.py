"""What a case report says, gathered from the store, the scan and the optional results.

Why apart from the HTML: the facts (which microbleeds count, who reviewed them and when,
which model versions ran, the subtype and network results) are tested without parsing a
page, and the page only lays them out.

Privacy: a report leaves the machine. The scan is named by the store's pseudonymous label
(``ScanState.label``, from its voxel sha256) and a NIfTI/MGH file's base name; a DICOM source (a
series folder, or a file of one) is shown by no name at all (:data:`DICOM_SCAN_NAME`: PACS exports
often name them after the patient); the reviewer as exports write it (``export_reviewer``: a typed name,
never the OS login); a subtype or networks result file is named by its base name only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..anatomy.mars import MARS_CLASSES, REGION_CLASS, MarsRegion
from ..errors import ImageMismatchError, InputFileError, RegistryError
from ..io import strict_json
from ..io.nifti import SUPPORTED_SUFFIXES
from ..model_labels import is_demo
from ..registry import DEMO_NOTE, find_version
from ..store import CaseStore, ImageRecord
from ..store.records import stored_time
from ..tasks.cmb.locations import Location
from ..tasks.cmb.review import ReviewSession
from ..tasks.cmb.review_export import EXPORT_STATUSES, TASK, export_reviewer
from ..tasks.csvd.bags import equivalent_diameter_mm
from ..tasks.csvd.baselines import SUBTYPES, mars_counts

__all__ = ["ModelUse", "ReportContent", "ReportFinding", "ReviewerActivity", "check_subtype", "gather", "mars_table", "read_networks",
           "read_subtype", "report_scan_name"]

#: The one line every report carries, at the top.
NOT_FOR_CLINICAL_USE = ("Research software, not for clinical use: the findings, regions and probabilities "
                        "in this report are a model's and a reviewer's, not a diagnosis.")
#: The report's "File" for a DICOM source: its folder and file names may name the patient.
DICOM_SCAN_NAME = "DICOM series (folder name not shown)"


@dataclass(frozen=True)
class ReportFinding:
    """One microbleed finding as the report lists it (region fields None when the scan could not be located)."""

    id: int
    status: str
    source: str
    world_ras_mm: tuple[float, float, float]
    score: float | None
    volume_mm3: float | None
    region: str | None = None
    mars_class: str | None = None
    side: str | None = None

    @property
    def diameter_mm(self) -> float | None:
        """The diameter of the sphere of its volume (None when a user added it without a mask)."""
        return None if not self.volume_mm3 else float(equivalent_diameter_mm(self.volume_mm3))

    @property
    def counts(self) -> bool:
        """Accepted, added or moved: a microbleed the reviewer stands behind (what exports hold)."""
        return self.status in EXPORT_STATUSES


@dataclass(frozen=True)
class ReviewerActivity:
    """One reviewer's decisions on this scan: how many, first and last (UTC)."""

    reviewer: str
    decisions: int
    first: str
    last: str


@dataclass(frozen=True)
class ModelUse:
    """A model version whose output the report shows."""

    role: str
    name: str
    version: str
    demo: bool = False  # weights trained on simulated data (the store's card says so)


@dataclass
class ReportContent:
    """Everything one report shows (see the module docstring for what is left out)."""

    sha256: str
    label: str
    scan_name: str
    shape: tuple[int, ...]
    voxel_mm: tuple[float, float, float]
    findings: list[ReportFinding]
    reviewers: list[ReviewerActivity]
    models: list[ModelUse]
    state: str = "pending"
    signed_off: str | None = None
    subtype: dict[str, Any] | None = None
    networks: dict[str, Any] | None = None
    regions_note: str | None = None
    generated_at: str = field(default_factory=lambda: stored_time(datetime.now(UTC).isoformat()))

    @property
    def counted(self) -> list[ReportFinding]:
        """The microbleeds that count (accepted, added, moved), by id."""
        return [f for f in self.findings if f.counts]

    @property
    def rejected(self) -> list[ReportFinding]:
        """Findings the reviewer rejected (listed apart, without key images)."""
        return [f for f in self.findings if f.status == "rejected"]

    @property
    def pending(self) -> list[ReportFinding]:
        """Findings nobody decided yet (a report of an unfinished review says how many)."""
        return [f for f in self.findings if f.status == "pending"]


def gather(store: CaseStore, image: ImageRecord, subtype: dict[str, Any] | None = None,
           networks: dict[str, Any] | None = None, locations: Mapping[int, Location] | None = None,
           regions_note: str | None = None) -> ReportContent:
    """The report's content for a stored scan, with a subtype / networks result when given.

    ``locations`` (finding id -> side and MARS region, ``cmb.locations``) fill each finding's
    region; ``regions_note`` says why there are none (the scan could not be registered).
    ``subtype`` must be this scan's (:func:`check_subtype`).
    """
    session = ReviewSession(store, image)  # read only: the visible findings, deleted user points hidden
    findings = [_report_finding(f, (locations or {}).get(f.id)) for f in sorted(session.findings, key=lambda f: f.id)]
    cards = {(m.name, m.version): m.card for m in store.model_versions()}
    models = [ModelUse("microbleed detection", name, version, _is_demo(cards, name, version))
              for name, version in dict.fromkeys(f.model for f in session.findings if f.model)]
    for role, doc in (("small vessel disease subtype", subtype), ("pre/post networks", networks)):
        model = (doc or {}).get("model") or {}
        if model.get("name"):
            name, version = str(model["name"]), str(model.get("version", "?"))
            models.append(ModelUse(role, name, version, _is_demo(cards, name, version)))
    affine = image.affine_matrix
    state = store.scan_state(image.sha256, task=TASK)
    signed = (f"{export_reviewer(state.signed_by or '')}, {stored_time(state.signed_at)}"
              if state.state == "signed off" and state.signed_at else None)
    return ReportContent(
        sha256=image.sha256, label=state.label, state=state.state, signed_off=signed,
        scan_name=report_scan_name(image.path), shape=tuple(image.shape),
        voxel_mm=tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0)),  # type: ignore[arg-type]
        findings=findings, reviewers=_reviewers(store, image.sha256), models=models,
        subtype=subtype, networks=networks, regions_note=regions_note)


def report_scan_name(path: str) -> str:
    """The name a report may show for a stored scan's source: a NIfTI/MGH file's base name, else none.

    Why: a DICOM series folder (or its files) is often named after the patient by PACS exports.
    """
    name = Path(path).name
    return name if name.lower().endswith(SUPPORTED_SUFFIXES) else DICOM_SCAN_NAME


def _is_demo(cards: Mapping[tuple[str, str], Mapping[str, Any]], name: str, version: str) -> bool:
    """Whether a version's weights were trained on simulated data: its card in the store, else the installed one's."""
    card = cards.get((name, version))
    if card is not None and card.get("notes"):
        return DEMO_NOTE in str(card["notes"])
    try:
        _root, installed = find_version(name, version, None, name, "", shipped=False)
    except RegistryError:  # not installed here: the report cannot tell, and says nothing
        return False
    return is_demo(installed)


def _report_finding(finding: Any, location: Location | None) -> ReportFinding:
    volume = finding.extra.get("volume_mm3")
    return ReportFinding(
        id=finding.id, status=finding.status, source=finding.source, world_ras_mm=tuple(finding.world),
        score=finding.score, volume_mm3=None if volume is None else float(volume),
        region=location.region if location else None,
        mars_class=REGION_CLASS.get(location.region, "outside") if location else None,
        side=location.side if location else None)


def _reviewers(store: CaseStore, sha256: str) -> list[ReviewerActivity]:
    """Who decided about this scan's microbleeds, how often, first and last (as exports name them)."""
    times: dict[str, list[str]] = {}
    for finding in store.findings_for(sha256, task=TASK):
        for review in store.reviews_for(finding.id):
            times.setdefault(export_reviewer(review.reviewer), []).append(review.at)
    return [ReviewerActivity(name, len(at), stored_time(min(at)), stored_time(max(at))) for name, at in sorted(times.items())]


def check_subtype(subtype: dict[str, Any], image: ImageRecord) -> None:
    """Refuse a subtype result computed on another scan (its ``image_sha256``), in one sentence."""
    if str(subtype.get("image_sha256", "")).lower() != image.sha256:
        raise ImageMismatchError(
            f"The subtype result was computed on scan {str(subtype.get('image_sha256', '?'))[:12]}, "
            f"not on {Path(image.path).name} ({image.sha256[:12]})")


def read_subtype(path: str | Path) -> dict[str, Any]:
    """A ``neuroreview csvd classify`` result, checked for what the report reads (one sentence otherwise)."""
    doc = strict_json.read_object(path, "subtype result")
    probabilities = doc.get("probabilities")
    if (not isinstance(probabilities, dict) or not all(isinstance(probabilities.get(c), (int, float)) for c in SUBTYPES)
            or not isinstance(doc.get("image_sha256"), str) or not isinstance(doc.get("cmbs", []), list)):
        raise InputFileError(f"{Path(path).name}: is not a subtype result of 'neuroreview csvd classify' "
                             f"(it needs image_sha256 and the probabilities of {', '.join(SUBTYPES)})")
    return doc


def read_networks(path: str | Path) -> dict[str, Any]:
    """A ``neuroreview networks compare`` result, checked for what the report reads (one sentence otherwise)."""
    doc = strict_json.read_object(path, "networks result")
    networks = doc.get("networks")
    good = isinstance(networks, dict) and bool(networks) and all(
        isinstance(entry, dict) and all(isinstance(entry.get(s), dict) for s in ("pre", "post"))
        for entry in networks.values())
    if not good:
        raise InputFileError(f"{Path(path).name}: is not a result of 'neuroreview networks compare' "
                             "(it needs each network's pre and post P(post))")
    return doc


def mars_table(subtype: dict[str, Any]) -> dict[str, dict[str, int]]:
    """MARS counts by class and side of a subtype result's microbleeds (``{class: {left, right, total}}``).

    Counted by ``csvd.baselines.mars_counts``, the subtype panel's own table.
    """
    counts = mars_counts([MarsRegion(str(s.get("region")), str(s.get("mars_class")), str(s.get("side")))
                          for s in subtype.get("cmbs") or []])
    return {c: {"left": counts["sides"][f"{c}_left"], "right": counts["sides"][f"{c}_right"], "total": counts[c]}
            for c in MARS_CLASSES}
