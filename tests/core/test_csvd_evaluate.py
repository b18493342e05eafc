"""The subtype evaluation: development CV on two centres, one external test on the third."""

from __future__ import annotations

import numpy as np

from napari_neuroreview.core.phantoms.csvd import csvd_patients
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.csvd.baselines import SUBTYPES, BostonRule
from napari_neuroreview.core.tasks.csvd.evaluate import (
    REPORTED_METRICS, default_factories, evaluate_centres, items_from_patients)
from napari_neuroreview.core.tasks.csvd.train import MILConfig


class Spy:
    """Records which patients each instance was fitted on and asked about (and answers the rule's call)."""

    log: list[tuple[str, list[str]]] = []

    def __init__(self) -> None:
        self.rule = BostonRule()

    def fit(self, items, labels):
        Spy.log.append(("fit", [i.patient for i in items]))

    def predict_proba(self, items):
        Spy.log.append(("predict", [i.patient for i in items]))
        return self.rule.predict_proba(items)


def _items(n_dev: int, n_ext: int):
    patients = csvd_patients(n_dev, 5, centres=("A", "B")) + csvd_patients(n_ext, 6, centres=("C",))
    items, labels, centres = items_from_patients(patients)
    items = [type(i)(f"p{k}", i.bag, i.regions, i.age) for k, i in enumerate(items)]  # unique ids across draws
    return items, labels, centres


def test_external_patients_are_never_fitted_on_and_tested_once():
    items, labels, centres = _items(30, 30)
    external = {i.patient for i, c in zip(items, centres) if c == "C"}
    Spy.log = []
    result = run_to_completion(evaluate_centres(items, labels, centres, "C", {"spy": Spy, "Boston v2.0 rule": BostonRule},
                                                n_folds=3, n_boot=20))
    fits = [set(p) for kind, p in Spy.log if kind == "fit"]
    asked = [set(p) for kind, p in Spy.log if kind == "predict"]
    assert len(fits) == 4 and all(not (f & external) for f in fits)  # 3 folds + the final fit: no external patient
    assert asked[-1] == external and all(not (a & external) for a in asked[:-1])
    assert result.sizes["external_patients"] == 30 and result.sizes["development_patients"] == 30
    assert sum(map(sum, result.external["spy"].confusion)) == 30
    # the spy IS the rule, so the paired difference is exactly zero
    assert result.vs_rule["spy"]["external"]["difference"] == 0.0


def test_every_reported_metric_for_every_model_in_both_settings():
    items, labels, centres = _items(45, 30)
    factories = default_factories(MILConfig(epochs=2, embed=16, attention=8), device="cpu")
    result = run_to_completion(evaluate_centres(items, labels, centres, "C", factories, n_folds=3, n_boot=20))
    assert set(result.development) == set(result.external) == set(factories)
    for setting in (result.development, result.external):
        for res in setting.values():
            assert tuple(res.metrics) == REPORTED_METRICS and res.classes == SUBTYPES
    assert set(result.vs_rule) == set(factories) - {"Boston v2.0 rule"}
    doc = result.to_json()
    assert doc["sizes"]["per_class_external"] == {c: labels[-30:].count(c) for c in SUBTYPES}
    assert "external test" in result.table().splitlines()[0]
    assert np.isfinite(result.external["Boston v2.0 rule"].metrics["accuracy"]["value"])


def test_external_views_are_the_same_patients_read_another_way():
    """A view (e.g. the detector's microbleeds) is tested by the models fitted once, on the same patients."""
    import dataclasses

    import pytest

    from napari_neuroreview.core.tasks.csvd.bags import build_bag

    items, labels, centres = _items(30, 30)
    ext = [i for i, c in zip(items, centres) if c == "C"]
    seen = [dataclasses.replace(i, patient=f"seen-{i.patient}") for i in ext]  # the same bags, read again
    # a detector that found nothing: every external bag empty
    blind = [dataclasses.replace(i, patient=f"blind-{i.patient}", bag=build_bag(i.patient, []), regions=())
             for i in ext]
    Spy.log = []
    result = run_to_completion(evaluate_centres(items, labels, centres, "C", {"spy": Spy, "Boston v2.0 rule": BostonRule},
                                                n_folds=3, n_boot=20, external_views={"same": seen, "blind": blind}))
    assert len([k for k, _ in Spy.log if k == "fit"]) == 4  # still fitted once after the folds
    asked = [set(p) for kind, p in Spy.log if kind == "predict"][-3:]
    assert asked == [{i.patient for i in ext}, {i.patient for i in seen}, {i.patient for i in blind}]
    same, blind_res = result.external_views["same"]["spy"], result.external_views["blind"]["spy"]
    assert same.metrics == result.external["spy"].metrics and same.confusion == result.external["spy"].confusion
    # no microbleed anywhere: the rule says aSVD/CADASIL's else branch for everyone, never CAA
    assert [row[1] for row in blind_res.confusion] == [0, 0, 0]
    assert result.vs_rule["spy"]["external: blind"]["difference"] == 0.0
    assert "external: blind" in result.table().splitlines()[0]
    assert set(result.to_json()["external_views"]) == {"same", "blind"}
    with pytest.raises(ValueError, match="same patients"):
        run_to_completion(evaluate_centres(items, labels, centres, "C", {"spy": Spy}, n_folds=3, n_boot=20,
                                           external_views={"short": seen[:-1]}))
