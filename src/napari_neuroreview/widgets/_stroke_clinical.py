"""The clinical row of the Stroke risk panel: picked from a table file, or typed into a form made from the schema.

One row is run, the one the form shows: picking a table file (*Browse...*, or the
``clinical.tsv`` / ``.csv`` found beside the T1's file, as a stroke cohort and the sample
lay them out) and a subject fills the form with that subject's row, read by
:func:`~napari_neuroreview.core.tasks.stroke.labels.read_clinical_row`; the user may then
change any value, or type a row with no table at all. Every input is labelled with its
column's meaning, unit and allowed range (``core.tasks.stroke.schema``, the README's
"Stroke clinical table"); a number is free text, a category or 0/1 a combo whose first item
is blank. :meth:`ClinicalRowForm.row` reads the form through
:func:`~napari_neuroreview.core.tasks.stroke.schema.validate_row`, the one parser of every
cell, so a bad value is that parser's one sentence and nothing is run.

The form offers the columns the chosen model reads (its card's table encoding; the
clinical columns when no model is chosen), so a model that reads the image-derived volumes
asks for them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from ..core.errors import NeuroreviewError
from ..core.tasks.stroke.labels import (
    CLINICAL_COLUMNS,
    clinical_table_subjects,
    read_clinical_row,
)
from ..core.tasks.stroke.schema import column_spec, validate_row
from ._base import elide

#: File names of a clinical table looked for beside a T1 (its folder, then the folder above: a cohort's layout).
TABLE_NAMES: tuple[str, ...] = ("clinical.tsv", "clinical.csv")
#: What a blank choice shows in a combo.
BLANK = ""


def label_of(column: str) -> str:
    """A form row's label: the column, its unit and range, a star when required ("sbp (mmHg, 60-260)", "af (0/1) *").

    Short, so that the dock stays narrow; the meaning is the input's tooltip and the note under the form.
    """
    spec = column_spec(column)
    what = f"{spec.unit}, {spec.low:g}-{spec.high:g}" if spec.kind == "number" else (
        "0/1" if spec.kind == "binary" else spec.allowed)
    return f"{column} ({what})" + (" *" if spec.required or spec.image_derived else "")


def form_note(columns: tuple[str, ...]) -> str:
    """Which columns may be blank, and where their meanings are (one line under the form)."""
    required = [c for c in columns if column_spec(c).required or column_spec(c).image_derived]
    return (f"* required ({', '.join(required)}); the others may be left blank. Hover an input for what it holds "
            "(README: Stroke clinical table).")


def table_beside(scan_path: str | Path | None) -> Path | None:
    """A clinical table in the scan's folder or the folder above it, or None."""
    if not scan_path:
        return None
    folder = Path(scan_path).parent
    for place in (folder, folder.parent):
        for name in TABLE_NAMES:
            if (place / name).is_file():
                return place / name
    return None


def _text(value: Any) -> str:
    """A typed value as the form shows it (blank for None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return BLANK
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class ClinicalRowForm(QWidget):
    """Table file + subject combo, and the form of the row that is run (module docstring).

    Signals
    -------
    note(str)
        A sentence about the table or the row picked (an unreadable table, a bad cell), or "".
    """

    note = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.columns: tuple[str, ...] = CLINICAL_COLUMNS
        self.inputs: dict[str, QLineEdit | QComboBox] = {}
        self.path = QLineEdit()
        self.path.setPlaceholderText("clinical table (.tsv / .csv), or type the row below")
        self.browse = QPushButton("Browse...")
        self.subject_combo = elide(QComboBox())
        self.subject = QLineEdit()
        self.subject.setPlaceholderText("subject ID")
        self.message = QLabel("")
        self.message.setWordWrap(True)
        file_row = QHBoxLayout()
        file_row.setContentsMargins(0, 0, 0, 0)
        file_row.addWidget(self.path, 1)
        file_row.addWidget(self.browse)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.addRow("Table", file_row)
        self.form.addRow("Row of", self.subject_combo)
        self.form.addRow("Subject", self.subject)
        self._first_column_row = self.form.rowCount()
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("font-size: 11px; color: #aaaaaa;")
        self.form.addRow(self.legend)
        self.form.addRow(self.message)
        self._build()
        self.browse.clicked.connect(self._browse)
        self.path.editingFinished.connect(lambda: self.open_table(self.path.text()))
        self.subject_combo.activated.connect(lambda _i: self.load_subject(self.subject_combo.currentText()))

    # ----------------------------------------------------------------- the form's rows
    def set_columns(self, columns: tuple[str, ...]) -> None:
        """Offer ``columns`` (a model's table encoding), keeping what was typed in the columns both have."""
        columns = tuple(columns)
        if columns == self.columns:
            return
        kept = {c: self._raw(c) for c in self.columns}
        for _ in self.columns:
            self.form.removeRow(self._first_column_row)
        self.columns = columns
        self._build()
        for c, value in kept.items():
            if c in self.inputs:
                self._put(c, value)

    def _build(self) -> None:
        self.inputs = {}
        for k, column in enumerate(self.columns):
            spec = column_spec(column)
            widget: QLineEdit | QComboBox
            if spec.kind == "number":
                widget = QLineEdit()
                widget.setPlaceholderText("blank" if not (spec.required or spec.image_derived) else spec.unit)
            else:
                widget = QComboBox()
                widget.addItems([BLANK, *(spec.categories if spec.kind == "category" else ("0", "1"))])
            widget.setToolTip(f"{column}: {spec.meaning}; allowed {spec.allowed}"
                              + ("" if spec.required else "; blank allowed"))
            self.inputs[column] = widget
            self.form.insertRow(self._first_column_row + k, label_of(column), widget)
        self.legend.setText(form_note(self.columns))

    def _raw(self, column: str) -> str:
        widget = self.inputs[column]
        return widget.currentText() if isinstance(widget, QComboBox) else widget.text()

    def _put(self, column: str, text: str) -> None:
        widget = self.inputs[column]
        if isinstance(widget, QComboBox):
            index = widget.findText(text)
            widget.setCurrentIndex(max(index, 0))
        else:
            widget.setText(text)

    def set_value(self, column: str, value: Any) -> None:
        """Put a value (typed or text) into a column's input, as a user would type it."""
        self._put(column, _text(value))

    def fill(self, row: dict[str, Any]) -> None:
        """Show a typed row (``read_clinical_row``'s): its subject and every offered column (blank when absent)."""
        self.subject.setText(str(row.get("subject") or ""))
        for column in self.columns:
            self.set_value(column, row.get(column))

    def row(self) -> dict[str, Any]:
        """The form's row, checked and typed by the schema (a bad value raises its one sentence)."""
        subject = self.subject.text().strip() or "typed row"
        raw = {c: self._raw(c) for c in self.columns}
        return {"subject": subject, **validate_row(raw, self.columns, where=f"Subject {subject}")}

    # ----------------------------------------------------------------- the table
    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.note.emit(text)

    def _browse(self) -> None:
        start = str(Path(self.path.text()).parent) if self.path.text() else ""
        path, _ = QFileDialog.getOpenFileName(self, "Clinical table", start,
                                              "Clinical tables (*.tsv *.csv *.txt);;All files (*)")
        if path:
            self.open_table(path)

    def open_table(self, path: str | Path, subject: str | None = None) -> bool:
        """List a table's subjects and load ``subject``; False on a refusal.

        A table of one subject loads that row; a table of several never loads its first by
        default (it would be another patient's row): without ``subject`` among them, the form
        is cleared and the user picks the row.
        """
        text = str(path).strip()
        if not text:
            return False
        self.path.setText(text)
        try:
            subjects = clinical_table_subjects(text)
        except NeuroreviewError as exc:
            self.subject_combo.clear()
            self._say(str(exc))
            return False
        self.subject_combo.blockSignals(True)
        self.subject_combo.clear()
        self.subject_combo.addItems(subjects)
        self.subject_combo.blockSignals(False)
        if not subjects:
            self._say(f"{Path(text).name}: the clinical table has no subject row.")
            return False
        if subject not in subjects and len(subjects) == 1:
            subject = subjects[0]
        return self.select_subject(subject)

    def select_subject(self, subject: str | None) -> bool:
        """Load ``subject``'s row of the open table, or clear the form and say that the table lacks it."""
        names = [self.subject_combo.itemText(i) for i in range(self.subject_combo.count())]
        if subject in names:
            self.subject_combo.setCurrentText(subject)
            return self.load_subject(subject)
        table = Path(self.path.text().strip()).name
        self.clear_row(f"{table} has no row for subject {subject!r}: pick its row or type it." if subject
                       else f"Pick the subject's row of {table}, or type it.")
        return False

    def clear_row(self, sentence: str) -> None:
        """Blank the subject and every column (no row is shown), and say why."""
        self.subject_combo.setCurrentIndex(-1)
        self.subject.clear()
        for column in self.columns:
            self._put(column, BLANK)
        self._say(sentence)

    def load_subject(self, subject: str) -> bool:
        """Fill the form with ``subject``'s row of the table (its cells checked); False with the sentence if refused."""
        try:
            row = read_clinical_row(self.path.text().strip(), subject, self.columns)
        except NeuroreviewError as exc:
            self._say(str(exc))
            return False
        self.fill(row)
        self._say(f"Row of {subject} from {Path(self.path.text()).name}; edit any value before running.")
        return True
