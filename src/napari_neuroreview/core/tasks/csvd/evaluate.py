"""The subtype evaluation the paper did, fixed: develop on two centres, test once on a third.

Protocol (issue 11 item 4): on the development centres, patient-grouped stratified
10-fold cross-validation of every model in the same folds (``core.metrics.cohort``); then
each model is fitted once on all development patients and tested once on the external
centre. Every figure has a patient-bootstrap 95 % CI; the models are compared with the
Boston rule by a paired bootstrap of the difference on the same patients. Weighted
averages hide the small class (CADASIL), so per-class one-vs-rest AUC, macro AUC, balanced
accuracy and the confusion matrix are reported beside them.

Items are :class:`CSVDItem`: a patient's bag (for the MIL models) and the MARS regions and
age (for the baselines), so every model sees the same patients in the same folds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...anatomy.mars import MarsRegion
from ...errors import InsufficientDataError
from ...metrics.cohort import (
    SUMMARY_METRICS, CohortResult, Cohort, CVPredictions, Estimator, as_proba, cross_validate_task,
    evaluate_predictions, paired_bootstrap)
from ...progress import Progress, TaskGenerator, relay
from .bags import Bag, build_bag, make_sites
from .baselines import SUBTYPES, BostonRule, MarsCountLogistic
from .train import MILConfig, MILEstimator

__all__ = ["CSVDEvaluation", "CSVDItem", "REPORTED_METRICS", "default_factories", "evaluate_centres",
           "items_from_patients", "test_once"]

#: The paper's four figures first (weighted AUC, accuracy, weighted precision, weighted F1),
#: then what the weighted ones hide.
REPORTED_METRICS: tuple[str, ...] = (
    "auc_weighted", "accuracy", "precision_weighted", "f1_weighted", "auc_macro", "balanced_accuracy",
    *(f"auc[{c}]" for c in SUBTYPES))
assert set(REPORTED_METRICS[:6]) <= set(SUMMARY_METRICS)


@dataclass(frozen=True, eq=False)
class CSVDItem:
    """One patient as every subtype model reads it."""

    patient: str
    bag: Bag
    regions: tuple[MarsRegion, ...]
    age: float | None = None


class OnBags:
    """A MIL estimator over :class:`CSVDItem` s (it reads their bags)."""

    def __init__(self, estimator: MILEstimator) -> None:
        self.estimator = estimator

    def fit(self, items: Sequence[CSVDItem], labels: np.ndarray) -> TaskGenerator[None]:
        """Train on the items' bags (a task: the harness relays its progress)."""
        yield from self.estimator.fit([i.bag for i in items], labels)

    def predict_proba(self, items: Sequence[CSVDItem]) -> np.ndarray:
        """(n, 3) probabilities in :data:`~.baselines.SUBTYPES` order."""
        return self.estimator.predict_proba([i.bag for i in items])


def default_factories(mil: MILConfig | None = None, device: str = "auto") -> dict[str, Callable[[], Estimator]]:
    """The models of the report, built fresh per fold: attention MIL, mean-pooling MIL, the two baselines."""
    base = mil or MILConfig()
    att = dataclasses.replace(base, pooling="attention")
    mean = dataclasses.replace(base, pooling="mean")
    return {
        "attention MIL": lambda: OnBags(MILEstimator(att, device)),
        "mean-pooling MIL": lambda: OnBags(MILEstimator(mean, device)),
        "Boston v2.0 rule": BostonRule,
        "MARS-count logistic": MarsCountLogistic,
    }


def items_from_patients(patients: Sequence[Any]) -> tuple[list[CSVDItem], list[str], list[str]]:
    """Oracle location-only items from drawn cohort patients (no image): items, labels, centres.

    Why: the phantom's world is MNI space, so a drawn site's position is its MNI position;
    this is the cheapest honest test of "where the microbleeds are" (thousands of patients
    in seconds). Patch embeddings need the rendered scans.
    """
    items, labels, centres = [], [], []
    for k, p in enumerate(patients):
        world = np.array([s.world_ras_mm for s in p.sites], float).reshape(-1, 3)
        sites = make_sites(list(range(1, len(world) + 1)), world, world,
                           np.array([s.diameter_mm for s in p.sites], float))
        name = f"patient-{k:04d}"
        items.append(CSVDItem(name, build_bag(name, sites), tuple(s.region for s in sites), float(p.age)))
        labels.append(p.subtype)
        centres.append(p.centre)
    return items, labels, centres


@dataclass
class CSVDEvaluation:
    """Development CV and external test of each model, and the paired comparisons with the rule."""

    development: dict[str, CohortResult]
    external: dict[str, CohortResult]
    vs_rule: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)
    #: The same external patients seen another way (view name -> model -> result).
    external_views: dict[str, dict[str, CohortResult]] = field(default_factory=dict)

    def table(self) -> str:
        """Plain text: one row per model and metric, development CV beside the external test(s)."""
        heads = ["development CV", "external test", *(f"external: {v}" for v in self.external_views)]
        lines = [f"{'model':<22} {'metric':<20} " + " ".join(f"{h:>22}" for h in heads)]
        for name in self.development:
            for metric in REPORTED_METRICS:
                cells = []
                for res in (self.development[name], self.external.get(name),
                            *(v.get(name) for v in self.external_views.values())):
                    m = res.metrics.get(metric) if res is not None else None
                    cells.append("n/a" if m is None or not np.isfinite(m["value"])
                                 else f"{m['value']:.3f} [{m['low']:.2f}, {m['high']:.2f}]")
                lines.append(f"{name:<22} {metric:<20} " + " ".join(f"{c:>22}" for c in cells))
        return "\n".join(lines)

    def vs_rule_lines(self) -> list[str]:
        """One line per model and setting: its macro-AUC difference from the Boston rule (paired bootstrap)."""
        lines = []
        for name, settings in self.vs_rule.items():
            for setting, d in settings.items():
                if "error" in d:
                    lines.append(f"  {name:<22} {setting:<30} {d['error']}")
                else:
                    lines.append(f"  {name:<22} {setting:<30} {d['difference']:+.3f} "
                                 f"[{d['low']:+.3f}, {d['high']:+.3f}] p={d['p']:.3f}")
        return lines

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: sizes, per model the metrics and confusion of both settings, the comparisons."""
        def res(r: CohortResult) -> dict[str, Any]:
            return {"metrics": r.metrics, "confusion": r.confusion, "counts": r.counts}
        return {"sizes": self.sizes, "classes": list(SUBTYPES),
                "development": {k: res(v) for k, v in self.development.items()},
                "external": {k: res(v) for k, v in self.external.items()}, "vs_rule": self.vs_rule,
                "external_views": {view: {k: res(v) for k, v in by_model.items()}
                                   for view, by_model in self.external_views.items()}}


def test_once(estimator: Estimator, dev: Cohort, ext: Cohort, name: str) -> TaskGenerator[CVPredictions]:
    """Fit ``estimator`` once on every development patient, predict the external ones once."""
    preds = yield from _fit_and_test(estimator, dev, {"external": ext}, name)
    return preds["external"]


def _fit_and_test(estimator: Estimator, dev: Cohort, tests: Mapping[str, Cohort], name: str
                  ) -> TaskGenerator[dict[str, CVPredictions]]:
    """Fit once on every development patient, then predict each test cohort once."""
    fitted = estimator.fit(dev.items, dev.codes)
    if fitted is not None:
        yield from relay(fitted, lambda u: Progress(u.step, u.total, f"{name} on all development patients: {u.message}"))
    out = {}
    for key, ext in tests.items():
        proba = as_proba(estimator.predict_proba(ext.items), len(ext.items), len(SUBTYPES))
        out[key] = CVPredictions(SUBTYPES, ext.labels, ext.groups, proba, np.zeros(len(ext.items), int), [])
    return out


def evaluate_centres(items: Sequence[CSVDItem], labels: Sequence[str], centres: Sequence[str], external: str,
                     factories: Mapping[str, Callable[[], Estimator]] | None = None, n_folds: int = 10,
                     seed: int = 0, n_boot: int = 1000,
                     external_views: Mapping[str, Sequence[CSVDItem]] | None = None) -> TaskGenerator[CSVDEvaluation]:
    """Development CV on every centre but ``external``, then one external test (see the module docstring).

    ``external_views``: the same external patients seen another way, one item per external
    row in the same order (e.g. the detector's microbleeds where ``items`` hold the true
    ones). Each model, fitted once, is tested on each view too, so the views differ only in
    what the models read: the cost of detection errors, on the same patients.
    """
    factories = dict(factories or default_factories())
    centres_arr = np.asarray(centres)
    dev_rows = np.flatnonzero(centres_arr != external)
    ext_rows = np.flatnonzero(centres_arr == external)
    patients = np.array([i.patient for i in items])
    labels_arr = np.asarray(labels)

    def cohort(rows: np.ndarray) -> Cohort:
        return Cohort([items[int(r)] for r in rows], labels_arr[rows], patients[rows], SUBTYPES)

    dev, ext = cohort(dev_rows), cohort(ext_rows)
    views = {}
    for view, view_items in (external_views or {}).items():
        if len(view_items) != len(ext_rows):
            raise ValueError(f"external view {view!r} has {len(view_items)} patients, the external centre "
                             f"{len(ext_rows)}: a view must hold the same patients in the same order")
        views[view] = Cohort(list(view_items), ext.labels, ext.groups, SUBTYPES)
    yield Progress(0, 3, f"Cross-validation on {len(dev_rows)} development patients")
    cv = yield from relay(cross_validate_task(dev, factories, n_folds, seed),
                          lambda u: Progress(u.step, u.total, f"Development CV: {u.message}"))
    development = {k: evaluate_predictions(p, n_boot, seed, metrics=REPORTED_METRICS) for k, p in cv.items()}
    yield Progress(1, 3, f"External test on {len(ext_rows)} patients")
    outside: dict[str, CVPredictions] = {}
    in_views: dict[str, dict[str, CVPredictions]] = {view: {} for view in views}
    for name, factory in factories.items():
        preds = yield from _fit_and_test(factory(), dev, {"external": ext, **views}, name)
        outside[name] = preds["external"]
        for view in views:
            in_views[view][name] = preds[view]
    external_res = {k: evaluate_predictions(p, n_boot, seed, metrics=REPORTED_METRICS) for k, p in outside.items()}
    view_res = {view: {k: evaluate_predictions(p, n_boot, seed, metrics=REPORTED_METRICS) for k, p in by.items()}
                for view, by in in_views.items()}
    yield Progress(2, 3, "Paired comparisons with the Boston rule")
    rule = "Boston v2.0 rule"
    vs_rule: dict[str, dict[str, dict[str, Any]]] = {}
    if rule in factories:
        for name in factories:
            if name == rule:
                continue
            vs_rule[name] = {}
            settings = [("development", cv), ("external", outside), *((f"external: {v}", p) for v, p in in_views.items())]
            for setting, preds in settings:
                a, b = preds[name], preds[rule]
                try:
                    vs_rule[name][setting] = paired_bootstrap("auc_macro", a.labels, a.proba, b.proba, a.groups,
                                                              classes=SUBTYPES, n_boot=n_boot, seed=seed)
                except InsufficientDataError as exc:  # e.g. a class absent from a small external set
                    vs_rule[name][setting] = {"metric": "auc_macro", "error": str(exc)}
    sizes = {"development_patients": int(len(dev_rows)), "external_patients": int(len(ext_rows)),
             "external_centre": external, "n_folds": n_folds,
             "per_class_development": {c: int((dev.labels == c).sum()) for c in SUBTYPES},
             "per_class_external": {c: int((ext.labels == c).sum()) for c in SUBTYPES}}
    yield Progress(3, 3, "Done")
    return CSVDEvaluation(development, external_res, vs_rule, sizes, view_res)
