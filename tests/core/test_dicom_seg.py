"""DICOM SEG out and back in: phantom series (axial and 10-degree oblique) with known instance labels.

The series are written by :func:`test_dicom.write_series` (LPS files, shuffled names, the
phantom's patient identity); the SEG must come back voxel for voxel on the series' grid,
reference the series' images, carry the patient module, and the review's JSON/TSV none of it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_synthetic import IDENTITY, write_series
from test_dicom import _phantom

from napari_neuroreview._reader import get_reader
from napari_neuroreview.core.errors import InputFileError, OutputPathError
from napari_neuroreview.core.io import dicom_seg
from napari_neuroreview.core.io.dicom_seg import read_seg, write_cmb_seg
from napari_neuroreview.core.io.nifti import load_volume, save_volume
from napari_neuroreview.core.store import CaseStore
from napari_neuroreview.core.tasks.cmb.review import ReviewSession
from napari_neuroreview.core.tasks.cmb.review_export import export_review

#: A patient name highdicom finds "potentially invalid" and would quote in a log line.
ODD_NAME = "Jane Doe"


@pytest.fixture(scope="module", params=["axial", "oblique"])
def series(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A study folder holding one phantom series (its own subfolder) and the series read back."""
    root = tmp_path_factory.mktemp(f"study-{request.param}")
    folder = root / "series"
    for path in write_series(_phantom(request.param), folder, description=f"SWI {request.param}"):
        ds = pydicom.dcmread(path)
        ds.PatientName = ODD_NAME
        ds.save_as(path)
    return folder, load_volume(folder)


def _instances(shape: tuple[int, ...]) -> np.ndarray:
    """Three microbleeds with non-consecutive ids, one of them across two slices."""
    labels = np.zeros(shape, dtype=np.uint16)
    labels[10:13, 20:22, 5:7] = 7
    labels[30, 40, 20] = 12
    labels[31, 40, 20] = 3
    return labels


def test_seg_round_trips_voxel_for_voxel_and_references_the_series(series, tmp_path: Path, caplog) -> None:
    folder, volume = series
    labels = _instances(volume.shape)
    out = folder.parent / "exports" / "cmb_seg.dcm"
    out.parent.mkdir(exist_ok=True)
    with caplog.at_level(logging.DEBUG):
        write_cmb_seg(labels, folder, out, volume.affine)
    back = load_volume(out)  # load_volume dispatches a SEG file to read_seg
    assert back.header["format"] == "DICOM SEG" and back.shape == volume.shape
    np.testing.assert_array_equal(back.data, labels)  # ids restored from the TrackingIDs
    np.testing.assert_allclose(back.affine, volume.affine)
    ds = pydicom.dcmread(out)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in folder.iterdir()]
    referenced = ds.ReferencedSeriesSequence
    assert len(referenced) == 1 and referenced[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced[0].ReferencedInstanceSequence} == {s.SOPInstanceUID for s in sources}
    assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID and ds.StudyInstanceUID == sources[0].StudyInstanceUID
    assert len(ds.SegmentSequence) == 3 and [s.TrackingID for s in ds.SegmentSequence] == ["3", "7", "12"]
    assert ds.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "50960005"
    assert ds.Manufacturer == "napari-neuroreview" and ds.SoftwareVersions
    # the patient module copied from the source, and never into a log line
    assert (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate) == (ODD_NAME, IDENTITY["PatientID"],
                                                                         IDENTITY["PatientBirthDate"])
    assert not any(v in caplog.text for v in (ODD_NAME, "Jane", IDENTITY["PatientID"], IDENTITY["PatientBirthDate"]))


def test_the_reader_opens_the_seg_as_labels_aligned_to_the_series(series) -> None:
    folder, volume = series
    out = folder.parent / "reader" / "seg.dcm"
    out.parent.mkdir(exist_ok=True)
    labels = _instances(volume.shape)
    write_cmb_seg(labels, folder, out, volume.affine)
    [(image, image_kwargs, image_type)] = get_reader(str(folder))(str(folder))
    [(seg, seg_kwargs, seg_type)] = get_reader(str(out))(str(out))
    assert (image_type, seg_type) == ("image", "labels") and seg.shape == image.shape
    np.testing.assert_allclose(seg_kwargs["metadata"]["affine"], image_kwargs["metadata"]["affine"])
    np.testing.assert_allclose(seg_kwargs["scale"], image_kwargs["scale"])
    np.testing.assert_allclose(seg_kwargs["translate"], image_kwargs["translate"])
    assert set(np.unique(seg)) == {0, 3, 7, 12}


def test_a_nifti_scan_is_refused_in_one_sentence(tmp_path: Path) -> None:
    scan = tmp_path / "swi.nii.gz"
    save_volume(scan, np.zeros((8, 8, 4), np.float32), np.eye(4), dtype=np.float32)
    labels = np.zeros((8, 8, 4), np.uint16)
    labels[2, 2, 2] = 1
    sentence = r"swi\.nii\.gz: was not opened from DICOM, and a DICOM SEG must reference"
    with pytest.raises(InputFileError, match=sentence):
        write_cmb_seg(labels, scan, tmp_path / "seg.dcm", np.eye(4))
    volume = load_volume(scan)
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = ReviewSession.open(store, str(scan), volume.sha256, volume.spatial_shape, volume.affine)
        session.add((2.0, 2.0, 2.0))
        with pytest.raises(InputFileError, match=sentence):
            export_review(session, tmp_path / "cmb_dseg.nii.gz", tmp_path / "cmb.json", seg_path=tmp_path / "seg.dcm")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("cases")) == ["swi.nii.gz"]


def test_a_seg_without_its_series_nearby_is_one_sentence(series, tmp_path: Path) -> None:
    folder, volume = series
    out = folder.parent / "moved.dcm"
    write_cmb_seg(_instances(volume.shape), folder, out, volume.affine)
    lonely = tmp_path / "alone" / "seg.dcm"
    lonely.parent.mkdir()
    lonely.write_bytes(out.read_bytes())
    with pytest.raises(InputFileError, match="the series it segments .* is not in its folder"):
        read_seg(lonely)


def _session(store: CaseStore, folder: Path, volume) -> ReviewSession:
    session = ReviewSession.open(store, str(folder), volume.sha256, volume.spatial_shape, volume.affine, reviewer="dr.pseudo")
    for ijk in ((10, 20, 5), (30, 40, 20)):
        session.add((volume.affine @ [*ijk, 1.0])[:3])
    return session


def test_a_reviewed_session_exports_all_files_together_without_identity(series, tmp_path: Path) -> None:
    folder, volume = series
    out = folder.parent / f"export-{tmp_path.name}"  # beside the series: the SEG finds it when read back
    out.mkdir()
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = _session(store, folder, volume)
        paths = export_review(session, out / "cmb_dseg.nii.gz", out / "cmb.json", out / "cmb.tsv",
                              seg_path=out / "cmb_seg.dcm")
        assert [p.name for p in paths] == ["cmb_dseg.nii.gz", "cmb.json", "cmb.tsv", "cmb_seg.dcm"]
        nifti = load_volume(out / "cmb_dseg.nii.gz")
    seg = read_seg(out / "cmb_seg.dcm")
    np.testing.assert_array_equal(seg.data, nifti.data)
    assert str(pydicom.dcmread(out / "cmb_seg.dcm").ContentCreatorName) == "dr.pseudo"
    for text in ((out / "cmb.json").read_text(), (out / "cmb.tsv").read_text()):
        assert not any(v.lower() in text.lower() for v in (ODD_NAME, "Jane", "Doe", *IDENTITY.values()))


def test_a_failing_seg_leaves_no_file_and_the_series_folder_is_never_written(series, tmp_path: Path,
                                                                             monkeypatch) -> None:
    folder, volume = series
    out = tmp_path / "export"
    out.mkdir()
    with CaseStore(tmp_path / "cases.sqlite") as store:
        session = _session(store, folder, volume)

        def broken(seg, path: Path) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(dicom_seg, "save_seg", broken)
        with pytest.raises(OutputPathError, match="nothing was written"):
            export_review(session, out / "cmb_dseg.nii.gz", out / "cmb.json", seg_path=out / "cmb_seg.dcm")
        assert list(out.iterdir()) == []
        before = sorted(p.name for p in folder.iterdir())
        with pytest.raises(OutputPathError, match="inside the input folder"):
            export_review(session, json_path=folder / "cmb.json", seg_path=out / "cmb_seg.dcm")
        assert sorted(p.name for p in folder.iterdir()) == before


def test_an_enhanced_multiframe_source_round_trips(tmp_path: Path) -> None:
    """One enhanced file (frames in reverse slice order): the SEG references its frames."""
    from test_dicom import write_enhanced

    folder = tmp_path / "enhanced"
    folder.mkdir()
    path = write_enhanced(_phantom("axial"), folder / "t1.dcm")
    with pytest.raises(InputFileError, match="has no FrameOfReferenceUID, which a DICOM SEG must reference"):
        write_cmb_seg(np.ones((1, 1, 1)), folder, tmp_path / "seg.dcm", np.eye(4))
    ds = pydicom.dcmread(path)
    ds.FrameOfReferenceUID = "1.2.3.5"
    ds.save_as(path)
    volume = load_volume(folder)
    labels = _instances(volume.shape)
    out = tmp_path / "export" / "seg.dcm"
    out.parent.mkdir()
    write_cmb_seg(labels, folder, out, volume.affine)
    np.testing.assert_array_equal(read_seg(out).data, labels)
    ds = pydicom.dcmread(out)
    assert len(ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 1


def test_a_corrupt_neighbour_does_not_stop_reading_the_seg(series, tmp_path: Path) -> None:
    folder, volume = series
    out = folder.parent / f"export-{tmp_path.name}" / "seg.dcm"
    out.parent.mkdir()
    write_cmb_seg(_instances(volume.shape), folder, out, volume.affine)
    broken = folder.parent / f"broken-{tmp_path.name}"
    broken.mkdir()
    (broken / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x08\x00")
    np.testing.assert_array_equal(read_seg(out).data, _instances(volume.shape))
