"""Describe volumes and results as napari layer data, in plain Python (no napari import).

Why here and not in the reader: the reader, every widget that shows a model result on a
scan, and the tests all need the same ``scale``, ``translate`` and metadata for a grid.
Computing them once keeps every layer of a case aligned.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ImageMismatchError, InputFileError
from .dicom import is_dicom_path
from .nifti import Volume, load_volume, voxel_sha256
from .orientation import DisplayGeometry, from_display, plan_display, to_display

#: Key under which a layer's provenance and geometry live in ``layer.metadata``.
META_KEY = "neuroreview"


def layer_metadata(volume: Volume, geometry: DisplayGeometry) -> dict[str, Any]:
    """Metadata that lets any later step map the layer back to the file exactly.

    ``source_path`` is absolute: the store keeps it (for the worklist to open the scan again,
    never exported), and a relative one breaks from another working directory.
    """
    return {
        META_KEY: {
            "geometry": geometry.to_dict(),
            "source_path": str(Path(volume.path).absolute()) if volume.path else None,
            "sha256": volume.sha256,
            "orientation": volume.orientation,
            "zooms": list(volume.zooms),
            "tr_s": volume.tr_s,
            "warnings": list(volume.warnings) + ([geometry.warning] if geometry.warning else []),
        },
        "affine": volume.affine.copy(),
        "header": dict(volume.header),
    }


def geometry_of(metadata: dict[str, Any]) -> DisplayGeometry | None:
    """The DisplayGeometry stored in a layer's metadata, or None for foreign layers."""
    info = (metadata or {}).get(META_KEY) or {}
    geometry = info.get("geometry")
    return DisplayGeometry.from_dict(geometry) if geometry else None


def spatial_kwargs(geometry: DisplayGeometry, ndim: int = 3, tr_s: float | None = None) -> dict[str, Any]:
    """``scale`` and ``translate`` for a layer on this grid (time first for 4D)."""
    scale, translate = list(geometry.scale), list(geometry.translate)
    if ndim == 4:
        scale, translate = [tr_s or 1.0, *scale], [0.0, *translate]
    return {"scale": scale, "translate": translate}


def robust_contrast(data: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Display window from percentiles of the non-zero voxels.

    Why: a few hot voxels (vessels, fat, artefacts) would otherwise squeeze the brain
    into a narrow grey band. A strided sample keeps this fast on large 4D series.
    """
    step = max(1, data.size // 2_000_000)
    sample = np.asarray(data).ravel()[::step]
    sample = sample[sample != 0]
    if sample.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(sample, [low, high])
    return (float(lo), float(hi if hi > lo else lo + 1.0))


def image_layer_data(
    volume: Volume, name: str | None = None
) -> tuple[np.ndarray, dict[str, Any], str, DisplayGeometry]:
    """Display array, layer kwargs, layer type ("image" or "labels") and geometry.

    Label maps are resampled (oblique scans only) with nearest neighbour, so that every
    displayed value is one of the file's labels; intensities with linear interpolation.
    """
    geometry = plan_display(volume.shape, volume.affine)
    is_labels = volume.data.dtype.kind in "iu" and looks_like_labels(volume)
    display = to_display(volume.data, geometry, order=0 if is_labels else 1)
    kwargs: dict[str, Any] = {
        "name": name or volume.name,
        "metadata": layer_metadata(volume, geometry),
        **spatial_kwargs(geometry, display.ndim, volume.tr_s),
    }
    if is_labels:
        kwargs["opacity"] = 0.5
        return display, kwargs, "labels", geometry
    kwargs.update(contrast_limits=robust_contrast(display), colormap="gray", interpolation2d="nearest")
    return display, kwargs, "image", geometry


def volume_from_layer(display: Any, metadata: Mapping[str, Any], name: str = "layer",
                      grid: Literal["source", "display"] = "source") -> Volume:
    """The voxels a task sees for a layer made by this plugin's reader: the one rule.

    Parameters
    ----------
    display : array-like
        The layer's data (display order; time first for 4D).
    metadata : mapping
        The layer's metadata (:func:`layer_metadata`).
    name : str
        The layer's name, for messages.
    grid : {"source", "display"}
        ``"source"`` for a model: the file's own voxels and affine (scanner voxels, what it
        was trained on), put back in file order exactly and required to hash to the file's
        sha256, since a layer edited in napari is not the scan the store knows. An oblique
        scan shown resampled is read again from its file (linear resampling smooths the noise
        a detector learnt and leaves zero wedges at a tilted slab's faces); only when the file
        is gone or changed is the display grid used. ``"display"`` for a result shown as a
        layer over this one (a mask): the array as shown with its exact display affine, no
        round trip through the file grid (which would resample an oblique scan twice).

    Returns
    -------
    Volume
        Its ``sha256`` is the file's voxel hash (the scan's identity) on either grid.

    Raises
    ------
    InputFileError
        The layer was not opened by this plugin (no geometry in its metadata).
    ImageMismatchError
        ``grid="source"`` and the layer's voxels were changed in napari.
    """
    if grid not in ("source", "display"):
        raise ValueError(f"grid must be 'source' or 'display', not {grid!r}")
    geometry = geometry_of(dict(metadata))
    if geometry is None:
        raise InputFileError(f"{name}: was not opened by napari-neuroreview; open the NIfTI/MGH file with File > Open")
    info = metadata[META_KEY]
    path = Path(info["source_path"]) if info.get("source_path") else None
    data = np.asarray(display)
    if grid == "source" and geometry.resampled:
        source = _unchanged_file(path, info["sha256"])
        if source is not None:
            return source
    if grid == "display" or geometry.resampled:
        data = np.moveaxis(data, 0, 3) if data.ndim == 4 else data  # Volume keeps time last
        return Volume(data, geometry.display_affine, tuple(geometry.scale), path, info["sha256"], info.get("tr_s"))
    data = from_display(data, geometry, order=1)
    if voxel_sha256(data) != info["sha256"]:
        raise ImageMismatchError(
            f"{name}: the layer's voxels were changed in napari and no longer match "
            f"{path.name if path else 'the file'}; reopen the file to review it"
        )
    zooms = tuple(float(z) for z in info["zooms"][:3])
    return Volume(data, geometry.source_affine, zooms, path, info["sha256"], info.get("tr_s"))  # type: ignore[arg-type]


def _unchanged_file(path: Path | None, sha256: str) -> Volume | None:
    """The scan file at ``path`` if it still holds the voxels hashed ``sha256``, else None."""
    if path is None or not (path.is_file() or is_dicom_path(path)):  # a file, or a DICOM series folder
        return None
    try:
        volume = load_volume(path)
    except InputFileError:
        return None
    return volume if volume.sha256 == sha256 else None


def looks_like_labels(volume: Volume) -> bool:
    """Heuristic for label/segmentation files: integers, few values, or a ``_dseg``/``_mask`` name."""
    name = volume.path.name.lower() if volume.path else ""
    if volume.header.get("format") == "DICOM SEG":  # core.io.dicom_seg: always instance labels
        return True
    if any(tag in name for tag in ("_dseg", "_mask", "_labels", "label", "seg")):
        return True
    if volume.is_4d:
        return False
    step = max(1, volume.data.size // 500_000)
    return np.unique(volume.data.ravel()[::step]).size <= 64 and int(volume.data.max()) < 10_000 and volume.data.min() >= 0


def labels_kwargs_like(image_meta: dict[str, Any], scale: Any, translate: Any, name: str) -> dict[str, Any]:
    """Kwargs for a Labels layer that lives on an image layer's grid (same metadata)."""
    meta = {k: v for k, v in image_meta.items()}
    return {"name": name, "scale": list(scale)[-3:], "translate": list(translate)[-3:], "metadata": meta, "opacity": 0.5}


def source_name(metadata: dict[str, Any]) -> str:
    """File name the layer came from, for messages."""
    path = ((metadata or {}).get(META_KEY) or {}).get("source_path")
    return Path(path).name if path else "this layer"
