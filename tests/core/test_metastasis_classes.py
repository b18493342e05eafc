"""The metastasis hierarchy: node targets and the four-class probabilities they imply."""

from __future__ import annotations

import numpy as np
import pytest

from napari_neuroreview.core.tasks.metastasis.classes import NODES, ORIGINS, four_class, node_targets


def test_four_class_is_the_chain_rule_and_sums_to_one() -> None:
    p = np.array([[0.8, 0.25, 0.6], [0.1, 0.9, 0.3]])
    q = four_class(p)
    np.testing.assert_allclose(q[0], [0.2, 0.6, 0.12, 0.08])
    np.testing.assert_allclose(q.sum(axis=1), 1.0)


def test_node_targets_apply_each_node_to_its_own_branch() -> None:
    targets, mask = node_targets(list(ORIGINS))
    assert len(NODES) == 3
    np.testing.assert_array_equal(targets, [[1, 1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 1, 0], [1, 0, 1], [1, 0, 1]])
    # a perfect node predictor gives the one-hot four-class answer
    np.testing.assert_allclose(four_class(targets), np.eye(4))
    with pytest.raises(ValueError, match="unknown origin"):
        node_targets(["melanoma"])
