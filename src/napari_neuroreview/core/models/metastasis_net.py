"""The metastasis origin networks: 3D ResNet6 or ResNet18 with attention, three node logits.

Input: (N, C, D, H, W), one channel per MR sequence (any single sequence or combination:
``C`` is fixed when the network is built). Output: (N, 3) logits of the hierarchy's three
binary nodes in :data:`~napari_neuroreview.core.tasks.metastasis.classes.NODES` order
(lung vs non-lung, SCLC vs NSCLC, breast vs GI); :func:`node_probabilities` turns them
into probabilities and ``classes.four_class`` into the four origins.

Architecture (Jiao et al., JMRI 2023: 3D ResNet6 and ResNet18 with attention, Grad-CAM
heatmaps; no ResNet6 exists in MONAI or MedicalNet, so it is written here):

* **ResNet6** (He et al. 2016, "Deep residual learning for image recognition", CVPR): a
  stem (3x3x3 conv + norm + ReLU) and two residual blocks, the second strided (half the
  grid, twice the channels). Six conv layers counting the strided block's 1x1 shortcut.
* **ResNet18**: MONAI's ``resnet18`` (``monai.networks.nets.resnet``), its four stages
  at ``width, 2 width, 4 width, 8 width`` channels (``width=64`` is the usual ResNet18).
* **Attention** after the last residual stage, before pooling, written once for both:
  CBAM-3D (Woo et al. 2018, "CBAM: Convolutional block attention module", ECCV: channel
  attention from the average- and max-pooled descriptors through one shared MLP, then
  spatial attention from the channel-wise average and maximum through a 7x7x7 conv) or
  squeeze-excitation (Hu et al. 2018, "Squeeze-and-excitation networks", CVPR). Both
  MLPs reduce by 16 as in the papers (MONAI's ``ChannelSELayer`` defaults to 2), to no
  fewer than 4 units so that narrow networks keep a few.
* Global average pooling, dropout, a linear head with three outputs.

Why batch norm (He et al.'s, MONAI's default) and not the GroupNorm of the microbleed
network: a per-sample norm over space right before global average pooling centres every
feature map on its own mean, so the pooled vector no longer says how much of a feature
the crop holds. On the blob task of ``tests/core/test_metastasis_net.py`` (ResNet6 + CBAM,
25 steps) the lung node's loss went 0.70 -> 0.64 with GroupNorm and its Grad-CAM was
lower on the blob than away from it; with batch norm 0.68 -> 0.46 and six times higher
on the blob. In eval mode batch norm uses its running statistics, so a lesion's output
does not depend on its batch.

Grad-CAM: :attr:`MetastasisNet.cam_layer` names the attention block (an identity when
``attention=None``), so ``core.explain.grad_cam(model, x, model.cam_layer, target=k)``
explains node ``k`` from the attended features, on the input grid.

This module holds ``nn.Module`` s only; the hierarchical loss is the task's
(``core.tasks.metastasis.loss``).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.networks.nets import resnet18
from torch import nn
from torch.nn import functional as F

__all__ = ["ARCHS", "ATTENTIONS", "CBAM3d", "MetastasisNet", "ResNet6", "SqueezeExcitation3d",
           "build_attention", "node_probabilities"]

#: Backbones :class:`MetastasisNet` builds.
ARCHS: tuple[str, ...] = ("resnet6", "resnet18")
#: Attention blocks after the last residual stage (None: none).
ATTENTIONS: tuple[str | None, ...] = ("cbam", "se", None)
#: Outputs: one logit per hierarchy node (classes.NODES).
N_NODES = 3


def _channel_mlp(channels: int, reduction: int) -> nn.Sequential:
    """The excitation MLP of SE and CBAM: ``channels -> channels / reduction (>= 4) -> channels``."""
    hidden = max(4, channels // reduction)
    return nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))


class SqueezeExcitation3d(nn.Module):
    """Squeeze-excitation (Hu et al. 2018): channels rescaled by an MLP of their global averages."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.mlp = _channel_mlp(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.mlp(x.mean(dim=(2, 3, 4))))
        return x * w[:, :, None, None, None]


class CBAM3d(nn.Module):
    """CBAM in 3D (Woo et al. 2018): channel attention, then spatial attention, both sigmoid gates.

    Why both pooled descriptors: the average says how much of a feature the crop holds,
    the maximum whether it is present anywhere (a small enhancing rim); the shared MLP
    weighs them alike. The spatial gate then says where (the lesion, its oedema).
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.mlp = _channel_mlp(channels, reduction)
        self.spatial = nn.Conv3d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        channel = torch.sigmoid(self.mlp(flat.mean(-1)) + self.mlp(flat.amax(-1)))
        x = x * channel[:, :, None, None, None]
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


def build_attention(kind: str | None, channels: int) -> nn.Module:
    """The attention block ``kind`` on ``channels`` features; an identity for None (a cam layer still)."""
    if kind == "cbam":
        return CBAM3d(channels)
    if kind == "se":
        return SqueezeExcitation3d(channels)
    if kind is None:
        return nn.Identity()
    raise ValueError(f"attention must be one of {ATTENTIONS}, not {kind!r}")


class _ResidualBlock(nn.Module):
    """Two 3x3x3 conv + norm, ReLU between and after the sum; a 1x1 shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


#: PyTorch sends a CPU float convolution of ONE input with channels * depth * height at or
#: below this to its single-threaded ``slow_conv3d`` (a rule written for 2D images in
#: ``aten/src/ATen/native/Convolution.cpp``, ``use_mkldnn``), unless the kernel is wider than 3.
_NATIVE_CONV_ELEMENTS = 20480
#: The most channels :class:`_StemConv3d` pads to; smaller inputs are cheap either way.
_MAX_PADDED_CHANNELS = 16


class _StemConv3d(nn.Conv3d):
    """A 3x3x3 conv that, on the CPU, zero-pads few input channels so PyTorch takes oneDNN.

    Why: one lesion crop of 64^3 with five sequences is 5 * 64 * 64 = 20480 by PyTorch's
    rule, so the stem ran on the slow path: 0.41 s forward against 0.11 s with zero channels
    added (2 threads; Grad-CAM no longer differentiates down to the stem).
    Zero channels times zero weights add nothing: the output is the same convolution; the
    parameters keep their real shape (``in_channels`` of the model card).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, d, h = x.shape[:4]
        need = _NATIVE_CONV_ELEMENTS // (d * h) + 1
        if n != 1 or x.device.type != "cpu" or x.dtype != torch.float32 or not c < need <= _MAX_PADDED_CHANNELS:
            return super().forward(x)
        extra = need - c
        return F.conv3d(F.pad(x, (0, 0, 0, 0, 0, 0, 0, extra)), F.pad(self.weight, (0, 0, 0, 0, 0, 0, 0, extra)),
                        self.bias, self.stride, self.padding, self.dilation, self.groups)


class ResNet6(nn.Module):
    """Stem and two residual blocks (the second strided): features (N, 2 width, D/2, H/2, W/2)."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(_StemConv3d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm3d(width), nn.ReLU())
        self.block1 = _ResidualBlock(width, width)
        self.block2 = _ResidualBlock(width, 2 * width, stride=2)
        self.out_channels = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(self.stem(x)))


def _resnet18_features(in_channels: int, width: int, stem_stride: int = 1) -> tuple[nn.Sequential, int]:
    """MONAI's 3D ResNet18 up to its last stage (no pooling, no head) and its output channels.

    Why take MONAI's layers rather than call its forward: the attention must sit between
    the last stage and the pooling, and its ``fc`` would be a fourth head to keep unused.
    ``stem_stride`` is MONAI's ``conv1_t_stride`` (MONAI's default 1; 2 in He et al.'s
    ResNet and MedicalNet's 3D ResNets).
    """
    net = resnet18(spatial_dims=3, n_input_channels=in_channels, num_classes=N_NODES, widen_factor=width / 64,
                   conv1_t_stride=stem_stride)
    features = nn.Sequential()
    for name in ("conv1", "bn1", "act", "maxpool", "layer1", "layer2", "layer3", "layer4"):
        features.add_module(name, getattr(net, name))
    return features, 8 * width


class MetastasisNet(nn.Module):
    """Backbone, attention, global average pooling and three node logits.

    Parameters
    ----------
    in_channels : int
        Sequences stacked as channels (1 to 5 in the study; any number works).
    arch : str
        ``'resnet6'`` or ``'resnet18'`` (:data:`ARCHS`).
    attention : str or None
        ``'cbam'``, ``'se'`` or None (:data:`ATTENTIONS`).
    width : int
        Channels of the first stage (ResNet6: stem and first block; ResNet18: ``width=64``
        is MONAI's default).
    dropout : float
        Dropout before the linear head during training.
    stem_stride : int
        Stride of ResNet18's 7x7x7 stem (ResNet6 has none: its crops are 16 voxels). 1 is
        MONAI's default, kept for lesion crops; 2 is He et al.'s and MedicalNet's, for whole
        brains: at 128^3 with width 64 the stride-1 stem alone is 2.3e11 multiply-adds (two
        thirds of the forward pass), and every later stage works on 8 times the voxels.

    Attributes
    ----------
    cam_layer : str
        Dotted name of the attention block's output, the layer Grad-CAM explains.
    """

    cam_layer: str = "attention"

    def __init__(self, in_channels: int, arch: str = "resnet6", attention: str | None = "cbam",
                 width: int = 16, dropout: float = 0.0, stem_stride: int = 1) -> None:
        super().__init__()
        if arch not in ARCHS:  # set by code or a checked model card, not typed by a user: a bug
            raise ValueError(f"arch must be one of {ARCHS}, not {arch!r}")
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be >= 1, got {in_channels} and {width}")
        if stem_stride not in (1, 2) or (stem_stride != 1 and arch != "resnet18"):
            raise ValueError(f"stem_stride is 1, or 2 for resnet18 only; got {stem_stride} for {arch}")
        self.in_channels, self.arch, self.attention_kind, self.width = in_channels, arch, attention, width
        self.backbone: nn.Module
        if arch == "resnet6":
            self.backbone = ResNet6(in_channels, width)
            channels = self.backbone.out_channels
        else:
            self.backbone, channels = _resnet18_features(in_channels, width, stem_stride)
        self.attention = build_attention(attention, channels)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, N_NODES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, D, H, W) sequences -> (N, 3) node logits (classes.NODES order)."""
        features = self.attention(self.backbone(x))
        return self.head(self.dropout(features.mean(dim=(2, 3, 4))))


def node_probabilities(logits: torch.Tensor) -> np.ndarray:
    """(N, 3) node probabilities (sigmoid of the logits) as float64 numpy, for ``classes.four_class``."""
    return torch.sigmoid(logits.detach().float()).cpu().numpy().astype(np.float64).reshape(-1, N_NODES)
