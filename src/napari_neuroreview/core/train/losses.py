"""Losses that more than one system trains with: soft Dice, CLIP-style InfoNCE, SupCon.

Why here and not in a system: a segmentation head (microbleed masks, later lesion
masks) needs Dice, and every contrastive encoder (rs-fMRI networks, the planned stroke
image + table model) needs InfoNCE and SupCon. Losses that only one system's batches
make sense of (the microbleed patch loss) stay with that system.

Under ``torchrun`` a contrastive loss should see every rank's negatives: pass the
embeddings through :func:`~.distributed.gather_with_grad` first; these functions then
compute the loss of the global batch on every rank.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["clip_loss", "soft_dice_loss", "supcon_loss"]


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - Dice per sample, averaged; smooth so empty targets do not divide by zero."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    return (1.0 - (2 * inter + 1.0) / (prob.sum(1) + target.sum(1) + 1.0)).mean()


def clip_loss(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float, queue_a: torch.Tensor | None = None,
              queue_b: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): row i of ``z_a`` matches row i of ``z_b``, not the others'.

    ``queue_a``/``queue_b``: past embeddings of each side (detached, MoCo-style), extra
    negatives for the other side's rows, so that the contrastive batch is larger than a step's.
    """
    target = torch.arange(z_a.shape[0], device=z_a.device)
    if queue_a is None and queue_b is None:
        logits = z_a @ z_b.T / temperature
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    all_b = z_b if queue_b is None else torch.cat([z_b, queue_b])
    all_a = z_a if queue_a is None else torch.cat([z_a, queue_a])
    return 0.5 * (F.cross_entropy(z_a @ all_b.T / temperature, target)
                  + F.cross_entropy(z_b @ all_a.T / temperature, target))


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "L_out"), mean over anchors with a positive.

    For anchor i, the positives are the other rows with the same label; the denominator
    runs over every row but i. Zero (with a graph) when no anchor has a positive.
    """
    n = z.shape[0]
    sim = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    counts = positive.sum(dim=1)
    has = counts > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    mean_log_prob = log_prob.masked_fill(~positive, 0.0).sum(dim=1)[has] / counts[has]
    return -mean_log_prob.mean()
