"""Folders of labelled SWI cases, as ``neuroreview cmb evaluate --data DIR`` reads them.

Layout (what :func:`core.phantoms.swi.write_swi_cohort` writes; expert-labelled real
cases can use the same)::

    DIR/<case>/swi.nii.gz               magnitude
    DIR/<case>/phase.nii.gz             optional filtered phase
    DIR/<case>/truth_instances.nii.gz   one integer per microbleed (0 elsewhere)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import GeometryError, InputFileError
from ...io.nifti import load_volume
from .evaluate import truth_labels
from .train import LabelledScan, labelled_from_instances


def load_case(case_dir: Path) -> LabelledScan:
    """One case folder -> a labelled scan (truth checked to be on the scan's grid)."""
    magnitude = load_volume(case_dir / "swi.nii.gz")
    phase_path = case_dir / "phase.nii.gz"
    phase = load_volume(phase_path) if phase_path.exists() else None
    truth = load_volume(case_dir / "truth_instances.nii.gz")
    if truth.spatial_shape != magnitude.spatial_shape or not np.allclose(truth.affine, magnitude.affine, atol=1e-3):
        raise GeometryError(f"{case_dir}: truth_instances.nii.gz is not on the grid of swi.nii.gz")
    instances = truth_labels(truth.data, case_dir / "truth_instances.nii.gz").astype(np.int64)
    return labelled_from_instances(case_dir.name, magnitude, phase, instances)


def load_cases(data_dir: str | Path) -> list[LabelledScan]:
    """Every case folder under ``data_dir`` (sorted by name)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputFileError(f"{data_dir}: is not a folder of cases")
    folders = sorted(p for p in data_dir.iterdir() if (p / "swi.nii.gz").exists())
    if not folders:
        raise InputFileError(f"{data_dir}: holds no case folders with swi.nii.gz and truth_instances.nii.gz")
    return [load_case(p) for p in folders]
