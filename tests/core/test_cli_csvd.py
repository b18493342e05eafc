"""`neuroreview csvd phantoms / evaluate` as a user runs them: the cohort layout, and the refusals
(a bad centre, a cohort too small for the folds, a folder that is not a cohort) as one sentence, exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import nibabel as nib
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.tasks.csvd.labels import LABEL_COLUMNS, read_csvd_labels


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, str]:
    """One phenomenological centre-A and one physics centre-C patient on a 2 mm grid (about 15 s)."""
    out = tmp_path_factory.mktemp("csvd") / "cohort"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["csvd", "phantoms", "--out", str(out), "--n", "2", "--seed", "3", "--centres", "A,C",
                     "--voxel-size", "2", "2", "2", "--quiet"])
    assert code == 0
    return out, buffer.getvalue()


def _one_sentence(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_phantoms_writes_the_cohort_layout(cohort) -> None:
    out, stdout = cohort
    summary = json.loads(stdout)
    assert summary["patients"] == 2 and summary["centres"] == ["A", "C"] and summary["voxel_size"] == [2.0, 2.0, 2.0]
    rows = read_csvd_labels(out)
    assert (out / "labels.tsv").read_text().splitlines()[0].split("\t") == list(LABEL_COLUMNS)
    assert [r["patient"] for r in rows] == ["patient-0000", "patient-0001"]
    assert [(r["centre"], r["simulator"]) for r in rows] == [("A", "phenomenological"), ("C", "physics")]
    for row in rows:
        folder = out / row["patient"]
        assert {p.name for p in folder.iterdir()} >= {"swi.nii.gz", "truth.json", "truth_instances.nii.gz"}
        assert nib.load(str(folder / "swi.nii.gz")).header.get_zooms()[:3] == pytest.approx((2.0, 2.0, 2.0))
        truth = json.loads((folder / "truth.json").read_text())
        assert len(truth["cmbs"]) == row["n_cmb"]
    assert summary["files"] == len(list(out.rglob("*"))) - 2  # every file, not the two folders


def test_phantoms_resume_renders_only_what_is_missing(cohort, tmp_path) -> None:
    """``--resume --workers 2`` after an interruption: the kept patient untouched, the lost one as before."""
    import shutil

    out, _ = cohort
    copy = tmp_path / "cohort"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "patient-0001")
    kept = (copy / "patient-0000" / "swi.nii.gz").stat().st_mtime_ns
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["csvd", "phantoms", "--out", str(copy), "--n", "2", "--seed", "3", "--centres", "A,C",
                     "--voxel-size", "2", "2", "2", "--quiet", "--resume", "--workers", "2"])
    assert code == 0
    assert (copy / "patient-0000" / "swi.nii.gz").stat().st_mtime_ns == kept
    for f in sorted(out.rglob("*")):
        if f.is_file():
            assert (copy / f.relative_to(out)).read_bytes() == f.read_bytes(), f


def test_phantoms_refuses_an_unknown_centre_in_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "c"
    assert main(["csvd", "phantoms", "--out", str(out), "--n", "2", "--centres", "A,X"]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "'X' is not a centre" in line and "A, B, C" in line
    assert not out.exists()
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main(["csvd", "phantoms", "--out", str(afile), "--n", "1"]) == 2
    assert "is a file" in _one_sentence(capsys.readouterr().err)


def test_evaluate_on_a_cohort_too_small_is_the_harness_sentence_before_any_scan(cohort, tmp_path, capsys) -> None:
    out, _ = cohort
    report = tmp_path / "ev.json"
    assert main(["csvd", "evaluate", "--data", str(out), "--json", str(report), "--quiet"]) == 2
    assert _one_sentence(capsys.readouterr().err) == "neuroreview: 1 patients cannot fill 10 folds"
    assert not report.exists()
    # refused from labels.tsv alone: the scans are not read (hours on a large cohort)
    noscan = tmp_path / "noscan"
    shutil.copytree(out, noscan)
    (noscan / "patient-0000" / "swi.nii.gz").unlink()
    assert main(["csvd", "evaluate", "--data", str(noscan), "--folds", "2", "--quiet"]) == 2
    assert "1 patients cannot fill 2 folds" in _one_sentence(capsys.readouterr().err)
    # an external centre without patients
    assert main(["csvd", "evaluate", "--data", str(out), "--external", "B", "--quiet"]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "external centre B" in line and "A, C" in line


def test_evaluate_refuses_a_folder_that_is_not_a_cohort(tmp_path, capsys) -> None:
    assert main(["csvd", "evaluate", "--data", str(tmp_path), "--quiet"]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "labels.tsv" in line and "cohort" in line
    (tmp_path / "labels.tsv").write_text("patient\tsubtype\nx\tCAA\n")
    assert main(["csvd", "evaluate", "--data", str(tmp_path), "--quiet"]) == 2
    assert "not a subtype cohort's labels" in _one_sentence(capsys.readouterr().err)
    assert main(["csvd", "evaluate", "--data", str(tmp_path), "--source", "oracle"]) == 2
    assert "invalid choice" in _one_sentence(capsys.readouterr().err)
