"""Every key the microbleed review binds, in one table: the bindings and the Keys... sheet both read it.

Why one table: a shortcut sheet written apart from the bindings drifts from them (a key
renamed in one place only); here :func:`bindings` binds exactly the rows of
:data:`REVIEW_KEYS` and :class:`KeysDialog` lists exactly those rows.

The keys were chosen against napari's own points-layer shortcuts (``P`` is its add mode,
``A`` its select-all, ``S``/``Z`` its select and pan modes; ``.`` ``,`` and ``H`` are free):
a review key overwrites napari's binding on the review's points layer only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qtpy.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


@dataclass(frozen=True)
class ReviewKey:
    """One key of the review: napari's key name, how the sheet writes it, the widget method, what it does."""

    key: str
    shown: str
    action: str
    what: str


#: The review's keys, bound on its points layer (the active layer while reviewing).
REVIEW_KEYS: tuple[ReviewKey, ...] = (
    ReviewKey("a", "A", "accept_selected", "Accept the selected finding(s), then go to the next"),
    ReviewKey("r", "R", "reject_selected", "Reject the selected finding(s), then go to the next"),
    ReviewKey("Delete", "Delete", "delete_selected", "Delete the selected finding(s) (a user-added one disappears)"),
    ReviewKey("Backspace", "Backspace", "delete_selected", "Delete, as the Delete key"),
    ReviewKey("n", "N", "add_at_cursor", "Add a microbleed at the mouse cursor"),
    ReviewKey(".", ".", "next_finding", "Next finding in table order: select it and centre the view on it"),
    ReviewKey(",", ",", "previous_finding", "Previous finding in table order"),
    ReviewKey("h", "H", "toggle_overlays", "Hide / show every overlay of the review (rings and mask outlines)"),
    ReviewKey("Control-Z", "Ctrl+Z", "undo", "Undo the latest edit"),
    ReviewKey("Control-Shift-Z", "Ctrl+Shift+Z", "redo", "Redo the latest undone edit"),
)
#: What the mouse does in the review (napari's own tools; listed on the sheet beside the keys).
MOUSE = (
    ("Click a point", "Select the finding (select mode)"),
    ("Drag a point", "Move the finding (recorded as 'moved')"),
    ("Hover a point", "Its id, score, region, volume and status in the status bar"),
    ("Click a table row", "Go to that finding"),
)


def bindings(target: Any) -> dict[str, Callable[[], Any]]:
    """napari key -> the ``target``'s method of each :data:`REVIEW_KEYS` row."""
    return {k.key: getattr(target, k.action) for k in REVIEW_KEYS}


class KeysDialog(QDialog):
    """The shortcut sheet: one row per key of :data:`REVIEW_KEYS`, then the mouse."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Microbleed review: keys")
        rows = [(k.shown, k.what) for k in REVIEW_KEYS] + list(MOUSE)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(("Key", "What it does"))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for row, (key, what) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(key))
            self.table.setItem(row, 1, QTableWidgetItem(what))
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        note = QLabel("Keys act on the review's points layer (click it in the layer list if another layer is "
                      "active). napari's own shortcuts: Ctrl+Alt+/ (its preferences).")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.resize(560, 440)

    def keys(self) -> list[str]:
        """The keys the sheet lists (first column of the key rows), for the test that they are the bound ones."""
        return [self.table.item(r, 0).text() for r in range(len(REVIEW_KEYS))]
