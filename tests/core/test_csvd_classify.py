"""Subtype classification of one scan (issue 11 item 5): on the committed CMB sample with its true
microbleeds, with none, from a det.json through `csvd classify`, and a det.json of another scan refused."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.anatomy.mars import MARS_CLASSES, REGION_CLASS
from napari_neuroreview.core.io.nifti import load_volume
from napari_neuroreview.core.phantoms.csvd import csvd_patients
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.csvd.baselines import SUBTYPES
from napari_neuroreview.core.tasks.csvd.classify import (
    UNKNOWN_DIAMETER_MM,
    Finding,
    classify_findings,
    findings_from_detections,
)
from napari_neuroreview.core.tasks.csvd.evaluate import items_from_patients
from napari_neuroreview.core.tasks.csvd.model import FeatureLayout, load_subtype_model, save_subtype_model
from napari_neuroreview.core.tasks.csvd.train import MILConfig, MILEstimator

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "cmb"
SWI = SAMPLE / "sub-demo_swi.nii.gz"
TOP_KEYS = {"image_sha256", "model", "probabilities", "prediction", "mars_counts", "regions", "cmbs", "registration"}
CMB_KEYS = {"id", "world_ras_mm", "region", "mars_class", "side", "attention"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """A small location-only model (40 drawn patients, 2 epochs) as the only installed version."""
    root = tmp_path_factory.mktemp("csvd-reg")
    items, labels, _ = items_from_patients(csvd_patients(40, 415_000, centres=("A", "B")))
    est = MILEstimator(MILConfig(patch_embedding=False, epochs=2), "cpu")
    run_to_completion(est.fit([i.bag for i in items], np.array([SUBTYPES.index(c) for c in labels])))
    save_subtype_model(est, FeatureLayout(), root, "9.0.0", "40 drawn phantom patients, oracle locations")
    return root


@pytest.fixture(scope="module")
def truth() -> list[dict]:
    return json.loads((SAMPLE / "sub-demo_truth.json").read_text())["cmbs"]


def _findings(truth: list[dict]) -> list[Finding]:
    return [Finding(c["id"], tuple(c["world_ras_mm"]), c["volume_mm3"]) for c in truth]


def _no_absolute_path(value) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _no_absolute_path(v)
    elif isinstance(value, list):
        for v in value:
            _no_absolute_path(v)
    elif isinstance(value, str):
        assert "/" not in value and "\\" not in value, value


def _check_document(doc: dict, ids: list[int]) -> None:
    assert set(doc) == TOP_KEYS
    assert set(doc["model"]) == {"name", "version"}
    assert list(doc["probabilities"]) == list(SUBTYPES)
    assert sum(doc["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert doc["prediction"] == max(doc["probabilities"], key=doc["probabilities"].get)
    assert list(doc["mars_counts"]) == list(MARS_CLASSES)
    assert [c["id"] for c in doc["cmbs"]] == ids
    for c in doc["cmbs"]:
        assert set(c) == CMB_KEYS and len(c["world_ras_mm"]) == 3 and c["side"] in ("left", "right")
        assert c["region"] in REGION_CLASS and c["mars_class"] == REGION_CLASS[c["region"]]
    if ids:
        assert sum(c["attention"] for c in doc["cmbs"]) == pytest.approx(1.0, abs=1e-5)
    assert sum(doc["regions"].values()) == len(ids) == sum(doc["mars_counts"].values())
    assert doc["image_sha256"] == load_volume(SWI).sha256
    _no_absolute_path(doc)


def test_classify_the_sample_from_its_true_microbleeds(registry, truth) -> None:
    model = load_subtype_model(device="cpu", roots=[registry])
    result = run_to_completion(classify_findings(load_volume(SWI), None, _findings(truth), model, "cpu"))
    doc = result.to_json()
    _check_document(doc, [c["id"] for c in truth])
    assert doc["model"] == {"name": "csvd-subtype", "version": "9.0.0"}
    # the sample's truth names each CMB's location class: registration puts it in the same one
    assert [c["mars_class"] for c in doc["cmbs"]] == [c["location"] for c in truth]
    assert 0.9 < min(doc["registration"]["scales"]) and doc["registration"]["brain_dice"] >= 0.75


def test_a_patient_without_microbleeds_is_classified(registry) -> None:
    model = load_subtype_model(device="cpu", roots=[registry])
    doc = run_to_completion(classify_findings(load_volume(SWI), None, [], model, "cpu")).to_json()
    _check_document(doc, [])
    assert doc["cmbs"] == [] and doc["regions"] == {} and doc["mars_counts"] == {c: 0 for c in MARS_CLASSES}


def _det_json(path: Path, sha256: str, truth: list[dict]) -> Path:
    doc = {"image": SWI.name, "image_sha256": sha256, "model": {"name": "cmb-detector", "version": "1.0.0"},
           "threshold": 0.5, "detections": [
               {"id": c["id"], "world_ras_mm": c["world_ras_mm"], "voxel_ijk": c["voxel_ijk"], "score": 0.9,
                "volume_mm3": c["volume_mm3"]} for c in truth]}
    path.write_text(json.dumps(doc))
    return path


def test_findings_from_detections_reads_det_json_entries(truth) -> None:
    entries = [{"id": 3, "world_ras_mm": [1.0, 2.0, 3.0], "score": 0.8}, {**truth[0], "score": 0.9}]
    found = findings_from_detections(entries)
    assert found[0] == Finding(3, (1.0, 2.0, 3.0), None) and found[0].diameter_mm == UNKNOWN_DIAMETER_MM
    assert found[1] == Finding(truth[0]["id"], tuple(truth[0]["world_ras_mm"]), truth[0]["volume_mm3"])


@pytest.fixture
def cli_model(registry, tmp_path, monkeypatch) -> None:
    """`csvd classify` loads the small test model (a user folder of its own; the shipped detector stays)."""
    from napari_neuroreview.core.tasks.csvd import model as csvd_model

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    real = csvd_model.load_subtype_model
    monkeypatch.setattr(csvd_model, "load_subtype_model",
                        lambda version=None, device="auto", roots=None: real(version, device, [registry]))


def test_csvd_classify_with_detections_writes_the_document(cli_model, truth, tmp_path) -> None:
    det = _det_json(tmp_path / "det.json", load_volume(SWI).sha256, truth)
    out = tmp_path / "res.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["csvd", "classify", str(SWI), "--out", str(out), "--detections", str(det), "--device", "cpu",
                     "--quiet"])
    assert code == 0
    doc = json.loads(out.read_text())
    _check_document(doc, [c["id"] for c in truth])
    assert json.loads(stdout.getvalue())["prediction"] == doc["prediction"]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_csvd_classify_refuses_a_det_json_of_another_scan(cli_model, truth, tmp_path, capsys) -> None:
    det = _det_json(tmp_path / "det.json", "ab" * 32, truth)
    out = tmp_path / "res.json"
    assert main(["csvd", "classify", str(SWI), "--out", str(out), "--detections", str(det), "--quiet"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "another scan" in line and "det.json" in line
    assert not out.exists()


def test_csvd_classify_refuses_to_overwrite_an_input(cli_model, truth, tmp_path, capsys) -> None:
    det = _det_json(tmp_path / "det.json", load_volume(SWI).sha256, truth)
    before = det.read_text()
    assert main(["csvd", "classify", str(SWI), "--out", str(det), "--detections", str(det), "--quiet"]) == 2
    _one_line(capsys.readouterr().err)
    assert det.read_text() == before


def test_csvd_classify_runs_the_detector_without_detections(cli_model, tmp_path) -> None:
    """End to end with the shipped detector (about 5 s on the sample) and the small test model."""
    out = tmp_path / "res.json"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["csvd", "classify", str(SWI), "--out", str(out), "--phase", str(SAMPLE / "sub-demo_phase.nii.gz"),
                     "--device", "cpu", "--quiet"])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["model"]["version"] == "9.0.0" and len(doc["cmbs"]) >= 1
    assert sum(doc["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
