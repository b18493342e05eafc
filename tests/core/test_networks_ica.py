"""Spatial ICA and network matching recover planted networks; bad input is refused."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from napari_neuroreview.core.anatomy import atlas
from napari_neuroreview.core.errors import GeometryError, InputFileError
from napari_neuroreview.core.io.ica_folder import ICAComponents
from napari_neuroreview.core.io.nifti import Volume
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.networks.ica import run_ica
from napari_neuroreview.core.tasks.networks.matching import (
    MIN_MARGIN,
    MIN_SCORE,
    is_confident,
    match_networks,
    network_inputs,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from networks_synthetic import make_synthetic_bold  # noqa: E402

K = 16


@pytest.fixture(scope="module")
def case():
    """6 mm MNI grid, 100 volumes, 5 planted networks + 4 nuisance sources + noise + drift."""
    return make_synthetic_bold(seed=11, n_volumes=100, noise=0.003)


@pytest.fixture(scope="module")
def run(case):
    updates = []
    comps = run_to_completion(run_ica(case.bold, n_components=K, seed=0), updates.append)
    return comps, updates


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_ica_shapes_scaling_sign_and_progress(case, run) -> None:
    comps, updates = run
    assert isinstance(comps, ICAComponents) and comps.kind == "neuroreview"
    assert comps.maps.shape == (*case.bold.spatial_shape, K) and comps.maps.dtype == np.float32
    assert comps.timecourses.shape == (100, K) and comps.tr_s == 2.0
    np.testing.assert_allclose(comps.affine, case.bold.affine)
    mask = comps.brain_mask
    assert 0.2 < mask.mean() < 0.9
    inside = comps.maps[mask]
    np.testing.assert_allclose(inside.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(inside.std(axis=0), 1, atol=1e-3)
    assert np.all(stats.skew(inside, axis=0) > 0)  # positive-skew sign convention
    variances = comps.timecourses.var(axis=0)
    assert np.all(np.diff(variances) <= 1e-9)  # ordered by time-course variance
    steps = [u.step for u in updates]
    assert steps == sorted(steps) and updates[-1].step == updates[-1].total and len(updates) >= 8
    assert all(u.message for u in updates)


def test_ica_recovers_and_matches_the_planted_networks(case, run) -> None:
    comps, _ = run
    assignment = match_networks(comps)
    assert list(assignment.matches) == list(atlas.NETWORKS)
    assert len({m.component for m in assignment.matches.values()}) == 5  # one component per network
    mask = comps.brain_mask
    for n, name in enumerate(atlas.NETWORKS):
        match = assignment.matches[name]
        truth = case.maps[n][mask]
        per_component = [abs(_corr(truth, comps.maps[..., k][mask])) for k in range(K)]
        assert match.component == int(np.argmax(per_component)), name  # the right component
        recovered = match.sign * comps.maps[..., match.component][mask]
        assert _corr(truth, recovered) > 0.8, name
        assert _corr(case.timecourses[:, n], match.sign * comps.timecourses[:, match.component]) > 0.85, name
        assert match.automatic and match.sign == 1
        assert match.score == pytest.approx(assignment.scores[n, match.component])
    assert sum(m.confident for m in assignment.matches.values()) >= 4


def test_same_seed_same_components(case, run) -> None:
    again = run_to_completion(run_ica(case.bold, n_components=K, seed=0))
    np.testing.assert_allclose(again.maps, run[0].maps, atol=1e-4)


def test_network_inputs_on_the_model_grid(run) -> None:
    comps, _ = run
    assignment = match_networks(comps)
    inputs = network_inputs(comps, assignment)
    grid_affine, grid_shape = atlas.model_grid()
    templates = atlas.template_maps(grid_affine, grid_shape)
    assert list(inputs) == list(atlas.NETWORKS)
    for n, name in enumerate(atlas.NETWORKS):
        grid_map, tc = inputs[name]
        assert grid_map.shape == grid_shape and grid_map.dtype == np.float32
        assert tc.shape == (comps.n_volumes,) and tc.dtype == np.float32
        assert abs(tc.mean()) < 1e-5 and tc.std() == pytest.approx(1, abs=1e-4)
        assert _corr(grid_map, templates[n]) > 0.4, name  # the network lands where the atlas has it
    # Flipping a component (as MELODIC may) and its stored sign leaves the inputs unchanged.
    k = assignment.matches["vision"].component
    flipped = ICAComponents(maps=comps.maps.copy(), affine=comps.affine, timecourses=comps.timecourses.copy(),
                            tr_s=comps.tr_s, source="flipped", kind="melodic")
    flipped.maps[..., k] *= -1
    flipped.timecourses[:, k] *= -1
    again = match_networks(flipped)
    assert again.matches["vision"].component == k and again.matches["vision"].sign == -1
    np.testing.assert_allclose(network_inputs(flipped, again)["vision"][0], inputs["vision"][0], atol=1e-5)
    np.testing.assert_allclose(network_inputs(flipped, again)["vision"][1], inputs["vision"][1], atol=1e-5)


def test_confidence_rule_and_duplicate_component(run) -> None:
    assert is_confident(MIN_SCORE + MIN_MARGIN, MIN_SCORE)
    assert not is_confident(0.5, 0.45) and not is_confident(MIN_SCORE - 0.01, 0.0)
    comps, _ = run
    first = match_networks(comps)
    k = first.matches["motor"].component
    # A second copy of the motor component makes motor's best no longer clearly best.
    doubled = ICAComponents(maps=np.concatenate([comps.maps, comps.maps[..., k:k + 1]], axis=3), affine=comps.affine,
                            timecourses=np.concatenate([comps.timecourses, comps.timecourses[:, k:k + 1]], axis=1),
                            tr_s=None, source="doubled", kind="map+tsv")
    motor = match_networks(doubled).matches["motor"]
    assert motor.component in (k, K) and motor.second_score == pytest.approx(motor.score) and not motor.confident
    overridden = first.override("language", first.matches["motor"].component)
    assert overridden.matches["language"].automatic is False
    assert overridden.shared_components() == {k: ["motor", "language"]}
    with pytest.raises(InputFileError, match="not a network"):
        first.override("hearing", 0)
    with pytest.raises(InputFileError, match="does not exist"):
        first.override("motor", K)


def test_matching_refuses_too_few_components_and_non_mni_maps(run) -> None:
    comps, _ = run
    few = ICAComponents(maps=comps.maps[..., :4], affine=comps.affine, timecourses=comps.timecourses[:, :4],
                        tr_s=None, source="few", kind="map+tsv")
    with pytest.raises(InputFileError, match="4 components, fewer than the 5 networks"):
        match_networks(few)
    far = comps.affine.copy()
    far[:3, 3] += 2000.0
    moved = ICAComponents(maps=comps.maps, affine=far, timecourses=comps.timecourses, tr_s=None, source="moved",
                          kind="map+tsv")
    with pytest.raises(GeometryError, match="MNI space"):
        match_networks(moved)


def _volume(data: np.ndarray, tr: float | None = 2.0) -> Volume:
    return Volume(data=data, affine=np.diag([6.0, 6.0, 6.0, 1.0]), zooms=(6.0, 6.0, 6.0),
                  path=Path("/scans/bold.nii.gz"), tr_s=tr)


def test_bad_input_is_one_sentence(case) -> None:
    with pytest.raises(InputFileError, match=r"bold.nii.gz: is a 3D image .* 4D BOLD time series is needed"):
        run_to_completion(run_ica(_volume(case.bold.data[..., 0]), n_components=5))
    with pytest.raises(InputFileError, match="has 12 volumes, too few for 20 components"):
        run_to_completion(run_ica(_volume(case.bold.data[..., :12]), n_components=20))
    with pytest.raises(InputFileError, match="no repetition time"):
        run_to_completion(run_ica(_volume(case.bold.data[..., :30], tr=None), n_components=5, high_pass_hz=0.01))
    with pytest.raises(InputFileError, match="all zero"):
        run_to_completion(run_ica(_volume(np.zeros((8, 8, 8, 30), np.float32)), n_components=5))
