"""Train the two-stage pre/post model: stage 1 contrastive encoders, stage 2 logistic heads.

Stage 1 (:func:`train_stage1`) fits :class:`~...models.network_encoder.NetworkPairEncoder`
on every (scan, network) row with

* a **cross-modal InfoNCE** (CLIP, symmetric): in a batch, each map embedding must pick
  its own time course's embedding out of all the batch's time courses and vice versa
  (:func:`~...train.losses.clip_loss`). It asks the two encoders to agree on what a map and its time
  course share: the network, and how this network behaves in this scan;
* a **supervised contrastive** term (Khosla et al. 2020) over the ten (network, state)
  classes on the pooled map and time-course embeddings (:func:`~...train.losses.supcon_loss`): same
  network and state together, the rest apart. This term uses the pre/post labels, so it
  (and therefore all of stage 1) must be fitted inside each cross-validation fold.

The weight of each term is in :class:`Stage1Config`. Stage 2 (:func:`train_stage2`) is
one standardised logistic regression per network on ``[embeddings, summary features]``;
the baseline (:func:`fit_baseline`) is the same regression on the summary features
alone. Both choose their L2 strength C by an inner cross-validation grouped by patient,
on the training rows only (:func:`fit_logistic`).

Stage 1 runs on the one training loop (``core.train.loop.fit``): :class:`Stage1Batches`
gives it every row once per epoch in shuffled batches (both views of a row in the same
batch, in-batch negatives) and the loss; the loop owns AdamW, the one-cycle schedule,
progress, the device and ``torchrun``. No validation split (56 patients are too few to
spare one inside a fold; the epoch count is fixed instead). Under ``torchrun`` the
embeddings are gathered across ranks (``core.train.distributed.gather_with_grad``), so
the contrastive terms see the whole global batch's negatives.

Reproducibility: the initial weights, the batch order, the map shifts and the
time-course windows all come from ``config.seed``; on a CPU two runs give the same
weights bit for bit (on CUDA, up to the GPU's non-deterministic reductions).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...device import resolve_device
from ...errors import InsufficientDataError
from ...models.network_encoder import TC_LENGTH, NetworkPairEncoder
from ...progress import Progress, TaskGenerator, within
from ...registry import DEMO_NOTE, ModelCard
from ...train.distributed import gather_with_grad
from ...train.loop import FitHistory, LoopConfig, fit
from ...train.losses import clip_loss, supcon_loss
from .features import GridContext, NetworkRows, model_context
from .model import MODEL_NAME, TASK, LogisticModel, PrePostModel, embed_rows, stage2_design

__all__ = [
    "Stage1Batches",
    "Stage1Config",
    "Stage2Config",
    "fit_baseline",
    "fit_logistic",
    "train_on_cohort",
    "train_prepost",
    "train_stage1",
    "train_stage2",
]


@dataclass
class Stage1Config:
    """Stage-1 settings; the defaults train five folds of 56 patients in minutes on a CPU.

    Attributes
    ----------
    epochs : int
        Passes over the training rows (fixed: no validation split inside a fold).
    batch_size : int
        Rows per batch; each row brings its map and its time course, so a batch holds
        ``batch_size - 1`` cross-modal negatives per anchor.
    lr, weight_decay : float
        AdamW with a OneCycle schedule (peak ``lr``).
    temperature : float
        Of the cross-modal InfoNCE (0.1 as in MMCL, Hager et al. 2023).
    sup_temperature : float
        Of the supervised contrastive term.
    clip_weight, supcon_weight : float
        Weights of the two terms in the loss.
    width, embed_dim, network_dim, pool : int
        Encoder shape (see ``NetworkPairEncoder``).
    map_shift : int
        Largest random shift of a map, in voxels per axis (6 mm each): registration
        jitter between patients.
    map_noise : float
        Standard deviation of the noise added to a normalised map.
    seed : int
        Everything random in training derives from it.
    """

    epochs: int = 30
    batch_size: int = 96
    lr: float = 3e-3
    weight_decay: float = 1e-3
    temperature: float = 0.1
    sup_temperature: float = 0.2
    clip_weight: float = 1.0
    supcon_weight: float = 1.0
    width: int = 8
    embed_dim: int = 32
    network_dim: int = 8
    pool: int = 4
    map_shift: int = 1
    map_noise: float = 0.1
    seed: int = 0


@dataclass
class Stage2Config:
    """Stage-2 (and baseline) logistic regression settings.

    Attributes
    ----------
    Cs : tuple of float
        Inverse L2 strengths tried; the one with the best inner-CV AUC (grouped by
        patient, training rows only) is refitted on all training rows. Ties go to the
        smaller C (stronger regularisation).
    inner_folds : int
        Folds of that inner cross-validation.
    use_embeddings, use_features : bool
        What stage 2 reads (both, as in the study; switch one off to ablate).
    representation : str
        Which stage-1 output stage 2 reads: ``'projection'`` (the contrastive
        embeddings) or ``'encoder'`` (the features before the projection heads); see
        ``model.embed_rows``.
    """

    Cs: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    inner_folds: int = 3
    use_embeddings: bool = True
    use_features: bool = True
    representation: str = "projection"


def _shift_maps(maps: torch.Tensor, shifts: np.ndarray) -> torch.Tensor:
    """Roll each map by its own (dx, dy, dz) voxels (the grid border is background)."""
    if not shifts.any():
        return maps
    return torch.stack([torch.roll(m, tuple(int(s) for s in sh), dims=(0, 1, 2)) for m, sh in zip(maps, shifts)])


def _check_labels(rows: NetworkRows) -> None:
    """Refuse rows a model cannot learn pre/post from, before any epoch is spent.

    Too few rows or only one state is the user's data (InsufficientDataError); an
    unlabelled row is the caller's bug (the cohort loader labels every row from its
    folder name), so it stays a ValueError with its traceback.
    """
    if len(rows) == 0:
        raise InsufficientDataError("There are no scans to train on.")
    if (rows.labels < 0).any():
        raise ValueError("every training row needs a pre/post label")
    if np.unique(rows.labels).size < 2:
        state = "post" if rows.labels[0] else "pre"
        raise InsufficientDataError(f"Every training scan is a {state} scan; a pre/post model needs both.")


class Stage1Batches:
    """Stage 1 as a ``core.train.loop.Trainable``: shuffled rows, augmented, and the two-term loss.

    Each epoch is a permutation of the rows split into ``ceil(n / batch_size)`` batches;
    every row brings its map (randomly shifted, scaled and noised) and a random window of
    its time course, from a numpy generator seeded with ``config.seed``.
    """

    def __init__(self, rows: NetworkRows, config: Stage1Config) -> None:
        self.rows, self.config = rows, config
        self.rng = np.random.default_rng(config.seed)
        self.maps = torch.from_numpy(rows.maps)
        self.networks = torch.from_numpy(rows.networks)
        self.classes = torch.from_numpy(rows.networks * 2 + rows.labels)
        self.steps_per_epoch = max(1, int(np.ceil(len(rows) / config.batch_size)))

    def batches(self, epoch: int, generator: torch.Generator) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch's batches (on the CPU; the loop moves them)."""
        config, rng = self.config, self.rng
        for idx in np.array_split(rng.permutation(len(self.rows)), self.steps_per_epoch):
            shifts = rng.integers(-config.map_shift, config.map_shift + 1, size=(idx.size, 3))
            windows = np.stack([self.rows.windows(int(i), 1, TC_LENGTH, rng)[0] for i in idx])
            scale = rng.uniform(0.9, 1.1, size=(idx.size, 1, 1, 1)).astype(np.float32)
            noise = rng.standard_normal((idx.size, *self.rows.maps.shape[1:])).astype(np.float32) * config.map_noise
            idx_t = torch.from_numpy(idx)
            maps = _shift_maps(self.maps[idx_t], shifts) * torch.from_numpy(scale)
            maps = maps + torch.from_numpy(noise)
            yield {"maps": maps, "tcs": torch.from_numpy(windows), "networks": self.networks[idx_t],
                   "classes": self.classes[idx_t]}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-modal InfoNCE + SupCon over the (network, state) classes, on the global batch."""
        config = self.config
        z_map, z_tc = model(batch["maps"], batch["tcs"], batch["networks"])
        z_map, z_tc, classes = gather_with_grad(z_map), gather_with_grad(z_tc), gather_with_grad(batch["classes"])
        loss = config.clip_weight * clip_loss(z_map, z_tc, config.temperature)
        if config.supcon_weight:
            loss = loss + config.supcon_weight * supcon_loss(
                torch.cat([z_map, z_tc]), torch.cat([classes, classes]), config.sup_temperature)
        return loss


def train_stage1(
    rows: NetworkRows, config: Stage1Config | None = None, device: str = "auto",
) -> TaskGenerator[tuple[NetworkPairEncoder, FitHistory]]:
    """Fit a fresh encoder on labelled rows; yields a :class:`Progress` every batch.

    Parameters
    ----------
    rows : NetworkRows
        Training rows only (labels 0/1): the supervised term reads their labels.
    config : Stage1Config, optional
    device : str
        ``auto``, ``cpu``, ``cuda``...: see ``core.device.resolve_device``.

    Returns
    -------
    (encoder, history) : the encoder in eval mode on the chosen device; the mean loss
    per epoch in ``history.train_loss``.
    """
    config = config or Stage1Config()
    _check_labels(rows)
    dev = resolve_device(device).device
    torch.manual_seed(config.seed)  # the initial weights and the dropout masks
    batches = Stage1Batches(rows, config)
    encoder = NetworkPairEncoder(len(rows.network_names) or 5, config.width, config.embed_dim,
                                 config.network_dim, config.pool).to(dev)
    loop = LoopConfig(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay, seed=config.seed)
    history = yield from fit(encoder, batches, loop, dev, what="Stage 1, epoch")
    return encoder, history


def fit_logistic(X: np.ndarray, y: np.ndarray, groups: np.ndarray, config: Stage2Config | None = None
                 ) -> LogisticModel:
    """Standardise, choose C by inner grouped CV (AUC), refit on all rows.

    Parameters
    ----------
    X : (N, F) inputs; y : (N,) 0/1 labels; groups : (N,) patient ids (the inner folds
    keep a patient's rows together, like the outer ones).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    config = config or Stage2Config()
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    if np.unique(y).size < 2:
        raise InsufficientDataError("Stage 2 needs both pre and post scans of a network to fit, and got one state.")

    def make(C: float) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, solver="newton-cholesky", max_iter=200))

    best_C = config.Cs[len(config.Cs) // 2]
    n_inner = min(config.inner_folds, np.unique(groups).size)
    if len(config.Cs) > 1 and n_inner >= 2:
        folds = list(GroupKFold(n_splits=n_inner).split(X, y, groups))
        best = -np.inf
        for C in sorted(config.Cs):
            scores = []
            for tr, te in folds:
                if np.unique(y[tr]).size < 2 or np.unique(y[te]).size < 2:
                    continue
                scores.append(roc_auc_score(y[te], make(C).fit(X[tr], y[tr]).decision_function(X[te])))
            score = float(np.mean(scores)) if scores else -np.inf
            if score > best + 1e-9:
                best, best_C = score, C
    pipe = make(best_C).fit(X, y)
    scaler, lr = pipe[0], pipe[-1]
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    return LogisticModel(scaler.mean_.copy(), scale, lr.coef_[0].copy(), float(lr.intercept_[0]), float(best_C), int(y.size))


def _per_network(rows: NetworkRows, X: np.ndarray, config: Stage2Config) -> dict[str, LogisticModel]:
    heads = {}
    for k, name in enumerate(rows.network_names):
        sel = rows.networks == k
        if sel.any():
            heads[name] = fit_logistic(X[sel], rows.labels[sel], rows.groups[sel], config)
    return heads


def train_stage2(rows: NetworkRows, embeddings: np.ndarray, config: Stage2Config | None = None
                 ) -> dict[str, LogisticModel]:
    """One logistic model per network on ``[embeddings, summary features]`` of training rows.

    Note: the embeddings of training rows come from an encoder fitted on those very rows,
    so they separate pre from post a little better than a new scan's will; the inner-CV
    choice of C therefore leans to weak regularisation. Cross-fitting stage 1 inside the
    fold would remove that bias at k times the training time; the outer cross-validation
    (``evaluate.py``) measures the model as trained here, so its numbers stay honest.
    """
    config = config or Stage2Config()
    _check_labels(rows)
    X = stage2_design(embeddings if config.use_embeddings else None,
                      rows.features if config.use_features else None)
    return _per_network(rows, X, config)


def fit_baseline(rows: NetworkRows, config: Stage2Config | None = None) -> dict[str, LogisticModel]:
    """The conventional baseline: per network, logistic regression on the summary features only."""
    _check_labels(rows)
    return _per_network(rows, stage2_design(None, rows.features), config or Stage2Config())


def train_prepost(
    rows: NetworkRows, stage1: Stage1Config | None = None, stage2: Stage2Config | None = None,
    device: str = "auto", context: GridContext | None = None,
) -> TaskGenerator[tuple[PrePostModel, dict[str, Any]]]:
    """Both stages on labelled rows -> an unsaved :class:`PrePostModel` and a training report.

    ``context`` is the grid the rows were built on (default: the model grid). The report
    holds the loss history and both configs; save the model with
    ``model.save_prepost_model``.
    """
    stage1 = stage1 or Stage1Config()
    stage2 = stage2 or Stage2Config()
    if not (stage2.use_embeddings and stage2.use_features):
        raise ValueError("a shipped model reads embeddings and features (the ablations are for evaluation only)")
    dev = resolve_device(device).device
    encoder, history = yield from train_stage1(rows, stage1, device)
    total = stage1.epochs * max(1, int(np.ceil(len(rows) / stage1.batch_size)))
    yield Progress(total, total, "Stage 2: logistic regression per network")
    embeddings = embed_rows(encoder, rows, dev, representation=stage2.representation)
    heads = train_stage2(rows, embeddings, stage2)
    context = context or model_context()
    if rows.maps.shape[1:] != context.shape:
        raise ValueError(f"training rows are on a {rows.maps.shape[1:]} grid, not {context.shape}")
    card = ModelCard(name=MODEL_NAME, version="0.0.0", task=TASK,
                     config={"stage1": asdict(stage1), "stage2_config": asdict(stage2)})
    model = PrePostModel(encoder, heads, card, dev, context, representation=stage2.representation)
    projection = embeddings if stage2.representation == "projection" else model.embed(rows)
    model.reference = {  # training scans in this model's space: the backdrop of a patient's t-SNE
        "embeddings": projection, "networks": [rows.network_names[int(k)] for k in rows.networks],
        "states": ["post" if int(v) else "pre" for v in rows.labels]}
    report = {"train_loss": history.train_loss, "n_rows": len(rows),
              "n_patients": int(np.unique(rows.groups).size), "stage1": asdict(stage1),
              "stage2": asdict(stage2), "C": {name: head.C for name, head in heads.items()}}
    return model, report


#: Metrics copied from the cross-validation into the model card.
CARD_METRICS: tuple[str, ...] = ("auc", "accuracy", "sensitivity", "specificity", "f1")


def train_on_cohort(
    cohort: str | Path, root: str | Path, version: str, *, stage1: Stage1Config | None = None,
    stage2: Stage2Config | None = None, cv_folds: int = 5, device: str = "auto", parent: str | None = None,
    n_boot: int = 200,
) -> TaskGenerator[tuple[ModelCard, dict[str, Any]]]:
    """Everything ``neuroreview networks train`` does: load, cross-validate, fit on all, save.

    1. Load the cohort (``cohort.load_cohort``: ICA folders or in-memory ICA; labels from
       the folder names).
    2. With ``cv_folds >= 2``: the patient-grouped cross-validation of ``evaluate.py``
       (both stages refitted per fold); its held-out per-network metrics, and the
       baseline's AUC, go into the card (``config["metrics_on"]`` says so). These are
       the honest numbers; the saved model itself is then trained on every patient.
    3. Train both stages on all scans and save version ``version`` under ``root``.

    Returns ``(card, report)``: the report holds the cross-validation table (text), its
    JSON, the training loss and the timings.

    The shipped ``weights/network-prepost/1.0.0`` were made with the defaults (CPU, seed 0)::

        neuroreview networks phantoms --out DIR --n 56 --seed 0
        neuroreview networks extract --cohort DIR
        neuroreview networks train --data DIR --out src/napari_neuroreview/weights --version 1.0.0 --device cpu

    (the last line is ``train_on_cohort('DIR', 'src/napari_neuroreview/weights', '1.0.0',
    device='cpu')``). On an idle 2-core CPU: loading the 112 ICA folders 19 s, the 5-fold
    cross-validation 73 s, the final training 17 s; writing the cohort about 9 min and
    its ICA 2-10 s per scan.
    """
    import time

    from .cohort import check_trainable, describe_cohort, is_simulated, load_cohort
    from .evaluate import EvaluationConfig, cross_validate
    from .features import build_rows
    from .model import save_prepost_model

    stage1, stage2 = stage1 or Stage1Config(), stage2 or Stage2Config()
    check_trainable(cohort, cv_folds)  # before minutes of loading
    started = time.perf_counter()
    span = 100
    total = 3 * span
    scans, warnings = yield from within(load_cohort(cohort), 0, span, total, "Loading the cohort")
    rows = build_rows(scans)
    seconds = {"load": time.perf_counter() - started}
    metrics: dict[str, float] = {}
    extra: dict[str, Any] = {"n_train_scans": len(scans), "n_train_patients": int(np.unique(rows.groups).size)}
    report: dict[str, Any] = {"warnings": warnings}
    if cv_folds >= 2:
        t0 = time.perf_counter()
        config = EvaluationConfig(folds=cv_folds, seed=stage1.seed, n_boot=n_boot, stage1=stage1, stage2=stage2,
                                  tsne=False)
        evaluation = yield from within(cross_validate(rows, config, device), span, span, total, "Cross-validation")
        for name in evaluation.networks:
            for metric in CARD_METRICS:
                metrics[f"{metric}_{name}"] = evaluation.metrics["model"][name][metric]["value"]
            metrics[f"baseline_auc_{name}"] = evaluation.metrics["baseline"][name]["auc"]["value"]
        metrics["auc_mean"] = float(np.mean([evaluation.metrics["model"][n]["auc"]["value"] for n in evaluation.networks]))
        metrics["baseline_auc_mean"] = float(
            np.mean([evaluation.metrics["baseline"][n]["auc"]["value"] for n in evaluation.networks]))
        extra["metrics_on"] = (
            f"held-out patients of a {cv_folds}-fold cross-validation by patient on the training cohort (both "
            "stages refitted in every fold; threshold 0.5); baseline_* = logistic regression on the summary "
            "features in the same folds. The saved model is then trained on all patients.")
        report["cv_table"] = evaluation.table()
        report["cv"] = evaluation.to_json()
        seconds["cross_validation"] = evaluation.seconds
        seconds["cross_validation_wall"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model, train_report = yield from within(train_prepost(rows, stage1, stage2, device), 2 * span, span, total,
                                             "Training on all patients")
    seconds["final_training"] = time.perf_counter() - t0
    extra["train_loss"] = train_report["train_loss"]
    extra["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    card = save_prepost_model(model, root, version, training_data=describe_cohort(cohort, scans),
                              metrics=metrics, parent=parent, extra_config=extra,
                              notes=DEMO_NOTE if is_simulated(cohort) else "")
    report.update({"train_loss": train_report["train_loss"], "seconds": extra["seconds"], "C": train_report["C"]})
    yield Progress(total, total, f"Saved {card.name} {card.version}")
    return card, report

