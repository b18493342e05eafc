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
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InputFileError


def plain(value: Any, nonfinite: Literal["null", "keep"] = "null") -> Any:
    """``value`` with numpy types made Python types and non-finite floats made ``None``.

    ``nonfinite="keep"`` leaves NaN and infinity in place for a writer that must refuse
    them (``json.dumps(..., allow_nan=False)``): the store, where a NaN is a bug, not
    "undefined".
    """
    if isinstance(value, dict):
        return {str(k): plain(v, nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, nonfinite) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist(), nonfinite)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value) and nonfinite == "null":
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


def read_object(path: str | Path, what: str) -> dict[str, Any]:
    """The JSON object in the file ``path`` (a ``what``, e.g. "networks.json"), read strictly.

    Why: a user's file that is missing, a folder, not UTF-8, not JSON (NaN included) or
    not an object is one sentence naming the file, the same whichever command read it.
    """
    path = Path(path)
    try:
        doc = loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: does not exist") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a folder, not a {what}") from None
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: is not UTF-8 text, so it is not a {what}") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity
        raise InputFileError(f"{path}: is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputFileError(f"{path}: holds a JSON {type(doc).__name__}, not the object a {what} is")
    return doc
