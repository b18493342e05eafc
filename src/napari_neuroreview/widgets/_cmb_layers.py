"""The on-screen side of a microbleed review: mask and point layers, keys, point-tool edits.

:class:`ReviewLayers` owns the layers of the review on screen (a Labels layer of instance
masks drawn as outlines, a Points layer of rings coloured by review status, with the
review keys bound), redraws them from the session (the store's truth), navigates to a
finding (and to the next or previous one), hides and shows them, and turns edits made
with napari's own point tools into session edits. Why rings and outlines: the reader
judges the dark spot itself (its size, shape, blooming), so nothing may cover it. The review widget composes it and
hands it its collaborators explicitly (the session, the key actions, the guard that
reports refused edits, the redraw). No numerics here: coordinates go through the scan's
DisplayGeometry and ``core.io.export``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Points
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtCore import QTimer

from ..core.io.export import ras_to_napari_world
from ..core.store import Finding
from ..core.io.layers import META_KEY, geometry_of
from ..core.io.orientation import to_display
from ..core.tasks.cmb.review import ReviewSession
from .case import camera_of

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
#: Marker of a finding: a ring (napari's symbol), its status colour on the annulus, the centre left clear.
POINT_SYMBOL = "ring"
#: Ring diameter (mm) of a finding: napari's ring has a hole of ~40 % of it, so 10 mm leaves a 2-4 mm spot clear.
POINT_SIZE = 10.0
#: The extra ring size (mm) of the most attended finding (the subtype's attention).
ATTENTION_SIZE = 6.0
#: Pixels of the mask outline (Labels ``contour``): the voxels inside stay visible.
MASK_CONTOUR = 1


def is_phase_name(name: str) -> bool:
    """A layer whose name says phase ("swi_phase", "SWI Phase", "pha") is taken for the phase image."""
    lowered = name.lower()
    return "phase" in lowered or lowered.endswith("_pha") or lowered == "pha"


def layer_key(layer: Any) -> tuple[Any, str]:
    """What identifies a scan layer across napari's proxies: its unique id and its voxels' sha256."""
    return (getattr(layer, "unique_id", None) or id(layer), str(layer.metadata.get(META_KEY, {}).get("sha256", "")))


class ReviewLayers:
    """The masks and points layers of the review on screen, kept in step with the session.

    Parameters
    ----------
    viewer : napari.Viewer
    session : callable
        Returns the widget's current :class:`ReviewSession` (or None): the store's truth
        the layers are drawn from and point-tool edits are written to.
    keys : mapping of str to callable
        napari key -> review action, bound on the points layer (``"a"`` accept, ...).
    guard : callable
        Runs one session edit; False when it was refused (the user was told).
    redraw : callable
        Redraws the whole review (layers, table, buttons) after point-tool edits.
    region_of : callable, optional
        A finding's region text for the hover status ("" while unknown).

    Attributes
    ----------
    scan : Image or None
        The scan layer the review is drawn over (its DisplayGeometry places the points).
    points, labels : napari layers or None
        The review's layers while they are in the viewer.
    order : list of int
        Finding id of each point, in the session's order.
    """

    def __init__(self, viewer: napari.Viewer, session: Callable[[], ReviewSession | None],
                 keys: Mapping[str, Callable[[], Any]], guard: Callable[[Callable[[], Any]], bool],
                 redraw: Callable[[], None], region_of: Callable[[Finding], str] = lambda _f: "") -> None:
        self.viewer = viewer
        self._region_of = region_of
        self._session = session
        self._keys = dict(keys)
        self._guard = guard
        self._redraw = redraw
        self.scan: Image | None = None
        self.points: Points | None = None
        self.labels: Any = None
        self.order: list[int] = []
        self._syncing = False
        self._removing: list[int] = []

    def remove(self, scan: Image | None = None) -> None:
        """Remove the masks and points of a review (ours, or left by a closed widget)."""
        if self.points is not None:
            self.points.events.data.disconnect(self._on_points_data)
        names = [f"{scan.name} CMB masks", f"{scan.name} CMBs"] if scan is not None else []
        for layer in (self.labels, self.points):
            if layer is not None:
                names.append(layer.name)
        self.points = self.labels = None
        for name in dict.fromkeys(names):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)

    def forget_closed(self) -> bool:
        """Let go of layers the user closed; True when the points went (the review is no longer shown).

        The review stays in the store; picking the scan again restores it.
        """
        if self.labels is not None and self.labels not in self.viewer.layers:
            self.labels = None
        if self.points is not None and self.points not in self.viewer.layers:
            self.points.events.data.disconnect(self._on_points_data)
            self.points = None
            return True
        return False

    def build(self, layer: Image, session: ReviewSession) -> None:
        """Replace any review layers of ``layer`` with new masks and points, keys bound (drawn by :meth:`sync`)."""
        geometry = geometry_of(layer.metadata)
        self.scan = layer
        self.remove(layer)
        common = {"scale": layer.scale[-3:], "translate": layer.translate[-3:], "metadata": dict(layer.metadata)}
        self.labels = self.viewer.add_labels(
            to_display(session.instances(include_rejected=True), geometry, order=0),
            name=f"{layer.name} CMB masks", opacity=0.5, **common,
        )
        self.labels.contour = MASK_CONTOUR
        points = self.viewer.add_points(np.empty((0, 3)), name=f"{layer.name} CMBs", ndim=3, size=POINT_SIZE,
                                        symbol=POINT_SYMBOL, border_width=0, **common)
        self.points = points
        points.events.data.connect(self._on_points_data)
        for key, action in self._keys.items():
            points.bind_key(key, _key_handler(action), overwrite=True)
        points.mode = "select"

    def activate(self) -> None:
        """Make the points the active layer, so the review keys reach them."""
        if self.points is not None:
            self.viewer.layers.selection.active = self.points

    def sync(self, select: int | None = None) -> None:
        """Points and mask colours from the session (the store's truth); ``select`` a finding's point."""
        session, points = self._session(), self.points
        if session is None or points is None or self.scan is None:
            return
        geometry = geometry_of(self.scan.metadata)
        findings = session.findings
        self.order = [f.id for f in findings]
        self._syncing = True
        try:
            points.selected_data = set()
            points.data = geometry.world_to_display(np.array([f.world for f in findings]).reshape(-1, 3)).reshape(-1, 3)
            points.features = {
                "id": self.order, "score": [np.nan if f.score is None else f.score for f in findings],
                "status": [f.status for f in findings], "source": [f.source for f in findings],
                "model_version": [f.model[1] if f.model else "" for f in findings],
                "volume_mm3": [np.nan if f.extra.get("volume_mm3") is None else round(float(f.extra["volume_mm3"]), 1)
                               for f in findings],
                "region": [self._region_of(f) for f in findings],
            }  # napari shows these in the status bar when the mouse is over a point
            if findings:
                points.face_color = np.array([STATUS_RGBA[f.status] for f in findings])
            if select in self.order:
                points.selected_data = {self.order.index(select)}
            if self.labels is not None:
                colors: dict[int | None, Any] = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
                colors.update({f.id: STATUS_RGBA[f.status] for f in findings})
                self.labels.colormap = DirectLabelColormap(color_dict=colors)
        finally:
            self._syncing = False

    def jump_to(self, fid: int, world_ras: Sequence[float]) -> None:
        """Show a finding: its slice, the camera centred on it, its point selected."""
        if self.points is None or fid not in self.order:
            return
        world = ras_to_napari_world(world_ras)
        offset = self.viewer.dims.ndim - 3
        for axis in range(3):
            self.viewer.dims.set_point(offset + axis, float(world[axis]))
        camera = camera_of(self.viewer)
        camera.center = tuple(float(v) for v in world)
        self.points.selected_data = {self.order.index(fid)}
        self.viewer.layers.selection.active = self.points

    def show_attention(self, subtype: Mapping[int, tuple[str, float]]) -> None:
        """Ring size grows with the finding's subtype attention (relative to the most attended one)."""
        points = self.points
        if points is None or not len(points.data):
            return
        top = max((a for _r, a in subtype.values()), default=0.0) or 1.0
        points.size = np.array([POINT_SIZE + ATTENTION_SIZE * subtype[fid][1] / top if fid in subtype
                                else POINT_SIZE for fid in self.order])

    def neighbour(self, fid: int | None, step: int) -> int | None:
        """The finding ``step`` rows from ``fid`` in table order (the first or last when none); None past the ends."""
        if not self.order:
            return None
        if fid not in self.order:
            return self.order[0 if step > 0 else -1]
        index = self.order.index(fid) + step
        return self.order[index] if 0 <= index < len(self.order) else None

    def toggle(self) -> bool:
        """Hide or show every overlay of the review (points and masks) together; True when now shown."""
        shown = not (self.points is not None and self.points.visible)
        for layer in (self.points, self.labels):
            if layer is not None:
                layer.visible = shown
        return shown

    def selected_ids(self) -> list[int]:
        """Findings whose points are selected."""
        if self.points is None:
            return []
        return [self.order[i] for i in sorted(self.points.selected_data) if i < len(self.order)]

    def disconnect(self) -> None:
        """Stop following the points and let go of the layers (they stay in the viewer)."""
        if self.points is not None:
            self.points.events.data.disconnect(self._on_points_data)
        self.points = self.labels = None
        self.scan = None

    def _on_points_data(self, event: Any) -> None:
        """Moves, adds and deletes made with napari's own point tools, into the session."""
        # Only our points layer is connected here. No identity test on event.source: napari hands
        # plugins a proxy of the layer, so the emitting layer is never `is` our reference to it.
        session = self._session()
        if self._syncing or session is None or self.points is None or self.scan is None:
            return
        action = str(getattr(event.action, "value", event.action))
        indices = [int(i) for i in (event.data_indices or ())]
        data = np.asarray(self.points.data)
        geometry = geometry_of(self.scan.metadata)
        if action == "removing":
            self._removing = [self.order[i] for i in indices if i < len(self.order)]
            return
        edits: list[Callable[[], Any]] = []
        if action == "removed":
            edits = [lambda fid=fid: session.delete(fid) for fid in self._removing]
            self._removing = []
        elif action == "added":
            edits = [lambda i=i: session.add(geometry.display_to_world(data[i])) for i in indices]
        elif action == "changed":
            edits = [lambda i=i: session.move(self.order[i], geometry.display_to_world(data[i]))
                     for i in indices if i < len(self.order)]
        if not edits:
            return
        for edit in edits:
            if not self._guard(edit):
                break
        QTimer.singleShot(0, self._redraw)  # redraw after napari has finished its own update


def _key_handler(action: Callable[[], Any]) -> Callable[[Any], None]:
    def handler(_layer: Any) -> None:
        action()

    return handler
