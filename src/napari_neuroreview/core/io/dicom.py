"""Read a DICOM series (a folder, or one file) into the same :class:`Volume` as a NIfTI.

Which library does what, and why:

- **pydicom** reads every header (never the pixels): it finds the image series in a folder,
  lists them, and gives the tags each check needs (positions, orientation, echo times, gantry
  tilt, enhanced files' per-frame functional groups). Reading the headers ourselves is what
  keeps patient identity out: only the fields in :data:`KEPT_FIELDS` ever leave this module.
- **SimpleITK** (ITK's GDCM reader) sorts the files of a series along the slice normal
  (``ImageSeriesReader.GetGDCMSeriesFileNames``, GDCM's position sorter) and decodes the pixels
  of every transfer syntax GDCM knows (JPEG, JPEG 2000, JPEG-LS, RLE), applying each file's
  rescale slope and intercept. In an enhanced file GDCM applies one frame's rescale to every
  frame; :func:`_rescale_frames` undoes it and applies each frame's own (refusing the file if
  the stored integers do not come back). It is already a dependency (registration).
  nibabel's ``nicom`` was tried and not kept: it does not recognise the enhanced CT pydicom's
  data ships as multi-frame, and it calls itself experimental.
- The voxel -> world affine is computed here from the tags, in the order SimpleITK returns the
  slices: ImageOrientationPatient and PixelSpacing for the in-plane axes, and the first and
  last ImagePositionPatient for the slice axis (the mean step, as dcm2niix does), then LPS ->
  RAS by :func:`core.anatomy.registration.ras_lps`. Computing it from every slice's position
  is what lets the checks below see a tilt, a gap or an uneven step.

Refused, one sentence each: several series in a folder without a choice (the sentence lists
them; ``FOLDER::SELECTOR`` chooses, the selector being a series number or the end of a
SeriesInstanceUID, since UIDs of one site share their beginning; an exact series number wins
over a UID's end); gantry tilt (the slices are sheared, as measured from their positions
against the slice normal, not read from the tag: a
rectangular grid would put each slice off by tan(tilt) x its distance, and brain MRI is never
tilted, so a CT with tilt must be resampled first, e.g. by dcm2niix); a missing slice
(a gap over 1.5 x the median step); several echo times in one series; several images at one
position; slices of different orientation or size; colour images; a corrupt or truncated file;
more voxels than :func:`core.io.nifti_bounds.max_voxels` (checked from Rows x Columns x frames
before any pixel is decoded). Warned: an uneven slice step (with its range), non-image objects
skipped (structured reports, segmentations, presentation states).

Privacy: PatientName, PatientID, PatientBirthDate (and every other tag outside
:data:`KEPT_FIELDS`) never reach the Volume, its warnings or its header. The source's identity
is ``series_sha256``, the first 16 hex digits of the sha256 of the SeriesInstanceUID; the layer
name is the SeriesDescription, or the modality and series number, never the folder's name. The
folder's path does go into the Volume's path and error sentences: folder names are the user's.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..anatomy.registration import ras_lps
from ..errors import InputFileError
from .nifti import PLAUSIBLE_VOXEL_MM, Volume, voxel_sha256
from .nifti_bounds import check_ceiling, fail

#: Between a folder and its series choice in a path: ``scans/study1::301``.
SERIES_SEPARATOR = "::"
#: Modalities that are not images to show (reports, segmentations, RT objects, presentation states).
NON_IMAGE_MODALITIES = frozenset({"SR", "SEG", "PR", "KO", "DOC", "REG", "RTSTRUCT", "RTPLAN", "RTDOSE",
                                  "RTRECORD", "RTIMAGE", "PLAN", "FID", "RWV", "AU", "ECG", "HD"})
#: The only header fields copied to a Volume: none identifies the patient.
KEPT_FIELDS = ("Modality", "SeriesDescription", "SeriesNumber", "Manufacturer", "MagneticFieldStrength",
               "RepetitionTime", "EchoTime", "SliceThickness", "ScanningSequence", "ImageType")
#: A step longer than this many times the median step is a missing slice.
MISSING_SLICE_RATIO = 1.5
#: Steps that differ by more than this share of the median (plus 1 µm of rounding) are "uneven".
UNEVEN_SHARE = 0.01
#: Angle (degrees) between the slice step and the slice normal above which slices are sheared.
MAX_SHEAR_DEG = 0.5
#: Files looked at to decide whether a folder holds DICOM (napari's reader sniff).
SNIFF_FILES = 8


@dataclass
class DicomSeries:
    """One image series found in a folder: its files' headers, never their pixels."""

    uid: str
    number: int | None
    description: str
    modality: str
    headers: list[tuple[Path, Any]] = field(default_factory=list)

    @property
    def tail(self) -> str:
        """The end of the SeriesInstanceUID that the listing shows and a selector may give."""
        return self.uid[-8:]

    @property
    def label(self) -> str:
        """The layer name: the description, else the modality and series number."""
        return self.description or f"{self.modality or 'DICOM'} series {self.number if self.number is not None else self.tail}"

    def listing(self) -> str:
        """``#301 …52438492 'T1 MPRAGE' (176 images)``, for the sentence that lists series."""
        number = f"#{self.number} " if self.number is not None else ""
        frames = sum(_frames(ds) for _, ds in self.headers)
        return f"{number}…{self.tail} '{self.label}' ({frames} images)"


def is_dicom_file(path: Path) -> bool:
    """Whether the file carries the DICOM preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def split_selector(path: str | Path) -> tuple[Path, str | None]:
    """``FOLDER::SELECTOR`` -> (folder, selector); a plain path -> (path, None)."""
    text = str(path)
    if SERIES_SEPARATOR in text:
        where, _, selector = text.rpartition(SERIES_SEPARATOR)
        return Path(where), selector.strip() or None
    return Path(text), None


def is_dicom_path(path: str | Path) -> bool:
    """Whether :func:`core.io.nifti.load_volume` should read ``path`` as DICOM.

    A series choice (``::``), a folder, a ``.dcm``/``.ima`` file, or any file with the preamble.
    """
    folder, selector = split_selector(path)
    if selector is not None or folder.is_dir():
        return True
    return folder.name.lower().endswith((".dcm", ".ima")) or (folder.is_file() and is_dicom_file(folder))


def folder_holds_dicom(folder: Path) -> bool:
    """Whether one of the first :data:`SNIFF_FILES` files of ``folder`` has the DICOM preamble.

    Why a sniff: napari offers every folder to every reader; claiming one that holds no DICOM
    would stop the readers after this one from trying.
    """
    try:
        names = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:
        return False
    return any(is_dicom_file(p) for p in names[:SNIFF_FILES])


def _read_header(path: Path) -> Any | None:
    """The file's header (no pixels); None for a file that is not DICOM; refuse a corrupt one."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    preamble = is_dicom_file(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not preamble and path.suffix.lower() == ".dcm")
    except InvalidDicomError:
        return None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a broken file
        if preamble or path.suffix.lower() == ".dcm":
            raise fail(path, f"is a corrupt or truncated DICOM file ({type(exc).__name__})") from None
        return None
    storage = getattr(getattr(ds, "file_meta", None), "get", lambda *_: None)("MediaStorageSOPClassUID")
    if "Rows" not in ds and "Image Storage" in str(getattr(storage, "name", "")):
        # pydicom stops quietly at the end of a cut file: an image header without its size is a torn copy
        raise fail(path, "is a corrupt or truncated DICOM file: its image header ends before the image's size")
    return ds


def _frames(ds: Any) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _is_image(ds: Any) -> bool:
    return ("Rows" in ds and "Columns" in ds and str(ds.get("Modality", "")).upper() not in NON_IMAGE_MODALITIES
            and "SeriesInstanceUID" in ds)


def find_series(path: Path) -> tuple[list[DicomSeries], int]:
    """The image series of a folder (its own files, not subfolders) or of one file.

    Returns the series in series-number order and how many non-image DICOM objects were skipped.
    """
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    series: dict[str, DicomSeries] = {}
    skipped = 0
    for one in files:
        ds = _read_header(one)
        if ds is None:
            continue
        if not _is_image(ds):
            skipped += 1
            continue
        uid = str(ds.SeriesInstanceUID)
        if uid not in series:
            number = _number(ds.get("SeriesNumber"))
            series[uid] = DicomSeries(uid, int(number) if number is not None and number.is_integer() else None,
                                      str(ds.get("SeriesDescription", "") or "").strip(), str(ds.get("Modality", "") or ""))
        series[uid].headers.append((one, ds))
    ordered = sorted(series.values(), key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    return ordered, skipped


def choose_series(path: Path, found: Sequence[DicomSeries], selector: str | None) -> DicomSeries:
    """The series ``selector`` names (or the only one); one sentence listing them otherwise."""
    if not found:
        raise fail(path, "holds no DICOM image (only other files or non-image objects)" if path.is_dir()
                   else "is not a DICOM image")
    listed = "; ".join(s.listing() for s in found)
    if selector is None:
        if len(found) == 1:
            return found[0]
        raise fail(path, f"holds {len(found)} DICOM series: {listed}; choose one as {path}{SERIES_SEPARATOR}"
                         f"{_unique_selector(found[0], found)} (a series number, or the end of its SeriesInstanceUID)")
    matches = _matches(found, selector)
    if len(matches) == 1:
        return matches[0]
    problem = "matches several series" if matches else "matches no series"
    raise fail(path, f"'{selector}' {problem} among {listed}; give a series number or more of the SeriesInstanceUID's end")


def load_dicom(path: str | Path) -> Volume:
    """Read the DICOM series at ``path`` (``FOLDER``, ``FOLDER::SELECTOR`` or one file).

    Raises
    ------
    InputFileError
        One sentence: see the module docstring for what is refused.
    """
    where, selector = split_selector(path)
    if not where.exists():
        raise fail(where, "does not exist")
    found, skipped = find_series(where)
    chosen = choose_series(where, found, selector)
    source = Path(f"{where}{SERIES_SEPARATOR}{selector}") if selector is not None else where
    volume = _read_series(chosen, source, skipped)
    if where.is_file() and volume.shape[2] == 1:
        # Why: a file dragged out of a series folder is one slice of it, which looks like a broken scan.
        volume.warnings.append(f"{where.name}: one slice read on its own; give its folder to read its whole series")
    return volume


def load_all_series(folder: str | Path) -> tuple[list[Volume], list[str]]:
    """Every image series of a folder (napari: one layer each), and the sentences of those refused."""
    where = Path(folder)
    found, skipped = find_series(where)
    if not found:
        choose_series(where, found, None)  # raises the sentence
    volumes: list[Volume] = []
    refused: list[str] = []
    for one in found:
        source = where if len(found) == 1 else Path(f"{where}{SERIES_SEPARATOR}{_unique_selector(one, found)}")
        try:
            volumes.append(_read_series(one, source, skipped))
        except InputFileError as exc:
            refused.append(str(exc))
    return volumes, refused


def _matches(found: Sequence[DicomSeries], selector: str) -> list[DicomSeries]:
    """The series a selector names: the whole UID, else the series number, else the UID's end.

    Why this order: a series number of 4+ digits (Philips' 1001) can also be the end of another
    series' UID; the exact number wins, so a stored ``FOLDER::1001`` reads back the same series.
    """
    for rule in (lambda s: s.uid == selector, lambda s: s.number is not None and str(s.number) == selector,
                 lambda s: len(selector) >= 4 and s.uid.endswith(selector)):
        matches = [s for s in found if rule(s)]
        if matches:
            return matches
    return []


def _unique_selector(one: DicomSeries, found: Sequence[DicomSeries]) -> str:
    """A selector :func:`choose_series` resolves to ``one``: its number, else the shortest UID end (8+)."""
    candidates = [] if one.number is None else [str(one.number)]
    candidates += [one.uid[-n:] for n in range(min(8, len(one.uid)), len(one.uid) + 1)]
    return next(c for c in candidates if [id(s) for s in _matches(found, c)] == [id(one)])


def frame_item(ds: Any, frame: Any, name: str) -> Any | None:
    """A functional group's first item: the frame's own, else the shared one, else None."""
    for holder in (frame, (ds.get("SharedFunctionalGroupsSequence") or [None])[0]):
        if holder is not None and name in holder and len(holder[name].value):
            return holder[name].value[0]
    return None


@dataclass
class _Slice:
    """What the checks need of one image (a file, or a frame of an enhanced file)."""

    position: np.ndarray
    orientation: np.ndarray
    spacing: tuple[float, float]
    echo: float | None
    rescale: tuple[float, float]


def _number(value: Any, default: float | None = None) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _slice_of(where: Path, position: Any, orientation: Any, spacing: Any, echo: Any, rescale: Any) -> _Slice:
    if position is None or orientation is None or spacing is None:
        raise fail(where, "has no ImagePositionPatient, ImageOrientationPatient or PixelSpacing, so where its "
                          "voxels lie in the patient is unknown")
    try:
        values = [float(v) for v in (*position, *orientation, *spacing)]
    except (TypeError, ValueError):
        values = [math.nan]
    if len(values) != 11 or not all(math.isfinite(v) for v in values):
        raise fail(where, "has an unreadable ImagePositionPatient, ImageOrientationPatient or PixelSpacing")
    slope = _number(rescale.get("RescaleSlope"), 1.0) if rescale is not None else 1.0
    inter = _number(rescale.get("RescaleIntercept"), 0.0) if rescale is not None else 0.0
    return _Slice(np.array(values[:3]), np.array(values[3:9]), (values[9], values[10]), _number(echo),
                  (slope or 1.0, inter or 0.0))


def header_slices(series: DicomSeries, where: Path) -> list[_Slice]:
    """Every image's geometry, echo and rescale, in the order the headers are given."""
    out: list[_Slice] = []
    for path, ds in series.headers:
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise fail(where, f"'{series.label}' is a colour image ({ds.get('PhotometricInterpretation', '')}); "
                              "a greyscale scan is needed")
        if _frames(ds) == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
            out.append(_slice_of(where, ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient"),
                                 ds.get("PixelSpacing"), ds.get("EchoTime"), ds))
            continue
        if len(series.headers) > 1:
            raise fail(where, f"'{series.label}' is split over {len(series.headers)} multi-frame files; open one file at a time")
        frames = ds.get("PerFrameFunctionalGroupsSequence") or []
        if len(frames) != _frames(ds):
            raise fail(path, f"is a multi-frame image without per-frame positions ({len(frames)} for "
                             f"{_frames(ds)} frames), so where its voxels lie in the patient is unknown")
        stacks = {str(getattr(frame_item(ds, f, "FrameContentSequence"), "StackID", "")) for f in frames}
        if len(stacks) > 1:
            raise fail(path, f"holds {len(stacks)} stacks of frames; open a file with one stack")
        for frame in frames:
            plane, orient = frame_item(ds, frame, "PlanePositionSequence"), frame_item(ds, frame, "PlaneOrientationSequence")
            measures, echo = frame_item(ds, frame, "PixelMeasuresSequence"), frame_item(ds, frame, "MREchoSequence")
            out.append(_slice_of(path, getattr(plane, "ImagePositionPatient", None),
                                 getattr(orient, "ImageOrientationPatient", None), getattr(measures, "PixelSpacing", None),
                                 getattr(echo, "EffectiveEchoTime", None), frame_item(ds, frame, "PixelValueTransformationSequence")))
    return out


def check_series(series: DicomSeries, where: Path, slices: Sequence[_Slice]) -> None:
    """Refuse mixed echoes, and mixed orientations or pixel sizes.

    A GantryDetectorTilt tag alone is not refused: the slice positions say whether the slices
    really are sheared (a resampled series may keep the tag), and :func:`series_affine` measures that.
    """
    echoes = sorted({round(s.echo, 4) for s in slices if s.echo is not None})
    if len(echoes) > 1:
        shown = ", ".join(f"{e:g}" for e in echoes)
        raise fail(where, f"'{series.label}' mixes {len(echoes)} echoes (EchoTime {shown} ms) in one series; "
                          "split it into one series per echo (dcm2niix writes one file per echo)")
    first = slices[0]
    if any(not np.allclose(s.orientation, first.orientation, atol=1e-4) for s in slices):
        raise fail(where, f"'{series.label}' holds slices of different orientations (a localiser?); "
                          "a volume needs parallel slices")
    if any(not np.allclose(s.spacing, first.spacing, rtol=1e-4) for s in slices):
        raise fail(where, f"'{series.label}' holds slices of different pixel sizes; a volume needs one grid")


def _tilt_sentence(series: DicomSeries, degrees: float) -> str:
    return (f"'{series.label}' was acquired with a gantry tilt of {degrees:.1f} degrees, so its slices are sheared "
            "and a rectangular grid would put each slice millimetres off; resample it first (dcm2niix corrects tilt)")


def series_affine(series: DicomSeries, where: Path, slices: Sequence[_Slice], extra: list[str]) -> np.ndarray:
    """Voxel (column, row, slice) -> world RAS mm from the tags, in the slices' order."""
    first = slices[0]
    row_dir, col_dir = first.orientation[:3], first.orientation[3:]
    row_dir, col_dir = row_dir / np.linalg.norm(row_dir), col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    between_rows, between_columns = first.spacing
    if len(slices) == 1:
        ds = series.headers[0][1]
        thickness = _number(ds.get("SpacingBetweenSlices")) or _number(ds.get("SliceThickness")) or 1.0
        step = normal * thickness
    else:
        positions = np.array([s.position for s in slices])
        along = np.diff(positions, axis=0) @ normal
        if np.any(np.abs(along) < 1e-3) or not (np.all(along > 0) or np.all(along < 0)):
            repeated = int(np.sum(np.abs(along) < 1e-3))
            raise fail(where, f"'{series.label}' has {repeated or 'several'} images at a position already taken or out "
                              "of order (a 4D or repeated acquisition); a volume needs one image per slice position")
        total = positions[-1] - positions[0]
        shear = math.degrees(math.acos(min(1.0, abs(float(total @ normal)) / float(np.linalg.norm(total)))))
        if shear > MAX_SHEAR_DEG:
            raise fail(where, _tilt_sentence(series, shear))
        gaps = np.abs(along)
        median = float(np.median(gaps))
        worst = int(np.argmax(gaps))
        if gaps[worst] > MISSING_SLICE_RATIO * median:
            at = positions[[worst, worst + 1]] @ normal
            raise fail(where, f"'{series.label}' misses a slice: {gaps[worst]:.2f} mm between the slices at "
                              f"{at[0]:.2f} and {at[1]:.2f} mm along the normal, where the others are {median:.2f} mm apart")
        if gaps.max() - gaps.min() > UNEVEN_SHARE * median + 1e-3:
            extra.append(f"{where.name}: '{series.label}' has uneven slice spacing ({gaps.min():.3f} to {gaps.max():.3f} mm); "
                         f"the mean step {float(np.linalg.norm(total)) / (len(slices) - 1):.3f} mm is used, so a slice "
                         f"may be off by up to {gaps.max() - gaps.min():.3f} mm")
        step = total / (len(slices) - 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_dir * between_columns, col_dir * between_rows, step, first.position
    return ras_lps(lps)


def sorted_files(series: DicomSeries, where: Path) -> list[Path]:
    """The series' files in slice order, as GDCM's position sorter gives them."""
    import SimpleITK as sitk

    if len(series.headers) == 1:
        return [series.headers[0][0]]
    folder = series.headers[0][0].parent
    ours = {p.resolve(): p for p, _ in series.headers}
    names = [Path(n).resolve() for n in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series.uid)]
    ordered = [ours[n] for n in names if n in ours]
    if len(ordered) != len(ours):
        torn = sorted(set(ours) - set(names))
        raise fail(ours[torn[0]], f"is corrupt or truncated: GDCM could not read it as part of '{series.label}'"
                                  + (f" ({len(torn)} such files)" if len(torn) > 1 else ""))
    return ordered


def _pixels(files: Sequence[Path], where: Path, as_float: bool, precise: bool = False) -> np.ndarray:
    """The voxels, rescaled, in (column, row, slice) order: SimpleITK decodes, GDCM applies the rescale.

    ``precise`` asks for float64, so that :func:`_rescale_frames` can recover the stored integers.
    """
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # our own sentences say what ITK would print
    try:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in files])
        if as_float:
            reader.SetOutputPixelType(sitk.sitkFloat64 if precise else sitk.sitkFloat32)
        image = reader.Execute()
    except RuntimeError:
        raise fail(where, "could not be read: a DICOM file of it is corrupt or truncated, or compressed in a way "
                          "GDCM does not decode") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise fail(where, "is a colour or vector image; a greyscale scan is needed")
    array = sitk.GetArrayFromImage(image)  # (slice, row, column)
    return array.reshape((-1, *array.shape[-2:])).transpose(2, 1, 0)


def _gdcm_rescale(ds: Any) -> tuple[float, float]:
    """The one rescale GDCM applies to every frame of an enhanced file.

    GDCM (``GetInterceptSlopeValueFromSequence``) takes the shared functional group's
    PixelValueTransformation, else the first frame's, and applies it to all frames.
    """
    for group in (ds.get("SharedFunctionalGroupsSequence") or [None])[:1] + (ds.get("PerFrameFunctionalGroupsSequence") or [None])[:1]:
        if group is not None and "PixelValueTransformationSequence" in group and len(group.PixelValueTransformationSequence):
            item = group.PixelValueTransformationSequence[0]
            return (_number(item.get("RescaleSlope"), 1.0) or 1.0, _number(item.get("RescaleIntercept"), 0.0) or 0.0)
    return 1.0, 0.0


def _rescale_frames(data: np.ndarray, series: DicomSeries, where: Path, slices: Sequence[_Slice]) -> np.ndarray:
    """Each frame of an enhanced file with its own slope and intercept (float32).

    Why: GDCM applies one frame's rescale to all (:func:`_gdcm_rescale`); undoing it gives the
    stored integers back, and each frame's own ``v = stored * slope + intercept`` follows. Stored
    values that do not come back as integers mean GDCM did something else: refused, not guessed.
    """
    slope, intercept = _gdcm_rescale(series.headers[0][1])
    stored = (data - intercept) / slope
    if np.abs(stored - np.round(stored)).max(initial=0.0) > 0.01:
        raise fail(where, f"'{series.label}' has a different rescale slope or intercept on each frame and the decoder "
                          "did not return its stored values, so its voxel values cannot be trusted")
    own = np.array([s.rescale for s in slices])
    return (np.round(stored) * own[:, 0] + own[:, 1]).astype(np.float32)


def _header(series: DicomSeries, count: int) -> dict[str, Any]:
    """The kept fields (:data:`KEPT_FIELDS`) as plain values, the series hash and its label."""
    ds = series.headers[0][1]
    out: dict[str, Any] = {"format": "DICOM", "series_label": series.label, "images": count,
                           "series_sha256": hashlib.sha256(series.uid.encode()).hexdigest()[:16]}
    for name in KEPT_FIELDS:
        value = ds.get(name)
        if value in (None, ""):
            continue
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            out[name] = [str(v) for v in value]
        elif isinstance(value, int):
            out[name] = int(value)
        else:
            number = _number(value)
            out[name] = number if number is not None and not isinstance(value, str) else str(value)
    return out


def _read_series(series: DicomSeries, source: Path, skipped: int) -> Volume:
    """One series as a Volume: checks from the headers, then the pixels, then the geometry."""
    where = source
    first = series.headers[0][1]
    rows, columns = int(first.Rows), int(first.Columns)
    images = sum(_frames(ds) for _, ds in series.headers)
    check_ceiling(where, (columns, rows, images), max(1, int(first.get("BitsAllocated", 16) or 16) // 8))
    if len(series.headers) > 1:
        sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in series.headers}
        if len(sizes) > 1:
            raise fail(where, f"'{series.label}' holds images of {len(sizes)} different sizes; a volume needs one grid")
        files = sorted_files(series, where)
        by_path = dict(series.headers)
        series = DicomSeries(series.uid, series.number, series.description, series.modality,
                             [(f, by_path[f]) for f in files])
    slices = header_slices(series, where)
    check_series(series, where, slices)
    warnings: list[str] = []
    affine = series_affine(series, where, slices, warnings)
    scaled = any(s.rescale != (1.0, 0.0) for s in slices)
    # an enhanced file whose frames' rescale is not the one GDCM applies to all of them
    per_frame = "PerFrameFunctionalGroupsSequence" in first and len({_gdcm_rescale(first), *(s.rescale for s in slices)}) > 1
    data = _pixels([p for p, _ in series.headers], where, as_float=scaled or per_frame, precise=per_frame)
    if data.shape != (columns, rows, len(slices)):
        raise fail(where, f"'{series.label}' decoded to shape {data.shape}, not the {(columns, rows, len(slices))} "
                          "its headers describe")
    if per_frame:
        data = _rescale_frames(data, series, where, slices)
    zooms = tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0))
    low, high = PLAUSIBLE_VOXEL_MM
    if not all(low <= z <= high for z in zooms):
        raise fail(where, f"'{series.label}' has an implausible voxel size ({', '.join(f'{z:g}' for z in zooms)} mm)")
    if skipped:
        warnings.append(f"{where.name}: {skipped} non-image DICOM object{'s were' if skipped > 1 else ' was'} "
                        "skipped (reports, segmentations or presentation states)")
    return Volume(data=data, affine=affine, zooms=zooms, path=source, sha256=voxel_sha256(data),  # type: ignore[arg-type]
                  header=_header(series, len(slices)), warnings=warnings)
