"""The detection file contract (det.json) and the instance-label NIfTI beside it.

det.json::

    {"image": path, "image_sha256": ..., "model": {"name", "version"},
     "threshold": t, "space": "world RAS+ mm; voxel_ijk in the input file's voxel order",
     "detections": [{"id", "world_ras_mm": [x, y, z], "voxel_ijk": [i, j, k], "score", "volume_mm3"}]}

The labels NIfTI is on the input's grid and affine, one integer per detection id. A
detection file is only ever attached to the scan whose voxel data it was made from.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ...errors import ImageMismatchError, InputFileError
from ...io.atomic import write_text_atomic, write_with
from .detect import CMBResult

SPACE = "world RAS+ mm; voxel_ijk in the input file's voxel order"


def result_to_json(result: CMBResult) -> dict[str, Any]:
    """The det.json document of a result."""
    return {
        "image": result.image_path,
        "image_sha256": result.image_sha256,
        "model": dict(result.model),
        "threshold": result.threshold,
        "device": result.device,
        "space": SPACE,
        "detections": [
            {**asdict(d), "world_ras_mm": list(d.world_ras_mm), "voxel_ijk": list(d.voxel_ijk)}
            for d in result.detections
        ],
    }


def write_detections(result: CMBResult, out_json: str | Path, labels: str | Path | None = None) -> list[Path]:
    """Write det.json (and the instance labels NIfTI) atomically; returns the paths."""
    written = [write_text_atomic(out_json, json.dumps(result_to_json(result), indent=2) + "\n")]
    if labels is not None:
        labels = Path(labels)
        if not labels.name.endswith((".nii", ".nii.gz")):
            raise InputFileError(f"{labels}: the labels file must be .nii or .nii.gz")
        img = nib.Nifti1Image(result.instances.astype(np.uint16), result.affine)
        img.set_sform(result.affine, code=1)
        img.set_qform(result.affine, code=1)
        written.append(write_with(labels, lambda tmp: nib.save(img, str(tmp))))
    return written


def read_detections(path: str | Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Read a det.json; refuse it for a scan other than the one it was made from."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        detections = doc["detections"]
        for d in detections:
            if len(d["world_ras_mm"]) != 3 or len(d["voxel_ijk"]) != 3:
                raise ValueError("a detection lacks a 3D position")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"{path}: not a microbleed detection file ({exc})") from None
    if expected_sha256 is not None and doc.get("image_sha256") != expected_sha256:
        raise ImageMismatchError(
            f"{path}: these detections were made on another scan (voxel data "
            f"{str(doc.get('image_sha256'))[:12]}), not on the loaded one ({expected_sha256[:12]})"
        )
    return doc
