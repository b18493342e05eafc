"""Find and load a microbleed detector version: the user's newest, else the shipped one.

Versions live in the registry (safetensors + model card). The user's registry (where
retraining writes) is searched first, so a freshly fine-tuned model is used as soon as it
exists; the shipped demo weights are the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...device import resolve_device
from ...models.cmb_net import CMBPatchNet
from ...registry import ModelCard, find_version, installed_versions, load_state_dict, version_dir

MODEL_NAME = "cmb-detector"
TASK = "cmb-detection"


@dataclass(frozen=True)
class LoadedDetector:
    """A network in eval mode on its device, with the card it came with."""

    net: CMBPatchNet
    card: ModelCard


def available_versions(roots: list[Path] | None = None) -> list[tuple[Path, ModelCard]]:
    """Every installed version with the registry root it lives in, oldest first."""
    return installed_versions(MODEL_NAME, roots)


def build_net(card: ModelCard) -> CMBPatchNet:
    """An untrained network shaped as the card says."""
    return CMBPatchNet(width=int(card.config.get("width", 8)))


def load_detector(
    version: str | None = None,
    device: str = "auto",
    roots: list[Path] | None = None,
) -> LoadedDetector:
    """Load a detector version (the newest when None) onto a device."""
    root, card = find_version(MODEL_NAME, version, roots, "microbleed detector", "neuroreview cmb train")
    choice = resolve_device(device)
    state, card = load_state_dict(version_dir(root, MODEL_NAME, card.version), device="cpu")
    net = build_net(card)
    net.load_state_dict(state)
    net.to(choice.device).eval()
    return LoadedDetector(net=net, card=card)


def state_dict_cpu(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of the weights, as safetensors wants them."""
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
