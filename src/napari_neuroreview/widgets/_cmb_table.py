"""The findings table of a microbleed review: one read-only row per finding, by score.

:class:`FindingsTable` owns its rows (which finding each row shows) and says when the
user picks one (:attr:`FindingsTable.picked`); the review widget answers by jumping to
the finding. Filling the table never counts as a pick. No numerics here: positions are
shown through ``core.io.export``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from ..core.io.export import ras_to_napari_world
from ..core.store import Finding
from ._cmb_layers import STATUS_RGBA

if TYPE_CHECKING:
    import napari

COLUMNS = ("id", "score", "status", "slice", "RAS mm", "source", "volume mm³", "region", "attention")
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


def summary_text(findings: Sequence[Finding], review_open: bool) -> str:
    """The line above the table: counts by status, or why there is nothing to show."""
    if findings:
        counts = {s: sum(f.status == s for f in findings) for s in STATUS_RGBA}
        return ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return ("No microbleeds on this scan" if review_open
            else "No review open: run the detector or pick a reviewed scan")


class FindingsTable(QTableWidget):
    """Whole rows, one at a time, not editable; the id column numbers the rows.

    Signals
    -------
    picked(int)
        The id of the finding whose row the user selected (not emitted while filling).
    """

    picked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)  # the id column numbers the rows
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self._ids: list[int] = []
        self._filling = False
        self.itemSelectionChanged.connect(self._on_selection)

    def show_findings(self, viewer: napari.Viewer, findings: Sequence[Finding], select: int | None = None,
                      subtype: Mapping[int, tuple[str, float]] | None = None) -> None:
        """One row per finding (in the given order), then select the row of ``select``.

        ``subtype``: finding id -> (MARS region label, attention) of the latest subtype
        classification; findings it does not name (rejected, or added since) show blanks.
        """
        subtype = subtype or {}
        self._filling = True
        try:
            self._ids = [f.id for f in findings]
            self.setRowCount(len(findings))
            for row, f in enumerate(findings):
                world = ras_to_napari_world(f.world)
                values = (f.id, format_score(f.score), f.status, slice_text(viewer, world),
                          "{:.1f}, {:.1f}, {:.1f}".format(*f.world), f.source,
                          "" if f.extra.get("volume_mm3") is None else f"{f.extra['volume_mm3']:.1f}",
                          subtype[f.id][0] if f.id in subtype else "",
                          f"{subtype[f.id][1]:.2f}" if f.id in subtype else "")
                for col, value in enumerate(values):
                    item = QTableWidgetItem(str(value))
                    if COLUMNS[col] == "score" and f.score is not None:
                        item.setData(Qt.ItemDataRole.UserRole, float(f.score))  # the exact score, for sorting and tests
                        item.setToolTip(f"score {f.score:.8f}")
                    self.setItem(row, col, item)
            if select is not None and select in self._ids:
                self.selectRow(self._ids.index(select))
        finally:
            self._filling = False

    def selected_ids(self) -> list[int]:
        """The finding of the selected row (empty when none)."""
        rows = sorted({index.row() for index in self.selectedIndexes()})
        return [self._ids[r] for r in rows if r < len(self._ids)]

    def _on_selection(self) -> None:
        rows = {index.row() for index in self.selectedIndexes()}
        if self._filling or len(rows) != 1:
            return
        row = rows.pop()
        if row < len(self._ids):
            self.picked.emit(self._ids[row])
