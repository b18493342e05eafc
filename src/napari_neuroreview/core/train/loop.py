"""The training loop for patch models: a task generator with progress, cancel and history.

Why a generator: training runs in the widgets' worker (progress bar, Cancel within a
batch) and in the CLI through the same code. Each batch yields a :class:`Progress`, so a
cancelled training stops within one batch (a fraction of a second on a CPU) and keeps
the weights it had at the last finished epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..progress import Progress, TaskGenerator


@dataclass
class PatchSet:
    """Training patches with their targets.

    Attributes
    ----------
    patches : numpy.ndarray
        (N, C, D, D, D) float32 inputs.
    labels : numpy.ndarray
        (N,) 1 for the positive class, 0 otherwise.
    seg : numpy.ndarray
        (N, D, D, D) soft segmentation targets (ignored where ``has_seg`` is False).
    has_seg : numpy.ndarray
        (N,) bool: a mask is known for this patch (positives with a drawn/true mask).
    weight : numpy.ndarray
        (N,) per-patch loss weight (hard negatives from reviews weigh more).
    groups : numpy.ndarray
        (N,) case/patient index, so that splits never share a scan.
    """

    patches: np.ndarray
    labels: np.ndarray
    seg: np.ndarray
    has_seg: np.ndarray
    weight: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(sets: list[PatchSet]) -> PatchSet:
        """One set from many (e.g. one per case)."""
        sets = [s for s in sets if len(s)]
        if not sets:
            raise ValueError("no patches to train on")
        return PatchSet(*(np.concatenate([getattr(s, f) for s in sets]) for f in PatchSet.__dataclass_fields__))

    def subset(self, index: np.ndarray) -> PatchSet:
        """The patches at ``index``."""
        return PatchSet(*(getattr(self, f)[index] for f in PatchSet.__dataclass_fields__))


@dataclass
class FitConfig:
    """Optimisation settings (defaults suit the small CMB patch network on a CPU)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    phase_dropout: float = 0.3
    seg_weight: float = 1.0
    augment: bool = True
    max_steps_per_epoch: int = 150


@dataclass
class FitHistory:
    """Mean training loss per finished epoch and the best validation loss, if any."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1


def augment_batch(x: torch.Tensor, y_seg: torch.Tensor, generator: torch.Generator, phase_dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips and in-plane quarter turns (B0 stays along patch axis z), contrast jitter, phase dropout.

    Patch axes are (R, A, S); rotating in the R-A plane and flipping any axis keep the
    phase dipole's symmetry about B0, so the augmented patch is still physically right.
    """
    for dim in (2, 3, 4):
        if torch.rand((), generator=generator) < 0.5:
            x, y_seg = x.flip(dim), y_seg.flip(dim - 1)
    turns = int(torch.randint(0, 4, (), generator=generator))
    if turns:
        x, y_seg = torch.rot90(x, turns, dims=(2, 3)), torch.rot90(y_seg, turns, dims=(1, 2))
    scale = 1.0 + 0.15 * (torch.rand((x.shape[0], 1, 1, 1), generator=generator) - 0.5)
    x = x.clone()
    x[:, 0] = (x[:, 0] - 1.0) * scale + 1.0
    drop = torch.rand(x.shape[0], generator=generator) < phase_dropout
    x[drop, 1:] = 0.0
    return x, y_seg


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - Dice per patch, averaged; smooth so empty patches do not divide by zero."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    return (1.0 - (2 * inter + 1.0) / (prob.sum(1) + target.sum(1) + 1.0)).mean()


def patch_loss(
    net: nn.Module, x: torch.Tensor, labels: torch.Tensor, seg: torch.Tensor, has_seg: torch.Tensor,
    weight: torch.Tensor, seg_weight: float,
) -> torch.Tensor:
    """Weighted BCE on the class logit + (BCE + Dice) on the masks that are known."""
    logit, seg_logit = net(x)
    loss = (F.binary_cross_entropy_with_logits(logit, labels, reduction="none") * weight).sum() / weight.sum()
    if bool(has_seg.any()):
        s_logit, s_target = seg_logit[has_seg], seg[has_seg]
        loss = loss + seg_weight * (
            F.binary_cross_entropy_with_logits(s_logit, s_target) + soft_dice_loss(s_logit, s_target)
        )
    return loss


def _tensors(data: PatchSet, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(data.patches[index]).to(device),
        torch.from_numpy(data.labels[index].astype(np.float32)).to(device),
        torch.from_numpy(data.seg[index]).to(device),
        torch.from_numpy(data.has_seg[index]).to(device),
        torch.from_numpy(data.weight[index].astype(np.float32)).to(device),
    )


def evaluate_loss(net: nn.Module, data: PatchSet, device: torch.device, config: FitConfig) -> float:
    """Mean loss on a set without augmentation (for choosing the best epoch)."""
    net.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), 128):
            index = np.arange(start, min(start + 128, len(data)))
            total += float(patch_loss(net, *_tensors(data, index, device), config.seg_weight)) * len(index)
            count += len(index)
    return total / max(count, 1)


#: Fewer steps than this get a constant learning rate: OneCycleLR's warm-up needs
#: ``0.2 * steps > 1`` (at exactly 5 steps it divides by zero) and means little on so few.
MIN_ONE_CYCLE_STEPS = 10


def _schedule(optimiser: torch.optim.Optimizer, lr: float, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle learning rate over ``steps``; constant when a run is too short for a cycle."""
    if steps < MIN_ONE_CYCLE_STEPS:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.2)


def fit(
    net: nn.Module,
    train: PatchSet,
    config: FitConfig,
    device: torch.device,
    val: PatchSet | None = None,
    on_epoch: Callable[[int, FitHistory], None] | None = None,
) -> TaskGenerator[FitHistory]:
    """Train ``net`` in place; with ``val``, keep the weights of the best validation epoch.

    Positives are oversampled to half of every batch, so a few dozen microbleeds are
    not drowned by thousands of negatives.
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net.to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    positives = np.flatnonzero(train.labels > 0.5)
    negatives = np.flatnonzero(train.labels <= 0.5)
    per_epoch = max(1, int(np.ceil(2 * max(len(negatives), len(positives)) / config.batch_size)))
    per_epoch = min(per_epoch, config.max_steps_per_epoch)
    schedule = _schedule(optimiser, config.lr, config.epochs * per_epoch)
    history = FitHistory()
    best_state, best_val = copy.deepcopy(net.state_dict()), float("inf")
    total = config.epochs * per_epoch
    for epoch in range(config.epochs):
        net.train()
        losses = []
        for step in range(per_epoch):
            half = config.batch_size // 2
            chosen = np.concatenate([
                rng.choice(positives, half) if len(positives) else np.zeros(0, int),
                rng.choice(negatives, config.batch_size - half) if len(negatives) else np.zeros(0, int),
            ])
            x, labels, seg, has_seg, weight = _tensors(train, chosen, device)
            if config.augment:
                x, seg = augment_batch(x, seg, generator, config.phase_dropout)
            loss = patch_loss(net, x, labels, seg, has_seg, weight, config.seg_weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
            done = epoch * per_epoch + step + 1
            yield Progress(done, total, f"Epoch {epoch + 1}/{config.epochs}, loss {np.mean(losses):.3f}")
        history.train_loss.append(float(np.mean(losses)))
        if val is not None and len(val):
            val_loss = evaluate_loss(net, val, device, config)
            history.val_loss.append(val_loss)
            if val_loss < best_val:
                best_val, history.best_epoch = val_loss, epoch
                best_state = copy.deepcopy(net.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, history)
    if val is not None and len(val):
        net.load_state_dict(best_state)
    net.eval()
    return history
