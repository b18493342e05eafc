"""`neuroreview cmb evaluate`: the shipped sample's layout, the JSON report and its averaging units."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.tasks.cmb.dataset import find_cases

#: Figures a reader compares with VALDO 2021 and the SWI paper; each must name its unit.
REPORTED = (
    "sensitivity", "precision", "f1_pooled", "fp_per_subject", "f1_per_subject_median", "f1_per_subject_mean",
    "count_difference_per_subject_median", "abs_count_difference_per_subject_mean",
    "dice_per_cmb_mean", "iou_per_cmb_mean", "dice_per_subject_mean", "iou_per_subject_mean",
    "iou_per_cmb_mean_misses_as_zero", "iou_per_subject_cmb_mean_misses_as_zero",
)


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    """An empty user data folder, so only the shipped weights are installed."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_find_cases_reads_both_layouts(tmp_path) -> None:
    _touch(tmp_path / "case-001" / "swi.nii.gz")
    _touch(tmp_path / "case-001" / "truth_instances.nii.gz")
    _touch(tmp_path / "case-001" / "phase.nii.gz")
    _touch(tmp_path / "cmb" / "sub-demo_swi.nii.gz")
    _touch(tmp_path / "cmb" / "sub-demo_phase.nii.gz")
    _touch(tmp_path / "cmb" / "sub-demo_cmb-instances.nii.gz")
    _touch(tmp_path / "sub-02_swi.nii.gz")  # a sample-style case directly in the folder, no phase
    _touch(tmp_path / "sub-02_cmb-instances.nii.gz")
    _touch(tmp_path / "t1" / "sub-demo_T1w.nii.gz")  # other sample cases are not CMB cases
    cases = {c.name: c for c in find_cases(tmp_path)}
    assert sorted(cases) == ["case-001", "sub-02", "sub-demo"]
    assert cases["case-001"].truth.name == "truth_instances.nii.gz" and cases["case-001"].phase is not None
    assert cases["sub-demo"].truth.name == "sub-demo_cmb-instances.nii.gz"
    assert cases["sub-demo"].phase == tmp_path / "cmb" / "sub-demo_phase.nii.gz"
    assert cases["sub-02"].phase is None
    assert [c.name for c in find_cases(tmp_path / "cmb")] == ["sub-demo"]


def test_evaluate_reads_the_sample_and_reports_model_threshold_and_units(user_dirs, capsys) -> None:
    assert main(["sample-data", "--out", str(user_dirs / "sample"), "--case", "cmb"]) == 0
    capsys.readouterr()
    out = user_dirs / "m.json"
    assert main(["cmb", "evaluate", "--data", str(user_dirs / "sample"), "--device", "cpu", "--quiet",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for label in ("pooled over CMBs", "per subject", "per matched CMB", "misses as 0", "whole masks", "median"):
        assert label in text
    assert "nan" not in text and "± n/a" in text  # an SD over one subject is undefined, said in words
    strict = {"parse_constant": lambda name: pytest.fail(f"{name} is not JSON")}
    doc = json.loads(out.read_text(), **strict)
    from napari_neuroreview.core.tasks.cmb.model import load_detector

    card = load_detector(None, device="cpu").card
    assert doc["model"] == {"name": "cmb-detector", "version": card.version}
    assert doc["threshold"] == pytest.approx(card.config["threshold"]) and doc["threshold_from"] == "the model card"
    assert doc["cases"] == ["sub-demo"] and doc["summary"]["n_subjects"] == 1 and doc["summary"]["n_truth"] == 7
    for key in REPORTED:
        assert key in doc["summary"] and doc["summary"]["averaging"][key], key
    assert "f1" not in doc["summary"] and "dice_mean" not in doc["summary"]  # no unit-less names left


def test_evaluate_records_a_given_threshold(user_dirs, capsys) -> None:
    assert main(["sample-data", "--out", str(user_dirs / "sample"), "--case", "cmb"]) == 0
    out = user_dirs / "m.json"
    assert main(["cmb", "evaluate", "--data", str(user_dirs / "sample" / "cmb"), "--device", "cpu", "--quiet",
                 "--threshold", "0.99", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["threshold"] == 0.99 and doc["threshold_from"] == "--threshold"


@pytest.mark.parametrize("layout", ["empty", "swi without truth", "sample swi without truth"])
def test_evaluate_refuses_a_folder_without_cases_in_one_line(layout, user_dirs, capsys) -> None:
    data = user_dirs / "cases"
    _touch(data / "notes.txt")
    if layout == "swi without truth":
        _touch(data / "case-001" / "swi.nii.gz")
    elif layout == "sample swi without truth":
        _touch(data / "sub-01_swi.nii.gz")
    out = user_dirs / "m.json"
    code = main(["cmb", "evaluate", "--data", str(data), "--device", "cpu", "--quiet", "--json", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    expected = {"empty": "holds no labelled SWI cases", "swi without truth": "truth_instances.nii.gz",
                "sample swi without truth": "sub-01_cmb-instances.nii.gz"}[layout]
    assert expected in err[0] and not out.exists()
    with pytest.raises(InputFileError):
        find_cases(data)
