"""The stroke risk classifier: the pretrained encoders of ``stroke_net`` and three heads (issue 13 item 4).

After Delgrange et al. (arXiv 2411.09822): an image head, a table head and a fused head on
the features of the image-tabular pretraining, and their ensemble.

Which features: the encoders' outputs BEFORE the CLIP projections (``StrokeClipNet``'s
``image_encoder`` (64 channels at width 8, after global pooling) and ``table_encoder``
(its MLP's last layer)). Why: the projections are trained to keep only what the two
modalities share (the contrastive objective), while the stroke outcome also depends on
what only one of them sees (atrial fibrillation in the table, the burden's residual in the
image); the features before a contrastive projection head carry more of that (SimCLR,
Chen et al. 2020, section 4.2).

Each side's features are standardised by the mean and SD of the training subjects'
pretrained features (buffers ``*_mean``, ``*_sd``, set once by :meth:`set_scale` before
the heads train): a linear probe on raw pooled ReLU features (all positive, of very
different scales) trains slowly. :meth:`encode_image` and :meth:`encode_table` return the
standardised features (``h_img``, ``h_tab``).

The ensemble's logit is the mean of the three heads' logits (a product of experts: the
geometric mean of their odds). Why not the mean of the probabilities: the mean of the
logits is linear in each head, so its gradient (Grad-CAM of the ``"ensemble"`` logit) never
vanishes in a saturated sigmoid and needs no clamping back to a logit.

Frozen mode (:meth:`freeze_encoders`: a linear probe): the encoders' weights do not
require gradients and stay in eval mode even when the training loop calls ``train()``
(the group norms keep no running statistics, but dropout or batch norm added later would).
"""

from __future__ import annotations

import torch
from torch import nn

from .stroke_net import StrokeClipNet

__all__ = ["HEADS", "IMAGE_CAM_LAYER", "StrokeRiskNet"]

#: The logits :meth:`StrokeRiskNet.heads` returns, the trained three first.
HEADS: tuple[str, ...] = ("image", "table", "fused", "ensemble")
#: The image encoder's last convolutional stage (MONAI ResNet's ``layer4``), for Grad-CAM.
IMAGE_CAM_LAYER = "image_encoder.layer4"


class StrokeRiskNet(nn.Module):
    """Image and table encoders (as ``StrokeClipNet`` builds them) with an image, a table and a fused head.

    Parameters
    ----------
    table_width : int
        Encoded table features (``tasks.stroke.tabular.TableEncoding.width``).
    width, hidden, in_channels : int
        As ``StrokeClipNet``'s (the pretrained version's card holds them).
    n_reference : int
        Training subjects in the reference buffers (0 until :meth:`set_reference`; a saved
        model's card holds the number, so that its weights load into the right shapes).
    """

    #: Dotted module name of the image encoder's last convolutional stage (``core.explain.gradcam.find_layer``).
    image_cam_layer: str = IMAGE_CAM_LAYER

    def __init__(self, table_width: int, width: int = 8, hidden: int = 128, in_channels: int = 2,
                 n_reference: int = 0) -> None:
        super().__init__()
        clip = StrokeClipNet(table_width, width, embed_dim=1, hidden=hidden, in_channels=in_channels)
        self.image_encoder = clip.image_encoder
        self.table_encoder = clip.table_encoder
        self.d_img, self.d_tab = clip.image_features, hidden
        self.image_head = nn.Linear(self.d_img, 1)
        self.table_head = nn.Linear(self.d_tab, 1)
        self.fused_head = nn.Linear(self.d_img + self.d_tab, 1)
        self.frozen = False
        # the pretrained features' standardisation (module docstring)
        self.register_buffer("img_mean", torch.zeros(self.d_img))
        self.register_buffer("img_sd", torch.ones(self.d_img))
        self.register_buffer("tab_mean", torch.zeros(self.d_tab))
        self.register_buffer("tab_sd", torch.ones(self.d_tab))
        #: The training subjects' mean h_img and h_tab: the "absent modality" baseline of the modality shares.
        self.register_buffer("reference_img", torch.zeros(self.d_img))
        self.register_buffer("reference_tab", torch.zeros(self.d_tab))
        #: The training subjects' fused embeddings [h_img, h_tab] and written labels (no IDs), for the viewer.
        self.register_buffer("reference_embeddings", torch.zeros(n_reference, self.d_img + self.d_tab))
        self.register_buffer("reference_labels", torch.zeros(n_reference, dtype=torch.long))

    @classmethod
    def from_pretrained(cls, clip: StrokeClipNet, table_width: int, width: int, hidden: int,
                        in_channels: int = 2) -> StrokeRiskNet:
        """A new net whose encoders are copies of ``clip``'s (its projections, ITM head and key copies are dropped)."""
        net = cls(table_width, width, hidden, in_channels)
        net.image_encoder.load_state_dict(clip.image_encoder.state_dict())
        net.table_encoder.load_state_dict(clip.table_encoder.state_dict())
        return net

    @property
    def encoders(self) -> tuple[nn.Module, nn.Module]:
        """The image and the table encoder."""
        return self.image_encoder, self.table_encoder

    def freeze_encoders(self) -> None:
        """Linear-probe mode: the encoders get no gradient and stay in eval mode (module docstring)."""
        self.frozen = True
        for encoder in self.encoders:
            encoder.requires_grad_(False)
            encoder.eval()

    def train(self, mode: bool = True) -> StrokeRiskNet:
        """As ``nn.Module.train``, but frozen encoders stay in eval mode."""
        super().train(mode)
        if self.frozen:
            for encoder in self.encoders:
                encoder.eval()
        return self

    def raw_features(self, image: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoders' outputs before standardisation: (B, d_img) and (B, d_tab)."""
        return self.image_encoder(image), self.table_encoder(table)

    @torch.no_grad()
    def set_scale(self, raw_img: torch.Tensor, raw_tab: torch.Tensor) -> None:
        """Standardise by the mean and SD of the training subjects' raw features (an SD of 0 counts as 1)."""
        for raw, mean, sd in ((raw_img, self.img_mean, self.img_sd), (raw_tab, self.tab_mean, self.tab_sd)):
            spread = raw.float().std(dim=0, unbiased=False) if len(raw) > 1 else torch.zeros_like(sd)
            mean.copy_(raw.float().mean(dim=0))
            sd.copy_(torch.where(spread > 0, spread, torch.ones_like(spread)))

    @torch.no_grad()
    def set_reference(self, h_img: torch.Tensor, h_tab: torch.Tensor, labels: torch.Tensor) -> None:
        """Keep the training subjects' (standardised) embeddings, their means and their written labels."""
        self.reference_img = h_img.float().mean(dim=0).to(self.reference_img)
        self.reference_tab = h_tab.float().mean(dim=0).to(self.reference_tab)
        self.reference_embeddings = torch.cat([h_img, h_tab], dim=1).float().to(self.reference_embeddings)
        self.reference_labels = labels.long().to(self.reference_labels.device)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) T1 + FLAIR (each divided by its head's foreground median) -> (B, d_img) h_img."""
        return (self.image_encoder(image) - self.img_mean) / self.img_sd

    def encode_table(self, table: torch.Tensor) -> torch.Tensor:
        """(B, W) encoded clinical rows (the pretrained ``TableEncoding``) -> (B, d_tab) h_tab."""
        return (self.table_encoder(table) - self.tab_mean) / self.tab_sd

    def heads(self, h_img: torch.Tensor, h_tab: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits (B,) of :data:`HEADS`: image on h_img, table on h_tab, fused on both, ensemble their mean."""
        out = {"image": self.image_head(h_img).squeeze(1), "table": self.table_head(h_tab).squeeze(1),
               "fused": self.fused_head(torch.cat([h_img, h_tab], dim=1)).squeeze(1)}
        out["ensemble"] = (out["image"] + out["table"] + out["fused"]) / 3.0
        return out

    def forward(self, image: torch.Tensor, table: torch.Tensor) -> dict[str, torch.Tensor]:
        """``heads(encode_image(image), encode_table(table))``."""
        return self.heads(self.encode_image(image), self.encode_table(table))
