"""Strict JSON in and out: no ``NaN``/``Infinity`` written, none accepted.

Why one module: Python's :mod:`json` writes ``NaN`` and ``Infinity`` by default, which is
not JSON (``jq``, JavaScript, R's jsonlite and most validators reject the file), and reads
them back without complaint, so a corrupt number travels on silently. Every file or
stdout document this package writes goes through :func:`dumps`; every document it reads
from a user goes through :func:`loads`. Where NaN means "not defined" (a precision with no
detections) it is written as ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """``value`` with numpy types made Python types and non-finite floats made ``None``."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """JSON text of ``value`` after :func:`plain`; raises ValueError rather than write NaN."""
    return json.dumps(plain(value), allow_nan=False, **kwargs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str) -> Any:
    """Parse JSON, refusing the non-standard ``NaN``, ``Infinity`` and ``-Infinity``."""
    return json.loads(text, parse_constant=_refuse_constant)
