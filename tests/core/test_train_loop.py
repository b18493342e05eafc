"""The one training loop (``core.train.loop.fit``): determinism, Cancel, best epoch, schedule, both systems on it."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from napari_neuroreview.core.progress import Progress, run_to_completion
from napari_neuroreview.core.train import loop
from napari_neuroreview.core.train.loop import FitHistory, LoopConfig, fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Toy:
    """y = X w + noise; batches shuffled with the loop's generator; a fixed validation set."""

    def __init__(self, steps: int = 4, val: list[float] | None = None) -> None:
        rng = np.random.default_rng(0)
        self.x = torch.from_numpy(rng.standard_normal((32, 3)).astype(np.float32))
        self.y = self.x @ torch.tensor([2.0, -1.0, 0.5])
        self.steps_per_epoch = steps
        self.calls = 0
        self.scripted_val = list(val) if val is not None else None

    def batches(self, epoch: int, generator: torch.Generator) -> Any:
        while True:  # endless: the loop takes steps_per_epoch
            yield self.x[torch.randint(0, 32, (8,), generator=generator)], None

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        self.calls += 1
        x, _ = batch
        return F.mse_loss(model(x).squeeze(1), x @ torch.tensor([2.0, -1.0, 0.5]))

    def val_loss(self, model: nn.Module) -> float | None:
        return None if self.scripted_val is None else self.scripted_val.pop(0)


def _trained(seed: int, config: LoopConfig, toy: Toy | None = None) -> tuple[nn.Module, FitHistory]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.2), nn.Linear(8, 1))
    history = run_to_completion(fit(model, toy or Toy(), config, "cpu"))
    return model, history


def test_same_seed_same_weights_bit_for_bit_and_it_learns() -> None:
    config = LoopConfig(epochs=5, lr=0.05, seed=2)
    a, history_a = _trained(0, config)
    b, history_b = _trained(0, config)
    assert history_a.train_loss == history_b.train_loss
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert history_a.train_loss[-1] < 0.3 * history_a.train_loss[0]
    _, other = _trained(0, LoopConfig(epochs=5, lr=0.05, seed=3))  # another batch order
    assert other.train_loss != history_a.train_loss
    assert not a.training  # left in eval mode


def test_progress_every_batch_and_cancel_stops_within_one() -> None:
    toy = Toy(steps=4)
    task = fit(nn.Linear(3, 1), toy, LoopConfig(epochs=3), "cpu")
    updates = [next(task), next(task)]
    assert [(u.step, u.total) for u in updates] == [(1, 12), (2, 12)]
    assert updates[1].message.startswith("Epoch 1/3, loss ")
    task.close()  # what the widget's Cancel does
    assert toy.calls == 2


def test_the_best_validation_epoch_is_kept() -> None:
    toy = Toy(steps=2, val=[3.0, 1.0, 2.0, 5.0])
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    states: list[dict[str, torch.Tensor]] = []
    task = fit(model, toy, LoopConfig(epochs=4, lr=0.1), "cpu",
               on_epoch=lambda epoch, history: states.append(copy.deepcopy(model.state_dict())))
    history = run_to_completion(task)
    assert history.val_loss == [3.0, 1.0, 2.0, 5.0] and history.best_epoch == 1
    assert all(torch.equal(model.state_dict()[k], states[1][k]) for k in states[1])
    assert not all(torch.equal(states[1][k], states[3][k]) for k in states[1])


@pytest.mark.parametrize("steps", [1, 5, 9, 10, 40])
def test_one_cycle_peaks_at_lr_and_short_runs_are_constant(steps: int, monkeypatch) -> None:
    """OneCycleLR divides by zero at exactly 5 steps (the networks stage 1 crashed there)."""
    seen: list[float] = []
    real = loop._schedule

    def recording(optimiser: torch.optim.Optimizer, config: LoopConfig, total: int) -> Any:
        schedule = real(optimiser, config, total)
        step = schedule.step
        schedule.step = lambda: (seen.append(optimiser.param_groups[0]["lr"]), step())[1]  # type: ignore[method-assign]
        return schedule

    monkeypatch.setattr(loop, "_schedule", recording)
    run_to_completion(fit(nn.Linear(3, 1), Toy(steps=1), LoopConfig(epochs=steps, lr=0.01), "cpu"))
    assert len(seen) == steps
    if steps < loop.MIN_ONE_CYCLE_STEPS:
        assert seen == [0.01] * steps
    else:
        assert max(seen) == pytest.approx(0.01) and seen[0] < 0.001 and seen[-1] < 0.001
    with pytest.raises(ValueError, match="schedule"):
        LoopConfig(schedule="cosine")


def test_networks_stage1_trains_at_exactly_five_steps() -> None:
    """Five optimiser steps used to raise ZeroDivisionError inside OneCycleLR."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from prepost_synthetic import synthetic_scans, tiny_context

    from napari_neuroreview.core.tasks.networks import features
    from napari_neuroreview.core.tasks.networks import train as T

    rows = features.build_rows(synthetic_scans(4, effect=1.0, seed=3), tiny_context())
    assert len(rows) <= 96  # one batch per epoch: 5 epochs = 5 steps
    updates: list[Progress] = []
    _encoder, history = run_to_completion(T.train_stage1(rows, T.Stage1Config(epochs=5), "cpu"), updates.append)
    assert len(history.train_loss) == 5 and np.isfinite(history.train_loss).all()
    assert updates[-1].message.startswith("Stage 1, epoch 5/5, loss ")


def test_cmb_patches_half_positive_and_augmented_on_the_loop() -> None:
    from napari_neuroreview.core.tasks.cmb.training import FitConfig, PatchSet, PatchTrainable

    n, d = 40, 4
    rng = np.random.default_rng(0)
    data = PatchSet(
        patches=rng.random((n, 2, d, d, d)).astype(np.float32), labels=(np.arange(n) < 5).astype(np.float32),
        seg=np.zeros((n, d, d, d), np.float32), has_seg=np.zeros(n, bool), weight=np.ones(n, np.float32),
        groups=np.zeros(n, np.int64))
    trainable = PatchTrainable(data, FitConfig(batch_size=8, max_steps_per_epoch=3))
    assert trainable.steps_per_epoch == 3  # ceil(2 * 35 / 8) = 9, capped
    batches = list(trainable.batches(0, torch.Generator().manual_seed(0)))
    assert len(batches) == 3
    assert all(float(labels.sum()) == 4.0 for _x, labels, *_ in batches)
    assert FitConfig().loop_config() == LoopConfig(epochs=8, lr=2e-3, weight_decay=1e-4, seed=0)
