"""The hierarchical loss: binary cross-entropy of the three nodes, each only on its own lesions.

Why masked and not three separate models or a four-class softmax: SCLC vs NSCLC says
nothing about a breast lesion, so its output must get no gradient from one (the mask of
``classes.node_targets``), while the shared backbone still learns from every lesion
through the lung node. Why one mean over the counted (lesion, node) pairs: every label
the batch holds weighs the same, and a batch without lung lesions simply has fewer
terms (no node-wise division by a zero count).

Here and not in ``core.train.losses`` because only this task's batches (node targets and
masks) make sense of it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["hierarchical_loss"]


def hierarchical_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of the (N, 3) node logits over the pairs where ``mask`` is True.

    Parameters
    ----------
    logits : torch.Tensor
        (N, 3) node logits (``MetastasisNet`` output).
    targets : torch.Tensor
        (N, 3) 0/1 node targets (``classes.node_targets``); values under a False mask are ignored.
    mask : torch.Tensor
        (N, 3) bool, the nodes that apply to each lesion.

    Returns
    -------
    torch.Tensor
        A scalar; zero (still attached to the graph) when nothing is counted. A masked
        logit gets exactly zero gradient, whatever its value or target.
    """
    if logits.shape != targets.shape or logits.shape != mask.shape:  # the caller's wiring
        raise ValueError(f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and mask "
                         f"{tuple(mask.shape)} must have one shape")
    mask = mask.to(dtype=torch.bool, device=logits.device)
    safe_targets = torch.where(mask, targets.to(logits), torch.zeros_like(logits))
    per_pair = F.binary_cross_entropy_with_logits(logits, safe_targets, reduction="none")
    counted = torch.where(mask, per_pair, torch.zeros_like(per_pair))
    return counted.sum() / mask.sum().clamp(min=1)
