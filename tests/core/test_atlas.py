"""Tests of the five-network atlas built from nilearn's ROI tables (core/atlas.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nibabel.affines import apply_affine

from napari_neuroreview.core.anatomy import atlas
from napari_neuroreview.core.anatomy import make_affine


@pytest.fixture(scope="module")
def grid_templates():
    affine, shape = atlas.model_grid()
    return affine, shape, atlas.template_maps(affine, shape)


def _centroid(affine, m):
    idx = np.argwhere(m > 0.05)
    w = m[m > 0.05]
    return (apply_affine(affine, idx) * w[:, None]).sum(0) / w.sum()


def test_networks_and_rois():
    assert atlas.NETWORKS == ("motor", "vision", "language", "frontal", "temporal")
    for name in atlas.NETWORKS:
        rois = atlas.network_rois(name)
        assert rois.name == name
        assert rois.coords_mm.shape == (len(rois.weights), 3) and len(rois.weights) >= 8
        assert np.all(rois.weights > 0) and rois.radius_mm == 5.0
        assert "Seitzman" in rois.source
        # inside the MNI head
        assert np.all(np.abs(rois.coords_mm[:, 0]) < 75) and np.all(rois.coords_mm[:, 2] > -60)
    lang = atlas.network_rois("language")
    left = lang.weights[lang.coords_mm[:, 0] < 0].sum()
    right = lang.weights[lang.coords_mm[:, 0] > 0].sum()
    assert left > 3 * right > 0  # left-lateralised, right homologues present at reduced weight
    assert set(np.round(lang.weights, 3)) == {1.0, 0.3}
    # frontal network: the frontal part is weighted
    fr = atlas.network_rois("frontal")
    assert np.all(fr.weights[fr.coords_mm[:, 1] > 0] == 1.0) and np.all(fr.weights[fr.coords_mm[:, 1] <= 0] < 1.0)
    # a copy: mutating it does not change the atlas
    lang.weights[:] = 0
    assert atlas.network_rois("language").weights.max() == 1.0
    with pytest.raises(ValueError, match="unknown network"):
        atlas.network_rois("default")
    assert len(atlas.seitzman_rois("DefaultMode").weights) > 40
    with pytest.raises(ValueError, match="Seitzman"):
        atlas.seitzman_rois("Nope")


def test_model_grid():
    affine, shape = atlas.model_grid()
    np.testing.assert_allclose(np.abs(np.diag(affine)[:3]), 6.0)
    assert np.all(np.diag(affine)[:3] > 0)  # RAS
    # covers the brain: the world corners reach beyond the MNI brain box
    lo = apply_affine(affine, [0, 0, 0])
    hi = apply_affine(affine, np.array(shape) - 1)
    assert lo[0] < -70 and hi[0] > 70 and lo[1] < -105 and hi[1] > 70 and lo[2] < -70 and hi[2] > 75
    affine[0, 0] = 99  # a copy
    assert atlas.model_grid()[0][0, 0] == 6.0


def test_templates_distinct_and_in_place(grid_templates):
    affine, shape, t = grid_templates
    assert t.shape == (5, *shape) and t.dtype == np.float32
    np.testing.assert_allclose(t.reshape(5, -1).max(1), 1.0, rtol=1e-6)
    assert t.min() >= 0
    gm = atlas.grey_matter_probability(affine, shape)
    assert gm.shape == shape and 0 <= gm.min() and gm.max() <= 1
    assert np.all(t[:, gm == 0] == 0)  # restricted to grey matter
    corr = np.corrcoef(t.reshape(5, -1))
    print("\ntemplate correlation matrix (NETWORKS order):\n", np.round(corr, 3))
    off = corr[~np.eye(5, dtype=bool)]
    assert off.max() < 0.5
    # each template lies where its network is
    c = {n: _centroid(affine, t[k]) for k, n in enumerate(atlas.NETWORKS)}
    assert c["motor"][2] > 35  # dorsal
    assert c["vision"][1] < -65  # occipital
    assert c["language"][0] < -20  # left
    assert c["frontal"][1] > 0  # frontal part weighted
    assert c["temporal"][2] < 20 and abs(c["temporal"][0]) < 15  # bilateral, low
    k = atlas.NETWORKS.index("language")
    left = t[k][apply_affine(affine, np.argwhere(np.ones(shape, bool)))[:, 0].reshape(shape) < 0].sum()
    assert left > 2.0 * (t[k].sum() - left)


def test_templates_are_grid_independent():
    """The same world points get the same values whatever the voxel-axis order."""
    a_ras, s_ras = make_affine((5.0, 5.0, 5.0), "RAS")
    a_las, s_las = make_affine((5.0, 5.0, 5.0), "LAS")
    assert s_ras == s_las
    np.testing.assert_allclose(apply_affine(a_las, [s_las[0] - 1, 0, 0]), apply_affine(a_ras, [0, 0, 0]))
    t_ras = atlas.template_maps(a_ras, s_ras)
    t_las = atlas.template_maps(a_las, s_las)
    np.testing.assert_allclose(t_las[:, ::-1], t_ras, atol=2e-3)


def test_roi_map_analytic_blur_conserves_volume():
    affine, shape = make_affine((1.0, 1.0, 1.0), "RAS", fov_mm=(40.0, 40.0, 40.0), center_ras=(0.0, 0.0, 0.0))
    ball = 4.0 / 3.0 * math.pi * 5.0**3
    hard = atlas.roi_map([[0.0, 0.0, 0.0]], [1.0], 5.0, affine, shape, smoothing_mm=0.0)
    soft = atlas.roi_map([[0.0, 0.0, 0.0]], [1.0], 5.0, affine, shape, smoothing_mm=6.0)
    assert abs(hard.sum() - ball) / ball < 0.08  # voxelised ball
    assert abs(soft.sum() - ball) / ball < 0.02  # a blur moves mass, it does not make it
    assert soft.max() < 1.0 and hard.max() == 1.0
    centre = tuple(int(n) // 2 for n in shape)
    # P(3D Gaussian, sigma = 6 / 2.355 mm, within 5 mm) = chi3.cdf(1.96) ~ 0.70 at the centre
    assert 0.65 < soft[centre] < 0.75
    two = atlas.roi_map([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]], [1.0, -0.5], 5.0, affine, shape, 6.0)
    assert two.min() < -0.3  # negative weights allowed
