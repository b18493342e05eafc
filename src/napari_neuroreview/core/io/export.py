"""Save annotations aligned with the source scan: labels as NIfTI, points as JSON/TSV.

Labels go back onto the source file's own voxel grid and affine (through
:func:`orientation.from_display`, the one inverse mapping), so any tool that reads the
source scan overlays them correctly. Points leave memory as world RAS+ millimetres
computed from the affine, with the file's voxel indices beside them (never alone).
Every file is written atomically: a crash leaves the previous file intact.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeometryError, InputFileError
from . import strict_json
from .atomic import write_text_atomic
from .nifti import label_dtype, save_volume
from .orientation import FRAME, DisplayGeometry, from_display

POINTS_FORMAT = "napari-neuroreview points 1"


def save_labels(
    path: str | Path,
    display_labels: np.ndarray,
    geometry: DisplayGeometry,
    source_header: Mapping[str, Any] | None = None,
) -> Path:
    """Write a display-order label array as NIfTI on the source scan's grid and affine.

    Parameters
    ----------
    path : str or Path
        Target ``.nii`` or ``.nii.gz`` file.
    display_labels : numpy.ndarray
        Integer labels in display order (as a napari Labels layer holds them).
    geometry : DisplayGeometry
        The source image's geometry (kept in the layer's metadata by the reader).
    source_header : mapping, optional
        The source header fields; its sform/qform codes are kept when present.
    """
    path = Path(path)
    if not path.name.endswith((".nii", ".nii.gz")):
        raise InputFileError(f"{path}: labels are saved as NIfTI; use a .nii or .nii.gz name")
    labels = np.asarray(display_labels)
    if labels.dtype.kind not in "biu":
        raise GeometryError(f"{path.name}: labels must be integers, not {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise GeometryError(f"{path.name}: labels must not be negative")
    source = from_display(labels, geometry, order=0)
    header = dict(source_header or {})
    codes = (int(header.get("sform_code", 1) or 1), int(header.get("qform_code", 1) or 1))
    return save_volume(path, source, geometry.source_affine, dtype=label_dtype(int(source.max()) if source.size else 0),
                       space=codes, descrip="napari-neuroreview labels", what="labels")


def napari_world_to_ras(points: np.ndarray) -> np.ndarray:
    """napari world (S, P, L mm) -> RAS mm; exact for every layer made by the reader."""
    return np.asarray(points, dtype=float) @ FRAME  # FRAME is orthogonal: inverse = transpose


def ras_to_napari_world(ras: np.ndarray) -> np.ndarray:
    """RAS mm -> napari world (S, P, L mm)."""
    return np.asarray(ras, dtype=float) @ FRAME.T


def points_to_records(
    data: np.ndarray,
    scale: Sequence[float],
    translate: Sequence[float],
    geometry: DisplayGeometry | None,
    features: Mapping[str, Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Points layer data -> one record per point with world RAS mm and voxel indices.

    Parameters
    ----------
    data : numpy.ndarray
        (N, 3) coordinates in the layer's data frame (display index units when the
        layer shares the image's scale/translate), or (N, 4) with time first.
    scale, translate : sequence of float
        The layer's ``scale`` and ``translate``.
    geometry : DisplayGeometry or None
        The source image's geometry; without it voxel indices are left out.
    features : mapping of column -> values, optional
        The layer's features (id, score, status...), copied into each record.
    """
    data = np.atleast_2d(np.asarray(data, dtype=float))
    if data.size == 0:
        return []
    spatial = data[:, -3:]
    world = spatial * np.asarray(scale, float)[-3:] + np.asarray(translate, float)[-3:]
    if geometry is not None:
        display_index = (world - np.asarray(geometry.translate)) / np.asarray(geometry.scale)
        ras = geometry.display_to_world(display_index)
        ijk = geometry.world_to_source(ras)
    else:
        ras, ijk = napari_world_to_ras(world), None
    records: list[dict[str, Any]] = []
    columns = {k: list(v) for k, v in (features or {}).items()}
    for n in range(len(spatial)):
        record: dict[str, Any] = {"world_ras_mm": [round(float(v), 4) for v in ras[n]]}
        if ijk is not None:
            record["voxel_ijk"] = [round(float(v), 4) for v in ijk[n]]
        if data.shape[1] == 4:
            record["volume_index"] = int(round(data[n, 0]))
        for key, values in columns.items():
            record[key] = strict_json.plain(values[n])
        records.append(record)
    return records


def save_points(path: str | Path, records: list[dict[str, Any]], image: Mapping[str, Any] | None = None) -> Path:
    """Write point records as JSON (with image provenance) or TSV, chosen by suffix."""
    path = Path(path)
    if path.suffix == ".json":
        doc = {"format": POINTS_FORMAT, "space": "world RAS+ mm", **dict(image or {}), "points": records}
        return write_text_atomic(path, strict_json.dumps(doc, indent=2) + "\n")
    if path.suffix == ".tsv":
        return write_text_atomic(path, _records_to_tsv(records))
    raise InputFileError(f"{path}: points are saved as .json or .tsv")


def _records_to_tsv(records: list[dict[str, Any]]) -> str:
    extra: list[str] = []
    for record in records:
        extra += [k for k in record if k not in ("world_ras_mm", "voxel_ijk") and k not in extra]
    header = ["x_ras_mm", "y_ras_mm", "z_ras_mm", "i", "j", "k", *extra]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(header)
    for record in records:
        ijk = record.get("voxel_ijk", ["n/a"] * 3)
        values = ["n/a" if record.get(k) is None else record[k] for k in extra]
        writer.writerow([*record["world_ras_mm"], *ijk, *values])
    return buffer.getvalue()


def load_points(path: str | Path) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Read points written by :func:`save_points`: (N, 3) RAS mm and the records."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            doc = strict_json.loads(path.read_text(encoding="utf-8"))
            records = list(doc["points"])
        elif path.suffix == ".tsv":
            rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
            records = [
                {"world_ras_mm": [float(r["x_ras_mm"]), float(r["y_ras_mm"]), float(r["z_ras_mm"])],
                 **{k: v for k, v in r.items() if k not in ("x_ras_mm", "y_ras_mm", "z_ras_mm", "i", "j", "k")}}
                for r in rows
            ]
        else:
            raise InputFileError(f"{path}: points are read from .json or .tsv")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputFileError(f"{path}: not a napari-neuroreview points file ({exc})") from None
    ras = np.array([r["world_ras_mm"] for r in records], dtype=float).reshape(-1, 3)
    return ras, records
