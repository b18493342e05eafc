"""The stroke model's encoders: a MONAI 3D ResNet for T1 + FLAIR, an MLP for the table, an ITM head.

After Delgrange et al. (arXiv 2411.09822): the two encoders are aligned by CLIP InfoNCE and
an image-tabular matching (ITM) head that tells a true (image, table) pair from a hard
negative one. Here the ITM head is an MLP on ``[h_img, h_tab, h_img * h_tab]`` of the two
encoders' features (the paper fuses by cross-attention; an MLP keeps it small for a CPU).

Normalisation: group norm in the ResNet, none in the MLP. Why: batch norm's statistics
would depend on how a global batch is cut across ``torchrun`` ranks (and on the batch
size), so a run on two processes would not be the run on one.

Hard negatives (:meth:`StrokeClipNet.forward`): per image, one tabular row drawn from the
softmax of its contrastive similarities to the batch's other rows, and per tabular row one
image drawn likewise (ALBEF's recipe), by inverse CDF from uniform numbers the caller draws
(the loop's seeded generator). Under ``torchrun`` the features are gathered across ranks
first (``core.train.distributed.gather_with_grad``): every rank computes the global batch's
projections, similarities and ITM pairs, so the loss is the single-process one.
"""

from __future__ import annotations

import copy

import torch
from monai.networks.nets import ResNet
from torch import nn
from torch.nn import functional as F

from ..train.distributed import gather_with_grad

__all__ = ["GROUP_CHANNELS", "StrokeClipNet", "sample_hard"]

#: Channels per group of the ResNet's group norms.
GROUP_CHANNELS = 4
#: The online modules that have a momentum copy.
_ONLINE: tuple[str, ...] = ("image_encoder", "table_encoder", "image_projection", "table_projection")


def sample_hard(similarity: torch.Tensor, uniform: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per row, a column other than its own drawn from ``softmax(similarity / temperature)``.

    ``uniform`` (n,) in [0, 1): inverse-CDF draws, so the caller's generator decides.
    """
    logits = (similarity.detach() / temperature).float()
    logits = logits.masked_fill(torch.eye(len(logits), dtype=torch.bool, device=logits.device), float("-inf"))
    cdf = torch.softmax(logits, dim=1).cumsum(dim=1)
    # right: the first column whose cdf exceeds the draw, so a column of probability 0 is never chosen
    index = torch.searchsorted(cdf, (uniform.to(cdf) * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    return index.clamp(max=len(logits) - 1)


def _group_norm_everywhere(module: nn.Module) -> None:
    """Swap every BatchNorm3d below ``module`` for a GroupNorm of :data:`GROUP_CHANNELS` channels a group.

    Why: MONAI's ResNet applies its ``norm`` argument to the stem only; its blocks build
    BatchNorm3d whatever is asked (monai 1.6), and batch statistics would make a rank's
    features depend on its shard (module docstring). Not instance norm: the last stage
    of a small grid is one voxel, where a channel alone has no variance.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm3d):
            channels = child.num_features
            setattr(module, name, nn.GroupNorm(max(1, channels // GROUP_CHANNELS), channels))
        else:
            _group_norm_everywhere(child)


class StrokeClipNet(nn.Module):
    """Image and tabular encoders with projections onto the unit sphere, and the ITM head.

    Parameters
    ----------
    table_width : int
        Encoded table features (``tasks.stroke.tabular.TableEncoding.width``).
    width : int
        Channels of the ResNet's first stage (doubled per stage; 8 trains on a CPU).
    embed_dim : int
        The shared embedding (CLIP) dimension.
    hidden : int
        Tabular MLP width, and the ITM head's.
    in_channels : int
        Image channels (T1 and FLAIR: 2).
    """

    def __init__(self, table_width: int, width: int = 8, embed_dim: int = 64, hidden: int = 128,
                 in_channels: int = 2) -> None:
        super().__init__()
        self.image_encoder = ResNet("basic", [1, 1, 1, 1], [width, 2 * width, 4 * width, 8 * width], spatial_dims=3,
                                    n_input_channels=in_channels, conv1_t_size=3, conv1_t_stride=1, feed_forward=False,
                                    norm="batch")
        _group_norm_everywhere(self.image_encoder)
        self.image_features = 8 * width
        self.table_encoder = nn.Sequential(nn.Linear(table_width, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                           nn.ReLU())
        self.image_projection = nn.Linear(self.image_features, embed_dim)
        self.table_projection = nn.Linear(hidden, embed_dim)
        self.itm_head = nn.Sequential(nn.Linear(3 * embed_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.image_to_shared = nn.Linear(self.image_features, embed_dim)
        self.table_to_shared = nn.Linear(hidden, embed_dim)
        #: The momentum (key) copy of the encoders and projections: an exponential moving average of
        #: the online ones, never trained by gradients, whose embeddings fill the queue (MoCo).
        self.key = nn.ModuleDict({name: copy.deepcopy(getattr(self, name)) for name in _ONLINE})
        self.key.requires_grad_(False)

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """key <- momentum x key + (1 - momentum) x online, for every weight of :data:`_ONLINE`."""
        for name in _ONLINE:
            for k, q in zip(self.key[name].parameters(), getattr(self, name).parameters()):
                k.mul_(momentum).add_(q.detach(), alpha=1.0 - momentum)

    def embed(self, image: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-norm CLIP embeddings of this process's rows (no gathering: evaluation, later heads)."""
        return (F.normalize(self.image_projection(self.image_encoder(image)), dim=1),
                F.normalize(self.table_projection(self.table_encoder(table)), dim=1))

    def itm_logits(self, h_img: torch.Tensor, h_tab: torch.Tensor) -> torch.Tensor:
        """Match logit of each (image features, table features) row pair."""
        a, b = self.image_to_shared(h_img), self.table_to_shared(h_tab)
        return self.itm_head(torch.cat([a, b, a * b], dim=1)).squeeze(1)

    def forward(self, image: torch.Tensor, table: torch.Tensor, uniform: torch.Tensor, temperature: float,
                momentum: float = 0.99) -> dict[str, torch.Tensor]:
        """The global batch's embeddings, momentum keys, and ITM logits and targets (positives, then the hard
        negatives).

        ``uniform`` (n, 2): this rank's rows' draws for the hard table and hard image negative.
        The key encoders move first (:meth:`momentum_update`: the online weights are those of
        the last optimiser step, the same on every rank).
        """
        self.momentum_update(momentum)
        with torch.no_grad():
            k_img = gather_with_grad(F.normalize(self.key["image_projection"](self.key["image_encoder"](image)), dim=1))
            k_tab = gather_with_grad(F.normalize(self.key["table_projection"](self.key["table_encoder"](table)), dim=1))
        h_img = gather_with_grad(self.image_encoder(image))
        h_tab = gather_with_grad(self.table_encoder(table))
        uniform = gather_with_grad(uniform)
        z_img = F.normalize(self.image_projection(h_img), dim=1)
        z_tab = F.normalize(self.table_projection(h_tab), dim=1)
        similarity = z_img @ z_tab.T
        hard_table = sample_hard(similarity, uniform[:, 0], temperature)
        hard_image = sample_hard(similarity.T, uniform[:, 1], temperature)
        n = len(h_img)
        logits = self.itm_logits(torch.cat([h_img, h_img, h_img[hard_image]]),
                                 torch.cat([h_tab, h_tab[hard_table], h_tab]))
        targets = torch.cat([torch.ones(n), torch.zeros(2 * n)]).to(logits)
        return {"z_img": z_img, "z_tab": z_tab, "k_img": k_img, "k_tab": k_tab, "itm_logits": logits,
                "itm_targets": targets}
