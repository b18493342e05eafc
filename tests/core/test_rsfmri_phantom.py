"""Tests of the simulated rs-fMRI phantom (core/phantoms/rsfmri)."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine
from scipy.signal import detrend
from sklearn.metrics import roc_auc_score

from napari_neuroreview.core.anatomy import atlas
from napari_neuroreview.core.errors import InputFileError, NeuroreviewError
from napari_neuroreview.core.progress import Progress
from napari_neuroreview.core.phantoms.rsfmri import (
    NODE_CHANGE,
    NUISANCE_NETWORKS,
    SLOW_DIRECTION,
    SLOW_SHIFT,
    effect_pattern,
    load_bold_truth,
    make_bold_case,
    patient_networks,
    write_bold_cohort,
)
from napari_neuroreview.core.phantoms.rsfmri import signals
from napari_neuroreview.core.phantoms.rsfmri.case import _rng
from napari_neuroreview.core.phantoms.rsfmri.effect import NODE_CHANGE_GAIN
from napari_neuroreview.core.phantoms.rsfmri.networks import individual_map

SMALL = {"voxel_mm": 6.0, "n_volumes": 30}


@pytest.fixture(scope="module")
def default_pair():
    """One patient at the default settings (3 mm, 150 volumes), before and after."""
    return make_bold_case(11, "pre"), make_bold_case(11, "post")


def test_geometry_header_and_truth(default_pair):
    pre, post = default_pair
    img = pre.bold
    assert img.ndim == 4 and img.shape[3] == 150 and img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.header.get_zooms(), (3.0, 3.0, 3.0, 2.0))
    assert img.header.get_xyzt_units() == ("mm", "sec") and pre.tr_s == 2.0
    assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
    assert img.header.get_dim_info()[2] == 2 and int(img.header["slice_code"]) == 3
    assert pre.truth_maps.shape == (*img.shape[:3], 5)
    np.testing.assert_allclose(pre.truth_maps.affine, img.affine)
    np.testing.assert_allclose(post.bold.affine, img.affine)
    data = np.asarray(img.dataobj)
    brain = data[..., 0] > 0
    assert 0.15 < brain.mean() < 0.5  # brain-extracted, brain in the middle of the box
    # MNI world position of the brain's centre of mass is near the origin
    com = apply_affine(img.affine, np.argwhere(brain).mean(0))
    assert np.all(np.abs(com - np.array([0.0, -17.0, 8.0])) < 15)
    # T2*-weighted EPI: grey ~300, CSF brighter, white darker; temporal SNR plausible
    mean = data.astype(np.float32).mean(-1)
    tsnr = mean[brain] / (data[brain].astype(np.float32).std(-1) + 1e-6)
    assert 150 < np.median(mean[brain]) < 450 and 25 < np.median(tsnr) < 120
    truth = pre.truth
    json.dumps(truth)  # JSON-able
    assert truth["state"] == "pre" and truth["label"] == 0 and post.truth["label"] == 1
    assert list(truth["networks"]) == list(atlas.NETWORKS)
    assert list(truth["nuisance_networks"]) == list(NUISANCE_NETWORKS)
    for net in truth["networks"].values():
        assert len(net["timecourse"]) == 150 and len(net["weights"]) == len(net["coords_mm"])
    assert np.array(truth["motion"]["params"]).shape == (150, 6)


def test_same_seed_same_bytes_other_seed_differs():
    a = make_bold_case(5, "post", **SMALL)
    b = make_bold_case(5, "post", **SMALL)
    c = make_bold_case(6, "post", **SMALL)

    def digest(case):
        return (
            hashlib.sha256(case.bold.to_bytes()).hexdigest(),
            hashlib.sha256(case.truth_maps.to_bytes()).hexdigest(),
            json.dumps(case.truth, sort_keys=True),
        )

    assert digest(a) == digest(b)
    assert digest(a)[0] != digest(c)[0] and digest(a)[1] != digest(c)[1]


def test_truth_maps_line_up_with_the_atlas(default_pair):
    pre, _ = default_pair
    maps = np.asarray(pre.truth_maps.dataobj).reshape(-1, 5).T
    templates = atlas.template_maps(pre.bold.affine, pre.bold.shape[:3]).reshape(5, -1)
    corr = np.corrcoef(np.concatenate([maps, templates]))[:5, 5:]
    print("\ntruth map x template correlation:\n", np.round(corr, 2))
    # An individual map is its template displaced node by node (~3 mm), reweighted and a
    # little broader, so it matches its own template well and no other at all.
    off = corr.max(axis=1, initial=-1, where=~np.eye(5, dtype=bool))
    assert np.all(np.diag(corr) > 0.4) and np.all(np.diag(corr) > off + 0.35)


def test_network_roi_timecourse_follows_its_true_timecourse(default_pair):
    for case in default_pair:
        data = np.asarray(case.bold.dataobj).astype(np.float32)
        maps = np.asarray(case.truth_maps.dataobj)
        for k, name in enumerate(atlas.NETWORKS):
            roi = data[maps[..., k] > 0.6].mean(axis=0)
            r = np.corrcoef(detrend(roi), case.truth["networks"][name]["timecourse"])[0, 1]
            assert r > 0.5, (case.truth["state"], name, r)
        # and not with another network's
        other = np.corrcoef(
            detrend(data[maps[..., 0] > 0.6].mean(axis=0)), case.truth["networks"]["vision"]["timecourse"]
        )[0, 1]
        assert abs(other) < 0.4


def test_pre_post_differ_by_the_documented_effect():
    for seed in (1, 2, 3):
        pre, post = patient_networks(seed, "pre"), patient_networks(seed, "post")
        e = pre.responsiveness
        assert 0.5 <= e <= 1.5 and post.responsiveness == e
        for name in atlas.NETWORKS:
            a, b = pre[name], post[name]
            s = effect_pattern(name)
            np.testing.assert_array_equal(a.effect_pattern, s)
            np.testing.assert_array_equal(a.coords_mm, b.coords_mm)  # same person
            np.testing.assert_array_equal(a.base_weights, b.base_weights)
            g = NODE_CHANGE * NODE_CHANGE_GAIN[name] * e / 2
            np.testing.assert_allclose(b.weights / a.weights, (1 + g * s) / (1 - g * s), rtol=1e-9)
            shift = b.slow_share - a.slow_share
            assert np.sign(shift) == SLOW_DIRECTION[name]
            assert abs(shift) <= SLOW_SHIFT * e + 1e-9
            assert abs(a.amplitude_pct - b.amplitude_pct) == 0
        for name in NUISANCE_NETWORKS:
            np.testing.assert_array_equal(pre[name].weights, post[name].weights)
    # the pattern: pairs, balanced, every network has changed nodes
    for name in atlas.NETWORKS:
        s = effect_pattern(name)
        assert s.sum() == 0 and (s != 0).sum() >= 8


def test_effect_size_zero_gives_identical_network_parameters():
    pre = make_bold_case(4, "pre", effect_size=0.0, **SMALL)
    post = make_bold_case(4, "post", effect_size=0.0, **SMALL)
    for group in ("networks", "nuisance_networks"):
        for name, net in pre.truth[group].items():
            other = post.truth[group][name]
            assert {k: v for k, v in net.items() if k != "timecourse"} == {
                k: v for k, v in other.items() if k != "timecourse"
            }
            assert net["timecourse"] != other["timecourse"]  # two sessions: another realisation
    np.testing.assert_array_equal(np.asarray(pre.truth_maps.dataobj), np.asarray(post.truth_maps.dataobj))
    # the default effect does change the post maps
    post1 = make_bold_case(4, "post", effect_size=1.0, **SMALL)
    assert not np.allclose(np.asarray(post1.truth_maps.dataobj), np.asarray(pre.truth_maps.dataobj))
    assert pre.truth["effect"]["applied"] is False and post1.truth["effect"]["applied"] is True


def _features(m: np.ndarray, tc: np.ndarray, x_mm: np.ndarray) -> dict[str, float]:
    """Conventional single-scan summaries of a network map and time course."""
    mm = np.clip(m, 0, None)
    tot = mm.sum()
    f = np.fft.rfftfreq(len(tc), 2.0)
    p = np.abs(np.fft.rfft(tc - tc.mean())) ** 2
    return {
        "peak": m.max(),
        "extent": float((m > 0.3 * m.max()).sum()),
        "total": tot,
        "laterality": (mm[x_mm < 0].sum() - mm[x_mm > 0].sum()) / tot,
        "falff": p[(f > 0.01) & (f < 0.08)].sum() / p[1:].sum(),
        "slow_fast": p[(f > 0.003) & (f < 0.02)].sum() / p[(f > 0.03) & (f < 0.1)].sum(),
        "lag1": np.corrcoef(tc[:-1], tc[1:])[0, 1],
    }


def test_no_single_summary_feature_separates_the_states():
    """Across a cohort, each conventional feature alone separates pre from post poorly,
    while the effect is there: the loading contrast along the effect pattern separates well."""
    affine, shape = atlas.model_grid()
    x_mm = apply_affine(affine, np.argwhere(np.ones(shape, bool)))[:, 0]
    n_patients = 40
    y = np.repeat([[0, 1]], n_patients, axis=0).ravel()
    worst = {}
    for name in ("motor", "language", "temporal"):
        feats, oracle = [], []
        for p in range(n_patients):
            for state in ("pre", "post"):
                net = patient_networks(500 + p, state)[name]
                m = individual_map(net, affine, shape).ravel()
                tc = signals.network_timecourse(_rng(500 + p, 1 if state == "pre" else 2), net.slow_share, 150, 2.0)
                feats.append(_features(m, tc, x_mm))
                oracle.append(float(np.sum(net.effect_pattern * np.log(net.weights))))
        aucs = {}
        for key in feats[0]:
            a = roc_auc_score(y, [f[key] for f in feats])
            aucs[key] = max(a, 1 - a)
        worst[name] = max(aucs.values())
        print(f"\n{name}: single-feature AUCs", {k: round(v, 2) for k, v in aucs.items()})
        assert max(aucs.values()) < 0.85, (name, aucs)
        assert roc_auc_score(y, oracle) > 0.9  # knowing which node is which, the states separate
    assert np.mean(list(worst.values())) < 0.8


def test_motion_off_and_background():
    still = make_bold_case(3, "pre", motion=False, brain_extracted=False, **SMALL)
    assert not np.any(still.truth["motion"]["params"]) and still.truth["motion"]["jerk_volumes"] == []
    data = np.asarray(still.bold.dataobj)
    assert (data[0, 0, 0] > 0).any()  # a brain in air: Rayleigh background
    moving = make_bold_case(3, "pre", **SMALL)
    assert np.abs(np.array(moving.truth["motion"]["params"])).max() > 0.01
    assert np.all(np.asarray(moving.bold.dataobj)[0, 0, 0] == 0)  # brain-extracted


def test_bad_arguments():
    with pytest.raises(ValueError, match="state"):
        make_bold_case(1, "during", **SMALL)
    with pytest.raises(ValueError, match="effect_size"):
        make_bold_case(1, "post", effect_size=-1.0, **SMALL)


def test_cohort_layout_progress_truth_and_reproducibility(tmp_path):
    def run(out):
        gen = write_bold_cohort(out, n_patients=2, seed=3, effect_size=1.0, n_volumes=20, voxel_mm=6.0)
        updates = []
        while True:
            try:
                updates.append(next(gen))
            except StopIteration as stop:
                return updates, stop.value

    updates, paths = run(tmp_path / "a")
    assert all(isinstance(u, Progress) for u in updates) and updates[-1].step == updates[-1].total == 4
    rel = [p.relative_to(tmp_path / "a").as_posix() for p in paths]
    assert rel[-1] == "cohort.json"
    for sub in ("sub-001", "sub-002"):
        for ses in ("ses-pre", "ses-post"):
            for f in ("bold.nii.gz", "truth.json", "truth_maps.nii.gz"):
                assert f"{sub}/{ses}/{f}" in rel
    meta = json.loads((tmp_path / "a" / "cohort.json").read_text())
    assert meta["n_patients"] == 2 and meta["effect_size"] == 1.0 and meta["tr_s"] == 2.0
    truth = load_bold_truth(tmp_path / "a" / "sub-002" / "ses-post")
    assert truth["state"] == "post" and truth["cohort"]["subject"] == "sub-002"
    assert truth["patient_seed"] == meta["subjects"][1]["patient_seed"]
    tm = truth["truth_maps"]
    bold = nib.load(tmp_path / "a" / "sub-002" / "ses-post" / "bold.nii.gz")
    assert tm.shape == (*bold.shape[:3], 5) and bold.shape[3] == 20
    # the stored truth maps are the generator's within the storage step
    again = make_bold_case(truth["patient_seed"], "post", n_volumes=20, voxel_mm=6.0)
    np.testing.assert_allclose(tm.get_fdata(), np.asarray(again.truth_maps.dataobj), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(bold.dataobj), np.asarray(again.bold.dataobj))
    # same arguments, same bytes
    run(tmp_path / "b")
    for r in rel:
        assert (tmp_path / "a" / r).read_bytes() == (tmp_path / "b" / r).read_bytes(), r
    assert not list((tmp_path / "a").rglob(".*"))  # no temporary files left


def test_cohort_bad_input_writes_nothing(tmp_path):
    with pytest.raises(NeuroreviewError, match="at least one patient"):
        next(write_bold_cohort(tmp_path / "c", n_patients=0))
    with pytest.raises(NeuroreviewError, match="effect size"):
        next(write_bold_cohort(tmp_path / "c", effect_size=-0.5))
    assert not (tmp_path / "c").exists()
    with pytest.raises(InputFileError, match="truth.json"):
        load_bold_truth(tmp_path)
