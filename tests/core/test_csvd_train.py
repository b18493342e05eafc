"""Subtype MIL training (core.tasks.csvd.train): both poolings learn a class decided by where the
microbleeds are, as estimators of the one cohort evaluation; seeded, class-weighted, empty bags, ablation."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from napari_neuroreview.core.anatomy.mars import REGION_CLASS, MarsRegion
from napari_neuroreview.core.metrics.cohort import Cohort, cross_validate_task, evaluate_predictions
from napari_neuroreview.core.progress import Progress, run_to_completion
from napari_neuroreview.core.tasks.csvd.bags import LOCATION_FEATURES, Bag, BagInstance, location_features
from napari_neuroreview.core.tasks.csvd.train import BagBatches, MILConfig, MILEstimator, class_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Rough MNI centres (right side; mirrored for the left) to give each synthetic CMB a plausible position.
CENTRES = {"frontal": (30, 30, 30), "parietal": (35, -55, 45), "temporal": (50, -20, -10),
           "occipital": (20, -85, 10), "insula": (38, 0, 5), "basal_ganglia": (22, 5, 0),
           "thalamus": (12, -18, 8), "internal_capsule": (20, -5, 10), "external_capsule": (30, 0, 5),
           "corpus_callosum": (5, 0, 22), "deep_white_matter": (25, -20, 28), "brainstem": (5, -28, -30),
           "cerebellum": (25, -65, -35)}
LOBAR = [r for r, c in REGION_CLASS.items() if c == "lobar"]
DEEP = [r for r, c in REGION_CLASS.items() if c == "deep"]
FAST = {"embed": 64, "attention": 32, "epochs": 30, "batch_bags": 8, "lr": 2e-3}


def _site(i: int, region: str, rng: np.random.Generator) -> BagInstance:
    side = str(rng.choice(["left", "right"]))
    mni = np.array(CENTRES[region], float) * [-1 if side == "left" else 1, 1, 1] + rng.normal(0, 4, 3)
    return BagInstance(i, tuple(mni), tuple(mni), float(rng.uniform(2, 8)), MarsRegion(region, REGION_CLASS[region], side))


def _bag(patient: str, label: int, rng: np.random.Generator, embedding: int = 0) -> Bag:
    """Class 0: 1-12 deep CMBs; class 1: 1-12 strictly lobar; class 2: 8-40 in thalamus and temporal lobe.

    The counts overlap (8-12), and class 2 shares the thalamus with class 0 and the temporal
    lobe with class 1: only the mix of places separates the classes. ``embedding`` prepends
    that many columns of pure noise (a patch embedding that says nothing).
    """
    if label == 0:
        regions = rng.choice(DEEP, size=rng.integers(1, 13))
    elif label == 1:
        regions = rng.choice(LOBAR, size=rng.integers(1, 13))
    else:
        regions = rng.choice(["thalamus", "temporal"], size=rng.integers(8, 41))
    sites = [_site(k + 1, str(r), rng) for k, r in enumerate(regions)]
    noise = rng.normal(size=(len(sites), embedding)).astype(np.float32)
    return Bag(patient, np.concatenate([noise, location_features(sites)], axis=1), tuple(s.id for s in sites),
               embedding)


def _cohort(n: int, seed: int, embedding: int = 0) -> tuple[list[Bag], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    return [_bag(f"s{seed}-{k}", int(y), rng, embedding) for k, y in enumerate(labels)], labels


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_both_poolings_learn_where_the_microbleeds_are(pooling):
    train, y_train = _cohort(90, 1)
    test, y_test = _cohort(60, 2)
    started = time.perf_counter()
    est = MILEstimator(MILConfig(pooling=pooling, **FAST), device="cpu")
    run_to_completion(est.fit(train, y_train))
    proba = est.predict_proba(test)
    seconds = time.perf_counter() - started
    assert proba.shape == (60, 3) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float((proba.argmax(axis=1) == y_test).mean())
    assert accuracy >= 0.85, (accuracy, seconds)  # chance: 0.33
    weights = est.attention(test[:5])
    assert [len(w) for w in weights] == [len(b) for b in test[:5]]
    assert all(abs(float(w.sum()) - 1.0) < 1e-5 for w in weights)


def test_empty_bags_are_a_class_of_their_own():
    """Patients without any CMB (empty bags) are learned apart from patients with a few."""
    rng = np.random.default_rng(4)
    bags, labels = [], []
    for k in range(60):
        label = k % 2
        bags.append(Bag(f"p{k}", np.zeros((0, len(LOCATION_FEATURES)), np.float32)) if label == 0
                    else _bag(f"p{k}", 0, rng))
        labels.append(label)
    est = MILEstimator(MILConfig(n_classes=2, **FAST), device="cpu")
    run_to_completion(est.fit(bags, np.array(labels)))
    proba = est.predict_proba(bags)
    assert np.isfinite(proba).all()
    assert (proba.argmax(axis=1) == np.array(labels)).mean() == 1.0
    assert [len(w) for w in est.attention(bags[:2])] == [0, len(bags[1])]


def test_seeded_fits_are_identical_and_seeds_differ():
    bags, labels = _cohort(24, 3)
    config = dict(FAST, epochs=3)

    def proba(seed: int) -> np.ndarray:
        est = MILEstimator(MILConfig(seed=seed, **config), device="cpu")
        run_to_completion(est.fit(bags, labels))
        return est.predict_proba(bags)

    first = proba(0)
    np.testing.assert_array_equal(first, proba(0))
    assert not np.array_equal(first, proba(1))


def test_class_weights_and_weighted_loss():
    np.testing.assert_allclose(class_weights(np.array([0, 0, 0, 1]), 3), [4 / 6, 2.0, 0.0])
    bags, labels = _cohort(9, 5)
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    weighted = BagBatches([b.features for b in bags], labels, MILConfig(**FAST))
    plain = BagBatches([b.features for b in bags], labels, MILConfig(class_weighted=False, **FAST))
    np.testing.assert_allclose(weighted.weights.numpy(), [0.5, 1.5, 3.0])
    assert torch.equal(plain.weights, torch.ones(3))
    batches = list(weighted.batches(0, torch.Generator().manual_seed(0)))
    assert len(batches) == weighted.steps_per_epoch == 2
    assert sorted(torch.cat([y for _, _, y in batches]).tolist()) == sorted(labels.tolist())
    x, mask, _ = batches[0]
    assert x.shape[:2] == mask.shape and x.shape[2] == len(LOCATION_FEATURES)
    # a batch of one bag keeps its class weight (torch's weighted mean would divide it out)
    torch.manual_seed(0)
    net = torch.nn.Linear(1, 3)

    def model(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, None]:
        return net(mask.sum(dim=1, keepdim=True).float()), None

    one = (x[:1], mask[:1], torch.tensor([2]))
    with torch.no_grad():
        assert float(weighted.loss(model, one)) == pytest.approx(3.0 * float(plain.loss(model, one)), rel=1e-6)


def test_location_only_ablation_drops_the_patch_embedding():
    bags, labels = _cohort(30, 6, embedding=16)
    full = MILEstimator(MILConfig(**dict(FAST, epochs=2)), device="cpu")
    located = MILEstimator(MILConfig(patch_embedding=False, **dict(FAST, epochs=2)), device="cpu")
    run_to_completion(full.fit(bags, labels))
    run_to_completion(located.fit(bags, labels))
    assert full.net.in_features == 16 + len(LOCATION_FEATURES)
    assert located.net.in_features == len(LOCATION_FEATURES)
    assert located.predict_proba(bags).shape == (30, 3)


def test_cohort_cross_validation_end_to_end():
    """The estimators are factories of core.metrics.cohort: same folds, progress relayed, metrics computed."""
    bags, labels = _cohort(30, 7)
    cohort = Cohort(bags, labels, [b.patient for b in bags], (0, 1, 2))
    config = dict(FAST, epochs=4)
    factories = {"attention": lambda: MILEstimator(MILConfig(pooling="attention", **config), device="cpu"),
                 "mean": lambda: MILEstimator(MILConfig(pooling="mean", **config), device="cpu")}
    task = cross_validate_task(cohort, factories, n_folds=3, seed=0)
    messages = []
    while True:
        try:
            update = next(task)
        except StopIteration as stop:
            predictions = stop.value
            break
        assert isinstance(update, Progress)
        messages.append(update.message)
    assert any("MIL (attention), epoch" in m for m in messages) and any("MIL (mean), epoch" in m for m in messages)
    for name in factories:
        p = predictions[name]
        assert p.proba.shape == (30, 3) and np.isfinite(p.proba).all() and set(p.fold.tolist()) == {0, 1, 2}
        result = evaluate_predictions(p, n_boot=50, seed=0, metrics=("auc_macro", "balanced_accuracy"))
        assert np.isfinite(result.metrics["auc_macro"]["value"])


def test_state_round_trip():
    """What a model card's safetensors would hold gives back the same probabilities and attention."""
    bags, labels = _cohort(12, 8)
    config = MILConfig(**dict(FAST, epochs=2))
    est = MILEstimator(config, device="cpu")
    run_to_completion(est.fit(bags, labels))
    state = est.state_dict()
    assert all(v.device.type == "cpu" and v.is_contiguous() for v in state.values())
    back = MILEstimator.from_state(state, config, device="cpu")
    np.testing.assert_array_equal(back.predict_proba(bags), est.predict_proba(bags))
    for a, b in zip(back.attention(bags), est.attention(bags)):
        np.testing.assert_array_equal(a, b)
