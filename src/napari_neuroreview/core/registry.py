"""Model weights (safetensors) with their model cards (JSON), by name and version.

Layout: ``<root>/<name>/<version>/model.safetensors`` and ``card.json`` beside it.

Why this shape:

* **safetensors only.** A ``.pt``/``.pth``/``.ckpt`` file is a pickle, and unpickling a
  file runs whatever code it carries; radiologists swap weight files by e-mail, so the
  loader refuses pickles outright, even ones renamed to ``.safetensors``.
* **Every weight file has a card** naming its task, version, parent, training data,
  metrics and date, and the sha256 of the weights, so a result can always be traced to
  the exact weights that made it and a swapped or truncated file is caught before use.
* **The card is integrity-checked too.** ``card_sha256`` is the sha256 of the card's
  own content (every other field, canonical JSON), checked on every read: a card edited
  by hand (a threshold of 1.5 that silently finds nothing) is refused like swapped
  weights.
* **A version string is unique across roots.** The user's registry and the shipped
  weights are searched together; the same version in both is refused on load (naming
  both folders) instead of one silently shadowing the other.
* **Versions are immutable and appear atomically.** A new version is written into a
  hidden temporary folder and renamed into place, so a crash during training's final
  save never leaves a half-written version that a widget would then offer.
* **The default version is explicit state**, per model name, in ``default.json`` of
  the first (user) root: the version ``cmb detect`` and the widgets use when none is
  asked for. A new version never becomes the default by being the newest; retraining
  sets it only when the new version is not worse, and the user can set it or roll it
  back (``neuroreview models``). With no recorded default, the newest version of the
  last root (the shipped weights) that is not flagged ``not_default`` is the default.
* **Configs are validated before a network is built** (:func:`core.model_config.check_config`): a crafted
  card cannot make the loader allocate gigabytes.

This module writes versions, lists them and keeps the default; reading one back (the
safetensors gate, verified weights, the one lookup ``load_version``) is
:mod:`core.model_loading`, so each file reads in one sitting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import platformdirs
import torch

from napari_neuroreview.core.errors import RegistryError

__all__ = [
    "CARD_FILE",
    "DEFAULT_FILE",
    "DEMO_NOTE",
    "SHIPPED_WEIGHTS_ROOT",
    "card_digest",
    "check_new_version",
    "default_version",
    "find_version",
    "not_installed",
    "next_version",
    "rollback_default",
    "set_default",
    "installed_versions",
    "WEIGHTS_FILE",
    "ModelCard",
    "default_registry_root",
    "latest",
    "list_versions",
    "read_card",
    "save_model",
    "version_dir",
    "version_key",
]

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
DEFAULT_FILE = "default.json"
#: How many earlier defaults ``rollback_default`` can go back through.
_DEFAULT_HISTORY = 20
DEMO_NOTE = "demo weights, trained on simulated data, not for clinical use"
SHIPPED_WEIGHTS_ROOT: Path = Path(__file__).resolve().parents[1] / "weights"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_VERSION_RE = re.compile(r"\d+(\.\d+)*")


def default_registry_root() -> Path:
    """Where user-trained versions go: ``<user data dir>/napari-neuroreview/models``.

    Outside the package so that upgrading the plugin never deletes a user's models.
    """
    return platformdirs.user_data_path("napari-neuroreview") / "models"


def version_key(version: str) -> tuple[int, ...]:
    """Sort key for dotted numeric versions, so that ``1.10.0`` comes after ``1.9.0``.

    Raises
    ------
    RegistryError
        If ``version`` is not dotted numbers (``1``, ``1.2``, ``1.2.0``).
    """
    if not _VERSION_RE.fullmatch(version):
        raise RegistryError(f"Model version {version!r} is not dotted numbers like 1.2.0.")
    return tuple(int(part) for part in version.split("."))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ModelCard:
    """What a set of weights is, where it came from, and how good it is.

    Parameters
    ----------
    name : str
        Model family (folder name), e.g. ``'cmb-detector'``.
    version : str
        Dotted numbers; each fine-tune gets a new one.
    task : str
        The system it serves (``'cmb'``, ``'rsfmri'``, ``'metastasis'``, ``'stroke'``).
    parent : str or None
        The version it was fine-tuned from, so improvements can be traced.
    training_data : str
        What it was trained on, in words (for shipped weights: which phantoms).
    metrics : dict of str to float
        Validation metrics, named as in ``core.metrics``.
    date : str
        ISO 8601 UTC time of saving.
    framework : str
        Library and version that wrote the weights.
    notes : str
        Free text; shipped demo weights use :data:`DEMO_NOTE`.
    config : dict
        Architecture settings needed to rebuild the ``nn.Module`` before loading.
    weights_sha256 : str
        sha256 of ``model.safetensors``; filled in by :func:`save_model`.
    card_sha256 : str
        sha256 of the card's other fields (:func:`card_digest`); filled in by
        :func:`save_model`, checked by :func:`read_card`.
    """

    name: str
    version: str
    task: str
    parent: str | None = None
    training_data: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    date: str = field(default_factory=_now)
    framework: str = field(default_factory=lambda: f"torch {torch.__version__}")
    notes: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    card_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (as written to ``card.json`` and to the store)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> ModelCard:
        """Build a card from JSON data, ignoring keys a newer release may have added.

        Raises
        ------
        RegistryError
            If a required field (name, version, task) is missing.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [key for key in ("name", "version", "task") if key not in data]
        if missing:
            raise RegistryError(f"The {source} lacks the field(s) {', '.join(missing)}.")
        card = cls(**{key: value for key, value in data.items() if key in known})
        try:
            card.metrics = {str(k): float(v) for k, v in dict(card.metrics).items()}
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"The {source} has metrics that are not numbers.") from exc
        return card


def card_digest(data: dict[str, Any]) -> str:
    """sha256 of a card's content: every field but ``card_sha256``, as canonical JSON.

    Canonical (sorted keys, no spaces, no NaN) so that re-indenting the file does not
    change it but any changed value does.
    """
    body = {key: value for key, value in data.items() if key != "card_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def version_dir(root: str | Path, name: str, version: str) -> Path:
    """The folder of one version (whether or not it exists)."""
    return Path(root) / name / version


def read_card(path: str | Path) -> ModelCard:
    """Read the card of a version folder (or of the weight file inside it).

    Raises
    ------
    RegistryError
        If ``card.json`` is missing, is not a valid card, or its content does not match
        its ``card_sha256`` (edited after saving).
    """
    path = Path(path)
    if not path.exists():  # a version folder that is not there: name it, not its parent
        raise RegistryError(f"There is no model version at {path}.")
    card_path = (path if path.is_dir() else path.parent) / CARD_FILE
    if not card_path.is_file():
        raise RegistryError(f"The weights in {card_path.parent} have no model card {CARD_FILE}.")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"The model card {card_path} is not readable JSON: {exc}.") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"The model card {card_path} is not a JSON object.")
    _check_card_digest(card_path, data)
    return ModelCard.from_dict(data, source=f"model card {card_path}")


def _check_card_digest(card_path: Path, data: dict[str, Any]) -> None:
    """Refuse a card whose content is not the content that was saved."""
    stored = data.get("card_sha256")
    if not isinstance(stored, str) or not stored:
        raise RegistryError(
            f"The model card {card_path} has no card_sha256 to check its content against; "
            "it was written by hand or by an older release: retrain or reinstall that version."
        )
    try:
        digest = card_digest(data)
    except ValueError as exc:  # NaN/Infinity: not strict JSON, so not a card this program wrote
        raise RegistryError(f"The model card {card_path} holds a value that is not strict JSON.") from exc
    if digest != stored:
        raise RegistryError(
            f"The model card {card_path} does not match its card_sha256 (sha256 {digest[:12]} "
            f"instead of {stored[:12]}); it was changed after saving."
        )


def _fsync_dir(path: Path) -> None:
    """Make a rename durable; some platforms (Windows) cannot open folders, so skip there."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_model(state_dict: dict[str, torch.Tensor], card: ModelCard, root: str | Path) -> Path:
    """Save a new version atomically and return its folder.

    Parameters
    ----------
    state_dict : dict of str to Tensor
        ``module.state_dict()``; tensors are copied to CPU (tied weights become copies,
        which safetensors requires).
    card : ModelCard
        Its ``weights_sha256`` is computed here and written to ``card.json``; the
        caller's object is not changed.
    root : str or Path
        Registry root (e.g. :func:`default_registry_root`).

    Raises
    ------
    RegistryError
        If the version already exists (versions are immutable: make a new one), or the
        name/version is not a safe folder name.
    """
    from safetensors.torch import save_file

    if not _NAME_RE.fullmatch(card.name):
        raise RegistryError(
            f"Model name {card.name!r} must be letters, digits, '.', '_' or '-' only."
        )
    version_key(card.version)
    target = version_dir(root, card.name, card.version)
    if target.exists():
        raise RegistryError(
            f"Model {card.name} version {card.version} already exists in {target.parent}; "
            "save it under a new version."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {str(k): v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{card.version}-", dir=target.parent))
    try:
        weights = staging / WEIGHTS_FILE
        save_file(tensors, str(weights))
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        final = dataclasses.replace(card, weights_sha256=digest, card_sha256="")
        # The JSON round trip makes the hashed content exactly what read_card will see.
        data = json.loads(json.dumps(final.to_dict(), allow_nan=False))
        _refuse_paths(data, card)
        data["card_sha256"] = card_digest(data)
        with (staging / CARD_FILE).open("w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        with weights.open("rb") as fh:
            os.fsync(fh.fileno())
        _fsync_dir(staging)
        try:
            os.replace(staging, target)
        except OSError as exc:  # lost a race with another saver of the same version
            raise RegistryError(
                f"Model {card.name} version {card.version} could not be moved into "
                f"{target}: {exc.strerror or exc}."
            ) from exc
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _refuse_paths(value: Any, card: ModelCard, key: str = "card") -> None:
    """A card travels with the weights (e-mailed, shared): no folder, which can name a patient or a user.

    Raises ValueError, not RegistryError: a caller that puts a path into a card is a bug.
    """
    if isinstance(value, dict):
        for k, v in value.items():
            _refuse_paths(v, card, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_paths(v, card, f"{key}[{i}]")
    elif isinstance(value, str) and (
        re.search(r"(^|[\s(='\"])(/|~/|[A-Za-z]:[\\/]|\\\\)[^\s]*[\\/]", value) or str(Path.home()) in value
    ):
        raise ValueError(f"model card {card.name} {card.version}: {key} holds a path ({value[:80]!r}); "
                         "describe training data by file names, sha256 and counts")


def list_versions(root: str | Path, name: str) -> list[ModelCard]:
    """Cards of every saved version of ``name``, oldest version first.

    Hidden folders (a save in progress) and folders without a card or with a
    non-numeric name are skipped; an unreadable or mismatched card raises
    :class:`RegistryError`, because silently hiding a version would be worse.
    """
    folder = Path(root) / name
    if not folder.is_dir():
        return []
    cards: list[ModelCard] = []
    for child in folder.iterdir():
        hidden = child.name.startswith(".")
        if hidden or not _VERSION_RE.fullmatch(child.name) or not (child / CARD_FILE).is_file():
            continue
        card = read_card(child)
        if (card.name, card.version) != (name, child.name):
            raise RegistryError(
                f"The model card in {child} says {card.name} {card.version}, "
                f"not {name} {child.name}."
            )
        cards.append(card)
    return sorted(cards, key=lambda card: version_key(card.version))


def latest(root: str | Path, name: str) -> ModelCard | None:
    """The card of the highest version of ``name`` under ``root``, or ``None`` if none.

    ``None`` rather than an error so that callers can fall back, e.g. from the user's
    registry to :data:`SHIPPED_WEIGHTS_ROOT`.
    """
    cards = list_versions(root, name)
    return cards[-1] if cards else None


def _default_roots(roots: list[Path] | None) -> list[Path]:
    """The roots searched, user registry first, without repeats (one folder listed twice is not a clash)."""
    roots = roots if roots is not None else [default_registry_root(), SHIPPED_WEIGHTS_ROOT]
    unique: dict[Path, Path] = {}
    for root in roots:
        unique.setdefault(Path(root).expanduser().resolve(), Path(root))
    return list(unique.values())


def installed_versions(name: str, roots: list[Path] | None = None) -> list[tuple[Path, ModelCard]]:
    """Every installed version of ``name`` with the registry root it lives in, oldest first.

    ``roots`` default to the user's registry, then the shipped weights.

    Raises
    ------
    RegistryError
        If one version is installed in two roots: which one a result came from would be
        ambiguous (a user's card could pose as the shipped 1.0.0), so neither is used.
    """
    found: dict[str, tuple[Path, ModelCard]] = {}
    for root in _default_roots(roots):
        for card in list_versions(root, name):
            if card.version in found:
                first = version_dir(found[card.version][0], name, card.version)
                raise RegistryError(
                    f"Model {name} version {card.version} is installed twice, in {first} and in "
                    f"{version_dir(root, name, card.version)}; a version must be unique, so remove or "
                    "rename the one you did not mean to use."
                )
            found[card.version] = (Path(root), card)
    return [found[v] for v in sorted(found, key=version_key)]


def check_new_version(name: str, version: str, roots: list[Path] | None = None) -> None:
    """Refuse, before any training, a new version that is already installed in any root.

    Raises
    ------
    RegistryError
        If ``version`` is not dotted numbers or is installed already.
    """
    version_key(version)
    for root, card in installed_versions(name, roots):
        if card.version == version:
            raise RegistryError(
                f"Model {name} version {version} already exists in {version_dir(root, name, version)}; "
                "choose a new version."
            )


def next_version(name: str, roots: list[Path] | None = None, base: str | None = None) -> str:
    """The next minor version after every installed one (``1.0.0`` when none is)."""
    versions = [card.version for _root, card in installed_versions(name, roots)] + ([base] if base else [])
    if not versions:
        return "1.0.0"
    top = [*max(versions, key=version_key).split("."), "0", "0"][:3]
    return ".".join([top[0], str(int(top[1]) + 1), "0"])


# ----------------------------------------------------------------------------- default


def _default_file(name: str, roots: list[Path] | None) -> Path:
    """The default of ``name`` is kept in the first (user) root, never in the package."""
    return Path(_default_roots(roots)[0]) / name / DEFAULT_FILE


def _read_default_state(path: Path) -> dict[str, Any]:
    """``{"default": version or None, "previous": [older defaults, oldest first]}``."""
    if not path.is_file():
        return {"default": None, "previous": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"The default-version file {path} is not readable JSON.") from exc
    default, previous = (data.get("default"), data.get("previous", [])) if isinstance(data, dict) else (0, 0)
    if not (default is None or isinstance(default, str)) or not (
        isinstance(previous, list) and all(isinstance(v, str) for v in previous)
    ):
        raise RegistryError(f"The default-version file {path} does not hold a version and a list of earlier ones.")
    return {"default": default, "previous": list(previous)}


def _write_default_state(path: Path, default: str, previous: list[str]) -> None:
    from napari_neuroreview.core.io.atomic import write_text_atomic

    state = {"default": default, "previous": previous[-_DEFAULT_HISTORY:], "date": _now()}
    write_text_atomic(path, json.dumps(state, indent=2) + "\n")


def _fallback_default(name: str, roots: list[Path] | None, versions: list[tuple[Path, ModelCard]]) -> str | None:
    """With no recorded default: the newest unflagged version of the last root that has one."""
    for root in reversed(_default_roots(roots)):
        here = [card.version for r, card in versions
                if Path(r).resolve() == Path(root).resolve() and not card.config.get("not_default")]
        if here:
            return here[-1]
    return None


def default_version(name: str, roots: list[Path] | None = None) -> str | None:
    """The version used when none is asked for (see the module notes), or None if none is installed."""
    versions = installed_versions(name, roots)
    state = _read_default_state(_default_file(name, roots))
    if state["default"] in {card.version for _root, card in versions}:
        return str(state["default"])
    return _fallback_default(name, roots, versions)


def set_default(name: str, version: str, roots: list[Path] | None = None) -> str | None:
    """Make ``version`` the default; return the previous default (which a rollback restores).

    Raises
    ------
    RegistryError
        If ``version`` is not installed.
    """
    installed = [card.version for _root, card in installed_versions(name, roots)]
    if version not in installed:
        raise RegistryError(
            f"Model {name} version {version} is not installed (installed: {', '.join(installed) or 'none'})."
        )
    path = _default_file(name, roots)
    state = _read_default_state(path)
    current = default_version(name, roots)
    previous = [v for v in state["previous"] if v != version]
    if current is not None and current != version:
        previous.append(current)
    _write_default_state(path, version, previous)
    return current


def rollback_default(name: str, roots: list[Path] | None = None) -> str:
    """Go back to the default before the current one; return it.

    Raises
    ------
    RegistryError
        If there is no earlier default that is still installed.
    """
    installed = {card.version for _root, card in installed_versions(name, roots)}
    path = _default_file(name, roots)
    state = _read_default_state(path)
    current = default_version(name, roots)
    previous = [v for v in state["previous"] if v in installed and v != current]
    if not previous:
        raise RegistryError(f"Model {name} has no earlier default to roll back to (the default is {current}).")
    _write_default_state(path, previous[-1], previous[:-1])
    return previous[-1]


def not_installed(what: str, train_command: str, *, shipped: bool = True) -> str:
    """The one sentence for "no ``what`` is installed", with the ways out.

    Why one: the CLI, the loaders and the panels (before any load is tried) say it alike.
    ``shipped``: whether the package ships demo weights of it; only then is reinstalling a
    way out.
    """
    if not shipped:
        return f"No {what} is installed: train one with `{train_command}`."
    return f"No {what} is installed: train one with `{train_command}` or reinstall napari-neuroreview (it ships demo weights)."


def find_version(
    name: str, version: str | None, roots: list[Path] | None, what: str, train_command: str, *,
    shipped: bool = True,
) -> tuple[Path, ModelCard]:
    """The root and card of ``version`` of ``name`` (the default version when None).

    ``shipped``: whether the package ships demo weights of ``name``; only then is
    reinstalling a way out (a model that ships none must not send the user to reinstall).

    Raises
    ------
    RegistryError
        One sentence naming ``what`` (e.g. "microbleed detector") when nothing is
        installed (with ``train_command`` as the way out) or that version is not.
    """
    versions = installed_versions(name, roots)
    if not versions:
        raise RegistryError(not_installed(what, train_command, shipped=shipped))
    if version is None:
        version = default_version(name, roots)
        if version is None:
            raise RegistryError(
                f"No {what} version is the default (every installed one is flagged not default): "
                f"choose one with `neuroreview models set-default {name} VERSION`."
            )
    matches = [(r, c) for r, c in versions if c.version == version]
    if not matches:
        known = ", ".join(c.version for _, c in versions)
        raise RegistryError(f"The {what} version {version} is not installed (installed: {known}).")
    return matches[0]
