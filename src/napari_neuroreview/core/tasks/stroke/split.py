"""One persisted subject split of a stroke cohort, shared by pretraining and every downstream step.

Why persisted: the pretrained encoders see the images and the table of every subject they
train on; a subject later used to test a downstream head must never have been one of them
(issue 13). So the split is made once per cohort (its :func:`cohort_fingerprint`), written
to ``split.json`` beside the weights, and read back by every later run.

The rule (:func:`make_split`): by subject, stratified by the written (noisy) label.
Labelled subjects of each label go :data:`LABELLED_FRACTIONS` to train / val / test;
unlabelled subjects (the pretraining pool; no label to test) go :data:`UNLABELLED_FRACTIONS`
to train / val (val: the pretraining's validation loss). Written by hand, not by
``sklearn.model_selection.train_test_split``, which refuses a stratum of one subject (a
small cohort's few strokes) and splits in two, not three.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError
from ...io import strict_json
from ...io.atomic import write_text_atomic
from .labels import read_stroke_labels, read_stroke_table

__all__ = ["LABELLED_FRACTIONS", "PARTS", "UNLABELLED_FRACTIONS", "cohort_fingerprint", "make_split",
           "read_split", "split_for_cohort"]

#: The parts of a split, in order.
PARTS: tuple[str, ...] = ("train", "val", "test")
#: Shares of each label's labelled subjects (train, val, test).
LABELLED_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)
#: Shares of the unlabelled subjects (train, val; never test: they have no label to test).
UNLABELLED_FRACTIONS: tuple[float, float, float] = (0.9, 0.1, 0.0)
_FILES = ("clinical.tsv", "labels.tsv")


def cohort_fingerprint(cohort_dir: str | Path) -> str:
    """sha256 of the cohort's ``clinical.tsv`` and ``labels.tsv`` (what defines its subjects and labels)."""
    digest = hashlib.sha256()
    for name in _FILES:
        path = Path(cohort_dir) / name
        try:
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError as exc:
            raise InputFileError(f"{path}: cannot read the cohort's {name} ({exc.strerror}).") from None
    return digest.hexdigest()


def _assign(subjects: list[str], fractions: tuple[float, float, float], rng: np.random.Generator) -> dict[str, str]:
    """Each subject's part: a seeded permutation cut at the rounded shares (val and test first)."""
    order = [subjects[i] for i in rng.permutation(len(subjects))]
    n_test = round(fractions[2] * len(order))
    n_val = round(fractions[1] * len(order))
    return {s: "test" if k < n_test else "val" if k < n_test + n_val else "train" for k, s in enumerate(order)}


def make_split(cohort_dir: str | Path, seed: int = 0) -> dict[str, Any]:
    """The split of a cohort (module docstring): ``{"cohort", "seed", "fractions", "subjects": {part: [...]}}``."""
    rows = read_stroke_table(cohort_dir)
    labels = read_stroke_labels(cohort_dir)
    rng = np.random.default_rng(int(seed))
    part: dict[str, str] = {}
    for stratum in (0, 1, None):
        subjects = [r["subject"] for r in rows if labels.get(r["subject"]) == stratum]
        part.update(_assign(subjects, UNLABELLED_FRACTIONS if stratum is None else LABELLED_FRACTIONS, rng))
    return {"cohort": cohort_fingerprint(cohort_dir), "seed": int(seed),
            "fractions": {"labelled": list(LABELLED_FRACTIONS), "unlabelled": list(UNLABELLED_FRACTIONS)},
            "subjects": {p: [r["subject"] for r in rows if part[r["subject"]] == p] for p in PARTS}}


def read_split(path: str | Path, cohort_dir: str | Path) -> dict[str, Any]:
    """A ``split.json`` made for this very cohort; anything else is one sentence naming the file."""
    path = Path(path)
    split = strict_json.read_object(path, "subject split")
    subjects = split.get("subjects")
    if split.get("cohort") != cohort_fingerprint(cohort_dir):
        raise InputFileError(f"{path}: is the split of another cohort (its clinical.tsv or labels.tsv differ from "
                             f"{cohort_dir}'s); give another --split file.")
    every = [s for p in PARTS for s in (subjects or {}).get(p, [])] if isinstance(subjects, dict) else None
    known = {r["subject"] for r in read_stroke_table(cohort_dir)}
    if every is None or len(every) != len(set(every)) or set(every) != known:
        raise InputFileError(f"{path}: is not a subject split (each of the cohort's subjects in one of "
                             f"{', '.join(PARTS)}).")
    return split


def split_for_cohort(path: str | Path, cohort_dir: str | Path, seed: int = 0, write: bool = True
                     ) -> dict[str, Any]:
    """The cohort's split: read from ``path`` when it exists, else made and (``write``) written there.

    ``write=False``: under ``torchrun`` every rank makes the same split, rank 0 alone writes.
    """
    path = Path(path)
    if path.exists():
        return read_split(path, cohort_dir)
    split = make_split(cohort_dir, seed)
    if write:
        write_text_atomic(path, strict_json.dumps(split, indent=1) + "\n")
    return split
