"""Folders of labelled SWI cases, as ``neuroreview cmb evaluate --data DIR`` reads them.

Two layouts, found by one rule (:func:`find_cases`): DIR itself and each folder directly
inside it are searched, and in each such folder

- ``swi.nii.gz`` is one case, named after the folder (what
  :func:`core.phantoms.swi.write_swi_cohort` writes; expert-labelled real cases can use
  the same)::

      DIR/<case>/swi.nii.gz               magnitude
      DIR/<case>/phase.nii.gz             optional filtered phase
      DIR/<case>/truth_instances.nii.gz   one integer per microbleed (0 elsewhere)

- each ``<subject>_swi.nii.gz`` is one case, named ``<subject>`` (the shipped sample:
  ``neuroreview sample-data --out X`` writes ``X/cmb/sub-demo_swi.nii.gz``, so both
  ``--data X`` and ``--data X/cmb`` find it)::

      <subject>_swi.nii.gz, <subject>_phase.nii.gz (optional), <subject>_cmb-instances.nii.gz

A magnitude without its truth file is refused, not skipped: a silently smaller cohort
would report different figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import GeometryError, InputFileError
from ...io.nifti import load_volume
from ...io.resample import same_grid
from .evaluate import truth_labels
from .train import LabelledScan, labelled_from_instances


@dataclass(frozen=True)
class CaseFiles:
    """The files of one labelled case (``phase`` None when absent)."""

    name: str
    magnitude: Path
    phase: Path | None
    truth: Path


def _cases_in(folder: Path, name: str) -> list[CaseFiles]:
    """The cases of one folder, by the two naming conventions of the module docstring."""
    found = []
    if (folder / "swi.nii.gz").is_file():
        found.append((name, folder / "swi.nii.gz", folder / "phase.nii.gz", folder / "truth_instances.nii.gz"))
    for swi in sorted(folder.glob("*_swi.nii.gz")):
        subject = swi.name[: -len("_swi.nii.gz")]
        found.append((subject, swi, folder / f"{subject}_phase.nii.gz", folder / f"{subject}_cmb-instances.nii.gz"))
    cases = []
    for case, swi, phase, truth in found:
        if not truth.is_file():
            raise InputFileError(f"{swi}: has no truth labels beside it (expected {truth.name})")
        cases.append(CaseFiles(case, swi, phase if phase.is_file() else None, truth))
    return cases


def find_cases(data_dir: str | Path) -> list[CaseFiles]:
    """The labelled cases in ``data_dir`` and the folders directly inside it, sorted by folder."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputFileError(f"{data_dir}: is not a folder of cases")
    cases = _cases_in(data_dir, data_dir.name)
    for sub in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        cases.extend(_cases_in(sub, sub.name))
    if not cases:
        raise InputFileError(f"{data_dir}: holds no labelled SWI cases (neither <case>/swi.nii.gz with "
                             f"truth_instances.nii.gz nor <subject>_swi.nii.gz with <subject>_cmb-instances.nii.gz)")
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        twice = min(n for n in names if names.count(n) > 1)
        raise InputFileError(f"{data_dir}: holds two cases named {twice}; give each case its own name")
    return cases


def load_case(files: CaseFiles) -> LabelledScan:
    """One case's files -> a labelled scan (truth checked to be on the scan's grid)."""
    magnitude = load_volume(files.magnitude)
    phase = load_volume(files.phase) if files.phase is not None else None
    truth = load_volume(files.truth)
    if not same_grid(truth.spatial_shape, truth.affine, magnitude.spatial_shape, magnitude.affine):
        raise GeometryError(f"{files.truth}: is not on the grid of {files.magnitude.name}")
    instances = truth_labels(truth.data, files.truth).astype(np.int64)
    return labelled_from_instances(files.name, magnitude, phase, instances)


def load_cases(data_dir: str | Path) -> list[LabelledScan]:
    """Every labelled case :func:`find_cases` finds under ``data_dir``, in its order."""
    return [load_case(files) for files in find_cases(data_dir)]
