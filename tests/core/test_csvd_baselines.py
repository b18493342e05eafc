"""The subtype baselines: MARS counts, the Boston v2.0 rule with its else branch, the count regression."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from napari_neuroreview.core.anatomy.mars import REGION_CLASS, MarsRegion
from napari_neuroreview.core.metrics.cohort import Cohort, cross_validate, evaluate_predictions
from napari_neuroreview.core.tasks.csvd.baselines import (
    SUBTYPES, BostonRule, MarsCountLogistic, boston_v2, count_features, mars_counts)


def region(name: str, side: str = "left") -> MarsRegion:
    return MarsRegion(region=name, mars_class=REGION_CLASS[name], side=side)


@dataclass
class Patient:
    regions: list[MarsRegion]
    age: float | None


@pytest.mark.parametrize(("names", "age", "css", "expected"), [
    (["temporal", "occipital"], 72, 0, "CAA"),  # two strictly lobar, old enough
    (["temporal", "occipital", "thalamus"], 72, 0, "aSVD"),  # a deep bleed excludes CAA
    (["temporal", "occipital", "brainstem"], 72, 0, "aSVD"),
    (["temporal", "occipital", "cerebellum"], 72, 0, "CAA"),  # cerebellum: neither lobar nor deep in v2.0
    (["frontal"], 72, 0, "aSVD"),  # one lobar lesion is not enough ...
    (["frontal"], 72, 1, "CAA"),  # ... unless a siderosis focus adds the second
    (["temporal", "parietal", "frontal"], 45, 0, "CADASIL"),  # under 50: never probable CAA; young: CADASIL
    ([], 40, 0, "CADASIL"),
    ([], 70, 0, "aSVD"),
    (["temporal", "occipital"], None, 0, "CAA"),  # unknown age: the lesions decide
])
def test_boston_v2_rule_and_its_else_branch(names, age, css, expected):
    assert boston_v2([region(n) for n in names], age, css_foci=css) == expected


def test_mars_counts_per_class_region_and_side():
    regions = [region("temporal", "left"), region("temporal", "right"), region("thalamus", "right"),
               region("cerebellum", "left"), MarsRegion("outside", "outside", "left")]
    counts = mars_counts(regions)
    assert (counts["lobar"], counts["deep"], counts["infratentorial"]) == (2, 1, 1)
    assert counts["regions"] == {"temporal": 2, "thalamus": 1, "cerebellum": 1, "outside": 1}
    assert counts["sides"]["lobar_left"] == 1 and counts["sides"]["deep_right"] == 1
    assert counts["sides"]["infratentorial_left"] == 1 and sum(counts["sides"].values()) == 4


def _cohort(n: int, seed: int) -> Cohort:
    """Class decided by where the bleeds are (the regression must find it; the rule mostly does)."""
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for i in range(n):
        k = i % 3
        if k == 0:  # aSVD: deep and some lobar
            names = ["basal_ganglia"] * int(rng.integers(1, 6)) + ["frontal"] * int(rng.integers(0, 3))
            age = rng.uniform(60, 85)
        elif k == 1:  # CAA: strictly lobar
            names = list(rng.choice(["temporal", "occipital", "parietal"], size=int(rng.integers(2, 12))))
            age = rng.uniform(60, 90)
        else:  # CADASIL: thalamus and temporal, young
            names = ["thalamus"] * int(rng.integers(0, 4)) + ["temporal"] * int(rng.integers(0, 4))
            age = rng.uniform(35, 55)
        items.append(Patient([region(str(nm), side=str(rng.choice(["left", "right"]))) for nm in names], float(age)))
        labels.append(SUBTYPES[k])
    return Cohort(items=items, labels=labels, groups=np.arange(n), classes=SUBTYPES)


def test_count_regression_learns_where_the_bleeds_are_inside_patient_folds():
    cohort = _cohort(90, seed=1)
    pred = cross_validate(cohort, MarsCountLogistic, n_folds=5, seed=0)
    result = evaluate_predictions(pred, n_boot=50)
    assert result.metrics["auc_macro"]["value"] > 0.8


def test_boston_rule_runs_in_the_harness_and_calls_caa_on_strictly_lobar():
    cohort = _cohort(30, seed=2)
    proba = BostonRule().predict_proba(cohort.items)
    assert proba.shape == (30, 3) and np.allclose(proba.sum(axis=1), 1.0)
    caa = [i for i, y in enumerate(cohort.labels) if y == "CAA"]
    assert (proba[caa, SUBTYPES.index("CAA")] == 1).all()
    pred = cross_validate(cohort, BostonRule, n_folds=3, seed=0)
    assert evaluate_predictions(pred, n_boot=20).metrics["auc_macro"]["value"] > 0.7


def test_count_regression_keeps_column_order_when_a_class_is_missing_in_training():
    cohort = _cohort(12, seed=3)
    keep = [i for i, y in enumerate(cohort.labels) if y != "CAA"]
    model = MarsCountLogistic()
    model.fit([cohort.items[i] for i in keep], np.array([SUBTYPES.index(cohort.labels[i]) for i in keep]))
    proba = model.predict_proba(cohort.items)
    assert proba.shape == (12, 3) and np.all(proba[:, SUBTYPES.index("CAA")] == 0)
    assert count_features(cohort.items[0]).shape == count_features(Patient([], 50.0)).shape
