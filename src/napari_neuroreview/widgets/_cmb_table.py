"""The findings table of a microbleed review, and navigating from it to a finding.

:func:`make_findings_table` builds the table (one read-only row per finding, in the
session's order: by score, highest first); :class:`FindingsTableMixin` holds the methods
of :class:`~napari_neuroreview.widgets.cmb_review.CMBReviewWidget` that fill it from the
session, jump to a finding when its row is clicked, and say which findings are
selected. They use the widget's state (``viewer``, ``session``, ``points_layer``,
``table``, ``summary``, ``_order``, ``_syncing``) and ``_update_buttons``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.layers import Points
from qtpy.QtWidgets import QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem

from ..core.io.export import ras_to_napari_world
from ..core.tasks.cmb.review import ReviewSession
from ._cmb_layers import STATUS_RGBA

if TYPE_CHECKING:
    import napari

COLUMNS = ("id", "score", "status", "source", "volume mm³")


def make_findings_table() -> QTableWidget:
    """An empty findings table: whole rows, one at a time, not editable."""
    table = QTableWidget(0, len(COLUMNS))
    table.setHorizontalHeaderLabels(COLUMNS)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    return table


class FindingsTableMixin:
    """Findings table and navigation of :class:`~napari_neuroreview.widgets.cmb_review.CMBReviewWidget`.

    Attributes are the widget's (set in its ``__init__``); see the module docstring.
    """

    viewer: napari.Viewer
    session: ReviewSession | None
    points_layer: Points | None
    table: QTableWidget
    summary: QLabel
    _order: list[int]
    _syncing: bool

    def _show_table(self, select: int | None = None) -> None:
        findings = self.session.findings if self.session is not None and self.points_layer is not None else []
        self._syncing = True
        try:
            self.table.setRowCount(len(findings))
            for row, f in enumerate(findings):
                values = (f.id, "" if f.score is None else f"{f.score:.3f}", f.status, f.source,
                          "" if f.extra.get("volume_mm3") is None else f"{f.extra['volume_mm3']:.1f}")
                for col, value in enumerate(values):
                    self.table.setItem(row, col, QTableWidgetItem(str(value)))
            if select is not None and select in [f.id for f in findings]:
                self.table.selectRow([f.id for f in findings].index(select))
        finally:
            self._syncing = False
        counts = {s: sum(f.status == s for f in findings) for s in STATUS_RGBA}
        self.summary.setText(
            ", ".join(f"{n} {s}" for s, n in counts.items() if n) if findings else
            ("No microbleeds on this scan" if self.session is not None and self.points_layer is not None
             else "No review open: run the detector or pick a reviewed scan")
        )
        self._update_buttons()

    def _on_table_selection(self) -> None:
        rows = {index.row() for index in self.table.selectedIndexes()}
        if self._syncing or len(rows) != 1:
            return
        self.jump_to(self._order[rows.pop()])

    def jump_to(self, fid: int) -> None:
        """Show a finding: its slice, the camera centred on it, its point selected."""
        if self.session is None or self.points_layer is None or fid not in self._order:
            return
        world = ras_to_napari_world(self.session.finding(fid).world)
        offset = self.viewer.dims.ndim - 3
        for axis in range(3):
            self.viewer.dims.set_point(offset + axis, float(world[axis]))
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera  # napari >= 0.9
        camera.center = tuple(float(v) for v in world)
        self.points_layer.selected_data = {self._order.index(fid)}
        self.viewer.layers.selection.active = self.points_layer

    def selected_ids(self) -> list[int]:
        """Findings selected on the points layer, else the table's row."""
        if self.points_layer is not None and self.points_layer.selected_data:
            return [self._order[i] for i in sorted(self.points_layer.selected_data) if i < len(self._order)]
        rows = sorted({index.row() for index in self.table.selectedIndexes()})
        return [self._order[r] for r in rows if r < len(self._order)]
