"""benchmarks/metastasis.py end to end on a tiny rendered cohort: the JSON's structure and its figures in range.

The cohort: 30 patients at 4 mm (seed 962: five of each origin at the development sites,
every origin at the external one), rendered by the benchmark's own ``--render``; the run
is ``--quick`` (16^3 crops of 48 mm, two epochs, two outer and two inner folds), 20 bootstrap resamples.
Those tests are marked slow (``make test-slow``; the render and the run are about 110 CPU s). In
``make test``: the refusals before any training, the Grad-CAM timing code (ours beside MONAI's,
in this process) on tiny networks, the cascade's end and the crop cache's key.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import metastasis as bench  # noqa: E402

from napari_neuroreview.core.tasks.metastasis.classes import NODES, ORIGINS  # noqa: E402

RENDER = ("--render", "30", "--render-seed", "962", "--render-voxel-size", "4", "4", "4", "--workers", "2")
#: Patient-bootstrap resamples (``--quick`` has 50): the tests check each CI's range, not its width, and
#: 50 were half of the evaluation's time; the CLI test below passes the same number to compare.
BOOT = "20"

#: Timed Grad-CAM calls per method (``--quick`` has 5): the tests check the timing's fields and that the
#: maps agree, not the medians; each repeat was about 4 CPU s of the run (four methods x setups).
CAM_REPEATS = 2

#: The run's fixture: rendering the cohort (about 50 CPU s) and the run (about 60) take most of it.
pytestmark = [pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict, str]:
    """The benchmark rendered a cohort and ran on it: (the cohort, the JSON, the printout)."""
    folder = tmp_path_factory.mktemp("bench-met")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--data", str(folder / "cohort"), *RENDER, "--quick", "--threads", "1",
                           "--json", str(folder / "met.json"), "--cam-repeats", str(CAM_REPEATS), "--boot", BOOT,
                           "--save-model", str(folder / "registry"), "--version", "0.0.1"]) == 0
    return folder / "cohort", json.loads((folder / "met.json").read_text()), out.getvalue()


def _in_range(cell: dict, where: str) -> None:
    value, low, high = cell["value"], cell["low"], cell["high"]
    if value is None:  # a node without both classes among its rows: no AUC, never a made-up one
        return
    assert 0.0 <= value <= 1.0 and math.isfinite(value), where
    if low is not None and high is not None:
        assert 0.0 <= low <= high <= 1.0, where


@pytest.mark.slow
def test_every_model_setting_and_level_has_node_and_four_class_figures_in_range(run) -> None:
    _, doc, _ = run
    ev = doc["evaluation"]
    assert set(ev["models"]) == {"radiomics logistic", "ResNet6-CBAM", "nested choice"}
    for name, by in ev["models"].items():
        assert set(by) == {"development", "external"}
        for setting, levels in by.items():
            assert set(levels) == {"lesion", "patient"}
            for level, res in levels.items():
                where = f"{name} {setting} {level}"
                assert set(res["nodes"]) == set(NODES)
                for node, r in res["nodes"].items():
                    _in_range(r["metrics"]["auc"], f"{where} {node}")
                for metric in ("auc_macro", "balanced_accuracy"):
                    _in_range(res["four_class"]["metrics"][metric], f"{where} {metric}")
                confusion = res["four_class"]["confusion"]
                assert len(confusion) == len(ORIGINS) and all(len(row) == len(ORIGINS) for row in confusion)
    sizes = ev["sizes"]
    ext = ev["models"]["ResNet6-CBAM"]["external"]
    assert sum(map(sum, ext["lesion"]["four_class"]["confusion"])) == sizes["external_lesions"]
    assert sum(map(sum, ext["patient"]["four_class"]["confusion"])) == sizes["external_patients"]
    assert sum(sizes["patients_per_origin_development"].values()) == sizes["development_patients"]
    assert len(ev["picks"]["nested choice"]["folds"]) == 2 and ev["picks"]["nested choice"]["external"]
    assert "all five" in ev["ablation"] and set(ev["adc_rule"]) == {"development", "external"}
    assert doc["networks"]["ResNet6-CBAM"]["epochs"] == 2 and doc["config"]["folds"] == 2


@pytest.mark.slow
def test_the_printout_names_the_gpu_note_the_counts_and_both_confusions(run) -> None:
    _, _, text = run
    assert "need a GPU" in text and "load average" in text
    assert "lesions /" in text and "patients" in text
    assert "external, patient level (rows true" in text and "external, lesion level (rows true" in text
    assert "Sequence ablation, external" in text and "ADC-ratio rule" in text


@pytest.mark.slow
def test_crops_are_cut_once_and_read_back_from_the_cache_of_their_settings(run) -> None:
    cohort, _, _ = run
    args = bench.parse(["--data", str(cohort), "--quick"])
    items, origins, _, hit = bench.read_crops(args)
    assert hit and len(items) == len(origins) and set(origins) <= set(ORIGINS)
    assert items[0].crop.image.shape == (len(bench.CROP_SEQUENCES), 16, 16, 16) and items[0].crop.oedema is not None
    other = bench.parse(["--data", str(cohort), "--quick", "--crop-voxels", "12"])
    items12, _, _, hit12 = bench.read_crops(other)
    assert not hit12 and items12[0].crop.image.shape[1:] == (12, 12, 12)
    assert len(list(cohort.glob(".bench-crops-*.pkl"))) == 2


@pytest.mark.slow
def test_gradcam_on_the_external_lesions_per_node_with_chance_beside(run) -> None:
    _, doc, text = run
    res = doc["gradcam_external"]["ResNet6-CBAM"]
    assert res["lesions"] == doc["evaluation"]["sizes"]["external_lesions"] and "patient bootstrap" in res["averaged_over"]
    assert set(res["nodes"]) == set(NODES)
    for node, by in res["nodes"].items():
        for metric in ("energy_in_lesion", "energy_in_oedema", "pointing_game"):
            _in_range(by[metric], f"{node} {metric}")
        drop = by["energy_drop_randomised"]
        assert drop["value"] is None or -1.0 <= drop["low"] <= drop["value"] <= drop["high"] <= 1.0
        assert 0.0 < by["chance_lesion"] < 1.0 and 0.0 <= by["chance_oedema"] < 1.0
    assert "energy in lesion" in text and "chance" in text


@pytest.mark.slow
def test_timings_beside_monai_on_the_same_network_give_the_same_maps(run) -> None:
    _, doc, text = run
    timed = doc["gradcam_timing"]
    assert set(timed) == {"lesion crop", "whole brain"}
    assert timed["lesion crop"]["targets"] == [0, 1, 2] and timed["whole brain"]["shape"] == [64, 64, 64]
    assert timed["whole brain"]["stem_stride"] == 2  # He et al.'s stem (MetastasisNet.stem_stride)
    for t in timed.values():
        assert len(t["ours_times"]) == len(t["monai_times"]) == CAM_REPEATS
        assert t["ours_s"] > 0 and t["monai_s"] > 0 and t["ratio"] == pytest.approx(t["ours_s"] / t["monai_s"])
        assert t["ours_peak_gib"] >= 0 and t["monai_peak_gib"] >= 0
        assert min(t["map_correlation"]) > 0.999 and t["max_abs_difference_over_max"] < 1e-3
    assert "ours/MONAI" in text


@pytest.mark.slow
def test_the_first_network_is_saved_with_its_external_figures(run, tmp_path_factory) -> None:
    from napari_neuroreview.core.tasks.metastasis.model import load_origin_model

    cohort, doc, _ = run
    saved = doc["saved_model"]
    assert saved["version"] == "0.0.1"
    loaded = load_origin_model("0.0.1", device="cpu", roots=[Path(saved["root"])])
    card = loaded.card
    ext = doc["evaluation"]["models"]["ResNet6-CBAM"]["external"]
    assert card.metrics["external_lesion_auc_macro"] == pytest.approx(
        ext["lesion"]["four_class"]["metrics"]["auc_macro"]["value"])
    assert "external_patient_auc_macro_low" in card.metrics
    assert cohort.name in card.training_data and "external site C" in card.training_data
    assert card.config["epochs"] == 2 and loaded.crop.shape == 16


def test_the_cascades_end_is_the_one_step_randomisation() -> None:
    """The benchmark reports the cascade's last map computed with mode='full': the same weights, the same map."""
    import numpy as np
    import torch

    from napari_neuroreview.core.explain import randomisation_check
    from napari_neuroreview.core.models.metastasis_net import MetastasisNet

    torch.manual_seed(0)
    net = MetastasisNet(2, "resnet6", "cbam", 8).eval()
    x = torch.randn(1, 2, 12, 12, 12)
    mask = np.zeros((12, 12, 12), bool)
    mask[4:8, 4:8, 4:8] = True
    cascade = randomisation_check(net, x, net.cam_layer, mask, target=1, mode="cascade", seed=3)
    full = randomisation_check(net, x, net.cam_layer, mask, target=1, mode="full", seed=3)
    assert len(cascade.steps) > 5 and len(full.steps) == 1
    assert full.energy_after == pytest.approx(cascade.energy_after, nan_ok=True)
    assert full.spearman == pytest.approx(cascade.spearman, nan_ok=True)


def test_a_json_inside_the_cohort_or_a_taken_version_is_one_sentence_before_any_training(tmp_path, capsys,
                                                                                        monkeypatch) -> None:
    """Each refusal comes before the cohort is read: a folder with only its labels file is enough to show it."""
    import torch

    from napari_neuroreview.core.registry import SHIPPED_WEIGHTS_ROOT, ModelCard, save_model
    from napari_neuroreview.core.tasks.metastasis.model import MODEL_NAME, TASK

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # the user's registry is one of the roots read
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "labels.tsv").write_text("patient\tsite\n")
    registry = tmp_path / "registry"
    save_model({"w": torch.zeros(1)}, ModelCard(name=MODEL_NAME, version="0.0.1", task=TASK), registry)
    assert bench.main(["--data", str(cohort), "--quick", "--json", str(cohort / "met.json")]) == 2
    assert "met.json" in capsys.readouterr().err and not (cohort / "met.json").exists()
    assert bench.main(["--data", str(cohort), "--quick", "--save-model", str(registry), "--version", "0.0.1"]) == 2
    err = capsys.readouterr().err
    assert "0.0.1" in err and "already exists" in err and len(err.strip().splitlines()) == 1
    assert bench.main(["--data", str(cohort), "--quick", "--version", "0.0.2"]) == 2
    assert "--save-model" in capsys.readouterr().err
    assert bench.main(["--data", str(cohort), "--quick", "--save-model", str(SHIPPED_WEIGHTS_ROOT)]) == 2
    err = capsys.readouterr().err
    assert "shipped weights" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in cohort.iterdir()) == ["labels.tsv"]  # nothing cut, rendered or written


def test_gradcam_timing_setups_give_the_same_maps_as_monai(tmp_path, monkeypatch) -> None:
    """``time_gradcam`` as ``explain_and_time`` calls it (a fitted crop network with its input, a random
    whole-brain ResNet18 with the stride-2 stem), each worker run in this process instead of a fresh
    interpreter: the fields the JSON holds, and ours equal to MONAI's raw maps."""
    import numpy as np
    import torch

    import _metastasis_cam as cam
    from _common import clean_json

    from napari_neuroreview.core.models.metastasis_net import MetastasisNet

    def in_process(script, spec, workdir, name):  # start_worker's JSON spec, timing_worker's answer
        return cam.timing_worker(json.loads(json.dumps(clean_json(spec))))

    monkeypatch.setattr(cam, "run_worker", in_process)
    torch.manual_seed(0)
    crop_net = MetastasisNet(2, "resnet6", "cbam", 8)
    setups = {"lesion crop": {"arch": "resnet6", "attention": "cbam", "width": 8, "in_channels": 2, "seed": 0,
                              "shape": [12] * 3, "targets": [0, 1, 2], "state": crop_net.state_dict(),
                              "array": np.random.default_rng(0).normal(size=(1, 2, 12, 12, 12)).astype(np.float32)},
              "whole brain": {"arch": "resnet18", "attention": "cbam", "width": 8, "in_channels": 5,
                              "stem_stride": 2, "seed": 0, "shape": [64] * 3, "targets": [0]}}
    timed = cam.time_gradcam(BENCH / "metastasis.py", setups, repeats=2, threads=1)
    assert set(timed) == {"lesion crop", "whole brain"}
    assert timed["lesion crop"]["targets"] == [0, 1, 2] and timed["whole brain"]["stem_stride"] == 2
    assert "state" not in timed["lesion crop"] and "array" not in timed["lesion crop"]
    for t in timed.values():
        assert len(t["ours_times"]) == len(t["monai_times"]) == 2
        assert t["ours_s"] > 0 and t["monai_s"] > 0 and t["ratio"] == pytest.approx(t["ours_s"] / t["monai_s"])
        assert len(t["map_correlation"]) == len(t["targets"])
        assert min(t["map_correlation"]) > 0.999 and t["max_abs_difference_over_max"] < 1e-3
    assert "ours/MONAI" in cam.timing_table(timed)


def test_the_crop_cache_follows_the_cohorts_files_and_the_reading_code(tmp_path) -> None:
    """A re-rendered patient (same labels.tsv) or changed crop code is cut again; the caches themselves do not count."""
    from _common import cohort_fingerprint

    (tmp_path / "patient-0000").mkdir()
    (tmp_path / "labels.tsv").write_text("patient\tsite\n")
    scan = tmp_path / "patient-0000" / "ce_t1.nii.gz"
    scan.write_bytes(b"x" * 10)
    before = cohort_fingerprint(tmp_path, bench.CROP_MODULES)
    (tmp_path / ".bench-crops-1.pkl").write_bytes(b"cache")
    assert cohort_fingerprint(tmp_path, bench.CROP_MODULES) == before
    assert cohort_fingerprint(tmp_path, bench.CROP_MODULES[:1]) != before
    scan.write_bytes(b"y" * 11)  # the same patient rendered again at another voxel size
    assert cohort_fingerprint(tmp_path, bench.CROP_MODULES) != before


@pytest.mark.slow
def test_the_cli_evaluate_is_the_benchmarks_evaluation(run, tmp_path, capsys) -> None:
    """`neuroreview metastasis evaluate` on the benchmark's cohort, same crops and folds: the same radiomics figures."""
    from napari_neuroreview.cli import main

    cohort, doc, _ = run
    out = tmp_path / "eval.json"
    assert main(["metastasis", "evaluate", "--data", str(cohort), "--json", str(out), "--folds", "2",
                 "--inner-folds", "2", "--boot", BOOT, "--crop-mm", "48", "--crop-voxels", "16", "--quiet"]) == 0
    printed = capsys.readouterr().out
    mine = json.loads(out.read_text())
    assert mine["cohort"] == cohort.name and mine["network"] is None
    ev, bench_ev = mine["evaluation"], doc["evaluation"]
    assert set(ev["models"]) == {"radiomics logistic", "nested choice"}
    for name in ev["models"]:
        assert ev["models"][name] == bench_ev["models"][name], name
    assert ev["ablation"] == bench_ev["ablation"] and ev["sizes"] == bench_ev["sizes"]
    assert "radiomics logistic" in printed
    assert main(["metastasis", "evaluate", "--data", str(cohort), "--json", str(cohort / "x.json")]) == 2
    assert not (cohort / "x.json").exists()
