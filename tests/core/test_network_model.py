"""The two-stage pre/post network model: encoders, features, losses, training, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from prepost_synthetic import synthetic_scans, tiny_context

from napari_neuroreview.core.errors import RegistryError
from napari_neuroreview.core.models.network_encoder import TC_LENGTH, NetworkPairEncoder
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.networks import features as F
from napari_neuroreview.core.tasks.networks import model as M
from napari_neuroreview.core.tasks.networks import train as T
from napari_neuroreview.core.train import losses as L

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def planted_rows() -> F.NetworkRows:
    return F.build_rows(synthetic_scans(10, effect=1.0, seed=3), tiny_context())


def test_encoder_shapes_unit_norm_and_size():
    net = NetworkPairEncoder()
    assert sum(p.numel() for p in net.parameters()) < 250_000
    for shape in [(13, 16, 14), (26, 32, 27)]:
        maps = torch.randn(3, *shape)
        z_map, z_tc = net.eval()(maps, torch.randn(3, TC_LENGTH), torch.tensor([0, 2, 4]))
        assert z_map.shape == z_tc.shape == (3, 32)
        assert torch.allclose(z_map.norm(dim=1), torch.ones(3), atol=1e-5)
        assert torch.allclose(z_tc.norm(dim=1), torch.ones(3), atol=1e-5)
    # the network id is an input: the same map as two networks embeds differently
    same = torch.randn(1, 13, 16, 14).repeat(2, 1, 1, 1)
    z = net.embed_maps(same, torch.tensor([0, 1]))
    assert float((z[0] - z[1]).abs().max().detach()) > 1e-3
    assert NetworkPairEncoder(**net.config()).config() == net.config()


def test_map_features_are_scale_free_and_see_laterality():
    ctx = tiny_context()
    rng = np.random.default_rng(0)
    base = ctx.templates[0] * 3 + rng.normal(0, 0.1, ctx.shape)
    z1, z2 = F.normalise_map(base, ctx.mask), F.normalise_map(base * 7.5, ctx.mask)
    np.testing.assert_allclose(z1, z2, rtol=1e-5, atol=1e-6)
    assert np.all(z1[~ctx.mask] == 0)
    x_world = (np.argwhere(np.ones(ctx.shape)) @ ctx.affine[:3, :3].T + ctx.affine[:3, 3])[:, 0].reshape(ctx.shape)
    left = F.normalise_map(np.where(x_world < 0, base, 0.1 * base), ctx.mask)
    right = F.normalise_map(np.where(x_world > 0, base, 0.1 * base), ctx.mask)
    lat = list(F.MAP_FEATURES).index("map_laterality")
    corr = list(F.MAP_FEATURES).index("map_corr")
    f_left, f_right = (F.map_features(m, ctx.templates[0], ctx) for m in (left, right))
    assert f_left[lat] > 0.5 and f_right[lat] < -0.5
    assert F.map_features(z1, ctx.templates[0], ctx)[corr] > 0.8
    assert F.map_features(z1, ctx.templates[1], ctx)[corr] < 0.3


def test_timecourse_resampling_windows_and_spectral_features():
    t = np.arange(300) * 1.0  # TR 1 s, 300 s
    slow = np.sin(2 * np.pi * 0.05 * t)  # slow-4
    fast = np.sin(2 * np.pi * 0.15 * t)
    r = F.resample_timecourse(slow, tr_s=1.0)
    assert r.size == 150 and abs(r.std() - 1) < 1e-5
    names = list(F.TC_FEATURES)
    f_slow, f_fast = F.timecourse_features(r), F.timecourse_features(F.resample_timecourse(fast, 1.0))
    assert f_slow[names.index("tc_slow4")] > 0.5 and f_fast[names.index("tc_slow3")] > 0.5
    assert f_slow[names.index("tc_ac1")] > f_fast[names.index("tc_ac1")]
    assert abs(f_fast[names.index("tc_peak_hz")] - 0.15) < 0.01
    w = F.timecourse_windows(r, 128, 4)
    assert w.shape == (4, 128)
    np.testing.assert_array_equal(w[0], r[:128])
    np.testing.assert_array_equal(w[-1], r[-128:])
    assert F.timecourse_windows(r[:50], 128, 1).shape == (1, 128)  # mirrored, not zero padded
    with pytest.raises(F.NetworkInputError):
        F.resample_timecourse(slow, tr_s=0)


def test_build_rows_checks_networks_and_grid():
    ctx = tiny_context()
    scans = synthetic_scans(2, seed=1)
    rows = F.build_rows(scans, ctx)
    assert len(rows) == 20 and rows.features.shape == (20, len(F.FEATURE_NAMES))
    assert rows.maps.shape == (20, *ctx.shape)
    assert list(rows.labels[:10]) == [0] * 5 + [1] * 5 and rows.groups[0] == "sub-000"
    assert np.isfinite(rows.features).all()
    broken = F.ScanInputs({k: v for k, v in scans[0].inputs.items() if k != "language"}, 2.0, source="a")
    with pytest.raises(F.NetworkInputError, match="language"):
        F.build_rows([broken], ctx)
    wrong = F.ScanInputs({k: (np.zeros((5, 5, 5)), tc) for k, (_, tc) in scans[0].inputs.items()}, 2.0, source="b")
    with pytest.raises(F.NetworkInputError, match="model grid"):
        F.build_rows([wrong], ctx)


def test_losses_reward_the_right_structure():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    shuffled = z[torch.randperm(16)]
    assert L.clip_loss(z, z, 0.1) < 0.5 * L.clip_loss(z, shuffled, 0.1)
    labels = torch.arange(16) % 4
    centres = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    clustered = torch.nn.functional.normalize(centres[labels] + 0.05 * torch.randn(16, 8), dim=1)
    assert L.supcon_loss(clustered, labels, 0.1) < L.supcon_loss(z, labels, 0.1)
    assert float(L.supcon_loss(z, torch.arange(16), 0.1)) == 0.0  # no positives anywhere


def test_stage1_loss_decreases_and_is_reproducible(planted_rows):
    config = T.Stage1Config(epochs=8, batch_size=50)
    enc, history = run_to_completion(T.train_stage1(planted_rows, config, "cpu"))
    assert history.train_loss[-1] < 0.75 * history.train_loss[0], history.train_loss
    enc2, history2 = run_to_completion(T.train_stage1(planted_rows, T.Stage1Config(epochs=8, batch_size=50), "cpu"))
    assert history2.train_loss == history.train_loss
    for (k, a), b in zip(enc.state_dict().items(), enc2.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="label"):
        unlabelled = planted_rows.subset(np.arange(5))
        unlabelled.labels[:] = -1
        run_to_completion(T.train_stage1(unlabelled, config, "cpu"))


def test_logistic_model_matches_sklearn_and_json_round_trip():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6)) * [1, 10, 0.1, 1, 1, 5]
    y = (X[:, 0] + 0.1 * X[:, 1] + rng.normal(0, 1, 60) > 0).astype(int)
    groups = np.repeat(np.arange(30), 2)
    head = T.fit_logistic(X, y, groups, T.Stage2Config())
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=head.C, solver="newton-cholesky")).fit(X, y)
    np.testing.assert_allclose(head.predict_proba(X), ref.predict_proba(X)[:, 1], rtol=1e-6, atol=1e-9)
    again = M.LogisticModel.from_json(json.loads(json.dumps(head.to_json())))
    np.testing.assert_array_equal(again.predict_proba(X), head.predict_proba(X))


def test_save_load_round_trip_predicts_identically(planted_rows, tmp_path):
    ctx = tiny_context()
    model, report = run_to_completion(T.train_prepost(
        planted_rows, T.Stage1Config(epochs=2, batch_size=50), device="cpu", context=ctx))
    assert set(model.heads) == set(ctx.networks) and len(report["train_loss"]) == 2
    scans = synthetic_scans(3, seed=11)
    before = model.predict_scans(scans)
    card = M.save_prepost_model(model, tmp_path, "1.0.0", training_data="tiny synthetic cohort",
                                metrics={"auc_motor": 0.5})
    assert (tmp_path / M.MODEL_NAME / "1.0.0" / "model.safetensors").is_file()
    assert card.config["grid"]["shape"] == list(ctx.shape) and "stage2" in card.config
    loaded = M.load_prepost_model(device="cpu", roots=[tmp_path])
    assert loaded.card.version == "1.0.0" and loaded.card.weights_sha256
    after = loaded.predict_scans(scans)
    assert after == before  # bit-identical probabilities
    ref, ref2 = model.reference, loaded.reference  # the t-SNE backdrop travels in the weight file
    assert ref["embeddings"].shape == (len(planted_rows), 64)
    np.testing.assert_allclose(ref2["embeddings"], ref["embeddings"], atol=1e-6)
    assert ref2["networks"] == ref["networks"] and ref2["states"] == ref["states"]
    assert ref2["states"][:10] == ["pre"] * 5 + ["post"] * 5
    single = loaded.predict(scans[0].inputs, tr_s=scans[0].tr_s)
    assert set(single) == set(ctx.networks)  # one scan alone: equal up to batch-size rounding
    np.testing.assert_allclose([single[k] for k in ctx.networks], [before[0][k] for k in ctx.networks], atol=1e-6)
    assert all(0.0 <= p <= 1.0 for p in single.values())
    with pytest.raises(RegistryError, match="already exists"):
        M.save_prepost_model(model, tmp_path, "1.0.0", training_data="x")
    with pytest.raises(RegistryError, match="not installed"):
        M.load_prepost_model("9.9.9", device="cpu", roots=[tmp_path])
    with pytest.raises(RegistryError, match="No rs-fMRI"):
        M.load_prepost_model(device="cpu", roots=[tmp_path / "empty"])


def test_compare_pre_post_checks_acquisitions(planted_rows):
    from napari_neuroreview.core.errors import InputFileError

    ctx = tiny_context()
    model, _ = run_to_completion(T.train_prepost(
        planted_rows, T.Stage1Config(epochs=1, batch_size=50), device="cpu", context=ctx))
    pre, post = synthetic_scans(1, seed=5)
    result = M.compare_pre_post(model, pre, post)
    assert set(result["networks"]) == set(ctx.networks) and result["n_volumes"] == pre.n_volumes
    cell = result["networks"]["motor"]
    assert cell["difference"] == pytest.approx(cell["p_post_post_scan"] - cell["p_post_pre_scan"])
    json.dumps(result, allow_nan=False)
    short = F.ScanInputs({k: (m, tc[:-10]) for k, (m, tc) in post.inputs.items()}, post.tr_s, source="post.nii.gz")
    with pytest.raises(InputFileError, match="volumes"):
        M.compare_pre_post(model, pre, short)
    faster = F.ScanInputs(post.inputs, 1.5, source="post.nii.gz")
    with pytest.raises(InputFileError, match="TR"):
        M.compare_pre_post(model, pre, faster)


def test_shipped_weights_load_and_predict():
    from napari_neuroreview.core.registry import DEMO_NOTE, SHIPPED_WEIGHTS_ROOT

    model = M.load_prepost_model(device="cpu", roots=[SHIPPED_WEIGHTS_ROOT])
    assert model.card.notes == DEMO_NOTE and "phantom" in model.card.training_data
    assert "cross-validation" in model.card.config["metrics_on"] and 0.5 < model.card.metrics["auc_mean"] <= 1
    assert model.context.shape == F.model_context().shape and model.networks == F.model_context().networks
    assert model.reference is not None and len(model.reference["states"]) == len(model.reference["embeddings"])
    scans = synthetic_scans(1, seed=4, n_volumes=150, context=F.model_context())
    p = model.predict_scans(scans)
    assert all(set(d) == set(model.networks) and all(0 <= v <= 1 for v in d.values()) for d in p)


def test_a_head_that_does_not_fit_the_encoder_is_a_registry_error(tmp_path):
    """A consistent card whose stage-2 head reads 3 inputs: one sentence on load, not a shape error at predict."""
    import json
    import shutil

    from napari_neuroreview.core.errors import RegistryError
    from napari_neuroreview.core.registry import SHIPPED_WEIGHTS_ROOT, card_digest

    folder = tmp_path / M.MODEL_NAME / "6.6.6"
    shutil.copytree(SHIPPED_WEIGHTS_ROOT / M.MODEL_NAME / "1.0.0", folder)
    data = json.loads((folder / "card.json").read_text())
    stage2 = dict(data["config"]["stage2"])
    stage2["motor"] = {"mean": [0.0] * 3, "scale": [1.0] * 3, "coef": [0.5] * 3, "intercept": 0.0}
    data.update(version="6.6.6", config={**data["config"], "stage2": stage2})
    data["card_sha256"] = card_digest(data)
    (folder / "card.json").write_text(json.dumps(data))
    with pytest.raises(RegistryError, match="stage-2 head 'motor' for 3 inputs"):
        M.load_prepost_model("6.6.6", device="cpu", roots=[tmp_path])
    assert M.load_prepost_model("1.0.0", device="cpu", roots=[SHIPPED_WEIGHTS_ROOT]).card.version == "1.0.0"
