"""networks.json: which component of an ICA folder is which network, read, checked and written.

Why here and not in ``core.io``: the file is the networks task's own document (an
:class:`~.matching.Assignment` plus its provenance), so reading it needs the task's
classes; ``core.io.ica_folder`` keeps the folder's maps and time courses and the rule
that networks.json goes first out and last in (``write_ica``), and never imports a task.

Reading is checked once for every consumer (:func:`load_ica_folder`: match, compare, the
cohort loader, the widget): strict UTF-8 JSON (``core.io.strict_json.read_object``),
every field of the assignment, and an assignment that fits the folder's components, so a
broken folder gets one sentence naming the file whichever command read it. Writing goes
through ``core.io.strict_json`` (the one sanitiser) and is atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import GeometryError, InputFileError
from ...io.atomic import write_text_atomic
from ...io.ica_folder import (
    NETWORKS_FILE,
    ICAComponents,
    component_label,
    load_ica,
    write_ica,
)
from ...io.strict_json import dumps, read_object
from .matching import Assignment

__all__ = [
    "check_assignment",
    "load_ica_folder",
    "load_networks_json",
    "networks_document",
    "provenance_of",
    "read_networks_doc",
    "store_assignment",
    "write_ica_folder",
    "write_networks_json",
]


def _json_text(doc: dict[str, Any]) -> str:
    return dumps(doc, indent=2) + "\n"


def load_networks_json(folder: str | Path) -> Assignment:
    """The network assignment stored in ``folder/networks.json`` (overrides included).

    Raises InputFileError naming the file when it is missing or not a valid networks.json
    (see :meth:`Assignment.from_json` for what is checked).
    """
    folder = Path(folder)
    path = folder / NETWORKS_FILE if folder.is_dir() or not folder.suffix else folder
    if not path.exists():
        raise InputFileError(f"{path}: does not exist; run `neuroreview networks extract` or `match` first")
    doc = read_object(path, NETWORKS_FILE)
    try:
        return Assignment.from_json(doc)
    except InputFileError as exc:  # a field named by from_json; any other exception is a bug
        raise InputFileError(f"{path}: is not a valid networks.json ({exc})") from None


def read_networks_doc(folder: str | Path) -> dict[str, Any]:
    """The whole networks.json document (provenance included), as a dict.

    The one reader of the file: UTF-8, strict JSON (no NaN or Infinity), an object.
    Anything else is one sentence naming the file, whichever command read it.
    """
    return read_object(Path(folder) / NETWORKS_FILE, NETWORKS_FILE)


def check_assignment(assignment: Assignment, comps: ICAComponents, where: str | Path) -> Assignment:
    """Refuse an assignment that does not fit the components it names (``where``: its file).

    It must be for as many components as the maps hold, and every network's component
    must have a map that is not all zero and a time course that is not constant: a model
    fed a blank network would still return a confident-looking P(post).
    """
    if assignment.n_components != comps.n_components:
        raise InputFileError(
            f"{where}: is for {assignment.n_components} components but the folder's maps have {comps.n_components}; "
            "match it again with `neuroreview networks match --rematch`"
        )
    for name, match in assignment.matches.items():
        k = match.component
        if not np.any(comps.maps[..., k]):
            raise InputFileError(f"{where}: {name} is assigned {component_label(k)}, whose map is all zero")
        if not np.ptp(comps.timecourses[:, k]) > 0:
            raise InputFileError(f"{where}: {name} is assigned {component_label(k)}, whose time course is constant")
    return assignment


def load_ica_folder(folder: str | Path) -> tuple[ICAComponents, Assignment]:
    """Components and stored assignment of a folder with a networks.json, both checked.

    The one way in for every consumer of a matched folder (``networks match``,
    ``networks compare``, the cohort loader, the widget): the same broken folder gets
    the same sentence whichever of them reads it.
    """
    folder = Path(folder)
    comps = load_ica(folder)
    assignment = load_networks_json(folder)
    return comps, check_assignment(assignment, comps, folder / NETWORKS_FILE)


def provenance_of(comps: ICAComponents) -> dict[str, Any]:
    """What networks.json says about where ``comps`` came from, before any ``extra``.

    The source is named by its file name only, never its path: a folder name often
    holds a patient's name, and a home folder the user's login; the voxel sha256
    (``source_sha256``, filled by ``extract``) identifies the scan without either.
    """
    return {"source": Path(comps.source).name, "source_sha256": "", "tr_s": comps.tr_s,
            "n_components": comps.n_components, "n_volumes": comps.n_volumes, "method": comps.kind}


def networks_document(comps: ICAComponents, assignment: Assignment, extra: dict[str, Any] | None) -> dict[str, Any]:
    """networks.json as a dict: provenance first, then the assignment's own JSON."""
    doc = provenance_of(comps)
    doc.update(extra or {})
    doc.update(assignment.to_json())
    return doc


def write_ica_folder(out_dir: str | Path, comps: ICAComponents, assignment: Assignment,
                     extra: dict[str, Any] | None = None) -> list[Path]:
    """components.nii.gz, timecourses.tsv and networks.json into ``out_dir``, whole or not at all.

    ``extra`` is provenance merged into networks.json (``source``, ``source_sha256``,
    ``method`` ...). The document is made before anything is written, and
    ``core.io.ica_folder.write_ica`` moves it in last (see there). Returns the files written.
    """
    return write_ica(out_dir, comps, _json_text(networks_document(comps, assignment, extra)))


def write_networks_json(folder: str | Path, assignment: Assignment, keep: dict[str, Any] | None = None) -> Path:
    """Rewrite ``folder/networks.json`` atomically with ``assignment``, keeping provenance ``keep``."""
    doc = dict(keep or {})
    doc.update(assignment.to_json())
    return write_text_atomic(Path(folder) / NETWORKS_FILE, _json_text(doc))


def store_assignment(folder: str | Path, assignment: Assignment, comps: ICAComponents | None = None) -> Path:
    """Save a (possibly overridden) assignment into ``folder/networks.json``, atomically.

    The provenance already in networks.json (source, its sha256, method, seed ...) is
    kept; a folder without one (an FSL MELODIC folder) gets the provenance ``comps``
    gives. This is what the widget's override and ``neuroreview networks match --set``
    both call.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: is not a folder; networks.json is stored in the ICA folder")
    if comps is not None and assignment.n_components != comps.n_components:
        raise GeometryError(
            f"{folder}: the assignment is for {assignment.n_components} components but the maps have {comps.n_components}"
        )
    if (folder / NETWORKS_FILE).exists():
        keep = read_networks_doc(folder)
    elif comps is not None:
        keep = provenance_of(comps)
    else:
        keep = {"n_components": assignment.n_components}
    return write_networks_json(folder, assignment, keep)
