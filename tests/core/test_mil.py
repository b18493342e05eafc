"""Multiple-instance networks (core.models.mil): set functions of the real instances only,
empty bags beside full ones, attention as weights, gradients, mean pooling as the masked mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_neuroreview.core.models.mil import GatedAttentionMIL, MeanPoolMIL, build_mil, pad_bags

D = 7
MODELS = [GatedAttentionMIL, MeanPoolMIL]


def _net(cls, seed: int = 0):
    torch.manual_seed(seed)
    return cls(D, embed=16, attention=8, n_classes=3).eval()


def _bag(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


@pytest.mark.parametrize("cls", MODELS)
def test_permutation_invariance(cls):
    net = _net(cls)
    bag = _bag(9)
    order = np.random.default_rng(3).permutation(9)
    with torch.no_grad():
        logits, a = net(*pad_bags([bag], D))
        logits_p, a_p = net(*pad_bags([bag[order]], D))
    assert torch.allclose(logits, logits_p, atol=1e-5)
    assert torch.allclose(a[0, order], a_p[0], atol=1e-6)


@pytest.mark.parametrize("cls", MODELS)
def test_padding_invariance(cls):
    """The same bag padded to 5, 12 and 40 (by longer bags in its batch, padding filled with junk)."""
    net = _net(cls)
    bag = _bag(5)
    with torch.no_grad():
        alone, a_alone = net(*pad_bags([bag], D))
        for longest in (12, 40):
            x, mask = pad_bags([bag, _bag(longest, 2)], D)
            x[0, 5:] = 1e3  # whatever padding holds must not matter
            logits, a = net(x, mask)
            assert torch.allclose(logits[0], alone[0], atol=1e-5)
            assert torch.allclose(a[0, :5], a_alone[0], atol=1e-6)
            assert torch.all(a[0, 5:] == 0)


@pytest.mark.parametrize("cls", MODELS)
def test_empty_bag_in_a_batch(cls):
    """An empty bag gives the learned no-microbleed logits; its neighbours are unaffected; nothing is NaN."""
    net = _net(cls)
    with torch.no_grad():
        logits, a = net(*pad_bags([_bag(4), np.zeros((0, D), np.float32), _bag(11, 5)], D))
        alone_empty, a_empty = net(*pad_bags([np.zeros((0, D), np.float32)], D))
        alone_4, _ = net(*pad_bags([_bag(4)], D))
        with_empty_param = net.classifier(torch.cat([net.empty, torch.zeros(1)]))
    assert torch.isfinite(logits).all() and torch.isfinite(a).all()
    assert torch.all(a[1] == 0) and torch.all(a_empty == 0)
    assert torch.allclose(logits[1], alone_empty[0], atol=1e-6)
    assert torch.allclose(logits[1], with_empty_param, atol=1e-6)  # log1p(0) = 0 beside the learned vector
    assert torch.allclose(logits[0], alone_4[0], atol=1e-5)


@pytest.mark.parametrize("cls", MODELS)
def test_attention_sums_to_one_over_real_instances(cls):
    net = _net(cls)
    sizes = [1, 3, 0, 17]
    with torch.no_grad():
        _, a = net(*pad_bags([_bag(n, n) for n in sizes], D))
    for b, n in enumerate(sizes):
        assert float(a[b, :n].sum()) == pytest.approx(1.0 if n else 0.0, abs=1e-6)
        assert torch.all(a[b, n:] == 0) and torch.all(a[b, :n] >= 0)


def test_gated_attention_is_not_uniform():
    net = _net(GatedAttentionMIL)
    with torch.no_grad():
        _, a = net(*pad_bags([_bag(6)], D))
    assert float(a.std()) > 1e-4


@pytest.mark.parametrize("cls", MODELS)
def test_gradients_flow_to_every_part(cls):
    """Instances, attention, the empty-bag vector and the classifier all get gradients from one batch."""
    net = _net(cls).train()
    logits, _ = net(*pad_bags([_bag(4), np.zeros((0, D), np.float32), _bag(9, 4)], D))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def test_mean_pool_is_the_masked_mean():
    net = _net(MeanPoolMIL)
    bags = [_bag(3), _bag(8, 2)]
    x, mask = pad_bags(bags, D)
    with torch.no_grad():
        logits, a = net(x, mask)
        for b, bag in enumerate(bags):
            h = net.instance(torch.from_numpy(bag)).mean(dim=0)
            size = torch.log1p(torch.tensor([float(len(bag))]))
            assert torch.allclose(logits[b], net.classifier(torch.cat([h, size])), atol=1e-5)
            assert torch.allclose(a[b, : len(bag)], torch.full((len(bag),), 1 / len(bag)))


def test_bag_size_reaches_the_classifier():
    """Two bags of the same instance repeated (same pooled vector) differ only by their size, and are told apart."""
    net = _net(MeanPoolMIL)
    one = _bag(1)
    with torch.no_grad():
        a, _ = net(*pad_bags([one], D))
        b, _ = net(*pad_bags([np.repeat(one, 50, axis=0)], D))
    assert not torch.allclose(a, b)


def test_build_mil_names():
    assert isinstance(build_mil("attention", D, 8, 4), GatedAttentionMIL)
    assert isinstance(build_mil("mean", D, 8, 4), MeanPoolMIL)
    with pytest.raises(ValueError):
        build_mil("max", D)
