"""Minimum-intensity projection (minIP) slabs: how SWI is read.

Veins and microbleeds are dark on SWI; the minimum over a few millimetres of neighbouring
slices joins a vein's dark segments into a line that can be followed, while a microbleed
stays a round dot, so a radiologist tells the two apart on the minIP beside the slice.
Usual slabs are 4-8 mm (thicker ones merge the veins into a dark mesh).

The slab of every slice is computed at once over the whole volume (SciPy's
``minimum_filter1d`` along the sliced axis), so scrolling through the minIP is as instant
as scrolling through the scan. The work is split into blocks along another axis so that
the task yields progress (and honours Cancel) between blocks.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputFileError
from ..io.nifti import Volume
from ..progress import Progress, TaskGenerator

#: Slab thicknesses offered (mm), and the default: the middle of the usual 4-8 mm.
SLAB_RANGE_MM, DEFAULT_SLAB_MM = (2.0, 20.0), 6.0
#: Blocks the volume is filtered in (one progress step and one chance to cancel each).
BLOCKS = 16


@dataclass(frozen=True)
class Slab:
    """The slices one minIP value is the minimum of, around the slice shown.

    Attributes
    ----------
    axis : int
        The array axis the slab runs along (the one the viewer slices).
    slices : int
        How many slices: the asked thickness over the voxel size, rounded, at least one.
    voxel_mm : float
        The voxel size along ``axis``.
    before, after : int
        Slices on the lower-index and the higher-index side of the slice shown. An odd
        count is centred; an even count cannot be, and takes the extra slice on the
        lower-index side (SciPy's rule for an even filter size), rather than adding or
        dropping a slice, which would make the slab a voxel thicker or thinner than asked.
    """

    axis: int
    slices: int
    voxel_mm: float
    before: int
    after: int

    @property
    def thickness_mm(self) -> float:
        """The slab's real thickness (slices x voxel size), which the layer's name states."""
        return self.slices * self.voxel_mm

    def describe(self, asked_mm: float) -> str:
        """'6 mm asked: 3 slices of 1.8 mm = 5.4 mm (1 before and 1 after the slice shown)'."""
        return (f"{asked_mm:g} mm asked: {self.slices} slice{'s' if self.slices > 1 else ''} of {self.voxel_mm:.2g} mm "
                f"= {self.thickness_mm:.3g} mm ({self.before} before and {self.after} after the slice shown)")


@dataclass(frozen=True)
class MinipResult:
    """The minIP volume (same shape, type and grid as the input) and its slab."""

    data: np.ndarray
    slab: Slab


def slab_for(voxel_mm: float, thickness_mm: float, axis: int) -> Slab:
    """The slab of ``thickness_mm`` on voxels of ``voxel_mm`` along ``axis`` (see :class:`Slab`).

    Raises
    ------
    ValueError
        A thickness outside :data:`SLAB_RANGE_MM` (a bug: the widget's box is bounded).
    """
    low, high = SLAB_RANGE_MM
    if not low <= thickness_mm <= high:
        raise ValueError(f"slab thickness {thickness_mm:g} mm is outside {low:g}-{high:g} mm")
    slices = max(1, math.floor(thickness_mm / voxel_mm + 0.5))
    return Slab(axis, slices, float(voxel_mm), slices // 2, slices - 1 - slices // 2)


def run(volume: Volume, axis: int, thickness_mm: float = DEFAULT_SLAB_MM,
        name: str = "image") -> TaskGenerator[MinipResult]:
    """The minIP of every slice along ``axis`` over a slab of ``thickness_mm``, as a task.

    Parameters
    ----------
    volume : Volume
        A 3D scan; ``zooms[axis]`` is its voxel size along the slab (anisotropic voxels:
        the slab counts slices of that axis only).
    axis : int
        The array axis the viewer slices.
    thickness_mm : float
        Asked slab thickness; the real one is a whole number of slices (:func:`slab_for`).
    name : str
        The layer's name, for messages.

    Returns
    -------
    generator
        Yields :class:`Progress` per block and returns a :class:`MinipResult`. At the
        volume's first and last slices the slab is cut short (``mode="nearest"``: a
        repeated edge slice leaves a minimum unchanged).

    Raises
    ------
    InputFileError
        A 2D or 4D image (here, at the call); NaN voxels (at the task's first step, since
        finding them reads the whole volume: off the GUI thread).
    """
    data = volume.data
    if data.ndim != 3:
        raise InputFileError(f"{name}: a minIP slab needs a 3D scan, and this image is {data.ndim}D")
    if not 0 <= axis < 3:
        raise ValueError(f"axis {axis} of a 3D volume")
    slab = slab_for(float(volume.zooms[axis]), thickness_mm, axis)
    return _minimum_over_slabs(np.asarray(data), slab, name)


def _minimum_over_slabs(data: np.ndarray, slab: Slab, name: str) -> TaskGenerator[MinipResult]:
    if data.dtype.kind == "f":
        nans = int(np.count_nonzero(np.isnan(data)))
        if nans:
            raise InputFileError(f"{name}: {nans:,} voxels are NaN, and a minimum over a slab that holds one is "
                                 "undefined; reopen the file (the reader sets NaN to 0)")
    others = [a for a in range(3) if a != slab.axis]
    split = max(others, key=lambda a: data.shape[a])
    edges = np.linspace(0, data.shape[split], min(BLOCKS, data.shape[split]) + 1).round().astype(int)
    out = np.empty_like(data)
    total = len(edges) - 1
    yield Progress(0, total, f"minIP over {slab.slices} slice{'s' if slab.slices > 1 else ''}")
    for block, (start, stop) in enumerate(itertools.pairwise(edges)):
        index = tuple(slice(start, stop) if a == split else slice(None) for a in range(3))
        ndimage.minimum_filter1d(data[index], slab.slices, axis=slab.axis, output=out[index], mode="nearest")
        yield Progress(block + 1, total, f"minIP block {block + 1} of {total}")
    return MinipResult(out, slab)
