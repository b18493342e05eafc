"""The on-screen side of a microbleed review: mask and point layers, keys, point-tool edits.

:class:`ReviewLayersMixin` holds the methods of
:class:`~napari_neuroreview.widgets.cmb_review.CMBReviewWidget` that build a review's
layers (a Labels layer of instance masks, a Points layer coloured by review status, with
the review keys bound), redraw them from the session (the store's truth), and turn
edits made with napari's own point tools into session edits. They are kept apart from
the widget's controls so each file reads on its own; they use the widget's state
(``viewer``, ``session``, ``scan_layer``, ``points_layer``, ``labels_layer``,
``_order``, ``_syncing``, ``_removing``) and its actions (``accept_selected`` ...
``redo``, ``_show_table``, ``_guard``). No numerics here: coordinates go through the
scan's DisplayGeometry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Points
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtCore import QTimer

from ..core.io.layers import META_KEY, geometry_of
from ..core.io.orientation import to_display
from ..core.tasks.cmb.review import ReviewSession

if TYPE_CHECKING:
    import napari

#: Review status -> RGBA, shared by the points and their masks.
STATUS_RGBA = {
    "pending": (1.0, 1.0, 0.0, 1.0),
    "accepted": (0.0, 0.8, 0.0, 1.0),
    "rejected": (1.0, 0.0, 0.0, 1.0),
    "added": (0.0, 1.0, 1.0, 1.0),
    "moved": (1.0, 0.55, 0.0, 1.0),
}


def is_phase_name(name: str) -> bool:
    """A layer whose name says phase ("swi_phase", "SWI Phase", "pha") is taken for the phase image."""
    lowered = name.lower()
    return "phase" in lowered or lowered.endswith("_pha") or lowered == "pha"


def layer_key(layer: Any) -> tuple[Any, str]:
    """What identifies a scan layer across napari's proxies: its unique id and its voxels' sha256."""
    return (getattr(layer, "unique_id", None) or id(layer), str(layer.metadata.get(META_KEY, {}).get("sha256", "")))


class ReviewLayersMixin:
    """Review layers of :class:`~napari_neuroreview.widgets.cmb_review.CMBReviewWidget`.

    Attributes are the widget's (set in its ``__init__``); see the module docstring.
    """

    viewer: napari.Viewer
    session: ReviewSession | None
    scan_layer: Image | None
    points_layer: Points | None
    labels_layer: Any
    _order: list[int]
    _syncing: bool
    _removing: list[int]
    _scan_key: tuple[Any, str] | None

    def _remove_review_layers(self, scan: Image | None = None) -> None:
        """Remove the masks and points of a review (ours, or left by a closed widget)."""
        if self.points_layer is not None:
            self.points_layer.events.data.disconnect(self._on_points_data)
        names = [f"{scan.name} CMB masks", f"{scan.name} CMBs"] if scan is not None else []
        for layer in (self.labels_layer, self.points_layer):
            if layer is not None:
                names.append(layer.name)
        self.points_layer = self.labels_layer = None
        for name in dict.fromkeys(names):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)

    def _show_session(self, layer: Image, session: ReviewSession) -> None:
        geometry = geometry_of(layer.metadata)
        self.scan_layer, self.session, self._scan_key = layer, session, layer_key(layer)
        self._remove_review_layers(layer)
        common = {"scale": layer.scale[-3:], "translate": layer.translate[-3:], "metadata": dict(layer.metadata)}
        self.labels_layer = self.viewer.add_labels(
            to_display(session.instances(include_rejected=True), geometry, order=0),
            name=f"{layer.name} CMB masks", opacity=0.5, **common,
        )
        points = self.viewer.add_points(np.empty((0, 3)), name=f"{layer.name} CMBs", ndim=3, size=4,
                                        border_color="black", **common)
        self.points_layer = points
        points.events.data.connect(self._on_points_data)
        bindings: dict[str, Callable[[], Any]] = {
            "a": self.accept_selected, "r": self.reject_selected, "Delete": self.delete_selected,
            "Backspace": self.delete_selected, "n": self.add_at_cursor, "Control-Z": self.undo,
            "Control-Shift-Z": self.redo,
        }
        for key, action in bindings.items():
            points.bind_key(key, _key_handler(action), overwrite=True)
        points.mode = "select"
        self._sync()
        self.viewer.layers.selection.active = points

    def _sync(self, select: int | None = None) -> None:
        """Points, mask colours, table and buttons from the session (the store's truth)."""
        session, points = self.session, self.points_layer
        if session is None or points is None:
            self._show_table()
            return
        geometry = geometry_of(self.scan_layer.metadata)
        findings = session.findings
        self._order = [f.id for f in findings]
        self._syncing = True
        try:
            points.selected_data = set()
            points.data = geometry.world_to_display(np.array([f.world for f in findings]).reshape(-1, 3)).reshape(-1, 3)
            points.features = {
                "id": self._order, "score": [np.nan if f.score is None else f.score for f in findings],
                "status": [f.status for f in findings], "source": [f.source for f in findings],
                "model_version": [f.model[1] if f.model else "" for f in findings],
            }
            if findings:
                points.face_color = np.array([STATUS_RGBA[f.status] for f in findings])
            if select in self._order:
                points.selected_data = {self._order.index(select)}
            if self.labels_layer is not None:
                colors: dict[int | None, Any] = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
                colors.update({f.id: STATUS_RGBA[f.status] for f in findings})
                self.labels_layer.colormap = DirectLabelColormap(color_dict=colors)
        finally:
            self._syncing = False
        self._show_table(select)

    def _on_points_data(self, event: Any) -> None:
        """Moves, adds and deletes made with napari's own point tools, into the session."""
        # Only our points layer is connected here. No identity test on event.source: napari hands
        # plugins a proxy of the layer, so the emitting layer is never `is` our reference to it.
        if self._syncing or self.session is None or self.points_layer is None:
            return
        action = str(getattr(event.action, "value", event.action))
        indices = [int(i) for i in (event.data_indices or ())]
        data = np.asarray(self.points_layer.data)
        geometry = geometry_of(self.scan_layer.metadata)
        if action == "removing":
            self._removing = [self._order[i] for i in indices if i < len(self._order)]
            return
        edits: list[Callable[[], Any]] = []
        if action == "removed":
            edits = [lambda fid=fid: self.session.delete(fid) for fid in self._removing]
            self._removing = []
        elif action == "added":
            edits = [lambda i=i: self.session.add(geometry.display_to_world(data[i])) for i in indices]
        elif action == "changed":
            edits = [lambda i=i: self.session.move(self._order[i], geometry.display_to_world(data[i]))
                     for i in indices if i < len(self._order)]
        if not edits:
            return
        for edit in edits:
            if not self._guard(edit):
                break
        QTimer.singleShot(0, self._sync)  # redraw after napari has finished its own update


def _key_handler(action: Callable[[], Any]) -> Callable[[Any], None]:
    def handler(_layer: Any) -> None:
        action()

    return handler
