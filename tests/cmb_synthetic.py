"""A tiny synthetic SWI for detector plumbing tests: dark spheres and dark tubes in a head."""

from __future__ import annotations

import numpy as np

from napari_neuroreview.core.io.nifti import Volume, voxel_sha256


def synthetic_swi(seed: int = 0, shape=(64, 72, 40), zooms=(0.9, 0.9, 1.8), n_spheres: int = 4,
                  n_tubes: int = 3) -> tuple[Volume, np.ndarray]:
    """(magnitude Volume, truth instance labels): spheres are microbleeds, tubes are veins."""
    rng = np.random.default_rng(seed)
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = -np.asarray(shape) * np.asarray(zooms) / 2
    ijk = np.indices(shape).astype(np.float32)
    mm = [ijk[a] * zooms[a] for a in range(3)]
    centre = [s * z / 2 for s, z in zip(shape, zooms)]
    head = sum(((mm[a] - centre[a]) / (0.45 * shape[a] * zooms[a])) ** 2 for a in range(3)) < 1
    image = np.where(head, 1.0, 0.02).astype(np.float32)
    truth = np.zeros(shape, np.uint16)
    for k in range(n_spheres):
        while True:
            c = [rng.uniform(0.3, 0.7) * s * z for s, z in zip(shape, zooms)]
            r = rng.uniform(1.5, 3.0)
            ball = sum((mm[a] - c[a]) ** 2 for a in range(3)) < r**2
            if not (truth[ball] != 0).any():
                break
        image[ball] *= 0.2
        truth[ball] = k + 1
    for _ in range(n_tubes):  # veins: long along z, 1 mm radius
        cx, cy = (rng.uniform(0.3, 0.7) * shape[a] * zooms[a] for a in range(2))
        tube = ((mm[0] - cx) ** 2 + (mm[1] - cy) ** 2 < 1.0) & head & (truth == 0)
        image[tube] *= 0.3
    image = np.abs(image + rng.normal(0, 0.03, shape) + 1j * rng.normal(0, 0.03, shape)).astype(np.float32)
    return Volume(image, affine, tuple(zooms), None, voxel_sha256(image)), truth


def synthetic_swi_with_calcifications(seed: int, n_cmb: int = 3, n_calc: int = 3, shape=(64, 72, 40),
                                      zooms=(0.9, 0.9, 1.8)) -> tuple[Volume, Volume, np.ndarray, np.ndarray]:
    """Microbleeds and calcifications look alike on magnitude; only the phase sign differs.

    Returns (magnitude, phase, microbleed instance labels, calcification instance labels).
    Paramagnetic blood products shift the phase one way, diamagnetic calcium the other:
    the mimic a detector trained without calcifications falls for.
    """
    rng = np.random.default_rng(seed)
    magnitude, _ = synthetic_swi(seed, shape, zooms, n_spheres=0, n_tubes=2)  # head + veins + noise
    affine = magnitude.affine
    mm = [np.indices(shape)[a] * zooms[a] for a in range(3)]
    truth = np.zeros(shape, np.uint16)
    phase = rng.normal(0, 0.05, shape).astype(np.float32)
    image = magnitude.data.copy()
    occupied = np.zeros(shape, bool)
    calcs = np.zeros(shape, np.uint16)
    for k in range(n_cmb + n_calc):
        while True:
            c = [rng.uniform(0.3, 0.7) * s * z for s, z in zip(shape, zooms)]
            ball = sum((mm[a] - c[a]) ** 2 for a in range(3)) < rng.uniform(1.5, 2.5) ** 2
            if not (occupied & ndimage_dilate(ball)).any():
                break
        occupied |= ball
        image[ball] *= 0.2
        if k < n_cmb:
            truth[ball] = k + 1
            phase[ball] += 0.8
        else:
            phase[ball] -= 0.8
            calcs[ball] = k - n_cmb + 1
    mag = Volume(image, affine, tuple(zooms), None, voxel_sha256(image))
    return mag, Volume(phase, affine, tuple(zooms), None, voxel_sha256(phase)), truth, calcs


def ndimage_dilate(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=3)
