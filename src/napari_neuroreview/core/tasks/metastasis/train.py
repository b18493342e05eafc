"""Train the metastasis origin network on lesion crops, and wrap it as a cohort-evaluation estimator.

* :class:`CropBatches` is the :class:`core.train.loop.Trainable`: each step a batch of
  crops (shuffled by the loop's seeded generator), augmented, and the hierarchical loss
  (``loss.hierarchical_loss``: each node only on its own lesions).
* :class:`MetastasisEstimator` follows ``core.metrics.cohort``'s estimator protocol, as the
  subtype task's ``MILEstimator`` does: ``fit(crops, origins)`` is a task (the epochs are
  the fold's progress) and ``predict_proba(crops)`` gives the three node probabilities, or
  the four origins' (``output="four_class"``, ``classes.four_class``) so that a cohort of
  :data:`~.classes.ORIGINS` cross-validates it in patient-grouped folds directly.

Augmentation (``augment``): a flip along each axis with probability one half and a shift
of up to :data:`MAX_SHIFT_FRACTION` of the crop's edge along each axis (zeros come in),
drawn from the loop's generator per crop. Why these: the crops sit on a world-axis grid
centred on the lesion's centroid, so what must not matter is the side of the brain
(left-right flip), the lesion's orientation (the other flips) and a centroid a few mm off
(a mask drawn by hand, a region grown from a click); intensities are already normalised
per scan (``crops``).

Reproducibility: ``fit`` seeds torch with ``config.seed`` before building the network and
the loop seeds the batch order and the augmentation, so two fits on a CPU give the same
weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...config_fields import FieldRange
from ...device import resolve_device
from ...models.metastasis_net import ARCHS, ATTENTIONS, MetastasisNet, node_probabilities
from ...progress import TaskGenerator
from ...train.loop import FitHistory, LoopConfig, fit
from .classes import NODES, ORIGINS, SEQUENCES, four_class, node_targets
from .crops import CropSpec, LesionCrop
from .loss import hierarchical_loss

__all__ = ["MAX_SHIFT_FRACTION", "OUTPUTS", "CropBatches", "MetastasisConfig", "MetastasisEstimator", "augment",
           "network_input"]

#: Crops per forward pass when predicting.
PREDICT_BATCH = 8
#: The largest augmentation shift, as a fraction of the crop's edge (4 voxels of a 64 voxel crop).
MAX_SHIFT_FRACTION = 1 / 16
#: What :meth:`MetastasisEstimator.predict_proba` returns.
OUTPUTS: tuple[str, ...] = ("nodes", "four_class")
#: The paper's five sequences (Jiao et al. 2023 had no ADC), in :data:`~.crops.SEQUENCES` order.
PAPER_SEQUENCES: tuple[str, ...] = ("t1", "t2", "flair", "dwi", "ce_t1")


@dataclass
class MetastasisConfig:
    """One origin model's architecture, inputs and training.

    Attributes
    ----------
    arch : str
        ``'resnet6'`` or ``'resnet18'`` (``models.metastasis_net.ARCHS``).
    attention : str or None
        ``'cbam'``, ``'se'`` or None (``models.metastasis_net.ATTENTIONS``).
    width : int
        Channels of the first stage (ResNet18: 64 is the usual network; 16 trains on a CPU).
    sequences : tuple of str
        The input channels, in order (any single sequence or combination of
        :data:`~.crops.SEQUENCES`); default the paper's five.
    epochs, batch : int
        Passes over the training crops, and crops per step.
    lr, weight_decay : float
        AdamW, one-cycle schedule (the loop's).
    dropout : float
        Before the linear head while training.
    seed : int
    augment : bool
        Flips and shifts (module docstring).
    lesion_channel : bool
        The lesion's mask as a last input channel (:func:`network_input`). Why: the lesion is a
        small part of its cube (a median 0.4 % of a 64 mm crop in the 240-patient phantom
        cohort; a neighbouring metastasis may lie in the same cube), so without it the network
        must first find which voxels it is asked about; radiomics and radiologists read the
        lesion's outline, and so does the network then (benchmarks/README.md, metastasis).
    """

    arch: str = "resnet6"
    attention: str | None = "cbam"
    width: int = field(default=16, metadata={"range": FieldRange(4, 128, "network width", "Width")})
    sequences: tuple[str, ...] = PAPER_SEQUENCES
    epochs: int = 30
    lr: float = 1e-3
    batch: int = field(default=16, metadata={"range": FieldRange(2, 256, "batch size", "Batch")})
    weight_decay: float = 1e-4
    dropout: float = 0.2
    seed: int = 0
    augment: bool = True
    lesion_channel: bool = True

    def __post_init__(self) -> None:
        self.sequences = tuple(self.sequences)
        bad = [s for s in self.sequences if s not in SEQUENCES]
        if self.arch not in ARCHS or self.attention not in ATTENTIONS or bad or not self.sequences \
                or len(set(self.sequences)) != len(self.sequences):  # set by code (the CLI offers choices)
            raise ValueError(f"invalid metastasis config {self}")

    @property
    def in_channels(self) -> int:
        """The network's input channels: the sequences, and the lesion mask with ``lesion_channel``."""
        return len(self.sequences) + int(self.lesion_channel)


def network_input(crops: Sequence[LesionCrop], sequences: Sequence[str], lesion_channel: bool) -> np.ndarray:
    """(N, C, S, S, S) float32 network input: each crop's ``sequences`` channels, then its lesion mask (0/1).

    The one place a crop becomes what the network reads (training, prediction, Grad-CAM in
    ``classify`` and the benchmark), so that the channels cannot differ between them.
    """
    def one(crop: LesionCrop) -> np.ndarray:
        image = crop.image[[crop.sequences.index(s) for s in sequences]]
        return np.concatenate([image, crop.mask[None].astype(np.float32)]) if lesion_channel else image

    if not crops:
        return np.zeros((0, len(sequences) + int(lesion_channel), 0, 0, 0), np.float32)
    return np.stack([one(c) for c in crops]).astype(np.float32, copy=False)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each crop of (N, C, S, S, S) flipped and shifted by its own draw (module docstring)."""
    side = x.shape[-1]
    max_shift = max(1, round(side * MAX_SHIFT_FRACTION))
    flips = torch.rand(x.shape[0], 3, generator=generator) < 0.5
    shifts = torch.randint(-max_shift, max_shift + 1, (x.shape[0], 3), generator=generator)
    out = []
    for crop, flip, shift in zip(x, flips, shifts):
        dims = [d + 1 for d in range(3) if flip[d]]
        crop = torch.flip(crop, dims) if dims else crop
        m = max_shift
        crop = F.pad(crop, [m] * 6)
        index = tuple(slice(m - int(s), m - int(s) + side) for s in shift)
        out.append(crop[(slice(None), *index)])
    return torch.stack(out)


class CropBatches:
    """The loop's :class:`~core.train.loop.Trainable` over lesion crops (see the module docstring)."""

    def __init__(self, images: np.ndarray, origins: Sequence[str], config: MetastasisConfig) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        targets, mask = node_targets(list(origins))
        self.targets, self.mask = torch.from_numpy(targets), torch.from_numpy(mask)
        self.config = config
        self.steps_per_epoch = max(1, int(np.ceil(len(self.images) / config.batch)))

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """Crops (augmented), node targets and masks, in an order drawn from the loop's generator.

        The batches differ by at most one crop (none is left with a single crop, which batch
        norm cannot train on, unless the whole set is one).
        """
        order = torch.randperm(len(self.images), generator=generator).numpy()
        for idx in np.array_split(order, self.steps_per_epoch):
            rows = torch.from_numpy(idx)
            x = self.images[rows]
            if self.config.augment:
                x = augment(x, generator)
            yield x, self.targets[rows], self.mask[rows]

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, targets, mask = batch
        return hierarchical_loss(model(x), targets, mask)


def _origins(labels: Sequence[str] | np.ndarray) -> list[str]:
    """Origin names from names or from class indices of :data:`~.classes.ORIGINS` (a cohort's codes)."""
    values = list(np.asarray(labels).tolist())
    return [ORIGINS[int(v)] if not isinstance(v, str) else v for v in values]


class MetastasisEstimator:
    """A metastasis origin network as an estimator of ``core.metrics.cohort`` (items: :class:`~.crops.LesionCrop` s).

    Parameters
    ----------
    config : MetastasisConfig, optional
    device : str
        ``auto``, ``cpu``, ``cuda``... (``core.device.resolve_device``).
    output : str
        ``"nodes"``: ``predict_proba`` gives (n, 3) node probabilities (:data:`~.classes.NODES`);
        ``"four_class"``: (n, 4) in :data:`~.classes.ORIGINS` order.

    ``fit`` is a task generator; outside the harness drive it with
    ``core.progress.run_to_completion``.
    """

    def __init__(self, config: MetastasisConfig | None = None, device: str = "auto", output: str = "nodes") -> None:
        if output not in OUTPUTS:  # set by code
            raise ValueError(f"output must be one of {OUTPUTS}, not {output!r}")
        self.config = config or MetastasisConfig()
        self.device = resolve_device(device).device
        self.output = output
        self.net: MetastasisNet | None = None
        self.history: FitHistory | None = None
        self.crop_spec: CropSpec | None = None

    def _stack(self, crops: Sequence[LesionCrop]) -> np.ndarray:
        """(N, C, S, S, S) of the crops; they must hold this model's sequences on one cube (the caller's wiring)."""
        for crop in crops:
            if crop.sequences != self.config.sequences or (self.crop_spec is not None and crop.spec != self.crop_spec):
                raise ValueError(f"crop of lesion {crop.lesion_id} holds {crop.sequences} on {crop.spec}; this model "
                                 f"reads {self.config.sequences} on {self.crop_spec}")
        side = self.crop_spec.shape if self.crop_spec is not None else 0
        empty = np.zeros((0, self.config.in_channels, side, side, side), np.float32)
        return network_input(crops, self.config.sequences, self.config.lesion_channel) if crops else empty

    def fit(self, crops: Sequence[LesionCrop], origins: Sequence[str] | np.ndarray) -> TaskGenerator[None]:
        """Train a fresh (seeded) network on ``crops``; ``origins`` are names or ORIGINS indices."""
        if not crops:  # the cohort harness never gives an empty fold
            raise ValueError("MetastasisEstimator.fit needs at least one crop")
        self.crop_spec = crops[0].spec
        images = self._stack(crops)
        cfg = self.config
        torch.manual_seed(cfg.seed)  # the initial weights and the dropout masks
        net = MetastasisNet(cfg.in_channels, cfg.arch, cfg.attention, cfg.width, cfg.dropout)
        loop = LoopConfig(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed)
        self.history = yield from fit(net, CropBatches(images, _origins(origins), cfg), loop, self.device,
                                      what=f"Metastasis {cfg.arch} ({'+'.join(cfg.sequences)}), epoch")
        self.net = net

    def predict_nodes(self, crops: Sequence[LesionCrop]) -> np.ndarray:
        """(n, 3) probabilities of the :data:`~.classes.NODES` (P(lung), P(SCLC | lung), P(breast | non-lung))."""
        if self.net is None:
            raise RuntimeError("MetastasisEstimator.predict before fit")
        self.net.eval()
        images = self._stack(crops)
        out = [np.zeros((0, len(NODES)))]
        with torch.inference_mode():
            for start in range(0, len(images), PREDICT_BATCH):
                x = torch.from_numpy(images[start:start + PREDICT_BATCH]).to(self.device)
                out.append(node_probabilities(self.net(x)))
        return np.concatenate(out).astype(np.float64)

    def predict_proba(self, crops: Sequence[LesionCrop]) -> np.ndarray:
        """(n, 3) node probabilities, or (n, 4) origin probabilities with ``output="four_class"``."""
        nodes = self.predict_nodes(crops)
        return four_class(nodes) if self.output == "four_class" else nodes

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The network's weights as CPU tensors for safetensors."""
        if self.net is None:
            raise RuntimeError("MetastasisEstimator.state_dict before fit")
        return {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], config: MetastasisConfig, crop_spec: CropSpec,
                   device: str = "auto", output: str = "nodes") -> MetastasisEstimator:
        """A fitted estimator back from :meth:`state_dict`, its config and crop (eval mode)."""
        est = cls(config, device, output)
        est.crop_spec = crop_spec
        est.net = MetastasisNet(config.in_channels, config.arch, config.attention, config.width, config.dropout)
        est.net.load_state_dict(state)
        est.net.to(est.device).eval()
        return est
