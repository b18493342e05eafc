"""A stroke cohort's ``clinical.tsv`` and ``labels.tsv``: their columns and their one reader.

Why in the task, not the phantom: pretraining, training and evaluating on a cohort read the
table and the labels, and ``core.tasks`` never imports the simulators; the phantom
(``core.phantoms.stroke``) writes the files with these columns. Missing values are ``n/a``
(BIDS) and read as None.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ...errors import InputFileError

__all__ = ["BINARY_COLUMNS", "CLINICAL_COLUMNS", "COLUMN_RANGES", "IMAGE_VOLUME_COLUMNS", "LABEL_COLUMNS", "MISSING",
           "SETS", "read_stroke_labels", "read_stroke_table"]

#: The clinical table's columns after ``subject`` and ``set``, with their units: age (years),
#: sex (F or M), systolic BP (mmHg), antihypertensive treatment, diabetes, current smoking,
#: atrial fibrillation, cardiovascular disease (coronary disease or heart failure), ECG left
#: ventricular hypertrophy (each 0 or 1), BMI (kg/m2), total cholesterol (mmol/L).
CLINICAL_COLUMNS: tuple[str, ...] = ("age", "sex", "sbp", "bp_treated", "diabetes", "smoking", "af", "cvd", "lvh",
                                     "bmi", "cholesterol")
#: Image-derived volumes (ml) that ``stroke phantoms --image-volumes-in-table`` adds to the table
#: (as the study's table held them): white matter hyperintensities, brain parenchyma, ventricles.
IMAGE_VOLUME_COLUMNS: tuple[str, ...] = ("wmh_ml", "brain_ml", "ventricles_ml")
#: The 0/1 columns.
BINARY_COLUMNS: tuple[str, ...] = ("bp_treated", "diabetes", "smoking", "af", "cvd", "lvh")
#: Each number column's plausible range (a value outside is a malformed table).
COLUMN_RANGES: dict[str, tuple[float, float]] = {
    "age": (18.0, 110.0), "sbp": (60.0, 260.0), "bmi": (12.0, 70.0), "cholesterol": (1.0, 15.0),
    **{c: (0.0, 1.0) for c in BINARY_COLUMNS}, "wmh_ml": (0.0, 300.0), "brain_ml": (500.0, 2000.0),
    "ventricles_ml": (1.0, 400.0)}
#: The sets of a cohort: pretraining subjects (no label) and labelled ones.
SETS: tuple[str, ...] = ("unlabelled", "labelled")
#: ``labels.tsv``: the labelled subjects' written stroke label (0 or 1).
LABEL_COLUMNS: tuple[str, ...] = ("subject", "stroke")
#: How a missing value is written (BIDS).
MISSING = "n/a"


def _lines(path: Path, what: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise InputFileError(f"{path}: cannot read the cohort's {what} ({reason}).") from None


def _value(column: str, text: str) -> Any:
    """One cell: None for ``n/a``; sex as text; numbers within :data:`COLUMN_RANGES` (0/1 columns as int)."""
    if text == MISSING:
        return None
    if column == "sex":
        if text not in ("F", "M"):
            raise ValueError
        return text
    value = float(text)
    low, high = COLUMN_RANGES[column]
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError
    if column in BINARY_COLUMNS:
        if value not in (0.0, 1.0):
            raise ValueError
        return int(value)
    return value


def _subject_ok(name: str) -> bool:
    return bool(name) and Path(name).name == name and name not in (".", "..")


def read_stroke_table(cohort_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a cohort's ``clinical.tsv`` in file order: ``subject``, ``set`` (one of
    :data:`SETS`), :data:`CLINICAL_COLUMNS` and, when the table has them, all of
    :data:`IMAGE_VOLUME_COLUMNS`; a missing value is None.

    A missing or malformed file is the user's (``--data DIR`` that is not a stroke cohort):
    one sentence naming it and the line.
    """
    path = Path(cohort_dir) / "clinical.tsv"
    lines = _lines(path, "clinical table")
    base = ("subject", "set", *CLINICAL_COLUMNS)
    header = tuple(lines[0].split("\t")) if lines else ()
    if header not in (base, (*base, *IMAGE_VOLUME_COLUMNS)):
        raise InputFileError(f"{path}: not a stroke cohort's clinical table (the header must be "
                             f"{', '.join(base)}, then optionally {', '.join(IMAGE_VOLUME_COLUMNS)}).")
    rows, seen = [], set()
    for n, line in enumerate(lines[1:], start=2):
        values = line.split("\t")
        try:
            if len(values) != len(header) or not _subject_ok(values[0]) or values[0] in seen or values[1] not in SETS:
                raise ValueError
            row = {"subject": values[0], "set": values[1],
                   **{c: _value(c, v) for c, v in zip(header[2:], values[2:])}}
        except ValueError:
            raise InputFileError(f"{path}: line {n} is not a subject's clinical row ({line[:60]!r}).") from None
        seen.add(values[0])
        rows.append(row)
    return rows


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
