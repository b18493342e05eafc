"""The origin evaluation the paper did, fixed: patient-grouped nested CV, one external site, patients too.

Protocol (issue 12 item 5). Jiao et al. (JMRI 2023) split by lesion, so at least 66 of
their 214 patients had lesions on both sides. Here:

* **Development CV** on every site but ``external``: patient-grouped folds stratified by
  origin (``core.metrics.cohort.cross_validate_task``: every model, baseline and ablation
  row in the same folds), then each model fitted once on all development patients and
  tested once on the external site, which is never used for fitting or choosing.
* **Nested choice** (:class:`NestedSelection`): the model and sequence combination are
  chosen by an inner patient-grouped CV on each outer training fold (best inner macro
  AUC of the four origins); the outer fold tests the pick, and each fold's pick is
  reported. For the external test the choice is made once on all development patients.
* **Metrics** (``core.metrics.hierarchy.evaluate_hierarchy``): each node's AUC on its own
  lesions only (SCLC vs NSCLC on lung lesions, breast vs GI on the others), the
  four-class macro AUC, balanced accuracy and confusion matrix, each with a patient-
  bootstrap 95 % CI, at two levels: **lesion** (every lesion a row, the bootstrap draws
  patients) and **patient** (:func:`patient_level`: a patient's lesions aggregated by the
  mean of their four-class probabilities, one row per patient).
* **Baselines in the same folds**: the radiomics logistic regression and the ADC-ratio
  rule (``baselines``), the rule on lung lesions only, compared with each model's SCLC
  node by a paired bootstrap on the same lesions.
* **Sequence ablation** laid out like the paper's table (:data:`ABLATION`): rows are the
  sequence combinations, columns the three node AUCs at lesion and patient level.

Why ``core.metrics.hierarchy`` evaluates but does not fit here: its
``cross_validate_hierarchy`` fits one estimator per node in its own folds, while the
origin network is one model with three outputs, and the nested choice and baselines must
share the folds; so the models predict four-class probabilities in ``cross_validate_task``
and the node probabilities are read back from them (:func:`nodes_from_four_class`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import InsufficientDataError
from ...metrics.cohort import (
    Cohort, CohortResult, CVPredictions, Estimator, as_proba, cross_validate_task, evaluate_predictions,
    metric_function, paired_bootstrap, patient_folds)
from ...metrics.hierarchy import HierarchyPredictions, HierarchyResult, Node, evaluate_hierarchy
from ...progress import Progress, TaskGenerator, relay
from .baselines import ADCRatioRule, RadiomicsLogistic
from .classes import LUNG, NODES, ORIGINS
from .crops import LesionCrop
from .train import PAPER_SEQUENCES

__all__ = ["ABLATION", "LUNG_CLASSES", "PAPER", "TREE", "LesionItem", "MetastasisEvaluation", "NestedSelection",
           "OnCrops", "ablation_label", "default_candidates", "default_factories", "evaluate_sites",
           "hierarchy_result", "lesions_with_inside", "node_aucs", "nodes_from_four_class", "patient_level"]

#: The hierarchy as ``core.metrics.hierarchy`` reads it; each node's positive branch is the
#: first-named side of :data:`~.classes.NODES` (P(lung), P(SCLC | lung), P(breast | non-lung)).
TREE = Node(NODES[0], negative=Node(NODES[2], negative="GI", positive="breast"),
            positive=Node(NODES[1], negative="NSCLC", positive="SCLC"))
#: The ADC rule's classes (column 1 = SCLC).
LUNG_CLASSES: tuple[str, ...] = ("NSCLC", "SCLC")
#: The paper's sequence combinations: single sequences, T1+FLAIR+DWI, CE-T1+DWI, CE-T1+T2+DWI, all five.
ABLATION: tuple[tuple[str, ...], ...] = (
    *((s,) for s in PAPER_SEQUENCES), ("t1", "flair", "dwi"), ("ce_t1", "dwi"), ("ce_t1", "t2", "dwi"), PAPER_SEQUENCES)
#: The paper's figures (Jiao et al. 2023, as issue 12 quotes them): node AUCs over all its
#: models and sequences. ../shared/REFERENCES.md gives no per-row figures, so the table
#: prints these ranges beside it; the peers' radiomics range is REFERENCES.md's.
PAPER: dict[str, str] = {
    "test (lesion split)": "AUC 0.675-0.876",
    "independent test": "AUC 0.684-0.800",
    "peers' radiomics": "AUC 0.73-0.95 pairwise; SCLC vs NSCLC ~0.76-0.80",
}
_NAMES = {"t1": "T1", "t2": "T2", "flair": "FLAIR", "dwi": "DWI", "adc": "ADC", "ce_t1": "CE-T1"}
_LEVELS = ("lesion", "patient")
_SETTINGS = ("development", "external")
_SHORT = {"lung_vs_non_lung": "lung/non-lung", "sclc_vs_nsclc": "SCLC/NSCLC", "breast_vs_gi": "breast/GI"}
#: Columns of the model table: node AUCs, then the four-class figures.
_MODEL_METRICS = (*(f"node {n}" for n in NODES), "auc_macro", "balanced_accuracy")


def ablation_label(sequences: Sequence[str]) -> str:
    """A row's name as the paper writes it ("CE-T1+T2+DWI"; the paper's five: "all five")."""
    return "all five" if tuple(sequences) == PAPER_SEQUENCES else "+".join(_NAMES[s] for s in sequences)


@dataclass(frozen=True, eq=False)
class LesionItem:
    """One lesion as every origin model reads it: its crop, its patient and its site."""

    crop: LesionCrop
    patient: str
    site: str


class OnCrops:
    """An estimator over LesionCrops, handed :class:`LesionItem` s (their crops; some channels only).

    ``sequences`` narrows each crop to those channels, in that order (an ablation row of a
    network whose crops hold every sequence).
    """

    def __init__(self, estimator: Any, sequences: Sequence[str] | None = None) -> None:
        self.estimator = estimator
        self.sequences = None if sequences is None else tuple(sequences)

    def _crops(self, items: Sequence[LesionItem]) -> list[LesionCrop]:
        if self.sequences is None:
            return [i.crop for i in items]
        out = []
        for item in items:
            c = item.crop
            missing = [s for s in self.sequences if s not in c.sequences]
            if missing:  # the caller's wiring: the crops are cut with every sequence of the ablation
                raise ValueError(f"crop of lesion {c.lesion_id} holds {c.sequences}, not {missing}")
            idx = [c.sequences.index(s) for s in self.sequences]
            out.append(dataclasses.replace(c, image=c.image[idx], sequences=self.sequences))
        return out

    def fit(self, items: Sequence[LesionItem], labels: np.ndarray) -> TaskGenerator[None]:
        """Fit the estimator on the items' crops (relaying its progress when its fit is a task)."""
        out = self.estimator.fit(self._crops(items), labels)
        if inspect.isgenerator(out):
            yield from out

    def predict_proba(self, items: Sequence[LesionItem]) -> np.ndarray:
        return self.estimator.predict_proba(self._crops(items))


def default_factories() -> dict[str, Callable[[], Estimator]]:
    """The report's models when the caller names none: the radiomics baseline on the paper's five sequences."""
    return {"radiomics logistic": lambda: OnCrops(RadiomicsLogistic(PAPER_SEQUENCES))}


def default_candidates() -> dict[str, Callable[[], Estimator]]:
    """What the nested CV chooses among by default: the radiomics baseline on each ablation row."""
    return {ablation_label(seqs): (lambda seqs=seqs: OnCrops(RadiomicsLogistic(seqs))) for seqs in ABLATION}


def _origin_cohort(items: Sequence[LesionItem], codes: np.ndarray) -> Cohort:
    """The cohort of items whose labels are ORIGINS indices (what ``fit`` is handed); named, for its messages."""
    return Cohort(list(items), np.asarray(ORIGINS)[np.asarray(codes, int)], [i.patient for i in items], ORIGINS)


class NestedSelection:
    """Choose among candidate factories by an inner patient-grouped CV, then fit the pick on every row given.

    ``fit`` runs ``cross_validate_task`` over the candidates on its own items only (the
    outer training fold), scores each by its pooled inner macro AUC of the four origins,
    keeps the best (the first on a tie) and fits a fresh one of it on all its items.
    ``picked``, ``inner_scores`` and ``inner_folds`` (patients per inner fold) say what it did.
    """

    def __init__(self, candidates: Mapping[str, Callable[[], Estimator]], n_folds: int = 3, seed: int = 0) -> None:
        if not candidates:  # set by code
            raise ValueError("NestedSelection needs at least one candidate")
        self.candidates, self.n_folds, self.seed = dict(candidates), n_folds, seed
        self.picked: str | None = None
        self.inner_scores: dict[str, float] = {}
        self.inner_folds: list[dict[str, Any]] = []
        self.model: Estimator | None = None

    def fit(self, items: Sequence[LesionItem], labels: np.ndarray) -> TaskGenerator[None]:
        """Inner CV, pick, refit (a task: the inner folds are its progress)."""
        cohort = _origin_cohort(items, labels)
        inner = yield from relay(cross_validate_task(cohort, self.candidates, self.n_folds, self.seed),
                                 lambda u: Progress(u.step, u.total, f"inner CV: {u.message}"))
        score = metric_function("auc_macro", cohort.classes or ())
        self.inner_scores = {name: score(cohort.codes, p.proba) for name, p in inner.items()}
        finite = {k: v for k, v in self.inner_scores.items() if np.isfinite(v)}
        self.picked = max(finite, key=finite.__getitem__) if finite else next(iter(self.candidates))
        self.inner_folds = next(iter(inner.values())).folds
        self.model = self.candidates[self.picked]()
        out = self.model.fit(list(items), np.asarray(labels, int))
        if inspect.isgenerator(out):
            yield from out

    def predict_proba(self, items: Sequence[LesionItem]) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("NestedSelection.predict before fit")
        return self.model.predict_proba(items)


# --------------------------------------------------------------------------- levels and nodes


def nodes_from_four_class(proba: np.ndarray) -> np.ndarray:
    """(n, 3) node probabilities from (n, 4) origin probabilities: the inverse of ``classes.four_class``.

    P(lung) = P(SCLC) + P(NSCLC); P(SCLC | lung) = P(SCLC) / P(lung); P(breast | non-lung)
    likewise; a branch of probability 0 gets 0.5 for its undefined conditional.
    """
    p = np.asarray(proba, float).reshape(-1, len(ORIGINS))
    lung, non_lung = p[:, 0] + p[:, 1], p[:, 2] + p[:, 3]
    sclc = np.divide(p[:, 0], lung, out=np.full(len(p), 0.5), where=lung > 0)
    breast = np.divide(p[:, 2], non_lung, out=np.full(len(p), 0.5), where=non_lung > 0)
    return np.stack([lung, sclc, breast], axis=1)


def patient_level(pred: CVPredictions) -> CVPredictions:
    """One row per patient: the mean of its lesions' probabilities, its label and fold.

    Why the mean of the probabilities (not a vote, not the largest lesion): every lesion
    of a patient has the same primary, and the mean keeps the uncertainty of discordant
    lesions; node probabilities at this level follow from the mean four-class ones
    (:func:`nodes_from_four_class`), so P(SCLC | lung) is weighted by each lesion's P(lung).
    """
    patients, inverse = np.unique(pred.groups, return_inverse=True)
    counts = np.bincount(inverse, minlength=patients.size).astype(float)
    proba = np.stack([np.bincount(inverse, weights=pred.proba[:, k], minlength=patients.size)
                      for k in range(pred.proba.shape[1])], axis=1) / counts[:, None]
    first = np.array([int(np.flatnonzero(inverse == i)[0]) for i in range(patients.size)], int)
    labels = pred.labels[first]
    if not np.array_equal(labels[inverse], pred.labels):  # one primary per patient: the cohort's wiring
        raise ValueError("a patient's lesions carry different origins")
    return CVPredictions(pred.classes, labels, patients, proba, pred.fold[first], pred.folds)


def hierarchy_result(pred: CVPredictions, n_boot: int, seed: int) -> HierarchyResult:
    """Four-class and per-node metrics (each node on its own rows) of ORIGINS probabilities."""
    node_proba = dict(zip(NODES, nodes_from_four_class(pred.proba).T))
    return evaluate_hierarchy(HierarchyPredictions(TREE, pred, node_proba), n_boot, seed)


def _levels(pred: CVPredictions, n_boot: int, seed: int) -> dict[str, HierarchyResult]:
    return {"lesion": hierarchy_result(pred, n_boot, seed),
            "patient": hierarchy_result(patient_level(pred), n_boot, seed)}


def node_aucs(pred: CVPredictions, n_boot: int, seed: int) -> dict[str, CohortResult]:
    """Each node's AUC alone, on its own rows, with its patient-bootstrap CI (an ablation row's cells).

    Why not :func:`hierarchy_result`: that bootstraps every four-class and node metric (46
    CIs), and an ablation table of nine rows x two settings x two levels needs three each.
    """
    nodes = dict(zip(NODES, nodes_from_four_class(pred.proba).T))
    out = {}
    for node in TREE.nodes():
        reach = np.isin(pred.labels, node.leaves())
        positive = node.positive.leaves() if isinstance(node.positive, Node) else (node.positive,)
        y = np.where(np.isin(pred.labels[reach], positive), "positive", "negative")
        p = nodes[node.name][reach]
        sub = CVPredictions(("negative", "positive"), y, pred.groups[reach], np.column_stack([1 - p, p]),
                            pred.fold[reach], pred.folds)
        out[node.name] = evaluate_predictions(sub, n_boot, seed, metrics=("auc",))
    return out


# --------------------------------------------------------------------------- the result


def _value(res: HierarchyResult, metric: str) -> dict[str, float]:
    if metric.startswith("node "):
        return res.nodes[metric[5:]].metrics["auc"]
    return res.leaves.metrics[metric]


def _cell(m: Mapping[str, float] | None, ci: bool = True) -> str:
    if m is None or m["value"] is None or not np.isfinite(m["value"]):
        return "n/a"
    return f"{m['value']:.3f} [{m['low']:.2f}, {m['high']:.2f}]" if ci else f"{m['value']:.3f}"


def _compact(res: HierarchyResult | CohortResult) -> dict[str, Any]:
    if isinstance(res, CohortResult):
        return {"metrics": res.metrics, "confusion": res.confusion, "counts": res.counts}
    return {"four_class": _compact(res.leaves), "nodes": {k: _compact(v) for k, v in res.nodes.items()}}


@dataclass
class MetastasisEvaluation:
    """Everything item 5 reports; ``results[model][setting][level]`` is a ``HierarchyResult``.

    Attributes
    ----------
    results : dict
        Per model (and baseline): ``development`` / ``external`` x ``lesion`` / ``patient``.
    ablation : dict
        Per sequence combination (:func:`ablation_label`): setting x level -> node -> its AUC
        (:func:`node_aucs`).
    adc_rule : dict
        The ADC-ratio rule on lung lesions: setting x level -> ``CohortResult`` (SCLC vs NSCLC).
    vs_adc_rule : dict
        Per model and setting, the paired-bootstrap difference of its SCLC-node AUC from the rule's.
    picks : dict
        Per nested model: ``{"folds": [pick per outer fold], "external": pick}`` and the inner scores.
    folds : list of dict
        The outer folds' records (patients per side; nested picks and inner folds).
    sizes : dict
        Lesions and patients, in all and per origin, development and external.
    fitted : dict
        Per model (and ablation row), the estimator fitted once on all development patients
        (the one tested on the external site): a benchmark explains or saves it without a
        second training. Not in :meth:`to_json`.
    """

    results: dict[str, dict[str, dict[str, HierarchyResult]]]
    ablation: dict[str, dict[str, dict[str, dict[str, CohortResult]]]]
    adc_rule: dict[str, dict[str, CohortResult]] = field(default_factory=dict)
    vs_adc_rule: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    picks: dict[str, dict[str, Any]] = field(default_factory=dict)
    folds: list[dict[str, Any]] = field(default_factory=list)
    sizes: dict[str, Any] = field(default_factory=dict)
    fitted: dict[str, Estimator] = field(default_factory=dict, repr=False)

    def table(self) -> str:
        """Plain text: the models, the ADC rule, the nested picks, then the ablation table like the paper's."""
        lines = [(f"Development CV ({self.sizes.get('n_folds')} patient-grouped folds) and one external test "
                  f"(site {self.sizes.get('external_site')}); 95 % CI by patient bootstrap"),
                 "lesion level: every lesion a row; patient level: one row per patient (the mean of its lesions' "
                 "probabilities); node AUCs on that node's own rows only"]
        for setting in _SETTINGS:
            lesions, patients = self.sizes.get(f"per_origin_{setting}"), self.sizes.get(f"patients_per_origin_{setting}")
            if lesions and patients:
                lines.append(f"  {setting}: " + ", ".join(f"{c} {lesions[c]} lesions / {patients[c]} patients"
                                                         for c in ORIGINS))
        for setting in _SETTINGS:
            for level in _LEVELS:
                lines.append(f"\n{setting}, {level} level")
                lines.append(f"{'model':<24} " + " ".join(f"{m:>26}" for m in _MODEL_METRICS))
                for name, by in self.results.items():
                    res = by[setting][level]
                    lines.append(f"{name:<24} " + " ".join(f"{_cell(_value(res, m)):>26}" for m in _MODEL_METRICS))
        for name, by in self.results.items():
            for level in _LEVELS:
                lines.append(f"\nconfusion of {name}, external, {level} level (rows true, columns predicted; "
                             f"{', '.join(ORIGINS)}):")
                lines += ["  " + " ".join(f"{v:>5}" for v in row) for row in by["external"][level].leaves.confusion]
        if self.adc_rule:
            lines.append("\nADC-ratio rule, SCLC vs NSCLC on lung lesions (AUC):")
            for setting, by in self.adc_rule.items():
                lines.append(f"  {setting:<12} " + "  ".join(
                    f"{level} {_cell(r.metrics['auc'])}" for level, r in by.items()))
            for name, by in self.vs_adc_rule.items():
                for setting, d in by.items():
                    lines.append(f"  {name} - rule, {setting}: " + (d["error"] if "error" in d else
                                 f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p={d['p']:.3f}"))
        for name, p in self.picks.items():
            lines.append(f"\n{name}: outer folds picked {p['folds']}; external test: {p['external']}")
        cols = [f"{_SHORT[n]} {lvl}" for lvl in _LEVELS for n in NODES]
        for setting, paper in zip(_SETTINGS, PAPER.values()):
            lines.append(f"\nSequence ablation, {setting} (node AUC; the paper's {setting} figure: {paper})")
            lines.append(f"{'sequences':<16} " + " ".join(f"{c:>24}" for c in cols))
            for label, by in self.ablation.items():
                cells = [_cell(by[setting][lvl][n].metrics["auc"], ci=False) for lvl in _LEVELS for n in NODES]
                lines.append(f"{label:<16} " + " ".join(f"{c:>24}" for c in cells))
        lines.append("\nThe paper's figures (per-row figures are not in REFERENCES.md): "
                     + "; ".join(f"{k}: {v}" for k, v in PAPER.items()))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (``strict_json.plain``: NaN -> null): metrics, CIs, confusions, picks, folds."""
        from ...io.strict_json import plain

        def levels(by: Mapping[str, Any]) -> dict[str, Any]:
            return {lvl: {n: _compact(r) for n, r in res.items()} if isinstance(res, dict) else _compact(res)
                    for lvl, res in by.items()}

        def block(d: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
            return {k: {s: levels(by) for s, by in v.items()} for k, v in d.items()}
        return plain({
            "classes": list(ORIGINS), "nodes": list(NODES), "sizes": self.sizes, "models": block(self.results),
            "ablation": block(self.ablation), "adc_rule": {s: levels(by) for s, by in self.adc_rule.items()},
            "vs_adc_rule": self.vs_adc_rule, "picks": self.picks, "folds": self.folds, "paper": PAPER})


# --------------------------------------------------------------------------- the protocol


def _fit_and_test(estimator: Estimator, dev: Cohort, ext: Cohort, name: str) -> TaskGenerator[CVPredictions]:
    """Fit once on every development row, predict the external rows once."""
    out = estimator.fit(dev.items, dev.codes)
    if inspect.isgenerator(out):
        yield from relay(out, lambda u: Progress(u.step, u.total, f"{name} on all development patients: {u.message}"))
    k = len(dev.classes or ())
    proba = as_proba(estimator.predict_proba(ext.items), len(ext.items), k)
    return CVPredictions(tuple(dev.classes or ()), ext.labels, ext.groups, proba, np.zeros(len(ext.items), int), [])


def _lung_folds(dev_labels: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]]
                ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The lung rows of the development cohort and the outer folds restricted to them (renumbered)."""
    lung = np.flatnonzero(np.isin(dev_labels, LUNG))
    position = {int(r): i for i, r in enumerate(lung)}
    return lung, [(np.array([position[int(r)] for r in train if int(r) in position], int),
                   np.array([position[int(r)] for r in test if int(r) in position], int)) for train, test in folds]


def lesions_with_inside(items: Sequence[LesionItem], origins: Sequence[str]
                        ) -> tuple[list[LesionItem], list[str], list[str]]:
    """The lesions whose mask holds a voxel of the crop's grid, and the names of those left out.

    Why: a lesion smaller than a crop voxel can vanish when its label is resampled onto a
    coarse crop; it has no inside for the radiomics features, the ADC ratio or a map's
    energy. The caller says how many were left out.
    """
    keep = [k for k, item in enumerate(items) if item.crop.mask.any()]
    kept = set(keep)
    gone = [f"{items[k].patient} lesion {items[k].crop.lesion_id}" for k in range(len(items)) if k not in kept]
    return [items[k] for k in keep], [origins[k] for k in keep], gone


def evaluate_sites(items: Sequence[LesionItem], origins: Sequence[str], sites: Sequence[str] | None = None,
                   external: str = "C", factories: Mapping[str, Callable[[], Estimator]] | None = None,
                   n_folds: int = 5, seed: int = 0, n_boot: int = 1000, *,
                   candidates: Mapping[str, Callable[[], Estimator]] | None = None, inner_folds: int = 3,
                   ablation: Callable[[tuple[str, ...]], Estimator] | None = None,
                   adc_rule: Callable[[], Any] | None = ADCRatioRule) -> TaskGenerator[MetastasisEvaluation]:
    """Development CV on every site but ``external``, one external test (see the module docstring).

    Parameters
    ----------
    items, origins : sequences
        One :class:`LesionItem` and origin (:data:`~.classes.ORIGINS`) per lesion.
    sites : sequence of str, optional
        Site per lesion; default the items' own.
    external : str
        The independent site: only tested, never fitted on or chosen with.
    factories : mapping, optional
        Models (a fresh estimator per fold; ``fit(items, ORIGINS indices)``, ``predict_proba``
        (n, 4)); default :func:`default_factories`.
    n_folds, seed, n_boot : int
        Outer folds, the seed of every split and bootstrap, bootstrap resamples.
    candidates : mapping, optional
        Factories the nested CV chooses among (reported as the model "nested choice");
        default :func:`default_candidates`; an empty mapping turns the nested choice off.
    inner_folds : int
        Folds of the inner CV.
    ablation : callable, optional
        ``ablation(sequences)`` -> a fresh estimator reading those sequences; default the
        radiomics baseline on them. Rows whose sequences the crops lack are left out.
    adc_rule : callable or None
        Factory of the ADC-ratio rule (on lung lesions, only when the crops hold ADC).
    """
    items = list(items)
    origins_arr = np.asarray(origins)
    site_arr = np.asarray([i.site for i in items] if sites is None else list(sites))
    if not (len(items) == origins_arr.size == site_arr.size):
        raise ValueError(f"items ({len(items)}), origins ({origins_arr.size}) and sites ({site_arr.size}) differ")
    dev_rows, ext_rows = np.flatnonzero(site_arr != external), np.flatnonzero(site_arr == external)
    if not ext_rows.size:
        raise InsufficientDataError(f"no lesion comes from the external site {external!r} "
                                    f"(sites: {', '.join(sorted(set(site_arr.tolist())))})")
    patients = np.array([i.patient for i in items])
    if set(patients[dev_rows].tolist()) & set(patients[ext_rows].tolist()):  # the cohort reader's wiring
        raise ValueError("a patient has lesions at the external site and at a development site")

    def cohort(rows: np.ndarray, classes: tuple[str, ...] = ORIGINS) -> Cohort:
        return Cohort([items[int(r)] for r in rows], origins_arr[rows], patients[rows], classes)

    dev, ext = cohort(dev_rows), cohort(ext_rows)
    models = dict(factories or default_factories())
    nested = default_candidates() if candidates is None else dict(candidates)
    if nested:
        models["nested choice"] = lambda: NestedSelection(nested, inner_folds, seed)
    have = set(items[0].crop.sequences) if items else set()
    make_row = ablation or (lambda seqs: OnCrops(RadiomicsLogistic(seqs)))
    rows = {ablation_label(s): (lambda s=s: make_row(s)) for s in ABLATION if set(s) <= have}
    everything = {**models, **{f"ablation: {k}": f for k, f in rows.items()}}

    def on_fold(f: int, train: np.ndarray, test: np.ndarray, fitted: Mapping[str, Estimator]) -> dict[str, Any]:
        return {"nested": {name: {"picked": est.picked, "inner_scores": est.inner_scores,
                                  "inner_folds": est.inner_folds}
                           for name, est in fitted.items() if isinstance(est, NestedSelection)}}

    folds = patient_folds(dev, n_folds, seed)
    yield Progress(0, 4, f"Cross-validation on {len(dev_rows)} development lesions")
    cv = yield from relay(cross_validate_task(dev, everything, n_folds, seed, folds=folds, on_fold=on_fold),
                          lambda u: Progress(u.step, u.total, f"Development CV: {u.message}"))
    yield Progress(1, 4, f"External test on {len(ext_rows)} lesions")
    outside: dict[str, CVPredictions] = {}
    fitted_once: dict[str, Estimator] = {}
    for name, factory in everything.items():
        fitted_once[name] = factory()
        outside[name] = yield from _fit_and_test(fitted_once[name], dev, ext, name)
    yield Progress(2, 4, "Metrics with patient-bootstrap CIs")
    results = {k: {"development": _levels(cv[k], n_boot, seed), "external": _levels(outside[k], n_boot, seed)}
               for k in models}
    ablation_res = {k: {setting: {"lesion": node_aucs(pred, n_boot, seed),
                                  "patient": node_aucs(patient_level(pred), n_boot, seed)}
                        for setting, pred in (("development", cv[f"ablation: {k}"]),
                                              ("external", outside[f"ablation: {k}"]))}
                    for k in rows}
    picks = {name: {"folds": [r["nested"][name]["picked"] for r in cv[name].folds],
                    "external": est.picked, "external_inner_scores": est.inner_scores}
             for name, est in fitted_once.items() if isinstance(est, NestedSelection)}
    yield Progress(3, 4, "ADC-ratio rule")
    rule_res: dict[str, dict[str, CohortResult]] = {}
    vs_rule: dict[str, dict[str, dict[str, Any]]] = {}
    if adc_rule is not None and "adc" in have:
        lung, lung_folds = _lung_folds(dev.labels, folds)
        ext_lung = np.flatnonzero(np.isin(ext.labels, LUNG))
        dev_l, ext_l = cohort(dev_rows[lung], LUNG_CLASSES), cohort(ext_rows[ext_lung], LUNG_CLASSES)
        rule_cv = yield from relay(cross_validate_task(dev_l, {"rule": lambda: OnCrops(adc_rule())}, folds=lung_folds),
                                   lambda u: Progress(3, 4, f"ADC-ratio rule: {u.message}"))
        rule_ext = yield from _fit_and_test(OnCrops(adc_rule()), dev_l, ext_l, "ADC-ratio rule")
        rule_preds = {"development": rule_cv["rule"], "external": rule_ext}
        rule_metrics = ("auc", "balanced_accuracy", "sensitivity", "specificity")
        rule_res = {s: {"lesion": evaluate_predictions(p, n_boot, seed, metrics=rule_metrics),
                        "patient": evaluate_predictions(patient_level(p), n_boot, seed, metrics=rule_metrics)}
                    for s, p in rule_preds.items()}
        for name in models:
            vs_rule[name] = {}
            for setting, model_pred, lung_rows in (("development", cv[name], lung),
                                                   ("external", outside[name], ext_lung)):
                sclc = nodes_from_four_class(model_pred.proba[lung_rows])[:, 1]
                r = rule_preds[setting]
                try:
                    vs_rule[name][setting] = paired_bootstrap("auc", r.labels, sclc, r.proba[:, 1], r.groups,
                                                              classes=LUNG_CLASSES, n_boot=n_boot, seed=seed)
                except InsufficientDataError as exc:  # e.g. one lung class absent from a small external site
                    vs_rule[name][setting] = {"metric": "auc", "error": str(exc)}
    sizes = {"development_lesions": len(dev_rows), "external_lesions": len(ext_rows),
             "development_patients": int(np.unique(dev.groups).size),
             "external_patients": int(np.unique(ext.groups).size), "external_site": external, "n_folds": n_folds,
             "inner_folds": inner_folds if nested else None,
             "per_origin_development": {c: int((dev.labels == c).sum()) for c in ORIGINS},
             "per_origin_external": {c: int((ext.labels == c).sum()) for c in ORIGINS},
             "patients_per_origin_development": {c: int(np.unique(dev.groups[dev.labels == c]).size) for c in ORIGINS},
             "patients_per_origin_external": {c: int(np.unique(ext.groups[ext.labels == c]).size) for c in ORIGINS}}
    yield Progress(4, 4, "Done")
    return MetastasisEvaluation(results, ablation_res, rule_res, vs_rule, picks, cv[next(iter(models))].folds, sizes,
                                fitted_once)
