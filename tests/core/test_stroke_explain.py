"""Stroke-risk explanation (issue 13 item 6): Grad-CAM of the ensemble logit on the subject's grid, modality shares.

The nets here are tiny hand-made modules with the stroke-risk net's interface
(``encode_image``, ``encode_table``, ``heads``, ``forward``, ``image_cam_layer``,
``reference_img`` / ``reference_tab``), so that what the right answer is is known.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_neuroreview.core.anatomy import voxel_to_world
from napari_neuroreview.core.tasks.stroke.explain import (
    cam_on_subject,
    embedding_place,
    ensemble_cam,
    head_on_grid,
    modality_shares,
)

SHAPE = (12, 14, 10)  # no two axes alike: a transposed map has another shape, a flipped one moves the peak


class Regions(nn.Module):
    """Half-resolution features: channel 0 the image inside region A only, channel 1 inside region B only."""

    def __init__(self) -> None:
        super().__init__()
        half = tuple(s // 2 for s in SHAPE)
        a, b = torch.zeros(half), torch.zeros(half)
        a[1:3, 3:6, 1:3] = 1.0  # input voxels x 2-5, y 6-11, z 2-5 (A)
        b[4:6, 0:2, 3:5] = 1.0  # input voxels x 8-11, y 0-3, z 6-9 (B): A's mirror on no single axis
        self.register_buffer("masks", torch.stack([a, b]))
        self.pool = nn.AvgPool3d(2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.pool(image[:, :1]) * self.masks


class RegionNet(nn.Module):
    """Ensemble logit = ``w_img`` x mean of region A + ``w_tab`` x the table's sum; the "image" head reads region B."""

    image_cam_layer = "regions"

    def __init__(self, w_img: float = 2.0, w_tab: float = 0.5, interaction: float = 0.0) -> None:
        super().__init__()
        self.regions = Regions()
        self.w_img, self.w_tab, self.interaction = w_img, w_tab, interaction
        self.register_buffer("reference_img", torch.tensor([0.2, 0.1]))
        self.register_buffer("reference_tab", torch.tensor([0.3]))

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.regions(image).flatten(2).mean(2)

    def encode_table(self, table: torch.Tensor) -> torch.Tensor:
        return table.sum(1, keepdim=True)

    def heads(self, h_img: torch.Tensor, h_tab: torch.Tensor) -> dict[str, torch.Tensor]:
        image, table = h_img[:, 0], h_tab[:, 0]
        ensemble = self.w_img * image + self.w_tab * table + self.interaction * image * table
        return {"image": h_img[:, 1], "table": table, "fused": ensemble, "ensemble": ensemble}

    def forward(self, image: torch.Tensor, table: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.encode_image(image), self.encode_table(table))


def _image(seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(0.5, 1.5, (1, 2, *SHAPE)).astype(np.float32))


def test_cam_of_the_ensemble_peaks_in_the_region_its_logit_reads() -> None:
    net = RegionNet()
    result = ensemble_cam(net, _image(), torch.ones(1, 3))
    raw, norm = result.raw[0], result.normalised[0]
    assert raw.shape == SHAPE and result.layer == "net.regions"  # upsampled to the input grid
    peak = np.unravel_index(np.argmax(raw), SHAPE)
    assert 1.5 <= peak[0] <= 5.5 and 5.5 <= peak[1] <= 11.5 and 1.5 <= peak[2] <= 5.5, peak  # region A on each axis
    # not inverted (MONAI's default would give the peak 0): the normalised map's maximum is the raw one's
    assert norm[peak] == pytest.approx(1.0) and norm[9, 2, 7] < 0.05
    assert raw[9, 2, 7] < 0.05 * raw[peak]  # region B: read by the "image" head only, not by the ensemble
    assert raw[9, 8, 3] < 0.05 * raw[peak] and raw[3, 2, 3] < 0.05 * raw[peak]  # A with x or y mirrored: nothing


def test_cam_goes_onto_the_subjects_grid_and_affine() -> None:
    net = RegionNet()
    model_affine = np.array([[4.0, 0, 0, -24.0], [0, 4.0, 0, -30.0], [0, 0, 4.0, -10.0], [0, 0, 0, 1]])
    cam = ensemble_cam(net, _image(1), torch.ones(1, 3)).raw[0]
    # the subject's grid: 2 mm, x flipped (LAS), another field of view
    subject_affine = np.array([[-2.0, 0, 0, 30.0], [0, 2.0, 0, -34.0], [0, 0, 2.0, -14.0], [0, 0, 0, 1]])
    subject_shape = (32, 30, 28)
    on_subject = cam_on_subject(cam, model_affine, subject_affine, subject_shape, "net.regions")
    assert on_subject.raw.shape == subject_shape and np.array_equal(on_subject.affine, subject_affine)
    assert on_subject.stacked().shape == (*subject_shape, 2)
    peak = voxel_to_world(subject_affine, np.array(np.unravel_index(np.argmax(on_subject.raw), subject_shape)))
    low, high = voxel_to_world(model_affine, np.array([1.5, 5.5, 1.5])), voxel_to_world(model_affine, [5.5, 11.5, 5.5])
    assert np.all(peak >= low - 1e-6) and np.all(peak <= high + 1e-6), (peak, low, high)  # region A, in world mm
    assert on_subject.normalised.max() == pytest.approx(1.0) and on_subject.normalised.min() == 0.0
    # mass is kept where the grids overlap: the map's world integral within a few percent
    assert on_subject.raw.sum() * 8.0 == pytest.approx(cam.sum() * 64.0, rel=0.05)


def test_the_cam_is_masked_to_the_head_before_it_is_normalised_and_the_removed_mass_is_said() -> None:
    net = RegionNet()
    cam = ensemble_cam(net, _image(2), torch.ones(1, 3)).raw[0]
    # a head in x 6-11 only: region A (x 2-5) lies outside it, so nearly all of the map's mass is removed
    t1 = np.zeros(SHAPE, np.float32)
    t1[6:, :, :] = 100.0
    t1[8:10, 6:8, 4:6] = 20.0  # a dark hole inside the head (CSF) stays head
    head = head_on_grid(t1)
    assert head[6:].all() and not head[:6].any()
    out = cam_on_subject(cam, np.eye(4), np.eye(4), SHAPE, "net.regions", head=head, feature_grid=(6, 7, 5))
    assert out.outside_head == pytest.approx(float(cam[:6].sum() / cam.sum()), rel=1e-5) and out.outside_head > 0.9
    assert not out.raw[:6].any() and np.allclose(out.raw[6:], cam[6:], atol=1e-5) and out.feature_grid == (6, 7, 5)
    assert out.normalised.max() == pytest.approx(1.0) and np.argmax(out.normalised) == np.argmax(out.raw)
    unmasked = cam_on_subject(cam, np.eye(4), np.eye(4), SHAPE, "net.regions")
    assert unmasked.outside_head is None and unmasked.normalised[6:].max() < 0.5  # A would own the scale


def test_a_net_that_ignores_the_table_gives_the_image_the_whole_share() -> None:
    net = RegionNet(w_tab=0.0)
    h_img, h_tab = net.encode_image(_image()), net.encode_table(torch.full((1, 3), 2.0))
    share = modality_shares(net, h_img, h_tab)[0]
    assert share.image == 1.0 and share.table == 0.0 and share.phi_table == 0.0
    assert share.to_json() == {"image": 1.0, "table": 0.0}
    net = RegionNet(w_img=0.0)  # and the other way round
    assert modality_shares(net, h_img, h_tab)[0].table == 1.0


def test_shapley_values_of_a_known_logit_and_efficiency() -> None:
    # f = I + 2 T + I x T on scalar embeddings; reference I0 = 0.2, T0 = 0.3; subject I = 3, T = 2
    net = RegionNet(w_img=1.0, w_tab=2.0, interaction=1.0)
    f = lambda i, t: i + 2 * t + i * t
    h_img, h_tab = torch.tensor([[3.0, 0.0]]), torch.tensor([[2.0]])
    share = modality_shares(net, h_img, h_tab)[0]
    phi_i = 0.5 * ((f(3, 2) - f(0.2, 2)) + (f(3, 0.3) - f(0.2, 0.3)))
    phi_t = 0.5 * ((f(3, 2) - f(3, 0.3)) + (f(0.2, 2) - f(0.2, 0.3)))
    assert share.phi_image == pytest.approx(phi_i, rel=1e-6) and share.phi_table == pytest.approx(phi_t, rel=1e-6)
    assert share.phi_image + share.phi_table == pytest.approx(share.logit - share.reference_logit, rel=1e-6)
    assert share.image == pytest.approx(abs(phi_i) / (abs(phi_i) + abs(phi_t)))
    # the subject equal to the reference: neither modality moves the logit, equal shares
    same = modality_shares(net, torch.tensor([[0.2, 0.0]]), torch.tensor([[0.3]]))[0]
    assert (same.image, same.table) == (0.5, 0.5)


def test_the_subject_among_the_training_embeddings() -> None:
    rng = np.random.default_rng(3)
    net = RegionNet()
    # 30 training subjects: strokes around (+4, ...), no strokes around (-4, ...), in a 3-d fused embedding
    labels = np.repeat([0, 1], 15)
    reference = rng.normal(0.0, 0.5, (30, 3)) + np.where(labels[:, None] > 0, 4.0, -4.0) * np.array([1.0, 0.3, 0.0])
    net.register_buffer("reference_embeddings", torch.from_numpy(reference).float())
    net.register_buffer("reference_labels", torch.from_numpy(labels))
    h_img, h_tab = torch.tensor([[3.9, 1.2]]), torch.tensor([[0.1]])  # among the strokes
    place = embedding_place(net, h_img, h_tab, neighbours=10)
    assert place.reference.shape == (30, 2) and place.labels.tolist() == labels.tolist()
    assert place.neighbours == 10 and place.neighbour_strokes == 10
    assert place.explained[0] > 0.8 >= place.explained[1]  # the clusters' axis first
    centre = place.reference[labels == 1].mean(axis=0)
    assert np.linalg.norm(place.subject - centre) < 0.3 * np.linalg.norm(centre - place.reference[labels == 0].mean(0))
    # a training subject itself lands on its own point; a net without references has no place
    same = embedding_place(net, torch.from_numpy(reference[:1, :2]).float(), torch.from_numpy(reference[:1, 2:]).float())
    assert np.allclose(same.subject, place.reference[0], atol=1e-5) and same.neighbour_strokes == 5
    net.register_buffer("reference_embeddings", torch.zeros(0, 3))
    assert embedding_place(net, h_img, h_tab) is None
