"""Why the stroke-risk model says what it says: Grad-CAM on the subject's T1, and each modality's share.

Grad-CAM (:func:`ensemble_cam`): of the ENSEMBLE logit (the one the risk is read from),
taken on the image branch at ``net.image_cam_layer`` (the image encoder's last
convolutional stage) by :func:`core.explain.grad_cam`, the project's one Grad-CAM: it keeps
the raw map and a min-max normalised one that is NOT inverted (MONAI's default normaliser
returns ``1 - scaled``: the most important voxel would get 0). The map is on the model's
input grid; :func:`cam_on_subject` masks it to the head (:func:`head_on_grid`, the T1
channel's foreground on the model's grid) and pulls it onto the subject's own T1 grid
(trilinear, through world mm, 0 outside the model's grid), raw and normalised, so that it
overlays the scan the user gave. Why the mask: the last stage of the image encoder is a
3 x 3 x 3 map whose zero padding tells a unit where the field of view's edge is, so a net
whose image branch learned little peaks at a corner of the field of view, outside the head;
the share of the map's mass removed is reported (:attr:`SubjectCam.outside_head`), with
the feature map's grid, because a 3^3 map cannot show regions finer than about a third of
the head. It shows where the image RAISES the ensemble logit (Grad-CAM's ReLU): a
subject whose image only lowers it gets an all-zero map (then the normalised one is zero too).

Modality shares (:func:`modality_shares`): the two-player Shapley decomposition of the
ensemble logit ``f(I, T)`` with the training subjects' mean embeddings as the "absent"
modality (``net.reference_img``, ``net.reference_tab``; written 0 below)::

    phi_img = 1/2 [(f(I, T) - f(0, T)) + (f(I, 0) - f(0, 0))]
    phi_tab = 1/2 [(f(I, T) - f(I, 0)) + (f(0, T) - f(0, 0))]
    share_m = |phi_m| / (|phi_img| + |phi_tab|)

``phi_img + phi_tab = f(I, T) - f(0, 0)`` (Shapley's efficiency): the two parts add up to
how far this subject's logit is from an average training subject's. What a share MEANS:
of that distance, how much comes from this subject's image and how much from their table,
each averaged over whether the other modality is the subject's or the average one. What it
does NOT mean: not a causal claim (the embeddings of an image and a table are correlated:
both see age and hypertension, so a "table" share may be signal the image also holds), not
a share of the risk itself (the logit is on a log-odds scale, and a subject close to the
average has small phis whose shares can swing), and not a statement about any one voxel or
column. Both phis 0 (the subject's logit is the average's on every path) gives equal shares.
With ``models.stroke_risk``'s heads (linear, the ensemble their mean logit) the logit is a
sum of an image term and a table term, so each phi is exactly its own term's change from
the average subject's; the formula also holds for heads where the two interact.

The subject among the training subjects (:func:`embedding_place`, for the viewer): the
fused embeddings ``[h_img, h_tab]`` of the training subjects (``net.reference_embeddings``,
with their written labels, no IDs) on their first two principal components
(scikit-learn's PCA, fitted on them), the subject projected onto the same plane, and the
share of written strokes among the subject's nearest training subjects in the full
embedding (the plane is for the eye; distances on it are not the model's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ...explain.gradcam import CamResult, grad_cam, normalise
from ...io.resample import resample_to_grid
from ...reading.window import foreground

__all__ = ["NEIGHBOURS", "TARGET", "EmbeddingPlace", "ModalityShares", "SubjectCam", "cam_on_subject",
           "embedding_place", "ensemble_cam", "head_on_grid", "modality_shares"]

#: The logit explained and shared out: the one the risk is read from.
TARGET = "ensemble"
#: Nearest training subjects whose written labels :func:`embedding_place` counts (chosen: few
#: enough to be "like this subject", enough for a share to mean more than one case).
NEIGHBOURS = 20


class _OfImage(nn.Module):
    """``net(image, table)[TARGET]`` as a function of the image alone (the table held fixed).

    Why: ``grad_cam`` calls ``model(x)`` with one input; the net under it keeps its own
    module names, so the layer is ``net.<image_cam_layer>``.
    """

    def __init__(self, net: nn.Module, table: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.table = table

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image, self.table)[TARGET]


def ensemble_cam(net: nn.Module, image: torch.Tensor, table: torch.Tensor) -> CamResult:
    """Grad-CAM of the ensemble logit at ``net.image_cam_layer``, on the grid of ``image`` (B, C, D, H, W).

    The net's mode is left as the caller set it (``eval()`` for inference); its ``.grad``
    fields are not touched (``core.explain.gradcam``).
    """
    return grad_cam(_OfImage(net, table), image, f"net.{net.image_cam_layer}")


@dataclass(frozen=True)
class SubjectCam:
    """A Grad-CAM on the subject's T1 grid: ``raw`` (>= 0, the absolute scale) and ``normalised`` ([0, 1]).

    ``affine`` is the T1's voxel -> world RAS mm; ``layer`` the explained layer;
    ``outside_head`` the share of the map's mass outside the head that the mask removed
    (None when no head was given); ``feature_grid`` the explained layer's own grid.
    """

    raw: np.ndarray
    normalised: np.ndarray
    affine: np.ndarray
    layer: str
    outside_head: float | None = None
    feature_grid: tuple[int, ...] | None = None

    def stacked(self) -> np.ndarray:
        """(X, Y, Z, 2) float32: raw, then normalised (the ``--cam`` file's two volumes)."""
        return np.stack([self.raw, self.normalised], axis=-1).astype(np.float32)


def head_on_grid(t1: np.ndarray) -> np.ndarray:
    """The head on the model's grid: the T1 channel's foreground (``reading.window.foreground``), holes filled."""
    head = foreground(np.asarray(t1, np.float32).ravel())
    if head.size == 0:
        return np.zeros(np.shape(t1), bool)
    return ndimage.binary_fill_holes(np.asarray(t1) >= head.min())


def cam_on_subject(cam: np.ndarray, model_affine: np.ndarray, subject_affine: np.ndarray,
                   subject_shape: tuple[int, ...], layer: str, head: np.ndarray | None = None,
                   feature_grid: tuple[int, ...] | None = None) -> SubjectCam:
    """One map on the model's grid (``model_affine``: its voxel -> the SUBJECT's world mm) put on the subject's grid.

    With ``head`` (a mask on the model's grid, :func:`head_on_grid`) the map is set to 0
    outside it first and the removed share of its mass kept. Trilinear (``core.io.resample``),
    0 where the model's grid does not reach; the normalised map is the raw one min-max scaled
    on the subject's grid, after the mask (``core.explain.normalise``).
    """
    cam = np.asarray(cam, np.float32)
    outside = None
    if head is not None:
        total = float(cam.sum())
        outside = float(cam[~head].sum()) / total if total > 0 else 0.0
        cam = np.where(head, cam, 0.0).astype(np.float32)
    raw = resample_to_grid(cam, model_affine, subject_affine, tuple(subject_shape[:3]), order=1)
    raw = np.maximum(raw, 0.0).astype(np.float32)  # trilinear weights are >= 0; kept exact for a ReLU map
    return SubjectCam(raw=raw, normalised=normalise(raw), affine=np.asarray(subject_affine, float), layer=layer,
                      outside_head=outside, feature_grid=None if feature_grid is None else tuple(feature_grid))


@dataclass(frozen=True)
class ModalityShares:
    """One subject's decomposition of the ensemble logit (module docstring).

    Attributes
    ----------
    image, table : float
        The shares, in [0, 1], summing to 1.
    phi_image, phi_table : float
        The signed Shapley values (logit units).
    logit, reference_logit : float
        ``f(I, T)`` and ``f(0, 0)`` (``phi_image + phi_table`` is their difference).
    """

    image: float
    table: float
    phi_image: float
    phi_table: float
    logit: float
    reference_logit: float

    def to_json(self) -> dict[str, float]:
        """The result file's ``modality_share``."""
        return {"image": self.image, "table": self.table}


@torch.no_grad()
def modality_shares(net: nn.Module, h_img: torch.Tensor, h_tab: torch.Tensor) -> list[ModalityShares]:
    """Per row of the embeddings ``h_img`` (B, d) and ``h_tab`` (B, d), the modality shares of the ensemble logit.

    The absent modality is the net's ``reference_img`` / ``reference_tab`` (the training
    subjects' mean embeddings), broadcast to the batch.
    """
    ref_img = net.reference_img.to(h_img).expand_as(h_img)
    ref_tab = net.reference_tab.to(h_tab).expand_as(h_tab)
    f = {(i, t): net.heads(a, b)[TARGET].reshape(-1).double()
         for (i, a) in ((1, h_img), (0, ref_img)) for (t, b) in ((1, h_tab), (0, ref_tab))}
    phi_img = 0.5 * ((f[1, 1] - f[0, 1]) + (f[1, 0] - f[0, 0]))
    phi_tab = 0.5 * ((f[1, 1] - f[1, 0]) + (f[0, 1] - f[0, 0]))
    out = []
    for k in range(len(phi_img)):
        a, b = abs(float(phi_img[k])), abs(float(phi_tab[k]))
        share = a / (a + b) if a + b > 0 else 0.5
        out.append(ModalityShares(image=share, table=1.0 - share, phi_image=float(phi_img[k]),
                                  phi_table=float(phi_tab[k]), logit=float(f[1, 1][k]),
                                  reference_logit=float(f[0, 0][k])))
    return out


@dataclass(frozen=True)
class EmbeddingPlace:
    """A subject among the training subjects (module docstring).

    Attributes
    ----------
    reference : numpy.ndarray
        (n, 2) the training subjects on the plane of their first two principal components.
    labels : numpy.ndarray
        (n,) their written stroke labels (0/1).
    subject : numpy.ndarray
        (2,) the subject on the same plane.
    explained : tuple of float
        The share of the embeddings' variance each axis holds.
    neighbours : int
        How many nearest training subjects (full embedding, Euclidean) were counted.
    neighbour_strokes : int
        How many of them had a written stroke.
    """

    reference: np.ndarray
    labels: np.ndarray
    subject: np.ndarray
    explained: tuple[float, float]
    neighbours: int
    neighbour_strokes: int


@torch.no_grad()
def embedding_place(net: nn.Module, h_img: torch.Tensor, h_tab: torch.Tensor,
                    neighbours: int = NEIGHBOURS) -> EmbeddingPlace | None:
    """Where one subject (``h_img`` (1, d), ``h_tab`` (1, d)) lies among ``net.reference_embeddings``.

    None when the net keeps fewer than 3 training subjects (no plane to draw).
    """
    from sklearn.decomposition import PCA

    reference = net.reference_embeddings.detach().cpu().double().numpy()
    if len(reference) < 3:
        return None
    point = torch.cat([h_img, h_tab], dim=1).detach().cpu().double().numpy()[:1]
    pca = PCA(n_components=2, svd_solver="full").fit(reference)
    labels = net.reference_labels.detach().cpu().numpy().astype(int)
    k = min(int(neighbours), len(reference))
    nearest = np.argsort(np.linalg.norm(reference - point, axis=1), kind="stable")[:k]
    return EmbeddingPlace(reference=pca.transform(reference), labels=labels, subject=pca.transform(point)[0],
                          explained=(float(pca.explained_variance_ratio_[0]), float(pca.explained_variance_ratio_[1])),
                          neighbours=k, neighbour_strokes=int(labels[nearest].sum()))
