"""npe2 writers: Labels -> NIfTI on the source grid; Points -> JSON/TSV in world RAS mm.

Points files name their scan by file name and voxel sha256, never by its full path (a
folder is often named after the patient).

Thin wrappers over :mod:`core.io.export`. A Labels layer must carry the source scan's
geometry in its metadata (layers made by this plugin do); without it the file would
not be aligned with the scan, so the writer refuses with one sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .core.errors import GeometryError
from .core.io.export import points_to_records, save_labels, save_points
from .core.io.layers import META_KEY, geometry_of


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save a Labels layer as NIfTI aligned with the scan it was drawn on."""
    metadata = attributes.get("metadata") or {}
    geometry = geometry_of(metadata)
    if geometry is None:
        raise GeometryError(
            f"{attributes.get('name', 'labels')}: this Labels layer does not know which scan it "
            "belongs to; make it with the Case widget's 'New labels' so it saves aligned"
        )
    save_labels(path, data, geometry, metadata.get("header"))
    return [path]


def _features_dict(features: Any) -> dict[str, list[Any]]:
    if features is None:
        return {}
    if hasattr(features, "to_dict"):
        return {str(k): list(v.values()) for k, v in features.to_dict().items()}
    return {str(k): list(v) for k, v in dict(features).items()}


def write_points(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Save a Points layer as JSON or TSV with world RAS+ mm and file voxel indices."""
    metadata = attributes.get("metadata") or {}
    records = points_to_records(
        data,
        attributes.get("scale", [1.0] * 3),
        attributes.get("translate", [0.0] * 3),
        geometry_of(metadata),
        _features_dict(attributes.get("features")),
    )
    info = metadata.get(META_KEY) or {}
    source = info.get("source_path")
    # The file name and the voxel sha256 identify the scan; its folder may be a patient's name.
    image = {"image": Path(source).name if source else None, "image_sha256": info.get("sha256")}
    save_points(path, records, image)
    return [path]
