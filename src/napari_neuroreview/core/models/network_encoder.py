"""Stage 1 of the pre/post model: encoders for an ICA network's spatial map and time course.

A (scan, network) pair is seen twice: as a 3D spatial map on the fixed MNI model grid
(``core.anatomy.atlas.model_grid()``, 6 mm) and as its 1D time course resampled to TR 2 s. Each
modality has its own small encoder and projection head; both heads end on the same unit
sphere (``embed_dim``, 32 by default), where the training loss
(``core.tasks.networks.train``) pulls a map towards its own time course (cross-modal
InfoNCE) and groups pairs of the same (network, state) together (supervised contrastive).

Why these shapes:

* **Map encoder: three strided convolutions, then a coarse 4 x 4 x 4 average pool, not a
  global pool.** Maps live in MNI space, so *where* a loading sits carries meaning (left
  vs right for language, which node of a network gained or lost loading); a global pool
  would throw that away. On the 6 mm model grid the last feature map is 4 x 4 x 4 cells
  of about 40 mm, so the pool keeps them all and only makes the encoder independent of
  the exact grid shape (tests use tiny grids). A 3 x 3 x 3 pool was worse on a pilot
  phantom cohort (mean held-out AUC 0.70 against 0.76, 16 patients; the surgery effect
  of the phantom moves loading between neighbouring nodes). GroupNorm keeps results
  independent of batch size, so training batches and one-scan inference agree, and CPU
  and GPU agree.
* **Time-course encoder: 1D convolutions and a global (mean and standard deviation) pool
  over time.** Resting-state time courses are not time-locked across scans: only their
  temporal texture (spectrum, autocorrelation, bursts) can differ between pre and post,
  and a global pool over convolution features is shift-invariant, as it should be. The
  input has a fixed length (:data:`TC_LENGTH` samples at :data:`MODEL_TR_S`, 256 s) only
  so that a batch is one tensor: training draws random windows (an augmentation), and
  inference averages the embeddings of a few evenly spaced windows. The series is
  resampled to TR 2 s first because convolution kernels count samples: at TR 0.72 s the
  same kernel would see a three times lower frequency.
* **Network identity is an input.** A learned embedding of the network index is
  concatenated to both heads' inputs, so that the five networks stay apart on the sphere
  even when two of them happen to look alike in one scan, and one encoder serves all
  five networks (five times the training pairs of five separate encoders).
* **Few parameters** (about 0.2 M at ``width=8``): 56 patients give 560 pairs; five
  cross-validation folds must train in minutes on two CPU cores.

This module holds ``nn.Module`` s only: no I/O, no losses, no training loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "MODEL_TR_S",
    "TC_LENGTH",
    "MapEncoder3D",
    "NetworkPairEncoder",
    "ProjectionHead",
    "TimecourseEncoder1D",
]

#: Sampling interval (s) that time courses are resampled to before the 1D encoder.
MODEL_TR_S = 2.0
#: Samples per time-course window fed to the 1D encoder (256 s at TR 2 s).
TC_LENGTH = 128


def _groups(channels: int) -> int:
    """GroupNorm groups: 4 when the channels allow it (at least 2 channels per group)."""
    return 4 if channels % 4 == 0 and channels >= 8 else 1


class MapEncoder3D(nn.Module):
    """Encode a spatial map (N, 1, X, Y, Z) into a feature vector (N, ``out_dim``).

    Parameters
    ----------
    width : int
        Channels of the first block (one strided convolution); doubled at each of the
        next two (a strided and a plain convolution each).
    pool : int
        Side of the adaptive average pool (``pool**3`` cells keep a coarse layout).
    out_dim : int
        Length of the output feature vector (before the projection head).
    """

    def __init__(self, width: int = 8, pool: int = 4, out_dim: int = 64) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = []
        cin = 1
        for level, cout in enumerate((w, 2 * w, 4 * w)):
            layers += [
                nn.Conv3d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(_groups(cout), cout),
                nn.SiLU(inplace=True),
            ]
            if level > 0:  # a second conv at full resolution would cost 2.5x the time for little
                layers += [
                    nn.Conv3d(cout, cout, 3, padding=1, bias=False),
                    nn.GroupNorm(_groups(cout), cout),
                    nn.SiLU(inplace=True),
                ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(pool)
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(4 * w * pool**3, out_dim), nn.SiLU())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, X, Y, Z) -> (N, out_dim)."""
        return self.fc(self.pool(self.features(x)))


class TimecourseEncoder1D(nn.Module):
    """Encode a time-course window (N, 1, L) into a feature vector (N, ``out_dim``).

    Parameters
    ----------
    width : int
        Channels of the first block; doubled at the next two.
    out_dim : int
        Length of the output feature vector (before the projection head).

    Notes
    -----
    The receptive field of the last layer is about 40 samples (80 s at TR 2 s), long
    enough for the slowest resting-state band (0.01 Hz is a 100 s period, seen in part)
    and the mean + standard deviation pool then summarises the whole window.
    """

    def __init__(self, width: int = 8, out_dim: int = 64) -> None:
        super().__init__()
        w = 2 * width
        self.features = nn.Sequential(
            nn.Conv1d(1, w, 7, padding=3, bias=False),
            nn.GroupNorm(_groups(w), w),
            nn.SiLU(inplace=True),
            nn.Conv1d(w, 2 * w, 5, stride=2, padding=2, bias=False),
            nn.GroupNorm(_groups(2 * w), 2 * w),
            nn.SiLU(inplace=True),
            nn.Conv1d(2 * w, 2 * w, 5, stride=2, padding=2, bias=False),
            nn.GroupNorm(_groups(2 * w), 2 * w),
            nn.SiLU(inplace=True),
        )
        self.fc = nn.Sequential(nn.Dropout(0.1), nn.Linear(4 * w, out_dim), nn.SiLU())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, L) -> (N, out_dim)."""
        h = self.features(x)
        pooled = torch.cat([h.mean(dim=2), h.std(dim=2, unbiased=False)], dim=1)
        return self.fc(pooled)


class ProjectionHead(nn.Module):
    """Features + network embedding -> a unit vector of length ``embed_dim``.

    Unit length because both losses compare embeddings by cosine similarity; the head
    (not the encoder output) is what the losses shape, as in SimCLR/CLIP.
    """

    def __init__(self, in_dim: int, embed_dim: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, 64), nn.SiLU(), nn.Linear(64, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) -> (N, embed_dim), L2-normalised."""
        return F.normalize(self.net(x), dim=1)


class NetworkPairEncoder(nn.Module):
    """Both encoders, the network embedding and both projection heads.

    Parameters
    ----------
    n_networks : int
        Number of networks (5: ``core.anatomy.atlas.NETWORKS``); network indices are inputs.
    width : int
        Width of both encoders (see :class:`MapEncoder3D`, :class:`TimecourseEncoder1D`).
    embed_dim : int
        Length of the normalised embeddings.
    network_dim : int
        Length of the learned network embedding concatenated to the heads' inputs
        (0 turns network conditioning off).
    pool : int
        Side of the map encoder's adaptive pool.
    """

    def __init__(self, n_networks: int = 5, width: int = 8, embed_dim: int = 32,
                 network_dim: int = 8, pool: int = 4) -> None:
        super().__init__()
        self.n_networks, self.width, self.embed_dim = n_networks, width, embed_dim
        self.network_dim, self.pool = network_dim, pool
        self.map_encoder = MapEncoder3D(width, pool)
        self.tc_encoder = TimecourseEncoder1D(width)
        self.network_embedding = nn.Embedding(n_networks, max(network_dim, 1))
        self.map_head = ProjectionHead(self.map_encoder.out_dim + network_dim, embed_dim)
        self.tc_head = ProjectionHead(self.tc_encoder.out_dim + network_dim, embed_dim)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, for the model card (``NetworkPairEncoder(**config)``)."""
        return {"n_networks": self.n_networks, "width": self.width, "embed_dim": self.embed_dim,
                "network_dim": self.network_dim, "pool": self.pool}

    def _condition(self, h: torch.Tensor, network: torch.Tensor) -> torch.Tensor:
        if self.network_dim <= 0:
            return h
        return torch.cat([h, self.network_embedding(network)], dim=1)

    def embed_maps(self, maps: torch.Tensor, network: torch.Tensor, before_head: bool = False) -> torch.Tensor:
        """Maps (N, X, Y, Z) or (N, 1, X, Y, Z) and network indices (N,) -> (N, embed_dim).

        ``before_head=True`` returns the encoder's features (N, 64) instead: the
        representation before the projection head, which SimCLR (Chen et al. 2020)
        found the better input for a linear classifier.
        """
        if maps.ndim == 4:
            maps = maps.unsqueeze(1)
        h = self.map_encoder(maps)
        return h if before_head else self.map_head(self._condition(h, network))

    def embed_timecourses(self, tcs: torch.Tensor, network: torch.Tensor, before_head: bool = False
                          ) -> torch.Tensor:
        """Windows (N, L) or (N, 1, L) and network indices (N,) -> (N, embed_dim) (or (N, 64) features)."""
        if tcs.ndim == 2:
            tcs = tcs.unsqueeze(1)
        h = self.tc_encoder(tcs)
        return h if before_head else self.tc_head(self._condition(h, network))

    def forward(self, maps: torch.Tensor, tcs: torch.Tensor, network: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(map embeddings, time-course embeddings), each (N, embed_dim) on the unit sphere."""
        return self.embed_maps(maps, network), self.embed_timecourses(tcs, network)
