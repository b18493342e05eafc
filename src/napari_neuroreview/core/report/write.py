"""Write a case report: the one task ``neuroreview report`` and the Case widget's Report button run.

Order (the house's output contract): the outputs are checked first (suffix, writable, not
an input: the scan, the store, a result file), Chromium is looked for before any work when
a PDF is asked for, then the scan is found in the store and its voxels read and checked
against the store's sha256, each finding located (side and MARS region, ``cmb.locations``:
one registration to MNI per scan), the key images rendered, and the HTML and the PDF
written together (both land, or neither changes).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageMismatchError, InputFileError
from ..io.layers import robust_contrast
from ..io.nifti import Volume, load_volume
from ..io.outputs import Output, check_outputs, write_together
from ..progress import Progress, TaskGenerator, within
from ..store import CaseStore, ImageRecord
from ..tasks.cmb.locations import locate_findings
from ..tasks.cmb.review_export import TASK
from .browser import chromium, print_pdf
from .content import check_subtype, gather, read_networks, read_subtype
from .html import build_html
from .key_images import key_image_png, map_thumbnail_png

__all__ = ["find_scan", "scan_source", "write_report"]

#: ``--scan`` given as the start of a voxel sha256 (8 hex digits at least: fewer match too much).
_SHA_PREFIX = re.compile(r"[0-9a-f]{8,64}")


def scan_source(store: CaseStore, scan: str | Path) -> tuple[str, ImageRecord | None]:
    """Where the scan's voxels are read from, and its stored record when ``scan`` named it by sha256.

    ``scan`` is a path (a file, a DICOM series) or the start of a stored scan's voxel sha256
    (its file is then where the scan was last opened from, ``ScanState.path``: the worklist's
    rule, so a moved scan reopened once is found here too). ``cmb export`` reads it the same way.
    """
    text = str(scan).strip()
    if _SHA_PREFIX.fullmatch(text.lower()) and not Path(text).exists():
        found = [i for i in store.images() if i.sha256.startswith(text.lower())]
        if not found:
            raise InputFileError(f"no scan in the store {store.path.name} has a voxel sha256 starting {text}")
        if len(found) > 1:
            raise InputFileError(f"{len(found)} scans in the store {store.path.name} have a voxel sha256 starting "
                                 f"{text}; give more of its digits")
        return store.scan_state(found[0].sha256, task=TASK).path, found[0]
    return text, None


def find_scan(store: CaseStore, source: str, image: ImageRecord | None) -> tuple[ImageRecord, Volume]:
    """The stored scan and its voxels, read from ``source`` and checked against the store's sha256."""
    volume = load_volume(source)
    name = Path(source).name
    if image is not None:
        if volume.sha256 != image.sha256:
            raise ImageMismatchError(
                f"{name}: no longer holds the reviewed voxels (sha256 {volume.sha256[:12]}, the store's "
                f"{image.sha256[:12]}); give --scan the reviewed scan's path")
        return image, volume
    stored = store.image_by_sha(volume.sha256)
    if stored is not None:
        return stored, volume
    earlier = store.images_at_path(source)
    if earlier:
        raise ImageMismatchError(
            f"{name}: its voxels (sha256 {volume.sha256[:12]}) are not the ones reviewed under this path "
            f"({earlier[-1].sha256[:12]})")
    raise InputFileError(f"{name} (voxel sha256 {volume.sha256[:12]}) is not in the store {store.path.name}; "
                         "review it first")


def write_report(store: CaseStore, scan: str | Path, html_path: str | Path, pdf_path: str | Path | None = None,
                 subtype_path: str | Path | None = None, networks_path: str | Path | None = None,
                 network_maps: tuple[str | Path, str | Path] | None = None) -> TaskGenerator[list[Path]]:
    """Write the report of one stored scan (see the module docstring); returns the files written.

    Parameters
    ----------
    store : CaseStore
        The open store holding the scan's review.
    scan : str or Path
        The scan's path, or the start (8+ hex digits) of its voxel sha256.
    html_path, pdf_path : str or Path
        The page (``.html``) and, optionally, its PDF (``.pdf``, needs Chromium).
    subtype_path, networks_path : str or Path, optional
        A ``csvd classify`` result of this scan; a ``networks compare`` result.
    network_maps : (str or Path, str or Path), optional
        The pre and post scans (ICA folders, or anything ``networks compare`` reads) the
        networks result was computed from: each network's maps as thumbnails. Their BOLD
        sha256 must be the result's.
    """
    source, image = scan_source(store, scan)
    if network_maps is not None and networks_path is None:
        raise InputFileError("the network maps are shown beside a networks result: give --networks res.json too")
    maps = tuple(network_maps or ())
    check_outputs([Output(html_path, (".html", ".htm"), "HTML report"), Output(pdf_path, (".pdf",), "PDF report")],
                  inputs=[store.path, source, subtype_path, networks_path, *maps],
                  protected_folders=[Path(p) for p in maps if Path(p).is_dir()])
    if pdf_path is not None:
        chromium()  # refused before any work: the PDF is the browser's
    subtype = read_subtype(subtype_path) if subtype_path is not None else None
    networks = read_networks(networks_path) if networks_path is not None else None
    yield Progress(0, 1, f"Reading {Path(source).name}")
    image, volume = find_scan(store, source, image)
    if subtype is not None:
        check_subtype(subtype, image)
    findings = store.findings_for(image.sha256, task=TASK)
    total = len(findings) + 2 + 10 + 2 * len(maps)  # key images (at most one per finding), regions, maps
    locations, note = {}, None
    try:  # one registration to MNI per scan (cmb.locations caches it: the review widget's own); none without findings
        if findings:
            label = store.scan_state(image.sha256, task=TASK).label  # never the path: a folder may name the patient
            locations = yield from within(locate_findings(volume, [f.id for f in findings],
                                                          np.array([f.world for f in findings]).reshape(-1, 3), label),
                                          1, 10, total, "Regions")
    except InputFileError as exc:  # a scan that does not register still gets its report, regions unknown
        note = f"not known ({exc})"
    content = gather(store, image, subtype, networks, locations, note)
    window = robust_contrast(volume.data)
    counted = content.counted
    thumbnails: dict[str, bytes] = {}
    if networks is not None and maps:
        thumbnails = yield from _network_thumbnails(networks, maps, 11, total)
    images: dict[int, bytes] = {}
    for n, finding in enumerate(counted, start=1):
        yield Progress(11 + 2 * len(maps) + n, total, f"Key images of microbleed {finding.id} ({n} of {len(counted)})")
        images[finding.id] = key_image_png(volume.data, volume.affine, finding.world_ras_mm, window,
                                           finding.diameter_mm)
    page = build_html(content, lambda f: images[f.id], thumbnails)
    yield Progress(total - 1, total, "Writing the report" + (" and its PDF" if pdf_path is not None else ""))
    writes = [(Path(html_path), lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))]
    if pdf_path is not None:
        writes.append((Path(pdf_path), lambda tmp: _print(page, tmp)))
    written = write_together(writes)
    yield Progress(total, total, "Done")
    return written


def _print(page: str, pdf: Path) -> None:
    """Print the page to ``pdf`` through a private copy (the HTML target is not in place yet)."""
    with tempfile.TemporaryDirectory(prefix="neuroreview-report-") as folder:
        html = Path(folder) / "report.html"
        html.write_text(page, encoding="utf-8")
        print_pdf(html, pdf)


def _network_thumbnails(doc: dict[str, Any], maps: tuple[str | Path, ...], start: int, total: int,
                        ) -> TaskGenerator[dict[str, bytes]]:
    """Each network's pre and post maps (SD units, as the Networks view shows them) as one thumbnail."""
    from ..tasks.networks.cohort import load_session
    from ..tasks.networks.compare import Comparison

    sessions = []
    for n, (state, path) in enumerate(zip(("pre", "post"), maps)):
        session = yield from within(load_session(path), start + 2 * n, 2, total, f"{state} networks")
        expected = str(doc.get(f"{state}_sha256") or "")
        if expected and session.source_sha256:
            if session.source_sha256 != expected:
                raise ImageMismatchError(
                    f"{Path(path).name}: is not the {state} scan of the networks result (BOLD sha256 "
                    f"{session.source_sha256[:12]}, the result's {expected[:12]})")
        elif Path(session.path).name != str(doc.get(state) or ""):  # no sha256 (a MELODIC folder): its name, as compare wrote it
            raise ImageMismatchError(
                f"{Path(path).name}: is not the {state} scan of the networks result, which names it "
                f"{str(doc.get(state) or '(none)')!r}")
        sessions.append(session)
    comparison = Comparison(sessions[0], sessions[1], probabilities={}, model={})
    out = {}
    for name in doc["networks"]:  # read_networks checked it is a mapping
        if all(name in s.assignment.matches for s in sessions):
            panels = [(state.upper(), *comparison.display_map(state, name)) for state in ("pre", "post")]
            out[str(name)] = map_thumbnail_png(panels)
    return out
