"""core.explain: Grad-CAM on a toy 3D classifier that can only see a planted blob.

The toy: 16^3 volumes of Gaussian noise; class 1 has a bright 4^3 blob at a fixed place.
A small CNN trained for 40 steps separates them perfectly, so a faithful map must put
its energy on the blob (1.6 % of the volume) and must lose it when the weights are
re-initialised (Adebayo et al. 2018). A uniform map scores the blob's volume share and
fails every localisation assertion here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_neuroreview.core.errors import GeometryError
from napari_neuroreview.core.explain import (
    energy_in_mask,
    grad_cam,
    grad_cams,
    layer_hooks,
    normalise,
    pointing_game,
    randomisable_layers,
    randomisation_check,
    spearman,
    tsne_coordinates,
    tsne_perplexity,
)

SIZE = 16
BLOB = (slice(3, 7), slice(9, 13), slice(4, 8))
LAYER = "2"  # the second convolution (8^3 feature grid): the map must be upsampled

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blob_mask(shape: tuple[int, ...] = (SIZE,) * 3) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[BLOB] = True
    return mask


def _batch(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 1, SIZE, SIZE, SIZE, generator=gen) * 0.5
    y = torch.randint(0, 2, (n,), generator=gen)
    x[y == 1, 0, BLOB[0], BLOB[1], BLOB[2]] += 3.0
    return x, y


def _toy_model(inplace: bool = True) -> nn.Module:
    # In-place ReLU after the explained layer: the hooks must still see the conv's output.
    return nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(inplace=inplace),
        nn.Conv3d(8, 8, 3, stride=2, padding=1), nn.ReLU(inplace=inplace),
        nn.AdaptiveMaxPool3d(1), nn.Flatten(), nn.Linear(8, 2),
    )


@pytest.fixture(scope="module")
def toy(one_torch_thread: None) -> tuple[nn.Module, torch.Tensor, float]:
    """(trained model in eval mode, one blob volume (1, 1, 16, 16, 16), held-out accuracy)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = _toy_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        x, y = _batch(gen, 16)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    xt, yt = _batch(gen, 64)
    with torch.no_grad():
        accuracy = float((model(xt).argmax(1) == yt).float().mean())
    x = torch.randn(1, 1, SIZE, SIZE, SIZE, generator=gen) * 0.5
    x[0, 0][BLOB] += 3.0
    model.zero_grad(set_to_none=True)
    return model, x, accuracy


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
               and not m._backward_pre_hooks for m in model.modules())


def test_toy_model_learned_the_blob(toy: tuple[nn.Module, torch.Tensor, float]) -> None:
    assert toy[2] >= 0.95  # otherwise the localisation tests below test nothing


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_map_energy_lies_in_the_blob_and_points_at_it(toy, method: str) -> None:
    model, x, _ = toy
    cam = grad_cam(model, x, LAYER, target=1, method=method)
    mask = _blob_mask()
    share = float(mask.mean())  # 0.0156: what a uniform map scores
    energy = energy_in_mask(cam.raw[0], mask)
    assert energy > 0.25 > 10 * share, (energy, share)
    assert pointing_game(cam.raw[0], mask)
    assert pointing_game(cam.normalised[0], mask)


def test_a_uniform_map_fails_the_localisation_checks() -> None:
    mask = _blob_mask()
    uniform = np.ones(mask.shape)
    assert energy_in_mask(uniform, mask) == pytest.approx(mask.mean())
    assert energy_in_mask(uniform, mask) < 0.25
    assert not pointing_game(uniform, mask, tolerance=3)
    assert np.isnan(energy_in_mask(np.zeros(mask.shape), mask))


@pytest.mark.parametrize("mode", ["full", "cascade"])
def test_weight_randomisation_moves_the_energy_out_of_the_blob(toy, mode: str) -> None:
    model, x, _ = toy
    state = {k: v.clone() for k, v in model.state_dict().items()}
    check = randomisation_check(model, x, LAYER, _blob_mask(), target=1, mode=mode, seed=0)
    assert check.energy_before > 0.25
    assert check.pointing_before
    assert check.energy_after < 0.5 * check.energy_before, check
    assert check.spearman < 0.5, check
    layers = randomisable_layers(model)
    assert layers == ["0", "2", "6"]
    if mode == "cascade":  # from the output layer down, cumulative
        assert [s.layers for s in check.steps] == [("6",), ("6", "2"), ("6", "2", "0")]
    else:
        assert [s.layers for s in check.steps] == [("6", "2", "0")]
    # the caller's model is untouched (the check works on a copy)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    again = randomisation_check(model, x, LAYER, _blob_mask(), target=1, mode=mode, seed=0)
    assert repr(again) == repr(check)  # seeded (repr: NaN != NaN in ==)


def test_map_is_on_the_input_grid_and_hooks_are_removed() -> None:
    torch.manual_seed(1)
    model = _toy_model().eval()
    x = torch.randn(2, 1, 13, 16, 11)  # odd, non-cubic: the layer grid is 7 x 8 x 6
    cam = grad_cam(model, x, LAYER, target=0)
    assert cam.raw.shape == cam.normalised.shape == (2, 13, 16, 11)
    assert cam.feature_map.shape == (2, 7, 8, 6)
    assert cam.raw.dtype == np.float32 and (cam.raw >= 0).all()
    assert _no_hooks(model)
    assert all(p.grad is None for p in model.parameters())  # model gradients untouched
    for raw, m in zip(cam.raw, cam.normalised):
        assert m.min() >= 0.0 and m.max() <= 1.0
        if raw.max() > raw.min():
            assert m.max() == pytest.approx(1.0) and np.argmax(m) == np.argmax(raw)


def test_hooks_are_removed_when_the_forward_pass_fails() -> None:
    model = _toy_model()

    def bad_score(output: torch.Tensor, target: int) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        grad_cam(model, torch.randn(1, 1, 8, 8, 8), LAYER, score=bad_score)
    assert _no_hooks(model)
    with layer_hooks(model, LAYER) as captured:
        assert model[2]._forward_hooks
        model(torch.randn(1, 1, 8, 8, 8))
    assert captured.activations is not None and captured.activations.shape == (1, 8, 4, 4, 4)
    assert _no_hooks(model)
    with pytest.raises(KeyError, match="no layer 'nope'"):
        grad_cam(model, torch.randn(1, 1, 8, 8, 8), "nope")


def test_constant_map_normalises_to_zeros_not_nan() -> None:
    for value in (0.0, 5.0):
        out = normalise(np.full((4, 5, 6), value))
        assert out.shape == (4, 5, 6) and not np.isnan(out).any() and (out == 0).all()
    out = normalise(np.array([[1.0, 3.0], [2.0, 5.0]]))
    np.testing.assert_allclose(out, [[0.0, 0.5], [0.25, 1.0]])  # not inverted (MONAI's default is)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_raw_map_equals_monai_without_its_normaliser(method: str) -> None:
    visualize = pytest.importorskip("monai.visualize")
    torch.manual_seed(2)
    model = _toy_model(inplace=False).eval()  # MONAI's module backward hook forbids in-place ReLU
    x = torch.randn(1, 1, 9, 10, 11)
    ours = grad_cam(model, x, LAYER, target=1, method=method)
    cls = visualize.GradCAM if method == "gradcam" else visualize.GradCAMpp
    theirs = cls(nn_module=model, target_layers=LAYER, postprocessing=lambda t: t)(x, class_idx=1)
    theirs = theirs.detach().numpy()[:, 0]
    if method == "gradcam++":  # MONAI keeps the positive factor exp(S) we drop (see gradcam.py)
        theirs = theirs / np.exp(ours.scores.astype(np.float64))[:, None, None, None]
    assert ours.raw.max() > 0
    np.testing.assert_allclose(ours.raw, theirs, rtol=1e-4, atol=1e-6 * float(ours.raw.max()))


def test_pointing_game_tolerance_and_mask_grid() -> None:
    mask = _blob_mask()
    cam = np.zeros(mask.shape)
    cam[8, 10, 5] = 1.0  # one voxel past the blob's face at x = 6 (distance 2)
    assert not pointing_game(cam, mask)
    assert not pointing_game(cam, mask, tolerance=1.5)
    assert pointing_game(cam, mask, tolerance=2)
    with pytest.raises(GeometryError, match="same voxel grid"):
        energy_in_mask(cam, mask[:-1])
    with pytest.raises(ValueError, match="negative"):
        energy_in_mask(-cam, mask)
    assert spearman(cam, cam) == pytest.approx(1.0)
    assert np.isnan(spearman(cam, np.zeros_like(cam)))


def test_tsne_perplexity_is_clipped_and_the_picture_seeded() -> None:
    assert tsne_perplexity(1000) == 30.0
    assert tsne_perplexity(31) == 10.0
    assert tsne_perplexity(5) == 2.0
    assert tsne_perplexity(2) == 1.0  # below the number of points, as scikit-learn requires
    with pytest.raises(ValueError):
        tsne_perplexity(1)
    rows = np.random.default_rng(0).normal(size=(12, 6))
    xy = tsne_coordinates(rows, seed=3)
    assert xy.shape == (12, 2)
    np.testing.assert_array_equal(xy, tsne_coordinates(rows, seed=3))
    assert tsne_coordinates(rows[:3], seed=0).shape == (3, 2)


def test_backward_stops_at_the_layer_and_equals_the_full_backward() -> None:
    """Differentiating down to the layer only gives the gradients of a backward pass to the input,
    also when an in-place ReLU rewrites the layer's output (then it falls back to the input)."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, SIZE, SIZE, SIZE)
    for inplace in (False, True):
        model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 6, 3, stride=2, padding=1),
                              nn.ReLU(inplace=inplace), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(6, 2)).eval()
        below: list[int] = []  # the first convolution's backward: skipped unless the fallback is taken
        hook = model[0].register_full_backward_hook(lambda *_: below.append(1))
        got = grad_cam(model, x, "2", target=1)
        hook.remove()
        assert bool(below) == inplace
        # the reference: the same hooks, gradients from a backward pass down to the input
        inp = x.clone().requires_grad_(True)
        with layer_hooks(model, "2") as captured:
            torch.autograd.grad(model(inp)[:, 1].sum(), inp)
        weights = captured.gradients.mean(dim=(2, 3, 4), keepdim=True)
        ref = torch.relu((weights * captured.activations).sum(1))
        np.testing.assert_allclose(got.feature_map, ref.numpy(), rtol=1e-5, atol=1e-7)


def test_several_targets_from_one_forward_pass_equal_one_call_each() -> None:
    """grad_cams: one forward pass for every target (counted), each map that target's grad_cam."""
    torch.manual_seed(1)
    x = torch.randn(2, 1, SIZE, SIZE, SIZE)
    for inplace in (False, True):  # the layer-only backward and the fallback to the input
        model = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 6, 3, stride=2, padding=1),
                              nn.ReLU(inplace=inplace), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
        forwards: list[int] = []
        hook = model[0].register_forward_hook(lambda *_: forwards.append(1))
        many = grad_cams(model, x, "2", (0, 2, 1), method="gradcam++")
        hook.remove()
        assert len(forwards) == 1 and [r.target for r in many] == [0, 2, 1]
        for got in many:
            one = grad_cam(model, x, "2", target=got.target, method="gradcam++")
            np.testing.assert_allclose(got.raw, one.raw, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(got.scores, one.scores)
        assert not np.allclose(many[0].raw, many[1].raw)  # a map per target, not one map thrice
        assert _no_hooks(model)
