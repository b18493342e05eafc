"""Metastasis origin networks (core.models.metastasis_net) and the hierarchical loss
(core.tasks.metastasis.loss): shapes for every backbone, attention and sequence count; masked
nodes get no loss and no gradient; a tiny synthetic task learnt through the one training loop;
Grad-CAM of the attention layer on the planted blob, and gone after weight randomisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from napari_neuroreview.core.explain import energy_in_mask, grad_cam, randomisation_check
from napari_neuroreview.core.models.metastasis_net import (
    ARCHS,
    ATTENTIONS,
    MetastasisNet,
    _StemConv3d,
    node_probabilities,
)
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.metastasis.classes import NODES, four_class, node_targets
from napari_neuroreview.core.tasks.metastasis.loss import hierarchical_loss
from napari_neuroreview.core.train.loop import LoopConfig, fit

SIDE = 24


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("channels", [1, 3, 5])
def test_three_node_logits_for_every_backbone_attention_and_sequence_count(arch, attention, channels):
    torch.manual_seed(0)
    net = MetastasisNet(channels, arch=arch, attention=attention, width=8).eval()
    x = torch.randn(2, channels, SIDE, SIDE, SIDE)
    with torch.no_grad():
        logits = net(x)
    assert logits.shape == (2, len(NODES))
    assert torch.isfinite(logits).all()
    layer = dict(net.named_modules())[net.cam_layer]
    assert layer is net.attention and (attention is None) == isinstance(layer, nn.Identity)
    p = node_probabilities(logits)
    assert p.shape == (2, 3) and np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(four_class(p).sum(1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_grad_cam_of_every_node_on_the_input_grid(arch, attention):
    """cam_layer is a tensor layer of the forward pass for every setting (an identity too)."""
    torch.manual_seed(0)
    net = MetastasisNet(3, arch=arch, attention=attention, width=8).eval()
    x = torch.randn(1, 3, SIDE, SIDE, SIDE)
    with torch.no_grad():
        features = net.backbone(x)
    for k in range(len(NODES)):
        cam = grad_cam(net, x, net.cam_layer, target=k)
        assert cam.raw.shape == cam.normalised.shape == (1, SIDE, SIDE, SIDE)
        assert cam.feature_map.shape == (1, *features.shape[2:])
        assert np.isfinite(cam.raw).all() and cam.raw.min() >= 0
    assert all(p.grad is None for p in net.parameters())  # grad_cam leaves training state alone


def test_resnet18_is_monais_with_the_attention_after_its_last_stage():
    net = MetastasisNet(2, arch="resnet18", attention="cbam", width=8)
    assert type(net.backbone.layer4[0]).__module__ == "monai.networks.nets.resnet"
    assert list(dict(net.backbone.named_children()))[-1] == "layer4"
    assert net.backbone.layer4[-1].conv2.out_channels == 64 == net.head.in_features


@pytest.mark.parametrize("arch", ARCHS)
def test_in_eval_mode_a_lesion_does_not_depend_on_its_batch(arch):
    torch.manual_seed(0)
    net = MetastasisNet(3, arch=arch, width=8).eval()
    x = torch.randn(3, 3, SIDE, SIDE, SIDE)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[1:2], net(x[1:2]), atol=1e-5, rtol=1e-4)


def test_bad_settings_are_a_callers_bug():
    with pytest.raises(ValueError, match="arch"):
        MetastasisNet(1, arch="resnet50")
    with pytest.raises(ValueError, match="attention"):
        MetastasisNet(1, attention="transformer")
    with pytest.raises(ValueError, match="width"):
        MetastasisNet(1, width=0)
    with pytest.raises(ValueError, match="stem_stride"):
        MetastasisNet(1, arch="resnet6", stem_stride=2)


def test_a_stride_two_stem_halves_every_grid_and_the_map_stays_on_the_input_grid():
    """The whole-brain ResNet18 (He et al.'s stem): 1/8 of the voxels in every stage, Grad-CAM still on the input."""
    side = 32
    x = torch.randn(1, 2, side, side, side)
    grids = {}
    for stride in (1, 2):
        torch.manual_seed(0)
        net = MetastasisNet(2, arch="resnet18", attention="cbam", width=8, stem_stride=stride).eval()
        assert net.backbone.conv1.stride == (stride,) * 3
        cam = grad_cam(net, x, net.cam_layer, target=0)
        assert cam.raw.shape == (1, side, side, side) and np.isfinite(cam.raw).all()
        grids[stride] = cam.feature_map.shape[1:]
    assert grids[1] == (2, 2, 2) and grids[2] == (1, 1, 1)  # MONAI's maxpool and three strided stages


@pytest.mark.parametrize("shape", [(1, 5, 64, 64, 64), (1, 3, 48, 48, 48), (1, 1, 40, 40, 40), (2, 2, 24, 24, 24)])
def test_stem_padding_is_the_same_convolution(shape):
    """The CPU channel padding (to leave PyTorch's slow path) changes no output and no gradient."""
    torch.manual_seed(0)
    conv = _StemConv3d(shape[1], 8, 3, padding=1, bias=True)
    x = torch.randn(*shape, requires_grad=True)
    out = conv(x)
    plain = nn.functional.conv3d(x, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, conv.weight), g)
    want = torch.autograd.grad(plain, (x, conv.weight), g)
    for a, b in zip(got, want):  # float32 sums over up to 64^3 voxels in another order
        torch.testing.assert_close(a, b, atol=1e-4 * float(b.abs().max()), rtol=1e-3)


def test_masked_nodes_change_neither_the_loss_nor_its_gradient():
    targets, mask = node_targets(["SCLC", "breast", "GI", "NSCLC"])
    targets, mask = torch.from_numpy(targets), torch.from_numpy(mask)
    assert not mask.all()
    torch.manual_seed(0)
    base = torch.randn(4, 3)

    def loss_and_grad(logits: torch.Tensor, t: torch.Tensor) -> tuple[float, torch.Tensor]:
        logits = logits.clone().requires_grad_(True)
        loss = hierarchical_loss(logits, t, mask)
        (grad,) = torch.autograd.grad(loss, logits)
        return float(loss.detach()), grad

    loss0, grad0 = loss_and_grad(base, targets)
    changed = torch.where(mask, base, torch.full_like(base, 50.0))  # masked logits far off
    flipped = torch.where(mask, targets, 1 - targets)  # and their targets flipped
    loss1, grad1 = loss_and_grad(changed, flipped)
    assert loss1 == pytest.approx(loss0, rel=1e-6)
    torch.testing.assert_close(grad1, grad0)
    assert torch.all(grad0[~mask] == 0) and torch.all(grad0[mask] != 0)
    # and it is the mean BCE over the counted pairs
    want = nn.functional.binary_cross_entropy_with_logits(base[mask], targets[mask])
    assert loss0 == pytest.approx(float(want), rel=1e-6)


def test_nothing_counted_is_zero_with_a_graph():
    logits = torch.randn(2, 3, requires_grad=True)
    loss = hierarchical_loss(logits, torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


# --- a tiny synthetic task (16^3): a bright ball in sequence 0 on the left means lung; a ball as
# bright in sequence 1 on the right, in every case, means nothing

TINY = 16
RADIUS = 3.5


def _ball(centre: np.ndarray, radius: float) -> np.ndarray:
    grid = np.indices((TINY,) * 3).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - centre, axis=-1) <= radius


def _case(rng: np.random.Generator, lung: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(2, 16^3) image, the discriminative ball's mask (empty when not lung) and the decoy's."""
    x = rng.normal(0.0, 0.3, (2, TINY, TINY, TINY)).astype(np.float32)
    left = np.array([rng.integers(4, 6), rng.integers(4, 12), rng.integers(4, 12)])
    right = np.array([rng.integers(11, 13), rng.integers(4, 12), rng.integers(4, 12)])
    blob, decoy = _ball(left, RADIUS), _ball(right, RADIUS)
    decoy &= ~blob
    x[1][decoy] += 2.0
    if lung:
        x[0][blob] += 2.0
    else:
        blob = np.zeros_like(blob)
    return x, blob, decoy


class _BlobTask:
    """The loop's Trainable: batches of 8 (half lung: SCLC; half not: GI), the hierarchical loss."""

    steps_per_epoch = 5

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def batches(self, epoch: int, generator: torch.Generator) -> Any:
        while True:
            origins = ["SCLC", "GI"] * 4
            x = np.stack([_case(self.rng, o == "SCLC")[0] for o in origins])
            targets, mask = node_targets(origins)
            yield torch.from_numpy(x), torch.from_numpy(targets), torch.from_numpy(mask)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, targets, mask = batch
        return hierarchical_loss(model(x), targets, mask)


@pytest.fixture(scope="module")
def trained() -> tuple[MetastasisNet, Any]:
    torch.manual_seed(0)
    net = MetastasisNet(2, arch="resnet6", attention="cbam", width=8)
    history = run_to_completion(fit(net, _BlobTask(), LoopConfig(epochs=6, lr=3e-3, seed=0), "cpu"))
    return net, history


def test_the_loop_trains_it_on_a_tiny_task(trained):
    net, history = trained
    assert history.train_loss[-1] < 0.8 * history.train_loss[0]
    rng = np.random.default_rng(7)
    with torch.no_grad():
        lung = node_probabilities(net(torch.from_numpy(np.stack([_case(rng, True)[0] for _ in range(4)]))))
        other = node_probabilities(net(torch.from_numpy(np.stack([_case(rng, False)[0] for _ in range(4)]))))
    assert lung[:, 0].min() > other[:, 0].max()  # new cases, in eval mode: every lung one ranked first


@pytest.mark.parametrize("arch", ARCHS)
def test_a_few_loop_steps_lower_the_loss_for_both_backbones(arch):
    torch.manual_seed(0)
    net = MetastasisNet(2, arch=arch, attention="se", width=8)
    task = _BlobTask(seed=1)
    batch = next(task.batches(0, torch.Generator()))
    with torch.no_grad():
        before = float(task.loss(net.train(), batch))
    run_to_completion(fit(net, _RepeatBatch(task, batch), LoopConfig(epochs=8, lr=3e-3, schedule="constant"), "cpu"))
    with torch.no_grad():
        after = float(task.loss(net.train(), batch))
    assert after < 0.8 * before


class _RepeatBatch:
    """One fixed batch every step: the loss on it must fall."""

    steps_per_epoch = 1

    def __init__(self, task: _BlobTask, batch: Any) -> None:
        self.task, self.batch = task, batch

    def batches(self, epoch: int, generator: torch.Generator) -> Any:
        yield self.batch

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return self.task.loss(model, batch)


def test_grad_cam_of_the_lung_node_is_on_the_planted_blob_and_not_on_the_decoy(trained):
    net, _ = trained
    rng = np.random.default_rng(11)
    for _ in range(3):
        x, blob, decoy = _case(rng, lung=True)
        cam = grad_cam(net, torch.from_numpy(x)[None], net.cam_layer, target=NODES.index("lung_vs_non_lung"))
        raw = cam.raw[0]
        assert raw.shape == (TINY, TINY, TINY)  # on the input grid
        assert raw[blob].mean() > 3 * raw[decoy].mean()
        assert raw[blob].mean() > 3 * raw[~blob].mean()
        assert energy_in_mask(raw, _ball(np.argwhere(blob).mean(0), RADIUS + 1.5)) > 0.35


def test_weight_randomisation_changes_the_map(trained):
    """Adebayo et al.'s check through core.explain (no second copy here): the map's ranks drop."""
    net, _ = trained
    x, blob, _ = _case(np.random.default_rng(12), lung=True)
    check = randomisation_check(net, torch.from_numpy(x)[None], net.cam_layer, blob, target=0, mode="full")
    assert check.spearman < 0.5
    assert check.energy_after < check.energy_before
