"""Load NIfTI and MGH volumes safely into a :class:`Volume`.

Why so much checking before reading: a scan's header can claim anything. A truncated
download, a header that claims 10^12 voxels or a 5D vector image must end in one clear
sentence, not in an out-of-memory kill or an array of garbage. So the header is read
first, the data size it implies is compared with what the file really holds (without
allocating it), and only then are the voxels read. Voxels that are NaN or infinite are
reported and set to 0 (a defined treatment) before any model or display sees them.

The data stay in the file's own voxel order here; :mod:`core.io.orientation` is the one
place that maps them to the display order.
"""

from __future__ import annotations

import gzip
import hashlib
import math
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


@dataclass
class Volume:
    """A 3D or 4D image in its file's voxel order, with its geometry.

    Attributes
    ----------
    data : numpy.ndarray
        Voxels, shape ``(i, j, k)`` or ``(i, j, k, t)`` in the file's order. Float32
        when the file is scaled or floating point, the file's integer type otherwise.
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
    """Bytes the gzip stream of ``path`` decompresses to, counting no further than ``needed``.

    Reads in chunks and discards them, so memory stays small whatever the header
    claims. Raises InputFileError when the stream is cut short or corrupt.
    """
    # Fast path: a complete single-member gzip file ends with the payload size mod 2**32.
    with open(path, "rb") as handle:
        handle.seek(-4, 2)
        (isize,) = struct.unpack("<I", handle.read(4))
    if isize == needed % (1 << 32):
        return needed
    count = 0
    try:
        with gzip.open(path, "rb") as stream:
            while count < needed:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    break
                count += len(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise _fail(path, f"the compressed data is truncated or corrupt ({exc})") from None
    return count


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
    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
        raise _fail(path, f"could not be read as a NIfTI/MGH image ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image, nib.MGHImage)):
        raise _fail(path, f"is a {type(img).__name__}, not a NIfTI or MGH image")

    header = img.header
    shape = _spatial_shape(path, img.shape)
    dtype = np.dtype(header.get_data_dtype())
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise _fail(path, f"stores voxels as {dtype}, which is not a scalar intensity type")
    zooms = _check_geometry(path, img)

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
        slope, inter = (header.get_slope_inter() if hasattr(header, "get_slope_inter") else (None, None))
        scaled = slope not in (None, 1.0) or inter not in (None, 0.0)
        if dtype.kind in "biu" and not scaled:
            data = np.asarray(img.dataobj)
        else:
            data = img.get_fdata(dtype=np.float32)
    except Exception as exc:  # noqa: BLE001
        raise _fail(path, f"could not be read to the end ({type(exc).__name__}: {exc})") from None
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
    )
    if isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
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
