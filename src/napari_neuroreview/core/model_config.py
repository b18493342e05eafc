"""Bounds on the architecture settings a model card may ask for, checked before a network is built.

Why apart from the registry: each task states its own rules (``ConfigRule`` per setting)
and calls :func:`check_config` on a card's config before building; the registry only
stores and verifies cards. A crafted card (``width`` 100000) is refused in one sentence
instead of making the loader allocate gigabytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from napari_neuroreview.core.errors import RegistryError

_KIND_WORDS = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}


@dataclass(frozen=True)
class ConfigRule:
    """What one architecture setting of a card may be: a type and an inclusive range."""

    kind: type
    low: float | None = None
    high: float | None = None


def check_config(config: Any, rules: dict[str, ConfigRule], where: str, allowed: set[str] | None = None,
                 required: tuple[str, ...] = ()) -> None:
    """Refuse a card config outside its task's schema, before any network is built.

    Why: the config decides the size of the network; a crafted card (``width`` 100000)
    would otherwise make the loader allocate gigabytes and die with a raw error.

    Parameters
    ----------
    config : dict
        The card's config (or a part of it, such as the encoder settings).
    rules : dict
        Setting -> :class:`ConfigRule`; each present setting must satisfy its rule.
    where : str
        Names the card in the message ("model card cmb-detector 1.1.0").
    allowed : set of str, optional
        Every key the config may hold (the rules' keys are always allowed); None allows
        descriptive keys that the builder never reads.
    required : tuple of str
        Keys that must be present.

    Raises
    ------
    RegistryError
        One sentence naming the card, the key, its value and the allowed range.
    """
    if not isinstance(config, dict):
        raise RegistryError(f"The {where} config is not a JSON object.")
    missing = [key for key in required if key not in config]
    if missing:
        raise RegistryError(f"The {where} config lacks {', '.join(missing)}.")
    if allowed is not None:
        unknown = sorted(set(config) - allowed - set(rules))
        if unknown:
            raise RegistryError(f"The {where} config has unknown key(s) {', '.join(unknown)}; refusing to build it.")
    for key, rule in rules.items():
        if key not in config:
            continue
        value = config[key]
        if rule.kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, rule.kind) and not isinstance(value, bool) if rule.kind is int \
                else isinstance(value, rule.kind)
        in_range = ok and (rule.low is None or value >= rule.low) and (rule.high is None or value <= rule.high)
        if not in_range:
            bounds = _KIND_WORDS.get(rule.kind, rule.kind.__name__) + (
                f" in [{rule.low:g}, {rule.high:g}]" if rule.low is not None and rule.high is not None else "")
            raise RegistryError(
                f"The {where} config has {key}={json.dumps(value)[:60]}, which is not {bounds}; "
                "refusing to build the network."
            )
