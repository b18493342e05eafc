"""The two-stage pre/post model as one object: save, find, load, predict.

* Stage 1, :class:`~napari_neuroreview.core.models.network_encoder.NetworkPairEncoder`,
  is saved through :mod:`core.registry` (safetensors + model card; never a pickle).
* Stage 2, one standardised logistic regression per network (:class:`LogisticModel`),
  is a handful of numbers; they go into the card's ``config["stage2"]`` as JSON (the
  scaler's means and scales, the coefficients, the intercept, the chosen C), so a
  version stays two files and nothing is unpickled.

Versions are found by the one model lookup, ``core.model_loading.load_version``: the user's
registry first (where ``neuroreview networks train`` writes), then the shipped demo
weights; the registry's default when no version is named.

What stage 2 reads (:func:`stage2_design`): the map embedding and the time-course
embedding of stage 1 (each unit length, ``embed_dim`` long) and the summary features of
:mod:`.features` (the "original ICA features" of the study).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import InputFileError, RegistryError
from ...models.network_encoder import MODEL_TR_S, TC_LENGTH, NetworkPairEncoder
from ...model_config import ConfigRule, check_config
from ...model_loading import card_mismatch, load_version
from ...registry import (
    DEMO_NOTE,
    ModelCard,
    save_model,
)
from .features import FEATURE_NAMES, GridContext, NetworkRows, ScanInputs, build_rows, model_context

__all__ = [
    "MODEL_NAME",
    "compare_pre_post",
    "TASK",
    "LogisticModel",
    "PrePostModel",
    "embed_rows",
    "load_prepost_model",
    "save_prepost_model",
    "stage2_design",
]

MODEL_NAME = "network-prepost"
TASK = "rsfmri-prepost"
#: Time-course windows whose embeddings are averaged at inference (evenly spaced).
N_WINDOWS = 4


@dataclass
class LogisticModel:
    """A standardised logistic regression as plain numbers (JSON in the model card).

    ``p = sigmoid(((x - mean) / scale) @ coef + intercept)``: the same as scikit-learn's
    ``StandardScaler`` + ``LogisticRegression`` it was fitted with, without pickling them.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    C: float = 1.0
    n_train: int = 0

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of post for each row of ``X`` (N, F)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.coef.size:
            raise ValueError(f"expected (N, {self.coef.size}) inputs, got {X.shape}")
        return ((X - self.mean) / self.scale) @ self.coef + self.intercept

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of post (N,)."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (floats keep their exact repr, so a reload predicts identically)."""
        return {"mean": [float(v) for v in self.mean], "scale": [float(v) for v in self.scale],
                "coef": [float(v) for v in self.coef], "intercept": float(self.intercept),
                "C": float(self.C), "n_train": int(self.n_train)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogisticModel:
        """Inverse of :meth:`to_json`."""
        return cls(np.asarray(data["mean"], float), np.asarray(data["scale"], float),
                   np.asarray(data["coef"], float), float(data["intercept"]), float(data.get("C", 1.0)),
                   int(data.get("n_train", 0)))


def stage2_design(embeddings: np.ndarray | None, features: np.ndarray | None) -> np.ndarray:
    """Stage-2 inputs: ``[embeddings, features]`` side by side (either may be None)."""
    parts = [np.asarray(p, dtype=np.float64) for p in (embeddings, features) if p is not None]
    if not parts:
        raise ValueError("stage 2 needs embeddings, features or both")
    return np.concatenate(parts, axis=1)


#: What stage 2 reads of stage 1: the projected embeddings or the encoder features before the heads.
REPRESENTATIONS = ("projection", "encoder")


@torch.no_grad()
def embed_rows(encoder: NetworkPairEncoder, rows: NetworkRows, device: torch.device | str = "cpu",
               n_windows: int = N_WINDOWS, batch_size: int = 64, tc_length: int = TC_LENGTH,
               representation: str = "projection") -> np.ndarray:
    """Stage-1 representation of every row: ``[map part, time-course part]``.

    ``representation='projection'``: the unit-length embeddings the losses shaped
    (N, 2 x embed_dim), the space of the t-SNE; the time-course embedding is the mean over
    ``n_windows`` evenly spaced windows, renormalised. ``'encoder'``: the encoders'
    features before the projection heads (N, 2 x 64), windows averaged. Deterministic
    (no random windows, eval mode).
    """
    if representation not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of {REPRESENTATIONS}, not {representation!r}")
    before = representation == "encoder"
    device = torch.device(device)
    encoder.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        idx = np.arange(start, min(start + batch_size, len(rows)))
        maps = torch.from_numpy(rows.maps[idx]).to(device)
        nets = torch.from_numpy(rows.networks[idx]).to(device)
        z_map = encoder.embed_maps(maps, nets, before_head=before)
        windows = np.stack([rows.windows(int(i), n_windows, tc_length) for i in idx])  # (B, W, L)
        flat = torch.from_numpy(windows.reshape(-1, tc_length)).to(device)
        z_tc = encoder.embed_timecourses(flat, nets.repeat_interleave(n_windows), before_head=before)
        z_tc = z_tc.view(len(idx), n_windows, -1).mean(dim=1)
        if not before:
            z_tc = torch.nn.functional.normalize(z_tc, dim=1)
        out.append(torch.cat([z_map, z_tc], dim=1).cpu().numpy().astype(np.float64))
    width = 2 * (encoder.map_encoder.out_dim if before else encoder.embed_dim)
    return np.concatenate(out) if out else np.zeros((0, width))


@dataclass
class PrePostModel:
    """Stage 1 (the encoder) and stage 2 (one logistic model per network), ready to predict.

    Attributes
    ----------
    encoder : NetworkPairEncoder
        In eval mode on ``device``.
    heads : dict of str to LogisticModel
        Stage 2, keyed by network name.
    card : ModelCard
        Where the weights came from (version 0.0.0 until saved).
    device : torch.device
    context : GridContext
        The grid the maps must be on, with its templates (for the summary features).
    n_windows : int
        Time-course windows averaged per embedding.
    representation : str
        What stage 2 reads of stage 1 (:data:`REPRESENTATIONS`, see :func:`embed_rows`).
    reference : dict or None
        Embeddings of the training scans for the t-SNE a patient is placed on:
        ``{"embeddings": (N, 2E) projection embeddings by this model, "networks": [name],
        "states": ["pre"|"post"]}``. They are *training* scans embedded by the model that
        learnt from them, so they look more separated than a new scan's will. Saved in
        the weight file (tensors ``reference.*``), so the sha256 check covers them.
    """

    encoder: NetworkPairEncoder
    heads: dict[str, LogisticModel]
    card: ModelCard
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    context: GridContext = field(default_factory=model_context)
    n_windows: int = N_WINDOWS
    representation: str = "projection"
    reference: dict[str, Any] | None = None

    @property
    def networks(self) -> tuple[str, ...]:
        """Networks this model predicts, in template order."""
        return tuple(n for n in self.context.networks if n in self.heads)

    def embed(self, rows: NetworkRows, representation: str = "projection") -> np.ndarray:
        """Stage-1 embeddings of ``rows`` (default: the projection space of the t-SNE and ``reference``)."""
        return embed_rows(self.encoder, rows, self.device, self.n_windows, representation=representation)

    def predict_rows(self, rows: NetworkRows, embeddings: np.ndarray | None = None) -> np.ndarray:
        """P(post) of each row (N,), each by the stage-2 model of its network."""
        emb = self.embed(rows, self.representation) if embeddings is None else embeddings
        X = stage2_design(emb, rows.features)
        out = np.full(len(rows), np.nan)
        for k, name in enumerate(self.context.networks):
            sel = rows.networks == k
            if sel.any():
                if name not in self.heads:
                    raise RegistryError(f"Model {self.card.version} has no stage-2 classifier for {name}.")
                out[sel] = self.heads[name].predict_proba(X[sel])
        return out

    def predict(self, inputs_by_network: Mapping[str, tuple[np.ndarray, np.ndarray]],
                tr_s: float = MODEL_TR_S) -> dict[str, float]:
        """``{network: P(post)}`` for one scan.

        Parameters
        ----------
        inputs_by_network : dict
            ``network_inputs(comps, assignment)``: per network, (map on the model grid,
            time course).
        tr_s : float
            Repetition time of the time courses (``comps.tr_s``); the model resamples to
            TR 2 s, so a wrong TR shifts every spectral feature.
        """
        return self.predict_scans([ScanInputs(inputs_by_network, tr_s)])[0]

    def predict_scans(self, scans: Sequence[ScanInputs]) -> list[dict[str, float]]:
        """``{network: P(post)}`` for each scan (one batch: faster than one by one)."""
        rows = build_rows(scans, self.context, self.networks)
        p = self.predict_rows(rows)
        out: list[dict[str, float]] = [{} for _ in scans]
        for i in range(len(rows)):
            out[int(rows.scans[i])][self.context.networks[int(rows.networks[i])]] = float(p[i])
        return out


def _context_for(card: ModelCard) -> GridContext:
    grid = card.config.get("grid") or {}
    shape = tuple(int(n) for n in grid.get("shape", ()))
    affine = np.asarray(grid.get("affine", np.eye(4)), float)
    default = model_context()
    if not shape or (shape == default.shape and np.allclose(affine, default.affine)):
        return default
    return GridContext.for_grid(affine, shape)


#: The encoder's constructor arguments and the bounds a real model stays in.
ENCODER_RULES = {
    "n_networks": ConfigRule(int, 1, 32),
    "width": ConfigRule(int, 1, 64),
    "embed_dim": ConfigRule(int, 1, 512),
    "network_dim": ConfigRule(int, 0, 128),
    "pool": ConfigRule(int, 1, 8),
}
#: Top-level settings the model reads, with their bounds (other keys are descriptive).
CONFIG_RULES = {
    "n_windows": ConfigRule(int, 1, 64),
    "model_tr_s": ConfigRule(float, 0.1, 10.0),
    "tc_length": ConfigRule(int, 8, 4096),
    "representation": ConfigRule(str),
    "networks": ConfigRule(list),
    "grid": ConfigRule(dict),
    "stage2": ConfigRule(dict),
}
_MAX_GRID_SIDE = 128
_MAX_STAGE2_INPUTS = 4096


def check_prepost_config(card: ModelCard) -> None:
    """Refuse a card whose config is outside the pre/post model's schema, before building anything.

    Why: the encoder settings and the grid size decide how much memory the model takes; a
    crafted card must get one sentence, not a multi-gigabyte allocation.
    """
    where = f"model card {card.name} {card.version}"
    config = card.config
    check_config(config, CONFIG_RULES, where, required=("encoder", "stage2"))
    encoder = config["encoder"]
    check_config(encoder, ENCODER_RULES, f"{where} encoder", allowed=set(), required=tuple(ENCODER_RULES))

    def refuse(what: str) -> RegistryError:
        return RegistryError(f"The {where} config has {what}; refusing to build the model.")

    if config.get("representation", "projection") not in REPRESENTATIONS:
        raise refuse(f"representation {str(config.get('representation'))[:40]!r}, not one of {', '.join(REPRESENTATIONS)}")
    networks = config.get("networks", [])
    if not all(isinstance(n, str) for n in networks) or (networks and len(networks) != encoder["n_networks"]):
        raise refuse(f"networks that are not {encoder['n_networks']} names")
    grid = config.get("grid") or {}
    shape, affine = grid.get("shape", []), grid.get("affine", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    if shape and not (isinstance(shape, list) and len(shape) == 3 and all(
            isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= _MAX_GRID_SIDE for n in shape)):
        raise refuse(f"grid shape {str(shape)[:60]}, not three sides in [1, {_MAX_GRID_SIDE}]")
    if not _finite_matrix(affine, 4, 4):
        raise refuse("a grid affine that is not a finite 4x4 matrix")
    for name, head in config["stage2"].items():
        if not _valid_head(head):
            raise refuse(f"a stage-2 head {str(name)[:40]!r} that is not a logistic model "
                         f"(mean, scale, coef of one length up to {_MAX_STAGE2_INPUTS}, finite intercept)")


def _finite_matrix(value: Any, rows: int, cols: int) -> bool:
    try:
        matrix = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return False
    return matrix.shape == (rows, cols) and bool(np.isfinite(matrix).all())


def _valid_head(head: Any) -> bool:
    """A stage-2 head's JSON: three equal-length finite vectors and a finite intercept."""
    if not isinstance(head, dict):
        return False
    vectors = [head.get(key) for key in ("mean", "scale", "coef")]
    if not all(isinstance(v, list) and 1 <= len(v) <= _MAX_STAGE2_INPUTS for v in vectors):
        return False
    if len({len(v) for v in vectors}) != 1:  # type: ignore[arg-type]
        return False
    numbers = [x for v in vectors for x in v] + [head.get("intercept"), head.get("C", 1.0)]  # type: ignore[union-attr]
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in numbers)


def model_from_card(state: dict[str, torch.Tensor], card: ModelCard, device: str | torch.device = "cpu"
                    ) -> PrePostModel:
    """Rebuild a :class:`PrePostModel` from its weights and card (its config checked first)."""
    check_prepost_config(card)
    config = card.config
    reference = _reference_from_tensors(state, list(config.get("networks", [])))
    state = {k: v for k, v in state.items() if not k.startswith(_REFERENCE_PREFIX)}
    encoder = NetworkPairEncoder(**config["encoder"])  # the config was checked: an error here is a bug
    with card_mismatch(card):
        encoder.load_state_dict(state)
    heads = {name: LogisticModel.from_json(head) for name, head in config["stage2"].items()}
    representation = str(config.get("representation", "projection"))
    width = 2 * (encoder.map_encoder.out_dim if representation == "encoder" else encoder.embed_dim) + len(FEATURE_NAMES)
    for name, head in heads.items():
        if head.coef.size != width:  # else every prediction would fail on the shape, as a bug
            raise RegistryError(f"The {MODEL_NAME} model card {card.version} has a stage-2 head {name[:40]!r} "
                                f"for {head.coef.size} inputs, but its encoder and features give {width}.")
    device = torch.device(device)
    encoder.to(device).eval()
    return PrePostModel(encoder, heads, card, device, _context_for(card),
                        int(config.get("n_windows", N_WINDOWS)), representation, reference)


_REFERENCE_PREFIX = "reference."


def _reference_tensors(reference: Mapping[str, Any] | None, networks: Sequence[str]) -> dict[str, torch.Tensor]:
    if not reference:
        return {}
    return {
        "reference.embeddings": torch.as_tensor(np.asarray(reference["embeddings"], np.float32)),
        "reference.networks": torch.as_tensor([list(networks).index(n) for n in reference["networks"]]),
        "reference.labels": torch.as_tensor([{"pre": 0, "post": 1}[s] for s in reference["states"]]),
    }


def _reference_from_tensors(state: Mapping[str, torch.Tensor], networks: Sequence[str]) -> dict[str, Any] | None:
    if "reference.embeddings" not in state or not networks:
        return None
    return {
        "embeddings": state["reference.embeddings"].cpu().numpy().astype(np.float64),
        "networks": [networks[int(k)] for k in state["reference.networks"].tolist()],
        "states": ["post" if int(v) else "pre" for v in state["reference.labels"].tolist()],
    }


def load_prepost_model(version: str | None = None, device: str = "auto",
                       roots: list[Path] | None = None) -> PrePostModel:
    """Load a version (the registry's default when None) from the user's registry or the shipped weights.

    Raises
    ------
    RegistryError
        If no version (or not the one asked for) is installed, or its files are unsafe
        or inconsistent (see :func:`core.model_loading.load_version`).
    """
    return load_version(MODEL_NAME, version, model_from_card, device=device, roots=roots, check=check_prepost_config,
                        what="rs-fMRI pre/post model", train_command="neuroreview networks train")


def card_config(model: PrePostModel, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a card must hold to rebuild ``model`` (plus ``extra``)."""
    return {
        **dict(model.card.config),
        "encoder": model.encoder.config(),
        "stage2": {name: head.to_json() for name, head in model.heads.items()},
        "stage2_inputs": [f"map {model.representation}", f"time-course {model.representation}", *FEATURE_NAMES],
        "representation": model.representation,
        "networks": list(model.context.networks),
        "grid": {"affine": model.context.affine.tolist(), "shape": list(model.context.shape)},
        "model_tr_s": MODEL_TR_S,
        "tc_length": TC_LENGTH,
        "n_windows": model.n_windows,
        **dict(extra or {}),
    }


def save_prepost_model(model: PrePostModel, root: str | Path, version: str, training_data: str,
                       metrics: Mapping[str, float] | None = None, notes: str = DEMO_NOTE,
                       parent: str | None = None, extra_config: Mapping[str, Any] | None = None) -> ModelCard:
    """Write a new version (weights + card with stage 2 inside) to a registry; return its card."""
    card = ModelCard(
        name=MODEL_NAME, version=version, task=TASK, parent=parent, training_data=training_data,
        metrics={k: float(v) for k, v in (metrics or {}).items() if np.isfinite(v)}, notes=notes,
        config=card_config(model, extra_config),
    )
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.encoder.state_dict().items()}
    tensors.update(_reference_tensors(model.reference, model.context.networks))
    save_model(tensors, card, root)
    return card


def compare_pre_post(model: PrePostModel, pre: ScanInputs, post: ScanInputs) -> dict[str, Any]:
    """One patient's pre and post scans side by side: P(post) per network for each scan.

    The two scans must have been acquired alike (same number of volumes, same TR): a
    longer or faster series changes the time-course features by itself, which the model
    would read as a change of state.

    Returns
    -------
    dict
        ``{"networks": {name: {"p_post_pre_scan", "p_post_post_scan", "difference"}},
        "pre": {name: p}, "post": {name: p}, "model": "name version", "device", "tr_s",
        "n_volumes", "pre_source", "post_source", "note"}`` (JSON-ready).

    Raises
    ------
    InputFileError
        If the two scans differ in number of volumes or TR.
    """
    if pre.n_volumes != post.n_volumes:
        raise InputFileError(
            f"{post.source or 'the post scan'}: has {post.n_volumes} volumes but {pre.source or 'the pre scan'} "
            f"has {pre.n_volumes}; pre and post must be acquired alike to be compared"
        )
    if not np.isclose(pre.tr_s, post.tr_s, rtol=1e-3):
        raise InputFileError(
            f"{post.source or 'the post scan'}: has TR {post.tr_s:g} s but {pre.source or 'the pre scan'} "
            f"has TR {pre.tr_s:g} s; pre and post must be acquired alike to be compared"
        )
    p_pre, p_post = model.predict_scans([pre, post])
    return {
        "model": f"{model.card.name} {model.card.version}",
        "note": model.card.notes,
        "device": str(model.device),
        "tr_s": float(pre.tr_s),
        "n_volumes": int(pre.n_volumes),
        "pre_source": pre.source,
        "post_source": post.source,
        "pre": p_pre,
        "post": p_post,
        "networks": {name: {"p_post_pre_scan": p_pre[name], "p_post_post_scan": p_post[name],
                            "difference": p_post[name] - p_pre[name]} for name in p_pre},
    }
