"""Tests of the MNI-based T1 phantom: anatomy, grids, resampling and the simulated physics.

Cases are made on coarse grids (2-3 mm) to keep the suite fast; the tolerances are set so
that the classic geometry bugs (a flipped axis, a half-voxel shift, zooms on the wrong
axis) fail them.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import obliquity, voxel_sizes
from scipy import ndimage

from napari_neuroreview.core.anatomy import (
    LANDMARKS_MNI,
    load_mni_anatomy,
    make_affine,
    voxel_to_world,
    world_to_voxel,
)
from napari_neuroreview.core.io.resample import resample_to_grid
from napari_neuroreview.core.phantoms.anatomy import TISSUE_LABELS, make_t1_case


@pytest.fixture(scope="module")
def anat():
    return load_mni_anatomy()


def _labels(case) -> np.ndarray:
    return np.asarray(case.truth["tissue"].dataobj)


def _centroid_world(mask: np.ndarray, affine: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    ijk = np.argwhere(mask)
    w = None if weights is None else weights[mask]
    return np.average(voxel_to_world(affine, ijk), axis=0, weights=w)


# --------------------------------------------------------------------------- anatomy


def test_mni_maps_load_offline_with_plausible_ranges(anat):
    assert anat is load_mni_anatomy()  # cached
    assert anat.t1.shape == anat.gm.shape == anat.wm.shape == anat.csf.shape == anat.brain.shape
    assert anat.shape == (197, 233, 189)
    for name in ("t1", "gm", "wm", "csf"):
        a = getattr(anat, name)
        assert a.dtype == np.float32, name
        assert a.min() >= 0.0 and a.max() <= 1.0, name
        assert not a.flags.writeable, name
    assert anat.brain.dtype == bool
    assert nib.aff2axcodes(anat.affine) == ("R", "A", "S")
    np.testing.assert_allclose(voxel_sizes(anat.affine), 1.0)

    # Volumes in litres (1 voxel = 1 mm^3): the template brain is larger than average.
    assert 1.4 < anat.brain.sum() / 1e6 < 2.2
    assert 0.6 < anat.gm.sum() / 1e6 < 1.2
    assert 0.4 < anat.wm.sum() / 1e6 < 0.9
    assert 0.05 < anat.csf.sum() / 1e6 < 0.5
    # Inside the mask the three classes make up the whole voxel (partial-volume model).
    total = anat.gm + anat.wm + anat.csf
    assert np.allclose(total[anat.brain], 1.0, atol=1e-5)
    # Template T1 contrast: WM > GM > CSF.
    t1_wm, t1_gm, t1_csf = (np.median(anat.t1[p > 0.9]) for p in (anat.wm, anat.gm, anat.csf))
    assert t1_wm > t1_gm > t1_csf
    # The ventricles (just off the midline at z = 18 mm) are CSF.
    for ras in ((4.0, 0.0, 18.0), (-4.0, 0.0, 18.0)):
        i, j, k = np.rint(world_to_voxel(anat.affine, ras)).astype(int)
        assert anat.csf[i, j, k] > 0.9


def test_landmarks_sit_in_midline_white_matter(anat):
    for name in ("anterior_commissure", "posterior_commissure", "genu_corpus_callosum", "splenium_corpus_callosum"):
        ras = LANDMARKS_MNI[name]
        assert ras[0] == 0.0
        i, j, k = np.rint(world_to_voxel(anat.affine, ras)).astype(int)
        assert anat.t1[i, j, k] > 0.7, name  # white-matter bright on the template


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "LAS", "PIR", "SLA"])
def test_make_affine_axes_follow_codes_and_zooms(anat, orientation):
    vs = (1.2, 1.5, 2.0)
    affine, shape = make_affine(vs, orientation, center_ras=(0.0, -18.0, 18.0))
    assert nib.aff2axcodes(affine) == tuple(orientation)
    np.testing.assert_allclose(voxel_sizes(affine), vs)
    assert obliquity(affine).max() == pytest.approx(0.0, abs=1e-9)
    centre = voxel_to_world(affine, (np.asarray(shape) - 1) / 2.0)
    np.testing.assert_allclose(centre, (0.0, -18.0, 18.0), atol=1e-9)


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "PIR"])
def test_default_fov_covers_the_brain(anat, orientation):
    affine, shape = make_affine((2.0, 2.5, 3.0), orientation)
    lo, hi = anat.brain_bbox_mm
    corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
    ijk = world_to_voxel(affine, corners)
    assert np.all(ijk >= -0.5) and np.all(ijk <= np.asarray(shape) - 0.5)
    # ... and not much more: 5 mm margin plus less than a voxel of rounding.
    extent_mm = np.asarray(shape) * voxel_sizes(affine)
    world_axis = np.argmax(np.abs(affine[:3, :3]), axis=0)
    assert np.all(extent_mm <= (hi - lo)[world_axis] + 10.0 + voxel_sizes(affine))


@pytest.mark.parametrize("rotation", [(15.0, 0.0, 0.0), (0.0, 0.0, 15.0)])
def test_oblique_rotation(rotation):
    affine, _ = make_affine((2.0, 2.0, 3.0), "LPS", rotation_deg=rotation)
    assert obliquity(affine).max() > 0.0
    assert np.degrees(obliquity(affine).max()) == pytest.approx(15.0, abs=1e-6)
    np.testing.assert_allclose(voxel_sizes(affine), (2.0, 2.0, 3.0))
    assert nib.aff2axcodes(affine) == ("L", "P", "S")


@pytest.mark.parametrize("bad", ["RRS", "XYZ", "RA", "RASL"])
def test_make_affine_rejects_bad_orientation(bad):
    with pytest.raises(ValueError):
        make_affine((1.0, 1.0, 1.0), bad)


def test_world_voxel_round_trip():
    affine, _ = make_affine((1.2, 1.2, 1.5), "LAS", rotation_deg=(5.0, -10.0, 20.0))
    ras = np.array([[0.0, 3.0, -4.0], [40.0, -60.0, 30.0]])
    np.testing.assert_allclose(voxel_to_world(affine, world_to_voxel(affine, ras)), ras, atol=1e-9)


def test_resample_identity_and_flip(anat):
    # A 64^3 block around the ventricles (with its own affine) keeps this fast.
    lo = np.array([66, 70, 60])
    gm = np.ascontiguousarray(anat.gm[66:130, 70:134, 60:124])
    labels = anat.brain[66:130, 70:134, 60:124].astype(np.uint8)
    affine = anat.affine.copy()
    affine[:3, 3] = voxel_to_world(anat.affine, lo)
    shape = gm.shape
    out = resample_to_grid(gm, affine, affine, shape, order=1, edge="blend")
    np.testing.assert_array_equal(out, gm)
    # The same voxels stored LPS: i and j reversed.
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:3, 3] = [shape[0] - 1, shape[1] - 1, 0]
    lps = affine @ flip
    assert nib.aff2axcodes(lps) == ("L", "P", "S")
    out = resample_to_grid(gm, affine, lps, shape, order=1, edge="blend")
    np.testing.assert_array_equal(out, gm[::-1, ::-1, :])
    out = resample_to_grid(labels, affine, lps, shape, order=0, edge="blend")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels[::-1, ::-1, :])
    # Stored PIR (a sagittal acquisition): a transpose plus flips, by the general path too.
    pir = affine @ np.array(
        [[0, 0, 1, 0], [-1, 0, 0, shape[1] - 1], [0, -1, 0, shape[2] - 1], [0, 0, 0, 1]], float
    )
    assert nib.aff2axcodes(pir) == ("P", "I", "R")
    expected = np.transpose(gm[:, ::-1, ::-1], (1, 2, 0))  # expected[a, b, c] = gm[c, -a, -b]
    out = resample_to_grid(gm, affine, pir, expected.shape, order=1, edge="blend")
    np.testing.assert_allclose(out, expected, atol=1e-6)
    tiny = pir.copy()
    tiny[:3, :3] = pir[:3, :3] @ _rot_z(1e-4)  # forces scipy's general affine path
    out = resample_to_grid(gm, affine, tiny, expected.shape, order=1, edge="blend")
    np.testing.assert_allclose(out, expected, atol=0.02)


def _rot_z(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    ("voxel_size", "orientation", "rotation"),
    [
        ((2.0, 2.0, 2.0), "RAS", (0.0, 0.0, 0.0)),
        ((2.4, 2.4, 3.0), "LPS", (0.0, 0.0, 0.0)),
        ((2.0, 3.0, 2.5), "PIR", (0.0, 0.0, 0.0)),
        ((2.5, 2.5, 2.5), "LAS", (20.0, 0.0, 20.0)),
    ],
)
def test_resampled_asymmetric_blob_stays_in_world(anat, voxel_size, orientation, rotation):
    """The template is left-right symmetric, so an off-midline blob catches L/R flips."""
    centre = np.array([40.0, -30.0, 25.0])
    # The template grid is 1 mm RAS, so world offsets are voxel offsets.
    c = world_to_voxel(anat.affine, centre)
    i, j, k = np.ogrid[: anat.shape[0], : anat.shape[1], : anat.shape[2]]
    blob = (((i - c[0]) ** 2 + (j - c[1]) ** 2 + (k - c[2]) ** 2) <= 12.0**2).astype(np.float32)
    affine, shape = make_affine(voxel_size, orientation, rotation)
    out = resample_to_grid(blob, anat.affine, affine, shape, order=1, edge="blend")
    assert out.sum() * np.prod(voxel_size) == pytest.approx(blob.sum(), rel=0.03)
    got = _centroid_world(out > 0, affine, weights=out)
    np.testing.assert_allclose(got, centre, atol=0.25 * max(voxel_size))
    labels = resample_to_grid(blob.astype(np.uint8), anat.affine, affine, shape, order=0, edge="blend")
    assert set(np.unique(labels)) == {0, 1}
    np.testing.assert_allclose(_centroid_world(labels > 0, affine), centre, atol=0.5 * max(voxel_size))


# --------------------------------------------------------------------------- T1 cases


def test_t1_case_is_deterministic_and_seeded():
    a = make_t1_case(3, voxel_size=(3.0, 3.0, 3.0))
    b = make_t1_case(3, voxel_size=(3.0, 3.0, 3.0))
    c = make_t1_case(4, voxel_size=(3.0, 3.0, 3.0))
    da, db, dc = (np.asarray(x.image.dataobj) for x in (a, b, c))
    np.testing.assert_array_equal(da, db)
    np.testing.assert_array_equal(_labels(a), _labels(b))
    assert a.params == b.params
    assert not np.array_equal(da, dc)
    assert a.params["tissue_means"] != c.params["tissue_means"]
    assert a.params["bias_coefficients"] != c.params["bias_coefficients"]
    # The anatomy is the same; only the scan differs.
    np.testing.assert_array_equal(_labels(a), _labels(c))


def test_t1_case_image_header_and_truth_share_the_grid():
    case = make_t1_case(0, voxel_size=(2.4, 2.4, 3.0), orientation="LPS")
    img = case.image
    assert img.get_data_dtype() == np.int16
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    np.testing.assert_allclose(img.header.get_zooms()[:3], (2.4, 2.4, 3.0), rtol=1e-6)
    assert int(img.header["qform_code"]) in (1, 2) and int(img.header["sform_code"]) in (1, 2)
    np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-4)
    for key in ("tissue", "brain_mask"):
        t = case.truth[key]
        assert t.shape == img.shape
        np.testing.assert_allclose(t.affine, img.affine)
        assert t.get_data_dtype() == np.uint8
    assert set(np.unique(_labels(case))) == set(TISSUE_LABELS)
    assert set(case.truth["landmarks"]) == set(LANDMARKS_MNI)
    json.dumps(case.params)  # serialisable as is
    data = np.asarray(img.dataobj)
    assert data.min() >= 0 and 600 < np.percentile(data[_labels(case) == 3], 50) < 1100


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_t1_contrast_wm_gm_csf(seed):
    case = make_t1_case(seed, voxel_size=(3.0, 3.0, 3.0), tissue_jitter=0.3)
    data = np.asarray(case.image.dataobj).astype(float)
    labels = _labels(case)
    bg, csf, gm, wm = (data[labels == k].mean() for k in range(4))
    assert wm > gm > csf > bg
    means = case.params["tissue_means"]
    assert means["wm"] > means["gm"] > means["csf"]


def test_wm_centroid_is_the_same_world_point_on_every_grid(anat):
    """Same anatomy, different grids: the truth's white matter must not move in the world.

    Against the 1 mm template the tolerance is 0.3 voxel: hard labels of blurred
    partial-volume maps lose thin inferior white matter as voxels grow, which lifts the
    centroid by up to ~0.2 voxel. Between grids of the same voxel size that bias is shared,
    so flips, permutations and rotations must agree to 0.15 voxel; a half-voxel shift or a
    flipped axis fails both.
    """
    expected = _centroid_world(anat.wm > 0.5, anat.affine)
    grids = [
        ((2.4, 2.4, 3.0), "LPS", (0.0, 0.0, 0.0)),
        ((2.5, 2.5, 2.5), "RAS", (0.0, 0.0, 0.0)),
        ((2.5, 2.5, 2.5), "LPS", (0.0, 0.0, 0.0)),
        ((2.5, 2.5, 2.5), "RAS", (0.0, 0.0, 20.0)),
        ((2.5, 2.5, 2.5), "PIR", (20.0, 0.0, 0.0)),
    ]
    same_size = []
    for vs, orientation, rotation in grids:
        case = make_t1_case(11, voxel_size=vs, orientation=orientation, rotation_deg=rotation)
        got = _centroid_world(_labels(case) == 3, case.image.affine)
        msg = f"{orientation} {vs} {rotation}"
        np.testing.assert_allclose(got, expected, atol=0.3 * max(vs), err_msg=msg)
        if vs == (2.5, 2.5, 2.5):
            same_size.append(got)
        brain_ml = np.asarray(case.truth["brain_mask"].dataobj).sum() * np.prod(vs) / 1e3
        assert brain_ml == pytest.approx(anat.brain.sum() / 1e3, rel=0.03), msg
    same_size = np.array(same_size)
    assert np.ptp(same_size, axis=0).max() < 0.15 * 2.5


def test_background_noise_is_rayleigh_with_the_requested_sd():
    noise_sd = 0.03
    case = make_t1_case(5, voxel_size=(3.0, 3.0, 3.0), noise_sd=noise_sd, bias_strength=0.15)
    data = np.asarray(case.image.dataobj).astype(float) / case.params["intensity_scale"]
    head = ndimage.binary_dilation(_labels(case) > 0, iterations=2)
    bg = data[~head]
    assert bg.size > 50_000
    sigma = np.sqrt(np.mean(bg**2) / 2.0)  # Rayleigh: E[M^2] = 2 sigma^2
    assert sigma == pytest.approx(noise_sd, rel=0.05)
    assert bg.mean() / sigma == pytest.approx(np.sqrt(np.pi / 2.0), rel=0.03)  # not Gaussian


def test_bias_field_strength_shows_in_white_matter():
    flat = make_t1_case(8, voxel_size=(3.0, 3.0, 3.0), bias_strength=0.0, noise_sd=0.0)
    biased = make_t1_case(8, voxel_size=(3.0, 3.0, 3.0), bias_strength=0.3, noise_sd=0.0)
    wm = (_labels(flat) == 3) & (np.asarray(flat.image.dataobj) > 0)
    ratio = np.asarray(biased.image.dataobj)[wm] / np.asarray(flat.image.dataobj)[wm]
    # Smooth multiplicative field spanning exp(+-0.3) at most over the brain box.
    assert ratio.min() > np.exp(-0.3) - 0.02 and ratio.max() < np.exp(0.3) + 0.02
    assert ratio.max() / ratio.min() > 1.2
