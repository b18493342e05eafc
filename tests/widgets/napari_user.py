"""Drive napari as a user does: plugin widgets from the manifest, real mouse and key events.

Why: napari hands a plugin widget a proxy of the viewer (``PublicOnlyProxy``) and runs it
in its own event loop; a widget built directly in a test with the real viewer hides the
bugs that only show there (identity checks against a proxied layer, re-entrant progress
handlers). Every GUI test opens widgets with :func:`dock` and acts with :func:`click`,
:func:`drag` and :func:`key` on the canvas, the way a radiologist's hand would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication

PLUGIN = "napari-neuroreview"


def dock(viewer: Any, name: str) -> Any:
    """Open one of the plugin's dock widgets as the Plugins menu does; return the widget."""
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    QApplication.processEvents()
    return widget


def canvas_widget(viewer: Any) -> Any:
    """The Qt widget that receives the canvas' mouse and key events."""
    return viewer.window._qt_viewer.canvas.native


def to_canvas(viewer: Any, world: Sequence[float]) -> QPoint:
    """Canvas pixel (logical) under a napari world position in the current 2D view."""
    canvas = viewer.window._qt_viewer.canvas
    view = canvas.view
    displayed = list(viewer.dims.displayed)
    xy = [float(world[d]) for d in displayed][::-1]  # vispy's (x, y) is the displayed dims reversed
    mapped = (view.transform * view.scene.transform).map(xy)
    return QPoint(int(round(mapped[0])), int(round(mapped[1])))


def _send(widget: Any, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton, buttons: Qt.MouseButton,
          modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    local = QPointF(pos)
    event = QMouseEvent(kind, local, QPointF(widget.mapToGlobal(pos)), button, buttons, modifiers)
    QApplication.sendEvent(widget, event)


def click(viewer: Any, world: Sequence[float], modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    """A left click on the canvas at a world position (press and release, no move)."""
    widget, pos = canvas_widget(viewer), to_canvas(viewer, world)
    _send(widget, QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    _send(widget, QEvent.Type.MouseButtonPress, pos, Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton, modifiers)
    _send(widget, QEvent.Type.MouseButtonRelease, pos, Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton, modifiers)
    QApplication.processEvents()


def hover(viewer: Any, world: Sequence[float]) -> None:
    """Move the mouse over the canvas (sets napari's cursor position)."""
    widget, pos = canvas_widget(viewer), to_canvas(viewer, world)
    _send(widget, QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    QApplication.processEvents()


def drag(viewer: Any, start: Sequence[float], end: Sequence[float], steps: int = 8) -> None:
    """Press at ``start``, move in steps with the button held, release at ``end`` (world positions).

    QTest.mouseMove carries no pressed buttons under Qt 6, so the events are built by hand.
    """
    widget = canvas_widget(viewer)
    a, b = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    first = to_canvas(viewer, a)
    _send(widget, QEvent.Type.MouseMove, first, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    _send(widget, QEvent.Type.MouseButtonPress, first, Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton)
    for t in np.linspace(0.0, 1.0, steps + 1)[1:]:
        _send(widget, QEvent.Type.MouseMove, to_canvas(viewer, a + t * (b - a)), Qt.MouseButton.NoButton,
              Qt.MouseButton.LeftButton)
        QApplication.processEvents()
    _send(widget, QEvent.Type.MouseButtonRelease, to_canvas(viewer, b), Qt.MouseButton.LeftButton,
          Qt.MouseButton.NoButton)
    QApplication.processEvents()


def key(viewer: Any, qt_key: Qt.Key, modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    """A real key press on the canvas, dispatched by napari to the active layer's bindings."""
    widget = canvas_widget(viewer)
    widget.setFocus()
    QTest.keyClick(widget, qt_key, modifiers)
    QApplication.processEvents()
