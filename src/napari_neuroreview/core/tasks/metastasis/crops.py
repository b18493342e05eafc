"""Lesion samples: a cube around each metastasis, every sequence resampled onto it.

What a sample is (:class:`LesionCrop`): for one lesion id of a labels volume, a cube of
``size_mm`` on a side centred on the lesion's centroid (world RAS mm), on a grid of
``shape`` voxels whose axes are the world's (R, A, S: voxel spacing ``size_mm / shape``),
one channel per requested sequence, the lesion's own mask (and its oedema's, when given)
kept apart for the Grad-CAM energy checks, and the lesion's id, centre and volume.

Why a world-axis grid and not each scan's voxel grid: the network is not invariant to
orientation, and scans arrive in any storage order (LPS at one site, RAS at another),
tilted and with anisotropic voxels; on a fixed RAS grid the same lesion gives the same
crop whatever the acquisition. DWI and ADC, acquired on their own coarser EPI grid, reach
the same cube through their own affine (trilinear, ``core.io.resample.resample_to_grid``,
antialiased when the cube's voxels are coarser than the scan's), so no sequence is first
resampled onto another's grid.

Normalisation (one rule for every sequence, :data:`NORMALISATION`): each channel is
divided by the median of its scan's foreground, the voxels brighter than the whole scan's
mean (the head, mostly brain: background air is far below the mean). Why the scan and not
the crop: the receiver gain and the site's contrast scale a whole session, and dividing by
a median of the whole head removes them, while the crop's own statistics depend on the
lesion (a 40 mm lesion with its oedema fills most of a 64 mm cube). So a channel reads
"times the scan's typical tissue": an ADC channel is roughly the ADC ratio radiologists
quote, the enhancing rim stands above 1 on contrast T1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ...anatomy.grids import voxel_to_world, world_to_voxel
from ...errors import GeometryError, InputFileError
from ...io.nifti import Volume
from ...io.resample import resample_to_grid
from .classes import SEQUENCES
from .lesion_input import LesionMask, lesions_from_labels

__all__ = ["NORMALISATION", "CropSpec", "LesionCrop", "crop_grid", "lesion_crops"]

#: The one normalisation (see the module docstring): the card names it, so a model trained on
#: another rule is refused.
NORMALISATION = "scan_foreground_median"
#: Source voxels added around the cube's footprint before resampling (room for the linear
#: kernel and the antialiasing blur, which reaches 3 sigma).
_MARGIN_VOXELS = 2


@dataclass(frozen=True)
class CropSpec:
    """The cube every sample of a model is cut on.

    Attributes
    ----------
    size_mm : float
        Edge of the cube. 32 mm: the recipe the benchmark measured (benchmarks/README.md,
        cohort240): in a 64 mm cube a lesion is a median 0.4 % of the voxels and pooling
        buries it (development macro AUC 0.505 at 64 mm vs 0.609 at 32 mm, both at 2 mm
        voxels); the largest lesions are cut at the faces, their centre kept.
    shape : int
        Voxels per edge (16: 2 mm voxels, as measured; 32 gives 1 mm, unmeasured).
    """

    size_mm: float = 32.0
    shape: int = 16

    def __post_init__(self) -> None:
        if not (self.size_mm > 0 and math.isfinite(self.size_mm) and self.shape >= 1):  # set by code
            raise ValueError(f"a crop needs a positive size and shape, not {self}")

    @property
    def spacing_mm(self) -> float:
        """Voxel edge of the cube's grid."""
        return self.size_mm / self.shape

    def to_json(self) -> dict[str, float | int | str]:
        """The model card's ``crop`` entry (with the normalisation the channels went through)."""
        return {"size_mm": float(self.size_mm), "shape": int(self.shape), "normalisation": NORMALISATION}


@dataclass(frozen=True, eq=False)
class LesionCrop:
    """One lesion's sample.

    Attributes
    ----------
    image : numpy.ndarray
        (C, S, S, S) float32, the sequences in ``sequences`` order, normalised (module docstring).
    mask : numpy.ndarray
        (S, S, S) bool, this lesion on the cube (its tumour label; other lesions are not in it).
    oedema : numpy.ndarray or None
        (S, S, S) bool, this lesion's oedema label on the cube, when an oedema volume was given.
    lesion_id : int
        The lesion's label value.
    centre_ras_mm : tuple of float
        The lesion's centroid, world RAS mm: the cube's centre.
    volume_mm3 : float
        The lesion's label volume on its own grid.
    sequences : tuple of str
        The channels' sequence names.
    affine : numpy.ndarray
        4 x 4 voxel -> world RAS mm of the cube (axis-aligned, :func:`crop_grid`).
    spec : CropSpec
        The cube it was cut on.
    """

    image: np.ndarray
    mask: np.ndarray
    oedema: np.ndarray | None
    lesion_id: int
    centre_ras_mm: tuple[float, float, float]
    volume_mm3: float
    sequences: tuple[str, ...]
    affine: np.ndarray
    spec: CropSpec


def crop_grid(centre_ras_mm: Sequence[float], spec: CropSpec) -> np.ndarray:
    """The cube's affine: world-axis (RAS) voxels of ``spec.spacing_mm``, centred on ``centre_ras_mm``."""
    affine = np.diag([spec.spacing_mm] * 3 + [1.0])
    affine[:3, 3] = np.asarray(centre_ras_mm, float) - spec.spacing_mm * (spec.shape - 1) / 2.0
    return affine


def _name(volume: Volume, what: str) -> str:
    return f"The {what} image {volume.path.name}" if volume.path is not None else f"The {what} image"


def _foreground_median(volume: Volume, what: str) -> float:
    """The scan's normalising value (module docstring); one sentence when the scan has no foreground."""
    data = volume.data
    mean = float(data.mean(dtype=np.float64))
    value = float(np.median(data[data > mean])) if np.any(data > mean) else 0.0
    if not (value > 0 and math.isfinite(value)):
        raise InputFileError(f"{_name(volume, what)} has no signal above its mean (constant or empty), "
                             "so it cannot be normalised.")
    return value


def _resample_box(data: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray, shape: int, order: int,
                  antialias: bool) -> np.ndarray:
    """``data`` resampled onto the cube, reading only the source box the cube covers (plus a margin).

    Why a box: the cube is a few centimetres of a whole head, and the antialiasing blur
    would otherwise run over the whole scan for every lesion.
    """
    corners = np.array([[i, j, k] for i in (0, shape - 1) for j in (0, shape - 1) for k in (0, shape - 1)], float)
    src = world_to_voxel(src_affine, voxel_to_world(dst_affine, corners))
    dst_zoom = float(np.cbrt(abs(np.linalg.det(dst_affine[:3, :3]))))
    src_zooms = np.sqrt((src_affine[:3, :3] ** 2).sum(axis=0))
    margin = _MARGIN_VOXELS + np.ceil(3.0 * dst_zoom / src_zooms).astype(int)
    lo = np.maximum(np.floor(src.min(axis=0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(src.max(axis=0)).astype(int) + margin + 1, data.shape[:3])
    box = data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    shifted = src_affine.copy()
    shifted[:3, 3] = voxel_to_world(src_affine, lo)
    return resample_to_grid(box, shifted, dst_affine, (shape,) * 3, order, antialias=antialias)


def _covers(volume: Volume, centre_ras_mm: np.ndarray) -> bool:
    """True when the point lies within the volume's field of view (half a voxel beyond the edge centres)."""
    ijk = world_to_voxel(volume.affine, centre_ras_mm)
    return bool(np.all(ijk >= -0.5) and np.all(ijk <= np.asarray(volume.spatial_shape) - 0.5))


def lesion_crops(sequences: Mapping[str, Volume], lesions: Volume | Sequence[LesionMask],
                 channels: Sequence[str] | None = None, spec: CropSpec = CropSpec(), oedema: Volume | None = None
                 ) -> list[LesionCrop]:
    """One :class:`LesionCrop` per lesion, in the order of ``lesions`` (increasing id for a volume).

    Parameters
    ----------
    sequences : mapping of str to Volume
        The scans by sequence name (:data:`SEQUENCES`), each on its own grid (DWI and ADC
        often on a coarser one), all in the same world (one session, or registered).
    lesions : Volume or sequence of LesionMask
        Labels (one whole number per lesion, 0 outside; read by
        ``lesion_input.lesions_from_labels`` on their own grid), or the lesions the user
        chose or grew (``lesion_input``).
    channels : sequence of str, optional
        The sequences to stack, in this order (a model's ``sequences``); default: those
        given, in :data:`SEQUENCES` order.
    spec : CropSpec
        The cube.
    oedema : Volume, optional
        Oedema labels by lesion id (the phantom's ``oedema``), cut beside the mask.

    Raises
    ------
    InputFileError
        A requested sequence not given, a 4D image, a scan without signal, labels that are
        not lesion labels or hold no lesion, a lesion without a voxel: one sentence each.
    GeometryError
        A lesion outside a sequence's field of view (grids that do not overlap).
    """
    names = tuple(channels) if channels is not None else tuple(s for s in SEQUENCES if s in sequences)
    unknown = [s for s in (*names, *sequences) if s not in SEQUENCES]
    if unknown or not names:  # the caller's wiring: the CLI and the cohort reader name sequences
        raise ValueError(f"sequences must be some of {SEQUENCES}, not {unknown or 'none'}")
    missing = [s for s in names if s not in sequences]
    if missing:
        given = ", ".join(sequences) or "none"
        raise InputFileError(f"The model reads the {', '.join(missing)} sequence(s), which were not given "
                             f"(given: {given}).")
    for what, volume in [*((s, sequences[s]) for s in names), *((("oedema", oedema),) if oedema is not None else ())]:
        if volume.is_4d:
            raise InputFileError(f"{_name(volume, what)} is 4D {volume.shape}; a single 3D volume is needed.")
    masks = lesions_from_labels(lesions, lesions) if isinstance(lesions, Volume) else list(lesions)
    scale = {s: _foreground_median(sequences[s], s) for s in names}
    crops = []
    for lesion in masks:
        centre = lesion.centre_world_mm
        if centre is None:
            raise InputFileError(f"Lesion {lesion.id} has no voxel left; paint it or remove it before classifying.")
        for s in names:
            if not _covers(sequences[s], np.asarray(centre)):
                raise GeometryError(
                    f"{_name(sequences[s], s)} does not cover lesion {lesion.id} at "
                    f"({', '.join(f'{v:.0f}' for v in centre)}) mm; "
                    "is it from the same session as the lesion mask, or registered to it?")
        affine = crop_grid(centre, spec)
        image = np.stack([_resample_box(sequences[s].data, sequences[s].affine, affine, spec.shape, 1,
                                        antialias=True) / np.float32(scale[s]) for s in names])
        mask = _resample_box(lesion.mask.astype(np.float32), lesion.affine, affine, spec.shape, 1,
                             antialias=False) >= 0.5
        oedema_mask = None
        if oedema is not None:
            oedema_mask = _resample_box((np.asarray(oedema.data) == lesion.id).astype(np.float32), oedema.affine,
                                        affine, spec.shape, 1, antialias=False) >= 0.5
        crops.append(LesionCrop(image.astype(np.float32, copy=False), mask, oedema_mask, lesion.id, centre,
                                lesion.volume_mm3, names, affine, spec))
    return crops
