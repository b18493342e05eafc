"""The stroke clinical table's schema (issue 13 item 7): one parser, one sentence per bad cell, README kept equal."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.phantoms.stroke import draw_population
from napari_neuroreview.core.phantoms.stroke import literature as lit
from napari_neuroreview.core.phantoms.stroke.cohort import clinical_rows
from napari_neuroreview.core.tasks.stroke.labels import (
    CLINICAL_COLUMNS,
    IMAGE_VOLUME_COLUMNS,
    read_clinical_row,
    read_stroke_table,
)
from napari_neuroreview.core.tasks.stroke.schema import (
    COLUMNS,
    column_spec,
    schema_markdown,
    validate_row,
)

README = Path(__file__).resolve().parents[2] / "README.md"
GOOD = {"age": "64.5", "sex": "F", "sbp": "141", "bp_treated": "1", "diabetes": "0", "smoking": "0", "af": "0",
        "cvd": "1", "lvh": "n/a", "bmi": "27.3", "cholesterol": ""}


def test_readme_holds_the_schema_table_as_the_code_makes_it() -> None:
    text = README.read_text(encoding="utf-8")
    assert "### Stroke clinical table" in text
    assert schema_markdown() in text
    # every column is documented with a unit or kind and a range source
    for c in COLUMNS:
        assert f"| `{c.name}` |" in schema_markdown() and c.range_source


def test_phantom_table_passes_and_its_ranges_lie_inside_the_schema(tmp_path: Path) -> None:
    pop = draw_population(3000, 11)
    subjects = [f"sub-{i:05d}" for i in range(len(pop))]
    lines = clinical_rows(pop, subjects, ["labelled"] * len(pop), image_volumes_in_table=True)
    (tmp_path / "clinical.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = read_stroke_table(tmp_path)
    assert len(rows) == 3000 and set(rows[0]) == {"subject", "set", *CLINICAL_COLUMNS, *IMAGE_VOLUME_COLUMNS}
    # the phantom's clips are inside the allowed ranges, and it leaves only optional columns blank
    for column, (low, high) in {"age": lit.AGE[2:], "bmi": lit.BMI[3:], "cholesterol": lit.CHOLESTEROL[3:],
                                "sbp": (lit.SBP["low"], lit.SBP["high"])}.items():
        spec = column_spec(column)
        assert spec.low <= low and high <= spec.high, column
    assert all(not column_spec(c).required for c in lit.MISSING)
    blank = {c for r in rows for c in CLINICAL_COLUMNS if r[c] is None}
    assert blank and blank <= set(lit.MISSING)


def test_validate_row_types_values_and_blank_optional_cells() -> None:
    row = validate_row({"subject": "s1", **GOOD})
    assert row["subject"] == "s1" and row["age"] == 64.5 and row["sex"] == "F" and row["cvd"] == 1
    assert isinstance(row["bp_treated"], int) and row["lvh"] is None and row["cholesterol"] is None
    # an optional column absent is blank; typed values (the viewer's form) pass as they are
    assert validate_row({k: v for k, v in GOOD.items() if k != "bmi"})["bmi"] is None
    assert validate_row({**GOOD, "age": 70, "af": 1})["age"] == 70.0


@pytest.mark.parametrize(("column", "value", "words"), [
    ("sbp", "300", (r"^table\.csv: line 3 \(s1\): sbp \(systolic blood pressure\) is '300' mmHg, outside the allowed "
                   r"60-260 mmHg\.$")),
    ("cholesterol", "212", r"cholesterol \(total cholesterol\) is '212' mmol/L, outside the allowed 1-20 mmol/L\.$"),
    ("age", "sixty", (r"age \(age at the scan\) is 'sixty', not a number \(allowed: 18-110 years; a decimal point, "
                     r"not a comma\)\.$")),
    ("bmi", "27,3", r"bmi \(body mass index\) is '27,3', not a number"),
    ("af", "2", r"af \(atrial fibrillation\) is '2', outside the allowed 0 or 1\.$"),
    ("sex", "female", r"sex \(sex\) is 'female', not F or M\.$"),
    ("age", "n/a", r"age \(age at the scan\) is blank, but it is required \(allowed: 18-110 years\)\.$"),
    ("bmi", "inf", r"bmi \(body mass index\) is 'inf' kg/m2, outside the allowed 12-70 kg/m2\.$"),
])
def test_a_bad_cell_is_one_sentence_naming_column_value_unit_and_range(column: str, value: str, words: str) -> None:
    with pytest.raises(InputFileError, match=words) as info:
        validate_row({**GOOD, column: value}, where="table.csv: line 3 (s1)")
    assert str(info.value).count(". ") == 0  # one sentence


def test_a_missing_required_column_is_one_sentence() -> None:
    with pytest.raises(InputFileError, match=r"^the required column cvd \(cardiovascular disease .*\) is missing\.$"):
        validate_row({k: v for k, v in GOOD.items() if k != "cvd"})


def test_cohort_reader_names_file_line_and_cell(tmp_path: Path) -> None:
    header = "\t".join(("subject", "set", *CLINICAL_COLUMNS))
    good = "\t".join(("sub-1", "labelled", *(GOOD[c] or "n/a" for c in CLINICAL_COLUMNS)))
    bad = good.replace("sub-1", "sub-2").replace("\t141\t", "\t14.1\t")
    (tmp_path / "clinical.tsv").write_text(f"{header}\n{good}\n{bad}" + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"clinical\.tsv: line 3 \(sub-2\): sbp .* is '14\.1' mmHg, outside"):
        read_stroke_table(tmp_path)


@pytest.mark.parametrize(("suffix", "sep"), [(".csv", ","), (".tsv", "\t"), (".csv", ";"), (".txt", "\t")])
def test_user_table_csv_or_tsv_picks_the_subject_row(tmp_path: Path, suffix: str, sep: str) -> None:
    columns = ["cholesterol", "subject", *[c for c in CLINICAL_COLUMNS if c not in ("cholesterol", "lvh")], "note"]
    rows = [sep.join(columns)]
    for s, age in (("a", "50"), ("b", "71.5")):
        values = {**GOOD, "subject": s, "age": age, "note": "x"}
        rows.append(sep.join(values[c] for c in columns))
    path = tmp_path / f"table{suffix}"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    row = read_clinical_row(path, "b")
    assert row["subject"] == "b" and row["age"] == 71.5 and row["lvh"] is None and row["cholesterol"] is None
    assert list(row) == ["subject", *CLINICAL_COLUMNS]
    with pytest.raises(InputFileError, match=r"no row for subject 'c' in the clinical table\.$"):
        read_clinical_row(path, "c")
    # image-derived columns asked for but absent: optional for the schema, blank here
    assert read_clinical_row(path, "a", (*CLINICAL_COLUMNS, "wmh_ml"))["wmh_ml"] is None
    path.write_text("\n".join([*rows, rows[1]]) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"subject 'a' has 2 rows \(lines 2, 4\)"):
        read_clinical_row(path, "a")
    path.write_text("\n".join([sep.join(c for c in columns if c != "af"), *(
        sep.join(v for c, v in zip(columns, r.split(sep)) if c != "af") for r in rows[1:])]) + "\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r": line 2 \(a\): the required column af \(atrial fibrillation, 0 or 1\) "
                                             r"is missing\.$"):
        read_clinical_row(path, "a")


def test_quoted_csv_and_no_subject_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    header = ",".join(["subject", *CLINICAL_COLUMNS])
    path.write_text(header + "\n" + ",".join(['"s 1"', *(f'"{GOOD[c]}"' for c in CLINICAL_COLUMNS)]) + "\n")
    assert read_clinical_row(path, "s 1")["sbp"] == 141.0
    path.write_text(header.replace("subject", "id") + "\n")
    with pytest.raises(InputFileError, match="has no subject column"):
        read_clinical_row(path, "s 1")
