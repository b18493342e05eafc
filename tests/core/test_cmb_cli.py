"""`neuroreview cmb detect / evaluate` with the shipped demo weights, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.phantoms.swi import write_swi_cohort


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    """An empty user data folder, so only the shipped weights are installed."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_swi_cohort(tmp_path_factory.mktemp("cohort"), 2, seed=900_000)


def _case_dir(paths) -> Path:
    return sorted({Path(p).parent for p in paths if Path(p).name == "swi.nii.gz"})[0]


def test_detect_writes_the_contract(user_dirs, cohort, capsys) -> None:
    case = _case_dir(cohort)
    out, labels = user_dirs / "det.json", user_dirs / "lab.nii.gz"
    code = main(["cmb", "detect", str(case / "swi.nii.gz"), "--phase", str(case / "phase.nii.gz"),
                 "--out", str(out), "--labels", str(labels), "--device", "cpu", "--quiet"])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["image"].endswith("swi.nii.gz") and len(doc["image_sha256"]) == 64
    assert doc["model"]["name"] == "cmb-detector" and doc["model"]["version"]
    swi = nib.load(str(case / "swi.nii.gz"))
    lab = nib.load(str(labels))
    np.testing.assert_allclose(lab.affine, swi.affine, atol=1e-5)
    assert lab.shape == swi.shape
    assert sorted(int(i) for i in np.unique(np.asarray(lab.dataobj)) if i) == [d["id"] for d in doc["detections"]]
    for d in doc["detections"]:
        np.testing.assert_allclose(nib.affines.apply_affine(swi.affine, d["voxel_ijk"]), d["world_ras_mm"], atol=0.01)


def test_detect_refuses_4d_and_mismatched_phase_without_writing(user_dirs, cohort, capsys) -> None:
    case = _case_dir(cohort)
    swi = nib.load(str(case / "swi.nii.gz"))
    data = np.asarray(swi.dataobj)
    four_d = user_dirs / "4d.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), swi.affine), str(four_d))
    out = user_dirs / "det.json"
    assert main(["cmb", "detect", str(four_d), "--out", str(out), "--device", "cpu", "--quiet"]) == 2
    assert "4D" in capsys.readouterr().err and not out.exists()
    moved = swi.affine.copy()
    moved[:3, 3] += 5.0
    phase = user_dirs / "phase.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(nib.load(str(case / "phase.nii.gz")).dataobj), moved), str(phase))
    assert main(["cmb", "detect", str(case / "swi.nii.gz"), "--phase", str(phase), "--out", str(out),
                 "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different grid" in err[0] and not out.exists()


def test_evaluate_prints_the_papers_metrics(user_dirs, cohort, capsys) -> None:
    data = _case_dir(cohort).parent
    assert main(["cmb", "evaluate", "--data", str(data), "--device", "cpu", "--quiet",
                 "--json", str(user_dirs / "m.json")]) == 0
    text = capsys.readouterr().out
    for words in ("sensitivity", "FP/subject", "F1", "IoU", "Dice", "FROC"):
        assert words in text
    strict = {"parse_constant": lambda name: pytest.fail(f"{name} is not JSON")}  # issue 8 class 9
    metrics = json.loads((user_dirs / "m.json").read_text(), **strict)
    assert metrics["summary"]["n_subjects"] == 2


def test_train_on_both_simulators_records_the_recipe(user_dirs, tmp_path, monkeypatch, capsys) -> None:
    """``cmb train --simulator both``: scans alternate between the simulators, are made one at a
    time as training reads them (each once), and the card names simulators, scanner and seeds."""
    from cmb_synthetic import synthetic_swi

    from napari_neuroreview import cli_cmb
    from napari_neuroreview.core.tasks.cmb.train import labelled_from_instances

    made: list[tuple[str, int, bool]] = []

    def fake_scan(simulator: str, seed: int, randomise: bool):
        made.append((simulator, seed, randomise))
        volume, truth = synthetic_swi(seed % 1000)
        return labelled_from_instances(f"{simulator}-{seed}", volume, None, truth.astype(np.int64))

    monkeypatch.setattr(cli_cmb, "phantom_scan", fake_scan)
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({"A->B": {"sensitivity": 0.5}}))
    out = tmp_path / "models"
    assert main(["cmb", "train", "--phantoms", "3", "--val", "2", "--epochs", "1", "--steps-per-epoch", "2",
                 "--simulator", "both", "--scanner", "randomised", "--seed", "7", "--version", "0.5.0", "--out", str(out), "--device", "cpu",
                 "--scanner-augment", "--card-figures", str(figures), "--quiet"]) == 0
    assert made == [("phenomenological", 7, True), ("physics", 8, True), ("phenomenological", 9, True),
                    ("phenomenological", 100_007, True), ("physics", 100_008, True)]
    card = json.loads((out / "cmb-detector" / "0.5.0" / "card.json").read_text())
    assert card["config"]["simulators"] == ["phenomenological", "physics"]
    assert card["config"]["scanner"] == "randomised" and card["config"]["scanner_augment"] == "both"
    assert "re-rendered as another scanner would (recipe 'both'" in card["training_data"]
    assert (card["config"]["train_seeds"], card["config"]["val_seeds"]) == ([7, 9], [100_007, 100_008])
    assert card["config"]["held_out_simulator_figures"] == {"A->B": {"sensitivity": 0.5}}
    assert "core.phantoms.swi_physics" in card["training_data"]
    assert json.loads(capsys.readouterr().out)["version"] == "0.5.0"
    from napari_neuroreview.core.tasks.cmb.model import load_detector

    assert load_detector("0.5.0", "cpu", roots=[out]).card.config["scanner"] == "randomised"  # the card loads


def test_cmb_train_scanner_augment_switches_on_the_scanner_randomised_recipe() -> None:
    """``--scanner-augment`` is the benchmark's scanner_randomised variant; without it both stay off."""
    from napari_neuroreview import cli_cmb
    from napari_neuroreview.cli import build_parser

    on = cli_cmb.train_config(build_parser().parse_args(["cmb", "train", "--scanner-augment", "--epochs", "3"]))
    off = cli_cmb.train_config(build_parser().parse_args(["cmb", "train", "--epochs", "3"]))
    assert (on.phase_randomise, on.magnitude_randomise, on.magnitude_p, on.epochs) == (True, True, 1.0, 3)
    assert (off.phase_randomise, off.magnitude_randomise) == (False, False)
    half = cli_cmb.train_config(build_parser().parse_args(["cmb", "train", "--scanner-augment", "phase_magnitude_half"]))
    assert (half.phase_randomise, half.magnitude_randomise, half.magnitude_p) == (True, True, 0.5)


def test_cmb_train_scanner_recipe_names_are_the_recipes() -> None:
    """The parser's spelled-out choices (no torch import to build it) are training.SCANNER_RECIPES' names."""
    from napari_neuroreview import cli_cmb
    from napari_neuroreview.core.tasks.cmb.training import SCANNER_RECIPES, FitConfig

    assert cli_cmb.SCANNER_RECIPE_NAMES == tuple(SCANNER_RECIPES)
    for overrides in SCANNER_RECIPES.values():
        assert set(overrides) <= set(FitConfig.__dataclass_fields__)
