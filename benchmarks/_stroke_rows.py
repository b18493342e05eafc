"""The peer rows of ``benchmarks/stroke.py``: how each is trained, on the same split and encoded table as ours.

Every row learns on the split's labelled TRAIN subjects and returns its probabilities of
the labelled VAL subjects (where the benchmark sets its threshold, signed Youden, and
ranks the rows) and of the TEST subjects (scored once). Self-supervised pretrainings read
the split's pretraining subjects only (``tasks.stroke.pretrain.pretraining_subjects``: its
train and val parts, never test), exactly as ours does.

* table-only: scikit-learn logistic regression and MLP on the encoded table
  (``tasks.stroke.tabular.TableEncoding``, the pretrained card's: standardised numbers,
  one-hot categories, a missing indicator per column);
* SCARF (Bahri et al. 2022): the pretraining's table encoder and projection
  (``models.stroke_net.StrokeClipNet``'s), trained on the one loop by the same InfoNCE
  (``train.losses.clip_loss``) between a row and its SCARF-corrupted copy
  (``tasks.stroke.tabular.scarf_corrupt``, 30 % of the columns from their training
  marginals), then a logistic probe (scikit-learn) on the frozen, standardised features;
* image-only self-supervised (SimCLR, Chen et al. 2020): the pretraining's image encoder
  and projection, on the one loop, InfoNCE between two views of the same subject turned by
  the pretraining's own augmentation (``pretrain.image_augment``: RandAffine, radians), no
  table anywhere; then a logistic probe on the frozen features (no augmentation);
* supervised from scratch (image-only, or image + table concatenated): a
  ``models.stroke_risk.StrokeRiskNet`` with random encoders, trained end to end on ONE
  head's binary cross-entropy (``"image"``, or ``"fused"`` on ``[h_img, h_tab]``) with the
  downstream's stratified batches and augmentation (``downstream.RiskBatches``), so the
  recipe is ours minus the pretraining;
* clinical + image markers: logistic regression on the encoded table and the markers
  (``phantoms.stroke.marker_matrix``: log WMH, log1p lacunes, log1p CMBs, brain volume,
  log ventricles) read from the phantom's ``truth.tsv``: an ORACLE reading, optionally with
  a stated measurement noise.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from napari_neuroreview.core.models.stroke_net import StrokeClipNet
from napari_neuroreview.core.models.stroke_risk import StrokeRiskNet
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.stroke.downstream import (
    DownstreamConfig,
    RiskBatches,
    predict_logits,
)
from napari_neuroreview.core.tasks.stroke.pretrain import (
    EMBED_BATCH,
    PretrainConfig,
    image_augment,
)
from napari_neuroreview.core.tasks.stroke.tabular import scarf_corrupt
from napari_neuroreview.core.train.loop import LoopConfig, fit
from napari_neuroreview.core.train.losses import clip_loss


@dataclass
class Part:
    """One part's inputs: images (n, 2, D, H, W) float16 (None for table-only rows), encoded table, labels."""

    images: np.ndarray | None
    table: np.ndarray
    y: np.ndarray


@dataclass
class Parts:
    """The labelled train, val and test parts of one table variant."""

    train: Part
    val: Part
    test: Part


Probabilities = tuple[np.ndarray, np.ndarray]  # (val, test)


# ----------------------------------------------------------------------------- scikit-learn rows


def _logistic():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


def _fit_predict(model, x_train: np.ndarray, y: np.ndarray, x_val: np.ndarray, x_test: np.ndarray) -> Probabilities:
    model.fit(x_train, y)
    return model.predict_proba(x_val)[:, 1], model.predict_proba(x_test)[:, 1]


def logistic_table(parts: Parts) -> Probabilities:
    """Logistic regression on the encoded table (deterministic: the same for every seed)."""
    return _fit_predict(_logistic(), parts.train.table, parts.train.y, parts.val.table, parts.test.table)


def mlp_table(parts: Parts, seed: int) -> Probabilities:
    """scikit-learn MLP (one hidden layer of 64, L2 1e-3, Adam, 200 iterations) on the encoded table."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), MLPClassifier((64,), alpha=1e-3, max_iter=200, random_state=seed))
    with warnings.catch_warnings():  # a fixed budget of 200 epochs, converged or not: the recipe, not a fault
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _fit_predict(model, parts.train.table, parts.train.y, parts.val.table, parts.test.table)


def clinical_markers(parts: Parts, markers: dict[str, np.ndarray]) -> Probabilities:
    """Logistic regression on the encoded table beside the marker matrix (``markers``: part -> (n, 5))."""
    x = {p: np.column_stack([getattr(parts, p).table, markers[p]]) for p in ("train", "val", "test")}
    return _fit_predict(_logistic(), x["train"], parts.train.y, x["val"], x["test"])


def late_fusion(table: Probabilities, image: Probabilities) -> Probabilities:
    """The mean of two rows' PROBABILITIES (val and test)."""
    return (table[0] + image[0]) / 2.0, (table[1] + image[1]) / 2.0


# ----------------------------------------------------------------------------- self-supervised encoders


class _Encoder(nn.Module):
    """One side of ``StrokeClipNet`` (its encoder and projection): unit-norm embeddings, and features before."""

    def __init__(self, encoder: nn.Module, projection: nn.Module) -> None:
        super().__init__()
        self.encoder, self.projection = encoder, projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.encoder(x)), dim=1)


class TwoViews:
    """The loop's Trainable for a single-modality InfoNCE: ``view_a(rows)`` against ``view_b(rows)``.

    Why ``clip_loss``: the pretraining's InfoNCE (symmetric, temperature 0.1); here both sides
    are one encoder's embeddings of two views of the same subjects, so each row's positive is
    its own other view and the batch's other subjects are its negatives. Global batches of
    ``min(batch, n)``, the last partial one dropped (as ``pretrain.ClipBatches``).
    """

    def __init__(self, data: torch.Tensor, views, batch: int, temperature: float,
                 val: torch.Tensor | None = None) -> None:
        self.data, self.views, self.temperature = data, views, temperature
        self.size = min(batch, len(data))
        self.steps_per_epoch = max(1, len(data) // self.size)
        self.val = val if val is not None and len(val) >= 2 else None

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.data), generator=generator)
        for k in range(self.steps_per_epoch):
            rows = order[k * self.size:(k + 1) * self.size]
            yield self.views(self.data[rows], generator)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return clip_loss(model(batch[0]), model(batch[1]), self.temperature)

    def val_loss(self, model: nn.Module) -> float | None:
        """InfoNCE of the val subjects' two views drawn from a fixed generator (seed 0)."""
        if self.val is None:
            return None
        a, b = self.views(self.val, torch.Generator().manual_seed(0))
        with torch.no_grad():
            za = torch.cat([model(a[i:i + EMBED_BATCH]) for i in range(0, len(a), EMBED_BATCH)])
            zb = torch.cat([model(b[i:i + EMBED_BATCH]) for i in range(0, len(b), EMBED_BATCH)])
            return float(clip_loss(za, zb, self.temperature))


def _features(encoder: nn.Module, x: np.ndarray) -> np.ndarray:
    encoder.eval()
    with torch.no_grad():
        return torch.cat([encoder(torch.as_tensor(x[i:i + EMBED_BATCH]).float())
                          for i in range(0, len(x), EMBED_BATCH)]).numpy()


def _probe(encoder: nn.Module, parts: Parts, side: str) -> Probabilities:
    """Logistic probe (standardised) on the frozen encoder's features of the labelled parts."""
    feats = {p: _features(encoder, getattr(getattr(parts, p), side)) for p in ("train", "val", "test")}
    return _fit_predict(_logistic(), feats["train"], parts.train.y, feats["val"], feats["test"])


def scarf(pool: np.ndarray, pool_val: np.ndarray, groups: list[slice], parts: Parts, config: PretrainConfig,
          device: str) -> tuple[Probabilities, dict]:
    """SCARF pretraining (``config.seed``) on the pretraining rows ``pool``, then the logistic probe."""
    torch.manual_seed(config.seed)
    clip = StrokeClipNet(pool.shape[1], config.width, config.embed_dim, config.hidden, 2)
    model = _Encoder(clip.table_encoder, clip.table_projection)
    table = torch.from_numpy(pool)

    def views(rows: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return rows, scarf_corrupt(rows, table, groups, config.corruption, generator)

    trainable = TwoViews(table, views, config.batch, config.temperature, torch.from_numpy(pool_val))
    loop = LoopConfig(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay, seed=config.seed)
    history = run_to_completion(fit(model, trainable, loop, device, what="SCARF pretraining, epoch"))
    return _probe(model.encoder, parts, "table"), {"train_loss": history.train_loss, "val_loss": history.val_loss,
                                                   "best_epoch": history.best_epoch}


def simclr(images: np.ndarray, val_images: np.ndarray, parts: Parts, config: PretrainConfig,
           device: str) -> tuple[Probabilities, dict]:
    """SimCLR-style pretraining of the image encoder on ``images`` (no table), then the logistic probe."""
    torch.manual_seed(config.seed)
    clip = StrokeClipNet(1, config.width, config.embed_dim, config.hidden, images.shape[1])
    model = _Encoder(clip.image_encoder, clip.image_projection)
    augment = image_augment(config)

    def views(rows: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        augment.set_random_state(seed=int(torch.randint(2**31 - 1, (1,), generator=generator)))
        turn = lambda: torch.stack([torch.as_tensor(augment(x.float())).as_subclass(torch.Tensor) for x in rows])
        return turn(), turn()

    trainable = TwoViews(torch.from_numpy(images), views, config.batch, config.temperature,
                         torch.from_numpy(val_images))
    loop = LoopConfig(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay, seed=config.seed)
    history = run_to_completion(fit(model, trainable, loop, device, what="SimCLR pretraining, epoch"))
    return _probe(model.encoder, parts, "images"), {"train_loss": history.train_loss,
                                                    "val_loss": history.val_loss, "best_epoch": history.best_epoch}


# ----------------------------------------------------------------------------- supervised networks


class OneHead(RiskBatches):
    """``downstream.RiskBatches`` (stratified batches keeping every subject, augmentation) with one head's BCE."""

    def __init__(self, head: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.head = head

    def head_loss(self, logits: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.binary_cross_entropy_with_logits(logits[self.head], labels)


def supervised(head: str, parts: Parts, width: int, hidden: int, config: DownstreamConfig, device: str
               ) -> tuple[Probabilities, dict]:
    """A ``StrokeRiskNet`` from random weights trained end to end on ``head``'s BCE (``"image"`` or ``"fused"``)."""
    torch.manual_seed(config.seed)
    net = StrokeRiskNet(parts.train.table.shape[1], width, hidden, parts.train.images.shape[1])
    val = (parts.val.images, parts.val.table, parts.val.y.astype(np.float32))
    batches = OneHead(head, parts.train.images, parts.train.table, parts.train.y.astype(np.float32), config, val)
    loop = LoopConfig(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay, seed=config.seed)
    history = run_to_completion(fit(net, batches, loop, device, what=f"Supervised {head}, epoch"))

    def proba(part: Part) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-predict_logits(net, part.images, part.table)[head].astype(np.float64)))

    return (proba(parts.val), proba(parts.test)), {"train_loss": history.train_loss, "val_loss": history.val_loss,
                                                   "best_epoch": history.best_epoch}
