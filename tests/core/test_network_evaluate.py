"""Cross-validation of the pre/post model: patient splits, no leaks, signal vs no signal; cohort loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prepost_synthetic import synthetic_scans, tiny_context

from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.networks import evaluate as E
from napari_neuroreview.core.tasks.networks import train as T
from napari_neuroreview.core.tasks.networks.features import build_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(**kw) -> E.EvaluationConfig:
    defaults = dict(folds=3, n_boot=100, tsne=False, stage1=T.Stage1Config(epochs=6, batch_size=64))
    return E.EvaluationConfig(**{**defaults, **kw})


def _mean_auc(result: E.EvaluationResult, method: str = "model") -> float:
    return float(np.mean([result.metrics[method][n]["auc"]["value"] for n in result.networks]))


@pytest.fixture(scope="module")
def null_rows():
    return build_rows(synthetic_scans(16, effect=0.0, seed=2), tiny_context())


def test_folds_split_by_patient(null_rows):
    folds = E.patient_folds(null_rows, 4, seed=1)
    seen_test = []
    for train, test in folds:
        assert not set(null_rows.groups[train]) & set(null_rows.groups[test])
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(null_rows)
        # both sessions (and all five networks) of each test patient are in the fold
        for patient in set(null_rows.groups[test]):
            assert (null_rows.groups[test] == patient).sum() == 10
        assert 0.3 < null_rows.labels[test].mean() < 0.7
        seen_test += sorted(set(null_rows.groups[test]))
    assert sorted(seen_test) == sorted(set(null_rows.groups))  # each patient tested exactly once
    with pytest.raises(ValueError, match="patients"):
        E.patient_folds(null_rows.subset(np.flatnonzero(np.isin(null_rows.groups, ["sub-000", "sub-001"]))), 3)


def test_label_using_stages_only_see_training_patients(null_rows, monkeypatch):
    calls: list[tuple[str, set]] = []
    real_stage1, real_logistic = T.train_stage1, T.fit_logistic

    def spy_stage1(rows, *args, **kwargs):
        calls.append(("stage1", set(rows.groups)))
        return real_stage1(rows, *args, **kwargs)

    def spy_logistic(X, y, groups, *args, **kwargs):
        calls.append(("logistic", set(groups)))
        return real_logistic(X, y, groups, *args, **kwargs)

    monkeypatch.setattr(T, "train_stage1", spy_stage1)
    monkeypatch.setattr(T, "fit_logistic", spy_logistic)
    config = _config(stage1=T.Stage1Config(epochs=1, batch_size=64), n_boot=10)
    result = run_to_completion(E.cross_validate(null_rows, config, "cpu"))
    per_fold = 1 + 2 * 5  # stage 1, then stage 2 and the baseline for each network
    assert len(calls) == config.folds * per_fold
    for f, record in enumerate(result.folds):
        test = set(record["test_patients"])
        for kind, groups in calls[f * per_fold:(f + 1) * per_fold]:
            assert groups and not groups & test, kind
            assert groups <= set(record["train_patients"]), kind
    rows_fold = np.asarray(result.rows["fold"])
    assert (rows_fold >= 0).all()  # every row was predicted exactly once, held out


def test_no_signal_gives_chance_and_a_leak_would_not(null_rows, monkeypatch):
    # Two inverse strengths, not five: C is still chosen by the inner patient CV (a leak there would
    # show), and the weakest penalty of the five stays in, the one a leak profits from most.
    config = _config(stage2=T.Stage2Config(Cs=(0.1, 1.0)))
    honest = run_to_completion(E.cross_validate(null_rows, config, "cpu"))
    assert 0.3 < _mean_auc(honest) < 0.7
    assert 0.3 < _mean_auc(honest, "baseline") < 0.7
    # the same run with the test patients also in training (a leaky CV) is far above chance,
    # so the bound above is one a leaking implementation would fail
    real = E.patient_folds
    monkeypatch.setattr(E, "patient_folds", lambda rows, k, seed=0: [
        (np.arange(len(rows)), test) for _, test in real(rows, k, seed)])
    leaky = run_to_completion(E.cross_validate(null_rows, config, "cpu"))
    assert _mean_auc(leaky) > 0.8


def test_planted_signal_is_found_with_cis_tsne_and_json(tmp_path):
    rows = build_rows(synthetic_scans(16, effect=1.0, seed=3), tiny_context())
    updates = []
    task = E.cross_validate(rows, _config(tsne=True), "cpu")
    result = run_to_completion(task, updates.append)
    assert _mean_auc(result) > 0.85 and _mean_auc(result, "baseline") > 0.85
    assert updates and updates[-1].step == updates[-1].total
    for method in E.METHODS:
        for name in result.networks:
            for metric in E.CI_METRICS:
                cell = result.metrics[method][name][metric]
                assert cell["low"] <= cell["value"] <= cell["high"], (method, name, metric)
            assert result.metrics[method][name]["n"]["value"] == 32
    assert result.embeddings.shape == (len(rows), 64) and result.tsne.shape == (len(rows), 2)
    png = E.save_tsne_png(result, tmp_path / "tsne.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert set(doc["metrics"]) == {"model", "baseline"} and len(doc["folds"]) == 3
    assert "motor" in result.table() and "baseline" in result.table()


def test_load_cohort_labels_from_folders_never_truth(tmp_path):
    from networks_synthetic import make_synthetic_bold, save_bold

    from napari_neuroreview.core.tasks.networks.assignment_io import write_ica_folder
    from napari_neuroreview.core.tasks.networks.cohort import load_cohort, load_scan
    from napari_neuroreview.core.tasks.networks.ica import run_ica
    from napari_neuroreview.core.tasks.networks.matching import match_networks

    for p, state in [(1, "pre"), (1, "post"), (2, "pre"), (2, "post")]:
        folder = tmp_path / "cohort" / f"sub-00{p}" / f"ses-{state}"
        folder.mkdir(parents=True)
        case = make_synthetic_bold(seed=10 * p + (state == "post"), n_volumes=60, noise=0.003)
        save_bold(case, folder / "bold.nii.gz")
        (folder / "truth.json").mkdir()  # any attempt to read the truth would fail
        (folder / "truth_maps.nii.gz").mkdir()
        if (p, state) == (1, "pre"):  # one session with its ICA done beforehand
            comps = run_to_completion(run_ica(case.bold, n_components=8))
            write_ica_folder(folder / "ica", comps, match_networks(comps), {"tr_s": 2.0})
    scans, warnings = run_to_completion(load_cohort(tmp_path / "cohort", n_components=8))
    assert [(s.patient, s.state, s.label) for s in scans] == [
        ("sub-001", "post", 1), ("sub-001", "pre", 0), ("sub-002", "post", 1), ("sub-002", "pre", 0)]
    assert all(s.tr_s == 2.0 and set(s.inputs) == set(tiny_context().networks) for s in scans)
    assert isinstance(warnings, list)
    single, _ = run_to_completion(load_scan(tmp_path / "cohort" / "sub-001" / "ses-pre" / "ica"))
    np.testing.assert_array_equal(single.inputs["motor"][0], scans[1].inputs["motor"][0])
    # the whole `networks train` path on this cohort: 2-fold CV metrics into the card, fit on all, save, load
    card, report = run_to_completion(T.train_on_cohort(
        tmp_path / "cohort", tmp_path / "registry", "0.1.0", stage1=T.Stage1Config(epochs=1, batch_size=20),
        cv_folds=2, device="cpu", n_boot=10))
    assert card.version == "0.1.0" and "auc_motor" in card.metrics and "baseline_auc_mean" in card.metrics
    assert "cross-validation" in card.config["metrics_on"] and card.config["n_train_patients"] == 2
    assert "2 patients" in card.training_data and report["seconds"]["final_training"] > 0
    from napari_neuroreview.core.tasks.networks.model import load_prepost_model

    loaded = load_prepost_model(device="cpu", roots=[tmp_path / "registry"])
    p = loaded.predict(scans[0].inputs, tr_s=scans[0].tr_s)
    assert set(p) == set(tiny_context().networks) and all(0 <= v <= 1 for v in p.values())
    assert loaded.reference["embeddings"].shape == (20, 64)
    bad = tmp_path / "cohort" / "sub-003" / "ses-followup"
    bad.mkdir(parents=True)
    (bad / "bold.nii.gz").write_bytes((tmp_path / "cohort" / "sub-001" / "ses-post" / "bold.nii.gz").read_bytes())
    with pytest.raises(InputFileError, match="ses-pre or ses-post"):
        run_to_completion(load_cohort(tmp_path / "cohort", n_components=8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no sub-"):
        run_to_completion(load_cohort(tmp_path / "empty"))


def test_cohort_json_is_read_strictly(tmp_path):
    """The demo flag comes from the phantom writer's cohort.json, read as strict JSON (NaN is not JSON)."""
    from napari_neuroreview.core.tasks.networks.cohort import is_simulated

    assert not is_simulated(tmp_path)
    (tmp_path / "cohort.json").write_text('{"seed": NaN}')
    assert not is_simulated(tmp_path)
    (tmp_path / "cohort.json").write_text('{"seed": 0}')
    assert is_simulated(tmp_path)
