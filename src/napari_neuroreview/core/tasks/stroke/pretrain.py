"""Self-supervised pretraining of the stroke model's encoders: CLIP + image-tabular matching (issue 13 item 2).

What a step does (:class:`ClipBatches`, the one loop's :class:`~...train.loop.Trainable`):

* the image view: T1 + FLAIR (2 channels, each divided by the median of its head's
  foreground, ``core.reading.window.foreground``), turned by MONAI's ``RandAffine`` with
  rotations of up to :data:`MAX_ROTATION_RAD` about each axis. In RADIANS, which is what
  ``RandAffine`` takes: the study's code meant 10 degrees and passed ``10``, i.e. 573
  degrees; :func:`image_augment` refuses more than a quarter turn;
* the tabular view: the encoded row (``tabular.TableEncoding``, fitted on the training
  subjects) with SCARF corruption of :attr:`PretrainConfig.corruption` of its columns;
* the loss: CLIP InfoNCE (``core.train.losses.clip_loss``) between the two views' embeddings,
  plus :attr:`PretrainConfig.itm_weight` x the binary cross-entropy of the ITM head on the
  true pairs and the hard negatives (``models.stroke_net``: per image one table, per table
  one image, drawn from the softmax of the similarities).

The effective contrastive batch: under ``torchrun`` the global batch (every rank's rows,
gathered with their gradients), and a memory queue of the last :attr:`PretrainConfig.queue`
embeddings of each side (MoCo: made by momentum copies of the encoders, an exponential
moving average of the online ones (:attr:`PretrainConfig.momentum`), so that the queue's
negatives stay consistent as the online encoders move; the newest first, the same on every
rank because it is filled with the gathered keys; a subject's own past entries are left out
of its batch's negatives). A batch of 32 and a queue of 256 give each row up to 287
negatives.

Which subjects (:func:`pretraining_subjects`): the split's train part learns and its val part
gives the validation loss (the loop keeps the best epoch); the test part is never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...errors import InputFileError, InsufficientDataError
from ...io.nifti import load_volume
from ...io.resample import same_grid
from ...models.stroke_net import StrokeClipNet
from ...progress import Progress, TaskGenerator
from ...reading.window import foreground
from ...registry import DEMO_NOTE, ModelCard, save_model
from ...train.distributed import gather_with_grad, rank_and_world
from ...train.loop import FitHistory, LoopConfig, fit
from ...train.losses import clip_loss
from .labels import read_stroke_table
from .tabular import TableEncoding, scarf_corrupt

__all__ = ["CHANNELS", "MAX_ROTATION_RAD", "MODEL_NAME", "TASK", "ClipBatches", "PretrainConfig", "Pretrained",
           "image_augment", "in_batches", "load_cohort_images", "load_images", "pretrain", "pretraining_subjects",
           "embed_all", "retrieval", "save_pretrained", "scale_to_foreground_median", "split_digest"]

MODEL_NAME = "stroke-pretrain"
TASK = "stroke"
#: The image channels, one file each in a subject's folder.
CHANNELS: tuple[str, ...] = ("t1", "flair")
#: Largest rotation about each axis: 10 degrees, in radians (what MONAI's RandAffine reads).
MAX_ROTATION_RAD: float = math.radians(10.0)
#: Embeddings per forward pass outside training (validation).
EMBED_BATCH = 32


@dataclass
class PretrainConfig:
    """The pretraining's architecture and recipe (module docstring; the CLI bounds what a user sets).

    Attributes
    ----------
    width : int
        The image ResNet's first-stage channels (``models.stroke_net``).
    embed_dim, hidden : int
        The CLIP embedding; the tabular MLP's and ITM head's width.
    temperature : float
        Of InfoNCE and of the hard negatives' softmax.
    itm_weight : float
        The ITM term's weight beside CLIP.
    queue : int
        Past embeddings kept per side as extra negatives (0: none).
    momentum : float
        Of the key encoders whose embeddings fill the queue (MoCo's EMA).
    corruption : float
        SCARF: the share of a row's columns replaced.
    rotation_rad : float
        Largest rotation about each axis, radians.
    epochs, batch, lr, weight_decay, seed
        The loop's (global batch: the same on one rank or many).
    """

    width: int = 8
    embed_dim: int = 64
    hidden: int = 128
    temperature: float = 0.1
    itm_weight: float = 1.0
    queue: int = 256
    momentum: float = 0.99
    corruption: float = 0.3
    rotation_rad: float = MAX_ROTATION_RAD
    epochs: int = 20
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


def image_augment(config: PretrainConfig) -> Any:
    """MONAI's RandAffine for one (C, D, H, W) image: rotations in radians, 5 % scaling, zeros outside."""
    from monai.transforms import RandAffine

    if not 0.0 <= config.rotation_rad <= math.pi / 2:  # set by code: degrees passed as radians is the bug to stop
        raise ValueError(f"rotation_rad={config.rotation_rad} is not an angle in radians up to a quarter turn")
    r = float(config.rotation_rad)
    return RandAffine(prob=1.0, rotate_range=(r, r, r), scale_range=(0.05, 0.05, 0.05), padding_mode="zeros")


def split_digest(split: dict[str, Any]) -> str:
    """sha256 of the split's subject assignment (each part's subjects, sorted; canonical JSON).

    Why: a pretraining card records it and ``stroke train`` compares it, so a split file edited
    by hand (a test subject moved to train) under the same cohort and seed is refused.
    """
    parts = {part: sorted(str(s) for s in split["subjects"][part]) for part in sorted(split["subjects"])}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def pretraining_subjects(split: dict[str, Any]) -> dict[str, list[str]]:
    """The subjects pretraining reads: the split's train and val parts (never its test part)."""
    return {part: list(split["subjects"][part]) for part in ("train", "val")}


def scale_to_foreground_median(data: np.ndarray, what: str) -> np.ndarray:
    """float32 ``data`` divided by the median of its head's foreground (``reading.window.foreground``).

    The one intensity normalisation of training and of ``stroke predict`` (they must not drift
    apart). ``what`` begins the sentence when there is nothing to divide by.
    """
    data = np.asarray(data, np.float32)
    head = foreground(data.ravel())
    scale = float(np.median(head)) if head.size else 0.0
    if not scale > 0:
        raise InputFileError(f"{what} has no signal (no voxel above zero; NaN or infinite voxels count as 0), so it "
                             "cannot be normalised.")
    return data / scale


def in_batches(fn: Callable[..., Any], *arrays: np.ndarray | torch.Tensor, device: torch.device | str,
               batch: int = EMBED_BATCH) -> list[Any]:
    """``fn`` on each ``batch`` rows of ``arrays`` (as float32 tensors on ``device``) without gradients, in order.

    The one batched inference loop of validation, the heads' logits and the features.
    """
    out = []
    with torch.no_grad():
        for start in range(0, len(arrays[0]), batch):
            out.append(fn(*(torch.as_tensor(a[start:start + batch]).float().to(device) for a in arrays)))
    return out


def load_cohort_images(cohort_dir: str | Path, subjects: Sequence[str]
                       ) -> TaskGenerator[tuple[np.ndarray, np.ndarray]]:
    """(n, 2, D, H, W) float16 of the subjects' T1 and FLAIR, each divided by its foreground's median, and their grid's
    affine (voxel -> world mm; the model card records it so that ``stroke predict`` can tell a T1 on this grid from
    one that must be registered).

    Every scan must be on one grid, shape and affine (a cohort is rendered on one); else one sentence.
    """
    out: np.ndarray | None = None
    affine: np.ndarray | None = None
    for i, subject in enumerate(subjects):
        for c, channel in enumerate(CHANNELS):
            path = Path(cohort_dir) / subject / f"{channel}.nii.gz"
            volume = load_volume(path)
            data = volume.data.astype(np.float32)
            if out is None or affine is None:
                out = np.zeros((len(subjects), len(CHANNELS), *data.shape), np.float16)
                affine = np.asarray(volume.affine, float)
            if not same_grid(data.shape, volume.affine, out.shape[2:], affine):
                raise InputFileError(f"{path}: is on another grid (shape {data.shape}, affine) than the cohort's first "
                                     f"scan ({out.shape[2:]}); a cohort's scans share one grid.")
            out[i, c] = scale_to_foreground_median(data, f"{path}:")
        yield Progress(i + 1, len(subjects), f"Reading scans {i + 1}/{len(subjects)}")
    if out is None or affine is None:
        return np.zeros((0, len(CHANNELS), 0, 0, 0), np.float16), np.eye(4)
    return out, affine


def load_images(cohort_dir: str | Path, subjects: Sequence[str]) -> TaskGenerator[np.ndarray]:
    """The images of :func:`load_cohort_images` without their affine (evaluation and the benchmark)."""
    images, _affine = yield from load_cohort_images(cohort_dir, subjects)
    return images


class ClipBatches:
    """The loop's Trainable (module docstring): global batches of ``min(batch, n)`` rows, the last partial one dropped.

    Why drop it: every step then has the same contrastive batch, and the batch is the same
    on one rank and on many. ``pool`` (the encoded training rows) is what SCARF draws from.
    """

    def __init__(self, images: np.ndarray, table: np.ndarray, encoding: TableEncoding, config: PretrainConfig,
                 val_images: np.ndarray | None = None, val_table: np.ndarray | None = None) -> None:
        if len(images) < 2:
            raise InsufficientDataError(f"pretraining needs at least 2 training subjects, the split has {len(images)}")
        self.images, self.table = torch.from_numpy(images), torch.from_numpy(table)
        self.groups = encoding.groups
        self.config = config
        self.size = min(config.batch, len(images))
        world = rank_and_world()[1]
        if self.size < world:  # a rank would get no row of a batch (an empty shard)
            raise InsufficientDataError(f"the global batch of {self.size} (the batch, at most the {len(images)} "
                                        f"training subjects) is smaller than the {world} processes; use fewer.")
        self.steps_per_epoch = len(images) // self.size
        self.val = (None if val_images is None or len(val_images) < 2
                    else (torch.from_numpy(val_images), torch.from_numpy(val_table)))
        #: Past (image embeddings, table embeddings, subject rows), newest first.
        self.queue: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """Augmented images, corrupted rows and the hard negatives' uniform draws, from the loop's generator."""
        augment = image_augment(self.config)
        augment.set_random_state(seed=int(torch.randint(2**31 - 1, (1,), generator=generator)))
        order = torch.randperm(len(self.images), generator=generator)
        for k in range(self.steps_per_epoch):
            rows = order[k * self.size:(k + 1) * self.size]
            images = torch.stack([torch.as_tensor(augment(x.float())).as_subclass(torch.Tensor)
                                  for x in self.images[rows]])
            table = scarf_corrupt(self.table[rows], self.table, self.groups, self.config.corruption, generator)
            yield {"image": images, "table": table, "uniform": torch.rand(len(rows), 2, generator=generator),
                   "index": rows}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """CLIP (with the queue's negatives) + the ITM cross-entropy; then the batch joins the queue.

        The queue's entries of this batch's own subjects (their embeddings of an earlier step)
        are left out: they would be false negatives, near copies of the positive, which push
        every embedding towards the same point.
        """
        cfg = self.config
        out = model(batch["image"], batch["table"], batch["uniform"], cfg.temperature, cfg.momentum)
        subjects = gather_with_grad(batch["index"])
        queue_img = queue_tab = None
        if self.queue is not None:
            others = ~torch.isin(self.queue[2], subjects)
            queue_img, queue_tab = self.queue[0][others], self.queue[1][others]
        loss = clip_loss(out["z_img"], out["z_tab"], cfg.temperature, queue_a=queue_img, queue_b=queue_tab)
        loss = loss + cfg.itm_weight * F.binary_cross_entropy_with_logits(out["itm_logits"], out["itm_targets"])
        if cfg.queue > 0:
            new = (out["k_img"], out["k_tab"], subjects)
            self.queue = new if self.queue is None else tuple(  # type: ignore[assignment]
                torch.cat([n, q])[:cfg.queue] for n, q in zip(new, self.queue))
        return loss

    def val_loss(self, model: nn.Module) -> float | None:
        """CLIP loss of the val subjects as one batch (no augmentation, no corruption, no queue); None without."""
        if self.val is None:
            return None
        net: StrokeClipNet = model  # the loop hands the bare model
        z_img, z_tab = embed_all(net, *self.val, device=next(net.parameters()).device)
        with torch.no_grad():
            return float(clip_loss(z_img, z_tab, self.config.temperature))


def embed_all(net: StrokeClipNet, images: np.ndarray | torch.Tensor, table: np.ndarray | torch.Tensor,
              device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row's unit CLIP embeddings (image side, table side), :data:`EMBED_BATCH` rows at a time, no gradients."""
    parts = in_batches(net.embed, images, table, device=device)
    z_img, z_tab = (torch.cat(side) for side in zip(*parts))
    return z_img, z_tab


def retrieval(net: StrokeClipNet, images: np.ndarray | torch.Tensor, table: np.ndarray | torch.Tensor,
              device: torch.device | str) -> dict[str, float]:
    """How well the encoders pair each subject's image with its own row among all the subjects given.

    Why: the CLIP loss alone does not tell whether the encoders aligned anything (its chance
    level, log n, moves with n, and a training loss with a MoCo queue of stale keys falls
    without any alignment). The rank of the true partner among the n rows, both ways (image
    to rows, row to images; 1 is best), beside what unrelated embeddings give: a median of
    (n + 1) / 2 and a top-5 share of 5 / n.
    """
    z_img, z_tab = embed_all(net, images, table, device=device)
    similarity = z_img.cpu() @ z_tab.cpu().T
    own = similarity.diagonal()
    ranks = torch.cat([(similarity > own[:, None]).sum(1), (similarity.T > own[:, None]).sum(1)]).numpy() + 1
    n = len(own)
    return {"subjects": float(n), "median_rank": float(np.median(ranks)), "median_rank_chance": (n + 1) / 2,
            "top5": float(np.mean(ranks <= 5)), "top5_chance": min(5, n) / n}


@dataclass
class Pretrained:
    """A pretraining run: the network, the table's encoding, the history, and what it was trained on.

    ``val_retrieval``: :func:`retrieval` on the validation subjects with the kept weights
    (None without at least 2 of them).
    """

    net: StrokeClipNet
    encoding: TableEncoding
    history: FitHistory
    image_shape: tuple[int, ...]
    subjects: dict[str, list[str]]
    image_affine: np.ndarray | None = None
    val_retrieval: dict[str, float] | None = None


def pretrain(cohort_dir: str | Path, split: dict[str, Any], config: PretrainConfig, device: torch.device | str
             ) -> TaskGenerator[Pretrained]:
    """Read the split's train and val subjects (scans, then rows) and pretrain on the one loop."""
    rows = {r["subject"]: r for r in read_stroke_table(cohort_dir)}
    subjects = pretraining_subjects(split)
    encoding = TableEncoding.fit([rows[s] for s in subjects["train"]])
    every = subjects["train"] + subjects["val"]
    images, affine = yield from load_cohort_images(cohort_dir, every)
    n = len(subjects["train"])
    table = encoding.encode([rows[s] for s in every])
    torch.manual_seed(config.seed)  # the initial weights
    net = StrokeClipNet(encoding.width, config.width, config.embed_dim, config.hidden, len(CHANNELS))
    batches = ClipBatches(images[:n], table[:n], encoding, config, images[n:], table[n:])
    loop = LoopConfig(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay, seed=config.seed)
    history = yield from fit(net, batches, loop, device, what="Stroke pretraining, epoch")
    found = None if len(images) - n < 2 else retrieval(net.eval(), images[n:], table[n:], next(net.parameters()).device)
    return Pretrained(net, encoding, history, tuple(images.shape[2:]), subjects, affine, found)


def save_pretrained(result: Pretrained, config: PretrainConfig, root: str | Path, version: str, cohort: str,
                    split: dict[str, Any], split_file: str, notes: str = DEMO_NOTE) -> ModelCard:
    """Write the encoders as a registry version; the card names the cohort's fingerprint, the split and the config.

    ``cohort`` is the cohort folder's name (no path: cards leave the machine); ``split_file``
    the split's file name beside the weights.
    """
    history = result.history
    metrics = {"train_loss_last": history.train_loss[-1]} if history.train_loss else {}
    if history.val_loss:
        metrics["val_clip_loss_best"] = min(history.val_loss)
        metrics["val_clip_loss_chance"] = math.log(len(result.subjects["val"]))
    for key, value in (result.val_retrieval or {}).items():
        if key != "subjects":
            metrics[f"val_retrieval_{key}"] = value
    card = ModelCard(
        name=MODEL_NAME, version=version, task=TASK, parent=None, notes=notes,
        training_data=(f"stroke cohort {cohort} (fingerprint {split['cohort'][:12]}): {len(result.subjects['train'])} "
                       f"training and {len(result.subjects['val'])} validation subjects of split {split_file}; "
                       "no test subject"),
        metrics={k: float(v) for k, v in metrics.items() if math.isfinite(v)},
        config={**dataclasses.asdict(config), "channels": list(CHANNELS), "image_shape": list(result.image_shape),
                "image_affine": None if result.image_affine is None else np.asarray(result.image_affine).tolist(),
                "table": result.encoding.to_json(), "table_width": result.encoding.width,
                "cohort_fingerprint": split["cohort"], "split": {"file": split_file, "seed": split["seed"], "sha256": split_digest(split)},
                "train_loss": history.train_loss, "val_loss": history.val_loss, "best_epoch": history.best_epoch},
    )
    state = {k: v.detach().cpu().contiguous() for k, v in result.net.state_dict().items()}
    save_model(state, card, root)
    return card
