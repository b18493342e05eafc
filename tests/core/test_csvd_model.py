"""The saved subtype model: a round trip gives the same probabilities, a bad card is one sentence,
`csvd train` writes a version with its external figures, and the shipped 1.0.0 classifies drawn patients."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.anatomy.mars import region_points
from napari_neuroreview.core.errors import RegistryError
from napari_neuroreview.core.phantoms.csvd import csvd_patients
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.registry import SHIPPED_WEIGHTS_ROOT, read_card, save_model
from napari_neuroreview.core.tasks.csvd.bags import build_bag, make_sites
from napari_neuroreview.core.tasks.csvd.baselines import SUBTYPES
from napari_neuroreview.core.tasks.csvd.evaluate import items_from_patients
from napari_neuroreview.core.tasks.csvd.model import MODEL_NAME, FeatureLayout, load_subtype_model, save_subtype_model
from napari_neuroreview.core.tasks.csvd.train import MILConfig, MILEstimator

#: Drawn patients of these seeds are used by no training run (csvd train: 0, 1; the benchmark: 411000, 412000).
TEST_DEV_SEED, TEST_EXT_SEED = 413_000, 414_000


@pytest.fixture(scope="module")
def fitted() -> tuple[MILEstimator, list]:
    """A small location-only attention MIL fitted on 60 drawn patients (a few seconds)."""
    items, labels, _ = items_from_patients(csvd_patients(60, TEST_DEV_SEED, centres=("A", "B")))
    est = MILEstimator(MILConfig(patch_embedding=False, epochs=3), "cpu")
    run_to_completion(est.fit([i.bag for i in items], np.array([SUBTYPES.index(c) for c in labels])))
    return est, [i.bag for i in items]


def test_save_load_round_trip_gives_identical_probabilities(fitted, tmp_path) -> None:
    est, bags = fitted
    card = save_subtype_model(est, FeatureLayout(), tmp_path, "2.0.0", "60 drawn patients", {"external_accuracy": 0.5})
    assert card.config["classes"] == list(SUBTYPES) and card.config["features"] == {"layout": "location"}
    assert card.config["in_features"] == est.net.in_features and card.config["patch_embedding"] is False
    loaded = load_subtype_model("2.0.0", device="cpu", roots=[tmp_path])
    assert loaded.model == {"name": MODEL_NAME, "version": "2.0.0"} and loaded.features == FeatureLayout()
    np.testing.assert_array_equal(loaded.estimator.predict_proba(bags), est.predict_proba(bags))
    for a, b in zip(loaded.estimator.attention(bags), est.attention(bags)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change, word", [
    ({"embed": 100_000}, "embed=100000"),
    ({"classes": ["CAA", "aSVD", "CADASIL"]}, "classes"),
    ({"patch_embedding": True}, "patch_embedding=true"),
    ({"in_features": 40}, "in_features=40"),
    ({"features": {"layout": "patch", "embedding_width": 32}}, "patch layout without"),
    ({"pooling": "max"}, "pooling 'max'"),
])
def test_a_card_with_a_bad_config_is_refused_in_one_sentence(fitted, tmp_path, change, word) -> None:
    est, _ = fitted
    good = save_subtype_model(est, FeatureLayout(), tmp_path / "good", "1.0.0", "drawn")
    bad = dataclasses.replace(good, version="1.1.0", config={**good.config, **change}, weights_sha256="",
                              card_sha256="")
    save_model(est.state_dict(), bad, tmp_path / "good")
    with pytest.raises(RegistryError) as info:
        load_subtype_model("1.1.0", device="cpu", roots=[tmp_path / "good"])
    message = str(info.value)
    assert word in message and "\n" not in message and message.count(". ") == 0, message


def test_save_refuses_a_layout_the_estimator_does_not_fit(fitted, tmp_path) -> None:
    est, _ = fitted
    with pytest.raises(ValueError):
        save_subtype_model(est, FeatureLayout("patch", 32, {"name": "cmb-detector", "version": "1.0.0"}),
                           tmp_path, "1.0.0", "drawn")


def test_csvd_train_writes_a_version_with_its_external_figures(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "reg"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["csvd", "train", "--out", str(root), "--patients", "40", "--external", "30", "--epochs", "2",
                     "--boot", "100", "--device", "cpu", "--quiet", "--version", "3.0.0"])
    assert code == 0
    summary = json.loads(out.getvalue())
    card = read_card(root / MODEL_NAME / "3.0.0")
    assert summary["version"] == "3.0.0" and summary["made_default"] is False  # the shipped 1.0.0 stays
    assert "drawn phantom patients, oracle locations" in card.training_data
    keys = {"external_auc_weighted", "external_accuracy", "external_precision_weighted", "external_f1_weighted",
            "external_auc_macro", "external_balanced_accuracy", *(f"external_auc[{c}]" for c in SUBTYPES)}
    assert keys <= set(card.metrics) and set(card.config["external_ci"]) == keys
    assert card.config["n_train_patients"] == 40 and card.config["n_external_patients"] == 30
    assert card.config["train_seed"] == 0 and card.config["external_seed"] == 1
    assert load_subtype_model("3.0.0", device="cpu", roots=[root]).card.version == "3.0.0"


def test_csvd_train_refuses_an_installed_version_before_training(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert main(["csvd", "train", "--out", str(tmp_path / "reg"), "--version", "1.0.0", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err
    assert not (tmp_path / "reg" / MODEL_NAME).exists()


def _bag(points: np.ndarray) -> object:
    sites = make_sites(list(range(1, len(points) + 1)), points, points, np.full(len(points), 4.0))
    return build_bag("p", sites)


def test_the_shipped_version_classifies_drawn_external_patients() -> None:
    model = load_subtype_model("1.0.0", device="cpu", roots=[SHIPPED_WEIGHTS_ROOT])
    assert "drawn phantom patients, oracle locations" in model.card.training_data
    assert model.features == FeatureLayout() and model.card.metrics["external_accuracy"] > 0.6
    items, labels, _ = items_from_patients(csvd_patients(60, TEST_EXT_SEED, centres=("C",)))
    proba = model.estimator.predict_proba([i.bag for i in items])
    accuracy = float(np.mean(np.array(SUBTYPES)[proba.argmax(1)] == np.array(labels)))
    assert accuracy > 0.6, accuracy  # chance is about 0.33-0.45 on centre C's mix
    # Eight strictly lobar juxtacortical microbleeds (temporal and occipital): the textbook CAA pattern;
    # eight in the basal ganglia and thalami: arteriolosclerosis.
    rng = np.random.default_rng(0)
    lobar = np.concatenate([region_points(r, juxtacortical=True) for r in ("temporal", "occipital")])
    deep = np.concatenate([region_points(r) for r in ("basal_ganglia", "thalamus")])
    calls = model.estimator.predict_proba([_bag(lobar[rng.choice(len(lobar), 8, replace=False)]),
                                           _bag(deep[rng.choice(len(deep), 8, replace=False)])]).argmax(1)
    assert [SUBTYPES[k] for k in calls] == ["CAA", "aSVD"]
