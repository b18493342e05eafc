"""MARS regions in MNI space: known points land in their region and side, every region can be sampled.

The landmarks are read from the literature and checked against the atlas along lines
through them (each lies inside the structure, not on its edge): thalamus, putamen,
pons, cerebellar hemisphere, occipital pole, superior temporal, superior frontal and
superior parietal gyri, insula, the corpus callosum's genu (:data:`LANDMARKS_MNI`) and
body, the posterior and anterior limbs of the internal capsule, the external capsule
between putamen and insula, and the white matter beside the body of the lateral ventricle.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from nibabel.affines import apply_affine

from napari_neuroreview.core.anatomy import mars
from napari_neuroreview.core.anatomy.mni import LANDMARKS_MNI

#: (MNI RAS mm) -> (region, side).
LANDMARKS: dict[tuple[float, float, float], tuple[str, str]] = {
    (-12.0, -18.0, 8.0): ("thalamus", "left"),
    (26.0, 4.0, 0.0): ("basal_ganglia", "right"),
    (0.0, -28.0, -32.0): ("brainstem", "right"),  # pons, on the midline: x == 0 is right
    (-2.0, -28.0, -32.0): ("brainstem", "left"),
    (30.0, -65.0, -35.0): ("cerebellum", "right"),
    (-15.0, -100.0, 5.0): ("occipital", "left"),
    (60.0, -20.0, 5.0): ("temporal", "right"),
    (-20.0, 30.0, 55.0): ("frontal", "left"),
    (25.0, -60.0, 60.0): ("parietal", "right"),
    (-38.0, 0.0, 5.0): ("insula", "left"),
    (-28.0, -20.0, -12.0): ("temporal", "left"),  # hippocampus: medial temporal lobe
    LANDMARKS_MNI["genu_corpus_callosum"]: ("corpus_callosum", "right"),
    (-1.0, -5.0, 24.0): ("corpus_callosum", "left"),  # body
    (24.0, -14.0, 8.0): ("internal_capsule", "right"),  # posterior limb
    (-24.0, -14.0, 8.0): ("internal_capsule", "left"),
    (-18.0, 10.0, 4.0): ("internal_capsule", "left"),  # anterior limb
    (35.0, 0.0, 0.0): ("external_capsule", "right"),
    (-26.0, -20.0, 24.0): ("deep_white_matter", "left"),  # beside the lateral ventricle's body
    (24.0, -10.0, 28.0): ("deep_white_matter", "right"),
}


def test_landmarks_land_in_their_region_and_side() -> None:
    points = np.array(list(LANDMARKS), dtype=float)
    found = [(r.region, r.side) for r in mars.regions_at(points)]
    wrong = {tuple(p): (f, e) for p, f, e in zip(points.tolist(), found, LANDMARKS.values()) if f != e}
    assert not wrong, wrong
    for r in mars.regions_at(points):
        assert r.mars_class == mars.REGION_CLASS[r.region]
    assert mars.regions_at(np.array([[60.0, -20.0, 5.0]]))[0].label == "temporal (right)"


def test_points_just_outside_take_the_nearest_label_far_ones_are_outside() -> None:
    parc = mars.mars_parcellation()
    xyz = apply_affine(parc.affine, np.argwhere(parc.regions > 0).astype(float))
    for axis, sign in ((2, 1), (0, 1), (0, -1), (1, 1)):  # the vertex, both sides, the frontal pole
        edge = xyz[np.argmax(sign * xyz[:, axis])]
        step = np.zeros(3)
        step[axis] = sign
        inside = mars.regions_at(edge[None])[0]
        assert inside.region != "outside"
        near = mars.regions_at((edge + 2.0 * step)[None])[0]
        assert (near.region, near.mars_class) == (inside.region, inside.mars_class)
        far = mars.regions_at((edge + 20.0 * step)[None])[0]
        assert (far.region, far.mars_class, far.label) == ("outside", "outside", "outside")
    assert mars.regions_at(np.array([[0.0, 0.0, 500.0]]))[0].region == "outside"  # off the atlas grid


def test_region_points_cover_every_region_and_side_and_map_back() -> None:
    rng = np.random.default_rng(0)
    for region in mars.REGIONS:
        both = mars.region_points(region)
        for side in mars.SIDES:
            pts = mars.region_points(region, side)
            assert len(pts) > 50, (region, side)
            pick = pts[rng.choice(len(pts), size=min(200, len(pts)), replace=False)]
            back = mars.regions_at(pick)
            assert all((r.region, r.side) == (region, side) for r in back), (region, side)
            assert len(pts) < len(both)
        if mars.REGION_CLASS[region] == "lobar":
            junction = mars.region_points(region, juxtacortical=True)
            away = mars.region_points(region, juxtacortical=False)
            assert len(junction) > 0 and len(away) > 0 and len(junction) + len(away) == len(both)
        else:
            with pytest.raises(ValueError):
                mars.region_points(region, juxtacortical=True)
    with pytest.raises(ValueError):
        mars.region_points("hippocampus")


def test_lookup_is_vectorised_and_fast() -> None:
    mars.mars_parcellation()
    pts = np.random.default_rng(1).uniform(-80, 80, size=(5000, 3))
    t0 = time.perf_counter()
    index = mars.region_indices_at(pts)
    regions = mars.regions_at(pts)
    assert time.perf_counter() - t0 < 1.0
    assert [r.region for r in regions] == ["outside" if i < 0 else mars.REGIONS[i] for i in index]
    assert mars.mars_parcellation().regions.flags.writeable is False
