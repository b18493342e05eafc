"""A scan brought to MNI152 space by affine registration with SimpleITK.

Why: a microbleed's MARS region (:mod:`.mars`) is read in MNI space, and a patient's
scan is not there (head position, tilt, head size). The registration is SimpleITK's
(ITK's optimisers and Mattes mutual information), not hand-written. The moving image is
the scan itself (SWI magnitude or T1: mutual information does not need the same
contrast); the fixed one is the MNI152 2009 T1 template of :mod:`.mni`, masked to its
brain.

Recipe (measured on both SWI simulators: 2-6 s on 2 threads once the template is loaded):

1. Both images are smoothed and resampled to isotropic :data:`WORKING_SPACING_MM`
   (affine alignment needs no finer detail). The template is masked to its brain and the
   metric samples that mask dilated by :data:`METRIC_MARGIN_MM`, so that the brain's
   outline counts; the scan gets a brain-ish mask (Otsu threshold of the smoothed image,
   largest connected component, holes filled) for the start and the check only.
2. The start: a centred initialiser (image moments of the masked scan), the scale from
   the ratio of the brain volumes, and the best of 27 tilts (-20, 0, 20 degrees about
   each axis) by the metric on a 6 mm grid (:func:`_initial_similarity`).
3. Rigid with one scale (a similarity, 7 parameters: a rigid fit of a head larger than
   the template goes astray), then affine (12), each over two resolution levels, Mattes
   mutual information (32 bins, a random quarter of the mask's voxels drawn with a fixed
   seed: the same scan always gives the same transform), regular-step gradient descent
   with scales from physical shifts.
4. A sanity check (:func:`check_transform`): the scales of the transform within
   :data:`SCALE_RANGE`, and the scan's mask carried into MNI space overlapping the MNI
   brain by a Dice of at least :data:`MIN_BRAIN_DICE`; otherwise the scan is not a brain
   this method can place, and the user gets one sentence.

Deformable registration was left out: it does not pay here. On the phantoms (moved out
of MNI by 10-30 degrees, 15-30 mm, scale 0.88-1.15) the affine result puts the
microbleeds within 0.2-0.7 mm (median) of their MNI positions, below the atlas's 1.5 mm
voxel, and every microbleed in the region its true position has
(``tests/core/test_registration.py``). A patient's anatomy differs from the template
more than a phantom's (which is the template), and there a deformable step could pay;
measure it on real scans first.

ITK's physical space is LPS (x to the left, y to the back), ours is RAS. The one
conversion is :func:`ras_lps` (both spaces differ by the same flip of x and y, so it is
its own inverse): a NIfTI affine becomes ITK's origin and direction through it, and the
ITK transform comes back to RAS through it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Generator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..errors import InputFileError
from ..io.nifti import Volume
from ..progress import Progress, TaskGenerator
from .grids import voxel_to_world, world_to_voxel
from .mni import load_mni_anatomy

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["MIN_BRAIN_DICE", "SCALE_RANGE", "WORKING_SPACING_MM", "MniTransform", "check_transform",
           "ras_lps", "register_to_mni"]

#: Isotropic voxel size (mm) both images are brought to before registering.
WORKING_SPACING_MM = 3.0
#: Allowed scales (singular values of the linear part of world -> MNI): heads differ from
#: the template by up to about 25 % in a dimension; beyond this the result is absurd.
SCALE_RANGE: tuple[float, float] = (0.7, 1.4)
#: Least Dice between the scan's brain-ish mask carried into MNI and the MNI brain mask.
#: Phantoms reach 0.98, uniform or smoothed noise 0.50-0.54; the wide margin leaves room for
#: a real scan whose Otsu mask keeps some scalp (not measured here).
MIN_BRAIN_DICE = 0.75
#: The metric samples the template's brain mask dilated by this much (mm): the brain's edge
#: against the background then carries the scale (measured: without it, two phantoms of five
#: converged 4 mm off with scales 3-9 % too large; with it all within 0.7 mm median).
METRIC_MARGIN_MM = 6.0
#: Tilts (degrees, about each axis) tried from the centred start before the gradient descent
#: (it finds the tilt from within about 15 degrees; measured: a 20/-10/15 degree tilt at
#: scale 1.15 ended 10 mm off without this search, 0.3 mm with it).
_TILTS_DEG: tuple[float, ...] = (-20.0, 0.0, 20.0)
#: Threads SimpleITK may use (the machine is shared; a registration is a few seconds).
THREADS = 2

_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_lps(matrix: np.ndarray) -> np.ndarray:
    """A 4x4 matrix whose output is in RAS returned with its output in LPS, and back.

    Why one function: ITK's physical space is LPS and ours RAS; they differ by negating x
    and y, a flip that is its own inverse. A voxel -> RAS affine becomes voxel -> LPS as
    ``ras_lps(affine)`` (and back the same way); a transform from LPS to LPS becomes one
    from RAS to RAS by flipping its output and its input, ``ras_lps(matrix) @ ras_lps(eye)``
    (:func:`_ras_matrix`).
    """
    return _FLIP @ np.asarray(matrix, dtype=np.float64)


@dataclass(frozen=True)
class MniTransform:
    """World RAS mm of one scan -> MNI152 RAS mm, found by :func:`register_to_mni`.

    Attributes
    ----------
    matrix : np.ndarray
        (4, 4) world RAS -> MNI RAS.
    metric : float
        Mattes mutual information at the end (negative; lower is a better match).
    brain_dice : float
        Dice of the scan's brain-ish mask carried into MNI with the MNI brain mask.
    """

    matrix: np.ndarray
    metric: float
    brain_dice: float

    @property
    def scales(self) -> np.ndarray:
        """Singular values of the linear part (1 = the head has the template's size)."""
        return np.linalg.svd(self.matrix[:3, :3], compute_uv=False)

    def to_mni(self, points_world_ras_mm: np.ndarray) -> np.ndarray:
        """(n, 3) world RAS mm of the scan -> (n, 3) MNI RAS mm."""
        return voxel_to_world(self.matrix, points_world_ras_mm)

    def from_mni(self, points_mni_mm: np.ndarray) -> np.ndarray:
        """(n, 3) MNI RAS mm -> (n, 3) world RAS mm of the scan."""
        return world_to_voxel(self.matrix, points_mni_mm)


def _sitk() -> ModuleType:
    """SimpleITK on :data:`THREADS` threads, imported when first needed (it loads in about a second)."""
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(THREADS)
    return sitk


def _to_itk(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A float32 SimpleITK image of ``data`` (i, j, k) on the grid of the voxel -> RAS ``affine``."""
    sitk = _sitk()
    lps = ras_lps(affine)
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, dtype=np.float32).transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in lps[:3, 3]))
    image.SetDirection(tuple(float(d) for d in (lps[:3, :3] / spacing).ravel()))
    return image


def _working_image(image: sitk.Image, spacing: float) -> sitk.Image:
    """``image`` smoothed by the missing resolution and resampled to isotropic ``spacing`` on its own axes."""
    sitk = _sitk()
    src = np.asarray(image.GetSpacing())
    sigma = np.sqrt(np.maximum(spacing**2 - src**2, 0.0)) / 2.355
    smooth = sitk.SmoothingRecursiveGaussian(image, [float(max(s, 1e-3)) for s in sigma])
    size = [max(1, int(np.ceil(n * s / spacing))) for n, s in zip(image.GetSize(), src)]
    return sitk.Resample(smooth, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), [spacing] * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


@functools.lru_cache(maxsize=1)
def _fixed_images() -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """The MNI template masked to its brain, the mask and the metric's mask, on the working grid.

    Cached (2 s to make; never modified).
    """
    sitk = _sitk()
    anat = load_mni_anatomy()
    mask = sitk.Cast(_working_image(_to_itk(anat.brain, anat.affine), WORKING_SPACING_MM) > 0.5, sitk.sitkUInt8)
    fixed = sitk.Mask(_working_image(_to_itk(np.where(anat.brain, anat.t1, 0.0), anat.affine), WORKING_SPACING_MM), mask)
    margin = round(METRIC_MARGIN_MM / WORKING_SPACING_MM)
    return fixed, mask, sitk.BinaryDilate(mask, [margin] * 3)


def _brainish_mask(image: sitk.Image) -> sitk.Image:
    """The largest connected Otsu-foreground component, holes filled (uint8 SimpleITK image)."""
    sitk = _sitk()
    data = sitk.GetArrayFromImage(image)
    positive = data[data > 0]
    if positive.size == 0:
        mask = np.zeros(data.shape, bool)
    else:
        otsu = sitk.OtsuThresholdImageFilter()
        otsu.Execute(image)
        fore = data > otsu.GetThreshold()
        labels, n = ndimage.label(fore)
        if n:
            largest = 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(labels), labels, range(1, n + 1))))
            mask = ndimage.binary_fill_holes(labels == largest)
        else:
            mask = fore
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(image)
    return out


def _initial_similarity(fixed: sitk.Image, moving: sitk.Image, metric_mask: sitk.Image, fixed_mask: sitk.Image,
                        moving_mask: sitk.Image) -> sitk.Similarity3DTransform:
    """The starting similarity: centres of mass (moments), the size from the brain volumes, the best tilt.

    Why more than the moments: the gradient descent finds the tilt only from within about
    15 degrees, and a head larger than the template pulls a rigid fit astray. The scale is
    the cube root of the ratio of the brain-ish mask volumes; the tilt is the best of
    :data:`_TILTS_DEG` per axis (27 metric evaluations on a 6 mm grid, under a second).
    """
    sitk = _sitk()
    tx = sitk.CenteredTransformInitializer(fixed, sitk.Mask(moving, moving_mask), sitk.Similarity3DTransform(),
                                           sitk.CenteredTransformInitializerFilter.MOMENTS)
    vol_moving = float(sitk.GetArrayViewFromImage(moving_mask).sum()) * float(np.prod(moving_mask.GetSpacing()))
    vol_fixed = float(sitk.GetArrayViewFromImage(fixed_mask).sum()) * float(np.prod(fixed_mask.GetSpacing()))
    scale = float(np.clip(np.cbrt(vol_moving / max(vol_fixed, 1.0)), SCALE_RANGE[0], 1.0 / SCALE_RANGE[0]))
    tx.SetScale(scale)
    coarse = 2.0 * WORKING_SPACING_MM
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricFixedMask(sitk.Cast(_working_image(metric_mask, coarse) > 0.5, sitk.sitkUInt8))
    method.SetInterpolator(sitk.sitkLinear)
    fixed_coarse, moving_coarse = _working_image(fixed, coarse), _working_image(moving, coarse)
    best: tuple[float, tuple[float, ...]] = (np.inf, (0.0, 0.0, 1.0, 0.0))
    for angles in itertools.product(_TILTS_DEG, repeat=3):
        rotation = Rotation.from_euler("xyz", angles, degrees=True).as_rotvec()
        angle = float(np.linalg.norm(rotation))
        axis = tuple(float(v) for v in (rotation / angle if angle > 0 else (0.0, 0.0, 1.0)))
        tx.SetRotation(axis, angle)
        method.SetInitialTransform(tx, inPlace=True)
        value = method.MetricEvaluate(fixed_coarse, moving_coarse)
        if value < best[0]:
            best = (value, (*axis, angle))
    tx.SetRotation(best[1][:3], best[1][3])
    return tx


def _ras_matrix(transform: sitk.AffineTransform) -> np.ndarray:
    """SimpleITK's fixed(MNI, LPS) -> moving(scan, LPS) affine as the 4x4 scan RAS -> MNI RAS."""
    matrix = np.asarray(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
    centre = np.asarray(transform.GetCenter(), dtype=np.float64)
    shift = np.asarray(transform.GetTranslation(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = centre + shift - matrix @ centre
    mni_to_scan = ras_lps(lps) @ ras_lps(np.eye(4))  # flip the output and the input
    return np.linalg.inv(mni_to_scan)


def _stage(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image, transform: sitk.Transform,
           iterations: int) -> float:
    """One optimisation (two resolution levels) of ``transform`` in place; returns the final metric."""
    sitk = _sitk()
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.25, seed=11)
    method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(transform, inPlace=True)
    method.Execute(fixed, moving)
    return float(method.GetMetricValue())


def check_transform(transform: MniTransform, name: str) -> None:
    """Refuse an absurd registration in one sentence naming the scan (scale or brain overlap).

    Raises
    ------
    InputFileError
        When a scale lies outside :data:`SCALE_RANGE` or the brain Dice is below
        :data:`MIN_BRAIN_DICE`: the image is not a brain this method can place in MNI space.
    """
    lo, hi = SCALE_RANGE
    scales = transform.scales
    if not np.all(np.isfinite(transform.matrix)) or scales.min() < lo or scales.max() > hi:
        raise InputFileError(
            f"{name} could not be registered to the MNI brain: the fitted scale "
            f"{scales.min():.2f}-{scales.max():.2f} lies outside {lo}-{hi}, so it is probably not a brain scan."
        )
    if transform.brain_dice < MIN_BRAIN_DICE:
        raise InputFileError(
            f"{name} could not be registered to the MNI brain: its brain mask overlaps the MNI brain by a "
            f"Dice of {transform.brain_dice:.2f} (< {MIN_BRAIN_DICE}), so it is probably not a brain scan."
        )


def register_to_mni(volume: Volume, name: str | None = None) -> TaskGenerator[MniTransform]:
    """Register a scan (SWI magnitude or T1) to the MNI152 template by affine registration.

    A task generator (:mod:`core.progress`): it yields between the stages (each a second
    or two) and returns the :class:`MniTransform`, checked by :func:`check_transform`.

    Parameters
    ----------
    volume : Volume
        A 3D scan in world RAS mm (its affine).
    name : str or None
        What the error sentence calls the scan (default: the file name, or "the scan").

    Raises
    ------
    InputFileError
        The volume is not 3D, or the registration result is absurd.
    """
    return _register(volume, name or (volume.path.name if volume.path is not None else "the scan"))


def _register(volume: Volume, name: str) -> Generator[Progress, None, MniTransform]:
    total = 5
    if volume.data.ndim != 3:
        raise InputFileError(f"{name} has {volume.data.ndim} dimensions; registration to MNI needs one 3D volume.")
    yield Progress(0, total, "Preparing the scan and the MNI template")
    sitk = _sitk()
    fixed, fixed_mask, metric_mask = _fixed_images()
    data = np.nan_to_num(np.asarray(volume.data, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    moving = _working_image(_to_itk(data, volume.affine), WORKING_SPACING_MM)
    moving_mask = _brainish_mask(moving)

    try:  # SimpleITK stops on a blank or degenerate image (zero mass, no overlap): the scan's fault
        yield Progress(1, total, "Aligning the centres of mass, the size and the tilt")
        similarity = _initial_similarity(fixed, moving, metric_mask, fixed_mask, moving_mask)
        yield Progress(2, total, "Rigid registration (with one scale)")
        _stage(fixed, moving, metric_mask, similarity, iterations=100)
        affine = sitk.AffineTransform(3)
        affine.SetCenter(similarity.GetCenter())
        affine.SetMatrix(similarity.GetMatrix())
        affine.SetTranslation(similarity.GetTranslation())
        yield Progress(3, total, "Affine registration")
        metric = _stage(fixed, moving, metric_mask, affine, iterations=150)
    except RuntimeError as exc:
        why = (str(exc).strip().splitlines() or ["no reason given"])[-1].strip()[:160]
        raise InputFileError(f"{name} could not be registered to the MNI brain: SimpleITK stopped ({why}), "
                             "so it is probably not a brain scan.") from None
    yield Progress(4, total, "Checking the result")
    warped = sitk.Resample(moving_mask, fixed_mask, affine, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    a = sitk.GetArrayFromImage(warped) > 0
    b = sitk.GetArrayFromImage(fixed_mask) > 0
    dice = float(2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))
    result = MniTransform(matrix=_ras_matrix(affine), metric=metric, brain_dice=dice)
    check_transform(result, name)
    yield Progress(total, total, "Registered to MNI")
    return result
