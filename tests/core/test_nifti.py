"""load_volume: what it returns for good files and the one sentence it gives for bad ones."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.io.nifti import load_volume, voxel_sha256

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
