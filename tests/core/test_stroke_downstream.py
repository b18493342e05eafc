"""Stroke downstream (issue 13 item 4): the risk net's interface, frozen vs trainable heads, stratified batches
that keep every subject, the signed Youden threshold, the split shared with pretraining, the test metrics."""

from __future__ import annotations

import torch

from napari_neuroreview.core.explain.gradcam import find_layer
from napari_neuroreview.core.models.stroke_risk import HEADS, StrokeRiskNet


def test_risk_net_interface_shapes_and_cam_layer() -> None:
    torch.manual_seed(0)
    net = StrokeRiskNet(table_width=9, width=2, hidden=16)
    image, table = torch.rand(3, 2, 12, 14, 12), torch.rand(3, 9)
    h_img, h_tab = net.encode_image(image), net.encode_table(table)
    assert h_img.shape == (3, net.d_img) and h_tab.shape == (3, net.d_tab)
    out = net.heads(h_img, h_tab)
    assert tuple(out) == HEADS and all(v.shape == (3,) for v in out.values())
    assert torch.allclose(out["ensemble"], (out["image"] + out["table"] + out["fused"]) / 3)
    assert all(torch.equal(a, b) for a, b in zip(net(image, table).values(), out.values()))
    assert isinstance(find_layer(net, net.image_cam_layer), torch.nn.Module)
    for name in ("reference_img", "reference_tab", "reference_embeddings", "reference_labels"):
        assert name in dict(net.named_buffers())
