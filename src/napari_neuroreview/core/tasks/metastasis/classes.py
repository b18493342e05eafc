"""The origins and the hierarchy the metastasis models predict (Jiao et al., JMRI 2023).

Why a hierarchy: the study classified lung vs non-lung first, then SCLC vs NSCLC within
lung and breast vs gastrointestinal (GI) within non-lung; the four-class probabilities
follow from the three nodes by the chain rule, so one network with three binary outputs
gives both the paper's node AUCs and a four-class answer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LUNG", "NODES", "ORIGINS", "SEQUENCES", "SEQUENCE_NAMES", "four_class", "node_targets"]

#: The four origins, in the order of every four-class array.
ORIGINS: tuple[str, ...] = ("SCLC", "NSCLC", "breast", "GI")
#: Origins of the lung branch.
LUNG: tuple[str, ...] = ("SCLC", "NSCLC")
#: The three binary nodes; each output is P(first named | the node's patients).
NODES: tuple[str, ...] = ("lung_vs_non_lung", "sclc_vs_nsclc", "breast_vs_gi")
#: The sequences a model may read, as file stems (T1, T2, FLAIR, DWI b = 1000, ADC, contrast
#: T1), in this order: the phantom writes them, the crops read them.
SEQUENCES: tuple[str, ...] = ("t1", "t2", "flair", "dwi", "adc", "ce_t1")
#: What the sequences are called in sentences and on the panel.
SEQUENCE_NAMES: dict[str, str] = {"t1": "T1", "t2": "T2", "flair": "FLAIR", "dwi": "DWI", "adc": "ADC",
                                  "ce_t1": "contrast T1"}


def four_class(p_nodes: np.ndarray) -> np.ndarray:
    """(n, 4) origin probabilities (:data:`ORIGINS` order) from (n, 3) node probabilities.

    ``p_nodes[:, 0]`` is P(lung), ``[:, 1]`` P(SCLC | lung), ``[:, 2]`` P(breast | non-lung).
    """
    p = np.asarray(p_nodes, float).reshape(-1, 3)
    lung, sclc, breast = p[:, 0], p[:, 1], p[:, 2]
    return np.stack([lung * sclc, lung * (1 - sclc), (1 - lung) * breast, (1 - lung) * (1 - breast)], axis=1)


def node_targets(origins: list[str] | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) 0/1 targets of the three nodes and the (n, 3) mask of the nodes that apply.

    The lung node applies to every lesion; SCLC vs NSCLC only to lung lesions, breast vs GI
    only to non-lung ones (a node's loss and AUC count only its own lesions).
    """
    unknown = sorted(set(origins) - set(ORIGINS))
    if unknown:  # the caller's wiring: labels are checked where they are read
        raise ValueError(f"unknown origin(s) {unknown}; expected {ORIGINS}")
    o = np.asarray(origins)
    lung = np.isin(o, LUNG)
    targets = np.stack([lung, o == "SCLC", o == "breast"], axis=1).astype(np.float32)
    mask = np.stack([np.ones(len(o), bool), lung, ~lung], axis=1)
    return targets, mask
