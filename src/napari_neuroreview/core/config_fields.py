"""The settings of a task's config dataclass as the GUI and the CLI offer them.

Why: a default stated in the dataclass, again in the CLI and again in a widget drifts
(epochs were 10, 8 and 8). The config dataclass of a task holds the ONE default; the
widgets' :class:`~napari_neuroreview.widgets._base.ConfigForm` and the CLI
(``cli.config_from_args``) read it from there, and both take a field's range from
:func:`field_range`, so a spin box and ``--epochs`` accept the same numbers.

A field's range is its ``metadata["range"]`` (a :class:`FieldRange`) when the dataclass
declares one, otherwise the shared one of that field name in :data:`RANGES` (an "epochs" is
an epochs in every system). No Qt and no torch here: the CLI imports it to build its parser.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["FieldRange", "RANGES", "config_default", "field_range"]


@dataclass(frozen=True)
class FieldRange:
    """The values a numeric setting may take, and its name in one sentence.

    Attributes
    ----------
    low, high : float
        Inclusive bounds (whole numbers for an integer field).
    what : str
        The setting in words, as the CLI's refusal says it ("'0' is not a number of
        epochs between 1 and 1000").
    label : str
        The form's row label.
    """

    low: float
    high: float
    what: str
    label: str


#: Ranges shared by every config that has a field of this name.
RANGES: dict[str, FieldRange] = {
    "epochs": FieldRange(1, 1000, "number of epochs", "Epochs"),
    "max_steps_per_epoch": FieldRange(1, 100_000, "number of steps per epoch", "Steps per epoch"),
    "lr": FieldRange(1e-6, 1.0, "learning rate", "Learning rate"),
}


def _field(config: type, name: str) -> dataclasses.Field[Any]:
    for item in dataclasses.fields(config):
        if item.name == name:
            return item
    raise KeyError(f"{config.__name__} has no field {name!r}")  # a bug in the caller, not a user mistake


def config_default(config: type, name: str) -> Any:
    """The default of one field of a config dataclass (``default_factory`` called).

    Why a function: the widget's spin box, the CLI and the tests ask the dataclass,
    never repeat its number.
    """
    item = _field(config, name)
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    raise KeyError(f"{config.__name__}.{name} has no default")


def field_range(config: type, name: str) -> FieldRange:
    """The range of a numeric field: its own ``metadata["range"]``, else the shared one."""
    declared = _field(config, name).metadata.get("range")
    if isinstance(declared, FieldRange):
        return declared
    if name in RANGES:
        return RANGES[name]
    raise KeyError(f"no range for {config.__name__}.{name}: declare metadata['range'] or add it to RANGES")
