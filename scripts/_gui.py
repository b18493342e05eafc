"""What the screenshot scripts share: letting napari's event loop run until something is done, and a sample's panel run."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QApplication


def wait(condition: Callable[[], bool], seconds: float = 600.0) -> None:
    """Process Qt events until ``condition()`` holds or ``seconds`` pass (a worker's result arrives by events)."""
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def run_sample_panel(sample: str, panel_type: type) -> tuple[Any, Any]:
    """``neuroreview view --sample SAMPLE`` in a fresh user data folder (only shipped models listed), then the
    docked panel of ``panel_type`` run once on the CPU; returns (viewer, panel) once its worker has finished."""
    from napari_neuroreview.viewer import open_viewer

    os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="neuroreview-screenshot-")
    viewer, _case = open_viewer(sample=sample, run=False)
    viewer.window.resize(1900, 1150)
    wait(lambda: False, 1.0)
    panel = next(w for w in viewer.window.dock_widgets.values() if isinstance(w, panel_type))
    panel.device.combo.setCurrentText("cpu")
    panel.runner.run_button.click()
    wait(lambda: not panel.runner.running)
    return viewer, panel
