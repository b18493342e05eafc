"""BIDS derivatives: where an export lands, what its files are named, what their sidecars say.

An export of a scan goes to ``<out>/derivatives/neuroreview/`` (BIDS 1.10, "Derivatives")::

    dataset_description.json                 Name, BIDSVersion, DatasetType "derivative",
                                             GeneratedBy (this plugin, its version), DatasetLinks
    sub-<label>/[ses-<label>/]anat/
        sub-<label>[_ses-<label>][_acq-..]_desc-<desc>_<suffix><extension>
        sub-<label>..._desc-<desc>_<suffix>.json   the sidecar: model, card threshold, source sha256, Sources

Why the labels: the subject (and session, acquisition, run...) entities are taken from the
SOURCE file's name when it is already BIDS (``sub-01_ses-02_swi.nii.gz``: the dataset's own
pseudonyms); any other name may hold a patient's name, so the subject is then a pseudonym,
``sub-`` and the first :data:`PSEUDONYM_DIGITS` hex digits of the scan's voxel sha256 (the
scan's identity everywhere in this package). ``Sources`` are BIDS URIs into the raw dataset
``<out>`` (``bids:raw:sub-01/ses-02/anat/sub-01_ses-02_swi.nii.gz``, ``raw`` linked as
``../..`` in ``DatasetLinks``): relative, never a path of this machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import __version__
from ..errors import NeuroreviewError, OutputPathError
from . import strict_json
from .atomic import write_text_atomic

__all__ = [
    "BIDS_VERSION", "DERIVATIVE_FOLDER", "GENERATOR", "PSEUDONYM_DIGITS", "BidsScan", "bids_scan",
    "check_same_scan", "dataset_description", "derivative_root", "description_write", "json_write", "sidecar", "sidecar_path",
]

#: The BIDS version the layout and the sidecars follow.
BIDS_VERSION = "1.10.0"
#: ``GeneratedBy`` name (the package; its version is :data:`napari_neuroreview.__version__`).
GENERATOR = "napari-neuroreview"
#: ``<out>/derivatives/<this>``: the pipeline's folder.
DERIVATIVE_FOLDER = "neuroreview"
#: Hex digits of the voxel sha256 in a pseudonymous subject label (48 bits: no two scans of a site collide).
PSEUDONYM_DIGITS = 12
#: A BIDS entity: ``key-label``, both alphanumeric (the spec's label rule).
_ENTITY = re.compile(r"^([a-z]+)-([a-zA-Z0-9]+)$")
_SUFFIX = re.compile(r"^[a-zA-Z0-9]+$")


def derivative_root(out: str | Path) -> Path:
    """``<out>/derivatives/neuroreview``: where every file of an export lands."""
    return Path(out) / "derivatives" / DERIVATIVE_FOLDER


@dataclass(frozen=True)
class BidsScan:
    """The BIDS entities an export of one scan is named with, and where its raw file would be.

    Attributes
    ----------
    entities : tuple of (key, label)
        ``sub`` first, then ``ses`` when there is one, then the source's other entities in order.
    source : str
        The source's path inside the raw dataset (``sub-01/ses-02/anat/sub-01_ses-02_swi.nii.gz``),
        or '' when the source is not BIDS-named (then nothing of its name is written).
    datatype : str
        The BIDS datatype folder (``anat`` for the structural scans reviewed here).
    """

    entities: tuple[tuple[str, str], ...]
    source: str = ""
    datatype: str = "anat"

    def folder(self, out: str | Path) -> Path:
        """``<out>/derivatives/neuroreview/sub-<label>/[ses-<label>/]<datatype>``."""
        where = derivative_root(out) / f"sub-{self.entities[0][1]}"
        session = dict(self.entities).get("ses")
        return (where / f"ses-{session}" if session else where) / self.datatype

    def path(self, out: str | Path, desc: str, suffix: str, extension: str) -> Path:
        """``sub-<label>[_ses-<label>]..._desc-<desc>_<suffix><extension>`` in :meth:`folder`."""
        if not _SUFFIX.match(desc) or not _SUFFIX.match(suffix) or not extension.startswith("."):
            raise ValueError(f"not a BIDS desc/suffix/extension: {desc!r} {suffix!r} {extension!r}")
        stem = "_".join(f"{key}-{label}" for key, label in self.entities)
        return self.folder(out) / f"{stem}_desc-{desc}_{suffix}{extension}"

    def sources(self) -> list[str]:
        """The sidecar's ``Sources``: the raw file as a BIDS URI, or none for a non-BIDS source."""
        return [f"bids:raw:{self.source}"] if self.source else []


def bids_scan(source_name: str, sha256: str, datatype: str = "anat") -> BidsScan:
    """The entities of an export: the source's own when its file name is BIDS, else a pseudonym.

    Parameters
    ----------
    source_name : str
        The scan's file name (a path is cut to its name: a folder never names anything).
    sha256 : str
        The scan's voxel-data sha256 (hex).
    """
    name = Path(str(source_name).split("::")[0]).name
    parts = name.split(".")[0].split("_")
    matches = [_ENTITY.match(part) for part in parts[:-1]]
    if len(parts) >= 2 and _SUFFIX.match(parts[-1]) and all(matches) and matches and matches[0].group(1) == "sub":
        entities = tuple((m.group(1), m.group(2)) for m in matches if m.group(1) != "desc")
        keys = [key for key, _ in entities]
        if len(set(keys)) == len(keys) and ("ses" not in keys or keys.index("ses") == 1):
            folder = f"sub-{entities[0][1]}/" + (f"ses-{dict(entities)['ses']}/" if "ses" in keys else "")
            return BidsScan(entities, f"{folder}{datatype}/{name}", datatype)
    digest = str(sha256).lower()
    if len(digest) < PSEUDONYM_DIGITS or not re.fullmatch(r"[0-9a-f]+", digest):
        raise ValueError(f"a voxel sha256 (hex) names the pseudonym, not {sha256!r}")
    return BidsScan((("sub", digest[:PSEUDONYM_DIGITS]),), "", datatype)


def dataset_description(name: str) -> dict[str, Any]:
    """The derivative dataset's ``dataset_description.json`` (GeneratedBy: this package, its version)."""
    return {
        "Name": name, "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
        "GeneratedBy": [{"Name": GENERATOR, "Version": __version__,
                         "Description": "reviewed model findings exported from the annotation store"}],
        "DatasetLinks": {"raw": "../.."},
    }


def description_write(out: str | Path, name: str) -> tuple[Path, Any]:
    """``(path, writer)`` of ``dataset_description.json``, for ``outputs.write_together`` with the files.

    An existing description is rewritten only when it is this package's (the version may have
    changed); another pipeline's is refused in one sentence, before anything is written.

    Raises
    ------
    OutputPathError
        ``derivatives/neuroreview`` holds another tool's dataset description.
    """
    path = derivative_root(out) / "dataset_description.json"
    if path.exists():
        try:
            doc = strict_json.read_object(path, "dataset description")
        except NeuroreviewError as exc:  # not JSON, not an object: not a description this package wrote
            raise OutputPathError(f"{path.name} in {path.parent.name}/ is not a readable dataset description; "
                                  "export to another folder") from exc
        generated = doc.get("GeneratedBy")
        ours = isinstance(generated, list) and any(isinstance(g, Mapping) and g.get("Name") == GENERATOR
                                                   for g in generated)
        if not ours:
            raise OutputPathError(f"{path.parent.name}/{path.name} was written by another tool; export to another folder")
    text = strict_json.dumps(dataset_description(name), indent=2) + "\n"
    return path, lambda tmp: write_text_atomic(tmp, text)


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a data file: the same name with ``.json`` for its extension."""
    path = Path(path)
    stem = path.name[: -len("".join(path.suffixes))] if path.suffixes else path.name
    return path.with_name(stem + ".json")


def check_same_scan(path: str | Path, sha256: str) -> None:
    """Refuse to replace a sidecar (so its export) written for another scan.

    Why: two scans of one subject and session whose names differ only in what the layout
    drops (``sub-01_swi``, ``sub-01_T2starw``) map to the same files; the second export would
    silently replace the first. The sidecar's ``SourceVoxelSHA256`` says whose files they are.

    Raises
    ------
    OutputPathError
        ``path`` exists and names another scan, or is not a readable JSON object.
    """
    path = Path(path)
    if not path.exists():
        return
    try:
        previous = strict_json.read_object(path, "sidecar").get("SourceVoxelSHA256")
    except NeuroreviewError as exc:
        raise OutputPathError(f"{path.name} in {path.parent.name}/ is not a readable sidecar; export to another "
                              "folder") from exc
    if previous is not None and previous != sha256:
        raise OutputPathError(f"{path.name} in {path.parent.name}/ holds the export of another scan (voxel sha256 "
                              f"{str(previous)[:PSEUDONYM_DIGITS]}, not {sha256[:PSEUDONYM_DIGITS]}); export this "
                              "scan to another folder.")


def json_write(path: Path, doc: Mapping[str, Any]) -> tuple[Path, Any]:
    """``(path, writer)`` of a JSON document (a sidecar), strict JSON, written atomically."""
    text = strict_json.dumps(dict(doc), indent=2) + "\n"
    return path, lambda tmp: write_text_atomic(tmp, text)


def sidecar(description: str, scan: BidsScan, sha256: str, models: Sequence[Mapping[str, Any]],
            **fields: Any) -> dict[str, Any]:
    """A sidecar's fields: what the file is, the models (name, version, card threshold), the source.

    ``fields`` are added as given (BIDS-style CamelCase keys: ``Reviewer``, ``LabelStatuses``...).
    """
    return {"Description": description, "Sources": scan.sources(), "SourceVoxelSHA256": sha256,
            "Models": [dict(m) for m in models], **fields}
