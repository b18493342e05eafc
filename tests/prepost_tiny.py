"""A pre/post model trained for one epoch on synthetic rows of the real model grid (for tests).

Not a good model: it exists so that the comparison, the CLI and the widget can be driven
end to end in seconds, with the same grid and feature layout as the shipped weights.
"""

from __future__ import annotations

import functools
from pathlib import Path

from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.networks import model as M
from napari_neuroreview.core.tasks.networks.features import build_rows, model_context
from napari_neuroreview.core.tasks.networks.train import Stage1Config, train_prepost

from prepost_synthetic import synthetic_scans


@functools.lru_cache(maxsize=1)
def tiny_prepost_model() -> M.PrePostModel:
    """Trained once per test session (about 10 s)."""
    context = model_context()
    rows = build_rows(synthetic_scans(n_patients=6, context=context, n_volumes=100), context)
    model, _ = run_to_completion(train_prepost(rows, Stage1Config(epochs=1, batch_size=30, width=4), device="cpu"))
    return model


def install_tiny_model(root: Path, version: str = "0.1.0") -> None:
    """Save the tiny model into a registry root (e.g. the test's user registry)."""
    M.save_prepost_model(tiny_prepost_model(), root, version, training_data="synthetic rows (test)")
