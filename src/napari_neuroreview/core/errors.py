"""Errors that a user can cause and that the program reports in one sentence.

Every error that stems from user input (a bad file, a mismatched scan, a missing
device) is a :class:`NeuroreviewError`. The CLI turns one into exit code 2 and a single
line on stderr; the widgets turn one into a napari notification. Anything else is a bug
and keeps its traceback.

Cancel is not an error and has no class: a widget's worker closes the task generator at
its next yield (``GeneratorExit`` inside the task, the worker's ``aborted`` signal
outside), and the CLI has no Cancel (Ctrl-C is ``KeyboardInterrupt``).
"""

from __future__ import annotations


class NeuroreviewError(Exception):
    """Base class: the message is one sentence naming the file or thing and the problem."""


class InputFileError(NeuroreviewError):
    """A file cannot be read as the kind of image or table that was expected."""


class GeometryError(NeuroreviewError):
    """Two images, or an image and its annotations, do not share a grid or a scan."""


class ImageMismatchError(GeometryError):
    """Annotations belong to a different scan (the voxel data's sha256 differs)."""


class StoreError(NeuroreviewError):
    """The annotation store cannot be opened, migrated or written."""


class RegistryError(NeuroreviewError):
    """Model weights or their model card are missing, unsafe or inconsistent."""


class DeviceError(NeuroreviewError):
    """The requested compute device is not available on this machine."""


class OutputPathError(NeuroreviewError):
    """An output path cannot or must not be written (an input, a folder, unwritable)."""


class InsufficientDataError(NeuroreviewError):
    """Too few patients or labels for the requested evaluation (folds, classes, bootstrap)."""
