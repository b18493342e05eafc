"""``neuroreview models ...``: list installed model versions, set the default, roll it back.

Why a command of its own: which version ``cmb detect`` and the widgets use is an explicit
registry state (``core.registry.default_version``), never simply the newest; a user must
be able to see it, change it and undo a change without opening the GUI.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: Model families the registry serves: what each is for, and the command that trains one.
_FAMILIES = {"cmb-detector": ("microbleed detector", "neuroreview cmb train"),
             "network-prepost": ("rs-fMRI pre/post model", "neuroreview networks train"),
             "csvd-subtype": ("small vessel disease subtype model", "neuroreview csvd train"),
             "metastasis-origin": ("metastasis origin model", "neuroreview metastasis train"),
             "stroke-risk": ("stroke risk model", "neuroreview stroke train")}
TASKS = {name: what for name, (what, _command) in _FAMILIES.items()}
TRAIN_COMMANDS = {name: command for name, (_what, command) in _FAMILIES.items()}


def _roots(args: argparse.Namespace) -> list[Path]:
    from .core.registry import SHIPPED_WEIGHTS_ROOT, default_registry_root

    return [Path(args.root) if args.root else default_registry_root(), SHIPPED_WEIGHTS_ROOT]


def _task(name: str) -> str:
    from .core.errors import RegistryError

    if name not in TASKS:
        raise RegistryError(f"There is no model task {name!r}; the tasks are {', '.join(TASKS)}.")
    return name


def version_rows(name: str, roots: list[Path]) -> list[str]:
    """One line per installed version: default mark, version, demo flag, parent, date, held-out figures."""
    from .core.model_labels import held_out_text, is_demo
    from .core.registry import default_version, installed_versions

    versions = installed_versions(name, roots)
    default = default_version(name, roots)
    rows = [f"{name} ({TASKS.get(name, name)}): {len(versions)} installed, default {default or 'none'}"]
    for root, card in reversed(versions):
        mark = "*" if card.version == default else " "
        flags = ["demo weights" if is_demo(card) else "own weights"]
        if card.config.get("not_default"):
            flags.append(f"not default: {card.config['not_default']}")
        rows.append(
            f" {mark} {card.version:<8} parent {card.parent or '-':<8} {card.date[:10]}  {', '.join(flags)}"
            f"{'  shipped' if Path(root).resolve() == _shipped() else ''}"
        )
        figures = held_out_text(card)
        if figures:
            rows.append(f"     {figures}")
    return rows


def _shipped() -> Path:
    from .core.registry import SHIPPED_WEIGHTS_ROOT

    return SHIPPED_WEIGHTS_ROOT.resolve()


def cmd_list(args: argparse.Namespace) -> int:
    """Print every installed version of one task (or of all), the default marked with *."""
    names = [_task(args.task)] if args.task else list(TASKS)
    for index, name in enumerate(names):
        if index:
            print()
        print("\n".join(version_rows(name, _roots(args))))
    return 0


def cmd_set_default(args: argparse.Namespace) -> int:
    """Make a version the default of its task."""
    from .core.registry import find_version, set_default

    name = _task(args.task)
    _root, card = find_version(name, args.version, _roots(args), TASKS[name], TRAIN_COMMANDS[name])
    previous = set_default(name, card.version, _roots(args))
    warning = f" (its card says: not default: {card.config['not_default']})" if card.config.get("not_default") else ""
    print(f"{name}: the default is now {card.version}, was {previous}{warning}.")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Go back to the previous default of a task."""
    from .core.registry import rollback_default

    name = _task(args.task)
    print(f"{name}: the default is now {rollback_default(name, _roots(args))} again.")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``neuroreview models`` and its subcommands."""
    models = sub.add_parser("models", help="installed model versions; set or roll back the default")
    commands = models.add_subparsers(dest="models_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", default=None, help="user registry folder (default: the user data folder)")

    p = commands.add_parser("list", help="versions, default (*), held-out figures, demo flag, parent, date")
    p.add_argument("--task", default=None, help=f"one of {', '.join(TASKS)} (default: all)")
    common(p)
    p.set_defaults(func=cmd_list)

    p = commands.add_parser("set-default", help="make VERSION the default of TASK")
    p.add_argument("task", help=", ".join(TASKS))
    p.add_argument("version")
    common(p)
    p.set_defaults(func=cmd_set_default)

    p = commands.add_parser("rollback", help="back to the previous default of TASK")
    p.add_argument("task", help=", ".join(TASKS))
    common(p)
    p.set_defaults(func=cmd_rollback)
