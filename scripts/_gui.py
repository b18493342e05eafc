"""What the screenshot scripts share: letting napari's event loop run until something is done."""

from __future__ import annotations

import time
from collections.abc import Callable

from qtpy.QtWidgets import QApplication


def wait(condition: Callable[[], bool], seconds: float = 600.0) -> None:
    """Process Qt events until ``condition()`` holds or ``seconds`` pass (a worker's result arrives by events)."""
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)
