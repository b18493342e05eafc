"""npe2 reader: NIfTI (.nii, .nii.gz) and MGH (.mgz, .mgh) volumes, 3D and 4D.

A thin wrapper: :func:`core.io.nifti.load_volume` reads and checks the file,
:func:`core.io.layers.image_layer_data` puts it in display order. A bad file is reported
as one sentence in a napari notification, and napari is told (with npe2's null-layer
value) that there is nothing to add, so no second error appears.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.utils.notifications import show_error, show_warning

from .core.errors import NeuroreviewError
from .core.io.layers import image_layer_data
from .core.io.nifti import SUPPORTED_SUFFIXES, load_volume

LayerData = tuple[Any, ...]


def _supported(path: str) -> bool:
    return str(path).lower().endswith(SUPPORTED_SUFFIXES)


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return :func:`read_volumes` when every path is a NIfTI/MGH file, else None."""
    paths = [path] if isinstance(path, str) else list(path)
    if paths and all(_supported(p) for p in paths):
        return read_volumes
    return None


def read_volumes(path: str | list[str]) -> list[LayerData]:
    """Read each path into an image (or labels) layer; report bad files in one sentence."""
    paths = [path] if isinstance(path, str) else list(path)
    layers: list[LayerData] = []
    for one in paths:
        try:
            volume = load_volume(one)
        except NeuroreviewError as exc:
            show_error(str(exc))
            continue
        data, kwargs, layer_type, geometry = image_layer_data(volume)
        for sentence in volume.warnings + ([geometry.warning] if geometry.warning else []):
            show_warning(sentence)
        layers.append((data, kwargs, layer_type))
    return layers or [(None,)]
