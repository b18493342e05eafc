"""GUI test helpers: capture napari notifications; these tests need a display (Xvfb)."""

from __future__ import annotations

import pytest
from napari.utils.notifications import notification_manager


@pytest.fixture
def notifications():
    """Messages of every napari notification shown during the test."""
    seen: list[str] = []

    def record(event) -> None:
        seen.append(str(event.message if hasattr(event, "message") else event))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)
