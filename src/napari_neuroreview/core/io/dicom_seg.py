"""Reviewed microbleeds out as a DICOM Segmentation (SEG) of their source series, and back in.

Why a SEG and how it is built (highdicom's :class:`highdicom.seg.Segmentation`):

- **One BINARY segment per microbleed**, not one "microbleed" segment: a PACS viewer (OHIF,
  3D Slicer, Sectra) lists a SEG's segments by label, toggles and jumps to each one, so a
  radiologist finds "Microbleed 12" as the review's table names it; one segment would merge
  every microbleed into one mask and lose which is which (a BINARY segment holds no instance
  value). The finding id travels as each segment's TrackingID (with a TrackingUID), and
  reading back restores it.
- **Codes**: category SCT 49755003 "Morphologically Abnormal Structure" (CID 7150), type SCT
  50960005 "Hemorrhage", anatomic region SCT 12738006 "Brain"; the code dictionaries pydicom
  and highdicom ship hold no microbleed concept, so the segment label says "Microbleed".
- **Which images**: the SEG references its source images (their SOPInstanceUIDs, the series
  and frame of reference), and highdicom copies their plane positions, so the SEG lies on the
  series' own grid, oblique or not. The series is re-read and its voxels' sha256 compared with
  the reviewed scan's: a folder that now holds another series (another patient with the same
  protocol) is refused, not given this review. Its headers give the grid the way the loader
  does (:func:`core.io.dicom.header_slices`, its per-frame geometry, GDCM's slice order), so header
  ``k`` is slice ``k`` of the scan, evenly spaced or not. A scan opened from NIfTI has no
  source images: refused in one sentence (a SEG on a made-up geometry would attach to no
  study in PACS); a series moved or deleted since is one sentence too. With no microbleed to
  segment there is no SEG (a SEG needs one segment): the review export skips it.
- **Segments**: MANUAL for a microbleed the reviewer added, SEMIAUTOMATIC for a detection the
  reviewer decided on; TrackingUID derived from the scan's sha256 and the finding id, so the
  same finding keeps its UID over exports.
- **Identity**: the SEG copies the Patient and Study modules of the source (what PACS needs to
  file it with the study). This is the one place patient identity legitimately flows: it is
  never logged (highdicom's and pydicom's messages are silenced while building, since
  highdicom warns about an unusual PatientName, quoting it), never in a sentence (highdicom's
  own errors are named by type only), and the review's JSON/TSV carry none of it. Type 2
  study fields a source lacks are written empty.

Reading back (:func:`read_seg`, which :func:`core.io.nifti.load_volume` calls for a SEG file):
the referenced series is looked for in the SEG's folder, its subfolders, and its parent's
subfolders; the labels are drawn on that series' grid, read from its headers (value =
TrackingID when every segment has a distinct integer one, else the segment number), so they
overlay the series exactly. BINARY/FRACTIONAL and LABELMAP SEGs are read; a frame off the
series' slices, of another orientation or pixel spacing, or naming an unknown segment is one
sentence.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import uuid
import warnings
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ..errors import GeometryError, InputFileError
from .atomic import write_with
from .dicom import (
    SERIES_SEPARATOR,
    DicomSeries,
    series_affine,
    check_series,
    frame_item,
    header_slices,
    sorted_files,
    choose_series,
    find_series,
    folder_holds_dicom,
    is_dicom_file,
    is_dicom_path,
    load_dicom,
    split_selector,
)
from .nifti import Volume, voxel_sha256

#: The SOP classes of a Segmentation (binary/fractional, and label map).
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
#: What the SEG's equipment fields name: the plugin (and its version, :data:`napari_neuroreview.__version__`).
SOFTWARE = "napari-neuroreview"
#: The series number a SEG export gets (derived series are numbered high, apart from the scanner's).
SEG_SERIES_NUMBER = 9901
#: Type 2 fields highdicom reads from the source: present, and empty when the source lacks them.
_TYPE2_FIELDS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                 "StudyDate", "StudyTime", "ReferringPhysicianName")
#: How far (slice steps) a SEG frame may lie from its series' slice.
_GRID_TOLERANCE = 0.01


def is_seg_file(path: str | Path) -> bool:
    """Whether ``path`` is one DICOM Segmentation file (read by :func:`read_seg`, not as a series)."""
    where = Path(path)
    if not where.is_file() or not (is_dicom_file(where) or where.suffix.lower() == ".dcm"):
        return False
    import pydicom

    try:
        ds = pydicom.dcmread(where, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # noqa: BLE001 - not readable as DICOM: the series reader says why
        return False
    return str(ds.get("SOPClassUID", "")) in SEG_SOP_CLASSES or str(ds.get("Modality", "")) == "SEG"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence highdicom's and pydicom's logs and warnings: they may quote patient identity."""
    loggers = [logging.getLogger(name) for name in ("highdicom", "pydicom")]
    levels = [one.level for one in loggers]
    for one in loggers:
        one.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for one, level in zip(loggers, levels):
            one.setLevel(level)


def can_reference(source: str | Path) -> bool:
    """Whether a SEG can be asked for a scan opened from ``source``: a DICOM path that is still there."""
    return bool(str(source)) and split_selector(source)[0].exists() and is_dicom_path(source)


def _series_grid(series: DicomSeries, where: Path) -> tuple[DicomSeries, list[Any], np.ndarray]:
    """The series in the loader's slice order, each image's geometry, and its affine: headers only.

    Why not :func:`core.io.dicom.load_dicom`: the grid needs no pixel decoded; this composes
    the loader's own header steps (GDCM's sorter, per-frame geometry, checks, affine) in its
    order, so slice ``k`` here is slice ``k`` of the loaded scan, evenly spaced or not.
    """
    if len(series.headers) > 1:
        by_path = dict(series.headers)
        series = DicomSeries(series.uid, series.number, series.description, series.modality,
                             [(f, by_path[f]) for f in sorted_files(series, where)])
    slices = header_slices(series, where)
    check_series(series, where, slices)
    return series, slices, series_affine(series, where, slices, [])


def _uid_from(*parts: str) -> str:
    """A stable DICOM UID (``2.25.<uuid as integer>``) from text: the same finding, the same TrackingUID."""
    digest = hashlib.sha256(":".join(parts).encode()).digest()[:16]
    return f"2.25.{uuid.UUID(bytes=digest).int}"


def source_images(source: str | Path, affine: np.ndarray, shape: Sequence[int], sha256: str) -> list[Any]:
    """The source series' headers in slice order (header ``k`` is slice ``k`` of the scan's grid).

    Why re-read: the SEG must name the very images the review was drawn on. The series'
    voxels are loaded and their sha256 compared with the reviewed scan's: a folder that now
    holds another series (another patient, same protocol) is refused, as is a changed grid.
    """
    where, selector = split_selector(source)
    if not where.exists():
        raise InputFileError(f"{where}: no longer exists (moved or deleted), so a DICOM SEG cannot reference the "
                             "reviewed images; open the series from where it is now")
    if not is_dicom_path(source):
        raise InputFileError(f"{source}: was not opened from DICOM, and a DICOM SEG must reference the DICOM "
                             "images it segments; export the labels as NIfTI, or open the DICOM series and review it")
    found, _skipped = find_series(where)
    series = choose_series(where, found, selector)
    if any("FrameOfReferenceUID" not in ds for _path, ds in series.headers):
        raise InputFileError(f"{source}: the DICOM series has no FrameOfReferenceUID, which a DICOM SEG must "
                             "reference to be placed on it; a SEG cannot be made for this series")
    if load_dicom(source).sha256 != str(sha256).lower():
        raise InputFileError(f"{source}: now holds other voxels than the reviewed scan (another series or patient, "
                             "or a re-acquisition), so its images cannot carry this review; open it and review it")
    series, slices, grid = _series_grid(series, where)
    columns, rows, depth = (int(v) for v in shape[:3])
    size = (int(series.headers[0][1].Columns), int(series.headers[0][1].Rows), len(slices))
    if size != (columns, rows, depth) or not np.allclose(grid, np.asarray(affine, float), atol=1e-3):
        raise GeometryError(f"{source}: the DICOM series no longer lies on the reviewed scan's grid; reopen the "
                            "series and review it again")
    return [ds for _path, ds in series.headers]


def _share_orientation(ds: Any) -> None:
    """Move an enhanced image's per-frame orientation into its shared group (highdicom reads it only there).

    Why it is safe: :func:`_series_grid` (the loader's check) refused frames of different orientations.
    """
    from pydicom.dataset import Dataset

    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    if not frames or all("PlaneOrientationSequence" not in f for f in frames):
        return
    if not ds.get("SharedFunctionalGroupsSequence"):
        ds.SharedFunctionalGroupsSequence = [Dataset()]
    ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence = frames[0].PlaneOrientationSequence
    for frame in frames:
        if "PlaneOrientationSequence" in frame:
            del frame.PlaneOrientationSequence


def cmb_seg_dataset(instances: np.ndarray, source: str | Path, affine: np.ndarray, *, sha256: str,
                    names: dict[int, str] | None = None, manual: Collection[int] = (), reviewer: str | None = None) -> Any:
    """The SEG (a pydicom Dataset) of instance labels on the scan's file grid; one segment per id.

    Parameters
    ----------
    instances : numpy.ndarray
        File-grid labels (column, row, slice), value = finding id, 0 = background.
    source : str or Path
        The scan's path as opened: a DICOM folder, ``FOLDER::SERIES`` or one file.
    affine : numpy.ndarray
        The reviewed scan's voxel -> world RAS affine (the grid ``instances`` lie on).
    sha256 : str
        The reviewed scan's voxel sha256: the series at ``source`` must still hold those voxels.
    names : dict, optional
        Segment label per id (default ``"Microbleed <id>"``).
    manual : collection of int, optional
        Ids the reviewer added by hand: their segments are MANUAL, the others SEMIAUTOMATIC.
    reviewer : str, optional
        ContentCreatorName: a typed name or pseudonym (never the OS login: the caller decides).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    labels = np.asarray(instances)
    ids = [int(v) for v in np.unique(labels) if v != 0]
    if not ids:
        raise InputFileError(f"{Path(str(source)).name}: the review holds no microbleed to export as DICOM SEG; a SEG "
                             "needs at least one segment")
    headers = source_images(source, affine, labels.shape, sha256)
    numbered = np.searchsorted(np.array([0, *ids]), labels).astype(np.uint16)  # id -> segment number 1..n
    frames = numbered.transpose(2, 1, 0)  # header k is slice k: (frame, row, column)
    algorithm = hd.AlgorithmIdentificationSequence(name=SOFTWARE, version=__version__, family=codes.DCM.ArtificialIntelligence)
    kinds = hd.seg.SegmentAlgorithmTypeValues
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=(names or {}).get(fid, f"Microbleed {fid}"),
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Hemorrhage,
            algorithm_type=kinds.MANUAL if fid in manual else kinds.SEMIAUTOMATIC,
            algorithm_identification=None if fid in manual else algorithm,
            tracking_uid=_uid_from(str(sha256).lower(), str(fid)), tracking_id=str(fid), anatomic_regions=[codes.SCT.Brain])
        for number, fid in enumerate(ids, start=1)
    ]
    sources = [copy.deepcopy(ds) for ds in headers]  # deep: the edits below stay out of the cached headers
    for ds in sources:
        _share_orientation(ds)
        for name in _TYPE2_FIELDS:
            if name not in ds:
                setattr(ds, name, None)
    try:
        with _quiet():
            seg = hd.seg.Segmentation(
                source_images=sources, pixel_array=frames, segmentation_type="BINARY",
                segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER,
                sop_instance_uid=hd.UID(), instance_number=1, manufacturer=SOFTWARE, manufacturer_model_name=SOFTWARE,
                software_versions=__version__, device_serial_number=SOFTWARE, content_label="CMB",
                content_description="Reviewed cerebral microbleeds", content_creator_name=reviewer or None,
                series_description="Cerebral microbleeds (reviewed)")
    except ValueError as exc:  # its message may quote the source's identity: not repeated
        raise InputFileError(f"{source}: highdicom cannot build a DICOM SEG on this series' headers "
                             f"({type(exc).__name__}); export the labels as NIfTI") from None
    return seg


def write_cmb_seg(instances: np.ndarray, source: str | Path, out_path: str | Path, affine: np.ndarray, **kwargs: Any) -> Path:
    """Write :func:`cmb_seg_dataset` to ``out_path`` atomically (a crash leaves the previous file)."""
    seg = cmb_seg_dataset(instances, source, affine, **kwargs)
    return write_with(out_path, lambda tmp: save_seg(seg, tmp))


def save_seg(seg: Any, path: Path) -> None:
    """Save a SEG dataset (its own file meta, so any suffix works)."""
    with _quiet():
        seg.save_as(path, enforce_file_format=True)


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _candidate_folders(path: Path) -> list[Path]:
    """Where the series a SEG references may lie: its folder, its subfolders, its parent's subfolders.

    Why there: a PACS or a study export puts a study's series side by side (flat or one folder
    each), and our export is written beside the series' folder (never into it). A SEG in a
    BIDS-derivatives layout (``EXPORT/derivatives/neuroreview/sub-*/[ses-*/]anat/``) is searched
    the same way from the export folder the user chose (the one holding ``derivatives``).
    """
    anchors = [path]
    if "derivatives" in path.parts[:-1]:
        root = Path(*path.parts[:len(path.parts) - 1 - path.parts[::-1].index("derivatives")])
        anchors.append(root / path.name)
    near: list[Path] = []
    for anchor in anchors:
        here, parent = anchor.parent, anchor.parent.parent
        near += [here, *_subfolders(here), *(p for p in _subfolders(parent) if p != here)]
    return [p for p in dict.fromkeys(near) if folder_holds_dicom(p)]


def _find_series_near(path: Path, uid: str) -> Path | None:
    """``FOLDER::UID`` of the referenced series near the SEG, or None; a broken neighbour is skipped."""
    for folder in _candidate_folders(path):
        try:
            found, _ = find_series(folder)
        except InputFileError:  # a corrupt file in a neighbouring folder is not this SEG's problem
            continue
        if any(s.uid == uid for s in found):
            return Path(f"{folder}{SERIES_SEPARATOR}{uid}")
    return None


def _seg_frames(where: Path, seg: Any) -> tuple[list[Any], list[int | None]]:
    """Each SEG frame's geometry (the loader's per-frame reading) and segment number (None: a label map)."""
    frames = seg.get("PerFrameFunctionalGroupsSequence") or []
    if len(frames) != max(1, int(seg.get("NumberOfFrames", 1) or 1)):
        raise InputFileError(f"{where}: a DICOM SEG with {len(frames)} per-frame geometries for "
                             f"{seg.get('NumberOfFrames', 1)} frames cannot be placed on its series")
    geometry = header_slices(DicomSeries("", None, "DICOM SEG", "SEG", [(where, seg)]), where)
    numbers: list[int | None] = []
    for frame in frames:
        item = frame_item(seg, frame, "SegmentIdentificationSequence")
        numbers.append(None if item is None or "ReferencedSegmentNumber" not in item else int(item.ReferencedSegmentNumber))
    return geometry, numbers


def read_seg(path: str | Path) -> Volume:
    """A SEG file as a labels Volume on its referenced series' grid (instance ids restored).

    BINARY and FRACTIONAL frames name their segment; a LABELMAP frame's pixel value is the
    segment number. The series' grid comes from its headers (no pixel of it is decoded).

    Raises
    ------
    InputFileError
        Not a readable SEG, one that does not lie on its series, or its referenced series not
        found near it (one sentence each).
    """
    import highdicom as hd

    where = Path(path)
    try:
        with _quiet():
            seg = hd.seg.segread(where)
            frames = np.asarray(seg.pixel_array)
    except Exception as exc:  # noqa: BLE001 - pydicom/highdicom raise many types for a broken SEG
        raise InputFileError(f"{where}: is not a readable DICOM SEG ({type(exc).__name__})") from None
    referenced = [str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence") or []]
    if len(referenced) != 1:
        raise InputFileError(f"{where}: references {len(referenced)} series; a microbleed SEG segments one series")
    uid = referenced[0]
    series_path = _find_series_near(where, uid)
    if series_path is None:
        raise InputFileError(f"{where}: the series it segments (SeriesInstanceUID ending …{uid[-8:]}) is not in its "
                             "folder, its subfolders or beside it; put the SEG next to the series' files")
    folder, selector = split_selector(series_path)
    series, slices, affine = _series_grid(choose_series(folder, find_series(folder)[0], selector), series_path)
    try:
        segments = [s for s in seg.get("SegmentSequence") or [] if int(s.SegmentNumber) > 0]  # a label map's 0: background
    except (AttributeError, TypeError, ValueError):
        raise InputFileError(f"{where}: a segment of this DICOM SEG has no readable SegmentNumber") from None
    numbers = [int(s.SegmentNumber) for s in segments]
    tracked = [str(s.get("TrackingID", "")) for s in segments]
    ids = [int(t) for t in tracked] if all(t.isdigit() and int(t) > 0 for t in tracked) and len(set(tracked)) == len(tracked) \
        else numbers
    value = np.zeros(max(numbers, default=0) + 1, dtype=np.int64)
    value[numbers] = ids
    shape = (int(series.headers[0][1].Columns), int(series.headers[0][1].Rows), len(slices))
    labels = np.zeros(shape, dtype=np.uint16 if max(ids, default=0) <= np.iinfo(np.uint16).max else np.uint32)
    geometry, segment_of = _seg_frames(where, seg)
    labelmap = str(seg.get("SOPClassUID", "")) == SEG_SOP_CLASSES[1] or str(seg.get("SegmentationType", "")) == "LABELMAP"
    frames = frames.reshape((-1, *frames.shape[-2:]))
    first = slices[0]
    if frames.shape[1:] != (shape[1], shape[0]) or not all(
            np.allclose(g.orientation, first.orientation, atol=1e-4) and np.allclose(g.spacing, first.spacing, rtol=1e-4)
            for g in geometry):
        raise InputFileError(f"{where}: its frames are not on the grid of the series it segments (size, orientation or "
                             "pixel spacing differ), so it cannot be overlaid on it")
    positions = np.array([s.position for s in slices])
    step = float(np.linalg.norm(affine[:3, 2]))
    for n, (plane, number) in enumerate(zip(frames, segment_of)):
        distance = np.linalg.norm(positions - geometry[n].position, axis=1)
        k = int(np.argmin(distance))
        if distance[k] > _GRID_TOLERANCE * step:
            raise InputFileError(f"{where}: frame {n + 1} lies on no slice of the series it segments, so it cannot "
                                 "be overlaid on it")
        if number is None and not labelmap:
            raise InputFileError(f"{where}: frame {n + 1} names no segment (SegmentIdentificationSequence), so it "
                                 "cannot be read")
        mask = plane.T > 0  # (column, row)
        if number is None and np.any(plane[plane > 0] >= len(value)) or number is not None and not 0 < number < len(value):
            raise InputFileError(f"{where}: a frame names a segment the SEG does not describe, so it cannot be read")
        labels[:, :, k][mask] = value[plane.T[mask]] if number is None else value[number]
    header = {"format": "DICOM SEG", "series_label": f"{series.label} microbleeds (SEG)",
              "segments": len(numbers), "series_sha256": hashlib.sha256(series.uid.encode()).hexdigest()[:16]}
    return Volume(data=labels, affine=affine, zooms=tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0)),
                  path=where, sha256=voxel_sha256(labels), header=header)
