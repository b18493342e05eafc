"""strict_json.plain: the one numpy/NaN-to-JSON sanitiser, for writers that null NaN and for those that refuse it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from napari_neuroreview.core.errors import StoreError
from napari_neuroreview.core.io import strict_json
from napari_neuroreview.core.store.records import _dumps


def test_plain_makes_numpy_python_and_nan_null_or_keeps_it_for_refusal() -> None:
    value = {1: np.float32(0.5), "a": np.arange(3), "b": (np.int64(2), {np.nan}), "c": np.bool_(True)}
    assert strict_json.plain(value) == {"1": 0.5, "a": [0, 1, 2], "b": [2, [None]], "c": True}
    kept = strict_json.plain(value, nonfinite="keep")
    assert math.isnan(kept["b"][1][0])
    with pytest.raises(ValueError):
        json.dumps(kept, allow_nan=False)


def test_the_store_writes_numpy_through_plain_and_still_refuses_nan() -> None:
    assert _dumps({"score": np.float32(0.25), "ijk": np.array([1, 2, 3]), "id": np.int64(7)}, "extra") == (
        '{"id": 7, "ijk": [1, 2, 3], "score": 0.25}')
    with pytest.raises(StoreError, match="cannot be stored as JSON"):
        _dumps({"position": [np.float64("nan"), 0.0, 0.0]}, "position")
    with pytest.raises(StoreError, match="cannot be stored as JSON"):
        _dumps({"position": np.array([np.nan, 0.0, 0.0], np.float32)}, "position")
