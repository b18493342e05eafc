"""The stroke clinical table's documented schema: every column, its unit, type, range, and whether it may be blank.

Why one place: the cohort's ``clinical.tsv`` (:mod:`.labels`), a user's table given to
``neuroreview stroke predict`` and the viewer's form are read by :func:`validate_row` alone,
and the README's table is :func:`schema_markdown` (a test keeps them equal), so the
documentation and the parser cannot drift apart.

Required or optional: a *required* column must be filled for every subject; an *optional*
one may be blank (``n/a``, BIDS, or an empty cell), and the tabular encoding then sets its
missing indicator (:mod:`.tabular`). The required ones are those the training table never
leaves blank (the phantom's :data:`~napari_neuroreview.core.phantoms.stroke.literature.MISSING`
names the others): a model has not learnt what a blank age, sex, atrial fibrillation or
cardiovascular disease means. The image-derived volumes are in a table only when the cohort
was written with them (``stroke phantoms --image-volumes-in-table``); a model that reads them
needs them filled.

Ranges are plausible human values, chosen (no reference gives a plausibility range): wider
than any clinic reading, so that a value outside is a unit or typing error (SBP in kPa, a
height for a BMI, cholesterol in mg/dL), not a rare patient.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import InputFileError

__all__ = ["BLANKS", "COLUMNS", "ColumnSpec", "column_spec", "parse_cell", "schema_markdown", "validate_row"]

#: Cells read as a missing value: ``n/a`` (BIDS; what the cohort writes) and an empty cell.
BLANKS: tuple[str, ...] = ("n/a", "")


@dataclass(frozen=True)
class ColumnSpec:
    """One column of the clinical table.

    Attributes
    ----------
    name : str
        The header's spelling.
    meaning : str
        What it holds, in words.
    unit : str
        The unit of a number ("" for a category); a 0/1 column's is ``0/1``.
    kind : {"number", "binary", "category"}
        A real number, 0 or 1, or one of :attr:`categories`.
    low, high : float
        The allowed closed range of a number or 0/1 column (NaN for a category).
    categories : tuple of str
        A category column's allowed values.
    required : bool
        Must be filled (module docstring); else it may be blank.
    image_derived : bool
        An image-derived volume (only in tables written with them).
    range_source : str
        Where the range comes from.
    """

    name: str
    meaning: str
    unit: str
    kind: str
    low: float = math.nan
    high: float = math.nan
    categories: tuple[str, ...] = ()
    required: bool = False
    image_derived: bool = False
    range_source: str = "chosen"

    @property
    def allowed(self) -> str:
        """The allowed values in words (``60-260 mmHg``, ``0 or 1``, ``F or M``)."""
        if self.kind == "category":
            return " or ".join(self.categories)
        if self.kind == "binary":
            return "0 or 1"
        return f"{self.low:g}-{self.high:g} {self.unit}"


def _binary(name: str, meaning: str, required: bool = False) -> ColumnSpec:
    return ColumnSpec(name, meaning, "0/1", "binary", 0.0, 1.0, required=required, range_source="0 = no, 1 = yes")


#: Every column in the table's order (after ``subject``, and ``set`` in a cohort's table).
COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("age", "age at the scan", "years", "number", 18.0, 110.0, required=True,
               range_source="chosen: adults, up to the oldest ages recorded"),
    ColumnSpec("sex", "sex", "", "category", categories=("F", "M"), required=True, range_source="F or M"),
    ColumnSpec("sbp", "systolic blood pressure", "mmHg", "number", 60.0, 260.0,
               range_source="chosen: below 60 is shock, above 260 beyond clinic readings"),
    _binary("bp_treated", "on antihypertensive treatment"),
    _binary("diabetes", "diabetes mellitus"),
    _binary("smoking", "current smoker"),
    _binary("af", "atrial fibrillation", required=True),
    _binary("cvd", "cardiovascular disease (coronary disease or heart failure)", required=True),
    _binary("lvh", "left ventricular hypertrophy on the ECG"),
    ColumnSpec("bmi", "body mass index", "kg/m2", "number", 12.0, 70.0,
               range_source="chosen: severe wasting to extreme obesity"),
    ColumnSpec("cholesterol", "total cholesterol", "mmol/L", "number", 1.0, 20.0,
               range_source="chosen: up to homozygous familial hypercholesterolaemia (mg/dL values fall outside)"),
    ColumnSpec("wmh_ml", "white matter hyperintensity volume (image-derived)", "ml", "number", 0.0, 300.0,
               image_derived=True, range_source="chosen: up to confluent WMH filling the white matter"),
    ColumnSpec("brain_ml", "brain parenchyma volume (image-derived)", "ml", "number", 500.0, 2000.0,
               image_derived=True, range_source="chosen: severe atrophy to a large head"),
    ColumnSpec("ventricles_ml", "lateral ventricle volume (image-derived)", "ml", "number", 1.0, 400.0,
               image_derived=True, range_source="chosen: slit ventricles to severe hydrocephalus"),
)
_BY_NAME: dict[str, ColumnSpec] = {c.name: c for c in COLUMNS}


def column_spec(name: str) -> ColumnSpec:
    """The column called ``name`` (KeyError for another name: a caller's bug)."""
    return _BY_NAME[name]


def parse_cell(column: str, value: Any, where: str = "") -> Any:
    """One cell of ``column`` as the encoder reads it: None (blank), ``'F'``/``'M'``, 0/1 (int) or a float.

    ``value`` is the file's text or an already typed value (the viewer's form). A value of
    the wrong kind or out of range is one sentence naming the column, the value, the unit
    and the range, after ``where`` (the file and line, or the subject). A blank required
    cell is one sentence too.
    """
    spec = _BY_NAME[column]
    prefix = f"{where}: " if where else ""
    text = value.strip() if isinstance(value, str) else value
    if text is None or (isinstance(text, str) and text in BLANKS) or (isinstance(text, float) and math.isnan(text)):
        if spec.required:
            raise InputFileError(f"{prefix}{column} ({spec.meaning}) is blank, but it is required (allowed: "
                                 f"{spec.allowed}).")
        return None
    if spec.kind == "category":
        if text not in spec.categories:
            raise InputFileError(f"{prefix}{column} ({spec.meaning}) is {text!r}, not {spec.allowed}.")
        return text
    unit = "" if spec.kind == "binary" else f" {spec.unit}"
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise InputFileError(f"{prefix}{column} ({spec.meaning}) is {text!r}, not a number (allowed: "
                             f"{spec.allowed}; a decimal point, not a comma).") from None
    if not (math.isfinite(number) and spec.low <= number <= spec.high) or (
            spec.kind == "binary" and number not in (0.0, 1.0)):
        raise InputFileError(f"{prefix}{column} ({spec.meaning}) is {text!r}{unit}, outside the allowed "
                             f"{spec.allowed}.")
    return int(number) if spec.kind == "binary" else number


def validate_row(row: Mapping[str, Any], columns: tuple[str, ...] | None = None, where: str = "") -> dict[str, Any]:
    """``row`` (column -> text or value) checked and typed by :func:`parse_cell`, for ``columns``.

    ``columns`` default: the clinical (not image-derived) columns. A column of ``columns``
    absent from ``row`` is one sentence when it is required; an optional one absent is read
    as blank (None). Keys of ``row`` outside the schema (``subject``, ``set``) are kept as
    they are. The first bad cell raises (:class:`~...errors.InputFileError`, one sentence).
    """
    wanted = columns if columns is not None else tuple(c.name for c in COLUMNS if not c.image_derived)
    prefix = f"{where}: " if where else ""
    out = {k: v for k, v in row.items() if k not in _BY_NAME}
    for name in wanted:
        if name not in row:
            spec = _BY_NAME[name]
            if spec.required:
                raise InputFileError(f"{prefix}the required column {name} ({spec.meaning}, {spec.allowed}) is "
                                     "missing.")
            out[name] = None
            continue
        out[name] = parse_cell(name, row[name], where)
    return out


def schema_markdown() -> str:
    """The schema as a Markdown table (README's "Stroke clinical table"; a test keeps them equal)."""
    lines = ["| Column | Meaning | Unit | Type | Allowed | Blank allowed | Range from |",
             "|---|---|---|---|---|---|---|"]
    for c in COLUMNS:
        blank = "no" if c.required else "yes"
        if c.image_derived:
            blank = "no, when the model reads it"
        lines.append(f"| `{c.name}` | {c.meaning} | {c.unit or '-'} | {c.kind} | {c.allowed} | {blank} | "
                     f"{c.range_source} |")
    return "\n".join(lines)
