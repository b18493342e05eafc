"""Bound the memory a scan file can cost before anything is decompressed.

Why a module of its own: a scan's header can claim anything, and a 1 MB ``.nii.gz`` can
claim (and inflate to) gigabytes. The voxel count the raw header claims is checked against
a ceiling (:func:`max_voxels`, ``NEUROREVIEW_MAX_VOXELS``) before nibabel reads it, and a
compressed stream is only ever read in chunks, never further than the header's promise
plus :data:`TRAILING_MARGIN`; a stream that inflates beyond that is refused as a likely
decompression bomb. :func:`core.io.nifti.load_volume` calls these before reading voxels.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputFileError

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


def fail(path: Path, problem: str) -> InputFileError:
    """The one sentence for a bad input file: its path, then the problem."""
    return InputFileError(f"{path}: {problem}")


def is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic (suffixes lie)."""
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def gzip_payload_size(path: Path, needed: int) -> int:
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
        raise fail(path, f"the compressed data is truncated or corrupt ({exc})") from None
    if count > limit:
        raise fail(path, f"the compressed data inflates to more than the {needed:,} bytes its header "
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
        with (gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")) as handle:
            return handle.read(size)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise fail(path, f"could not be read: the compressed data is truncated or corrupt ({exc})") from None


def _raw_nifti_header(block: bytes) -> np.void | None:
    """The NIfTI-1 or NIfTI-2 header fields exactly as stored (nibabel 'fixes' some on load)."""
    for dtype, size in ((nib.nifti1.header_dtype, 348), (nib.nifti2.header_dtype, 540)):
        for order in "<>":
            if len(block) >= size and struct.unpack(f"{order}i", block[:4])[0] == size:
                return np.frombuffer(block[:size], dtype=dtype.newbyteorder(order))[0]
    return None


def claimed_size(path: Path) -> tuple[tuple[int, ...], int, int, np.void | None]:
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
            raise fail(path, f"claims {offset:,.0f} bytes of header before its voxels; it is not a scan header")
        return shape, itemsize, int(offset), raw
    if path.name.lower().endswith((".mgz", ".mgh")) and len(block) >= 24:
        _version, *dims, code = struct.unpack(">6i", block[:24])
        itemsize = {0: 1, 1: 4, 3: 4, 4: 2}.get(code, 4)
        return tuple(dims), itemsize, 284, None
    return (), 1, 0, None


def check_ceiling(path: Path, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse a header that claims more voxels than :func:`max_voxels` allows, before reading."""
    if not shape or any(d < 1 for d in shape):
        return  # left to the shape checks, which say what is wrong
    voxels = math.prod(shape)
    limit = max_voxels()
    if voxels > limit:
        raise fail(path, f"its header claims {voxels:,} voxels (shape {shape}, {voxels * itemsize / 2**30:.1f} GiB "
                          f"of data), more than the {limit:,} read by default; set {MAX_VOXELS_ENV} to read it")

