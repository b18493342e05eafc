"""A stroke cohort's ``clinical.tsv`` and ``labels.tsv``, and a user's clinical table: their one reader.

Why in the task, not the phantom: pretraining, training and evaluating on a cohort read the
table and the labels, and ``core.tasks`` never imports the simulators; the phantom
(``core.phantoms.stroke``) writes the files with these columns. Every cell is read by
:func:`.schema.validate_row` (the documented columns, units and ranges), whether it comes
from a cohort or from the table a user gives ``stroke predict`` (CSV or TSV). Missing values
are ``n/a`` (BIDS) or an empty cell and read as None.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ...errors import InputFileError
from .schema import COLUMNS, validate_row

__all__ = ["BINARY_COLUMNS", "CLINICAL_COLUMNS", "IMAGE_VOLUME_COLUMNS", "LABEL_COLUMNS", "MISSING", "SETS",
           "clinical_table_subjects", "read_clinical_row", "read_stroke_labels", "read_stroke_table"]

#: The clinical table's columns after ``subject`` and ``set``, in order (units, ranges and
#: which may be blank: :data:`.schema.COLUMNS`).
CLINICAL_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if not c.image_derived)
#: Image-derived volumes (ml) that ``stroke phantoms --image-volumes-in-table`` adds to the table
#: (as the study's table held them): white matter hyperintensities, brain parenchyma, ventricles.
IMAGE_VOLUME_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.image_derived)
#: The 0/1 columns.
BINARY_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.kind == "binary")
#: The sets of a cohort: pretraining subjects (no label) and labelled ones.
SETS: tuple[str, ...] = ("unlabelled", "labelled")
#: ``labels.tsv``: the labelled subjects' written stroke label (0 or 1).
LABEL_COLUMNS: tuple[str, ...] = ("subject", "stroke")
#: How a missing value is written (BIDS).
MISSING = "n/a"


def _lines(path: Path, what: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise InputFileError(f"{path}: cannot read the {what} ({reason}).") from None


def _subject_ok(name: str) -> bool:
    return bool(name) and Path(name).name == name and name not in (".", "..")


def read_stroke_table(cohort_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a cohort's ``clinical.tsv`` in file order: ``subject``, ``set`` (one of
    :data:`SETS`), :data:`CLINICAL_COLUMNS` and, when the table has them, all of
    :data:`IMAGE_VOLUME_COLUMNS`; a missing value is None.

    A missing or malformed file is the user's (``--data DIR`` that is not a stroke cohort):
    one sentence naming it and the line (and, for a bad cell, the column, value, unit and range).
    """
    path = Path(cohort_dir) / "clinical.tsv"
    lines = _lines(path, "cohort's clinical table")
    base = ("subject", "set", *CLINICAL_COLUMNS)
    header = tuple(lines[0].split("\t")) if lines else ()
    if header not in (base, (*base, *IMAGE_VOLUME_COLUMNS)):
        raise InputFileError(f"{path}: not a stroke cohort's clinical table (the header must be "
                             f"{', '.join(base)}, then optionally {', '.join(IMAGE_VOLUME_COLUMNS)}).")
    rows, seen = [], set()
    for n, line in enumerate(lines[1:], start=2):
        values = line.split("\t")
        if len(values) != len(header) or not _subject_ok(values[0]) or values[0] in seen or values[1] not in SETS:
            raise InputFileError(f"{path}: line {n} is not a subject's clinical row ({line[:60]!r}).")
        rows.append(validate_row(dict(zip(header, values)), header[2:], where=f"{path}: line {n} ({values[0]})"))
        seen.add(values[0])
    return rows


def _clinical_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A clinical table's header and its (line number, cells) rows: the one reader of the file's layout.

    TSV (``.tsv`` or a tab in the header), else CSV: commas, or semicolons when the header
    has no comma (the CSV of spreadsheets in decimal-comma locales). The header needs a
    ``subject`` column and no column twice.
    """
    lines = _lines(path, "clinical table")
    if not lines:
        raise InputFileError(f"{path}: the clinical table is empty.")
    first = lines[0]
    delimiter = "\t" if path.suffix.lower() == ".tsv" or "\t" in first else (
        ";" if ";" in first and "," not in first else ",")
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    if "subject" not in header:
        raise InputFileError(f"{path}: the clinical table has no subject column (its header: "
                             f"{', '.join(header)[:120]}).")
    if len(set(header)) != len(header):
        raise InputFileError(f"{path}: the clinical table's header names a column twice.")
    return header, list(enumerate(reader, start=2))


def clinical_table_subjects(path: str | Path) -> list[str]:
    """The subject IDs of a clinical table, in file order (read as :func:`read_clinical_row` reads it).

    Only the IDs: each row is checked when it is read.
    """
    path = Path(path)
    header, rows = _clinical_table(path)
    key = header.index("subject")
    return [values[key].strip() for _n, values in rows if len(values) > key and values[key].strip()]


def read_clinical_row(path: str | Path, subject: str, columns: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Subject ``subject``'s row of a clinical table: TSV (``.tsv`` or a tab in the header), else CSV (commas, or
    semicolons when the header has no comma).

    The table needs a ``subject`` column and the schema's required columns (any order; other
    columns, such as a cohort's ``set``, are ignored); ``columns`` (default: the clinical
    ones) are checked and typed by :func:`.schema.validate_row`, an optional column the table
    lacks read as blank. Returns ``{"subject", column: value or None}``. A subject not in the
    table, or there twice, is one sentence.
    """
    path = Path(path)
    header, rows = _clinical_table(path)
    key = header.index("subject")
    found = [(n, values) for n, values in rows if len(values) > key and values[key].strip() == subject]
    if not found:
        raise InputFileError(f"{path}: no row for subject {subject!r} in the clinical table.")
    if len(found) > 1:
        raise InputFileError(f"{path}: subject {subject!r} has {len(found)} rows (lines "
                             f"{', '.join(str(n) for n, _ in found)}); the table needs one per subject.")
    n, values = found[0]
    if len(values) != len(header):
        raise InputFileError(f"{path}: line {n} ({subject}) has {len(values)} cells, the header {len(header)}.")
    row = validate_row(dict(zip(header, values)), columns, where=f"{path}: line {n} ({subject})")
    row["subject"] = subject
    return {k: row[k] for k in ("subject", *(columns if columns is not None else CLINICAL_COLUMNS))}


def read_stroke_labels(cohort_dir: str | Path) -> dict[str, int]:
    """A cohort's ``labels.tsv``: subject -> the written stroke label (0 or 1), in file order.

    The label is the one a registry wrote (noisy: the clean one is only in the phantom's
    ``truth.tsv``). A missing or malformed file: one sentence naming it.
    """
    path = Path(cohort_dir) / "labels.tsv"
    lines = _lines(path, "labels")
    if not lines or tuple(lines[0].split("\t")) != LABEL_COLUMNS:
        raise InputFileError(f"{path}: not a stroke cohort's labels (the header must be {', '.join(LABEL_COLUMNS)}).")
    labels: dict[str, int] = {}
    for n, line in enumerate(lines[1:], start=2):
        values = line.split("\t")
        if len(values) != 2 or not _subject_ok(values[0]) or values[0] in labels or values[1] not in ("0", "1"):
            raise InputFileError(f"{path}: line {n} is not a subject's label ({line[:60]!r}).")
        labels[values[0]] = int(values[1])
    return labels
