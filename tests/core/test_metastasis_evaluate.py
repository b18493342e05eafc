"""The origin evaluation (core.tasks.metastasis.{evaluate,baselines}): no patient on both sides of
any split (outer and inner), the external site never fitted on or chosen with, patient-level rows
one per patient, each node's AUC on its own lesions only, the ADC rule's threshold fitted inside the
fold, the nested pick reported per outer fold, and a signal in one sequence making its ablation row
win. Crops are small synthetic arrays with a class-dependent signal; the radiomics baseline trains
in milliseconds."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from napari_neuroreview.core.errors import InsufficientDataError
from napari_neuroreview.core.io.strict_json import dumps, loads
from napari_neuroreview.core.metrics.classification import youden_threshold
from napari_neuroreview.core.metrics.cohort import CVPredictions
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.metastasis.baselines import (
    ADCRatioRule, RadiomicsLogistic, adc_ratio, feature_names, radiomics_features, shape_features)
from napari_neuroreview.core.tasks.metastasis.classes import NODES, ORIGINS, SEQUENCES
from napari_neuroreview.core.tasks.metastasis.crops import CropSpec, LesionCrop, crop_grid
from napari_neuroreview.core.tasks.metastasis.evaluate import (
    LesionItem, OnCrops, ablation_label, evaluate_sites, hierarchy_result, nodes_from_four_class, patient_level)

SPEC = CropSpec(24.0, 12)
_GRID = np.mgrid[:12, :12, :12] - 5.5
_BALL = (_GRID ** 2).sum(axis=0) <= 3.2 ** 2
#: The signal's level per origin: one scalar orders all four, so every node is separable by it.
_LEVEL = {"SCLC": 0.0, "NSCLC": 1.0, "breast": 2.0, "GI": 3.0}


def _crop(rng: np.random.Generator, origin: str, signal: str | None, strength: float, adc: bool,
          mask: np.ndarray = _BALL) -> LesionCrop:
    image = rng.normal(1.0, 0.1, (len(SEQUENCES), 12, 12, 12)).astype(np.float32)
    image[SEQUENCES.index("ce_t1")][mask] += 0.8  # enhancing, whatever the origin
    if signal is not None:
        image[SEQUENCES.index(signal)][mask] += strength * (_LEVEL[origin] + rng.normal(0, 0.6))
    if adc:  # lower ADC ratio in SCLC, overlapping
        image[SEQUENCES.index("adc")][mask] += (-0.4 if origin == "SCLC" else 0.0) + rng.normal(0, 0.2)
    return LesionCrop(image, mask, None, 1, (0.0, 0.0, 0.0), float(mask.sum()) * 8.0, SEQUENCES,
                      crop_grid((0, 0, 0), SPEC), SPEC)


def _cohort(seed: int = 0, per_site: tuple[int, int, int] = (16, 16, 12), signal: str | None = "flair",
            strength: float = 0.5, adc: bool = True) -> tuple[list[LesionItem], list[str]]:
    """Patients of sites A, B (development) and C (external), balanced origins, 1-3 lesions each."""
    rng = np.random.default_rng(seed)
    items, origins = [], []
    for site, n in zip("ABC", per_site):
        for k in range(n):
            origin = ORIGINS[k % len(ORIGINS)]
            for _ in range(int(rng.integers(1, 4))):
                items.append(LesionItem(_crop(rng, origin, signal, strength, adc), f"{site}-{k:03d}", site))
                origins.append(origin)
    return items, origins


def _run(items, origins, **kw):
    kw = {"n_folds": 3, "n_boot": 20, "inner_folds": 2, **kw}
    return run_to_completion(evaluate_sites(items, origins, **kw))


class Spy(OnCrops):
    """Records the patients of every fit (the test's view of what the protocol trained on)."""

    seen: ClassVar[list[set[str]]] = []

    def fit(self, items, labels):
        Spy.seen.append({i.patient for i in items})
        yield from super().fit(items, labels)


@pytest.fixture(scope="module")
def spied():
    items, origins = _cohort()
    Spy.seen = []
    candidates = {"noise (T1)": lambda: Spy(RadiomicsLogistic(("t1",))),
                  "signal (FLAIR)": lambda: Spy(RadiomicsLogistic(("flair",)))}
    # five resamples: these tests read the splits, picks and counts, never a CI (20 were 60 % of the fixture)
    result = _run(items, origins, factories={"radiomics": lambda: Spy(RadiomicsLogistic())}, candidates=candidates,
                  ablation=lambda seqs: Spy(RadiomicsLogistic(seqs)), n_boot=5)
    return items, origins, result, list(Spy.seen)


def test_no_patient_on_both_sides_and_external_never_fitted_or_chosen(spied):
    items, _, result, seen = spied
    external = {i.patient for i in items if i.site == "C"}
    development = {i.patient for i in items if i.site != "C"}
    assert seen and all(not (s & external) for s in seen)  # every fit: outer, inner, refits, ablation rows
    assert len(result.folds) == 3
    for fold in result.folds:
        train, test = set(fold["train_patients"]), set(fold["test_patients"])
        assert not train & test and train | test == development
        inner = fold["nested"]["nested choice"]["inner_folds"]
        assert len(inner) == 2
        for record in inner:  # the inner CV splits the outer training patients only, by patient
            i_train, i_test = set(record["train_patients"]), set(record["test_patients"])
            assert not i_train & i_test and i_train | i_test == train
    ext = result.results["radiomics"]["external"]["lesion"].leaves.counts
    assert ext["rows"] == sum(i.site == "C" for i in items) and result.sizes["external_patients"] == len(external)


def test_nested_pick_reported_per_outer_fold(spied):
    _, _, result, _ = spied
    picks = result.picks["nested choice"]
    assert picks["folds"] == ["signal (FLAIR)"] * 3 and picks["external"] == "signal (FLAIR)"
    assert [f["nested"]["nested choice"]["picked"] for f in result.folds] == picks["folds"]
    scores = result.folds[0]["nested"]["nested choice"]["inner_scores"]
    assert scores["signal (FLAIR)"] > scores["noise (T1)"]
    text = result.table()
    assert "outer folds picked ['signal (FLAIR)'" in text
    back = loads(dumps(result.to_json()))
    assert back["picks"]["nested choice"]["folds"] == picks["folds"]
    assert set(back["ablation"]) == {ablation_label(s) for s in
                                     [(s,) for s in ("t1", "t2", "flair", "dwi", "ce_t1")]} | {
        "T1+FLAIR+DWI", "CE-T1+DWI", "CE-T1+T2+DWI", "all five"}


def test_patient_level_counts_each_patient_once(spied):
    items, _, result, _ = spied
    dev = [i for i in items if i.site != "C"]
    res = result.results["radiomics"]["development"]
    assert res["lesion"].leaves.counts["rows"] == len(dev)
    assert res["patient"].leaves.counts["rows"] == res["patient"].leaves.counts["patients"] == len(
        {i.patient for i in dev})
    # the mean of the lesions' probabilities, one row per patient whatever its lesion count
    p = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.4, 0.4, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    pred = CVPredictions(ORIGINS, np.array(["SCLC", "SCLC", "SCLC", "GI"]), np.array(["p1", "p1", "p1", "p2"]),
                         p, np.array([0, 0, 0, 1]), [])
    agg = patient_level(pred)
    assert agg.groups.tolist() == ["p1", "p2"] and agg.labels.tolist() == ["SCLC", "GI"]
    np.testing.assert_allclose(agg.proba[0], p[:3].mean(axis=0))
    assert agg.fold.tolist() == [0, 1]
    with pytest.raises(ValueError, match="different origins"):
        patient_level(CVPredictions(ORIGINS, np.array(["SCLC", "GI"]), np.array(["p", "p"]), p[:2],
                                    np.zeros(2, int), []))


def test_node_auc_counts_only_its_own_lesions():
    rng = np.random.default_rng(1)
    origins = np.array(["SCLC", "NSCLC", "breast", "GI"] * 10)
    nodes = np.column_stack([np.where(np.isin(origins, ("SCLC", "NSCLC")), 0.6, 0.4),
                             np.where(origins == "SCLC", 0.6, 0.4), np.where(origins == "breast", 0.6, 0.4)])
    # non-lung lesions get a high P(SCLC | lung): counted as "NSCLC" negatives they would spoil the node
    nodes[~np.isin(origins, ("SCLC", "NSCLC")), 1] = rng.uniform(0.7, 0.9, 20)
    from napari_neuroreview.core.tasks.metastasis.classes import four_class
    p4 = four_class(nodes)
    np.testing.assert_allclose(nodes_from_four_class(p4), nodes)
    pred = CVPredictions(ORIGINS, origins, np.array([f"p{k}" for k in range(40)]), p4, np.zeros(40, int), [])
    res = hierarchy_result(pred, n_boot=20, seed=0)
    assert res.nodes["sclc_vs_nsclc"].counts["rows"] == 20 and res.nodes["breast_vs_gi"].counts["rows"] == 20
    assert res.nodes["lung_vs_non_lung"].counts["rows"] == 40
    for node in NODES:
        assert res.nodes[node].metrics["auc"]["value"] == 1.0


class SpyRule(ADCRatioRule):
    fits: ClassVar[list[tuple[set[int], float]]] = []

    def fit(self, crops, labels):
        super().fit(crops, labels)
        SpyRule.fits.append(({id(c) for c in crops}, self.threshold))


def test_adc_rule_threshold_fitted_inside_the_fold():
    items, origins = _cohort(seed=2, signal=None)
    SpyRule.fits = []
    result = _run(items, origins, candidates={}, adc_rule=SpyRule)
    by_id = {id(i.crop): (i.patient, o) for i, o in zip(items, origins)}
    assert len(SpyRule.fits) == 3 + 1  # one per outer fold, then once on all development patients
    for (crops, threshold), fold in zip(SpyRule.fits, result.folds):
        train = set(fold["train_patients"])
        expected = {id(i.crop) for i, o in zip(items, origins) if i.patient in train and o in ("SCLC", "NSCLC")}
        assert crops == expected  # the training lung lesions of this fold, nothing else
        ratios = [adc_ratio(i.crop) for i in items if id(i.crop) in crops]
        sclc = [by_id[c][1] == "SCLC" for c in map(id, (i.crop for i in items)) if c in crops]
        assert threshold == youden_threshold(sclc, -np.array(ratios))
    all_dev = {id(i.crop) for i, o in zip(items, origins) if i.site != "C" and o in ("SCLC", "NSCLC")}
    assert SpyRule.fits[-1][0] == all_dev
    assert len({t for _, t in SpyRule.fits}) > 1
    rule = result.adc_rule["development"]["lesion"]
    assert rule.counts["rows"] == len(all_dev) and rule.metrics["auc"]["value"] > 0.75
    assert set(result.vs_adc_rule["radiomics logistic"]) == {"development", "external"}
    assert "ADC-ratio rule" in result.table()


def test_adc_rule_direction_and_call():
    rng = np.random.default_rng(3)
    crops = [_crop(rng, o, None, 0.0, adc=True) for o in ["SCLC", "NSCLC"] * 15]
    labels = np.array([1, 0] * 15)
    rule = ADCRatioRule()
    rule.fit(crops, labels)
    assert rule.sign == -1.0
    p = rule.predict_proba(crops)
    assert p[labels == 1].mean() > 0.5 > p[labels == 0].mean()
    flipped = ADCRatioRule()
    flipped.fit(crops, 1 - labels)  # this cohort says the opposite: the rule follows it
    assert flipped.sign == 1.0


def test_signal_in_one_sequence_makes_its_ablation_row_win():
    items, origins = _cohort(seed=4, signal="t2", strength=0.5, adc=False)
    result = _run(items, origins, candidates={}, adc_rule=None)
    singles = {ablation_label((s,)): result.ablation[ablation_label((s,))]
               for s in ("t1", "t2", "flair", "dwi", "ce_t1")}
    score = {k: np.mean([v["development"]["lesion"][n].metrics["auc"]["value"] for n in NODES])
             for k, v in singles.items()}
    assert max(score, key=score.get) == "T2", score
    assert score["T2"] > 0.8 and all(v < 0.7 for k, v in score.items() if k != "T2")
    assert result.adc_rule == {}
    assert "CE-T1+T2+DWI" in result.table() and "all five" in result.table()


def test_radiomics_features_and_no_external_site():
    rng = np.random.default_rng(5)
    crop = _crop(rng, "GI", "flair", 1.0, adc=True)
    x = radiomics_features(crop, ("flair", "t2"))
    assert x.shape == (len(feature_names(("flair", "t2"))),) == (2 * 10 + 2,)
    assert np.isfinite(x).all()
    slab = np.zeros((12, 12, 12), bool)
    slab[1:11, 5, 5] = True  # a rod: less spherical than the ball
    assert shape_features(_crop(rng, "GI", None, 0, False, mask=slab))[1] < shape_features(crop)[1]
    items, origins = _cohort(per_site=(8, 8, 0))
    with pytest.raises(InsufficientDataError, match="external site 'C'"):
        _run(items, origins)


def test_a_network_runs_through_the_same_protocol():
    from napari_neuroreview.core.tasks.metastasis.train import MetastasisConfig, MetastasisEstimator

    items, origins = _cohort(seed=6, per_site=(8, 8, 4))
    config = MetastasisConfig(width=4, epochs=1, batch=8, sequences=("flair", "ce_t1"), augment=False)
    fitted: list[MetastasisEstimator] = []

    def network() -> OnCrops:  # the crops hold all six sequences; the network reads its two
        fitted.append(MetastasisEstimator(config, "cpu", "four_class"))
        return OnCrops(fitted[-1], config.sequences)

    result = _run(items, origins, factories={"resnet6": network}, candidates={}, adc_rule=None)
    assert len(fitted) == 3 + 1 and all(f.net is not None for f in fitted)  # one per fold, then the external test
    res = result.results["resnet6"]["external"]["patient"]
    assert res.leaves.counts["patients"] == 4 and set(res.nodes) == set(NODES)


def test_nested_choice_too_few_patients_is_one_sentence_naming_the_origin():
    items, origins = _cohort(seed=7, per_site=(8, 8, 4))
    gi = sorted({i.patient for i, o in zip(items, origins) if o == "GI" and i.site != "C"})
    keep = [k for k, (i, o) in enumerate(zip(items, origins)) if o != "GI" or i.site == "C" or i.patient in gi[:2]]
    items, origins = [items[k] for k in keep], [origins[k] for k in keep]
    with pytest.raises(InsufficientDataError, match="class 'GI' has 1 patient"):
        _run(items, origins, candidates={"flair": lambda: OnCrops(RadiomicsLogistic(("flair",)))})


def test_the_models_fitted_once_are_handed_back_and_patients_counted_per_origin(spied):
    """``fitted``: the estimators tested on the external site (what a benchmark explains or saves), not in the JSON."""
    items, origins, result, _ = spied
    assert {"radiomics", "nested choice"} <= set(result.fitted)
    ext = [i for i in items if i.site == "C"]
    est = result.fitted["radiomics"]
    assert est.predict_proba(ext).shape == (len(ext), len(ORIGINS))
    assert "fitted" not in result.to_json()
    dev_patients = {o: {i.patient for i, oo in zip(items, origins) if i.site != "C" and oo == o} for o in ORIGINS}
    assert result.sizes["patients_per_origin_development"] == {o: len(p) for o, p in dev_patients.items()}
    assert "external, patient level (rows true" in result.table()
