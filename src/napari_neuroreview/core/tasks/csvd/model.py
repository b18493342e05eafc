"""The saved small vessel disease subtype model: a fitted MIL estimator as a registry version.

Name and task ``csvd-subtype``. The card's config holds everything needed to rebuild the
network before its weights are read, and nothing else that the builder reads:

* the :class:`~.train.MILConfig` fields (pooling, widths, dropout, the training recipe);
* ``features``: the bag layout the model was trained on, ``{"layout": "location"}`` or
  ``{"layout": "patch", "embedding_width": C, "detector": {"name", "version"}}`` (the
  patch embedding is the frozen encoder of that exact detector version: another
  detector's encoder gives other features, so classification loads the same version);
* ``classes``: :data:`~.baselines.SUBTYPES` (the column order of the probabilities);
* ``in_features``: the instance width, checked against the layout and against the
  weights (the scaler's length).

A card outside these rules (:data:`CONFIG_RULES`, :func:`check_subtype_config`) is
refused in one sentence before a network is built (``core.model_config``); the lookup
is ``core.model_loading.load_version``, as for every model.

:func:`train_and_test` is the recipe of ``neuroreview csvd train``: fit on the
development patients, predict the external ones once, store those figures (with their
patient-bootstrap CIs) in the card. The patients come from the caller (the CLI draws
them from the phantom package: ``core.tasks`` never imports ``core.phantoms``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import RegistryError
from ...metrics.cohort import Cohort, evaluate_predictions
from ...model_config import ConfigRule, check_config
from ...model_loading import card_mismatch, load_version, weights_disagree
from ...models.mil import POOLINGS
from ...progress import Progress, TaskGenerator
from ...registry import DEMO_NOTE, ModelCard, save_model
from .bags import LOCATION_FEATURES
from .baselines import SUBTYPES
from .evaluate import REPORTED_METRICS, CSVDItem, OnBags, test_once
from .train import MILConfig, MILEstimator

__all__ = ["CONFIG_RULES", "MODEL_NAME", "TASK", "FeatureLayout", "LoadedSubtypeModel", "check_subtype_config",
           "load_subtype_model", "save_subtype_model", "train_and_test"]

MODEL_NAME = "csvd-subtype"
TASK = "csvd-subtype"
#: Feature layouts of a bag (``bags.Bag``): location columns only, or the detector's patch embedding first.
LAYOUTS: tuple[str, ...] = ("location", "patch")

#: The settings the builder reads, with bounds a real subtype model stays in.
CONFIG_RULES = {
    "pooling": ConfigRule(str),
    "embed": ConfigRule(int, 1, 2048),
    "attention": ConfigRule(int, 1, 1024),
    "dropout": ConfigRule(float, 0.0, 0.95),
    "patch_embedding": ConfigRule(bool),
    "epochs": ConfigRule(int, 1, 100_000),
    "batch_bags": ConfigRule(int, 1, 100_000),
    "lr": ConfigRule(float, 0.0, 10.0),
    "weight_decay": ConfigRule(float, 0.0, 10.0),
    "class_weighted": ConfigRule(bool),
    "seed": ConfigRule(int),
    "n_classes": ConfigRule(int, len(SUBTYPES), len(SUBTYPES)),
    "in_features": ConfigRule(int, len(LOCATION_FEATURES), len(LOCATION_FEATURES) + 4096),
    "features": ConfigRule(dict),
    "classes": ConfigRule(list),
}
#: Descriptive keys the builder never reads (provenance of the training run).
DESCRIPTIVE_KEYS = {"metrics_on", "n_train_patients", "n_external_patients", "train_seed", "external_seed",
                    "train_centres", "external_centres", "per_class_train", "per_class_external",
                    "external_ci"}
_MIL_FIELDS = tuple(f.name for f in dataclasses.fields(MILConfig))
assert set(_MIL_FIELDS) <= set(CONFIG_RULES)


@dataclass(frozen=True)
class FeatureLayout:
    """What a model's bags hold: location only, or a detector's patch embedding too.

    Attributes
    ----------
    layout : str
        ``"location"`` or ``"patch"``.
    embedding_width : int
        Patch-embedding columns (0 for ``"location"``).
    detector : dict or None
        ``{"name", "version"}`` of the detector whose encoder embedded the patches.
    """

    layout: str = "location"
    embedding_width: int = 0
    detector: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS or (self.layout == "location") != (self.embedding_width == 0) \
                or (self.layout == "patch") != (self.detector is not None):  # set by code
            raise ValueError(f"inconsistent feature layout {self}")

    def to_json(self) -> dict[str, Any]:
        """The card's ``features`` entry."""
        if self.layout == "location":
            return {"layout": "location"}
        return {"layout": "patch", "embedding_width": self.embedding_width, "detector": dict(self.detector or {})}

    @property
    def in_features(self) -> int:
        """Instance width: the embedding and the location columns."""
        return self.embedding_width + len(LOCATION_FEATURES)


def check_subtype_config(card: ModelCard) -> None:
    """Refuse a card whose config is outside the subtype model's schema, before anything is built."""
    where = f"model card {card.name} {card.version}"
    config = card.config
    check_config(config, CONFIG_RULES, where, allowed=DESCRIPTIVE_KEYS,
                 required=(*_MIL_FIELDS, "in_features", "features", "classes"))

    def refuse(what: str) -> RegistryError:
        return RegistryError(f"The {where} config has {what}; refusing to build the network.")

    if config["pooling"] not in POOLINGS:
        raise refuse(f"pooling {str(config['pooling'])[:40]!r}, not one of {', '.join(POOLINGS)}")
    if config["classes"] != list(SUBTYPES):
        raise refuse(f"classes {str(config['classes'])[:60]}, not {', '.join(SUBTYPES)} in this order")
    features = config["features"]
    layout = features.get("layout")
    detector = features.get("detector")
    width = features.get("embedding_width", 0)
    if layout not in LAYOUTS or isinstance(width, bool) or not isinstance(width, int):
        raise refuse(f"features {str(features)[:60]}, not a layout of {', '.join(LAYOUTS)}")
    if layout == "patch" and not (width > 0 and isinstance(detector, dict) and all(
            isinstance(detector.get(k), str) and detector.get(k) for k in ("name", "version"))):
        raise refuse("a patch layout without its embedding width and detector name and version")
    if config["patch_embedding"] != (layout == "patch"):
        raise refuse(f"patch_embedding={str(config['patch_embedding']).lower()} with the {layout} layout")
    expected = (width if layout == "patch" else 0) + len(LOCATION_FEATURES)
    if config["in_features"] != expected:
        raise refuse(f"in_features={config['in_features']}, but its {layout} layout gives {expected}")


def layout_of(card: ModelCard) -> FeatureLayout:
    """The feature layout of a checked card."""
    f = card.config["features"]
    if f["layout"] == "location":
        return FeatureLayout()
    return FeatureLayout("patch", int(f["embedding_width"]), {"name": f["detector"]["name"],
                                                              "version": f["detector"]["version"]})


@dataclass(frozen=True)
class LoadedSubtypeModel:
    """A fitted subtype estimator (eval mode, on its device) with its card and feature layout."""

    estimator: MILEstimator
    card: ModelCard
    features: FeatureLayout

    @property
    def model(self) -> dict[str, str]:
        """``{"name", "version"}`` as results cite it."""
        return {"name": self.card.name, "version": self.card.version}


def mil_config(card: ModelCard) -> MILConfig:
    """The :class:`MILConfig` a checked card describes."""
    return MILConfig(**{k: card.config[k] for k in _MIL_FIELDS})


def _build(state: dict[str, torch.Tensor], card: ModelCard, device: torch.device) -> LoadedSubtypeModel:
    """The estimator of ``card`` with verified weights ``state`` on ``device``."""
    width = card.config["in_features"]
    mean, std = state.get("scaler.mean"), state.get("scaler.std")
    if mean is None or std is None or mean.shape != (width,) or std.shape != (width,):
        raise weights_disagree(card, f"no feature scaler of {width} columns")
    with card_mismatch(card):
        estimator = MILEstimator.from_state(state, mil_config(card), device=str(device))
    return LoadedSubtypeModel(estimator, card, layout_of(card))


def load_subtype_model(version: str | None = None, device: str = "auto", roots: list[Path] | None = None
                       ) -> LoadedSubtypeModel:
    """Load a subtype model version (the registry's default when None) through ``model_loading.load_version``.

    Raises
    ------
    RegistryError, DeviceError
        Nothing installed, that version not installed, a card outside the schema, unsafe
        or inconsistent files, an unavailable device: one sentence each.
    """
    return load_version(MODEL_NAME, version, _build, device=device, roots=roots, check=check_subtype_config,
                        what="small vessel disease subtype model", train_command="neuroreview csvd train")


def save_subtype_model(estimator: MILEstimator, config: FeatureLayout, root: str | Path, version: str,
                       training_data: str, metrics: Mapping[str, float] | None = None,
                       extra: Mapping[str, Any] | None = None, notes: str = DEMO_NOTE,
                       parent: str | None = None) -> ModelCard:
    """Write a fitted estimator as a new version (weights + card); return the card.

    ``config`` is the bags' feature layout (the estimator carries its :class:`MILConfig`);
    ``extra`` adds descriptive keys (:data:`DESCRIPTIVE_KEYS`) to the card's config.
    """
    if estimator.net is None:
        raise RuntimeError("save_subtype_model before fit")
    in_features = estimator.net.in_features
    if estimator.config.patch_embedding != (config.layout == "patch") or in_features != config.in_features:
        raise ValueError(f"the estimator ({estimator.net.in_features} features) does not fit the layout {config}")
    card = ModelCard(
        name=MODEL_NAME, version=version, task=TASK, parent=parent, training_data=training_data,
        metrics={k: float(v) for k, v in (metrics or {}).items() if v is not None and np.isfinite(v)}, notes=notes,
        config={**dataclasses.asdict(estimator.config), "in_features": int(estimator.net.in_features),
                "features": config.to_json(), "classes": list(SUBTYPES), **dict(extra or {})},
    )
    check_subtype_config(card)  # what is saved must load
    save_model(estimator.state_dict(), card, root)
    return card


def _finite_or_none(value: Any) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def external_metrics(result_metrics: Mapping[str, Mapping[str, float]]) -> tuple[dict[str, float], dict[str, list]]:
    """Card metrics ``external_<metric>`` (values) and their 95 % CIs (for the config's ``external_ci``)."""
    values, cis = {}, {}
    for name in REPORTED_METRICS:
        m = result_metrics.get(name)
        if m is None or m.get("value") is None:
            continue
        values[f"external_{name}"] = float(m["value"])
        cis[f"external_{name}"] = [_finite_or_none(m.get("low")), _finite_or_none(m.get("high"))]
    return values, cis


def train_and_test(train: Sequence[CSVDItem], train_labels: Sequence[str], external: Sequence[CSVDItem],
                   external_labels: Sequence[str], config: MILConfig, root: str | Path, version: str,
                   training_data: str, extra: Mapping[str, Any] | None = None, device: str = "auto",
                   n_boot: int = 1000) -> TaskGenerator[ModelCard]:
    """Fit on ``train``, test once on ``external``, save with the external figures in the card.

    Only location-only bags are handled here (the items carry no detector embedding
    provenance); ``config.patch_embedding`` must be False.
    """
    if config.patch_embedding:  # the caller's wiring
        raise ValueError("train_and_test builds location-only models (patch_embedding=False)")
    estimator = MILEstimator(config, device)
    yield Progress(0, 1, f"Training on {len(train)} patients, then testing once on {len(external)} external ones")
    dev = Cohort(list(train), list(train_labels), [i.patient for i in train], SUBTYPES)
    ext = Cohort(list(external), list(external_labels), [i.patient for i in external], SUBTYPES)
    pred = yield from test_once(OnBags(estimator), dev, ext, "Training")
    result = evaluate_predictions(pred, n_boot, config.seed, metrics=REPORTED_METRICS)
    metrics, cis = external_metrics(result.metrics)
    card_extra = {"metrics_on": "the external patients, tested once (not used for fitting)",
                  "n_train_patients": len(train), "n_external_patients": len(external),
                  "per_class_train": {c: int(sum(x == c for x in train_labels)) for c in SUBTYPES},
                  "per_class_external": {c: int(sum(x == c for x in external_labels)) for c in SUBTYPES},
                  "external_ci": cis, **dict(extra or {})}
    return save_subtype_model(estimator, FeatureLayout(), root, version, training_data, metrics, card_extra)
