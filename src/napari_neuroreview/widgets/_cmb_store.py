"""Which annotation store a microbleed review writes to, and who the reviewer is.

:class:`ReviewStoreControls` owns the Reviewer and Store fields and the *New store...*
button of the review widget, and the store they name: the Case widget's when it has that
store open (one connection per file in a napari session), else one of its own, which it
closes. Why apart from the widget: opening, sharing and closing a store is one concern
with its own rules (a mistyped path is refused; only the default store and *New store...*
create one), and the widget only asks for the store when it writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QFileDialog, QLineEdit, QPushButton, QWidget

from ..core.store import CaseStore, default_store_path
from ..core.tasks.cmb.review_export import default_reviewer


class ReviewStoreControls:
    """The Reviewer and Store fields, *New store...*, and the store they name.

    Parameters
    ----------
    shared_stores : callable
        Returns the stores other docked widgets hold open (the Case widget's): one of
        them is used when it is the store at the field's path.

    Attributes
    ----------
    reviewer, path_field : QLineEdit
    new_button : QPushButton
    store : CaseStore or None
        The open store (ours or shared), None until a review needs it.
    """

    def __init__(self, shared_stores: Callable[[], list[CaseStore]]) -> None:
        self._shared = shared_stores
        self.store: CaseStore | None = None
        self._own = False
        self._new_path: Path | None = None  # the store "New store..." asked to create
        self.reviewer = QLineEdit(default_reviewer())
        shared = shared_stores()
        self.path_field = QLineEdit(str(shared[0].path if shared else default_store_path()))
        self.path_field.setMinimumWidth(60)
        self.new_button = QPushButton("New store...")

    def reviewer_name(self) -> str | None:
        """The reviewer typed in (None when blank: the session falls back to the default)."""
        return self.reviewer.text().strip() or None

    def path(self) -> Path:
        """The store path in the field."""
        return Path(self.path_field.text()).expanduser()

    def differs(self) -> bool:
        """True when the field names another store than the open one (or none is open)."""
        return self.store is None or self.path() != self.store.path

    def open(self) -> CaseStore:
        """The store at the path in the field: a docked widget's if it has it open, else our own."""
        path = self.path()
        if self.store is not None and self.store.path == path:
            return self.store
        self.close()
        shared = [s for s in self._shared() if s.path == path]
        if shared:
            self.store, self._own = shared[0], False
        else:  # only the default store and "New store..." create one: a mistyped path is refused
            create = path == default_store_path() or path == self._new_path
            self.store = CaseStore(path) if create else CaseStore.open_existing(path)
            self._own = True
        return self.store

    def ask_new(self, parent: QWidget, path: str | Path | None = None) -> bool:
        """Put a new store's path (asked for when None) in the field; False when cancelled or it exists."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(parent, "New annotation store", "", "SQLite store (*.sqlite)")
            if not path:
                return False
        target = Path(path).expanduser()
        if target.exists():
            show_error(f"{target} exists already; pick it in the Store field to open it, or choose a new name")
            return False
        self._new_path = target
        self.path_field.setText(str(target))
        return True

    def close(self) -> None:
        """Close our own store (a shared one stays open for its owner)."""
        if self.store is not None and self._own:
            self.store.close()
        self.store = None

    def connect(self, on_path: Callable[[], Any], on_reviewer: Callable[[], Any], on_new: Callable[[], Any]) -> None:
        """Wire the fields and the button to the widget's handlers."""
        self.path_field.editingFinished.connect(on_path)
        self.reviewer.editingFinished.connect(on_reviewer)
        self.new_button.clicked.connect(lambda *_: on_new())  # not clicked(bool) as a path
