"""core.io.resample: the one grid-to-grid resampler (orientation, networks matching and compare)."""

from __future__ import annotations

import numpy as np
import pytest

import nibabel as nib

from napari_neuroreview.core.io.resample import resample_to_grid, same_grid

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def test_same_grid_is_identity_and_outside_is_zero() -> None:
    rng = np.random.default_rng(0)
    data = rng.random((6, 7, 8)).astype(np.float32)
    np.testing.assert_array_equal(resample_to_grid(data, AFFINE, AFFINE, data.shape), data)
    shifted = AFFINE.copy()
    shifted[:3, 3] = [2.0, 0.0, 0.0]  # output voxel i reads input voxel i + 1
    out = resample_to_grid(data, AFFINE, shifted, data.shape)
    np.testing.assert_allclose(out[:-1], data[1:], rtol=1e-6)
    assert not out[-1].any()  # beyond the input: 0, never a smeared edge


def test_labels_stay_labels_and_intensities_become_float32() -> None:
    labels = np.zeros((8, 8, 8), dtype=np.uint16)
    labels[2:5, 2:5, 2:5] = 7
    labels[6, 6, 6] = 3
    half = AFFINE.copy()
    half[:3, :3] /= 2  # twice as fine
    out = resample_to_grid(labels, AFFINE, half, (16, 16, 16), order=0)
    assert out.dtype == np.uint16 and set(np.unique(out)) == {0, 3, 7}
    assert resample_to_grid(labels, AFFINE, half, (16, 16, 16)).dtype == np.float32


def test_time_series_are_resampled_volume_by_volume() -> None:
    rng = np.random.default_rng(1)
    series = rng.random((5, 6, 7, 3))
    oblique = AFFINE.copy()
    oblique[:3, :3] = AFFINE[:3, :3] @ np.array([[1, 0.1, 0], [-0.1, 1, 0], [0, 0, 1]])
    out = resample_to_grid(series, AFFINE, oblique, (5, 6, 7), order=1)
    assert out.shape == (5, 6, 7, 3)
    for t in range(3):
        np.testing.assert_array_equal(out[..., t], resample_to_grid(series[..., t], AFFINE, oblique, (5, 6, 7)))


def test_antialias_averages_when_downsampling() -> None:
    checker = (np.indices((32, 32, 32)).sum(axis=0) % 2).astype(np.float32)  # the finest pattern there is
    coarse = AFFINE.copy()
    coarse[:3, :3] *= 2  # output voxel i reads input voxel 2i
    picked = resample_to_grid(checker, AFFINE, coarse, (16, 16, 16))
    averaged = resample_to_grid(checker, AFFINE, coarse, (16, 16, 16), antialias=True)
    inner = (slice(3, 13),) * 3
    assert not picked[inner].any()  # every other voxel: a half-bright pattern aliases to black
    assert averaged[inner].mean() == pytest.approx(0.5, abs=0.05) and averaged[inner].std() < 0.05


def test_same_grid_survives_a_nifti_round_trip_and_nothing_more(tmp_path) -> None:
    oblique = AFFINE.copy()
    oblique[:3, :3] = AFFINE[:3, :3] @ np.array([[1, 0.1, 0], [-0.1, 1, 0], [0, 0, 1]]) / 3.0  # not float32-exact
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7), np.float32), oblique), tmp_path / "a.nii.gz")
    back = nib.load(tmp_path / "a.nii.gz")
    assert not np.array_equal(back.affine, oblique)  # float32 storage moved it
    assert same_grid(back.shape, back.affine, (5, 6, 7), oblique)
    assert same_grid((5, 6, 7, 4), oblique, (5, 6, 7), oblique)  # a series lies on its volumes' grid
    shifted = oblique.copy()
    shifted[0, 3] += 0.01  # a hundredth of a millimetre is another grid
    assert not same_grid((5, 6, 7), shifted, (5, 6, 7), oblique)
    assert not same_grid((5, 6, 8), oblique, (5, 6, 7), oblique)
