"""Foreground mask: Otsu threshold, largest connected component, holes filled.

Why this exists in the foundation: later systems need a mask of the head/brain (ICA
runs on in-mask voxels, intensities are normalised inside it), and it is a real, cheap
task that exercises the progress/cancel rails end to end. It is a classical method
(scikit-image's Otsu threshold, SciPy's morphology), not a skull stripper: on a scan
with skull it returns the head, on a skull-stripped scan the brain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from ..errors import InputFileError
from ..io.nifti import Volume
from ..progress import Progress, TaskGenerator


@dataclass(frozen=True)
class MaskResult:
    """A foreground mask in the volume's file voxel order.

    Attributes
    ----------
    mask : numpy.ndarray
        Boolean, the volume's spatial shape.
    threshold : float
        The Otsu intensity threshold used.
    volume_ml : float
        Mask volume in millilitres (from the voxel size).
    """

    mask: np.ndarray
    threshold: float
    volume_ml: float


def run(volume: Volume, smoothing_mm: float = 2.0) -> TaskGenerator[MaskResult]:
    """Compute the foreground mask, yielding progress once per slice.

    Parameters
    ----------
    volume : Volume
        A 3D volume (the mean over time is used for 4D series).
    smoothing_mm : float
        Gaussian sigma in mm applied before thresholding, to ignore noise speckle.
    """
    data = volume.data.mean(axis=3) if volume.is_4d else volume.data
    data = np.asarray(data, dtype=np.float32)
    if not np.any(data):
        raise InputFileError(f"{volume.name}: the image is all zero, so there is nothing to mask")
    if data.min() == data.max():  # (of the mean over time for a series)
        raise InputFileError(f"{volume.name}: the image is constant (every voxel is {float(data.flat[0]):g}), "
                             "so there is no foreground to tell from background")
    n_slices = data.shape[2]
    total = n_slices + 3
    yield Progress(0, total, "Smoothing")
    sigma = [smoothing_mm / z for z in volume.zooms]
    smooth = ndimage.gaussian_filter(data, sigma)
    yield Progress(1, total, "Otsu threshold")
    threshold = float(threshold_otsu(smooth[smooth > 0] if np.any(smooth > 0) else smooth))
    foreground = smooth > threshold
    yield Progress(2, total, "Largest connected component")
    labels, count = ndimage.label(foreground)
    if count > 1:
        sizes = ndimage.sum_labels(foreground, labels, index=np.arange(1, count + 1))
        foreground = labels == (int(np.argmax(sizes)) + 1)
    yield Progress(3, total, "Filling holes")
    for k in range(n_slices):
        foreground[:, :, k] = ndimage.binary_fill_holes(foreground[:, :, k])
        yield Progress(3 + k + 1, total, f"Filling holes, slice {k + 1} of {n_slices}")
    voxel_ml = float(np.prod(volume.zooms)) / 1000.0
    return MaskResult(mask=foreground, threshold=threshold, volume_ml=float(foreground.sum()) * voxel_ml)
