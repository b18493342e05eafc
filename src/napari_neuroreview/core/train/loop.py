"""The one training loop: a task generator with progress, cancel, history and best-epoch keeping.

Why a generator: training runs in the widgets' worker (progress bar, Cancel within a
batch) and in the CLI through the same code. Each batch yields a :class:`Progress`, so a
cancelled training (the generator closed) stops within one batch.

What a system brings is a :class:`Trainable`: its batches and its loss (and, if it keeps
a validation set, its validation loss). The loop owns everything else: AdamW, the
schedule, gradient clipping, the device, the history, keeping the best epoch's weights,
and running under ``torchrun`` (``core.train.distributed``: DDP, per-rank shards of
each global batch, callbacks on rank 0 only) without a change in the system's code.

Reproducibility: the loop draws nothing from the global torch generator. Batches get a
``torch.Generator`` seeded with ``config.seed`` (a trainable may keep its own numpy
generator from the same seed); the caller seeds torch (``torch.manual_seed``) before
building the model, which fixes the initial weights and the dropout masks. On a CPU two
runs with the same seed then give the same weights bit for bit.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from ..progress import Progress, TaskGenerator
from . import distributed

__all__ = ["MIN_ONE_CYCLE_STEPS", "SCHEDULES", "FitHistory", "LoopConfig", "Trainable", "fit"]

#: Learning-rate schedules :class:`LoopConfig` knows.
SCHEDULES = ("onecycle", "constant")

#: Fewer steps than this get a constant learning rate: OneCycleLR's warm-up needs
#: ``0.2 * steps > 1`` (at exactly 5 steps it divides by zero) and means little on so few.
MIN_ONE_CYCLE_STEPS = 10


@dataclass
class LoopConfig:
    """The optimiser and schedule of a run.

    Attributes
    ----------
    epochs : int
        Passes of ``steps_per_epoch`` batches.
    lr, weight_decay : float
        AdamW; ``lr`` is the peak of the one-cycle schedule.
    seed : int
        Seeds the generator handed to :meth:`Trainable.batches`.
    schedule : str
        ``'onecycle'`` (20% warm-up; constant below :data:`MIN_ONE_CYCLE_STEPS` steps) or
        ``'constant'``.
    grad_clip : float or None
        Largest gradient norm (None: not clipped).
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    schedule: str = "onecycle"
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:  # set by code, not by a user: a bug
            raise ValueError(f"schedule {self.schedule!r} is not one of {SCHEDULES}")


class Trainable(Protocol):
    """What a system gives the loop.

    ``steps_per_epoch`` batches are taken from :meth:`batches` each epoch. A batch is
    whatever :meth:`loss` reads: tensors in tuples, lists, dicts or dataclasses, made on
    the CPU (the loop moves this rank's share to the device). Optionally
    ``val_loss(model) -> float | None``: the loss on a validation set (None: none), after
    every epoch; the weights of the best epoch are kept.
    """

    steps_per_epoch: int

    def batches(self, epoch: int, generator: torch.Generator) -> Iterable[Any]:
        """This epoch's global batches (the same on every rank)."""
        ...

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The loss of a batch (``model`` may be the DDP wrapper: call it, do not unwrap it)."""
        ...


@dataclass
class FitHistory:
    """Mean training loss per finished epoch, validation loss per epoch, and the best epoch."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1


def _schedule(optimiser: torch.optim.Optimizer, config: LoopConfig, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle learning rate over ``steps``; constant when asked or when a run is too short for a cycle."""
    if config.schedule == "constant" or steps < MIN_ONE_CYCLE_STEPS:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=steps, pct_start=0.2)


def fit(
    model: nn.Module,
    trainable: Trainable,
    config: LoopConfig,
    device: torch.device | str,
    on_epoch: Callable[[int, FitHistory], None] | None = None,
    what: str = "Epoch",
) -> TaskGenerator[FitHistory]:
    """Train ``model`` in place on ``device``; with a validation loss, end on the best epoch's weights.

    Parameters
    ----------
    model : nn.Module
        Built (and seeded) by the caller; moved to ``device``.
    trainable : Trainable
        The system's batches and loss.
    config : LoopConfig
    device : torch.device or str
        A device, or ``auto``/``cpu``/``cuda``... (``core.device.resolve_device``).
    on_epoch : callable, optional
        Called after every epoch on rank 0 only: where a run writes a checkpoint or a log.
    what : str
        The progress message's start (``"{what} 3/10, loss 0.123"``).

    Returns
    -------
    FitHistory : the loss per epoch (averaged over ranks under ``torchrun``); the model is
    left in eval mode.
    """
    device = resolve_device(device).device if isinstance(device, str) else device
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    rank, world = distributed.rank_and_world()
    trained = distributed.wrap(model, device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = int(trainable.steps_per_epoch)
    total = config.epochs * per_epoch
    schedule = _schedule(optimiser, config, total)
    val_loss = getattr(trainable, "val_loss", None)
    history = FitHistory()
    best_state: dict[str, torch.Tensor] | None = None
    best_val = float("inf")
    for epoch in range(config.epochs):
        model.train()
        losses: list[float] = []
        # range first: the batch iterator is never advanced past the last step (its random streams stay put)
        for step, batch in zip(range(per_epoch), trainable.batches(epoch, generator)):
            batch = distributed.map_batch(distributed.shard(batch, rank, world),
                                          lambda x: x.to(device) if isinstance(x, torch.Tensor) else x)
            loss = trainable.loss(trained, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimiser.step()
            schedule.step()
            losses.append(distributed.mean_over_ranks(float(loss.detach()), device))
            yield Progress(epoch * per_epoch + step + 1, total,
                           f"{what} {epoch + 1}/{config.epochs}, loss {np.mean(losses):.3f}")
        history.train_loss.append(float(np.mean(losses)))
        value = val_loss(model) if val_loss is not None else None
        if value is not None:
            history.val_loss.append(float(value))
            if value < best_val:
                best_val, history.best_epoch = float(value), epoch
                best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None and rank == 0:
            on_epoch(epoch, history)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
