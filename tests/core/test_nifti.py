"""load_volume: what it returns for good files and the one sentence it gives for bad ones; save_volume."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.errors import InputFileError, OutputPathError
from napari_neuroreview.core.io.nifti import load_volume, save_volume, volume_writer, voxel_sha256
from napari_neuroreview.core.io.outputs import write_together

from synthetic import reorient_to, save_nifti


def test_loads_3d_nifti_with_geometry(tmp_path: Path, ras_image) -> None:
    data, affine = ras_image
    lps_data, lps_affine = reorient_to(data, affine, "LPS")
    path = save_nifti(tmp_path / "scan.nii.gz", lps_data, lps_affine)
    volume = load_volume(path)
    assert volume.orientation == "LPS"
    assert volume.shape == (40, 48, 24)
    np.testing.assert_allclose(volume.zooms, (1.0, 1.25, 2.5))
    np.testing.assert_allclose(volume.affine, lps_affine)
    np.testing.assert_array_equal(volume.data, lps_data)
    assert volume.sha256 == voxel_sha256(lps_data)
    assert volume.warnings == []


def test_4d_keeps_tr_in_seconds(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.ones((6, 7, 8, 5), np.float32), np.eye(4))
    img.header.set_zooms((3.0, 3.0, 3.0, 2000.0))
    img.header.set_xyzt_units("mm", "msec")
    nib.save(img, str(tmp_path / "bold.nii.gz"))
    volume = load_volume(tmp_path / "bold.nii.gz")
    assert volume.is_4d and volume.shape == (6, 7, 8, 5)
    assert volume.tr_s == pytest.approx(2.0)


def test_trailing_singleton_axes_are_dropped(tmp_path: Path) -> None:
    save_nifti(tmp_path / "one.nii", np.ones((5, 6, 7, 1, 1), np.int16), np.eye(4))
    assert load_volume(tmp_path / "one.nii").shape == (5, 6, 7)


def test_mgz_loads(tmp_path: Path, ras_image) -> None:
    data, affine = ras_image
    nib.save(nib.MGHImage(data, affine), str(tmp_path / "scan.mgz"))
    volume = load_volume(tmp_path / "scan.mgz")
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    np.testing.assert_allclose(volume.data, data)


def test_nan_and_inf_are_set_to_zero_with_a_warning(tmp_path: Path, ras_image) -> None:
    data, affine = ras_image
    data = data.copy()
    data[0, 0, :3] = [np.nan, np.inf, -np.inf]
    volume = load_volume(save_nifti(tmp_path / "nan.nii.gz", data, affine))
    assert np.isfinite(volume.data).all()
    assert (volume.data[0, 0, :3] == 0).all()
    assert len(volume.warnings) == 1 and "3 voxels" in volume.warnings[0] and "set to 0" in volume.warnings[0]


def test_missing_orientation_is_warned(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    nib.save(img, str(tmp_path / "noorient.nii"))
    assert any("no orientation" in w for w in load_volume(tmp_path / "noorient.nii").warnings)


def _valid_file(tmp_path: Path, name: str = "ok.nii.gz") -> Path:
    return save_nifti(tmp_path / name, np.arange(20 * 20 * 20, dtype=np.float32).reshape(20, 20, 20), np.eye(4))


def _claiming_header(tmp_path: Path, shape: tuple[int, ...], gz: bool) -> Path:
    """A real small file whose header claims ``shape`` (far more data than it holds)."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape(shape)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    blob = header.binaryblock + b"\x00" * 4 + np.zeros(1000, np.int16).tobytes()
    path = tmp_path / ("huge.nii.gz" if gz else "huge.nii")
    path.write_bytes(gzip.compress(blob, mtime=0) if gz else blob)
    return path


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = _valid_file(tmp_path)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    not_nifti = tmp_path / "notes.nii"
    not_nifti.write_text("this is a radiology report, not an image\n" * 20)
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    flat = save_nifti(tmp_path / "flat.nii", np.ones((10, 12), np.float32), np.eye(4))
    five = save_nifti(tmp_path / "five.nii", np.ones((4, 4, 4, 2, 3), np.float32), np.eye(4))
    return {
        "truncated": (truncated, "truncated"),
        "not NIfTI": (not_nifti, "could not be read"),
        "empty": (empty, "empty"),
        "2D": (flat, "2D image"),
        "5D": (five, "5D image"),
        "claims more (nii)": (_claiming_header(tmp_path, (1000, 1000, 1000), gz=False), "header claims"),
        "claims more (gz)": (_claiming_header(tmp_path, (1000, 1000, 1000), gz=True), "header claims"),
    }


@pytest.mark.parametrize(
    "case", ["truncated", "not NIfTI", "empty", "2D", "5D", "claims more (nii)", "claims more (gz)"]
)
def test_bad_files_get_one_sentence_naming_the_file(tmp_path: Path, case: str) -> None:
    path, words = _bad_files(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    tracemalloc.start()
    with pytest.raises(InputFileError) as info:
        load_volume(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    message = str(info.value)
    assert str(path) in message and words in message
    assert "\n" not in message
    assert peak < 64 * 2**20, f"allocated {peak / 2**20:.0f} MiB for a bad file"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_absurd_voxel_size_is_refused(tmp_path: Path) -> None:
    path = save_nifti(tmp_path / "absurd.nii", np.ones((4, 4, 4), np.float32), np.diag([1e5, 1, 1, 1]))
    with pytest.raises(InputFileError, match="implausible voxel size"):
        load_volume(path)


def test_cli_info_prints_geometry_json(tmp_path: Path, ras_image, capsys) -> None:
    data, affine = ras_image
    lps_data, lps_affine = reorient_to(data, affine, "LPS")
    path = save_nifti(tmp_path / "scan.nii.gz", lps_data, lps_affine)
    assert main(["info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [40, 48, 24]
    assert info["orientation"] == "LPS"
    assert info["zooms"] == [1.0, 1.25, 2.5]
    np.testing.assert_allclose(info["affine"], lps_affine)


@pytest.mark.parametrize("case", ["truncated", "not NIfTI", "empty", "2D", "5D", "claims more (gz)"])
def test_cli_info_bad_file_exits_2_with_one_line(tmp_path: Path, case: str, capsys) -> None:
    path, words = _bad_files(tmp_path)[case]
    assert main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and words in lines[0]


def _raw_nifti(path: Path, header: nib.Nifti1Header, data: np.ndarray) -> Path:
    """Header fields exactly as set (nibabel's writer would recompute scaling and pixdim)."""
    header["vox_offset"] = 352
    blob = header.binaryblock + b"\x00" * 4 + np.asarray(data, header.get_data_dtype()).tobytes(order="F")
    path.write_bytes(gzip.compress(blob, mtime=0))
    return path


def _both_forms(sform: np.ndarray, qform: np.ndarray) -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape((20, 20, 20))
    header.set_sform(sform, code=2)
    header.set_qform(qform, code=1)
    return header


def test_sform_and_qform_shifted_50_mm_is_a_warning_naming_both(tmp_path: Path, capsys) -> None:
    """Issue 8 class 5: the sform wins (NIfTI rules) and the disagreement is said."""
    shifted = np.eye(4)
    shifted[:3, 3] = [50.0, 0.0, 0.0]
    path = _raw_nifti(tmp_path / "shift.nii.gz", _both_forms(np.eye(4), shifted), np.ones((20, 20, 20)))
    volume = load_volume(path)
    np.testing.assert_allclose(volume.affine, np.eye(4))
    [warning] = volume.warnings
    assert "sform (code 2, aligned)" in warning and "qform (code 1, scanner)" in warning and "50.0 mm" in warning
    assert main(["info", str(path)]) == 0
    assert "50.0 mm" in capsys.readouterr().err


def test_qform_with_zero_pixdim_beside_a_valid_sform_is_a_warning(tmp_path: Path) -> None:
    header = _both_forms(np.diag([2.0, 2.0, 2.0, 1.0]), np.eye(4))
    header["pixdim"][1:4] = 0.0
    volume = load_volume(_raw_nifti(tmp_path / "pix.nii.gz", header, np.ones((20, 20, 20))))
    assert volume.zooms == (2.0, 2.0, 2.0)
    assert any("pixdim" in w and "sform" in w for w in volume.warnings)


def test_scaled_integer_voxels_are_read_scaled(tmp_path: Path) -> None:
    """nibabel moves scl_slope/scl_inter onto the data proxy and leaves NaN in the header."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((4, 4, 4))
    header.set_sform(np.eye(4), code=1)
    header["scl_slope"], header["scl_inter"] = 0.5, 10.0
    volume = load_volume(_raw_nifti(tmp_path / "scaled.nii.gz", header, np.full((4, 4, 4), 100)))
    np.testing.assert_allclose(volume.data, 60.0)


def test_voxel_ceiling_is_configurable(tmp_path: Path, monkeypatch) -> None:
    path = _valid_file(tmp_path)  # 8,000 voxels
    monkeypatch.setenv("NEUROREVIEW_MAX_VOXELS", "7999")
    with pytest.raises(InputFileError, match="NEUROREVIEW_MAX_VOXELS"):
        load_volume(path)
    monkeypatch.setenv("NEUROREVIEW_MAX_VOXELS", "8000")
    assert load_volume(path).shape == (20, 20, 20)
    monkeypatch.setenv("NEUROREVIEW_MAX_VOXELS", "lots")
    with pytest.raises(InputFileError, match="not a positive number"):
        load_volume(path)


def test_float_voxels_scaled_past_float32_are_refused(tmp_path: Path) -> None:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape((4, 4, 4))
    header.set_sform(np.eye(4), code=1)
    header["scl_slope"] = 1e38
    path = _raw_nifti(tmp_path / "fscaled.nii.gz", header, np.full((4, 4, 4), 10.0))
    with pytest.raises(InputFileError, match="absurd scale factor"):
        load_volume(path)


def test_huge_header_extensions_are_refused_before_reading(tmp_path: Path) -> None:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((4, 4, 4))
    header.set_sform(np.eye(4), code=1)
    blob = header.binaryblock
    path = tmp_path / "ext.nii.gz"
    patched = bytearray(blob)
    patched[108:112] = np.float32(3e9).tobytes()  # vox_offset: 3 GB of "extensions"
    path.write_bytes(gzip.compress(bytes(patched) + b"\x01\x00\x00\x00" + b"\x00" * 200, mtime=0))
    tracemalloc.start()
    with pytest.raises(InputFileError, match="bytes of header"):
        load_volume(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 * 2**20


def _oblique_lps_affine() -> np.ndarray:
    """LPS voxel axes, 0.9 x 1.1 x 2.5 mm, tilted 20 degrees about x and 10 about z, shifted."""
    a, b = np.deg2rad(20.0), np.deg2rad(10.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([-1.0, -1.0, 1.0]) @ np.diag([0.9, 1.1, 2.5])
    affine[:3, 3] = [91.0, 120.5, -60.25]
    return affine


def test_save_volume_round_trips_on_the_same_grid_in_nibabel_and_simpleitk(tmp_path: Path) -> None:
    """Tools that read the qform (SimpleITK, Slicer, ITK-SNAP) and the sform (FSL, nibabel) agree."""
    sitk = pytest.importorskip("SimpleITK")
    affine = _oblique_lps_affine()
    labels = np.zeros((12, 10, 8), np.uint16)
    labels[3, 7, 5] = 700
    path = save_volume(tmp_path / "labels.nii.gz", labels, affine, dtype=np.uint16)
    volume = load_volume(path)
    assert volume.orientation == "LPS" and volume.data.dtype == np.uint16
    np.testing.assert_array_equal(volume.data, labels)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
    np.testing.assert_allclose(volume.zooms, (0.9, 1.1, 2.5), atol=1e-6)
    image = sitk.ReadImage(str(path))
    ijk = [(0, 0, 0), (3, 7, 5), (11, 9, 7)]
    for index in ijk:
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        ras = (affine @ [*index, 1.0])[:3]
        np.testing.assert_allclose(lps * [-1, -1, 1], ras, atol=1e-3)
    assert sitk.GetArrayFromImage(image)[5, 7, 3] == 700  # SimpleITK arrays are k, j, i


def test_save_volume_sets_both_forms_units_and_the_chosen_type(tmp_path: Path) -> None:
    affine = _oblique_lps_affine()
    save_volume(tmp_path / "mask.nii", np.ones((4, 5, 6), bool), affine, dtype=np.uint8, descrip="a mask")
    header = nib.load(str(tmp_path / "mask.nii")).header
    assert (int(header["sform_code"]), int(header["qform_code"])) == (1, 1)
    assert header.get_xyzt_units() == ("mm", "sec")
    assert header.get_data_dtype() == np.uint8 and header["descrip"].item() == b"a mask"
    np.testing.assert_allclose(header.get_qform(), header.get_sform(), atol=1e-5)
    np.testing.assert_allclose(header.get_zooms(), nib.affines.voxel_sizes(affine), atol=1e-6)
    maps = np.zeros((4, 5, 6, 3))
    save_volume(tmp_path / "maps.nii.gz", maps, affine, dtype=np.float32, space="aligned")
    header = nib.load(str(tmp_path / "maps.nii.gz")).header
    assert (int(header["sform_code"]), int(header["qform_code"])) == (2, 2)
    assert header.get_data_dtype() == np.float32 and header.get_data_shape() == (4, 5, 6, 3)


def test_save_volume_refuses_its_input_and_keeps_it(tmp_path: Path, ras_image) -> None:
    data, affine = ras_image
    path = save_nifti(tmp_path / "scan.nii.gz", data, affine)
    before = path.read_bytes()
    volume = load_volume(path)
    with pytest.raises(OutputPathError, match="is an input"):
        save_volume(path, volume, dtype=np.float32)
    with pytest.raises(OutputPathError, match="is an input"):
        save_volume(tmp_path / "scan.nii.gz", volume.data, affine, dtype=np.float32, inputs=[path])
    assert path.read_bytes() == before


def test_save_volume_never_wraps_labels_that_do_not_fit(tmp_path: Path) -> None:
    """70 000 instances written as uint16 would silently become 4 464: refused as the bug it is."""
    labels = np.zeros((3, 3, 3), np.int64)
    labels[1, 1, 1] = 70_000
    with pytest.raises(ValueError, match="do not fit uint16"):
        save_volume(tmp_path / "labels.nii.gz", labels, np.eye(4), dtype=np.uint16)
    with pytest.raises(ValueError, match="fractions"):
        volume_writer(np.full((2, 2, 2), 0.5), np.eye(4), dtype=np.uint8)
    assert not list(tmp_path.iterdir())


def test_volume_writer_lands_with_the_other_outputs(tmp_path: Path) -> None:
    """The write_together callback style: a failing second output leaves no NIfTI behind."""

    def broken(_tmp: Path) -> None:
        raise OSError(28, "No space left on device")

    writer = volume_writer(np.ones((2, 3, 4), np.uint8), np.eye(4), dtype=np.uint8)
    with pytest.raises(OutputPathError, match="could not be written"):
        write_together([(tmp_path / "mask.nii.gz", writer), (tmp_path / "det.json", broken)])
    assert not list(tmp_path.iterdir())
    write_together([(tmp_path / "mask.nii.gz", writer)])
    assert load_volume(tmp_path / "mask.nii.gz").data.sum() == 24
