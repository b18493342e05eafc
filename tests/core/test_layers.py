"""volume_from_layer: the one rule for the voxels a task sees for a layer (source or display grid)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from synthetic import reorient_to, save_nifti

from napari_neuroreview.core.errors import ImageMismatchError, InputFileError
from napari_neuroreview.core.io.layers import image_layer_data, volume_from_layer
from napari_neuroreview.core.io.nifti import load_volume


def _layer(path: Path) -> tuple[np.ndarray, dict]:
    """(display data, metadata) of the layer the reader makes for ``path``."""
    display, kwargs, _kind, _geometry = image_layer_data(load_volume(path))
    return display, kwargs["metadata"]


def _world(volume, ijk) -> np.ndarray:
    return nib.affines.apply_affine(volume.affine, np.asarray(ijk, float))


def test_source_grid_is_the_files_voxels_and_display_grid_the_array_shown(tmp_path: Path, ras_image) -> None:
    data, affine = reorient_to(*ras_image, "LPS")
    path = save_nifti(tmp_path / "scan.nii.gz", data, affine)
    display, metadata = _layer(path)
    source = volume_from_layer(display, metadata, "scan")
    np.testing.assert_array_equal(source.data, data)
    np.testing.assert_allclose(source.affine, affine)
    assert source.sha256 == load_volume(path).sha256 and source.path == path
    shown = volume_from_layer(display, metadata, "scan", grid="display")
    assert shown.data is display or np.shares_memory(shown.data, display)
    # The bright voxel is at the same place in the world on both grids.
    bright_source = np.unravel_index(np.argmax(source.data), source.shape)
    bright_shown = np.unravel_index(np.argmax(shown.data), shown.shape)
    np.testing.assert_allclose(_world(source, bright_source), _world(shown, bright_shown), atol=1e-6)
    np.testing.assert_allclose(shown.zooms, nib.affines.voxel_sizes(shown.affine))
    assert shown.sha256 == source.sha256  # the scan's identity, on either grid


def test_a_layer_edited_in_napari_is_refused_for_a_model_but_shown_as_is(tmp_path: Path, ras_image) -> None:
    path = save_nifti(tmp_path / "scan.nii.gz", *ras_image)
    display, metadata = _layer(path)
    display = display.copy()
    display[0, 0, 0] += 1.0
    with pytest.raises(ImageMismatchError, match="changed in napari"):
        volume_from_layer(display, metadata, "scan")
    assert volume_from_layer(display, metadata, "scan", grid="display").data[0, 0, 0] == display[0, 0, 0]


def test_an_oblique_scan_gives_a_model_its_scanner_voxels_from_the_file(tmp_path: Path) -> None:
    """The resampled display is never the model's input while the unchanged file is there."""
    angle = np.deg2rad(20.0)
    affine = np.diag([1.0, 1.2, 2.0, 1.0])
    affine[:3, :3] = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]) @ affine[:3, :3]
    data = np.random.default_rng(3).random((20, 22, 12)).astype(np.float32)
    path = save_nifti(tmp_path / "oblique.nii.gz", data, affine)
    display, metadata = _layer(path)
    source = volume_from_layer(display, metadata, "oblique")
    np.testing.assert_array_equal(source.data, data)
    np.testing.assert_allclose(source.affine, affine, atol=1e-6)
    shown = volume_from_layer(display, metadata, "oblique", grid="display")
    assert shown.shape == display.shape and not np.allclose(shown.affine, affine)
    # The file changed since: the display grid (exact display affine) is all that is left.
    save_nifti(path, data + 1.0, affine)
    fallback = volume_from_layer(display, metadata, "oblique")
    np.testing.assert_allclose(fallback.affine, shown.affine)
    np.testing.assert_array_equal(fallback.data, display)


def test_a_series_on_the_display_grid_keeps_time_last_and_its_tr(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.random.default_rng(1).random((6, 7, 8, 5)).astype(np.float32), np.eye(4))
    img.header.set_zooms((1.0, 1.0, 1.0, 2.0))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(tmp_path / "bold.nii.gz"))
    display, metadata = _layer(tmp_path / "bold.nii.gz")
    assert display.shape[0] == 5  # napari: time first
    shown = volume_from_layer(display, metadata, "bold", grid="display")
    assert shown.is_4d and shown.shape[3] == 5 and shown.tr_s == pytest.approx(2.0)
    np.testing.assert_array_equal(shown.data[..., 2], display[2])


def test_a_layer_not_from_this_plugin_is_one_sentence() -> None:
    with pytest.raises(InputFileError, match="was not opened by napari-neuroreview"):
        volume_from_layer(np.zeros((3, 3, 3)), {}, "drawn")
    with pytest.raises(ValueError, match="grid"):
        volume_from_layer(np.zeros((3, 3, 3)), {}, "drawn", grid="file")  # type: ignore[arg-type]


def test_a_scan_opened_by_a_relative_path_keeps_its_absolute_path(tmp_path: Path, ras_image, monkeypatch) -> None:
    """The store registers the layer's source_path for the worklist: it must open from any working directory."""
    save_nifti(tmp_path / "scan.nii.gz", *ras_image)
    monkeypatch.chdir(tmp_path)
    _display, metadata = _layer(Path("scan.nii.gz"))
    assert metadata["neuroreview"]["source_path"] == str(tmp_path / "scan.nii.gz")
