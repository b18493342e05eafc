"""The origin cohort's ``labels.tsv``: its columns and its one reader.

Why in the task, not the phantom: training and evaluating on a cohort (``metastasis
train``, ``metastasis evaluate``, the benchmark) read the labels, and ``core.tasks`` never
imports the simulators; the phantom writes the file with these columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import InputFileError
from .classes import ORIGINS

__all__ = ["LABEL_COLUMNS", "read_metastasis_labels"]

#: The columns of ``labels.tsv`` (the label apart from the inputs).
LABEL_COLUMNS: tuple[str, ...] = ("patient", "site", "origin", "sex", "age", "n_lesions")

#: Types of the ``labels.tsv`` columns (the rest are text).
_LABEL_TYPES: dict[str, type] = {"age": int, "n_lesions": int}


def read_metastasis_labels(cohort_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a cohort's ``labels.tsv`` (:data:`LABEL_COLUMNS`, numbers as int), in file order.

    The origin is the label (one of :data:`~.classes.ORIGINS`). A missing or malformed file
    is the user's (``--data DIR`` that is not an origin cohort): one sentence naming it.
    """
    path = Path(cohort_dir) / "labels.tsv"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise InputFileError(f"{path}: cannot read the cohort's labels ({reason}).") from None
    if not lines or tuple(lines[0].split("\t")) != LABEL_COLUMNS:
        raise InputFileError(f"{path}: not a metastasis cohort's labels (the header must be "
                             f"{', '.join(LABEL_COLUMNS)}).")
    rows, seen = [], set()
    for n, line in enumerate(lines[1:], start=2):
        values = line.split("\t")
        try:
            if len(values) != len(LABEL_COLUMNS) or values[2] not in ORIGINS or values[0] in seen \
                    or not values[0] or Path(values[0]).name != values[0] or values[0] in (".", ".."):
                raise ValueError
            row = {k: _LABEL_TYPES.get(k, str)(v) for k, v in zip(LABEL_COLUMNS, values)}
            if row["n_lesions"] < 0:
                raise ValueError
        except ValueError:
            raise InputFileError(f"{path}: line {n} is not a patient's labels ({line[:60]!r}).") from None
        seen.add(values[0])
        rows.append(row)
    return rows
