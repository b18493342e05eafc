"""The stroke risk heads on the pretrained encoders, frozen or trainable (issue 13 item 4).

What a run does (:func:`train_downstream`):

* subjects: THE persisted split of the pretrained version (``split.py``; the pretrained
  card names its file and its cohort fingerprint). A pretrained version of another cohort
  is refused (:func:`check_same_cohort`): its pretraining may have seen this cohort's test
  subjects. The heads learn on the split's labelled ``train`` subjects; the validation
  loss (which keeps the best epoch) and the thresholds come from its labelled ``val``
  subjects; ``test`` is never read here (``evaluate.py`` scores it once);
* the table: encoded by the PRETRAINED encoding (the card's ``table``), whatever columns it
  has (the phantom's image-derived volumes included), so the table encoder reads what it
  was trained on;
* the net: ``models.stroke_risk.StrokeRiskNet`` on copies of the pretrained encoders;
  ``mode="frozen"`` trains the heads only (a linear probe), ``mode="trainable"`` also the
  encoders, at :attr:`DownstreamConfig.encoder_lr_factor` x the heads' learning rate;
* batches (:class:`RiskBatches`): stratified, and every training subject exactly once per
  epoch. The study's sampler drew balanced batches and dropped the surplus of the majority
  (no-stroke) cases each epoch; here each class is shuffled on its own and dealt into the
  epoch's ``ceil(n / batch)`` batches, so every batch holds the cohort's share of strokes
  (one at least, when there are as many strokes as batches) and no case is left out;
* the loss: the sum of the three heads' binary cross-entropies (the ensemble is their mean
  logit and gets no term of its own). Not class-weighted: the threshold (below) sets the
  operating point and the ROC-AUC does not depend on it, while unweighted probabilities
  stay those of the cohort's prevalence (a risk that means what it says);
* the thresholds: per head, Youden's J on the validation subjects, SIGNED (the maximum of
  TPR - FPR, ``core.metrics.classification.youden_threshold``; the study took |J|, which
  turns an anti-correlated score into a flipped rule), as probabilities; frozen into the
  card for the test and for ``stroke predict``.

Saved (:func:`save_risk_model`) as a registry version of :data:`MODEL_NAME` whose parent is
the pretrained version; :func:`load_risk_model` reads it back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.special import expit
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from ...device import resolve_device
from ...errors import InputFileError, InsufficientDataError, RegistryError
from ...io.resample import same_grid
from ...metrics.classification import binary_metrics, youden_threshold
from ...model_loading import card_mismatch, load_version
from ...models.stroke_net import StrokeClipNet
from ...models.stroke_risk import HEADS, StrokeRiskNet
from ...progress import TaskGenerator
from ...registry import (
    DEMO_NOTE,
    SHIPPED_WEIGHTS_ROOT,
    ModelCard,
    default_registry_root,
    find_version,
    save_model,
)
from ...train.loop import FitHistory, LoopConfig, fit
from .labels import read_stroke_labels, read_stroke_table
from .pretrain import (
    CHANNELS,
    EMBED_BATCH,
    PretrainConfig,
    image_augment,
    in_batches,
    load_cohort_images,
    split_digest,
)
from .pretrain import MODEL_NAME as PRETRAINED_NAME
from .split import cohort_fingerprint
from .tabular import TableEncoding

__all__ = [
    "MODEL_NAME",
    "MODES",
    "TRAINED_HEADS",
    "TRAIN_COMMAND",
    "WHAT",
    "Downstream",
    "DownstreamConfig",
    "RiskBatches",
    "RiskModel",
    "check_same_cohort",
    "downstream_subjects",
    "encoding_from_card",
    "load_pretrained",
    "load_risk_model",
    "predict_logits",
    "registry_roots",
    "save_risk_model",
    "train_downstream",
]

MODEL_NAME = "stroke-risk"
#: How the "not installed" sentence names the model and the way to train one (CLI, loader, panel).
WHAT = "stroke risk model"
TRAIN_COMMAND = "neuroreview stroke train --data DIR --pretrained V"
MODES: tuple[str, ...] = ("frozen", "trainable")
#: The heads with a loss term (the ensemble is their mean).
TRAINED_HEADS: tuple[str, ...] = HEADS[:3]


@dataclass
class DownstreamConfig:
    """The heads' recipe (module docstring).

    Attributes
    ----------
    mode : str
        ``"frozen"`` (heads only: a linear probe) or ``"trainable"`` (encoders too).
    epochs, batch, lr, weight_decay, seed
        The loop's; ``lr`` is the heads'.
    encoder_lr_factor : float
        Trainable mode: the encoders learn at this x ``lr`` (0.1: the pretrained features
        move a little while the new heads, randomly initialised, find their place).
    augment : bool
        Turn training images as pretraining did (MONAI RandAffine, 10 degrees in radians).
    """

    mode: str = "frozen"
    epochs: int = 30
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    encoder_lr_factor: float = 0.1
    augment: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:  # the CLI offers the choices: another value is a bug
            raise ValueError(f"mode {self.mode!r} is not one of {MODES}")


def registry_roots(root: str | Path | None) -> list[Path]:
    """Where a version is looked up: ``root`` alone when given, else the user's registry and the shipped one."""
    return [Path(root)] if root is not None else [default_registry_root(), SHIPPED_WEIGHTS_ROOT]


def encoding_from_card(card: ModelCard) -> TableEncoding:
    """The table encoding a stroke card keeps (``config["table"]``)."""
    table = card.config["table"]
    return TableEncoding(tuple(table["columns"]), dict(table["mean"]), dict(table["sd"]))


def _check_pretrained_card(card: ModelCard) -> None:
    keys = ("table", "table_width", "width", "hidden", "channels", "cohort_fingerprint", "split", "image_shape")
    if any(k not in card.config for k in keys):
        raise RegistryError(f"The model card {card.name} {card.version} lacks part of a stroke pretraining's "
                            f"config ({', '.join(keys)}).")


def load_pretrained(version: str | None, root: str | Path | None = None
                    ) -> tuple[Path, StrokeClipNet, ModelCard]:
    """The registry root, the encoders (on the CPU) and the card of a ``stroke-pretrain`` version."""
    roots = registry_roots(root)
    what, command = "stroke pretraining", "neuroreview stroke pretrain --data DIR --out ROOT"
    found, card = find_version(PRETRAINED_NAME, version, roots, what, command, shipped=False)

    def build(state: dict[str, torch.Tensor], card: ModelCard, _device: torch.device) -> StrokeClipNet:
        c = card.config
        net = StrokeClipNet(int(c["table_width"]), int(c["width"]), int(c["embed_dim"]), int(c["hidden"]),
                            len(c["channels"]))
        with card_mismatch(card):
            net.load_state_dict(state)
        return net.eval()

    net = load_version(PRETRAINED_NAME, card.version, build, device="cpu", roots=[found], check=_check_pretrained_card,
                       what=what, train_command=command, shipped=False)
    return found, net, card


def check_same_cohort(card: ModelCard, cohort_dir: str | Path) -> None:
    """Refuse a pretrained (or risk) version made on another cohort than ``cohort_dir``."""
    if card.config.get("cohort_fingerprint") != cohort_fingerprint(cohort_dir):
        pretrained = card.name == PRETRAINED_NAME
        made, redo = ("pretrained", "pretrain") if pretrained else ("trained (and pretrained)", "pretrain and train")
        raise InputFileError(f"{card.name} {card.version} was {made} on another cohort than {cohort_dir} "
                             "(their clinical.tsv or labels.tsv differ), so it may have seen this cohort's test "
                             f"subjects; {redo} on this cohort first.")


def downstream_subjects(split: dict[str, Any], labels: dict[str, int]) -> dict[str, list[str]]:
    """The split's LABELLED subjects of each part (train: the heads; val: the thresholds; test: evaluate.py)."""
    return {part: [s for s in split["subjects"][part] if s in labels] for part in ("train", "val", "test")}


class RiskBatches:
    """The loop's Trainable (module docstring): stratified batches that keep every subject, the three heads' BCE.

    ``images`` (n, C, D, H, W) and ``table`` (n, W) of the training subjects, ``labels``
    (n,) their written labels; ``val`` the same three of the validation subjects.
    """

    def __init__(self, images: np.ndarray, table: np.ndarray, labels: np.ndarray, config: DownstreamConfig,
                 val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        if len(images) == 0:
            raise InsufficientDataError("the split has no labelled training subject")
        self.images, self.table = torch.from_numpy(images), torch.from_numpy(table)
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.config = config
        self.steps_per_epoch = math.ceil(len(images) / config.batch)
        self.val = None if val is None else tuple(torch.as_tensor(v) for v in val)

    def epoch_rows(self, generator: torch.Generator) -> list[torch.Tensor]:
        """One epoch's batches of row indices: each class shuffled and dealt into every batch; each row once.

        The classes' parts are paired largest with smallest (``array_split`` gives the larger
        parts first), so batch sizes differ by at most one or two.
        """
        k = self.steps_per_epoch
        parts = []
        for label in (1.0, 0.0):
            rows = torch.nonzero(self.labels == label).squeeze(1)
            parts.append(torch.tensor_split(rows[torch.randperm(len(rows), generator=generator)], k))
        positives, negatives = parts
        batches = [torch.cat([positives[i], negatives[k - 1 - i]]) for i in range(k)]
        return [batches[i] for i in torch.randperm(k, generator=generator).tolist()]

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """The epoch's batches (:meth:`epoch_rows`), images turned when :attr:`DownstreamConfig.augment`."""
        augment = None
        if self.config.augment:
            augment = image_augment(PretrainConfig())
            augment.set_random_state(seed=int(torch.randint(2**31 - 1, (1,), generator=generator)))
        for rows in self.epoch_rows(generator):
            images = self.images[rows].float()
            if augment is not None:
                images = torch.stack([torch.as_tensor(augment(x)).as_subclass(torch.Tensor) for x in images])
            yield {"image": images, "table": self.table[rows], "label": self.labels[rows], "index": rows}

    @staticmethod
    def head_loss(logits: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """The sum of the trained heads' binary cross-entropies (module docstring: no class weights)."""
        return sum(F.binary_cross_entropy_with_logits(logits[h], labels) for h in TRAINED_HEADS)  # type: ignore[return-value]

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The three heads' summed BCE on a batch."""
        return self.head_loss(model(batch["image"], batch["table"]), batch["label"])

    def val_loss(self, model: nn.Module) -> float | None:
        """The summed BCE of the validation subjects (no augmentation); None without any."""
        if self.val is None or len(self.val[0]) == 0:
            return None
        images, table, labels = self.val
        logits = predict_logits(model, images, table)
        with torch.no_grad():
            return float(self.head_loss({h: torch.from_numpy(v) for h, v in logits.items()}, labels.float()))


def predict_logits(net: nn.Module, images: np.ndarray | torch.Tensor, table: np.ndarray | torch.Tensor,
                   batch: int = EMBED_BATCH) -> dict[str, np.ndarray]:
    """Each head's logits (n,) of the rows, in eval mode and without gradients, :data:`EMBED_BATCH` at a time."""
    was_training = net.training
    net.eval()
    parts: list[dict[str, torch.Tensor]] = in_batches(net, images, table, device=next(net.parameters()).device,
                                                      batch=batch)
    net.train(was_training)
    return {h: torch.cat([p[h] for p in parts]).cpu().numpy() if parts else np.zeros(0, np.float32) for h in HEADS}


def _features(net: StrokeRiskNet, images: np.ndarray, table: np.ndarray, raw: bool
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' image and table features (raw, or standardised as the heads read them), without gradients."""
    net.eval()

    def features(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return net.raw_features(x, t) if raw else (net.encode_image(x), net.encode_table(t))

    img, tab = zip(*in_batches(features, images, table, device=next(net.parameters()).device))
    return torch.cat(img), torch.cat(tab)


class _Scaled(nn.Module):
    """A parametrisation ``w = factor x u``: Adam's step on ``u`` is about ``lr``, so ``w`` moves ``factor x lr``."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.factor

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return w / self.factor


@contextlib.contextmanager
def slower(modules: Sequence[nn.Module], factor: float) -> Iterator[None]:
    """Within the block, the ``modules``' weights learn at ``factor`` x the optimiser's learning rate.

    Why a parametrisation and not an optimiser parameter group: the one loop
    (``core.train.loop.fit``) builds one AdamW over the model's parameters. Adam's step is
    invariant to the gradient's scale, so a weight stored as ``u = w / factor`` and used as
    ``w = factor x u`` moves ``factor`` x as far per step (decoupled weight decay is not
    scaled: negligible at 1e-4). On leaving, the weights are plain tensors again (same
    state-dict keys).
    """
    done: list[tuple[nn.Module, str]] = []
    for module in modules:
        for sub in list(module.modules()):  # a list: registering adds modules
            for name, _ in list(sub.named_parameters(recurse=False)):
                parametrize.register_parametrization(sub, name, _Scaled(factor))
                done.append((sub, name))
    try:
        yield
    finally:
        for sub, name in done:
            parametrize.remove_parametrizations(sub, name, leave_parametrized=True)


@dataclass
class Downstream:
    """A downstream run: the net, the table encoding, history, thresholds, validation metrics and subjects."""

    net: StrokeRiskNet
    encoding: TableEncoding
    history: FitHistory
    thresholds: dict[str, float]
    val_metrics: dict[str, float]
    subjects: dict[str, list[str]]
    image_shape: tuple[int, ...]
    image_affine: np.ndarray | None = None
    messages: list[str] = field(default_factory=list)


def below_chance_messages(val_metrics: dict[str, float]) -> list[str]:
    """One warning per head whose validation ROC-AUC is below 0.5 (``val_auc_<head>``).

    Why: the signed Youden threshold (maximum of TPR - FPR) of a head that ranks worse than
    chance sits at or near its lowest score, so it calls almost every subject positive
    (sensitivity ~1, specificity ~0); the user must hear that before trusting its high/low.
    """
    return [f"The {h} head's validation ROC-AUC is {val_metrics[f'val_auc_{h}']:.2f}, below chance (0.5): its "
            "Youden threshold calls nearly every subject positive, so its high/low answer means nothing."
            for h in HEADS if val_metrics.get(f"val_auc_{h}", 0.5) < 0.5]


def _probabilities(logits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {h: expit(v.astype(np.float64)) for h, v in logits.items()}


def train_downstream(cohort_dir: str | Path, split: dict[str, Any], clip: StrokeClipNet, pretrained: ModelCard,
                     config: DownstreamConfig, device: torch.device | str) -> TaskGenerator[Downstream]:
    """Train the heads (module docstring) on the split's labelled train subjects; thresholds on its val subjects."""
    check_same_cohort(pretrained, cohort_dir)
    made = pretrained.config["split"]
    if (split.get("cohort") != pretrained.config["cohort_fingerprint"] or split.get("seed") != made["seed"]
            or ("sha256" in made and split_digest(split) != made["sha256"])):  # cards before the digest: seed only
        raise InputFileError(f"the split given is not the one {pretrained.name} {pretrained.version} was pretrained "
                             f"with ({made['file']}, seed {made['seed']}, its subject assignment), so its test "
                             "subjects may have been pretrained on.")
    labels = read_stroke_labels(cohort_dir)
    rows = {r["subject"]: r for r in read_stroke_table(cohort_dir)}
    subjects = downstream_subjects(split, labels)
    for part in ("train", "val"):
        have = {labels[s] for s in subjects[part]}
        if have != {0, 1}:
            raise InsufficientDataError(f"the split's {part} part needs labelled subjects with and without a stroke "
                                        f"(it has {len(subjects[part])}, labels {sorted(have)}); label more subjects.")
    encoding = encoding_from_card(pretrained)
    if set(encoding.columns) - set(next(iter(rows.values()))):
        raise InputFileError(f"{cohort_dir}: its clinical.tsv lacks the columns the pretrained encoder reads "
                             f"({', '.join(encoding.columns)}).")
    every = subjects["train"] + subjects["val"]
    images, affine = yield from load_cohort_images(cohort_dir, every)
    made_on = pretrained.config.get("image_affine")
    if tuple(images.shape[2:]) != tuple(pretrained.config["image_shape"]) or (
            made_on is not None and not same_grid(images.shape[2:], affine, images.shape[2:], np.asarray(made_on))):
        raise InputFileError(f"{cohort_dir}: its scans are on a {images.shape[2:]} grid, the pretrained encoders' on "
                             f"{tuple(pretrained.config['image_shape'])} (shape and affine must both match).")
    table = encoding.encode([rows[s] for s in every])
    y = np.array([labels[s] for s in every], np.float32)
    n = len(subjects["train"])
    c = pretrained.config
    torch.manual_seed(config.seed)  # the heads' initial weights
    net = StrokeRiskNet.from_pretrained(clip, encoding.width, int(c["width"]), int(c["hidden"]), len(CHANNELS))
    device = resolve_device(device).device if isinstance(device, str) else device
    net.to(device)
    net.set_scale(*_features(net, images[:n], table[:n], raw=True))
    batches = RiskBatches(images[:n], table[:n], y[:n], config, (images[n:], table[n:], y[n:]))
    loop = LoopConfig(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay, seed=config.seed)
    if config.mode == "frozen":
        net.freeze_encoders()
        history = yield from fit(net, batches, loop, device, what="Stroke heads (frozen encoders), epoch")
    else:
        with slower(net.encoders, config.encoder_lr_factor):
            history = yield from fit(net, batches, loop, device, what="Stroke heads and encoders, epoch")
    net.set_reference(*_features(net, images[:n], table[:n], raw=False), torch.as_tensor(y[:n]))
    val = _probabilities(predict_logits(net, images[n:], table[n:]))
    thresholds = {h: youden_threshold(y[n:], val[h]) for h in HEADS}
    metrics: dict[str, float] = {}
    for h in HEADS:
        m = binary_metrics(y[n:], val[h], thresholds[h])
        metrics[f"val_auc_{h}"] = m["auc"]
        metrics[f"val_balanced_accuracy_{h}"] = (m["sensitivity"] + m["specificity"]) / 2
    net.eval()
    return Downstream(net, encoding, history, thresholds, metrics, subjects, tuple(images.shape[2:]), affine,
                      below_chance_messages(metrics))


def save_risk_model(result: Downstream, config: DownstreamConfig, root: str | Path, version: str, cohort: str,
                    split: dict[str, Any], split_file: str, pretrained: ModelCard, notes: str = DEMO_NOTE
                    ) -> ModelCard:
    """Write the risk net as a registry version (parent: the pretrained version); the card has what predict needs.

    ``cohort`` is the cohort folder's name and ``split_file`` the split's file name beside the
    weights (no path: cards leave the machine).
    """
    net, history = result.net, result.history
    card = ModelCard(
        name=MODEL_NAME, version=version, task=pretrained.task, parent=pretrained.version, notes=notes,
        training_data=(f"stroke cohort {cohort} (fingerprint {split['cohort'][:12]}): heads on "
                       f"{len(result.subjects['train'])} labelled training subjects, thresholds on "
                       f"{len(result.subjects['val'])} labelled validation subjects of split {split_file}; encoders "
                       f"{config.mode}, from {pretrained.name} {pretrained.version}; no test subject"),
        metrics={k: float(v) for k, v in result.val_metrics.items() if math.isfinite(v)},
        config={**dataclasses.asdict(config), "threshold": result.thresholds["ensemble"],
                "thresholds": result.thresholds, "threshold_rule": "signed Youden J on the validation subjects",
                "channels": list(CHANNELS), "image_shape": list(result.image_shape),
                "image_affine": None if result.image_affine is None else np.asarray(result.image_affine).tolist(),
                "table": result.encoding.to_json(), "table_width": result.encoding.width,
                "width": pretrained.config["width"], "hidden": pretrained.config["hidden"],
                "n_reference": len(net.reference_labels),
                "pretrained": {"name": pretrained.name, "version": pretrained.version},
                "cohort_fingerprint": split["cohort"], "split": {"file": split_file, "seed": split["seed"]},
                "train_loss": history.train_loss, "val_loss": history.val_loss, "best_epoch": history.best_epoch},
    )
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_model(state, card, root)
    return card


class RiskModel(NamedTuple):
    """A loaded risk version: the net (eval mode), its table encoding, its threshold (ensemble probability), its card."""

    net: StrokeRiskNet
    encoding: TableEncoding
    threshold: float
    card: ModelCard


def _check_risk_card(card: ModelCard) -> None:
    keys = ("table", "table_width", "width", "hidden", "channels", "n_reference", "threshold", "thresholds",
            "image_shape", "cohort_fingerprint", "split")
    if any(k not in card.config for k in keys):
        raise RegistryError(f"The model card {card.name} {card.version} lacks part of a stroke risk model's config "
                            f"({', '.join(keys)}).")


def load_risk_model(root: str | Path | None = None, version: str | None = None, device: str = "cpu") -> RiskModel:
    """A ``stroke-risk`` version (the registry's default when None) from ``root`` (else the usual registries)."""

    def build(state: dict[str, torch.Tensor], card: ModelCard, device: torch.device) -> RiskModel:
        c = card.config
        net = StrokeRiskNet(int(c["table_width"]), int(c["width"]), int(c["hidden"]), len(c["channels"]),
                            int(c["n_reference"]))
        with card_mismatch(card):
            net.load_state_dict(state)
        if c.get("mode") == "frozen":
            net.freeze_encoders()
        return RiskModel(net.to(device).eval(), encoding_from_card(card), float(c["threshold"]), card)

    return load_version(MODEL_NAME, version, build, device=device, roots=registry_roots(root), check=_check_risk_card,
                        what=WHAT, train_command=TRAIN_COMMAND,
                        shipped=True)  # the package ships a demo model (weights/stroke-risk)
