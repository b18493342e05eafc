"""Multiple-instance classifiers over a patient's microbleeds: gated attention and mean pooling.

A patient is a *bag* of instances (one feature vector per cerebral microbleed) with one
label (the small vessel disease subtype); which microbleeds carry the label is unknown.
Both models embed every instance with the same small MLP, pool the bag into one vector
and classify it:

* :class:`GatedAttentionMIL` (Ilse, Tomczak and Welling 2018, "gated attention"): the
  weight of instance ``k`` is ``softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k)))`` over the
  bag's own instances; the bag vector is the weighted sum. The weights are shown to the
  radiologist (which microbleeds the subtype was read from).
* :class:`MeanPoolMIL`: the same network with uniform weights, the baseline a 2026 3D
  neuroimaging MIL benchmark found as good as attention on most tasks; it is trained
  beside the attention model so that the report can say what attention adds.

Why these choices:

* **Batches of bags of different sizes** are one padded tensor ``(B, N, D)`` with a
  boolean mask ``(B, N)`` (:func:`pad_bags`); padding gets no weight, so the output does
  not depend on how far a bag was padded, and the forward pass has no Python loop over
  patients. Inside, only the real instances are embedded (packed), so one bag of 286
  microbleeds does not make the fifteen small bags of its batch cost 286 each.
* **An empty bag is a first-class input.** 30-65 % of CADASIL patients have no
  microbleed; softmax over zero instances is undefined, so such a bag takes a learned
  "no microbleed" vector as its bag embedding instead.
* **The bag size is an input of the classifier** (``log1p`` of the count, concatenated to
  the pooled vector): attention and mean pooling are both normalised, so without it one
  lobar microbleed and two hundred look the same, while the count is much of what
  separates CADASIL and CAA from arteriolosclerosis.

This module holds ``nn.Module`` s and the padding helper only: no I/O, no training loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["POOLINGS", "GatedAttentionMIL", "MILNet", "MeanPoolMIL", "build_mil", "pad_bags"]

def pad_bags(bags: Sequence[np.ndarray], n_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack bags of ``(n_i, n_features)`` instances into ``(B, N, D)`` zeros-padded and a ``(B, N)`` mask.

    ``N`` is the largest bag (at least 1, so a batch of empty bags is still a tensor);
    ``mask[b, k]`` is True where instance ``k`` of bag ``b`` is real.
    """
    longest = max([1, *(len(b) for b in bags)])
    x = np.zeros((len(bags), longest, n_features), np.float32)
    mask = np.zeros((len(bags), longest), bool)
    for b, bag in enumerate(bags):
        bag = np.asarray(bag, np.float32).reshape(-1, n_features)
        x[b, : len(bag)] = bag
        mask[b, : len(bag)] = True
    return torch.from_numpy(x), torch.from_numpy(mask)


class MILNet(nn.Module, ABC):
    """Instance MLP, a pooling (set by the subclass), the empty-bag vector and the classifier.

    Parameters
    ----------
    in_features : int
        Features per instance.
    embed : int
        Width of the instance embedding (Ilse et al.: 500).
    attention : int
        Width of the attention network (Ilse et al.: 128); unused by mean pooling.
    n_classes : int
    dropout : float
        Dropout on the instance embedding during training.
    """

    def __init__(self, in_features: int, embed: int = 500, attention: int = 128, n_classes: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.in_features, self.embed, self.attention_width, self.n_classes = in_features, embed, attention, n_classes
        self.instance = nn.Sequential(nn.Linear(in_features, embed), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                      nn.Linear(embed, embed), nn.ReLU(inplace=True))
        #: The bag embedding of a patient without any microbleed (learned).
        self.empty = nn.Parameter(torch.zeros(embed))
        self.classifier = nn.Linear(embed + 1, n_classes)

    @abstractmethod
    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """(M,) unnormalised log-weights of M embedded instances; softmax over a bag gives its weights."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (B, K) and instance weights (B, N) of padded bags ``x`` (B, N, D) with ``mask`` (B, N).

        The weights sum to 1 over a bag's real instances and are exactly 0 on padding and
        in an empty bag. Only the real instances are embedded and scored (packed, then
        scattered back), so padding costs nothing and its content cannot matter.
        """
        mask = mask.bool()
        bag, slot = mask.nonzero(as_tuple=True)
        h = self.instance(x[bag, slot])  # (M, E)
        empty = ~mask.any(dim=1, keepdim=True)
        # Padding scores -inf (weight exactly 0); an empty bag's row would be softmax(-inf, ...) = NaN,
        # so it scores zeros and the mask zeroes its weights afterwards.
        logits = torch.full(mask.shape, float("-inf"), dtype=h.dtype, device=h.device)
        logits = logits.index_put((bag, slot), self.scores(h)).masked_fill(empty, 0.0)
        a = torch.softmax(logits, dim=1) * mask
        pooled = torch.zeros(mask.shape[0], h.shape[1], dtype=h.dtype, device=h.device)
        pooled = pooled.index_add(0, bag, a[bag, slot].unsqueeze(-1) * h)
        pooled = torch.where(empty, self.empty.expand_as(pooled), pooled)
        size = torch.log1p(mask.sum(dim=1).to(h.dtype)).unsqueeze(-1)
        return self.classifier(torch.cat([pooled, size], dim=1)), a


class GatedAttentionMIL(MILNet):
    """Gated attention pooling (Ilse et al. 2018, eq. 9): ``a_k ∝ exp(w^T (tanh(V h_k) ⊙ sigm(U h_k)))``."""

    def __init__(self, in_features: int, embed: int = 500, attention: int = 128, n_classes: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__(in_features, embed, attention, n_classes, dropout)
        self.V = nn.Linear(embed, attention)
        self.U = nn.Linear(embed, attention)
        self.w = nn.Linear(attention, 1)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h))).squeeze(-1)


class MeanPoolMIL(MILNet):
    """Mean pooling: every real instance weighs ``1 / n`` (the ``attention`` width is ignored)."""

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)


#: The network of each pooling name :func:`build_mil` knows.
_NETWORKS: dict[str, type[MILNet]] = {"attention": GatedAttentionMIL, "mean": MeanPoolMIL}
#: Pooling names :func:`build_mil` knows.
POOLINGS: tuple[str, ...] = tuple(_NETWORKS)


def build_mil(pooling: str, in_features: int, embed: int = 500, attention: int = 128, n_classes: int = 3,
              dropout: float = 0.0) -> MILNet:
    """The network of a pooling name (:data:`POOLINGS`)."""
    if pooling not in _NETWORKS:  # set by code (a config's choices), not by a user
        raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
    return _NETWORKS[pooling](in_features, embed, attention, n_classes, dropout)
