"""The detection file contract (det.json) and the instance-label NIfTI beside it.

det.json::

    {"image": file name, "image_sha256": ..., "model": {"name", "version"},
     "threshold": t, "space": "world RAS+ mm; voxel_ijk in the input file's voxel order",
     "detections": [{"id", "world_ras_mm": [x, y, z], "voxel_ijk": [i, j, k], "score", "volume_mm3"}]}

``image`` is the scan's file NAME: a folder is often named after the patient, so the full
path (``image_path``) is written only when asked for (``--with-paths``). Scans are matched by
``image_sha256`` (the voxel data), never by path.

The labels NIfTI is on the input's grid and affine, one integer per detection id. A
detection file is only ever attached to the scan whose voxel data it was made from, and
is validated field by field on reading (it may come from anywhere): a malformed one is
refused in one sentence naming the file and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ImageMismatchError, InputFileError
from ...io import strict_json
from ...io.nifti import volume_writer
from ...io.outputs import Output, check_outputs, write_together
from .detect import CMBResult

SPACE = "world RAS+ mm; voxel_ijk in the input file's voxel order"
#: More detections than this in one det.json is not a detector's output (and would flood the store).
MAX_DETECTIONS = 100_000
DET_SUFFIXES = (".json",)
LABEL_SUFFIXES = (".nii.gz", ".nii")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def result_to_json(result: CMBResult, with_paths: bool = False) -> dict[str, Any]:
    """The det.json document of a result (the image's file name; its path only when asked)."""
    image = Path(result.image_path).name if result.image_path else None
    doc: dict[str, Any] = {"image": image}
    if with_paths:
        doc["image_path"] = result.image_path
    doc.update({
        "image_sha256": result.image_sha256,
        "model": dict(result.model),
        "threshold": result.threshold,
        "device": result.device,
        "space": SPACE,
        "detections": [
            {**asdict(d), "world_ras_mm": list(d.world_ras_mm), "voxel_ijk": list(d.voxel_ijk)}
            for d in result.detections
        ],
    })
    return doc


def detection_outputs(out_json: str | Path, labels: str | Path | None = None) -> list[Output]:
    """The outputs of ``cmb detect``, for :func:`check_outputs` before any work."""
    outputs = [Output(out_json, DET_SUFFIXES, "det.json")]
    if labels is not None:
        outputs.append(Output(labels, LABEL_SUFFIXES, "instance labels"))
    return outputs


def detection_writes(result: CMBResult, out_json: str | Path, labels: str | Path | None = None,
                     with_paths: bool = False) -> list[tuple[Path, Callable[[Path], object]]]:
    """(target, write) pairs of det.json and the labels, for :func:`write_together`."""
    text = strict_json.dumps(result_to_json(result, with_paths), indent=2) + "\n"
    writes: list[tuple[Path, Callable[[Path], object]]] = [
        (Path(out_json), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))]
    if labels is not None:
        writes.append((Path(labels), volume_writer(result.instances, result.affine, dtype=np.uint16,
                                                   descrip="napari-neuroreview CMB instances")))
    return writes


def write_detections(result: CMBResult, out_json: str | Path, labels: str | Path | None = None,
                     with_paths: bool = False) -> list[Path]:
    """Write det.json (and the instance labels NIfTI) together: both land or neither does."""
    check_outputs(detection_outputs(out_json, labels))
    return write_together(detection_writes(result, out_json, labels, with_paths))


def _field_error(path: Path, field: str, problem: str) -> InputFileError:
    return InputFileError(f"{path}: not a valid microbleed detection file: {field} {problem}")


def _number(path: Path, field: str, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _field_error(path, field, f"must be a finite number, not {_short(value)}")
    if not low <= value <= high:
        raise _field_error(path, field, f"must be between {low:g} and {high:g}, not {value:g}")
    return float(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _triple(path: Path, field: str, value: Any) -> list[float]:
    if not isinstance(value, list) or len(value) != 3:
        raise _field_error(path, field, f"must be a list of 3 numbers, not {_short(value)}")
    return [_number(path, field, v, -1e6, 1e6) for v in value]


def _check_detection(path: Path, n: int, d: Any) -> None:
    where = f"detections[{n}]"
    if not isinstance(d, dict):
        raise _field_error(path, where, f"must be an object, not {_short(d)}")
    for key in ("id", "world_ras_mm", "voxel_ijk", "score"):
        if key not in d:
            raise _field_error(path, f"{where}.{key}", "is missing")
    if isinstance(d["id"], bool) or not isinstance(d["id"], int) or not 1 <= d["id"] <= MAX_DETECTIONS:
        raise _field_error(path, f"{where}.id", f"must be an integer from 1 to {MAX_DETECTIONS:,}, not {_short(d['id'])}")
    _triple(path, f"{where}.world_ras_mm", d["world_ras_mm"])
    _triple(path, f"{where}.voxel_ijk", d["voxel_ijk"])
    _number(path, f"{where}.score", d["score"], 0.0, 1.0)
    if "volume_mm3" in d:
        _number(path, f"{where}.volume_mm3", d["volume_mm3"], 0.0, 1e6)


def validate_detections(path: Path, doc: Any) -> dict[str, Any]:
    """Check a det.json document's structure and every field; raise InputFileError naming one."""
    if not isinstance(doc, dict):
        raise _field_error(path, "the document", f"must be a JSON object, not {type(doc).__name__}")
    sha = doc.get("image_sha256")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise _field_error(path, "image_sha256", f"must be 64 hexadecimal digits, not {_short(sha)}")
    model = doc.get("model")
    if model is None:
        raise _field_error(path, "model", "is missing (the detector's name and version)")
    if not isinstance(model, dict) or not all(isinstance(model.get(k), str) and model.get(k) for k in ("name", "version")):
        raise _field_error(path, "model", f"must be an object with a name and a version, not {_short(model)}")
    if doc.get("threshold") is not None:
        _number(path, "threshold", doc["threshold"], 0.0, 1.0)
    detections = doc.get("detections")
    if not isinstance(detections, list):
        raise _field_error(path, "detections", "is missing or not a list" if detections is None else
                           f"must be a list, not {type(detections).__name__}")
    if len(detections) > MAX_DETECTIONS:
        raise _field_error(path, "detections", f"holds {len(detections):,} entries, more than {MAX_DETECTIONS:,}")
    for n, d in enumerate(detections):
        _check_detection(path, n, d)
    ids = [d["id"] for d in detections]
    if len(set(ids)) != len(ids):
        raise _field_error(path, "detections[].id", "repeats an id")
    return doc


def read_detections(path: str | Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Read and validate a det.json; refuse it for a scan other than the one it was made from."""
    path = Path(path)
    try:
        doc = strict_json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputFileError(f"{path}: not a microbleed detection file ({exc})") from None
    validate_detections(path, doc)
    if expected_sha256 is not None and doc.get("image_sha256") != expected_sha256:
        raise ImageMismatchError(
            f"{path}: these detections were made on another scan (voxel data "
            f"{str(doc.get('image_sha256'))[:12]}), not on the loaded one ({expected_sha256[:12]})"
        )
    return doc
