"""Choosing the compute device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` | ``mps``.

Why a module of its own: hard-coded devices are the classic way a plugin breaks on the
next machine. Every task takes a :class:`DeviceChoice` from :func:`resolve_device`, and
the widget shows its ``label``, so a silent CPU fallback (minutes instead of seconds)
is always visible, and a device that was asked for by name but is missing is an error
rather than a surprise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from napari_neuroreview.core.errors import DeviceError

__all__ = ["DeviceChoice", "available_devices", "resolve_device"]

_CUDA_RE = re.compile(r"cuda(?::(\d+))?")


@dataclass(frozen=True)
class DeviceChoice:
    """The device a task will run on, and how it was chosen.

    Parameters
    ----------
    device : torch.device
        What to pass to ``.to(...)``.
    requested : str
        What the user asked for (normalised), e.g. ``'auto'``.
    label : str
        One line for the widget, e.g. ``'CUDA: NVIDIA H100 (cuda:0)'``.
    fallback : bool
        True when ``'auto'`` found no GPU and ended on the CPU, so the UI can say so.
    """

    device: torch.device
    requested: str
    label: str
    fallback: bool = False


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _cuda_choice(index: int, requested: str) -> DeviceChoice:
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(
            f"cuda:{index} was requested but PyTorch sees only {count} CUDA GPU(s) on this "
            "machine; use cuda:0 or auto."
        )
    try:
        name = torch.cuda.get_device_name(index)
    except Exception:  # the name is cosmetic; never fail a run because of it
        name = "GPU"
    return DeviceChoice(torch.device("cuda", index), requested, f"CUDA: {name} (cuda:{index})")


def resolve_device(requested: str = "auto") -> DeviceChoice:
    """Turn a user's device request into a device that exists.

    Parameters
    ----------
    requested : str
        ``'auto'`` (CUDA, then Apple MPS, then CPU), ``'cpu'``, ``'cuda'``, ``'cuda:N'``
        or ``'mps'``; case and surrounding spaces are ignored.

    Returns
    -------
    DeviceChoice

    Raises
    ------
    DeviceError
        If a GPU was asked for by name and PyTorch cannot use it, or the request is not
        one of the above. Asking for a GPU by name never falls back silently.
    """
    text = str(requested).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return _cuda_choice(0, text)
        if _mps_available():
            return DeviceChoice(torch.device("mps"), text, "MPS: Apple GPU (mps)")
        return DeviceChoice(
            torch.device("cpu"), text, "CPU (no CUDA or MPS GPU found)", fallback=True
        )
    if text == "cpu":
        return DeviceChoice(torch.device("cpu"), text, "CPU (requested)")
    cuda = _CUDA_RE.fullmatch(text)
    if cuda:
        if not torch.cuda.is_available():
            raise DeviceError(
                "CUDA was requested but no CUDA GPU is available to PyTorch on this machine; "
                "use --device cpu or auto."
            )
        return _cuda_choice(int(cuda.group(1) or 0), text)
    if text == "mps":
        if not _mps_available():
            raise DeviceError(
                "MPS was requested but no Apple MPS GPU is available to PyTorch on this "
                "machine; use --device cpu or auto."
            )
        return DeviceChoice(torch.device("mps"), text, "MPS: Apple GPU (mps)")
    raise DeviceError(
        f"Unknown device {requested!r}; choose one of auto, cpu, cuda, cuda:N or mps."
    )


def available_devices() -> list[str]:
    """Device names worth offering in a drop-down on this machine.

    Always ``'auto'`` and ``'cpu'``; ``'cuda'`` (plus ``'cuda:N'`` for each GPU when
    there are several) and ``'mps'`` only when PyTorch can use them.
    """
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
        count = torch.cuda.device_count()
        if count > 1:
            names += [f"cuda:{i}" for i in range(count)]
    if _mps_available():
        names.append("mps")
    return names
