"""npe2 reader: NIfTI (.nii, .nii.gz) and MGH (.mgz, .mgh) volumes, 3D and 4D, and DICOM.

A DICOM folder (dragged in, or File > Open Folder) becomes one layer per image series, named
by its SeriesDescription (:func:`core.io.dicom.load_all_series`); a folder without DICOM is
left to other readers. A thin wrapper: :func:`core.io.nifti.load_volume` reads and checks the file,
:func:`core.io.layers.image_layer_data` puts it in display order. A bad file is reported
as one sentence in a napari notification, and napari is told (with npe2's null-layer
value) that there is nothing to add, so no second error appears.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_error, show_warning

from .core.errors import NeuroreviewError
from .core.io.dicom import folder_holds_dicom, is_dicom_file, load_all_series
from .core.io.layers import image_layer_data
from .core.io.nifti import SUPPORTED_SUFFIXES, Volume, load_volume

LayerData = tuple[Any, ...]


def _supported(path: str) -> bool:
    """A NIfTI/MGH file, a ``.dcm`` file or a file with the DICOM preamble, or a folder holding DICOM."""
    where = Path(path)
    if where.is_dir():
        return folder_holds_dicom(where)
    return str(path).lower().endswith((*SUPPORTED_SUFFIXES, ".dcm")) or (where.is_file() and is_dicom_file(where))


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_volumes` when every path is a NIfTI/MGH file or DICOM, else None."""
    paths = [path] if isinstance(path, str) else list(path)
    if paths and all(_supported(p) for p in paths):
        return read_volumes
    return None


def _volumes(path: str) -> list[Volume]:
    """The volumes of one path: every series of a DICOM folder, else the one file."""
    if Path(path).is_dir():
        volumes, refused = load_all_series(path)
        for sentence in refused:
            show_error(sentence)
        return volumes
    return [load_volume(path)]


def read_volumes(path: str | list[str]) -> list[LayerData]:
    """Read each path into image (or labels) layers; report bad files in one sentence."""
    paths = [path] if isinstance(path, str) else list(path)
    layers: list[LayerData] = []
    for one in paths:
        try:
            volumes = _volumes(one)
        except NeuroreviewError as exc:
            show_error(str(exc))
            continue
        for volume in volumes:
            data, kwargs, layer_type, geometry = image_layer_data(volume, name=volume.header.get("series_label"))
            for sentence in volume.warnings + ([geometry.warning] if geometry.warning else []):
                show_warning(sentence)
            layers.append((data, kwargs, layer_type))
    return layers or [(None,)]
