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
