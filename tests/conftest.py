"""Shared fixtures: small synthetic scans."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def ras_image() -> tuple[np.ndarray, np.ndarray]:
    """A 40 x 48 x 24 RAS float image at 1 x 1.25 x 2.5 mm with a bright voxel at (30, 10, 5)."""
    rng = np.random.default_rng(7)
    data = rng.random((40, 48, 24)).astype(np.float32)
    data[30, 10, 5] = 10.0
    affine = np.diag([1.0, 1.25, 2.5, 1.0])
    affine[:3, 3] = [-20.0, -30.0, -25.0]
    return data, affine
