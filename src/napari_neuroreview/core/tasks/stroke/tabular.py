"""The clinical table as the tabular encoder reads it, and SCARF corruption.

Encoding (:class:`TableEncoding`, fitted on the TRAINING subjects only, so that nothing of a
validation or test subject's values leaks into the standardisation):

* a number column (age, systolic BP, BMI, cholesterol; the image volumes when the table has
  them): standardised by the training rows' mean and SD, a missing value 0 (the mean);
* a categorical column (sex, and each 0/1 column): one-hot, all zeros when missing;
* every column: a missing indicator (1 where the value is missing).

Each column is a *group* of encoded features (:attr:`TableEncoding.groups`). SCARF (Bahri
et al. 2022) corrupts a row by replacing a share of its columns with the same columns of
another training row drawn at random: a draw from that column's empirical marginal among
training rows (the missing indicator travels with the value, so a missing value is drawn as
often as the training rows miss it). :func:`scarf_corrupt` replaces exactly
``round(share x columns)`` columns per row (30 % in the paper), chosen per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .labels import BINARY_COLUMNS, CLINICAL_COLUMNS, IMAGE_VOLUME_COLUMNS

__all__ = ["CATEGORIES", "TableEncoding", "scarf_corrupt"]

#: The categorical columns and their categories (one-hot in this order).
CATEGORIES: dict[str, tuple[Any, ...]] = {"sex": ("F", "M"), **{c: (0, 1) for c in BINARY_COLUMNS}}


@dataclass(frozen=True)
class TableEncoding:
    """How a table's rows become the tabular encoder's input (module docstring).

    Attributes
    ----------
    columns : tuple of str
        The table's columns in order (:data:`~.labels.CLINICAL_COLUMNS`, then the image
        volumes when the cohort's table has them).
    mean, sd : dict of str to float
        The number columns' training statistics.
    """

    columns: tuple[str, ...]
    mean: dict[str, float]
    sd: dict[str, float]

    @classmethod
    def fit(cls, rows: Sequence[dict[str, Any]]) -> TableEncoding:
        """Statistics of the training ``rows`` (``read_stroke_table``'s dicts); an SD of 0 counts as 1."""
        columns = tuple(c for c in (*CLINICAL_COLUMNS, *IMAGE_VOLUME_COLUMNS) if rows and c in rows[0])
        mean, sd = {}, {}
        for c in columns:
            if c in CATEGORIES:
                continue
            values = np.array([r[c] for r in rows if r[c] is not None], float)
            mean[c] = float(values.mean()) if values.size else 0.0
            spread = float(values.std()) if values.size > 1 else 0.0
            sd[c] = spread if spread > 0 else 1.0
        return cls(columns, mean, sd)

    @property
    def groups(self) -> list[slice]:
        """Each column's slice of the encoded features (value(s), then its missing indicator)."""
        out, start = [], 0
        for c in self.columns:
            width = len(CATEGORIES[c]) + 1 if c in CATEGORIES else 2
            out.append(slice(start, start + width))
            start += width
        return out

    @property
    def width(self) -> int:
        """Encoded features per row."""
        return self.groups[-1].stop if self.columns else 0

    def encode(self, rows: Sequence[dict[str, Any]]) -> np.ndarray:
        """(n, :attr:`width`) float32 features of ``rows``."""
        out = np.zeros((len(rows), self.width), np.float32)
        for c, group in zip(self.columns, self.groups):
            for i, row in enumerate(rows):
                value = row.get(c)
                if value is None:
                    out[i, group.stop - 1] = 1.0
                elif c in CATEGORIES:
                    out[i, group.start + CATEGORIES[c].index(value)] = 1.0
                else:
                    out[i, group.start] = (float(value) - self.mean[c]) / self.sd[c]
        return out

    def to_json(self) -> dict[str, Any]:
        """What a model card keeps to encode a new subject as in training."""
        return {"columns": list(self.columns), "mean": self.mean, "sd": self.sd}


def scarf_corrupt(x: torch.Tensor, pool: torch.Tensor, groups: Sequence[slice], share: float,
                  generator: torch.Generator) -> torch.Tensor:
    """``x`` (n, F) with ``round(share x len(groups))`` column groups per row replaced by a random ``pool`` row's.

    ``pool`` holds the encoded TRAINING rows: a replacement is a draw from the column's
    empirical marginal among them (module docstring). Random draws come from ``generator``.
    """
    n, k = x.shape[0], round(share * len(groups))
    if n == 0 or k == 0:
        return x.clone()
    chosen = torch.rand(n, len(groups), generator=generator).argsort(dim=1)[:, :k]
    donors = torch.randint(0, pool.shape[0], (n, len(groups)), generator=generator)
    out = x.clone()
    for g, group in enumerate(groups):
        rows = (chosen == g).any(dim=1)
        if bool(rows.any()):
            out[rows, group] = pool[donors[rows, g], group]
    return out
