"""Reading aids: window presets per modality and the minIP slab, on synthetic volumes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.io.layers import robust_contrast
from napari_neuroreview.core.io.nifti import Volume
from napari_neuroreview.core.progress import Progress, run_to_completion
from napari_neuroreview.core.reading import minip
from napari_neuroreview.core.reading.window import (
    SAMPLE_VOXELS,
    contrast_limits,
    modality_from_name,
    sample_voxels,
)


def head(seed: int = 0, stripped: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A magnitude image: noisy background, a 'brain' of tissue near 100 and CSF near 200, dark spots, hot voxels."""
    rng = np.random.default_rng(seed)
    shape = (40, 48, 44)
    grid = np.indices(shape).astype(float)
    centre = np.array(shape, float)[:, None, None, None] / 2
    r = np.sqrt((((grid - centre) / (centre * 0.8)) ** 2).sum(0))
    brain, csf = r < 0.8, (r >= 0.8) & (r < 1.0)
    image = np.abs(rng.normal(0, 3, shape)) if not stripped else np.zeros(shape)
    image[brain] = rng.normal(100, 8, brain.sum())
    image[csf] = rng.normal(200, 10, csf.sum())
    dark = np.zeros(shape, bool)
    dark[18:22, 20:23, 20:23] = True
    image[dark] = 10.0
    hot = np.zeros(shape, bool)
    hot.flat[rng.choice(brain.sum(), 20, replace=False)] = True
    image[hot] = 3000.0
    return image.astype(np.float32), {"brain": brain & ~dark & ~hot, "csf": csf, "dark": dark, "hot": hot}


def test_the_layer_name_suggests_the_preset() -> None:
    assert modality_from_name("sub-demo_phase") == "phase"
    assert modality_from_name("SWI_phase") == "phase"  # the phase of an SWI is a phase
    assert modality_from_name("SWI") == "swi"
    assert modality_from_name("GRE magnitude") == "swi"
    assert modality_from_name("minIP 5.4 mm: SWI") == "swi"
    assert modality_from_name("T1w") == "t1" and modality_from_name("sub-01_T1w") == "t1"
    assert modality_from_name("T2-FLAIR") == "flair"
    assert modality_from_name("alpha map") == "auto"  # "pha" inside a word is not a phase
    assert modality_from_name("cmb_phantom_swi") == "swi"  # a phantom is no phase
    assert modality_from_name("pharma_T1w") == "t1"
    assert modality_from_name("SWI_pha") == "phase" and modality_from_name("phasemap") == "phase"
    assert modality_from_name("DWI") == "auto"


def test_swi_preset_spans_the_tissue_and_blacks_out_dark_spots() -> None:
    image, parts = head()
    low, high = contrast_limits(image, "swi", "swi")
    tissue = image[parts["brain"] | parts["csf"]]
    lo_true, hi_true = np.percentile(tissue, [1.0, 99.5])
    assert abs(low - lo_true) < 5 and abs(high - hi_true) < 5  # the foreground's percentiles, not the background's
    assert image[parts["dark"]].max() < low  # dark spots are black
    assert image[parts["hot"]].min() > high  # a few hot voxels do not grey the brain
    assert low > np.percentile(image[~(parts["brain"] | parts["csf"] | parts["dark"] | parts["hot"])], 99)


def test_flair_keeps_a_higher_top_than_t1_and_auto_is_the_readers_window() -> None:
    image, _parts = head(1)
    assert contrast_limits(image, "flair")[1] > contrast_limits(image, "t1")[1]
    assert contrast_limits(image, "auto") == robust_contrast(image)


def test_a_skull_stripped_image_keeps_its_parenchyma_in_the_window() -> None:
    """Otsu on a masked image would cut between parenchyma and CSF and black out the brain."""
    image, parts = head(2, stripped=True)
    low, _high = contrast_limits(image, "swi")
    assert low < np.percentile(image[parts["brain"]], 5)


def test_zero_wedges_of_a_resampled_oblique_scan_do_not_make_it_skull_stripped() -> None:
    image, parts = head(4)
    wedge = np.zeros(image.shape, bool)
    wedge[:, :, :14] = True  # a third of the array: zero outside the tilted slab
    image[wedge] = 0
    background = ~(parts["brain"] | parts["csf"] | parts["dark"] | parts["hot"] | wedge)
    low, _high = contrast_limits(image, "swi")
    assert low > np.percentile(image[background], 99)


def test_phase_window_in_radians_is_minus_pi_to_pi() -> None:
    rng = np.random.default_rng(3)
    phase = rng.uniform(-math.pi, math.pi, (30, 30, 20)).astype(np.float32)
    assert contrast_limits(phase, "phase") == (-math.pi, math.pi)
    filtered = (rng.normal(0, 0.05, (30, 30, 20)) + 0).astype(np.float32)  # high-pass filtered: flat tissue
    filtered[10, 10, 10] = 2.5  # a microbleed
    assert contrast_limits(filtered, "phase") == (-math.pi, math.pi)  # fixed, not stretched to the noise


@pytest.mark.parametrize(("low", "high", "dtype", "window"), [
    (0, 4095, np.uint16, (0.0, 4095.0)),            # 12-bit unsigned: 2048 is zero phase
    (-4096, 4094, np.int16, (-4096.0, 4096.0)),     # Siemens after rescale slope 2, intercept -4096
    (-2048, 2047, np.int16, (-2048.0, 2048.0)),     # 12-bit signed
])
def test_phase_window_of_a_scanners_integer_range(low: int, high: int, dtype: type, window: tuple) -> None:
    rng = np.random.default_rng(4)
    phase = rng.integers(low, high + 1, (30, 30, 20)).astype(dtype)
    phase[0, 0, 0], phase[-1, -1, -1] = low, high
    limits = contrast_limits(phase, "phase")
    assert limits == window
    assert (limits[0] + limits[1]) / 2 == pytest.approx((low + high + 1) / 2, abs=1)  # symmetric about zero phase


def test_the_phase_preset_refuses_values_that_are_not_phase() -> None:
    magnitude = np.linspace(0.5, 800.7, 1000, dtype=np.float32).reshape(10, 10, 10)
    with pytest.raises(InputFileError, match="mag: its values reach 800.7") as info:
        contrast_limits(magnitude, "phase", "mag")
    assert str(info.value).count(". ") == 0


class Lazy:
    """An array that builds only what is indexed, and refuses to be read whole."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape, self.dtype, self.read = shape, np.dtype(np.float32), 0

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        grids = np.meshgrid(*[np.arange(n)[k] for n, k in zip(self.shape, key)], indexing="ij")
        out = (50.0 + sum(grids)).astype(np.float32)
        self.read += out.size
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole volume was read")


def test_a_large_volume_is_read_only_as_a_strided_sample() -> None:
    lazy = Lazy((400, 400, 300))
    low, high = contrast_limits(lazy, "t1")
    assert lazy.read <= SAMPLE_VOXELS and lazy.read > SAMPLE_VOXELS // 4
    assert low < high
    assert sample_voxels(np.arange(10.0)).size == 10  # small images are read whole


def brute_minip(data: np.ndarray, axis: int, before: int, after: int) -> np.ndarray:
    moved = np.moveaxis(data, axis, 0)
    out = np.stack([moved[max(0, i - before):min(len(moved), i + after + 1)].min(axis=0) for i in range(len(moved))])
    return np.moveaxis(out, 0, axis)


@pytest.mark.parametrize(("axis", "slices", "before", "after"), [
    (0, 3, 1, 1),  # 6 mm on 2.0 mm voxels: 3 slices, centred
    (1, 8, 4, 3),  # 6 mm on 0.8 mm: 7.5 -> 8 slices, even: the extra one on the lower-index side
    (2, 5, 2, 2),  # 6 mm on 1.1 mm: 5.45 -> 5 slices
])
def test_minip_is_the_minimum_over_the_slab_on_anisotropic_voxels(axis: int, slices: int, before: int,
                                                                   after: int) -> None:
    rng = np.random.default_rng(5)
    data = rng.integers(0, 1000, (12, 17, 15)).astype(np.int16)
    volume = Volume(data, np.diag([2.0, 0.8, 1.1, 1.0]), (2.0, 0.8, 1.1))
    updates: list[Progress] = []
    result = run_to_completion(minip.run(volume, axis, 6.0, "swi"), updates.append)
    assert (result.slab.slices, result.slab.before, result.slab.after) == (slices, before, after)
    assert result.data.dtype == data.dtype and result.data.shape == data.shape
    np.testing.assert_array_equal(result.data, brute_minip(data, axis, before, after))
    assert result.slab.thickness_mm == pytest.approx(slices * volume.zooms[axis])
    assert len(updates) > 2 and updates[-1].fraction == 1.0  # progress per block: Cancel is felt between blocks
    assert f"{slices} slices" in result.slab.describe(6.0)


def test_minip_refuses_nan_2d_and_4d_in_one_sentence() -> None:
    data = np.ones((6, 6, 6), np.float32)
    data[2, 3, 4] = np.nan
    task = minip.run(Volume(data, np.eye(4), (1.0, 1.0, 1.0)), 0, 6.0, "swi")
    with pytest.raises(InputFileError, match="swi: 1 voxels are NaN"):
        next(task)
    for shape in ((6, 6), (6, 6, 6, 3)):
        with pytest.raises(InputFileError, match=f"swi: a minIP slab needs a 3D scan, and this image is {len(shape)}D"):
            minip.run(Volume(np.ones(shape, np.float32), np.eye(4), (1.0, 1.0, 1.0)), 0, 6.0, "swi")
    with pytest.raises(ValueError, match="outside 2-20 mm"):
        minip.run(Volume(np.ones((6, 6, 6)), np.eye(4), (1.0, 1.0, 1.0)), 0, 25.0)
