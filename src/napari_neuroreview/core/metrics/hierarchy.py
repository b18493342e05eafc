"""Hierarchical targets: a tree of binary decisions, evaluated per node and as leaves.

Why a tree: some diagnoses are decided in steps (vascular or not, then which vascular
subtype), and a clinician wants to know where the model goes wrong, not only how often.
Each node's estimator learns its decision from the training patients that reach it, so
every label-using stage stays inside the fold, as in :mod:`.cohort`; the leaves'
probabilities are the products along each path, scored as a multi-class target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InsufficientDataError
from .cohort import (
    Cohort,
    CohortResult,
    CVPredictions,
    Estimator,
    as_proba,
    evaluate_predictions,
    fold_record,
    patient_folds,
)

__all__ = ["HierarchyPredictions", "HierarchyResult", "Node", "cross_validate_hierarchy", "evaluate_hierarchy"]


@dataclass(frozen=True)
class Node:
    """A binary decision of a hierarchical target: ``negative`` or ``positive`` branch.

    Each branch is a leaf (a class label) or another :class:`Node`. A row *reaches* a
    node when its class is one of the node's leaves; the node's estimator learns
    P(positive branch) from the training rows that reach it.
    """

    name: str
    negative: Node | Any
    positive: Node | Any

    def leaves(self) -> tuple[Any, ...]:
        """Class labels under this node, negative branch first."""
        return tuple(_leaves(self.negative) + _leaves(self.positive))

    def nodes(self) -> tuple[Node, ...]:
        """This node and every node below it, depth first."""
        out: tuple[Node, ...] = (self,)
        for child in (self.negative, self.positive):
            if isinstance(child, Node):
                out += child.nodes()
        return out


def _leaves(branch: Node | Any) -> list[Any]:
    return list(branch.leaves()) if isinstance(branch, Node) else [branch]


@dataclass
class HierarchyPredictions:
    """Held-out P(positive branch) per node for every row, and leaf probabilities (products)."""

    tree: Node
    leaves: CVPredictions
    node_proba: dict[str, np.ndarray]


def _leaf_products(tree: Node, node_proba: dict[str, np.ndarray], n: int) -> np.ndarray:
    """(n, K) leaf probabilities: the product of the branch probabilities on each leaf's path."""
    columns: list[np.ndarray] = []

    def walk(branch: Node | Any, reach: np.ndarray) -> None:
        if not isinstance(branch, Node):
            columns.append(reach)
            return
        p = node_proba[branch.name]
        walk(branch.negative, reach * (1.0 - p))
        walk(branch.positive, reach * p)

    walk(tree, np.ones(n))
    return np.column_stack(columns)


def cross_validate_hierarchy(cohort: Cohort, tree: Node, factory: Callable[[str], Estimator],
                             n_folds: int = 5, seed: int = 0) -> HierarchyPredictions:
    """Per fold, one fresh binary estimator per node (``factory(node.name)``), fitted on the
    training rows that reach that node; every test row gets every node's probability.

    Folds are stratified by leaf class, so each node's training side sees each leaf.
    """
    leaves = tree.leaves()
    names = [node.name for node in tree.nodes()]
    if len(set(names)) != len(names) or len(set(leaves)) != len(leaves):
        raise ValueError("node names and leaf labels must be unique in the tree")
    cohort = Cohort(cohort.items, cohort.labels, cohort.groups, leaves)
    folds = patient_folds(cohort, n_folds, seed)
    n = cohort.labels.size
    node_proba = {name: np.full(n, np.nan) for name in names}
    fold_of = np.full(n, -1)
    records = []
    for f, (train, test) in enumerate(folds):
        for node in tree.nodes():
            reach = train[np.isin(cohort.labels[train], node.leaves())]
            y = np.isin(cohort.labels[reach], _leaves(node.positive)).astype(int)
            if np.unique(y).size < 2:
                raise InsufficientDataError(f"node {node.name!r} has training rows of one branch only in fold "
                                            f"{f + 1} of {n_folds}; each branch needs patients in every fold")
            model = factory(node.name)
            model.fit(cohort.take(reach), y)
            node_proba[node.name][test] = as_proba(model.predict_proba(cohort.take(test)), test.size, 2)[:, 1]
        fold_of[test] = f
        records.append(fold_record(cohort, f, train, test))
    proba = _leaf_products(tree, node_proba, n)
    leaf_pred = CVPredictions(leaves, cohort.labels, cohort.groups, proba, fold_of, records)
    return HierarchyPredictions(tree, leaf_pred, node_proba)


@dataclass
class HierarchyResult:
    """Leaf-level metrics and, per node, binary metrics on the rows that reach it."""

    leaves: CohortResult
    nodes: dict[str, CohortResult]

    def to_json(self) -> dict[str, Any]:
        return {"leaves": self.leaves.to_json(), "nodes": {k: v.to_json() for k, v in self.nodes.items()}}

    def table(self) -> str:
        parts = [self.leaves.table("leaves")]
        parts += [v.table(f"node {k}") for k, v in self.nodes.items()]
        return "\n\n".join(parts)


def evaluate_hierarchy(pred: HierarchyPredictions, n_boot: int = 1000, seed: int = 0,
                       threshold: float = 0.5) -> HierarchyResult:
    """Leaves as a multi-class target; each node on its own patients (negative vs positive)."""
    leaves = pred.leaves
    nodes: dict[str, CohortResult] = {}
    for node in pred.tree.nodes():
        reach = np.isin(leaves.labels, node.leaves())
        y = np.where(np.isin(leaves.labels[reach], _leaves(node.positive)), "positive", "negative")
        p = pred.node_proba[node.name][reach]
        sub = CVPredictions(("negative", "positive"), y, leaves.groups[reach], np.column_stack([1 - p, p]),
                            leaves.fold[reach], leaves.folds)
        nodes[node.name] = evaluate_predictions(sub, n_boot, seed, threshold)
    return HierarchyResult(evaluate_predictions(leaves, n_boot, seed, threshold), nodes)
