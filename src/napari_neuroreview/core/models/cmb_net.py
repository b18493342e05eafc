"""The microbleed patch network: one small 3D U-Net that classifies and segments.

Input: (N, 3, 20, 20, 20) patches at 0.8 mm on world axes: local contrast of the SWI
magnitude, the high-pass phase (radians; zeros when no phase was acquired) and a constant
channel saying whether phase is present, so one model serves scans with and without it.
Output: a logit per patch (is the centre a microbleed?) and a 20^3 segmentation logit
map of that microbleed (its visible extent, blooming included).

Why this shape: the classification head sees the whole 16 mm context (a vein continues
out of the patch, a microbleed does not; iron is large and bilateral) and the decoder
gives the mask at the patch resolution; GroupNorm keeps results independent of batch
size, so the CPU and GPU paths agree.
"""

from __future__ import annotations

import torch
from torch import nn

IN_CHANNELS = 3


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False),
        nn.GroupNorm(4, cout),
        nn.SiLU(inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False),
        nn.GroupNorm(4, cout),
        nn.SiLU(inplace=True),
    )


class CMBPatchNet(nn.Module):
    """Classify and segment 20^3 candidate patches.

    Parameters
    ----------
    width : int
        Channels of the first level (doubled at each of the two lower levels).
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        w = width
        self.width = width
        self.enc1 = _block(IN_CHANNELS, w)
        self.enc2 = _block(w, 2 * w)
        self.enc3 = _block(2 * w, 4 * w)
        self.pool = nn.MaxPool3d(2)
        self.up2 = nn.ConvTranspose3d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose3d(2 * w, w, 2, stride=2)
        self.dec1 = _block(2 * w, w)
        self.seg = nn.Conv3d(w, 1, 1)
        self.cls = nn.Sequential(nn.Linear(8 * w, 4 * w), nn.SiLU(inplace=True), nn.Linear(4 * w, 1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder features at 20^3, 10^3 and 5^3."""
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        return e1, e2, self.enc3(self.pool(e2))

    def classify(self, e3: torch.Tensor) -> torch.Tensor:
        """Class logit (N,) from the deepest features: the centre and the whole patch."""
        centre = e3[:, :, 2:3, 2:3, 2:3].mean(dim=(2, 3, 4))
        pooled = e3.mean(dim=(2, 3, 4))
        return self.cls(torch.cat([centre, pooled], dim=1)).squeeze(1)

    def segment(self, e1: torch.Tensor, e2: torch.Tensor, e3: torch.Tensor) -> torch.Tensor:
        """Segmentation logits (N, 20, 20, 20).

        Kept separate so that inference decodes only the patches the classifier keeps
        (a few per scan) rather than every candidate: that halves the time per scan.
        """
        d2 = self.dec2(torch.cat([self.up2(e3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.seg(d1).squeeze(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (class logit (N,), segmentation logits (N, 20, 20, 20))."""
        e1, e2, e3 = self.encode(x)
        return self.classify(e3), self.segment(e1, e2, e3)
