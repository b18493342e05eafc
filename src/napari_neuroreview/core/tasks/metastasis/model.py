"""The saved metastasis origin model: a fitted estimator as a registry version.

Name ``metastasis-origin``, task ``metastasis``. The card's config holds everything needed
to cut the crops and rebuild the network before its weights are read, and nothing else
that the builder reads:

* the :class:`~.train.MetastasisConfig` fields (arch, attention, width, sequences, the
  training recipe);
* ``in_channels``: the number of sequences, plus one with ``lesion_channel`` (checked against
  ``sequences`` and the weights); a card without ``lesion_channel`` (saved before it existed)
  reads the sequences only;
* ``crop``: the cube the model was trained on (``size_mm``, ``shape``) and the channels'
  normalisation (``crops.NORMALISATION``): a crop cut another way is another input;
* ``classes`` and ``nodes``: :data:`~.classes.ORIGINS` and :data:`~.classes.NODES`, the
  column orders of the probabilities.

A card outside these rules (:data:`CONFIG_RULES`, :func:`check_origin_config`) is refused
in one sentence before a network is built (``core.model_config``); the lookup is
``core.model_loading.load_version``, as for every model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import RegistryError
from ...model_config import ConfigRule, check_config
from ...model_loading import card_mismatch, load_version
from ...models.metastasis_net import ARCHS, ATTENTIONS
from ...registry import DEMO_NOTE, ModelCard, save_model
from .classes import NODES, ORIGINS, SEQUENCES
from .crops import NORMALISATION, CropSpec
from .train import MetastasisConfig, MetastasisEstimator

__all__ = ["CONFIG_RULES", "MODEL_NAME", "TASK", "TRAIN_COMMAND", "WHAT", "LoadedOriginModel", "check_origin_config", "load_origin_model",
           "save_origin_model"]

MODEL_NAME = "metastasis-origin"
#: How the "not installed" sentence names the model and the way to train one (CLI, loader, panel).
WHAT = "metastasis origin model"
TRAIN_COMMAND = "neuroreview metastasis train --data DIR"
TASK = "metastasis"

#: The settings the builder reads, with bounds a real origin model stays in (``attention`` may
#: be null, so it is checked apart: :data:`ATTENTIONS`).
CONFIG_RULES = {
    "arch": ConfigRule(str),
    "width": ConfigRule(int, 1, 512),
    "sequences": ConfigRule(list),
    "epochs": ConfigRule(int, 1, 100_000),
    "lr": ConfigRule(float, 0.0, 10.0),
    "batch": ConfigRule(int, 1, 100_000),
    "weight_decay": ConfigRule(float, 0.0, 10.0),
    "dropout": ConfigRule(float, 0.0, 0.95),
    "seed": ConfigRule(int),
    "augment": ConfigRule(bool),
    "lesion_channel": ConfigRule(bool),
    "in_channels": ConfigRule(int, 1, len(SEQUENCES) + 1),  # every sequence plus the lesion mask
    "crop": ConfigRule(dict),
    "classes": ConfigRule(list),
    "nodes": ConfigRule(list),
}
#: Config fields a card saved before they existed may lack, with the value such a card meant.
OPTIONAL_FIELDS: dict[str, Any] = {"lesion_channel": False}
#: Descriptive keys the builder never reads (provenance of the training run).
DESCRIPTIVE_KEYS = {"metrics_on", "n_train_patients", "n_train_lesions", "train_seed", "train_sites",
                    "per_class_train"}
_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(MetastasisConfig))
assert set(_CONFIG_FIELDS) <= set(CONFIG_RULES) | {"attention"}
#: The largest crop a card may ask for (voxels per edge, mm per edge).
MAX_CROP_SHAPE, MAX_CROP_MM = 256, 256.0


def check_origin_config(card: ModelCard) -> None:
    """Refuse a card whose config is outside the origin model's schema, before anything is built."""
    where = f"model card {card.name} {card.version}"
    config = card.config
    check_config(config, CONFIG_RULES, where, allowed=DESCRIPTIVE_KEYS | {"attention"},
                 required=(*(f for f in _CONFIG_FIELDS if f not in OPTIONAL_FIELDS), "in_channels", "crop", "classes",
                           "nodes"))

    def refuse(what: str) -> RegistryError:
        return RegistryError(f"The {where} config has {what}; refusing to build the network.")

    if config["arch"] not in ARCHS:
        raise refuse(f"arch {str(config['arch'])[:40]!r}, not one of {', '.join(ARCHS)}")
    if config["attention"] not in ATTENTIONS:
        raise refuse(f"attention {str(config['attention'])[:40]!r}, not one of cbam, se or null")
    seqs = config["sequences"]
    if not seqs or not all(isinstance(s, str) and s in SEQUENCES for s in seqs) or len(set(seqs)) != len(seqs):
        raise refuse(f"sequences {str(seqs)[:60]}, not distinct names of {', '.join(SEQUENCES)}")
    lesion = config.get("lesion_channel", OPTIONAL_FIELDS["lesion_channel"])
    if config["in_channels"] != len(seqs) + int(lesion):
        raise refuse(f"in_channels={config['in_channels']} for {len(seqs)} sequence(s)"
                     + (" and the lesion mask" if lesion else ""))
    crop = config["crop"]
    size, shape = crop.get("size_mm"), crop.get("shape")
    if set(crop) != {"size_mm", "shape", "normalisation"} or crop.get("normalisation") != NORMALISATION \
            or isinstance(shape, bool) or not isinstance(shape, int) or not 1 <= shape <= MAX_CROP_SHAPE \
            or isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < size <= MAX_CROP_MM:
        raise refuse(f"crop {str(crop)[:80]}, not a size_mm in (0, {MAX_CROP_MM:g}], a shape in "
                     f"[1, {MAX_CROP_SHAPE}] and the {NORMALISATION} normalisation")
    if config["classes"] != list(ORIGINS):
        raise refuse(f"classes {str(config['classes'])[:60]}, not {', '.join(ORIGINS)} in this order")
    if config["nodes"] != list(NODES):
        raise refuse(f"nodes {str(config['nodes'])[:80]}, not {', '.join(NODES)} in this order")


def origin_config(card: ModelCard) -> MetastasisConfig:
    """The :class:`MetastasisConfig` a checked card describes."""
    return MetastasisConfig(**{k: card.config.get(k, OPTIONAL_FIELDS.get(k)) for k in _CONFIG_FIELDS})


def crop_spec(card: ModelCard) -> CropSpec:
    """The :class:`CropSpec` a checked card describes."""
    return CropSpec(float(card.config["crop"]["size_mm"]), int(card.config["crop"]["shape"]))


@dataclass(frozen=True)
class LoadedOriginModel:
    """A fitted origin estimator (eval mode, on its device) with its card and the crop it reads."""

    estimator: MetastasisEstimator
    card: ModelCard

    @property
    def model(self) -> dict[str, str]:
        """``{"name", "version"}`` as results cite it."""
        return {"name": self.card.name, "version": self.card.version}

    @property
    def crop(self) -> CropSpec:
        """The cube :func:`~.crops.lesion_crops` must cut for this model."""
        return crop_spec(self.card)

    @property
    def sequences(self) -> tuple[str, ...]:
        """The channels, in order."""
        return self.estimator.config.sequences


def _build(state: dict[str, torch.Tensor], card: ModelCard, device: torch.device) -> LoadedOriginModel:
    """The estimator of ``card`` with verified weights ``state`` on ``device``."""
    with card_mismatch(card):
        estimator = MetastasisEstimator.from_state(state, origin_config(card), crop_spec(card), device=str(device))
    return LoadedOriginModel(estimator, card)


def load_origin_model(version: str | None = None, device: str = "auto", roots: list[Path] | None = None
                      ) -> LoadedOriginModel:
    """Load an origin model version (the registry's default when None) through ``model_loading.load_version``.

    Raises
    ------
    RegistryError, DeviceError
        Nothing installed, that version not installed, a card outside the schema, unsafe
        or inconsistent files, an unavailable device: one sentence each.
    """
    return load_version(MODEL_NAME, version, _build, device=device, roots=roots, check=check_origin_config,
                        what=WHAT, train_command=TRAIN_COMMAND,
                        shipped=True)  # the package ships a demo model (weights/metastasis-origin)


def save_origin_model(estimator: MetastasisEstimator, root: str | Path, version: str, training_data: str,
                      metrics: Mapping[str, float] | None = None, extra: Mapping[str, Any] | None = None,
                      notes: str = DEMO_NOTE, parent: str | None = None) -> ModelCard:
    """Write a fitted estimator as a new version (weights + card); return the card.

    ``extra`` adds descriptive keys (:data:`DESCRIPTIVE_KEYS`) to the card's config.
    """
    if estimator.net is None or estimator.crop_spec is None:
        raise RuntimeError("save_origin_model before fit")
    config = dataclasses.asdict(estimator.config)
    config["sequences"] = list(config["sequences"])
    card = ModelCard(
        name=MODEL_NAME, version=version, task=TASK, parent=parent, training_data=training_data,
        metrics={k: float(v) for k, v in (metrics or {}).items() if v is not None and np.isfinite(v)}, notes=notes,
        config={**config, "in_channels": estimator.config.in_channels, "crop": estimator.crop_spec.to_json(),
                "classes": list(ORIGINS), "nodes": list(NODES), **dict(extra or {})},
    )
    check_origin_config(card)  # what is saved must load
    save_model(estimator.state_dict(), card, root)
    return card
