"""Reading a model version back: the safetensors gate, verified weights, and the one lookup.

Why apart from :mod:`core.registry` (which writes versions, lists them and keeps the
default): loading is where untrusted files meet the program. A weight file is refused
before it is parsed if it is a pickle (unpickling runs the code it carries) or not
safetensors, and used only when its sha256 matches the card beside it; every system then
loads through :func:`load_version` (find -> check the card -> device -> verified weights
-> build), so a fix reaches all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch

from napari_neuroreview.core.device import resolve_device
from napari_neuroreview.core.errors import RegistryError
from napari_neuroreview.core.registry import WEIGHTS_FILE, ModelCard, find_version, read_card, version_dir

__all__ = ["card_mismatch", "load_state_dict", "load_version", "weights_disagree"]

_PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"})
M = TypeVar("M")


def _refuse_non_safetensors(path: Path, head: bytes, size: int) -> None:
    """Reject pickles and anything else that is not a safetensors file, before parsing."""
    # torch.save writes a zip (PK\x03\x04); a bare pickle starts with its protocol byte.
    looks_pickled = head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"
    if path.suffix.lower() in _PICKLE_SUFFIXES or looks_pickled:
        raise RegistryError(
            f"Refusing to unpickle {path}: it is a pickle/PyTorch checkpoint, which can run "
            "code when loaded; convert it to safetensors."
        )
    # safetensors: 8-byte little-endian header length, then a JSON header starting '{'.
    header_len = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if header_len <= 0 or header_len > size - 8 or head[8:9] != b"{":
        raise RegistryError(f"The weight file {path} is not a safetensors file.")


def load_state_dict(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """Load verified weights and their card.

    Parameters
    ----------
    path : str or Path
        A version folder, or the ``model.safetensors`` inside one (``card.json`` must sit
        beside it).
    device : str or torch.device
        Where the tensors go.

    Returns
    -------
    state_dict : dict of str to Tensor
    card : ModelCard

    Raises
    ------
    RegistryError
        If the file is a pickle or otherwise not safetensors, the card is missing, or the
        weights' sha256 differs from the card (changed or truncated after saving).

    Notes
    -----
    The bytes are hashed and parsed from one read, so the file checked is the file used.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    path = Path(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    if not weights.is_file():
        raise RegistryError(f"No weight file at {weights}.")
    try:
        data = weights.read_bytes()
    except OSError as exc:
        raise RegistryError(f"The weight file {weights} cannot be read: {exc.strerror}.") from exc
    _refuse_non_safetensors(weights, data[:9], len(data))
    card = read_card(weights)
    digest = hashlib.sha256(data).hexdigest()
    if not card.weights_sha256:
        raise RegistryError(f"The model card beside {weights} has no weights_sha256 to check.")
    if digest != card.weights_sha256:
        raise RegistryError(
            f"The weight file {weights} does not match its model card (sha256 "
            f"{digest[:12]} instead of {card.weights_sha256[:12]}); it was changed after saving."
        )
    try:
        tensors = load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise RegistryError(f"The weight file {weights} is not a valid safetensors file.") from exc
    return {key: value.to(device) for key, value in tensors.items()}, card


def load_version(
    name: str, version: str | None, build: Callable[[dict[str, torch.Tensor], ModelCard, torch.device], M], *,
    device: str = "auto", roots: list[Path] | None = None, check: Callable[[ModelCard], None] | None = None,
    what: str | None = None, train_command: str = "neuroreview ... train", shipped: bool = True,
) -> M:
    """The one model lookup: find ``version`` (the default when None), verify it, build it on a device.

    Why one: every system used to repeat find -> check the card -> pick the device ->
    read verified weights -> build; a fix to one copy (a check before the weights are
    read) missed the others.

    Parameters
    ----------
    name : str
        Model family (``cmb-detector``, ``network-prepost``).
    version : str or None
        None: the registry's default (:func:`core.registry.default_version`), never simply the newest.
    build : callable
        ``build(state_dict on CPU, card, torch.device) -> model``; its own errors about
        weights that do not fit the card should be RegistryError.
    check : callable, optional
        Validates the card's config before the weights are read or a network is built.
    what, train_command : str
        Name the model and the way out in the "not installed" sentence.
    shipped : bool
        Whether the package ships demo weights of ``name`` (else reinstalling is no way out).

    Raises
    ------
    RegistryError, DeviceError
        Nothing installed, that version not installed, unsafe or inconsistent files, or
        an unavailable device: one sentence each.
    """
    root, card = find_version(name, version, roots, what or name, train_command, shipped=shipped)
    if check is not None:
        check(card)
    choice = resolve_device(device)
    state, card = load_state_dict(version_dir(root, name, card.version), device="cpu")
    return build(state, card, choice.device)


def weights_disagree(card: ModelCard, detail: str) -> RegistryError:
    """The one sentence for weights that do not fit the network their card describes.

    Why one: the sha256 proves the file is the one saved with the card, so a shape or key
    mismatch means the card's config and the weights were written by different code (or
    the card was edited); the user needs the model, the version and the first line of why.
    """
    return RegistryError(f"The model card {card.name} {card.version} does not describe its weights ({detail}).")


@contextmanager
def card_mismatch(card: ModelCard) -> Iterator[None]:
    """Turn torch's ``load_state_dict`` RuntimeError (missing keys, other shapes) into :func:`weights_disagree`.

    Use around the code that puts verified weights into the network the card describes, in
    a ``build`` passed to :func:`load_version`; anything else is left to propagate.
    """
    try:
        yield
    except RuntimeError as exc:
        raise weights_disagree(card, _first_reason(exc)) from exc


def _first_reason(exc: RuntimeError, limit: int = 200) -> str:
    """Torch's first concrete reason (a missing key, a size mismatch), not its header line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith("Error(s) in loading state_dict")] or lines or ["?"]
    reason = reasons[0].rstrip(".")
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."
