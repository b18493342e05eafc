"""Candidate recall: the detector's screen alone, scored against the truth (issue 10 item 4)."""

from __future__ import annotations

import sys

import numpy as np

from napari_neuroreview.core.io.nifti import Volume, voxel_sha256
from napari_neuroreview.core.tasks.cmb import candidate_recall as module
from napari_neuroreview.core.tasks.cmb.candidate_recall import candidate_recall
from napari_neuroreview.core.tasks.cmb.candidates import find_candidates

SHAPE = (56, 60, 36)
ZOOMS = (0.9, 0.9, 1.8)
#: Darkness of each planted sphere (share of tissue signal): the darkest ranks first.
DARKNESS = (0.1, 0.3, 0.5)


def planted(seed: int = 0) -> tuple[Volume, np.ndarray, list[dict]]:
    """A head with three dark spheres of known darkness; (magnitude, truth labels, truth cmbs)."""
    rng = np.random.default_rng(seed)
    affine = np.diag([*ZOOMS, 1.0])
    affine[:3, 3] = -np.asarray(SHAPE) * np.asarray(ZOOMS) / 2
    mm = [np.indices(SHAPE)[a] * ZOOMS[a] for a in range(3)]
    centre = [s * z / 2 for s, z in zip(SHAPE, ZOOMS)]
    head = sum(((mm[a] - centre[a]) / (0.36 * SHAPE[a] * ZOOMS[a])) ** 2 for a in range(3)) < 1
    image = np.where(head, 1.0, 0.02).astype(np.float32)
    truth = np.zeros(SHAPE, np.uint16)
    cmbs = []
    spots = ((-8.0, -6.0, -4.0), (8.0, 0.0, 3.0), (-2.0, 9.0, 8.0))
    for k, (offset, factor) in enumerate(zip(spots, DARKNESS)):
        c = [centre[a] + offset[a] for a in range(3)]
        ball = sum((mm[a] - c[a]) ** 2 for a in range(3)) < 2.0**2
        image[ball] *= factor
        truth[ball] = k + 1
        cmbs.append({"id": k + 1, "world_ras_mm": [c[a] + affine[a, 3] for a in range(3)], "diameter_mm": 4.0})
    image = np.abs(image + rng.normal(0, 0.02, SHAPE) + 1j * rng.normal(0, 0.02, SHAPE)).astype(np.float32)
    return Volume(image, affine, ZOOMS, None, voxel_sha256(image)), truth, cmbs


def test_planted_dark_spheres_are_found_darkest_first() -> None:
    magnitude, truth, cmbs = planted()
    result = candidate_recall(magnitude, cmbs, truth)
    assert [c.found for c in result.cmbs] == [True, True, True]
    assert all(c.found_capped and not c.dropped_by_cap for c in result.cmbs)
    assert all(c.distance_mm is not None and c.distance_mm < 2.0 for c in result.cmbs)
    ranks = [c.rank for c in result.cmbs]
    assert ranks == sorted(ranks) and len(set(ranks)) == 3  # darker spheres rank first
    assert result.n_candidates >= 3 and result.seconds > 0
    # Point truth only (no instance mask) finds them too: the distance criterion.
    assert all(c.found for c in candidate_recall(magnitude, cmbs).cmbs)


def test_a_cmb_beyond_a_tiny_cap_is_reported_as_dropped() -> None:
    magnitude, truth, cmbs = planted()
    cap = candidate_recall(magnitude, cmbs, truth).cmbs[0].rank + 1  # keeps the darkest sphere only
    result = candidate_recall(magnitude, cmbs, truth, max_candidates=cap)
    assert [c.found for c in result.cmbs] == [True, True, True]
    assert [c.found_capped for c in result.cmbs] == [True, False, False]
    assert [c.dropped_by_cap for c in result.cmbs] == [False, True, True]
    assert all(c.rank >= cap for c in result.cmbs[1:])


def test_a_cmb_the_screen_cannot_see_is_not_found() -> None:
    magnitude, truth, cmbs = planted()
    ghost = {"id": 9, "world_ras_mm": [0.0, -12.0, 10.0]}  # tissue only: nothing dark there
    result = candidate_recall(magnitude, [*cmbs, ghost], truth)
    assert result.cmbs[-1].found is False and result.cmbs[-1].rank is None
    assert result.cmbs[-1].dropped_by_cap is False


def test_the_screen_is_the_detectors_and_never_sees_the_truth(monkeypatch) -> None:
    magnitude, truth, cmbs = planted()
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return find_candidates(*args, **kwargs)

    monkeypatch.setattr(module, "find_candidates", spy)
    with_truth = candidate_recall(magnitude, cmbs, truth, max_candidates=2)
    without = candidate_recall(magnitude, [], None, max_candidates=2)
    # Only the image reaches the screen, as make_channels passes it; the truth only scores.
    for args, kwargs in calls:
        assert args[0] is magnitude.data and args[1] == magnitude.zooms and args[2] == sys.maxsize and not kwargs
    np.testing.assert_array_equal(with_truth.candidate_voxels, without.candidate_voxels)
    # The capped list the detector gets is the uncapped list's head (stable darkest-first sort).
    capped, _, _ = find_candidates(magnitude.data, magnitude.zooms, 2)
    np.testing.assert_array_equal(capped.voxels, with_truth.candidate_voxels[:2])
