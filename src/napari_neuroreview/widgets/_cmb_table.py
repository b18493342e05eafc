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

import numpy as np
from napari.layers import Points
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QTableWidget, QTableWidgetItem

from ..core.io.export import ras_to_napari_world
from ..core.tasks.cmb.review import ReviewSession
from ._cmb_layers import STATUS_RGBA
from .case import camera_of

if TYPE_CHECKING:
    import napari

COLUMNS = ("id", "score", "status", "slice", "RAS mm", "source", "volume mm³")
#: Scores at or above this are shown as their distance to 1 (a detector's top scores all read 1.000 at 3 decimals).
NEAR_ONE = 0.995


def format_score(score: float | None) -> str:
    """A score that still separates findings near 1: ``0.871``, ``1 − 3.2e-05``.

    Why: a confident detector gives many findings 0.9999..., which 3 decimals all show
    as 1.000; the distance to 1 keeps their order readable.
    """
    if score is None or not np.isfinite(score):
        return ""
    if score >= NEAR_ONE:
        return "1" if score >= 1.0 else f"1 − {1.0 - score:.1e}"
    return f"{score:.3f}"


def slice_text(viewer: napari.Viewer, napari_world: np.ndarray) -> str:
    """The axial slice as napari's slider numbers it, and its S position in mm (``42 (S 12.5)``)."""
    axis = viewer.dims.ndim - 3
    start, _stop, step = (float(v) for v in viewer.dims.range[axis])
    index = int(round((float(napari_world[0]) - start) / step)) if step > 0 else 0
    return f"{index} (S {float(napari_world[0]):.1f})"


def make_findings_table() -> QTableWidget:
    """An empty findings table: whole rows, one at a time, not editable."""
    table = QTableWidget(0, len(COLUMNS))
    table.setHorizontalHeaderLabels(COLUMNS)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)  # the id column numbers the rows
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
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
                world = ras_to_napari_world(f.world)
                values = (f.id, format_score(f.score), f.status, slice_text(self.viewer, world),
                          "{:.1f}, {:.1f}, {:.1f}".format(*f.world), f.source,
                          "" if f.extra.get("volume_mm3") is None else f"{f.extra['volume_mm3']:.1f}")
                for col, value in enumerate(values):
                    item = QTableWidgetItem(str(value))
                    if COLUMNS[col] == "score" and f.score is not None:
                        item.setData(Qt.ItemDataRole.UserRole, float(f.score))  # the exact score, for sorting and tests
                        item.setToolTip(f"score {f.score:.8f}")
                    self.table.setItem(row, col, item)
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
        camera = camera_of(self.viewer)
        camera.center = tuple(float(v) for v in world)
        self.points_layer.selected_data = {self._order.index(fid)}
        self.viewer.layers.selection.active = self.points_layer

    def selected_ids(self) -> list[int]:
        """Findings selected on the points layer, else the table's row."""
        if self.points_layer is not None and self.points_layer.selected_data:
            return [self._order[i] for i in sorted(self.points_layer.selected_data) if i < len(self._order)]
        rows = sorted({index.row() for index in self.table.selectedIndexes()})
        return [self._order[r] for r in rows if r < len(self._order)]
