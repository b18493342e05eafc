"""Find and load a microbleed detector version: the registry's default unless one is named.

Versions live in the registry (safetensors + model card), in the user's registry (where
retraining writes) and the shipped demo weights. Which one is used when none is named is
the registry's explicit default (``core.registry.default_version``), never simply the
newest: retraining makes a new version the default only when it is not worse on held-out
reviews. A card's config is checked against :data:`CONFIG_RULES` before the network is
built, so a crafted card cannot size the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...model_config import ConfigRule, check_config
from ...model_loading import card_mismatch, load_version
from ...models.cmb_net import CMBPatchNet
from ...registry import ModelCard

MODEL_NAME = "cmb-detector"
TASK = "cmb-detection"

#: What builds or drives the network, with the bounds a real detector stays in.
CONFIG_RULES = {
    "width": ConfigRule(int, 1, 64),
    "threshold": ConfigRule(float, 0.0, 1.0),
}
#: Descriptive keys the builder never reads (metrics, provenance, the retraining verdict).
DESCRIPTIVE_KEYS = {
    "metrics_on", "n_train_patches", "held_out", "n_reviewed_train_scans", "n_reviewed_held_out_scans",
    "skipped_scans", "not_default", "reviewed_scans", "max_fp_per_subject",
    # phantom training's recipe (cmb train --simulator/--scanner/--card-figures)
    "simulators", "scanner", "scanner_augment", "train_seeds", "val_seeds", "held_out_simulator_figures",
    # a shipped version compared with the default on held-out simulated scans (why it is or is not the default)
    "held_out_simulated",
    # the same comparison on sets already looked at, reported beside the decision, not in it
    "held_out_simulated_second_look",
}


#: The operating threshold of a card that states none (cards from before thresholds were kept).
FALLBACK_THRESHOLD = 0.5


def card_threshold(card: ModelCard) -> float:
    """The detector's operating threshold as its card states it (chosen on its validation scans)."""
    return float(card.config.get("threshold", FALLBACK_THRESHOLD))


@dataclass(frozen=True)
class LoadedDetector:
    """A network in eval mode on its device, with the card it came with."""

    net: CMBPatchNet
    card: ModelCard


def check_detector_config(card: ModelCard) -> None:
    """Refuse a card whose config is outside the detector's schema (before building anything)."""
    check_config(card.config, CONFIG_RULES, f"model card {card.name} {card.version}", allowed=DESCRIPTIVE_KEYS)


def build_net(card: ModelCard) -> CMBPatchNet:
    """An untrained network shaped as the card says (the config checked first)."""
    check_detector_config(card)
    return CMBPatchNet(width=int(card.config.get("width", 8)))


def load_detector(
    version: str | None = None,
    device: str = "auto",
    roots: list[Path] | None = None,
) -> LoadedDetector:
    """Load a detector version (the registry's default when None) onto a device (:func:`model_loading.load_version`)."""
    return load_version(MODEL_NAME, version, _build_loaded, device=device, roots=roots, check=check_detector_config,
                        what="microbleed detector", train_command="neuroreview cmb train")


def _build_loaded(state: dict[str, torch.Tensor], card: ModelCard, device: torch.device) -> LoadedDetector:
    """The network of ``card`` with verified weights ``state``, in eval mode on ``device``."""
    net = build_net(card)
    with card_mismatch(card):
        net.load_state_dict(state)
    net.to(device).eval()
    return LoadedDetector(net=net, card=card)


def state_dict_cpu(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of the weights, as safetensors wants them."""
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
