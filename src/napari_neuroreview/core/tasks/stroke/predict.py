"""One subject's stroke risk from their T1 (+ FLAIR) and clinical row, with its explanation (issue 13 items 6-7).

Steps (:func:`predict_subject`; ``neuroreview stroke predict`` and the viewer call it):

1. *The model's grid* (:func:`model_grid`): the training scans' grid as the card records it
   (``image_shape``, ``image_affine``; the phantom cohort's scans are on MNI152 at its voxel
   size, world = MNI RAS mm). A T1 already on that grid is read as it is.
2. *Another grid*: the T1 is registered to MNI152 (``core.anatomy.registration``, affine,
   SimpleITK), of which the rotation and position are kept and the scaling dropped
   (:func:`rigid_part`: the training heads keep their own size), and the model's grid is
   carried into the T1's world through that; every channel is pulled onto it (trilinear,
   anti-aliased when coarser: the training scans were rendered at the grid's voxel, partial
   volume included), the FLAIR through its own affine (a scan of the same session). A T1 of
   the training shape but another affine (mirrored, another voxel size) is registered like any
   other; it is refused only when registration fails. Cards written before the grid's affine
   was recorded (``image_affine`` absent) can only read a T1 whose shape is the training
   scans': it is taken as on the grid, with a message saying it was not checked.
3. *Intensities* as in training (``pretrain.load_images``): each channel divided by the
   median of its head's foreground.
4. *The table row* encoded by the card's table encoding (training statistics). A blank
   optional column is the encoder's missing value and is listed in ``missing``.
5. *Risk* = sigmoid of the ensemble logit; high risk when it reaches the card's threshold
   (Youden's J on validation, frozen). *Explanation* (:mod:`.explain`): modality shares, and
   with ``cam`` the Grad-CAM on the T1's grid.

A FLAIR the model reads but that was not given is refused in one sentence: the model was not
trained with a channel left out (no channel dropout), so a zero channel would be an input it
has never seen and its risk meaningless. ``missing`` therefore lists blank table columns only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from ...errors import InputFileError, RegistryError
from ...io.nifti import Volume
from ...io.resample import resample_to_grid, same_grid
from ...progress import Progress, TaskGenerator
from .explain import (
    EmbeddingPlace,
    ModalityShares,
    SubjectCam,
    cam_on_subject,
    embedding_place,
    ensemble_cam,
    head_on_grid,
    modality_shares,
)
from .pretrain import scale_to_foreground_median
from .schema import column_spec
from .tabular import TableEncoding

__all__ = ["CHANNEL_NAMES", "ModelGrid", "StrokePrediction", "grid_centre", "model_grid", "model_input",
           "place_on_model_grid", "predict_for_review", "predict_subject", "rigid_part"]

#: What a sentence calls each image channel.
CHANNEL_NAMES: dict[str, str] = {"t1": "T1", "flair": "FLAIR"}


@dataclass(frozen=True)
class ModelGrid:
    """The grid the model was trained on: ``shape``, ``affine`` (voxel -> MNI RAS mm; None when the card does
    not record it) and the image ``channels`` in order."""

    shape: tuple[int, int, int]
    affine: np.ndarray | None
    channels: tuple[str, ...]

    @property
    def voxel_mm(self) -> tuple[float, ...] | None:
        """The voxel's edges in mm (None without an affine)."""
        return None if self.affine is None else tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(0)))


def model_grid(config: Mapping[str, Any], what: str = "the model") -> ModelGrid:
    """The card config's ``image_shape``, ``image_affine`` (optional) and ``channels`` (default t1, flair)."""
    try:
        shape = tuple(int(v) for v in config["image_shape"])
        affine = None if config.get("image_affine") is None else np.asarray(config["image_affine"], float)
        channels = tuple(str(c) for c in config.get("channels", ("t1", "flair")))
        if len(shape) != 3 or min(shape) < 1 or (affine is not None and affine.shape != (4, 4)) or not channels:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise RegistryError(f"The card of {what} does not record its input grid (image_shape, image_affine) "
                            "and channels.") from None
    unknown = [c for c in channels if c not in CHANNEL_NAMES]
    if unknown:
        raise RegistryError(f"The card of {what} names an image channel this program does not know: {unknown[0]!r}.")
    return ModelGrid(shape, affine, channels)  # type: ignore[arg-type]


def grid_centre(grid: ModelGrid) -> np.ndarray:
    """The world (MNI) mm of the grid's centre (the point the phantom scales each head about)."""
    assert grid.affine is not None
    return (grid.affine @ np.append((np.asarray(grid.shape, float) - 1.0) / 2.0, 1.0))[:3]


def rigid_part(matrix: np.ndarray, centre_mni: np.ndarray) -> np.ndarray:
    """The rotation and position of an affine world -> MNI ``matrix``, without its scaling and shear.

    Why: the training scans lie at MNI's position and orientation but keep each head's own
    size (the phantom scales the template about the grid's centre by the head's intracranial
    volume, and brain volume is a risk marker); an affine registration would bring every head
    to the template's size. Kept: the rotation of the linear part's polar decomposition
    (``U V^T`` of its SVD) and the subject's point that the registration maps to
    ``centre_mni``, which goes there.
    """
    u, _, vt = np.linalg.svd(np.asarray(matrix, float)[:3, :3])
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:  # a mirror is never a head's position: flip the least axis back
        rotation = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    centre_subject = np.linalg.solve(matrix, np.append(centre_mni, 1.0))[:3]
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = np.asarray(centre_mni, float) - rotation @ centre_subject
    return out


def place_on_model_grid(t1: Volume, grid: ModelGrid, what: str) -> TaskGenerator[tuple[np.ndarray, list[str]]]:
    """The model grid's voxel -> the T1's world mm, and the sentences saying how (steps 1-2)."""
    if grid.affine is None:
        if t1.spatial_shape == grid.shape:
            said = (f"The card of {what} does not record its grid's affine: the T1, of the training scans' shape "
                    f"{grid.shape}, is read as on the model's grid (not registered).")
            return np.asarray(t1.affine, float), [said]
        raise InputFileError(f"The card of {what} does not record its grid's affine, so a T1 of shape "
                             f"{t1.spatial_shape} (not the training scans' {grid.shape}) cannot be put on it.")
    if same_grid(t1.spatial_shape, t1.affine, grid.shape, grid.affine):
        return grid.affine, []
    from ...anatomy.registration import register_to_mni

    transform = yield from register_to_mni(t1, "The T1")
    to_subject = np.linalg.inv(rigid_part(transform.matrix, grid_centre(grid))) @ grid.affine
    mm = " x ".join(f"{v:.3g}" for v in grid.voxel_mm or ())
    said = (f"The T1 is not on the model's grid: it was registered to MNI152 (brain Dice {transform.brain_dice:.2f}), "
            f"turned and moved there at its own size, and resampled onto the model's {mm} mm grid, as the training "
            "scans were made.")
    return to_subject, [said]


def model_input(scans: Mapping[str, Volume], grid: ModelGrid, to_subject: np.ndarray) -> np.ndarray:
    """(C, D, H, W) float32: each channel of ``grid`` on the model's grid, divided by its foreground's median."""
    out = np.zeros((len(grid.channels), *grid.shape), np.float32)
    for c, channel in enumerate(grid.channels):
        scan = scans[channel]
        if scan.data.ndim != 3:
            raise InputFileError(f"The {CHANNEL_NAMES[channel]} has {scan.data.ndim} dimensions; the model reads one "
                                 "3D volume.")
        if same_grid(scan.spatial_shape, scan.affine, grid.shape, to_subject):
            data = np.asarray(scan.data, np.float32)
        else:
            data = resample_to_grid(scan.data, scan.affine, to_subject, grid.shape, order=1, antialias=True)
        out[c] = scale_to_foreground_median(data, f"The {CHANNEL_NAMES[channel]} on the model's grid")
    return out


@dataclass
class StrokePrediction:
    """One subject's result (``to_json`` is ``stroke predict``'s file; no path, no date).

    ``cam`` is on the T1's grid (None unless asked); ``place`` the subject among the training
    subjects (:func:`.explain.embedding_place`; the viewer's, not in the file); ``messages``
    are sentences for the user.
    """

    model: dict[str, str]
    subject: str
    risk: float
    threshold: float
    shares: ModalityShares
    missing: list[str]
    cam: SubjectCam | None = None
    place: EmbeddingPlace | None = None
    messages: list[str] = field(default_factory=list)

    @property
    def high_risk(self) -> bool:
        return self.risk >= self.threshold

    def to_json(self) -> dict[str, Any]:
        """``{"model", "subject", "risk", "threshold", "high_risk", "modality_share", "missing", "cam_volumes"}``."""
        return {"model": dict(self.model), "subject": self.subject, "risk": float(self.risk),
                "threshold": float(self.threshold), "high_risk": bool(self.high_risk),
                "modality_share": self.shares.to_json(), "missing": list(self.missing),
                "cam_volumes": ["raw", "normalised"] if self.cam is not None else []}


def predict_subject(t1: Volume, flair: Volume | None, row: Mapping[str, Any], net: nn.Module,
                    encoding: TableEncoding, threshold: float, model: Mapping[str, str], config: Mapping[str, Any],
                    cam: bool = False, device: torch.device | str = "cpu") -> TaskGenerator[StrokePrediction]:
    """The risk of the subject of ``row`` (``labels.read_clinical_row``'s dict) from ``t1`` (+ ``flair``); a task.

    ``net`` is a stroke-risk net (``models.stroke_risk``) on ``device``; ``encoding``,
    ``threshold``, ``config`` and ``model`` (``{"name", "version"}``) come with it from the
    registry. Raises one sentence for a FLAIR the model reads but not given, a column the
    model reads left blank when it may not be, and a T1 that cannot be put on the grid.
    """
    what = f"{model.get('name', 'the model')} {model.get('version', '')}".strip()
    grid = model_grid(config, what)
    if "flair" in grid.channels and flair is None:
        raise InputFileError(f"The {what} model reads a FLAIR beside the T1 and was not trained without one; give "
                             "--flair (a zero channel in its place would be an input it has never seen).")
    blank_required = [c for c in encoding.columns if row.get(c) is None
                      and (column_spec(c).required or column_spec(c).image_derived)]
    if blank_required:
        c = blank_required[0]
        raise InputFileError(f"Subject {row.get('subject')}: the {what} model reads {c} ({column_spec(c).meaning}), "
                             "which is blank or absent; it must be filled.")
    missing = [c for c in encoding.columns if row.get(c) is None]
    yield Progress(0, 100, "Putting the T1 on the model's grid")
    to_subject, messages = yield from place_on_model_grid(t1, grid, what)
    scans = {"t1": t1, **({"flair": flair} if flair is not None else {})}
    unused = [c for c in scans if c not in grid.channels]
    if unused:
        messages.append(f"The {what} model does not read the {CHANNEL_NAMES[unused[0]]}, so it is not used.")
    yield Progress(60, 100, "Risk and modality shares")
    image = torch.from_numpy(model_input(scans, grid, to_subject)).unsqueeze(0).to(device)
    table = torch.from_numpy(encoding.encode([row])).to(device)
    with torch.no_grad():
        h_img, h_tab = net.encode_image(image), net.encode_table(table)
        logit = float(net.heads(h_img, h_tab)["ensemble"].reshape(-1)[0])
    shares = modality_shares(net, h_img, h_tab)[0]
    place = embedding_place(net, h_img, h_tab)
    risk = float(expit(logit))
    subject_cam = None
    if cam:
        yield Progress(75, 100, "Grad-CAM of the ensemble logit")
        result = ensemble_cam(net, image, table)
        t1_channel = grid.channels.index("t1") if "t1" in grid.channels else 0
        head = head_on_grid(image[0, t1_channel].cpu().numpy())
        feature_grid = tuple(int(v) for v in result.feature_map.shape[1:])
        subject_cam = cam_on_subject(result.raw[0], to_subject, t1.affine, t1.spatial_shape, result.layer,
                                     head=head, feature_grid=feature_grid)
        cells = " x ".join(str(v) for v in feature_grid)
        messages.append(f"The Grad-CAM comes from a {cells} feature map, so it cannot show regions finer than about "
                        f"1/{min(feature_grid)} of the field of view; {subject_cam.outside_head:.0%} of its mass lay "
                        "outside the head and was removed.")
    yield Progress(100, 100, "Done")
    return StrokePrediction(model={"name": str(model["name"]), "version": str(model["version"])},
                            subject=str(row.get("subject")), risk=risk, threshold=float(threshold), shares=shares,
                            missing=missing, cam=subject_cam, place=place, messages=messages)


def predict_for_review(t1: Volume, flair: Volume | None, row: Mapping[str, Any], version: str | None,
                       root: str | None = None, device: str = "auto", cam: bool = True
                       ) -> TaskGenerator[StrokePrediction]:
    """Load a stroke-risk version on ``device``, then :func:`predict_subject`, in one task.

    Why one task: loading the weights (and moving them to the device) takes time and must not
    block the GUI thread, so the viewer's worker does it (as ``metastasis.classify_for_review``).
    ``root``: the registry folder (default: the user's, then the shipped one).
    """
    from .downstream import load_risk_model

    yield Progress(0, 1, "Loading the stroke risk model")
    model = load_risk_model(root, version, device=device)
    card = model.card
    return (yield from predict_subject(t1, flair, row, model.net, model.encoding, model.threshold,
                                       {"name": card.name, "version": card.version}, card.config, cam=cam,
                                       device=next(model.net.parameters()).device))
