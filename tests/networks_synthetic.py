"""A small synthetic rs-fMRI series with planted networks (for ICA / matching tests).

Not the phantom (core.phantoms.rsfmri): a minimal linear mixture on a coarse MNI grid,
fast enough for unit tests. The planted maps are built from each network's ROIs moved by
a few millimetres and re-weighted at random (so they are *not* the matching templates),
times the grey-matter probability; a few nuisance sources (random blobs) and white noise
are added.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage, signal

from napari_neuroreview.core.anatomy import atlas, make_affine
from napari_neuroreview.core.io.nifti import Volume, volume_from_image


@dataclass
class SyntheticBold:
    bold: Volume
    maps: np.ndarray          # (5, X, Y, Z) planted network maps, NETWORKS order
    timecourses: np.ndarray   # (T, 5)


def _smooth_timecourse(rng: np.random.Generator, n: int, tr_s: float) -> np.ndarray:
    """Band-limited (0.01-0.1 Hz) random signal, unit SD."""
    b, a = signal.butter(2, [0.01, 0.1], btype="band", fs=1.0 / tr_s)
    x = signal.filtfilt(b, a, rng.standard_normal(n + 100))[50:-50]
    return (x - x.mean()) / x.std()


def make_synthetic_bold(
    seed: int = 0, n_volumes: int = 100, voxel_mm: float = 6.0, tr_s: float = 2.0,
    amplitude: float = 0.03, noise: float = 0.01, n_nuisance: int = 4,
) -> SyntheticBold:
    """A 4D series: 1000 x brain + sum_i amplitude*1000 * map_i(x) tc_i(t) + noise."""
    rng = np.random.default_rng(seed)
    affine, shape = make_affine((voxel_mm,) * 3, "RAS")
    gm = atlas.grey_matter_probability(affine, shape)
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(gm > 0.05, iterations=2))
    maps = []
    for name in atlas.NETWORKS:
        rois = atlas.network_rois(name)
        coords = rois.coords_mm + rng.normal(0.0, 3.0, rois.coords_mm.shape)
        weights = rois.weights * rng.uniform(0.6, 1.0, len(rois.weights))
        m = atlas.roi_map(coords, weights, rois.radius_mm, affine, shape, 6.0) * np.clip(gm / 0.5, 0, 1)
        maps.append(m / m.max())
    nuisance = []
    for _ in range(n_nuisance):
        blob = np.zeros(shape, np.float32)
        idx = np.argwhere(brain)[rng.integers(0, brain.sum(), 3)]
        blob[tuple(idx.T)] = 1.0
        blob = ndimage.gaussian_filter(blob, 1.5) * brain
        nuisance.append(blob / blob.max())
    sources = np.stack(maps + nuisance)  # (S, X, Y, Z)
    tcs = np.stack([_smooth_timecourse(rng, n_volumes, tr_s) for _ in range(len(sources))], axis=1)
    base = 1000.0 * (0.7 + 0.3 * gm) * brain
    signal4d = np.einsum("sxyz,ts->xyzt", sources, tcs) * amplitude * 1000.0
    data = base[..., None] * (1.0 + 0.0 * signal4d) + signal4d * brain[..., None]
    data = data + rng.normal(0.0, noise * 1000.0, data.shape) * brain[..., None]
    data = data + np.linspace(0, 5, n_volumes)[None, None, None, :] * brain[..., None]  # drift
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = tr_s
    volume = volume_from_image(img)
    volume.tr_s = tr_s
    return SyntheticBold(bold=volume, maps=np.stack(maps), timecourses=tcs[:, : len(maps)])


def save_bold(case: SyntheticBold, path) -> None:
    img = nib.Nifti1Image(np.asarray(case.bold.data, np.float32), case.bold.affine)
    img.set_sform(case.bold.affine, code=1)
    img.set_qform(case.bold.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = case.bold.tr_s
    nib.save(img, str(path))
