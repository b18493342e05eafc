"""DICOM in: the files pydicom's data packages ship, and series written from a phantom.

The phantom series are written here with pydicom (LPS storage, one file per slice, shuffled
file names), from the same image that is saved as NIfTI: a landmark must land at the same
world RAS mm through both readers, in axial, sagittal, coronal and 10-degree oblique slices.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from napari_neuroreview._reader import get_reader
from napari_neuroreview.cli import main
from napari_neuroreview.core.anatomy.registration import ras_lps
from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.io import dicom as dicom_module
from napari_neuroreview.core.io.dicom import load_all_series
from napari_neuroreview.core.io.layers import image_layer_data, volume_from_layer
from napari_neuroreview.core.io.nifti import load_volume
from napari_neuroreview.core.phantoms.anatomy import make_t1_case

from dicom_synthetic import IDENTITY, write_series

LEFT_MARK_RAS = np.array([-38.0, -20.0, 28.0])
GRIDS = {
    "axial": {"voxel_size": (3.0, 3.0, 4.0), "orientation": "LPS"},
    "sagittal": {"voxel_size": (3.0, 3.0, 4.0), "orientation": "PIR"},
    "coronal": {"voxel_size": (3.0, 3.0, 4.0), "orientation": "LIP"},
    "oblique": {"voxel_size": (3.0, 3.0, 4.0), "orientation": "LPS", "rotation_deg": (10.0, 0.0, 0.0)},
}


def _phantom(name: str) -> nib.Nifti1Image:
    case = make_t1_case(seed=3, noise_sd=0.0, bias_strength=0.0, **GRIDS[name])
    data = np.asarray(case.image.dataobj).astype(np.float32)
    ras = nib.affines.apply_affine(case.image.affine, np.indices(data.shape).reshape(3, -1).T)
    mark = np.exp(-((ras - LEFT_MARK_RAS) ** 2).sum(1) / (2 * 3.0**2)).reshape(data.shape)
    img = nib.Nifti1Image(data + 3000.0 * mark.astype(np.float32), case.image.affine)
    img.set_sform(case.image.affine, code=1)
    return img


def write_enhanced(img: nib.Nifti1Image, path: Path, *, echoes: tuple[float, ...] = (4.0,), reverse: bool = True,
                   rescales: Sequence[tuple[float, float]] | None = None) -> Path:
    """One enhanced MR file: per-frame positions (and echo), shared orientation, spacing and rescale.

    ``rescales`` (slope, intercept), cycled over the frames in file order, moves the rescale into
    each frame's own functional group, as scanners that scale every frame do.
    """
    data = np.asarray(img.dataobj, dtype=np.float64)
    lps = ras_lps(img.affine)
    row, col = lps[:3, 0], lps[:3, 1]
    order = list(range(data.shape[2]))[::-1] if reverse else list(range(data.shape[2]))
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = "1.2.840.10008.5.1.4.1.1.4.1", ExplicitVRLittleEndian
    meta.MediaStorageSOPInstanceUID = sop
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, sop, "MR"
    for key, value in IDENTITY.items():
        setattr(ds, key, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = "1.2.3.4", generate_uid(), 5, "3D T1"
    shared, orient, measures, scale = Dataset(), Dataset(), Dataset(), Dataset()
    orient.ImageOrientationPatient = [f"{v:.8f}" for v in (*(row / np.linalg.norm(row)), *(col / np.linalg.norm(col)))]
    measures.PixelSpacing = [f"{np.linalg.norm(col):.6f}", f"{np.linalg.norm(row):.6f}"]
    measures.SliceThickness = f"{np.linalg.norm(lps[:3, 2]):.6f}"
    scale.RescaleSlope, scale.RescaleIntercept, scale.RescaleType = 0.25, -8.0, "US"
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orient], [measures]
    if rescales is None:
        shared.PixelValueTransformationSequence = [scale]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for n, k in enumerate(order):
        frame, plane, echo = Dataset(), Dataset(), Dataset()
        plane.ImagePositionPatient = [f"{v:.6f}" for v in lps[:3, 2] * k + lps[:3, 3]]
        echo.EffectiveEchoTime = echoes[n % len(echoes)]
        frame.PlanePositionSequence, frame.MREchoSequence = [plane], [echo]
        if rescales is not None:
            own = Dataset()
            own.RescaleSlope, own.RescaleIntercept = rescales[n % len(rescales)]
            own.RescaleType = "US"
            frame.PixelValueTransformationSequence = [own]
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.NumberOfFrames, ds.Rows, ds.Columns = len(order), data.shape[1], data.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    per_frame = np.array([rescales[n % len(rescales)] for n in range(len(order))] if rescales else [(0.25, -8.0)] * len(order))
    slopes, intercepts = per_frame[:, 0, None, None], per_frame[:, 1, None, None]
    stored = np.round((data[:, :, order].transpose(2, 1, 0) - intercepts) / slopes).astype(np.int16)
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def phantoms() -> dict[str, nib.Nifti1Image]:
    return {name: _phantom(name) for name in GRIDS}


def _peak_world(volume) -> np.ndarray:
    peak = np.unravel_index(np.argmax(volume.data), volume.data.shape)
    return nib.affines.apply_affine(volume.affine, peak)


# -- the files pydicom ships ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm", "MR_small_jp2klossless.dcm"])
def test_shipped_single_slices_match_nibabel_nicom_and_simpleitk(name: str) -> None:
    path = get_testdata_file(name)
    volume = load_volume(path)
    ds = pydicom.dcmread(path)
    assert volume.shape == (int(ds.Columns), int(ds.Rows), 1)
    assert volume.warnings == [f"{name}: one slice read on its own; give its folder to read its whole series"]
    with warnings.catch_warnings():  # nicom calls itself experimental on import
        warnings.simplefilter("ignore")
        from nibabel.nicom import dicomwrappers
    wrapper = dicomwrappers.wrapper_from_data(ds)  # nicom: voxel (row, column) -> LPS
    image = sitk.ReadImage(path)
    for i, j in [(0, 0), (ds.Columns - 1, 0), (0, ds.Rows - 1), (ds.Columns - 1, ds.Rows - 1)]:
        ours = nib.affines.apply_affine(volume.affine, [i, j, 0])
        nicom = ras_lps(wrapper.affine)[:3] @ [j, i, 0, 1]
        itk = ras_lps(np.eye(4))[:3, :3] @ np.asarray(image.TransformIndexToPhysicalPoint((int(i), int(j), 0)))
        np.testing.assert_allclose(ours, nicom, atol=1e-4)
        np.testing.assert_allclose(ours, itk, atol=1e-4)
    np.testing.assert_allclose(volume.data[:, :, 0], sitk.GetArrayFromImage(image)[0].T)


def test_shipped_enhanced_ct_frames_sit_at_their_own_positions_rescaled() -> None:
    path = get_testdata_file("eCT_Supplemental.dcm")  # two frames, stored against their stack order
    volume = load_volume(path)
    ds = pydicom.dcmread(path)
    assert volume.shape == (512, 512, 2)
    for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        lps = np.array([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient])
        np.testing.assert_allclose(nib.affines.apply_affine(volume.affine, [0, 0, k]), ras_lps(np.eye(4))[:3, :3] @ lps)
    image = sitk.ReadImage(path)
    corner = ras_lps(np.eye(4))[:3, :3] @ np.asarray(image.TransformIndexToPhysicalPoint((511, 511, 1)))
    np.testing.assert_allclose(nib.affines.apply_affine(volume.affine, [511, 511, 1]), corner, atol=1e-3)
    raw = ds.pixel_array  # the intercept -1024 applied, per the shared functional group
    np.testing.assert_allclose(volume.data[:, :, 0], raw[0].T.astype(np.float32) - 1024.0)
    assert volume.header["series_label"] == "CT series 3" and volume.header["format"] == "DICOM"


def test_shipped_enhanced_mr_without_positions_is_refused_in_one_sentence() -> None:
    with pytest.raises(InputFileError, match="without per-frame positions") as caught:
        load_volume(get_testdata_file("emri_small.dcm"))
    assert str(caught.value).count(". ") == 0


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "test-SR.dcm"])
def test_shipped_truncated_and_non_image_files_are_one_sentence(name: str) -> None:
    with pytest.raises(InputFileError, match="corrupt or truncated|not a DICOM image"):
        load_volume(get_testdata_file(name))


# -- series written from a phantom ---------------------------------------------------------

@pytest.mark.parametrize("name", list(GRIDS))
def test_phantom_series_lands_where_its_nifti_lands(phantoms, tmp_path: Path, name: str) -> None:
    img = phantoms[name]
    write_series(img, tmp_path / "series")
    nib.save(img, str(tmp_path / "scan.nii.gz"))
    dicom, nifti = load_volume(tmp_path / "series"), load_volume(tmp_path / "scan.nii.gz")
    np.testing.assert_allclose(dicom.affine, nifti.affine, atol=1e-4)
    np.testing.assert_allclose(dicom.data, nifti.data, atol=0.125 + 1e-3)  # int16 at slope 0.25
    np.testing.assert_allclose(_peak_world(dicom), _peak_world(nifti), atol=1e-4)
    assert np.linalg.norm(_peak_world(dicom) - LEFT_MARK_RAS) < 3.0
    assert dicom.data.dtype == np.float32 and dicom.warnings == []
    shown, _, _, _ = image_layer_data(dicom)
    shown_nifti, _, _, _ = image_layer_data(nifti)
    np.testing.assert_allclose(shown, shown_nifti, atol=0.2)


@pytest.mark.parametrize("name", ["axial", "oblique"])
def test_phantom_enhanced_multiframe_lands_where_its_nifti_lands(phantoms, tmp_path: Path, name: str) -> None:
    img = phantoms[name]
    dicom = load_volume(write_enhanced(img, tmp_path / "enhanced.dcm"))  # frames stored top to bottom
    nifti = load_volume(_saved(img, tmp_path))
    np.testing.assert_allclose(_peak_world(dicom), _peak_world(nifti), atol=1e-4)
    np.testing.assert_allclose(dicom.data[:, :, ::-1], nifti.data, atol=0.125 + 1e-3)
    for corner in ([0, 0, 0], [img.shape[0] - 1, img.shape[1] - 1, 0]):
        flipped = [corner[0], corner[1], img.shape[2] - 1 - corner[2]]
        np.testing.assert_allclose(nib.affines.apply_affine(dicom.affine, corner),
                                   nib.affines.apply_affine(nifti.affine, flipped), atol=1e-4)
    with pytest.raises(InputFileError, match=r"mixes 2 echoes \(EchoTime 4, 9 ms\)"):
        load_volume(write_enhanced(img, tmp_path / "echoes.dcm", echoes=(4.0, 9.0)))


def test_enhanced_frames_each_get_their_own_rescale(phantoms, tmp_path: Path, monkeypatch) -> None:
    """GDCM applies the first frame's slope and intercept to all; each frame's own must apply."""
    img = phantoms["axial"]
    rescales = [(0.25, -8.0), (0.5, -1024.0), (1.0, 100.0), (0.125, 0.0)]
    path = write_enhanced(img, tmp_path / "scaled.dcm", reverse=False, rescales=rescales)
    dicom, nifti = load_volume(path), load_volume(_saved(img, tmp_path))
    assert dicom.data.dtype == np.float32
    for k in range(img.shape[2]):  # within each frame's int16 rounding
        slope = rescales[k % len(rescales)][0]
        np.testing.assert_allclose(dicom.data[:, :, k], nifti.data[:, :, k], atol=slope / 2 + 1e-3)
    monkeypatch.setattr(dicom_module, "_gdcm_rescale", lambda ds: (0.3, 0.1))  # a decoder that did something else
    with pytest.raises(InputFileError, match="different rescale slope or intercept on each frame") as caught:
        load_volume(path)
    assert str(caught.value).count(". ") == 0


@pytest.mark.parametrize("slope, intercept, atol", [(None, 0.0, 0.5), (1.0, -1024.0, 0.5), ((0.25, 0.5, 1.0), -8.0, 0.5)],
                         ids=["no-rescale-tags", "ct-style", "per-file-slopes"])
def test_series_values_match_the_nifti_with_any_rescale(phantoms, tmp_path: Path, slope, intercept, atol) -> None:
    img = phantoms["axial"]
    slopes = [slope[k % 3] for k in range(img.shape[2])] if isinstance(slope, tuple) else slope
    write_series(img, tmp_path / "series", slope=slopes, intercept=intercept)
    dicom, nifti = load_volume(tmp_path / "series"), load_volume(_saved(img, tmp_path))
    np.testing.assert_allclose(dicom.data, nifti.data, atol=atol + 1e-3)
    np.testing.assert_allclose(dicom.affine, nifti.affine, atol=1e-4)
    if slope is None:  # the integer path: the stored integers themselves
        assert np.issubdtype(dicom.data.dtype, np.integer)
        np.testing.assert_array_equal(dicom.data, np.round(nifti.data))


def test_a_series_number_that_ends_another_uid_chooses_its_own_series(phantoms, tmp_path: Path) -> None:
    """Philips numbers series 1001: the exact number wins, and every stored selector reads back."""
    img = phantoms["axial"]
    write_series(img, tmp_path / "philips", number=1001, description="T1", uid="1.2.826.0.1.111.222.33334444")
    write_series(img, tmp_path / "philips", number=7, description="FLAIR", uid="1.2.826.0.1.111.222.55551001")
    assert load_volume(f"{tmp_path / 'philips'}::1001").header["series_label"] == "T1"
    assert load_volume(f"{tmp_path / 'philips'}::55551001").header["series_label"] == "FLAIR"
    write_series(img, tmp_path / "twins", number=3, description="first", uid="1.2.840.1.12345678")
    write_series(img, tmp_path / "twins", number=3, description="second", uid="1.2.840.2.12345678")
    write_series(img, tmp_path / "twins", number=None, description="unnumbered", uid="1.2.840.3.12345678")
    for folder, selectors in (("philips", ["7", "1001"]), ("twins", ["1.12345678", "2.12345678", "3.12345678"])):
        volumes, refused = load_all_series(tmp_path / folder)
        assert refused == [] and [str(v.path).rpartition("::")[2] for v in volumes] == selectors
        for volume in volumes:
            assert load_volume(volume.path).header["series_sha256"] == volume.header["series_sha256"]
    with pytest.raises(InputFileError, match="'12345678' matches several series"):
        load_volume(f"{tmp_path / 'twins'}::12345678")


def test_layer_names_never_hold_the_folder_a_pacs_named_after_the_patient(phantoms, tmp_path: Path) -> None:
    img = phantoms["axial"]
    study = tmp_path / "DOE^JANE_PID-0042-XYZ"
    write_series(img, study / "one", number=3, description="")
    write_series(img, study / "two", number=4, description="T1 axial")
    files = write_series(img, study / "two", number=None, description="", uid="1.2.3.4.5.6.98765432")
    names = [kwargs["name"] for folder in ("one", "two") for _, kwargs, _ in get_reader(str(study / folder))(str(study / folder))]
    names += [kwargs["name"] for _, kwargs, _ in get_reader(str(files[0]))(str(files[0]))]
    assert names == ["MR series 3", "T1 axial", "MR series 98765432", "MR series 98765432"]
    for name in names:
        assert "DOE" not in name and "PID" not in name and str(tmp_path) not in name


def _saved(img: nib.Nifti1Image, folder: Path) -> Path:
    nib.save(img, str(folder / "scan.nii.gz"))
    return folder / "scan.nii.gz"


def test_several_series_are_listed_and_chosen(phantoms, tmp_path: Path) -> None:
    img = phantoms["axial"]
    write_series(img, tmp_path, number=7, description="T1 axial", uid="1.2.826.0.1.111.222.33334444")
    write_series(img, tmp_path, number=9, description="", uid="1.2.826.0.1.111.222.55556666")
    with pytest.raises(InputFileError) as caught:
        load_volume(tmp_path)
    sentence = str(caught.value)
    for part in ("2 DICOM series", "#7", "33334444", "'T1 axial'", "#9", "'MR series 9'", f"({img.shape[2]} images)",
                 f"{tmp_path}::7"):
        assert part in sentence
    shutil.copy(get_testdata_file("test-SR.dcm"), tmp_path / "report.dcm")
    chosen = load_volume(f"{tmp_path}::9")
    assert chosen.header["SeriesNumber"] == 9
    assert chosen.warnings == [(f"{tmp_path.name}::9: 1 non-image DICOM object was skipped (reports, segmentations "
                                "or presentation states)")]
    assert load_volume(f"{tmp_path}::33334444").header["series_label"] == "T1 axial"
    with pytest.raises(InputFileError, match="'12' matches no series"):
        load_volume(f"{tmp_path}::12")


def test_missing_slice_is_refused_and_uneven_spacing_warned(phantoms, tmp_path: Path) -> None:
    img = phantoms["axial"]
    files = write_series(img, tmp_path / "gap")
    files[len(files) // 2].unlink()
    with pytest.raises(InputFileError, match=r"misses a slice: 8\.00 mm .* 4\.00 mm apart"):
        load_volume(tmp_path / "gap")
    wobble = write_series(img, tmp_path / "wobble")
    ds = pydicom.dcmread(wobble[5])
    ds.ImagePositionPatient[2] = f"{float(ds.ImagePositionPatient[2]) + 0.5:.6f}"
    ds.save_as(wobble[5])
    volume = load_volume(tmp_path / "wobble")
    assert len(volume.warnings) == 1 and "uneven slice spacing (3.500 to 4.500 mm)" in volume.warnings[0]


def test_gantry_tilt_is_refused_when_the_slices_are_sheared(phantoms, tmp_path: Path) -> None:
    img = phantoms["axial"]
    sheared = np.array([0.0, np.tan(np.radians(12.0)) * 4.0, 0.0])
    write_series(img, tmp_path / "tilt", shift_per_slice=sheared)
    with pytest.raises(InputFileError, match="gantry tilt of 12.0 degrees"):
        load_volume(tmp_path / "tilt")
    write_series(img, tmp_path / "both", shift_per_slice=-sheared, tilt=-12.0)
    with pytest.raises(InputFileError, match="gantry tilt of 12.0 degrees, so its slices are sheared"):
        load_volume(tmp_path / "both")
    write_series(img, tmp_path / "tag", tilt=-15.0)  # the tag kept by a tool that resampled the slices
    assert load_volume(tmp_path / "tag").warnings == []


def test_mixed_echoes_are_refused_naming_them(phantoms, tmp_path: Path) -> None:
    img = phantoms["axial"]
    write_series(img, tmp_path, uid="1.2.3.9.9", echo=5.0)
    write_series(img, tmp_path, uid="1.2.3.9.9", echo=20.0, number=2)
    with pytest.raises(InputFileError, match=r"mixes 2 echoes \(EchoTime 5, 20 ms\)"):
        load_volume(tmp_path)


def test_corrupt_file_is_one_sentence_and_the_cli_writes_nothing(phantoms, tmp_path: Path, capsys) -> None:
    files = write_series(phantoms["axial"], tmp_path / "series")
    whole = files[3].read_bytes()
    for cut in (400, len(whole) * 4 // 5):  # a torn header, then torn pixels
        files[3].write_bytes(whole[:cut])
        with pytest.raises(InputFileError, match="corrupt or truncated") as caught:
            load_volume(tmp_path / "series")
        assert str(caught.value).count(". ") == 0
    out = tmp_path / "mask.nii.gz"
    assert main(["mask", str(tmp_path / "series"), "--out", str(out), "--quiet"]) == 2
    assert not out.exists() and "corrupt or truncated" in capsys.readouterr().err


def test_too_many_voxels_are_refused_before_decoding(phantoms, tmp_path: Path, monkeypatch) -> None:
    write_series(phantoms["axial"], tmp_path)
    monkeypatch.setenv("NEUROREVIEW_MAX_VOXELS", "1000")
    with pytest.raises(InputFileError, match="more than the 1,000 read by default"):
        load_volume(tmp_path)


def test_cli_mask_reads_a_dicom_folder_like_its_nifti(phantoms, tmp_path: Path, capsys) -> None:
    img = phantoms["axial"]
    write_series(img, tmp_path / "series")
    nib.save(img, str(tmp_path / "scan.nii.gz"))
    for source, out in ((tmp_path / "series", tmp_path / "d.nii.gz"), (tmp_path / "scan.nii.gz", tmp_path / "n.nii.gz")):
        assert main(["mask", str(source), "--out", str(out), "--quiet"]) == 0
    dicom, nifti = nib.load(str(tmp_path / "d.nii.gz")), nib.load(str(tmp_path / "n.nii.gz"))
    np.testing.assert_allclose(dicom.affine, nifti.affine, atol=1e-4)
    assert np.mean(np.asarray(dicom.dataobj) != np.asarray(nifti.dataobj)) < 0.001


def test_napari_reader_opens_a_folder_as_one_layer_per_series(phantoms, tmp_path: Path) -> None:
    img = phantoms["axial"]
    write_series(img, tmp_path / "study", number=3, description="T1 axial")
    write_series(img, tmp_path / "study", number=4, description="")
    (tmp_path / "study" / "notes.txt").write_text("not dicom")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("x")
    assert get_reader(str(tmp_path / "plain")) is None
    reader = get_reader(str(tmp_path / "study"))
    assert reader is not None
    layers = reader(str(tmp_path / "study"))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["T1 axial", "MR series 4"]
    assert all(layer_type == "image" and data.shape[0] == img.shape[2] for data, _, layer_type in layers)
    single = get_testdata_file("MR_small.dcm")
    assert get_reader(single) is not None and get_reader(single)(single)[0][1]["name"] == "MR series 1"


def test_oblique_series_opened_in_napari_give_models_their_file_voxels(phantoms, tmp_path: Path) -> None:
    """The resampled display of an oblique series is never a model's input while its files are there."""
    write_series(phantoms["oblique"], tmp_path / "study", number=5, description="oblique")
    write_series(phantoms["axial"], tmp_path / "study", number=6, description="axial")
    layers = get_reader(str(tmp_path / "study"))(str(tmp_path / "study"))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["oblique", "axial"]
    data, kwargs, _ = layers[0]
    source = volume_from_layer(data, kwargs["metadata"], "oblique")
    on_file = load_volume(f"{tmp_path / 'study'}::5")
    np.testing.assert_array_equal(source.data, on_file.data)
    np.testing.assert_allclose(source.affine, on_file.affine, atol=1e-6)
    shown = volume_from_layer(data, kwargs["metadata"], "oblique", grid="display")
    assert not np.allclose(shown.affine, on_file.affine, atol=1e-3)  # the display really was resampled


def test_view_takes_a_dicom_folder_and_refuses_a_folder_without_one(phantoms, tmp_path: Path, monkeypatch,
                                                                   capsys) -> None:
    write_series(phantoms["axial"], tmp_path / "study")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("x")
    opened: list = []
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr("napari_neuroreview.viewer.open_viewer", lambda files, **kw: opened.append(list(files)))
    assert main(["view", str(tmp_path / "study")]) == 0
    assert main(["view", f"{tmp_path / 'study'}::1"]) == 0
    assert opened == [[str(tmp_path / "study")], [f"{tmp_path / 'study'}::1"]]
    assert main(["view", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err
    assert "holds no DICOM image" in err and len(err.strip().splitlines()) == 1


def test_patient_identity_never_leaves_the_reader(phantoms, tmp_path: Path, caplog, recwarn) -> None:
    caplog.set_level(logging.DEBUG)
    img = phantoms["axial"]
    write_series(img, tmp_path / "study", number=3, description="T1 axial")
    write_series(img, tmp_path / "study", number=4, description="FLAIR")
    texts = []
    for data, kwargs, _ in get_reader(str(tmp_path / "study"))(str(tmp_path / "study")):
        texts.append(repr(kwargs))
    for selector in ("3", "4"):
        volume = load_volume(f"{tmp_path / 'study'}::{selector}")
        texts.append(repr(vars(volume)))
    with pytest.raises(InputFileError) as caught:
        load_volume(tmp_path / "study")
    texts.append(str(caught.value))
    shutil.rmtree(tmp_path / "study")
    files = write_series(img, tmp_path / "study", number=3)
    files[1].unlink()
    with pytest.raises(InputFileError) as caught:
        load_volume(tmp_path / "study")
    texts.append(str(caught.value))
    texts += [record.getMessage() for record in caplog.records] + [str(w.message) for w in recwarn]
    everything = "\n".join(texts).upper()
    assert "series_sha256" in everything.lower()
    for value in IDENTITY.values():
        assert value.upper() not in everything
    for piece in ("DOE", "JANE", "PID-0042", "19470312"):
        assert piece not in everything
