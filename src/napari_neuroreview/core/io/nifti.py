"""Load NIfTI and MGH volumes safely into a :class:`Volume`.

Why so much checking before reading: a scan's header can claim anything. A truncated
download, a header that claims 10^12 voxels or a 5D vector image must end in one clear
sentence, not in an out-of-memory kill or an array of garbage. So the header is read
first, the data size it implies is compared with what the file really holds (without
allocating it), and only then are the voxels read. Voxels that are NaN or infinite are
reported and set to 0 (a defined treatment) before any model or display sees them.

Memory is bounded before anything is decompressed: the voxel count the raw header
claims is checked against a ceiling (:func:`max_voxels`, ``NEUROREVIEW_MAX_VOXELS``), and a
compressed stream is only ever read in chunks, never further than the header's promise
plus :data:`TRAILING_MARGIN`; a stream that inflates beyond that is refused as a likely
decompression bomb. A 1 MB ``.nii.gz`` can otherwise claim (and inflate to) gigabytes.

Which affine wins follows the NIfTI rules (and nibabel): the sform when its code is > 0,
else the qform when its code is > 0, else the voxel sizes alone. Before that the two are
compared (:func:`_check_qform_sform`): a disagreement on left and right (or any axis
direction) is refused, since a hemisphere could be shown on the wrong side; a shift or
rotation between them is a warning naming both; a qform whose voxel size (pixdim) is 0 is
refused when it is the only orientation (nibabel would silently make the voxels 1 mm).

The data stay in the file's own voxel order here; :mod:`core.io.orientation` is the one
place that maps them to the display order.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import InputFileError

SUPPORTED_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")
#: Voxel sizes outside this range (mm) are treated as a broken header, not as a scan.
PLAUSIBLE_VOXEL_MM = (1e-3, 50.0)
_CHUNK = 1 << 22
#: Environment variable that raises (or lowers) :data:`DEFAULT_MAX_VOXELS`.
MAX_VOXELS_ENV = "NEUROREVIEW_MAX_VOXELS"
#: Default ceiling on the voxels one file may hold: 2**28 voxels, 1 GiB once read as float32
#: (what every command holds). A 1 mm brain is 1.7e7 voxels, a 0.5 mm SWI 512 x 512 x 320 is
#: 8.4e7, a 4D BOLD of 64 x 64 x 36 x 1200 volumes is 1.8e8: all fit with room to spare,
#: while the peak of the heaviest command (``mask``, a few float32 copies) stays within a
#: laptop's memory. Longer multiband series (HCP's 104 x 90 x 72 x 1200 = 8.1e8) need the
#: environment variable.
DEFAULT_MAX_VOXELS = 1 << 28
#: Bytes a compressed stream may inflate to beyond what its header promises (MGH footers, padding).
TRAILING_MARGIN = 1 << 20
#: Header extensions larger than this (bytes before the voxels) are refused, not read.
MAX_HEADER_BYTES = 1 << 26
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Volume:
    """A 3D or 4D image in its file's voxel order, with its geometry.

    Attributes
    ----------
    data : numpy.ndarray
        Voxels, shape ``(i, j, k)`` or ``(i, j, k, t)`` in the file's order. Float32
        for floating-point files, float64 for scaled integer files (nibabel's choice,
        kept because the voxel sha256 depends on it), the file's integer type otherwise.
    affine : numpy.ndarray
        4 x 4 map from voxel indices (i, j, k, 1) to world RAS+ millimetres.
    zooms : tuple of float
        Voxel size in mm along i, j, k.
    path : Path or None
        Where it came from (None for images made in memory).
    sha256 : str
        Hash of the voxel values (see :func:`voxel_sha256`): guards annotations against
        being attached to another scan that happens to share the file name.
    tr_s : float or None
        Repetition time in seconds for 4D series, when the header states it.
    header : dict
        The header's fields as plain Python values (kept for export and display).
    warnings : list of str
        Sentences about what was found and fixed (NaN voxels, missing orientation).
    """

    data: np.ndarray
    affine: np.ndarray
    zooms: tuple[float, float, float]
    path: Path | None = None
    sha256: str = ""
    tr_s: float | None = None
    header: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape in file voxel order."""
        return tuple(self.data.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """The first three dimensions."""
        return tuple(self.data.shape[:3])  # type: ignore[return-value]

    @property
    def is_4d(self) -> bool:
        """True for a time series (fMRI) or any volume with a fourth axis."""
        return self.data.ndim == 4

    @property
    def orientation(self) -> str:
        """Axis codes of the voxel axes, e.g. ``"LPS"`` (nibabel's convention)."""
        return "".join(nib.aff2axcodes(self.affine))

    @property
    def name(self) -> str:
        """File name without its NIfTI/MGH suffix, for layer names."""
        if self.path is None:
            return "volume"
        name = self.path.name
        for suffix in SUPPORTED_SUFFIXES:
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name


def voxel_sha256(data: np.ndarray) -> str:
    """Hash of an array's values, shape and dtype.

    Why not the file's hash: the same scan re-saved (another compression level, a
    header edit) keeps its voxels, and annotations should follow the voxels.
    """
    digest = hashlib.sha256()
    digest.update(f"{data.dtype.str}|{data.shape}|".encode())
    digest.update(np.ascontiguousarray(data).tobytes())
    return digest.hexdigest()


def _fail(path: Path, problem: str) -> InputFileError:
    return InputFileError(f"{path}: {problem}")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _gzip_payload_size(path: Path, needed: int) -> int:
    """Bytes the gzip stream of ``path`` decompresses to, counting no further than it may.

    Reads in chunks and discards them, so memory stays small whatever the header
    claims. A stream that inflates beyond ``needed`` + :data:`TRAILING_MARGIN` is refused
    as soon as it does (a decompression bomb, or a header that lies). Raises
    InputFileError when the stream is cut short, corrupt or too long.
    """
    # Fast path: a complete single-member gzip file ends with the payload size mod 2**32.
    with open(path, "rb") as handle:
        handle.seek(-4, 2)
        (isize,) = struct.unpack("<I", handle.read(4))
    if isize == needed % (1 << 32):
        return needed
    limit = needed + TRAILING_MARGIN
    count = 0
    try:
        with gzip.open(path, "rb") as stream:
            while count <= limit:
                chunk = stream.read(min(_CHUNK, limit + 1 - count))
                if not chunk:
                    break
                count += len(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise _fail(path, f"the compressed data is truncated or corrupt ({exc})") from None
    if count > limit:
        raise _fail(path, f"the compressed data inflates to more than the {needed:,} bytes its header "
                          "describes (a decompression bomb or a wrong header); it was not read")
    return count


def max_voxels() -> int:
    """The ceiling on voxels per file: ``NEUROREVIEW_MAX_VOXELS`` or :data:`DEFAULT_MAX_VOXELS`."""
    raw = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_VOXELS
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 1:
        raise InputFileError(f"{MAX_VOXELS_ENV}={raw!r} is not a positive number of voxels")
    return int(value)


def _read_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of the (possibly gzipped) file, decompressing no more."""
    try:
        with (gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")) as handle:
            return handle.read(size)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise _fail(path, f"could not be read: the compressed data is truncated or corrupt ({exc})") from None


def _raw_nifti_header(block: bytes) -> np.void | None:
    """The NIfTI-1 or NIfTI-2 header fields exactly as stored (nibabel 'fixes' some on load)."""
    for dtype, size in ((nib.nifti1.header_dtype, 348), (nib.nifti2.header_dtype, 540)):
        for order in "<>":
            if len(block) >= size and struct.unpack(f"{order}i", block[:4])[0] == size:
                return np.frombuffer(block[:size], dtype=dtype.newbyteorder(order))[0]
    return None


def _claimed_size(path: Path) -> tuple[tuple[int, ...], int, int, np.void | None]:
    """(shape, bytes per voxel, data offset, raw NIfTI fields) from the raw header, or refuse.

    Read before nibabel touches the file, so that neither a huge claimed volume nor huge
    header extensions are ever read into memory. Unknown layouts return an empty shape
    and are left to nibabel (which then fails with its own message).
    """
    block = _read_head(path, 540)
    raw = _raw_nifti_header(block)
    if raw is not None:
        ndim = int(raw["dim"][0])
        shape = tuple(int(d) for d in raw["dim"][1 : 1 + ndim]) if 0 < ndim <= 7 else ()
        code = int(raw["datatype"])
        try:
            itemsize = int(nib.nifti1.data_type_codes.dtype[code].itemsize)
        except KeyError:
            itemsize = max(1, int(raw["bitpix"]) // 8)
        offset = float(raw["vox_offset"])
        if not math.isfinite(offset) or offset > MAX_HEADER_BYTES:
            raise _fail(path, f"claims {offset:,.0f} bytes of header before its voxels; it is not a scan header")
        return shape, itemsize, int(offset), raw
    if path.name.lower().endswith((".mgz", ".mgh")) and len(block) >= 24:
        _version, *dims, code = struct.unpack(">6i", block[:24])
        itemsize = {0: 1, 1: 4, 3: 4, 4: 2}.get(code, 4)
        return tuple(dims), itemsize, 284, None
    return (), 1, 0, None


def _check_ceiling(path: Path, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse a header that claims more voxels than :func:`max_voxels` allows, before reading."""
    if not shape or any(d < 1 for d in shape):
        return  # left to the shape checks, which say what is wrong
    voxels = math.prod(shape)
    limit = max_voxels()
    if voxels > limit:
        raise _fail(path, f"its header claims {voxels:,} voxels (shape {shape}, {voxels * itemsize / 2**30:.1f} GiB "
                          f"of data), more than the {limit:,} read by default; set {MAX_VOXELS_ENV} to read it")


def _header_dict(header: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        keys = list(header.keys())
    except AttributeError:  # pragma: no cover - every supported header has keys()
        return out
    for key in keys:
        try:
            value = np.asarray(header[key])
            out[key] = value.item() if value.ndim == 0 else value.tolist()
        except Exception:  # noqa: BLE001 - an odd field must not stop loading
            continue
    for key, value in list(out.items()):
        if isinstance(value, bytes):
            out[key] = value.decode("latin-1").rstrip("\x00")
    return out


def _spatial_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop trailing singleton axes beyond the third; refuse 2D and 5D+ images."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3:
        raise _fail(path, f"is a {len(shape)}D image (shape {shape}); a 3D or 4D volume is needed")
    if len(shape) > 4:
        raise _fail(path, f"is a {len(shape)}D image (shape {shape}); a 3D or 4D volume is needed")
    if any(s < 1 for s in shape):
        raise _fail(path, f"has an impossible shape {shape} in its header")
    return shape


def _check_geometry(path: Path, img: Any) -> tuple[float, float, float]:
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        raise _fail(path, "has a header affine with NaN or infinite entries")
    zooms = tuple(float(z) for z in nib.affines.voxel_sizes(affine))
    low, high = PLAUSIBLE_VOXEL_MM
    if not all(math.isfinite(z) and low <= z <= high for z in zooms):
        shown = ", ".join(f"{z:g}" for z in zooms)
        raise _fail(path, f"has an implausible voxel size ({shown} mm) in its header")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise _fail(path, "has a singular header affine (its voxel axes are not independent)")
    return zooms  # type: ignore[return-value]


def _xform_label(code: int) -> str:
    try:
        return f"code {code}, {nib.nifti1.xform_codes.label[code]}"
    except KeyError:
        return f"code {code}"


def _check_qform_sform(path: Path, header: Any, raw: np.void | None) -> list[str]:
    """Compare the sform and the qform; refuse or warn (see the module docstring).

    Returns the warning sentences. Why here: nibabel silently prefers the sform, and
    silently gives a zero-pixdim qform 1 mm voxels; a reader of the scan must know.
    """
    if raw is None:
        return []
    scode, qcode = int(raw["sform_code"]), int(raw["qform_code"])
    pixdim = np.asarray(raw["pixdim"][1:4], dtype=float)
    if qcode > 0 and not np.all(np.isfinite(pixdim) & (pixdim > 0)):
        shown = ", ".join(f"{v:g}" for v in pixdim)
        if scode == 0:
            raise _fail(path, f"its only orientation, the qform ({_xform_label(qcode)}), has voxel size "
                              f"(pixdim) {shown}; the voxel size is unknown, so distances and positions would be wrong")
        return [f"{path.name}: the qform has voxel size (pixdim) {shown} and is ignored; the sform "
                f"({_xform_label(scode)}) gives the geometry"]
    if scode == 0 or qcode == 0:
        return []
    sform = header.get_sform()
    try:
        qform = header.get_qform()
    except Exception:  # noqa: BLE001 - nibabel raises ValueError for an impossible quaternion
        return [f"{path.name}: the qform ({_xform_label(qcode)}) holds an impossible rotation and is ignored; "
                f"the sform ({_xform_label(scode)}) gives the geometry"]
    if not (np.all(np.isfinite(sform)) and np.all(np.isfinite(qform))):
        return []  # the affine checks refuse a non-finite affine with their own sentence
    shape = np.asarray(header.get_data_shape()[:3], dtype=float)
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    moved = float(np.max(np.linalg.norm((corners @ sform.T - corners @ qform.T)[:, :3], axis=1)))
    tolerance = 0.5 * float(min(nib.affines.voxel_sizes(sform)))
    if moved <= tolerance:
        return []
    s_codes, q_codes = "".join(nib.aff2axcodes(sform)), "".join(nib.aff2axcodes(qform))
    s_det, q_det = np.linalg.det(sform[:3, :3]), np.linalg.det(qform[:3, :3])
    both = f"the sform ({_xform_label(scode)}) says {s_codes} but the qform ({_xform_label(qcode)}) says {q_codes}"
    if ("R" in s_codes) != ("R" in q_codes) or np.sign(s_det) != np.sign(q_det):
        raise _fail(path, f"{both}: they disagree on left and right, so a hemisphere could be shown on the "
                          "wrong side; fix the header (e.g. fslorient) before using this scan")
    if s_codes != q_codes:
        raise _fail(path, f"{both}: they disagree on the direction of the axes; fix the header before using this scan")
    return [f"{path.name}: the sform ({_xform_label(scode)}) and the qform ({_xform_label(qcode)}) disagree by "
            f"up to {moved:.1f} mm across the field of view; the sform is used, as the NIfTI rules say"]


def _scaling(path: Path, img: Any, raw: np.void | None, dtype: np.dtype) -> bool:
    """Whether the voxels are scaled; refuse a scale factor that overflows float32.

    Why: a scl_slope of 1e38 turns every voxel into infinity (then 0 by the NaN
    treatment): a blank scan with no word. Checked from the header for integer voxels,
    where the largest value is known without reading. The scaling in force is the data
    proxy's: nibabel moves it there on load and leaves NaN in the header.
    """
    if raw is not None:
        slope, inter = float(raw["scl_slope"]), float(raw["scl_inter"])
        if math.isinf(slope) or (slope not in (0.0,) and math.isfinite(slope) and not math.isfinite(inter)):
            raise _fail(path, f"has an invalid scale factor (scl_slope {slope:g}, scl_inter {inter:g}) in its header")
    slope, inter = _proxy_scaling(img)
    scaled = slope != 1.0 or inter != 0.0
    if scaled and dtype.kind in "biu":
        info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
        peak = abs(slope) * max(abs(int(info.min)), int(info.max)) + abs(inter)
        if not peak <= _FLOAT32_MAX:
            raise _fail(path, f"has an absurd scale factor (scl_slope {slope:g}, scl_inter {inter:g}): its "
                              f"{dtype} voxels would reach {peak:.3g}, beyond the float32 range")
    return scaled


def _proxy_scaling(img: Any) -> tuple[float, float]:
    """(slope, intercept) that reading the voxels will apply; (1, 0) when none."""
    slope = float(np.asarray(getattr(img.dataobj, "slope", 1.0)).item())
    inter = float(np.asarray(getattr(img.dataobj, "inter", 0.0)).item())
    return slope, inter


def _check_scaled_overflow(path: Path, img: Any, data: np.ndarray) -> None:
    """Refuse floating-point voxels that the scale factor pushed to infinity."""
    inf = np.isinf(data)
    if not inf.any():
        return
    unscaled = np.asanyarray(img.dataobj.get_unscaled())
    if np.all(np.isfinite(unscaled[inf.reshape(unscaled.shape)])):
        slope, inter = _proxy_scaling(img)
        raise _fail(path, f"has an absurd scale factor (scl_slope {slope:g}, scl_inter {inter:g}): "
                          f"{int(inf.sum()):,} voxels overflow the float32 range")


def _tr_seconds(header: Any) -> float | None:
    try:
        zooms = header.get_zooms()
    except Exception:  # noqa: BLE001
        return None
    if len(zooms) < 4 or not zooms[3]:
        return None
    tr = float(zooms[3])
    try:
        t_unit = header.get_xyzt_units()[1]
    except Exception:  # noqa: BLE001 - MGH headers store TR in ms
        return tr / 1000.0
    return tr / 1000.0 if t_unit == "msec" else tr / 1e6 if t_unit == "usec" else tr


def load_volume(path: str | Path) -> Volume:
    """Read a 3D or 4D NIfTI (``.nii``, ``.nii.gz``) or MGH (``.mgz``) file.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    Volume
        Voxels in file order, affine, zooms, voxel-data hash, header and warnings.

    Raises
    ------
    InputFileError
        One sentence naming the file and the problem: missing, empty, not an image,
        2D or 5D, truncated, a header that claims more data than the file holds, an
        implausible voxel size or affine, or an unsupported voxel type.
    """
    path = Path(path)
    if not path.exists():
        raise _fail(path, "does not exist")
    if path.is_dir():
        raise _fail(path, "is a folder, not an image file")
    if path.stat().st_size == 0:
        raise _fail(path, "is empty (0 bytes)")
    if not path.name.lower().endswith(SUPPORTED_SUFFIXES):
        raise _fail(path, "is not a NIfTI (.nii, .nii.gz) or MGH (.mgz) file")
    claimed, itemsize, _offset, raw = _claimed_size(path)
    _check_ceiling(path, claimed, itemsize)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
        raise _fail(path, f"could not be read as a NIfTI/MGH image ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image, nib.MGHImage)):
        raise _fail(path, f"is a {type(img).__name__}, not a NIfTI or MGH image")

    header = img.header
    shape = _spatial_shape(path, img.shape)
    _check_ceiling(path, tuple(int(s) for s in img.shape), 1)
    dtype = np.dtype(header.get_data_dtype())
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise _fail(path, f"stores voxels as {dtype}, which is not a scalar intensity type")
    is_nifti = isinstance(img, (nib.Nifti1Image, nib.Nifti2Image))
    orientation_warnings = _check_qform_sform(path, header, raw if is_nifti else None)
    zooms = _check_geometry(path, img)
    scaled = _scaling(path, img, raw if is_nifti else None, dtype)

    needed = int(header.get_data_offset()) + math.prod(int(s) for s in img.shape) * dtype.itemsize
    if _is_gzip(path):
        held = _gzip_payload_size(path, needed)
    else:
        held = path.stat().st_size
    if held < needed:
        raise _fail(
            path,
            f"is truncated or its header is wrong: the header claims {needed:,} bytes "
            f"(shape {tuple(img.shape)}, {dtype}) but the file holds {held:,}",
        )

    try:
        if dtype.kind in "biu":
            # The proxy applies any scaling itself (to float64 for scaled integers): kept as it
            # always was, because the voxel sha256 that stored reviews are keyed on depends on it.
            data = np.asarray(img.dataobj)
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
                data = img.get_fdata(dtype=np.float32)
    except Exception as exc:  # noqa: BLE001
        raise _fail(path, f"could not be read to the end ({type(exc).__name__}: {exc})") from None
    if scaled and dtype.kind == "f":
        _check_scaled_overflow(path, img, data)
    data = data.reshape(shape)
    if data.dtype == bool:
        data = data.astype(np.uint8)

    volume = Volume(
        data=data,
        affine=np.asarray(img.affine, dtype=float),
        zooms=zooms,
        path=path,
        sha256=voxel_sha256(data),
        tr_s=_tr_seconds(header) if len(shape) == 4 else None,
        header=_header_dict(header),
        warnings=orientation_warnings,
    )
    if is_nifti:
        if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
            volume.warnings.append(
                f"{path.name}: the header has no orientation (qform and sform codes are 0); "
                "left-right and anterior-posterior are assumed, not known"
            )
    _treat_nonfinite(volume)
    return volume


def _treat_nonfinite(volume: Volume) -> None:
    """Set NaN/Inf voxels to 0 and say so: the one defined treatment, done once here."""
    if volume.data.dtype.kind != "f":
        return
    bad = ~np.isfinite(volume.data)
    count = int(bad.sum())
    if count == 0:
        return
    volume.data = np.where(bad, np.float32(0), volume.data).astype(volume.data.dtype, copy=False)
    share = 100.0 * count / bad.size
    name = volume.path.name if volume.path else "the image"
    volume.warnings.append(
        f"{name}: {count:,} voxels ({share:.3g}%) are NaN or infinite; they were set to 0 "
        "before display and analysis"
    )
    volume.header["nonfinite_voxels"] = count


def constant_value(volume: Volume) -> float | None:
    """The value of every voxel when the image is constant, else None.

    Why: a constant image (a blank export, a mask saved as a scan) gives every analysis
    an empty result; the commands say so instead of reporting nothing found.
    """
    data = volume.data
    if data.size == 0:
        return None
    low, high = data.min(), data.max()  # two passes, no temporary the size of the volume
    return float(low) if low == high else None


def volume_info(volume: Volume) -> dict[str, Any]:
    """The summary ``neuroreview info`` prints: shape, zooms, orientation, affine."""
    return {
        "file": str(volume.path) if volume.path else None,
        "shape": list(volume.shape),
        "zooms": [round(z, 6) for z in volume.zooms],
        "orientation": volume.orientation,
        "affine": np.round(volume.affine, 6).tolist(),
        "dtype": str(volume.data.dtype),
        "tr_s": volume.tr_s,
        "sha256": volume.sha256,
        "warnings": list(volume.warnings),
    }


def volume_from_image(img: Any, path: str | Path | None = None) -> Volume:
    """A :class:`Volume` from an in-memory nibabel image (phantoms, tests, pipelines).

    Same voxel types and NaN treatment as :func:`load_volume`; the file checks are
    skipped because there is no file.
    """
    proxy = img.dataobj
    unscaled = getattr(proxy, "slope", 1.0) == 1.0 and getattr(proxy, "inter", 0.0) == 0.0
    if np.dtype(img.get_data_dtype()).kind in "biu" and unscaled:
        data = np.asarray(proxy)
    else:
        data = img.get_fdata(dtype=np.float32)
    affine = np.asarray(img.affine, dtype=float)
    volume = Volume(
        data=data, affine=affine, zooms=tuple(float(z) for z in nib.affines.voxel_sizes(affine)),
        path=Path(path) if path else None, sha256=voxel_sha256(data),
    )
    _treat_nonfinite(volume)
    return volume
