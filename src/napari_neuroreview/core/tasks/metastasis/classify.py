"""Classify the origin of each metastasis of one session, with Grad-CAM maps on the contrast T1.

Steps (issue 12 item 6): the lesions are read on the contrast T1's grid
(:func:`.lesion_input.lesions_from_labels`: labels on another grid resampled nearest
neighbour, with a message); every sequence the model reads is cut around each lesion by
:func:`.crops.lesion_crops`, through its own affine, so a sequence on another grid than the
contrast T1 (DWI and ADC on their coarser EPI grid, as acquired) is resampled by the crops
and said so in one message per sequence; the model gives the three node probabilities and
the four-class probabilities they imply (:func:`.classes.four_class`).

Why the contrast T1 is the reference grid: the lesions are outlined (or grown from a
click) on it, and the Grad-CAM maps are shown over it. With ``cam``, each node's Grad-CAM
(``core.explain.grad_cams`` at ``model.net.cam_layer``, the attention block) is computed on
each lesion's crop and placed back onto the contrast T1's grid (trilinear, 0 outside the
crops; where two crops overlap the larger value is kept): a 4D volume, one 3D map per node
in :data:`.classes.NODES` order. The maps are the RAW Grad-CAM (ReLU of the weighted
activations), not min-max normalised per crop, so that lesions and nodes keep one scale;
each node explains its logit, i.e. the evidence for the first-named branch (lung, SCLC,
breast).

The result's JSON (:meth:`ClassifyResult.to_json`) names the model, the sequences read and,
per lesion, its id, centre, volume and probabilities: no path and no patient identifier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...anatomy import voxel_to_world, world_to_voxel
from ...errors import InputFileError
from ...explain import grad_cams
from ...io.nifti import Volume
from ...io.resample import resample_to_grid, same_grid
from ...progress import Progress, TaskGenerator
from .classes import NODES, ORIGINS, SEQUENCE_NAMES, SEQUENCES, four_class
from .crops import LesionCrop, lesion_crops
from .lesion_input import LesionMask, lesions_from_labels
from .model import LoadedOriginModel, load_origin_model
from .train import network_input

__all__ = ["REFERENCE", "ClassifyResult", "LesionOrigin", "and_list", "classify_for_review", "classify_lesions"]

#: The sequence whose grid the lesions, the results and the Grad-CAM maps are on.
REFERENCE = "ce_t1"
#: Progress units, and where the prediction and the maps start.
_TOTAL, _PREDICT, _CAM = 100, 20, 40


@dataclass(frozen=True)
class LesionOrigin:
    """One lesion's answer: its id, centroid (world RAS mm), volume (mm3) and the three node probabilities."""

    id: int
    world_ras_mm: tuple[float, float, float]
    volume_mm3: float
    nodes: np.ndarray

    @property
    def four_class(self) -> dict[str, float]:
        """P(origin) for :data:`~.classes.ORIGINS` (the chain rule over the nodes)."""
        return {o: float(p) for o, p in zip(ORIGINS, four_class(self.nodes)[0])}

    @property
    def prediction(self) -> str:
        """The most probable origin."""
        probs = self.four_class
        return max(ORIGINS, key=lambda o: probs[o])

    def to_json(self) -> dict[str, Any]:
        """The lesion's entry of the document; ``probabilities`` is the tree (each pair sums to 1)."""
        lung, sclc, breast = (float(p) for p in self.nodes)
        return {"id": int(self.id), "world_ras_mm": [round(v, 3) for v in self.world_ras_mm],
                "volume_mm3": round(float(self.volume_mm3), 3),
                "probabilities": {"lung": lung, "non_lung": 1.0 - lung, "SCLC": sclc, "NSCLC": 1.0 - sclc,
                                  "breast": breast, "GI": 1.0 - breast},
                "four_class": self.four_class, "prediction": self.prediction}


@dataclass
class ClassifyResult:
    """The origins of one session's lesions and, with ``cam``, the Grad-CAM maps on the contrast T1.

    Attributes
    ----------
    model : dict
        ``{"name", "version"}``.
    sequences : tuple of str
        The sequences the model read, in its channel order.
    lesions : list of LesionOrigin
        In increasing id order (a labels volume) or the order given (lesion masks).
    cam : numpy.ndarray or None
        (X, Y, Z, 3) float32 on the contrast T1's grid, one map per node (:data:`NODES`).
    affine : numpy.ndarray
        The contrast T1's 4 x 4 voxel -> world RAS mm.
    messages : list of str
        Sentences for the user (resampled grids, sequences not read).
    """

    model: dict[str, str]
    sequences: tuple[str, ...]
    lesions: list[LesionOrigin]
    cam: np.ndarray | None
    affine: np.ndarray
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The document of ``neuroreview metastasis classify`` (issue 12 item 6)."""
        return {"model": dict(self.model), "sequences": list(self.sequences),
                "lesions": [lesion.to_json() for lesion in self.lesions],
                "cam_volumes": list(NODES) if self.cam is not None else []}


def and_list(names: Iterable[str]) -> str:
    """``'a, b and c'``."""
    items = list(names)
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def _grid_messages(sequences: Mapping[str, Volume], read: Sequence[str], model: dict[str, str]) -> list[str]:
    """One sentence per sequence read on another grid than the contrast T1, and per sequence given but not read."""
    ref = sequences[REFERENCE]
    out = []
    for s in read:
        v = sequences[s]
        if s != REFERENCE and not same_grid(v.spatial_shape, v.affine, ref.spatial_shape, ref.affine):
            zooms = " x ".join(f"{z:.3g}" for z in v.zooms)
            out.append(f"The {SEQUENCE_NAMES[s]} image is on another grid ({zooms} mm) than the contrast T1: it is resampled "
                       f"(trilinear) onto each lesion's crop through its own affine.")
    unused = [s for s in SEQUENCES if s in sequences and s not in read and s != REFERENCE]
    if unused:
        out.append(f"The {model['name']} {model['version']} model does not read "
                   f"{and_list(SEQUENCE_NAMES[s] for s in unused)}, so it is not used.")
    return out


def _place(cams: np.ndarray, crop: LesionCrop, ref: Volume, out: np.ndarray) -> None:
    """Put one crop's (S, S, S, K) maps onto ``out`` (the reference grid), keeping the larger value.

    Only the reference voxels under the crop are resampled (a box), not the whole head.
    """
    s = crop.spec.shape
    corners = np.array([[i, j, k] for i in (-0.5, s - 0.5) for j in (-0.5, s - 0.5) for k in (-0.5, s - 0.5)])
    ijk = world_to_voxel(ref.affine, voxel_to_world(crop.affine, corners))
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, ref.spatial_shape)
    if np.any(hi <= lo):
        return
    shifted = np.asarray(ref.affine, float).copy()
    shifted[:3, 3] = voxel_to_world(ref.affine, lo)
    box = resample_to_grid(cams, crop.affine, shifted, tuple(int(v) for v in hi - lo), order=1)
    view = out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    np.maximum(view, box, out=view)


def _crop_cams(model: LoadedOriginModel, crop: LesionCrop) -> np.ndarray:
    """(S, S, S, 3) raw Grad-CAM of each node on the crop."""
    est = model.estimator
    assert est.net is not None  # a loaded model is fitted
    x = torch.from_numpy(network_input([crop], est.config.sequences, est.config.lesion_channel)).to(est.device)
    maps = [m.raw[0] for m in grad_cams(est.net, x, est.net.cam_layer, targets=range(len(NODES)))]  # one forward
    return np.stack(maps, axis=-1).astype(np.float32)


def classify_lesions(sequences: Mapping[str, Volume], lesions: Volume | Sequence[LesionMask],
                     model: LoadedOriginModel, cam: bool = False) -> TaskGenerator[ClassifyResult]:
    """The origin of every lesion of ``lesions`` (see the module docstring); a task.

    Parameters
    ----------
    sequences : mapping of str to Volume
        The session's scans by :data:`~.classes.SEQUENCES` name; the contrast T1 is needed
        (the reference grid), the others as the model reads them.
    lesions : Volume or sequence of LesionMask
        Lesion labels (one id per lesion, any grid overlapping the contrast T1), or the
        lesions chosen or grown in the viewer (on the contrast T1's grid).
    model : LoadedOriginModel
        On its device (``model.load_origin_model``).
    cam : bool
        Also the Grad-CAM maps of every node on the contrast T1's grid.

    Raises
    ------
    InputFileError
        No contrast T1, a sequence the model reads not given (naming it and the model
        version), labels that are not lesion labels: one sentence each.
    GeometryError
        Labels or a sequence that do not cover the lesions.
    """
    version = f"{model.model['name']} {model.model['version']}"
    if REFERENCE not in sequences:
        raise InputFileError(f"A contrast T1 is needed: the lesions are read and the maps placed on its grid "
                             f"(the {version} model).")
    missing = [s for s in model.sequences if s not in sequences]
    if missing:
        raise InputFileError(f"The {version} model reads {and_list(SEQUENCE_NAMES[s] for s in model.sequences)}, "
                             f"but {and_list(SEQUENCE_NAMES[s] for s in missing)} {'was' if len(missing) == 1 else 'were'} "
                             "not given.")
    ref = sequences[REFERENCE]
    total = _TOTAL
    yield Progress(0, total, "Reading the lesions on the contrast T1")
    masks = lesions_from_labels(lesions, ref) if isinstance(lesions, Volume) else list(lesions)
    messages = list(dict.fromkeys(m for mask in masks for m in mask.messages))
    messages += _grid_messages(sequences, model.sequences, model.model)
    crops = lesion_crops({s: sequences[s] for s in model.sequences}, masks, channels=model.sequences,
                         spec=model.crop)
    yield Progress(_PREDICT, total, f"Origin of {len(crops)} lesion(s)")
    nodes = model.estimator.predict_nodes(crops)
    found = [LesionOrigin(c.lesion_id, c.centre_ras_mm, c.volume_mm3, p) for c, p in zip(crops, nodes)]
    maps = None
    if cam:
        maps = np.zeros((*ref.spatial_shape, len(NODES)), np.float32)
        for i, crop in enumerate(crops):
            yield Progress(_CAM + (total - _CAM) * i // len(crops), total,
                           f"Grad-CAM of lesion {crop.lesion_id} ({i + 1} of {len(crops)})")
            _place(_crop_cams(model, crop), crop, ref, maps)
    yield Progress(total, total, "Done")
    return ClassifyResult(model.model, tuple(model.sequences), found, maps, np.asarray(ref.affine, float), messages)


def classify_for_review(sequences: Mapping[str, Volume], lesions: Volume | Sequence[LesionMask],
                        version: str | None, device: str = "auto", cam: bool = True,
                        roots: list[Path] | None = None) -> TaskGenerator[ClassifyResult]:
    """Load an origin model version on ``device``, then :func:`classify_lesions`, in one task.

    Why one task: loading the weights (and moving them to the device) takes time and must
    not block the GUI thread, so the panel's worker does it (as the subtype task's
    ``classify_for_review`` does).
    """
    yield Progress(0, 1, "Loading the metastasis origin model")
    model = load_origin_model(version, device=device, roots=roots)
    return (yield from classify_lesions(sequences, lesions, model, cam))
