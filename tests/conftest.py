"""Shared fixtures: small synthetic scans; one torch thread for the model tests."""

from __future__ import annotations

import os

import numpy as np
import pytest


def pytest_configure(config) -> None:
    """Under pytest-xdist, each worker's torch/BLAS threads are its share of the cores (``make test``:
    two workers on two cores, one thread each). Why: a second thread per worker only spins; the
    metastasis recipe test took 80.8 CPU s with torch's default threads on a busy machine, 11.6 with one.
    An OMP_NUM_THREADS set by the user wins; set before torch is imported, subprocesses inherit it."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import sys

        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)  # numpy's BLAS may be loaded already
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)


@pytest.fixture
def ras_image() -> tuple[np.ndarray, np.ndarray]:
    """A 40 x 48 x 24 RAS float image at 1 x 1.25 x 2.5 mm with a bright voxel at (30, 10, 5)."""
    rng = np.random.default_rng(7)
    data = rng.random((40, 48, 24)).astype(np.float32)
    data[30, 10, 5] = 10.0
    affine = np.diag([1.0, 1.25, 2.5, 1.0])
    affine[:3, 3] = [-20.0, -30.0, -25.0]
    return data, affine


@pytest.fixture
def no_shipped_weights(monkeypatch, tmp_path):
    """The package's shipped weights hidden behind an empty folder: for "no model installed" and a first "1.0.0".

    Patches ``core.registry.SHIPPED_WEIGHTS_ROOT``, which the registry's default roots and the CLIs (they
    import it inside their functions) read at call time; a module that imports it at module level
    (stroke downstream, cmb retrain, the cmb train panel) keeps the real folder.
    """
    from napari_neuroreview.core import registry

    empty = tmp_path / "no-shipped-weights"
    empty.mkdir()
    monkeypatch.setattr(registry, "SHIPPED_WEIGHTS_ROOT", empty)
    return empty


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on a shared 2-core machine two threads are slower, not faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
