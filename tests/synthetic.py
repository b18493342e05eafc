"""Helpers for tests: the same image stored in any orientation, written as NIfTI."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def reorient_to(data: np.ndarray, affine: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with another voxel order (nibabel does the bookkeeping)."""
    start = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(axcodes))
    return (
        nib.orientations.apply_orientation(data, transform),
        affine @ nib.orientations.inv_ornt_aff(transform, data.shape),
    )


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))
    return path


