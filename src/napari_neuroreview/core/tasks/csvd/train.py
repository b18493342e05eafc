"""Train the subtype MIL networks on bags, and wrap them as cohort-evaluation estimators.

* :class:`BagBatches` is the :class:`core.train.loop.Trainable`: each step a batch of
  ``batch_bags`` padded bags (``core.models.mil.pad_bags``), shuffled by the loop's
  seeded generator, and a class-weighted cross-entropy. Why weighted: the subtypes are
  imbalanced (217 / 106 / 41 in the microbleed study), and an unweighted loss learns to
  ignore CADASIL, which the weighted averages of the paper then hide.
* :class:`MILEstimator` follows ``core.metrics.cohort``'s estimator protocol: ``fit(bags,
  labels)`` (a task: the epochs are the fold's progress) and ``predict_proba(bags)``. So
  the attention model, the mean-pooling model and the location-only ablation are three
  factories of the same harness, fitted in the same patient folds as the baselines.
  Everything fitted from data happens inside ``fit``: the feature standardisation (mean
  and SD of the training bags' instances) and the class weights.

Reproducibility: ``fit`` seeds torch with ``config.seed`` before building the network
(the initial weights, the dropout masks) and the loop seeds the batch order, so two fits
on a CPU give the same weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...device import resolve_device
from ...models.mil import POOLINGS, MILNet, build_mil, pad_bags
from ...progress import TaskGenerator
from ...train.loop import FitHistory, LoopConfig, fit
from .bags import Bag

__all__ = ["BagBatches", "MILConfig", "MILEstimator", "class_weights", "train_mil"]

#: Bags per forward pass when predicting.
PREDICT_BATCH = 64


@dataclass
class MILConfig:
    """One MIL model's architecture and training.

    Attributes
    ----------
    pooling : str
        ``'attention'`` (gated, Ilse et al. 2018) or ``'mean'``.
    embed, attention : int
        Widths of the instance embedding and of the attention network. Ilse et al. used 500
        and 128; 128 and 64 (with dropout 0.25 and 30 epochs) were as good and three to
        five times faster on two pilot draws of the phantom cohort (``csvd_patients(300,
        seed, centres=("A", "B"))``, seeds 11 and 12; true CMB locations, no patch
        embedding, 5 patient folds): macro AUC attention / mean pooling 0.888 / 0.887 and
        0.918 / 0.910, against 0.881 / 0.889 and 0.901 / 0.895 at 500, 128, 40 epochs.
    dropout : float
        On the instance embedding while training.
    patch_embedding : bool
        Use the bags' patch-embedding columns; False trains on the location features only
        (the ablation: what does the image add to where the microbleeds are?).
    epochs, batch_bags : int
        Passes over the training bags, and bags per step (Ilse et al.: one; a few bags per
        step train faster and gave the same AUC on the pilot).
    lr, weight_decay : float
        AdamW (Ilse et al.: Adam 5e-4, weight decay 1e-4), one-cycle schedule.
    class_weighted : bool
        Weight the loss by inverse class frequency of the training bags.
    seed : int
    n_classes : int
        Fixed, not read from the labels: a training fold may lack a class (3: aSVD, CAA,
        CADASIL, the order of ``baselines.SUBTYPES``).
    """

    pooling: str = "attention"
    embed: int = 128
    attention: int = 64
    dropout: float = 0.25
    patch_embedding: bool = True
    epochs: int = 30
    batch_bags: int = 8
    lr: float = 5e-4
    weight_decay: float = 1e-4
    class_weighted: bool = True
    seed: int = 0
    n_classes: int = 3

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:  # set by code, not by a user
            raise ValueError(f"pooling {self.pooling!r} is not one of {POOLINGS}")


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights ``n / (K * n_k)`` (scikit-learn's "balanced"); 0 for an absent class."""
    counts = np.bincount(np.asarray(labels, int), minlength=n_classes).astype(float)
    present = counts > 0
    out = np.zeros(n_classes)
    out[present] = counts.sum() / (present.sum() * counts[present])
    return out


@dataclass
class _Scaler:
    """Mean and SD of every instance feature over the training bags (SD 1 where a column is constant).

    The one-hot columns are standardised too, so a rare region stands out as much as a
    common one: leaving them 0/1 lowered the attention model's macro AUC on the pilot of
    :class:`MILConfig` from 0.92 to 0.87.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, bags: Sequence[np.ndarray], width: int) -> _Scaler:
        rows = np.concatenate([*bags, np.zeros((0, width), np.float32)]).astype(float)
        if not len(rows):
            return cls(np.zeros(width), np.ones(width))
        std = rows.std(axis=0)
        return cls(rows.mean(axis=0), np.where(std > 1e-6, std, 1.0))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)


class BagBatches:
    """The loop's :class:`~core.train.loop.Trainable` over bags (see the module docstring)."""

    def __init__(self, features: Sequence[np.ndarray], labels: np.ndarray, config: MILConfig) -> None:
        self.features, self.config = list(features), config
        self.labels = torch.as_tensor(np.asarray(labels, int), dtype=torch.long)
        self.width = features[0].shape[1] if features else 0
        self.weights = torch.as_tensor(
            class_weights(labels, config.n_classes) if config.class_weighted else np.ones(config.n_classes),
            dtype=torch.float32)
        self.steps_per_epoch = max(1, int(np.ceil(len(self.features) / config.batch_bags)))

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """Padded bags, their masks and labels, in an order drawn from the loop's generator."""
        order = torch.randperm(len(self.features), generator=generator).numpy()
        for idx in np.array_split(order, self.steps_per_epoch):
            x, mask = pad_bags([self.features[i] for i in idx], self.width)
            yield x, mask, self.labels[torch.from_numpy(idx)]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, mask, y = batch
        logits, _ = model(x, mask)
        # Each bag's loss times its class weight, averaged over the bags: torch's weighted "mean"
        # divides by the weights' sum instead, which cancels the weight of a batch of one bag.
        losses = F.cross_entropy(logits, y, reduction="none")
        return (losses * self.weights.to(logits.device)[y]).mean()


def _columns(bag: Bag, config: MILConfig) -> np.ndarray:
    """The bag's features the model reads (without the patch embedding for the location-only ablation)."""
    return bag.features if config.patch_embedding else bag.location_only().features


def train_mil(features: Sequence[np.ndarray], labels: np.ndarray, config: MILConfig, device: torch.device
              ) -> TaskGenerator[tuple[MILNet, FitHistory]]:
    """A fresh network (seeded) trained on standardised bags; returns it in eval mode and the loss history."""
    torch.manual_seed(config.seed)  # the initial weights and the dropout masks
    batches = BagBatches(features, labels, config)
    net = build_mil(config.pooling, batches.width, config.embed, config.attention, config.n_classes,
                    config.dropout)
    loop = LoopConfig(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay, seed=config.seed)
    history = yield from fit(net, batches, loop, device, what=f"MIL ({config.pooling}), epoch")
    return net, history


class MILEstimator:
    """A MIL model as an estimator of ``core.metrics.cohort`` (items: :class:`~.bags.Bag` s).

    Parameters
    ----------
    config : MILConfig, optional
    device : str
        ``auto``, ``cpu``, ``cuda``... (``core.device.resolve_device``).

    ``fit`` is a task generator; outside the harness drive it with
    ``core.progress.run_to_completion``.
    """

    def __init__(self, config: MILConfig | None = None, device: str = "auto") -> None:
        self.config = config or MILConfig()
        self.device = resolve_device(device).device
        self.net: MILNet | None = None
        self.history: FitHistory | None = None

    def fit(self, bags: Sequence[Bag], labels: np.ndarray) -> TaskGenerator[None]:
        """Standardise on the training bags' instances, then train (class indices as labels)."""
        features = [_columns(b, self.config) for b in bags]
        width = features[0].shape[1] if features else 0
        self.scaler = _Scaler.fit(features, width)
        self.net, self.history = yield from train_mil([self.scaler(f) for f in features], np.asarray(labels),
                                                      self.config, self.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything fitted, as CPU tensors for safetensors: the network's weights and the scaler."""
        if self.net is None:
            raise RuntimeError("MILEstimator.state_dict before fit")
        state = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        state["scaler.mean"] = torch.as_tensor(self.scaler.mean, dtype=torch.float64)
        state["scaler.std"] = torch.as_tensor(self.scaler.std, dtype=torch.float64)
        return state

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], config: MILConfig, device: str = "auto") -> MILEstimator:
        """A fitted estimator back from :meth:`state_dict` and the config it was trained with (eval mode)."""
        est = cls(config, device)
        est.scaler = _Scaler(state["scaler.mean"].numpy(), state["scaler.std"].numpy())
        est.net = build_mil(config.pooling, len(est.scaler.mean), config.embed, config.attention, config.n_classes,
                            config.dropout)
        est.net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
        est.net.to(est.device).eval()
        return est

    def _forward(self, bags: Sequence[Bag]) -> tuple[np.ndarray, list[np.ndarray]]:
        if self.net is None:
            raise RuntimeError("MILEstimator.predict_proba before fit")
        self.net.eval()
        proba, weights = [], []
        width = self.net.in_features
        with torch.inference_mode():
            for start in range(0, len(bags), PREDICT_BATCH):
                chunk = bags[start:start + PREDICT_BATCH]
                x, mask = pad_bags([self.scaler(_columns(b, self.config)) for b in chunk], width)
                logits, a = self.net(x.to(self.device), mask.to(self.device))
                proba.append(torch.softmax(logits, dim=1).float().cpu().numpy())
                a = a.float().cpu().numpy()
                weights += [a[k, :len(b)] for k, b in enumerate(chunk)]
        return (np.concatenate(proba) if proba else np.zeros((0, self.config.n_classes))), weights

    def predict_proba(self, bags: Sequence[Bag]) -> np.ndarray:
        """(n, K) class probabilities (column ``k``: class index ``k`` of the training labels)."""
        return self._forward(bags)[0]

    def attention(self, bags: Sequence[Bag]) -> list[np.ndarray]:
        """Each bag's instance weights (sum 1; empty for a bag without CMBs; uniform for mean pooling)."""
        return self._forward(bags)[1]
