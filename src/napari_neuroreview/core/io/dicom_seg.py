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
- **Geometry**: the SEG references its source images (their SOPInstanceUIDs, the series and
  frame of reference), and highdicom copies their plane positions, so the SEG lies on the
  series' own grid, oblique or not. The source headers are re-read with pydicom
  (:func:`core.io.dicom.find_series`) and every image is placed on the reviewed scan's grid
  through its affine: a series that no longer matches that grid is refused, not guessed.
  A scan opened from NIfTI has no source images: refused in one sentence (highdicom needs
  source images; a SEG on a made-up geometry would attach to no study in PACS).
- **Identity**: the SEG copies the Patient and Study modules of the source (what PACS needs to
  file it with the study). This is the one place patient identity legitimately flows: it is
  never logged (highdicom's and pydicom's messages are silenced while building, since
  highdicom quotes an unusual PatientName in a log line), never in a sentence, and the
  review's JSON/TSV carry none of it. Type 2 study fields a source lacks are written empty.

Reading back (:func:`read_seg`, which :func:`core.io.nifti.load_volume` calls for a SEG file):
the referenced series is looked for in the SEG's folder, its subfolders, and its parent's
subfolders; the labels are drawn on that series' grid (value = TrackingID when every segment
has a distinct integer one, else the segment number), so they overlay the series exactly.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ..anatomy.registration import ras_lps
from ..errors import GeometryError, InputFileError
from .atomic import write_with
from .dicom import (SERIES_SEPARATOR, choose_series, find_series, folder_holds_dicom, is_dicom_file, is_dicom_path,
                    split_selector)
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
#: How far (voxels) a source image may lie from the reviewed scan's grid.
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


def _frame_positions(ds: Any) -> list[np.ndarray]:
    """Each frame's ImagePositionPatient (LPS mm): one for a classic image, per frame for an enhanced one."""
    frames = ds.get("PerFrameFunctionalGroupsSequence")
    if not frames:
        return [np.array([float(v) for v in ds.ImagePositionPatient])]
    return [np.array([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]) for f in frames]


def _orientation(ds: Any) -> np.ndarray:
    if "ImageOrientationPatient" in ds:
        return np.array([float(v) for v in ds.ImageOrientationPatient])
    shared = ds.SharedFunctionalGroupsSequence[0]
    return np.array([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])


def _slice_index(where: Path, position_lps: np.ndarray, inverse: np.ndarray, depth: int) -> int:
    """The slice ``k`` of the grid that a frame at ``position_lps`` is; refused when it is off the grid.

    ``inverse`` maps world LPS mm (DICOM's patient space) to the grid's voxels.
    """
    voxel = inverse[:3, :3] @ position_lps + inverse[:3, 3]
    k = round(float(voxel[2]))
    if np.abs(voxel[:2]).max() > _GRID_TOLERANCE or abs(voxel[2] - k) > _GRID_TOLERANCE or not 0 <= k < depth:
        raise GeometryError(f"{where}: the DICOM series no longer lies on the reviewed scan's grid (an image at "
                            f"voxel {np.round(voxel, 2).tolist()}); reopen the series and review it again")
    return k


def source_images(source: str | Path, affine: np.ndarray, shape: Sequence[int]) -> tuple[list[Any], list[np.ndarray]]:
    """The source series' headers, each with the slice index of every frame on the scan's grid.

    Why re-read: the SEG must name the very images the review was drawn on; their positions
    through the reviewed affine also prove the series is still the one reviewed.
    """
    if not is_dicom_path(source):
        raise InputFileError(f"{source}: was not opened from DICOM, and a DICOM SEG must reference the DICOM "
                             "images it segments; export the labels as NIfTI, or open the DICOM series and review it")
    where, selector = split_selector(source)
    found, _skipped = find_series(where)
    series = choose_series(where, found, selector)
    lps = ras_lps(np.asarray(affine, float))
    inverse = np.linalg.inv(lps)
    columns, rows, depth = (int(v) for v in shape[:3])
    headers = [ds for _path, ds in series.headers]
    if any("FrameOfReferenceUID" not in ds for ds in headers):
        raise InputFileError(f"{source}: the DICOM series has no FrameOfReferenceUID, which a DICOM SEG must "
                             "reference to be placed on it; a SEG cannot be made for this series")
    row_dir = lps[:3, 0] / np.linalg.norm(lps[:3, 0])
    slices: list[np.ndarray] = []
    for ds in headers:
        if (int(ds.Rows), int(ds.Columns)) != (rows, columns) or not np.allclose(_orientation(ds)[:3], row_dir, atol=1e-3):
            raise GeometryError(f"{source}: the DICOM series' images are no longer {columns} x {rows} in the reviewed "
                                "orientation; reopen the series and review it again")
        slices.append(np.array([_slice_index(Path(str(source)), p, inverse, depth) for p in _frame_positions(ds)]))
    taken = np.concatenate(slices)
    if len(taken) != depth or len(np.unique(taken)) != depth:
        raise GeometryError(f"{source}: the DICOM series now has {len(np.unique(taken))} slices where the reviewed "
                            f"scan had {depth}; reopen the series and review it again")
    return headers, slices


def cmb_seg_dataset(instances: np.ndarray, source: str | Path, affine: np.ndarray, *,
                    names: dict[int, str] | None = None, reviewer: str | None = None) -> Any:
    """The SEG (a pydicom Dataset) of instance labels on the scan's file grid; one segment per id.

    Parameters
    ----------
    instances : numpy.ndarray
        File-grid labels (column, row, slice), value = finding id, 0 = background.
    source : str or Path
        The scan's path as opened: a DICOM folder, ``FOLDER::SERIES`` or one file.
    affine : numpy.ndarray
        The reviewed scan's voxel -> world RAS affine (the grid ``instances`` lie on).
    names : dict, optional
        Segment label per id (default ``"Microbleed <id>"``).
    reviewer : str, optional
        ContentCreatorName: a typed name or pseudonym (never the OS login: the caller decides).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    labels = np.asarray(instances)
    headers, slices = source_images(source, affine, labels.shape)
    ids = [int(v) for v in np.unique(labels) if v != 0]
    if not ids:
        raise GeometryError(f"{Path(str(source)).name}: the review holds no microbleed to export as DICOM SEG; a SEG "
                            "needs at least one segment")
    numbered = np.searchsorted(np.array([0, *ids]), labels).astype(np.uint16)  # id -> segment number 1..n
    # frames in the sources' own order: image n (or enhanced frame n) is slice k = slices[..][n]
    frames = numbered[:, :, np.concatenate(slices)].transpose(2, 1, 0)
    algorithm = hd.AlgorithmIdentificationSequence(name=SOFTWARE, version=__version__, family=codes.DCM.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=(names or {}).get(fid, f"Microbleed {fid}"),
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Hemorrhage,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC, algorithm_identification=algorithm,
            tracking_uid=hd.UID(), tracking_id=str(fid), anatomic_regions=[codes.SCT.Brain])
        for number, fid in enumerate(ids, start=1)
    ]
    sources = [ds.copy() for ds in headers]
    for ds in sources:
        for name in _TYPE2_FIELDS:
            if name not in ds:
                setattr(ds, name, None)
    with _quiet():
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=frames, segmentation_type="BINARY",
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer=SOFTWARE, manufacturer_model_name=SOFTWARE,
            software_versions=__version__, device_serial_number=__version__, content_label="CMB",
            content_description="Reviewed cerebral microbleeds", content_creator_name=reviewer or None,
            series_description="Cerebral microbleeds (reviewed)")
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
    each), and our export is written beside the series' folder (never into it).
    """
    here, parent = path.parent, path.parent.parent
    near = [here, *_subfolders(here), *(p for p in _subfolders(parent) if p != here)]
    return [p for p in near if folder_holds_dicom(p)]


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


def read_seg(path: str | Path) -> Volume:
    """A SEG file as a labels Volume on its referenced series' grid (instance ids restored).

    Raises
    ------
    InputFileError
        Not a readable SEG, or its referenced series is not found near it (one sentence).
    """
    import highdicom as hd

    from .dicom import load_dicom

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
    series_volume = load_dicom(series_path)
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
    tracked = [str(s.get("TrackingID", "")) for s in seg.SegmentSequence]
    ids = [int(t) for t in tracked] if all(t.isdigit() and int(t) > 0 for t in tracked) and len(set(tracked)) == len(tracked) \
        else numbers
    value = dict(zip(numbers, ids))
    shape = series_volume.spatial_shape
    labels = np.zeros(shape, dtype=np.uint16 if max(ids, default=0) <= np.iinfo(np.uint16).max else np.uint32)
    inverse = np.linalg.inv(ras_lps(series_volume.affine))
    frames = frames.reshape((-1, *frames.shape[-2:]))
    for n, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        position = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        k = _slice_index(where, position, inverse, shape[2])
        plane = frames[n].T  # (column, row)
        if plane.shape != shape[:2]:
            raise GeometryError(f"{where}: its frames are {plane.shape[0]} x {plane.shape[1]}, not the series' "
                                f"{shape[0]} x {shape[1]}")
        labels[:, :, k][plane > 0] = value[number]
    header = {"format": "DICOM SEG", "series_label": f"{series_volume.header.get('series_label', 'series')} microbleeds (SEG)",
              "segments": len(numbers), "series_sha256": series_volume.header.get("series_sha256")}
    return Volume(data=labels, affine=series_volume.affine.copy(), zooms=series_volume.zooms, path=where,
                  sha256=voxel_sha256(labels), header=header)
