"""The worklist dock widget: the store's scans, their review state, the next one, sign-off.

One row per microbleed scan of the annotation store (``core.tasks.cmb.worklist``: not the
T1, phase or BOLD another widget registered): a pseudonymous label (from the voxel data's
sha256; the store holds no patient identity), the scan file's name, its microbleed
findings, "reviewed k of n" and its state (pending, in review, signed off). "Open next"
reads the next scan that is not signed off through the plugin's own reader, off the GUI
thread, and hands it to the microbleed review widget, which restores its review. "Sign
off" and "Re-open" act on the picked row (the open scan's row unless the user picked
another; the line under the list says which) with the reviewer named in the review widget.

The worklist follows the review widget's store when one is docked (its ``store`` is the
same object: no second writer), else a store the user picks (opened, never created). It
redraws after every edit of the review (``findings_changed``), when it is shown, and on
Refresh; another process's writes show on the next of those. No store rules here: states,
counts, the next scan and the sign-off refusals are :mod:`core.store`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Layer
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QFont
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._reader import read_volumes
from ..core.errors import InputFileError, NeuroreviewError
from ..core.io.dicom import split_selector
from ..core.io.layers import META_KEY
from ..core.progress import Progress
from ..core.store import CaseStore, ScanState, default_store_path, next_to_review
from ..core.tasks.cmb.review_export import TASK, default_reviewer
from ..core.tasks.cmb.worklist import worklist_states
from ._base import row_table, scrolled_panel
from ._worker import TaskRunner
from .cmb_review import CMBReviewWidget, find_docked

if TYPE_CHECKING:
    import napari

#: "reviewed" is "k of n": k findings decided of the n on the scan.
#: The file name last: a narrow dock still shows which scan, its state and progress.
COLUMNS = ("scan", "state", "reviewed", "file")
#: The state cell's tint: grey to do, amber started, green done (the text says it too).
STATE_RGBA = {"pending": (128, 128, 128, 70), "in review": (230, 160, 0, 110), "signed off": (40, 170, 80, 120)}
#: Pixels of the widget that stay visible however the dock is shared.
MIN_VISIBLE_HEIGHT = 320


class WorklistWidget(QWidget):
    """Dock widget listing the store's scans (see the module docstring).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.states: list[ScanState] = []
        self._own_store: CaseStore | None = None
        self._review: CMBReviewWidget | None = None
        self._opened: str | None = None  # sha256 of the scan "Open next" opened last
        self._opened_layer: str | None = None  # its layer's name
        self._shown_current: str | None = None  # the current scan at the last redraw

        self.store_path = QLineEdit(str(default_store_path()))
        self.store_path.setMinimumWidth(60)
        self.browse_button = QPushButton("Store...")
        self.source = QLabel("")
        self.source.setWordWrap(True)
        store_row = QHBoxLayout()
        store_row.addWidget(self.store_path, 1)
        store_row.addWidget(self.browse_button)
        store_box = QGroupBox("Store")
        form = QFormLayout(store_box)
        form.addRow(store_row)
        form.addRow(self.source)

        self.table = row_table(QTableWidget(0, len(COLUMNS)), COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(110)
        self.current = QLabel("Current scan: none")
        self.current.setWordWrap(True)
        self.runner = TaskRunner("Open next", self._start_open, self._show_opened)
        self.sign_button, self.reopen_button = QPushButton("Sign off"), QPushButton("Re-open")
        self.refresh_button = QPushButton("Refresh")
        scans = QGroupBox("Scans")
        scans_layout = QVBoxLayout(scans)
        scans_layout.addWidget(self.table)  # the list first, the actions under it (the dock scrolls below)
        scans_layout.addWidget(self.current)
        buttons = QHBoxLayout()
        for button in (self.sign_button, self.reopen_button, self.refresh_button):
            buttons.addWidget(button)
        scans_layout.addLayout(buttons)
        scans_layout.addWidget(self.runner)
        scrolled_panel(self, (store_box, scans), MIN_VISIBLE_HEIGHT, stretch=False)

        for signal, slot in ((self.store_path.editingFinished, self._on_store_path),
                             (self.browse_button.clicked, self._browse_store),
                             (self.table.itemSelectionChanged, self._show_current),
                             (self.sign_button.clicked, self.sign_off), (self.reopen_button.clicked, self.reopen),
                             (self.refresh_button.clicked, self.refresh)):
            signal.connect(slot)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.refresh)
        self.refresh()

    # ----------------------------------------------------------------- the store
    def review(self) -> CMBReviewWidget | None:
        """The docked microbleed review widget (followed: its edits redraw the list), or None."""
        docked = find_docked(self.viewer, CMBReviewWidget)
        review = docked[0] if docked else None
        if review is not self._review:
            if self._review is not None:
                try:
                    self._review.findings_changed.disconnect(self.refresh)
                except (TypeError, RuntimeError):  # already gone with its dock
                    pass
            if review is not None:
                review.findings_changed.connect(self.refresh)
            self._review = review
        return review

    def store(self) -> CaseStore | None:
        """The review widget's open store, else the store at the path in the field (opened, never created).

        Raises
        ------
        StoreError
            The path holds no store, or not a usable one.
        """
        review = self.review()
        if review is not None:
            if review.store is not None:
                self._close_own()
                self.store_path.setText(str(review.store.path))
                return review.store
            self.store_path.setText(review.store_path.text())
        path = Path(self.store_path.text()).expanduser()
        if self._own_store is None or self._own_store.path != path:
            self._close_own()
            self._own_store = CaseStore.open_existing(path)
        return self._own_store

    def _on_store_path(self) -> None:
        if self.review() is not None:
            show_info("The worklist follows the Microbleed review's store: change it there")
        self.refresh()

    def _browse_store(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Annotation store", self.store_path.text(), "SQLite (*.sqlite)")
        if path:
            self.store_path.setText(path)
            self._on_store_path()

    def _close_own(self) -> None:
        if self._own_store is not None:
            self._own_store.close()
            self._own_store = None

    # ----------------------------------------------------------------- the list
    def refresh(self, *_: Any) -> None:
        """Read every scan's state again and redraw the list (a store that cannot be opened: said here)."""
        try:
            store = self.store()
            self.states = worklist_states(store.scan_states(TASK)) if store is not None else []
        except NeuroreviewError as exc:
            self.states = []
            self.source.setText(str(exc))
        else:
            follows = "the Microbleed review's store" if self._review is not None and self._review.store is store else "store"
            done = sum(s.state == "signed off" for s in self.states)
            self.source.setText(f"{len(self.states)} scans in {follows} {store.path.name}, {done} signed off")
        current = self.current_sha()
        picked = self._picked_sha()
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.states))
        for row, state in enumerate(self.states):
            cells = (state.label, state.state, f"{state.reviewed} of {state.findings}", state.file_name)
            tip = (f"{state.label}: {state.file_name}, {state.findings} findings, {state.reviewed} reviewed, "
                   f"{state.state}" + (f" by {state.signed}" if state.signed else ""))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, state.sha256)
                item.setToolTip(tip)
                if column == 2:
                    item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
                if column == 1:
                    item.setBackground(QColor(*STATE_RGBA[state.state]))
                if state.sha256 == current:
                    font = QFont(item.font())
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, column, item)
            if state.sha256 == (current if current != self._shown_current else picked or current):
                self.table.selectRow(row)
        self.table.blockSignals(False)
        self._shown_current = current  # a new current scan takes the selection; else the user's pick stays
        self._show_current()

    def _picked_sha(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def current_sha(self) -> str | None:
        """The scan the review widget shows (its review, else its picked scan), else the one Open next opened."""
        review = self._review
        if review is not None:
            if review.session is not None:
                return review.session.sha256
            info = getattr(review.layers.scan, "metadata", {}).get(META_KEY) or {}
            if info.get("sha256"):
                return str(info["sha256"])
        return self._opened

    def target(self) -> ScanState | None:
        """The scan Sign off and Re-open act on: the picked row, else the current one if the store lists it.

        Why the pick first: the row the user clicked is the scan they mean; the list selects
        the open scan's row by itself, so without a pick of their own the open scan is it.
        """
        by_sha = {s.sha256: s for s in self.states}
        return by_sha.get(self._picked_sha() or "") or by_sha.get(self.current_sha() or "")

    def _show_current(self) -> None:
        state = self.target()
        what = "Current scan" if state is None or state.sha256 == self.current_sha() else "Picked scan (not the open one)"
        self.current.setText("Current scan: none (open one, or pick a row)" if state is None else
                             f"{what}: {state.label} ({state.file_name}), {state.state}"
                             + (f" by {state.signed}" if state.signed else "")
                             + f", {state.reviewed} of {state.findings} reviewed")
        self.sign_button.setEnabled(state is not None and state.state != "signed off")
        self.reopen_button.setEnabled(state is not None and state.state == "signed off")

    # ----------------------------------------------------------------- actions
    def reviewer(self) -> str:
        """Who signs: the review widget's Reviewer field, else the OS user."""
        review = self.review()
        text = review.reviewer.text().strip() if review is not None else ""
        return text or default_reviewer()

    def sign_off(self) -> None:
        """Sign off the picked scan (refused, in one sentence, while findings are undecided)."""
        self._decide(lambda store, state: store.sign_off(state.sha256, self.reviewer()), "signed off")

    def reopen(self) -> None:
        """Re-open the picked signed-off scan, so that its findings can be edited again."""
        self._decide(lambda store, state: store.reopen(state.sha256, self.reviewer()), "re-opened")

    def _decide(self, write: Callable[[CaseStore, ScanState], ScanState], done: str) -> None:
        state = self.target()
        try:
            store = self.store()
            if state is None or store is None:
                raise InputFileError("no scan is open or picked in the worklist")
            after = write(store, state)
        except NeuroreviewError as exc:
            show_error(str(exc))
        else:
            show_info(f"{after.label} ({after.file_name}) {done} by {self.reviewer()}")
            review = self.review()
            if review is not None:
                review.refresh_review()  # its "Reviewed k of n" line says who signed off
        self.refresh()

    def open_next(self) -> None:
        """Open the next scan that is not signed off (after the current one), as the Open next button does."""
        self.runner.run()

    def _start_open(self) -> Generator[Progress, None, tuple[ScanState, list[tuple[Any, ...]]]] | None:
        """GUI thread: pick the next scan and check its file is there; the reading runs in the worker."""
        self.refresh()
        store = self.store()
        if store is None:
            return None
        state = next_to_review(self.states, self.current_sha())
        if state is None:
            show_info("Every other scan in the store is signed off")
            return None
        already = [layer for layer in self.viewer.layers if _sha_of(layer) == state.sha256]
        if already:  # the same voxels are open: show that layer, read nothing
            self._show_opened((state, []), already[0])
            return None
        where, _series = split_selector(state.path)
        if not where.exists():
            raise InputFileError(f"{state.label}: its scan {state.path} is not there any more; "
                                 "open it with File > Open (the review is found by its voxels)")
        return _read(state)

    def _show_opened(self, value: tuple[ScanState, list[tuple[Any, ...]]], scan: Any = None) -> None:
        """GUI thread: add the read layers, hide the scan shown before, hand the new one to the review."""
        state, layer_data = value
        added = [self.viewer.add_layer(Layer.create(*data)) for data in layer_data if data[0] is not None]
        scan = scan if scan is not None else next((layer for layer in added if _sha_of(layer) == state.sha256), None)
        if not added and scan is None:
            return  # the reader said why, in one sentence
        if scan is None:
            show_warning(f"{state.label}: the file {state.file_name} now holds other voxels than the scan in the "
                         "store, so its review is not shown on it")
            return
        review = self.review()
        shown = getattr(review.layers.scan, "name", None) if review is not None else None
        previous = shown or self._opened_layer  # the scan read before: hidden (not closed) under the new one
        if previous is not None and previous != scan.name and previous in self.viewer.layers:
            self.viewer.layers[previous].visible = False
        self._opened, self._opened_layer = state.sha256, scan.name
        scan.visible = True
        if review is not None:
            review.swi_combo.setCurrentText(scan.name)  # the review widget restores the scan's review
        show_info(f"Opened {state.label} ({state.file_name}): {state.state}, {state.reviewed} of "
                  f"{state.findings} reviewed")
        self.refresh()

    # ----------------------------------------------------------------- plumbing
    def showEvent(self, event: Any) -> None:
        """Redraw when shown again: another process may have written meanwhile."""
        super().showEvent(event)
        self.refresh()

    def cleanup(self) -> None:
        """Let go of the viewer, the review widget and our own store (safe to call twice)."""
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            try:
                event.disconnect(self.refresh)
            except (TypeError, RuntimeError, ValueError):
                pass
        if self._review is not None:
            try:
                self._review.findings_changed.disconnect(self.refresh)
            except (TypeError, RuntimeError):
                pass
            self._review = None
        self._close_own()

    def closeEvent(self, event: Any) -> None:
        """Close our own store when the dock is closed."""
        self.cleanup()
        super().closeEvent(event)


def _read(state: ScanState) -> Generator[Progress, None, tuple[ScanState, list[tuple[Any, ...]]]]:
    """Worker: read the scan with the plugin's reader (the same layers as File > Open)."""
    yield Progress(0, 1, f"Reading {state.file_name}")
    layers = read_volumes(state.path)
    yield Progress(1, 1, f"Read {state.file_name}")
    return state, layers


def _sha_of(layer: Any) -> str | None:
    """A layer's voxel sha256 as the plugin's reader recorded it (None for other layers)."""
    return (getattr(layer, "metadata", None) or {}).get(META_KEY, {}).get("sha256")
