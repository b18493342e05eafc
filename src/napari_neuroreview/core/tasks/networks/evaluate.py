"""Honest cross-validation of the pre/post model, with the conventional baseline beside it.

* **Split by patient.** ``StratifiedGroupKFold`` over scans, grouped by patient: both
  sessions of a patient fall in the same fold, so a model can never recognise a
  patient's other scan instead of the surgery (REFERENCES.md: record-wise splits of
  repeated scans inflate accuracy).
* **Every label-using stage inside the fold.** Stage 1 reads the pre/post labels (its
  supervised contrastive term), so a fresh encoder is trained per fold on the training
  patients only; stage 2 and the baseline, including their choice of C, are fitted on
  the same training patients. Test patients are only ever embedded and scored.
* **Pooled held-out predictions**, then per network accuracy, sensitivity, specificity,
  F1 and AUC with a patient (cluster) bootstrap 95 % CI
  (``core.metrics.classification``). The threshold is 0.5: a logistic regression fitted
  on a balanced training set (every patient brings one pre and one post scan) is
  calibrated around it, and choosing a threshold on the test folds would be optimistic.
  The prevalence is 0.5 by design and reported.
* **The baseline** (logistic regression on the summary features of :mod:`.features`) is
  fitted in the same folds in the same run, so the two tables differ only by the model.
* **t-SNE of held-out embeddings.** Each test row is embedded by its own fold's encoder.
  Five encoders give five embedding spaces that differ by an arbitrary rotation (the
  losses only see cosine similarities), so before pooling, each fold's space is rotated
  onto fold 1's by orthogonal Procrustes fitted on fold 1's *test* rows (embedded by both
  encoders; no labels involved). Fold 1's encoder never saw those patients, and the
  rotation is fitted on other patients than the ones it moves, so the picture is still of
  held-out scans.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...device import resolve_device
from ...explain.embeddings import tsne_coordinates
from ...metrics.cohort import (
    Cohort,
    CVPredictions,
    cross_validate_task,
    evaluate_predictions,
)
from ...metrics.cohort import patient_folds as cohort_folds
from ...progress import Progress, TaskGenerator, relay, within
from . import train as _train
from .features import NetworkRows
from .model import embed_rows, stage2_design

__all__ = [
    "CI_METRICS",
    "EvaluationConfig",
    "EvaluationResult",
    "cross_validate",
    "evaluate_cohort",
    "patient_folds",
    "save_tsne_png",
    "tsne_figure",
]

#: Metrics reported with a patient-bootstrap CI.
CI_METRICS: tuple[str, ...] = ("accuracy", "sensitivity", "specificity", "f1", "auc")
METHODS: tuple[str, ...] = ("model", "baseline")


@dataclass
class EvaluationConfig:
    """Cross-validation settings.

    Attributes
    ----------
    folds : int
        Outer folds (by patient).
    seed : int
        Seeds the fold assignment, the bootstrap, t-SNE; stage 1 uses ``stage1.seed``.
    n_boot : int
        Patient-bootstrap resamples per CI.
    threshold : float
        P(post) at or above which a scan is called post.
    stage1, stage2 : configs of :mod:`.train`
    tsne : bool
        Compute the t-SNE of held-out embeddings.
    """

    folds: int = 5
    seed: int = 0
    n_boot: int = 1000
    threshold: float = 0.5
    stage1: _train.Stage1Config = field(default_factory=_train.Stage1Config)
    stage2: _train.Stage2Config = field(default_factory=_train.Stage2Config)
    tsne: bool = True


@dataclass
class EvaluationResult:
    """What :func:`cross_validate` found.

    Attributes
    ----------
    networks : tuple of str
        Network names, in the order of ``metrics``.
    metrics : dict
        ``metrics[method][network][metric] = {"value", "low", "high"}`` for ``method`` in
        ``('model', 'baseline')`` and ``metric`` in :data:`CI_METRICS` (low/high are the
        bootstrap 95 % CI); plus ``n``, ``prevalence``, ``tp``, ``fp``, ``tn``, ``fn``
        as ``{"value"}``.
    rows : dict of str to list
        Per held-out row: ``patient``, ``scan``, ``network``, ``label``, ``fold``,
        ``p_model``, ``p_baseline``.
    embeddings : numpy.ndarray
        (N, 2E) held-out embeddings, aligned across folds (see the module docstring).
    tsne : numpy.ndarray or None
        (N, 2) t-SNE coordinates of ``embeddings``.
    folds : list of dict
        Per fold: train/test patients, stage-1 loss history, chosen C per network.
    config : dict
    seconds : float
        Wall time of the whole evaluation.
    device : str
    """

    networks: tuple[str, ...]
    metrics: dict[str, dict[str, dict[str, dict[str, float]]]]
    rows: dict[str, list[Any]]
    embeddings: np.ndarray
    tsne: np.ndarray | None
    folds: list[dict[str, Any]]
    config: dict[str, Any]
    seconds: float
    device: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN -> None: an undefined metric) without the raw embeddings."""
        from ...io.strict_json import plain

        return plain({
            "networks": list(self.networks), "metrics": self.metrics, "rows": self.rows,
            "tsne": None if self.tsne is None else self.tsne.tolist(), "folds": self.folds,
            "config": self.config, "seconds": self.seconds, "device": self.device,
        })

    def table(self) -> str:
        """Plain-text table: per network and method, each metric with its 95 % CI."""
        head = f"{'network':<10} {'method':<9} " + " ".join(f"{m:<19}" for m in CI_METRICS)
        lines = [head, "-" * len(head)]
        for name in self.networks:
            for method in METHODS:
                cells = []
                for m in CI_METRICS:
                    c = self.metrics[method][name][m]
                    cells.append(f"{c['value']:.2f} [{c['low']:.2f}, {c['high']:.2f}]".ljust(19))
                lines.append(f"{name:<10} {method:<9} " + " ".join(cells))
        n = self.metrics["model"][self.networks[0]]["n"]["value"] if self.networks else 0
        lines.append(f"{int(n)} scans per network, prevalence of post "
                     f"{self.metrics['model'][self.networks[0]]['prevalence']['value']:.2f}; "
                     "95 % CI by patient bootstrap")
        return "\n".join(lines)


def patient_folds(rows: NetworkRows, n_folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train row indices, test row indices) per fold; a patient's rows are all on one side.

    The cohort evaluation's split (``core.metrics.cohort.patient_folds``:
    ``StratifiedGroupKFold``, shuffled by ``seed``) over scans, stratified by state and
    grouped by patient; each scan's network rows follow their scan.

    Raises
    ------
    ValueError
        If there are fewer patients than folds, or a scan is unlabelled.
    """
    if (rows.labels < 0).any():
        raise ValueError("every scan needs a pre/post label for cross-validation")
    scan_ids, first = np.unique(rows.scans, return_index=True)
    patients = rows.groups[first]
    n_patients = np.unique(patients).size
    if n_patients < n_folds:
        raise ValueError(f"{n_patients} patients cannot fill {n_folds} folds")
    out = []
    for _, test_scans in cohort_folds(Cohort(scan_ids, rows.labels[first], patients), n_folds, seed):
        test = np.isin(rows.scans, scan_ids[test_scans])
        out.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return out


class _ModelEstimator:
    """Stage 1 then stage 2 on a fold's training rows: the cohort harness's "model" estimator.

    ``fit`` is a task (stage 1's epochs are the fold's progress). It keeps the encoder and
    the heads for :func:`cross_validate`'s fold hook (t-SNE embeddings, C, loss history).
    """

    def __init__(self, config: EvaluationConfig, device: str, torch_device: Any) -> None:
        self.config, self.device, self.torch_device = config, device, torch_device

    def fit(self, rows: NetworkRows, labels: np.ndarray) -> TaskGenerator[None]:
        self.encoder, self.history = yield from _train.train_stage1(rows, self.config.stage1, self.device)
        embedded = embed_rows(self.encoder, rows, self.torch_device, representation=self.config.stage2.representation)
        self.heads = _train.train_stage2(rows, embedded, self.config.stage2)

    def predict_proba(self, rows: NetworkRows) -> np.ndarray:
        stage2 = self.config.stage2
        embedded = embed_rows(self.encoder, rows, self.torch_device, representation=stage2.representation)
        X = stage2_design(embedded if stage2.use_embeddings else None, rows.features if stage2.use_features else None)
        return _per_network_proba(self.heads, rows, X)


class _BaselineEstimator:
    """Per network, logistic regression on the summary features (``train.fit_baseline``)."""

    def __init__(self, config: EvaluationConfig) -> None:
        self.config = config

    def fit(self, rows: NetworkRows, labels: np.ndarray) -> None:
        self.heads = _train.fit_baseline(rows, self.config.stage2)

    def predict_proba(self, rows: NetworkRows) -> np.ndarray:
        return _per_network_proba(self.heads, rows, rows.features)


def _per_network_proba(heads: dict[str, Any], rows: NetworkRows, X: np.ndarray) -> np.ndarray:
    """P(post) of each row from its own network's head."""
    p = np.full(len(rows), np.nan)
    for k, name in enumerate(rows.network_names):
        sel = rows.networks == k
        if sel.any():
            p[sel] = heads[name].predict_proba(X[sel])
    return p


def _metric_table(pred: CVPredictions, config: EvaluationConfig) -> dict[str, dict[str, float]]:
    """One network's row of the table: the cohort metrics with CIs, the counts without."""
    res = evaluate_predictions(pred, config.n_boot, config.seed, config.threshold, metrics=CI_METRICS)
    table = {name: res.metrics[name] for name in CI_METRICS}
    (tn, fp), (fn, tp) = res.confusion
    counts = {"n": res.counts["rows"], "prevalence": res.counts["prevalence"]["1"], "tp": tp, "fp": fp, "tn": tn,
              "fn": fn}
    return {**table, **{name: {"value": float(v)} for name, v in counts.items()}}


def _procrustes(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    from scipy.linalg import orthogonal_procrustes

    rotation, _ = orthogonal_procrustes(source, target)
    return rotation


def cross_validate(rows: NetworkRows, config: EvaluationConfig | None = None, device: str = "auto"
                   ) -> TaskGenerator[EvaluationResult]:
    """Patient-grouped K-fold evaluation of the model and the baseline (see the module docstring).

    An adapter over ``core.metrics.cohort``: the rows are the cohort, the model (stage 1 +
    stage 2) and the baseline are its estimators, fitted in the same folds
    (:func:`patient_folds`) by ``cross_validate_task``; a fold hook keeps each fold's
    held-out embeddings, rotated onto fold 1's, for the t-SNE; the CIs are
    ``evaluate_predictions``' per network.

    Parameters
    ----------
    rows : NetworkRows
        Every labelled (scan, network) row of the cohort (``cohort.load_cohort`` +
        ``features.build_rows``).
    config : EvaluationConfig, optional
    device : str
        Where stage 1 trains and embeds.

    Yields :class:`Progress` every stage-1 batch; returns an :class:`EvaluationResult`.
    """
    config = config or EvaluationConfig()
    started = time.perf_counter()
    choice = resolve_device(device)
    folds = patient_folds(rows, config.folds, config.seed)
    n = len(rows)
    embeddings = np.zeros((n, 2 * config.stage1.embed_dim))
    reference: list[tuple[np.ndarray, np.ndarray]] = []  # (fold-1 test rows, their fold-1 embeddings)

    def on_fold(f: int, train: np.ndarray, test: np.ndarray, fitted: Mapping[str, Any]) -> dict[str, Any]:
        model, base = fitted["model"], fitted["baseline"]
        shown = embed_rows(model.encoder, rows.subset(test), choice.device)
        if not reference:
            reference.append((test, shown))
            embeddings[test] = shown
        else:
            ref_rows, ref_emb = reference[0]
            embeddings[test] = shown @ _procrustes(embed_rows(model.encoder, rows.subset(ref_rows), choice.device),
                                                   ref_emb)
        return {"stage1_loss": model.history.train_loss, "C_model": {k: h.C for k, h in model.heads.items()},
                "C_baseline": {k: h.C for k, h in base.heads.items()}}

    cohort = Cohort(rows, rows.labels, rows.groups, (0, 1))
    factories = {"model": lambda: _ModelEstimator(config, device, choice.device),
                 "baseline": lambda: _BaselineEstimator(config)}
    scale = 1000
    total = (len(folds) + 1) * scale
    pred = yield from relay(cross_validate_task(cohort, factories, folds=folds, on_fold=on_fold),
                            lambda u: Progress(u.step, total, u.message))
    yield Progress(len(folds) * scale, total, "Bootstrap confidence intervals")
    metrics: dict[str, dict[str, dict[str, dict[str, float]]]] = {m: {} for m in METHODS}
    for k, name in enumerate(rows.network_names):
        sel = rows.networks == k
        if not sel.any():
            continue
        yield Progress(len(folds) * scale + k * scale // (2 * len(rows.network_names)), total,
                       f"Bootstrap confidence intervals: {name}")
        for method in METHODS:
            metrics[method][name] = _metric_table(pred[method].subset(sel), config)
    tsne = None
    if config.tsne and n >= 5:
        yield Progress(len(folds) * scale + scale // 2, total, "t-SNE of held-out embeddings")
        tsne = tsne_coordinates(embeddings, config.seed)
    networks = tuple(name for name in rows.network_names if name in metrics["model"])
    result = EvaluationResult(
        networks=networks, metrics=metrics,
        rows={"patient": rows.groups.tolist(), "scan": rows.scans.tolist(),
              "network": [rows.network_names[int(k)] for k in rows.networks], "label": rows.labels.tolist(),
              "fold": pred["model"].fold.tolist(), "p_model": pred["model"].proba[:, 1].tolist(),
              "p_baseline": pred["baseline"].proba[:, 1].tolist()},
        embeddings=embeddings, tsne=tsne, folds=pred["model"].folds,
        config={"folds": config.folds, "seed": config.seed, "n_boot": config.n_boot, "threshold": config.threshold,
                "stage1": asdict(config.stage1), "stage2": asdict(config.stage2),
                "n_patients": int(np.unique(rows.groups).size), "n_rows": n},
        seconds=time.perf_counter() - started, device=choice.label,
    )
    yield Progress(total, total, "Done")
    return result


def save_tsne_png(result: EvaluationResult, path: str | Path, title: str = "") -> Path:
    """Write :func:`tsne_figure` as a PNG, atomically (``core.io.atomic.write_with``)."""
    from ...io.atomic import write_with

    fig = tsne_figure(result, title)
    return write_with(path, lambda tmp: fig.savefig(tmp, format="png"))


def tsne_figure(result: EvaluationResult, title: str = "") -> Any:
    """Scatter of the held-out t-SNE: colour = network, hollow circle = pre, filled triangle = post.

    The colours are the Networks widget's (:data:`.colours.NETWORK_COLOURS`), so a network
    looks the same in the cohort's picture and beside a patient. A matplotlib ``Figure``
    without pyplot: it draws without a display.
    """
    from matplotlib.figure import Figure

    from .colours import NETWORK_COLOURS

    if result.tsne is None:
        raise ValueError("this evaluation has no t-SNE (EvaluationConfig.tsne was False)")
    xy = result.tsne
    networks = np.asarray(result.rows["network"])
    labels = np.asarray(result.rows["label"])
    fig = Figure(figsize=(7.5, 5.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    for name in result.networks:
        c = NETWORK_COLOURS[name]
        pre = (networks == name) & (labels == 0)
        post = (networks == name) & (labels == 1)
        ax.scatter(xy[pre, 0], xy[pre, 1], s=22, facecolors="none", edgecolors=[c], linewidths=1.0,
                   label=f"{name} pre")
        ax.scatter(xy[post, 0], xy[post, 1], s=24, marker="^", color=c, label=f"{name} post")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of held-out embeddings (each fold's own encoder)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # off the points
    fig.tight_layout()
    return fig


def evaluate_cohort(cohort: str | Path, config: EvaluationConfig | None = None, device: str = "auto"
                    ) -> TaskGenerator[tuple[EvaluationResult, list[str]]]:
    """Load a cohort (``cohort.load_cohort``) and cross-validate on it; returns (result, warnings).

    The first third of the progress is loading (ICA of sessions without ``ica/``), the
    rest the cross-validation.
    """
    from .cohort import load_cohort
    from .features import build_rows

    scans, warnings = yield from within(load_cohort(cohort), 0, 100, 300, "Loading the cohort")
    rows = build_rows(scans)
    result = yield from within(cross_validate(rows, config, device), 100, 200, 300, "Cross-validation")
    return result, warnings
