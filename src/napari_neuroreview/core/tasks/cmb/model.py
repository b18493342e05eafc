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
from ...errors import RegistryError
from ...models.cmb_net import CMBPatchNet
from ...registry import (
    SHIPPED_WEIGHTS_ROOT,
    ModelCard,
    default_registry_root,
    list_versions,
    load_state_dict,
    version_dir,
    version_key,
)

MODEL_NAME = "cmb-detector"
TASK = "cmb-detection"


@dataclass(frozen=True)
class LoadedDetector:
    """A network in eval mode on its device, with the card it came with."""

    net: CMBPatchNet
    card: ModelCard


def available_versions(roots: list[Path] | None = None) -> list[tuple[Path, ModelCard]]:
    """Every installed detector version with the registry root it lives in, oldest first."""
    roots = roots if roots is not None else [default_registry_root(), SHIPPED_WEIGHTS_ROOT]
    found: dict[str, tuple[Path, ModelCard]] = {}
    for root in reversed(roots):  # earlier roots win for the same version
        for card in list_versions(root, MODEL_NAME):
            found[card.version] = (Path(root), card)
    return [found[v] for v in sorted(found, key=version_key)]


def build_net(card: ModelCard) -> CMBPatchNet:
    """An untrained network shaped as the card says."""
    return CMBPatchNet(width=int(card.config.get("width", 8)))


def load_detector(
    version: str | None = None,
    device: str = "auto",
    roots: list[Path] | None = None,
) -> LoadedDetector:
    """Load a detector version (the newest when None) onto a device."""
    versions = available_versions(roots)
    if not versions:
        raise RegistryError(
            "no microbleed detector is installed: train one with `neuroreview cmb train` "
            "or reinstall napari-neuroreview (it ships demo weights)"
        )
    if version is None:
        root, card = versions[-1]
    else:
        matches = [(r, c) for r, c in versions if c.version == version]
        if not matches:
            known = ", ".join(c.version for _, c in versions)
            raise RegistryError(f"microbleed detector version {version} is not installed (installed: {known})")
        root, card = matches[0]
    choice = resolve_device(device)
    state, card = load_state_dict(version_dir(root, MODEL_NAME, card.version), device="cpu")
    net = build_net(card)
    net.load_state_dict(state)
    net.to(choice.device).eval()
    return LoadedDetector(net=net, card=card)


def state_dict_cpu(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of the weights, as safetensors wants them."""
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
