"""Phantom DICOM series written with pydicom, for the DICOM tests in core and widgets.

Moved here from ``tests/core/test_dicom.py`` so that the widget tests (another folder) write
their series the same way: one file per slice, LPS patient space, shuffled file names, and
the patient identity of :data:`IDENTITY` in every file (none of it may come out).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from napari_neuroreview.core.anatomy.registration import ras_lps

#: Patient identity written into every phantom file: none of it may come out.
IDENTITY = {"PatientName": "DOE^JANE", "PatientID": "PID-0042-XYZ", "PatientBirthDate": "19470312"}


def write_series(img: nib.Nifti1Image, folder: Path, *, number: int | None = 1, description: str = "T1 phantom",
                 uid: str | None = None, echo: float = 4.0, slope: float | Sequence[float] | None = 0.25,
                 intercept: float = -8.0, shift_per_slice: np.ndarray | None = None,
                 tilt: float | None = None) -> list[Path]:
    """One DICOM file per slice (k), LPS patient space, int16 with a rescale, shuffled names.

    ``slope`` None writes no rescale tags (the stored integers are the values); a sequence
    gives each slice its own slope.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = np.asarray(img.dataobj, dtype=np.float64)
    lps = ras_lps(img.affine)
    row, col = lps[:3, 0], lps[:3, 1]
    iop = [*(row / np.linalg.norm(row)), *(col / np.linalg.norm(col))]
    uid = uid or generate_uid()
    order = np.random.default_rng(number or 0).permutation(data.shape[2])
    paths = []
    for k in range(data.shape[2]):
        position = lps[:3, 2] * k + lps[:3, 3] + (shift_per_slice * k if shift_per_slice is not None else 0.0)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = MRImageStorage, ExplicitVRLittleEndian
        meta.MediaStorageSOPInstanceUID = sop = generate_uid()
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, sop, "MR"
        for key, value in IDENTITY.items():
            setattr(ds, key, value)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = "1.2.3.4", uid, "1.2.3.5"
        ds.SeriesDescription, ds.InstanceNumber = description, k + 1
        if number is not None:
            ds.SeriesNumber = number
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        ds.PixelSpacing = [f"{np.linalg.norm(col):.6f}", f"{np.linalg.norm(row):.6f}"]
        ds.SliceThickness, ds.EchoTime, ds.RepetitionTime = f"{np.linalg.norm(lps[:3, 2]):.6f}", echo, 500
        if tilt is not None:
            ds.GantryDetectorTilt = tilt
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        own = slope[k] if isinstance(slope, Sequence) else slope
        if own is not None:
            ds.RescaleSlope, ds.RescaleIntercept = own, intercept
        stored = np.round((data[:, :, k].T - (intercept if own is not None else 0.0)) / (own or 1.0)).astype(np.int16)
        ds.PixelData = stored.tobytes()
        path = folder / f"S{number}-{uid}-IM{order[k]:04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
