"""Load NIfTI and MGH volumes safely into a :class:`Volume`, and save NIfTI the one way.

Why so much checking before reading: a scan's header can claim anything. A truncated
download, a header that claims 10^12 voxels or a 5D vector image must end in one clear
sentence, not in an out-of-memory kill or an array of garbage. So the header is read
first, the data size it implies is compared with what the file really holds (without
allocating it), and only then are the voxels read. Voxels that are NaN or infinite are
reported and set to 0 (a defined treatment) before any model or display sees them.

Memory is bounded before anything is decompressed (:mod:`core.io.nifti_bounds`): a 1 MB
``.nii.gz`` can otherwise claim (and inflate to) gigabytes.

Which affine wins follows the NIfTI rules (and nibabel): the sform when its code is > 0,
else the qform when its code is > 0, else the voxel sizes alone. Before that the two are
compared (:func:`_check_qform_sform`): a disagreement on left and right (or any axis
direction) is refused, since a hemisphere could be shown on the wrong side; a shift or
rotation between them is a warning naming both; a qform whose voxel size (pixdim) is 0 is
refused when it is the only orientation (nibabel would silently make the voxels 1 mm).

Writing has one rule too (:func:`save_volume`, :func:`volume_writer`): a chosen voxel type,
the sform AND the qform set from the affine with the same code, and units in mm and
seconds, so that tools which read the qform (SimpleITK, ITK-SNAP, 3D Slicer) and those which
read the sform (FSL, nibabel) put the voxels at the same place.

The data stay in the file's own voxel order here; :mod:`core.io.orientation` is the one
place that maps them to the display order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import GeometryError
from .nifti_bounds import check_ceiling, claimed_size, fail, gzip_payload_size, is_gzip
from .outputs import Output, check_outputs, write_together

SUPPORTED_SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")
#: Voxel sizes outside this range (mm) are treated as a broken header, not as a scan.
PLAUSIBLE_VOXEL_MM = (1e-3, 50.0)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: NIfTI xform codes by name: a file on a scan's own grid is "scanner" (1); one on a grid
#: registered to another image is "aligned" (2); a template's grid is "mni" (4).
XFORM_CODES = {"scanner": 1, "aligned": 2, "talairach": 3, "mni": 4}
#: Voxel types :func:`save_volume` writes: uint8 masks, uint8/uint16/int32 labels, float32 maps.
SAVE_DTYPES = tuple(np.dtype(d) for d in (np.uint8, np.uint16, np.int16, np.int32, np.float32))


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
        raise fail(path, f"is a {len(shape)}D image (shape {shape}); a 3D or 4D volume is needed")
    if len(shape) > 4:
        raise fail(path, f"is a {len(shape)}D image (shape {shape}); a 3D or 4D volume is needed")
    if any(s < 1 for s in shape):
        raise fail(path, f"has an impossible shape {shape} in its header")
    return shape


def _check_geometry(path: Path, img: Any) -> tuple[float, float, float]:
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)):
        raise fail(path, "has a header affine with NaN or infinite entries")
    zooms = tuple(float(z) for z in nib.affines.voxel_sizes(affine))
    low, high = PLAUSIBLE_VOXEL_MM
    if not all(math.isfinite(z) and low <= z <= high for z in zooms):
        shown = ", ".join(f"{z:g}" for z in zooms)
        raise fail(path, f"has an implausible voxel size ({shown} mm) in its header")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise fail(path, "has a singular header affine (its voxel axes are not independent)")
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
            raise fail(path, f"its only orientation, the qform ({_xform_label(qcode)}), has voxel size "
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
        raise fail(path, f"{both}: they disagree on left and right, so a hemisphere could be shown on the "
                          "wrong side; fix the header (e.g. fslorient) before using this scan")
    if s_codes != q_codes:
        raise fail(path, f"{both}: they disagree on the direction of the axes; fix the header before using this scan")
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
            raise fail(path, f"has an invalid scale factor (scl_slope {slope:g}, scl_inter {inter:g}) in its header")
    slope, inter = _proxy_scaling(img)
    scaled = slope != 1.0 or inter != 0.0
    if scaled and dtype.kind in "biu":
        info = np.iinfo(dtype) if dtype.kind != "b" else np.iinfo(np.uint8)
        peak = abs(slope) * max(abs(int(info.min)), int(info.max)) + abs(inter)
        if not peak <= _FLOAT32_MAX:
            raise fail(path, f"has an absurd scale factor (scl_slope {slope:g}, scl_inter {inter:g}): its "
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
        raise fail(path, f"has an absurd scale factor (scl_slope {slope:g}, scl_inter {inter:g}): "
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
    """Read a 3D or 4D NIfTI (``.nii``, ``.nii.gz``) or MGH (``.mgz``) file, or a DICOM series.

    Parameters
    ----------
    path : str or Path
        The file; or a DICOM series: a folder, ``FOLDER::SELECTOR`` when it holds several, or one
        DICOM file (read by :func:`core.io.dicom.load_dicom`, which returns the same Volume);
        a DICOM SEG file gives its labels on the series it references (:func:`core.io.dicom_seg.read_seg`).

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
    if not str(path).lower().endswith(SUPPORTED_SUFFIXES):
        # pydicom and SimpleITK are imported only when a scan is DICOM
        from .dicom import is_dicom_path, load_dicom
        from .dicom_seg import is_seg_file, read_seg

        if is_seg_file(path):  # a microbleed SEG: labels on the series it references
            return read_seg(path)
        if is_dicom_path(path):
            volume = load_dicom(path)
            _treat_nonfinite(volume)
            return volume
    path = Path(path)
    if not path.exists():
        raise fail(path, "does not exist")
    if path.is_dir():
        raise fail(path, "is a folder, not an image file")
    if path.stat().st_size == 0:
        raise fail(path, "is empty (0 bytes)")
    if not path.name.lower().endswith(SUPPORTED_SUFFIXES):
        raise fail(path, "is not a NIfTI (.nii, .nii.gz), MGH (.mgz) or DICOM file")
    claimed, itemsize, _offset, raw = claimed_size(path)
    check_ceiling(path, claimed, itemsize)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for bad files
        raise fail(path, f"could not be read as a NIfTI/MGH image ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image, nib.MGHImage)):
        raise fail(path, f"is a {type(img).__name__}, not a NIfTI or MGH image")

    header = img.header
    shape = _spatial_shape(path, img.shape)
    check_ceiling(path, tuple(int(s) for s in img.shape), 1)
    dtype = np.dtype(header.get_data_dtype())
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise fail(path, f"stores voxels as {dtype}, which is not a scalar intensity type")
    is_nifti = isinstance(img, (nib.Nifti1Image, nib.Nifti2Image))
    orientation_warnings = _check_qform_sform(path, header, raw if is_nifti else None)
    zooms = _check_geometry(path, img)
    scaled = _scaling(path, img, raw if is_nifti else None, dtype)

    needed = int(header.get_data_offset()) + math.prod(int(s) for s in img.shape) * dtype.itemsize
    if is_gzip(path):
        held = gzip_payload_size(path, needed)
    else:
        held = path.stat().st_size
    if held < needed:
        raise fail(
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
        raise fail(path, f"could not be read to the end ({type(exc).__name__}: {exc})") from None
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


def label_dtype(max_value: int, smallest: Any = np.uint8) -> np.dtype:
    """The smallest label type, from ``smallest`` up (uint8, uint16, int32), that holds ``max_value``.

    Why: other tools open int32 labels but not every one opens uint32 or int64 (nibabel
    refuses to write int64 without being told).
    """
    for dtype in (np.uint8, np.uint16, np.int32):
        if np.dtype(dtype).itemsize >= np.dtype(smallest).itemsize and max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise GeometryError(f"label value {max_value} is too large for a NIfTI label image")


def _xform_codes(space: str | tuple[int, int]) -> tuple[int, int]:
    """(sform code, qform code) of a space name or an explicit pair (a source header's codes)."""
    if isinstance(space, str):
        if space not in XFORM_CODES:
            raise ValueError(f"unknown NIfTI space {space!r}; choose among {', '.join(XFORM_CODES)}")
        return XFORM_CODES[space], XFORM_CODES[space]
    sform, qform = (int(c) for c in space)
    if not (1 <= sform <= 4 and 1 <= qform <= 4):
        raise ValueError(f"NIfTI xform codes must be 1 to 4, not {space!r}")
    return sform, qform


def _nifti_image(data: np.ndarray, affine: np.ndarray, dtype: Any, space: str | tuple[int, int],
                 descrip: str, tr_s: float | None) -> nib.Nifti1Image:
    """The NIfTI-1 image :func:`volume_writer` saves; a wrong argument is a bug (ValueError)."""
    arr, target = np.asarray(data), np.dtype(dtype)
    affine = np.asarray(affine, dtype=float)
    if target not in SAVE_DTYPES:
        raise ValueError(f"save_volume writes {', '.join(map(str, SAVE_DTYPES))}, not {target}")
    if arr.ndim not in (3, 4) or affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"save_volume needs 3D/4D data and a finite 4 x 4 affine, not {arr.shape} and {affine.shape}")
    if target.kind in "iu" and arr.size:
        # A silent wrap-around (70 000 labels cast to uint16) would corrupt the file.
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"save_volume: {arr.dtype} voxels with fractions cannot be written as {target}")
        info = np.iinfo(target)
        if arr.min() < info.min or arr.max() > info.max:
            raise ValueError(f"save_volume: values {arr.min()}..{arr.max()} do not fit {target}")
    img = nib.Nifti1Image(arr.astype(target, copy=False), affine)
    sform_code, qform_code = _xform_codes(space)
    img.set_sform(affine, code=sform_code)
    img.set_qform(affine, code=qform_code)  # rotation + zooms (pixdim) from the affine
    img.header.set_xyzt_units("mm", "sec")
    if arr.ndim == 4 and tr_s:
        img.header.set_zooms((*img.header.get_zooms()[:3], float(tr_s)))
    img.header["descrip"] = descrip.encode("ascii", "replace")[:79]
    return img


def volume_writer(data: np.ndarray, affine: np.ndarray, *, dtype: Any, space: str | tuple[int, int] = "scanner",
                  descrip: str = "", tr_s: float | None = None) -> Callable[[Path], None]:
    """A ``write(tmp)`` that saves ``data`` as NIfTI, for :func:`core.io.outputs.write_together`.

    Why a callback: a command writing a NIfTI beside other outputs (det.json and its labels)
    lands them together; the image is built (and checked) now, before any file is touched.

    Parameters
    ----------
    data : numpy.ndarray
        3D or 4D voxels in the file's voxel order (the order of ``affine``).
    affine : numpy.ndarray
        4 x 4 voxel -> world RAS+ mm map; written as the sform AND the qform.
    dtype : numpy dtype
        One of :data:`SAVE_DTYPES`: uint8 masks, uint16 labels, float32 maps. Integer values
        that do not fit are refused (ValueError), never wrapped.
    space : str or (int, int)
        A name in :data:`XFORM_CODES` for both forms, or the (sform, qform) codes of a source.
    descrip : str
        The header's description (79 ASCII characters kept).
    tr_s : float, optional
        Repetition time of a 4D series, written as the fourth zoom.
    """
    img = _nifti_image(data, affine, dtype, space, descrip, tr_s)

    def write(tmp: Path) -> None:
        nib.save(img, str(tmp))

    return write


def save_volume(path: str | Path, volume: Volume | np.ndarray, affine: np.ndarray | None = None, *, dtype: Any,
                space: str | tuple[int, int] = "scanner", descrip: str = "",
                inputs: Iterable[str | Path | None] = (), what: str = "image") -> Path:
    """Save a :class:`Volume` (or data + affine) as NIfTI, atomically: the one NIfTI writer.

    The path is checked first (:func:`core.io.outputs.check_outputs`): a ``.nii``/``.nii.gz``
    name, not an input (``inputs``, and the Volume's own file), a writable folder. See
    :func:`volume_writer` for the header written.

    Raises
    ------
    OutputPathError
        The path cannot or must not be written, or the disk failed; the target is unchanged.
    """
    tr_s = None
    if isinstance(volume, Volume):
        data, affine, tr_s = volume.data, volume.affine, volume.tr_s
        inputs = [*inputs, volume.path]
    else:
        data = volume
    if affine is None:
        raise ValueError("save_volume needs an affine with plain voxel data")
    writer = volume_writer(data, affine, dtype=dtype, space=space, descrip=descrip, tr_s=tr_s)
    check_outputs([Output(path, (".nii.gz", ".nii"), what)], inputs=inputs)
    return write_together([(path, writer)])[0]
