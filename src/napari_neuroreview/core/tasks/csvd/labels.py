"""The subtype cohort's ``labels.tsv``: its columns, its one reader, the design check on it.

Why in the task, not the phantom: evaluating a cohort (``csvd evaluate``, the benchmark)
reads the labels, and ``core.tasks`` never imports the simulators; the phantom writes
the file with these columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError, InsufficientDataError
from ...metrics.cohort import Cohort, patient_folds
from .baselines import SUBTYPES

#: The columns of ``labels.tsv``.
LABEL_COLUMNS: tuple[str, ...] = ("patient", "centre", "subtype", "age", "n_cmb", "css", "sex", "n_cmb_latent",
                                  "simulator")

#: Types of the ``labels.tsv`` columns (the rest are text).
_LABEL_TYPES: dict[str, type] = {"age": int, "n_cmb": int, "css": int, "n_cmb_latent": int}


def read_csvd_labels(cohort_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a cohort's ``labels.tsv`` (:data:`LABEL_COLUMNS`, numbers as int), in file order.

    For evaluation only: the subtype is the label. A missing or malformed file is the user's
    (``--data DIR`` that is not a cohort): one sentence naming it.
    """
    path = Path(cohort_dir) / "labels.tsv"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the cohort's labels ({exc.strerror or exc}).") from None
    if not lines or tuple(lines[0].split("\t")) != LABEL_COLUMNS:
        raise InputFileError(f"{path}: not a subtype cohort's labels (the header must be {', '.join(LABEL_COLUMNS)}).")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        values = line.split("\t")
        try:
            if len(values) != len(LABEL_COLUMNS) or values[2] not in SUBTYPES:
                raise ValueError
            rows.append({k: _LABEL_TYPES.get(k, str)(v) for k, v in zip(LABEL_COLUMNS, values)})
        except ValueError:
            raise InputFileError(f"{path}: line {n} is not a patient's labels ({line[:60]!r}).") from None
    return rows


def check_design(data: str | Path, external: str, n_folds: int, seed: int) -> None:
    """Refuse, from ``labels.tsv`` alone, a cohort too small for the protocol (one sentence, before any scan is read).

    Why: reading, registering and detecting takes seconds to a minute per patient; a
    cohort without the external centre, or whose development patients cannot fill the
    folds, must fail at once with the harness's own sentence (``metrics.cohort.patient_folds``).
    """
    rows = read_csvd_labels(data)
    present = sorted({r["centre"] for r in rows})
    if external not in present or len(present) < 2:
        raise InsufficientDataError(
            f"{data}: the external centre {external} and at least one development centre need patients; "
            f"the cohort's centres are {', '.join(present) or 'none'}")
    dev = [r for r in rows if r["centre"] != external]
    patient_folds(Cohort(dev, np.array([r["subtype"] for r in dev]), np.array([r["patient"] for r in dev]), SUBTYPES),
                  n_folds, seed)
