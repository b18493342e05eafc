"""The findings table of a microbleed review: one read-only row per finding, by score.

:class:`FindingsTable` owns its rows (which finding each row shows) and says when the
user picks one (:attr:`FindingsTable.picked`); the review widget answers by jumping to
the finding. Filling the table never counts as a pick. No numerics here: positions are
shown through ``core.io.export``; side and region come from ``core.tasks.cmb.locations``
(the widget's locator hands them in, :data:`._cmb_locations.LOCATING` until found).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem, QWidget

from ..core.io.export import ras_to_napari_world
from ..core.store import Finding
from ._base import row_table
from ._cmb_layers import STATUS_RGBA

if TYPE_CHECKING:
    import napari

COLUMNS = ("id", "score", "status", "slice mm", "side", "region", "RAS mm", "source", "volume mm³", "attention")
#: napari world axis (display order S, P, L) -> the RAS axis letter and index its slice position is written in.
_SLICE_AXES = (("S", 2), ("A", 1), ("R", 0))
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


def slice_text(viewer: napari.Viewer, world_ras: Sequence[float]) -> tuple[str, str]:
    """The finding's position along the display's slice axis in world RAS mm (``S 12.5``), and the slider's index.

    Why world mm: it is the same number on any scan of the patient and in any viewer,
    where a slice index depends on the grid; the slice axis is the one napari is not
    showing (axial unless the user rolled the axes).
    """
    offset = viewer.dims.ndim - 3
    hidden = [a - offset for a in viewer.dims.not_displayed if a >= offset]
    axis = hidden[0] if hidden else 0
    letter, ras = _SLICE_AXES[axis]
    napari_world = ras_to_napari_world(world_ras)
    start, _stop, step = (float(v) for v in viewer.dims.range[offset + axis])
    index = round((float(napari_world[axis]) - start) / step) if step > 0 else 0
    return f"{letter} {float(world_ras[ras]):.1f}", f"slider {index}"


def reviewed_text(findings: Sequence[Finding]) -> str:
    """``Reviewed k of n``: k findings with a decision (any status but pending)."""
    return f"Reviewed {sum(f.status != 'pending' for f in findings)} of {len(findings)}" if findings else ""


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
        row_table(self, COLUMNS)  # the id column numbers the rows
        self._ids: list[int] = []
        self._filling = False
        self.itemSelectionChanged.connect(self._on_selection)

    def show_findings(self, viewer: napari.Viewer, findings: Sequence[Finding], select: int | None = None,
                      subtype: Mapping[int, tuple[str, float]] | None = None,
                      place: Callable[[Finding], tuple[str, str]] | None = None) -> None:
        """One row per finding (in the given order), then select the row of ``select``.

        ``subtype``: finding id -> (MARS region label, attention) of the latest subtype
        classification; findings it does not name (rejected, or added since) show no
        attention. ``place``: a finding's (side, region) cells.
        """
        subtype = subtype or {}
        place = place or (lambda _f: ("", ""))
        self._filling = True
        try:
            self._ids = [f.id for f in findings]
            self.setRowCount(len(findings))
            for row, f in enumerate(findings):
                at, index = slice_text(viewer, f.world)
                values = (f.id, format_score(f.score), f.status, at, *place(f),
                          "{:.1f}, {:.1f}, {:.1f}".format(*f.world), f.source,
                          "" if f.extra.get("volume_mm3") is None else f"{f.extra['volume_mm3']:.1f}",
                          f"{subtype[f.id][1]:.2f}" if f.id in subtype else "")
                for col, value in enumerate(values):
                    item = QTableWidgetItem(str(value))
                    if COLUMNS[col] == "score" and f.score is not None:
                        item.setData(Qt.ItemDataRole.UserRole, float(f.score))  # the exact score, for sorting and tests
                        item.setToolTip(f"score {f.score:.8f}")
                    elif COLUMNS[col] == "slice mm":
                        item.setToolTip(index)
                    self.setItem(row, col, item)
            if select is not None and select in self._ids:
                self.selectRow(self._ids.index(select))
        finally:
            self._filling = False

    def select(self, fid: int) -> None:
        """Select a finding's row without it counting as a pick (the viewer is already there)."""
        if fid in self._ids:
            self._filling = True
            try:
                self.selectRow(self._ids.index(fid))
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
