"""Simulated T1-weighted scans: :func:`make_t1_case` and what it returns, :class:`AnatomyCase`.

The recipe, step by step (partial volume, T1 contrast, bias field, magnitude noise,
storage), is in the package docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

from ...anatomy.grids import _DEFAULT_MARGIN_MM, make_affine
from ...anatomy.mni import LANDMARKS_MNI, load_mni_anatomy
from ...anatomy.sampling import _sample_maps
from .scanner import _BIAS_DEGREE, _bias_coefficients, _bias_field

#: Stored value per unit of normalised signal: white matter lands near 850, as in the
#: arbitrary units of a typical scanner's int16 T1w export.
INTENSITY_SCALE: float = 1000.0

#: Labels of the tissue truth image (BIDS ``dseg`` style).
TISSUE_LABELS: dict[int, str] = {0: "background", 1: "csf", 2: "gm", 3: "wm"}

#: Mean normalised T1w signal of each tissue before seeded jitter. Measured as the median
#: template intensity where a class's probability exceeds 0.9 (CSF 0.28, GM 0.65, WM 0.87)
#: and rounded down slightly: the averaged template's CSF and GM are lifted by blur.
_TISSUE_MEANS: dict[str, float] = {"csf": 0.25, "gm": 0.60, "wm": 0.85}


@dataclass(eq=False)
class AnatomyCase:
    """A simulated scan and the ground truth it was made from.

    Attributes
    ----------
    image : nib.Nifti1Image
        The simulated T1w image (int16 by default), affine in qform and sform.
    truth : dict
        ``'tissue'``: uint8 label image on the same grid (:data:`TISSUE_LABELS`), the
        most probable class of each voxel after partial-volume sampling;
        ``'brain_mask'``: uint8 image, 1 where at least half the voxel is brain;
        ``'landmarks'``: name -> world RAS mm (list of 3 floats);
        ``'params'``: every parameter and seeded draw, JSON-serialisable.
        Never give any of it to a model under test.
    """

    image: nib.Nifti1Image
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        """The case's parameters (same object as ``truth['params']``)."""
        return self.truth["params"]


def _nifti(data: np.ndarray, affine: np.ndarray, descrip: str) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)  # scanner anatomical
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = descrip[:79].encode("ascii")
    return img


def make_t1_case(
    seed: int,
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    orientation: str = "RAS",
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    bias_strength: float = 0.15,
    noise_sd: float = 0.03,
    tissue_jitter: float = 0.05,
    dtype: Any = np.int16,
    fov_mm: tuple[float, float, float] | None = None,
    center_ras: tuple[float, float, float] | None = None,
    margin_mm: float = _DEFAULT_MARGIN_MM,
    intensity_scale: float = INTENSITY_SCALE,
) -> AnatomyCase:
    """Simulate a T1-weighted scan of the MNI brain on a scanner-like grid.

    See the package docstring for the physics. The same arguments always give the same
    case (every random draw comes from ``numpy.random.default_rng(seed)``, in a fixed
    order: tissue means, bias field, noise).

    Parameters
    ----------
    seed : int
        Seed of all random draws.
    voxel_size, orientation, rotation_deg, fov_mm, center_ras, margin_mm
        The grid; see :func:`make_affine`.
    bias_strength : float
        Amplitude of the log bias field: the field spans ``exp(+-bias_strength)`` over the
        brain (0.15 gives about +-15 %, a typical uncorrected 32-channel head coil).
    noise_sd : float
        Standard deviation of each complex noise channel in units of the normalised signal
        (white matter ~0.85). In the background the image is Rayleigh distributed with
        ``sqrt(mean(M**2) / 2) = noise_sd * intensity_scale``.
    tissue_jitter : float
        Relative half-range of the uniform seeded jitter of each tissue's mean signal,
        imitating different scanners and sequence parameters. The T1w order WM > GM > CSF
        is enforced whatever the draw.
    dtype : numpy dtype
        Stored dtype; integer types are rounded and clipped to their range.
    intensity_scale : float
        Stored value per unit of normalised signal (the receiver gain and the converter's
        scaling, which differ between vendors and protocols; intensities of MR images are
        arbitrary units). White matter lands near ``0.85 * intensity_scale``.

    Returns
    -------
    AnatomyCase
        The image and its ground truth.
    """
    if bias_strength < 0 or noise_sd < 0 or tissue_jitter < 0 or not intensity_scale > 0:
        raise ValueError("bias_strength, noise_sd, tissue_jitter must be >= 0 and intensity_scale > 0")
    anat = load_mni_anatomy()
    affine, shape = make_affine(voxel_size, orientation, rotation_deg, fov_mm, center_ras, margin_mm)
    rng = np.random.default_rng(int(seed))

    # Seeded per-tissue contrast, T1w ordering enforced.
    draws = rng.uniform(-1.0, 1.0, size=3)
    means = {name: base * (1.0 + tissue_jitter * d) for (name, base), d in zip(_TISSUE_MEANS.items(), draws)}
    ordered = sorted(means.values())
    means = dict(zip(("csf", "gm", "wm"), ordered))
    coeffs = _bias_coefficients(rng)

    maps = _sample_maps(anat, affine, shape)
    signal = means["csf"] * maps["csf"] + means["gm"] * maps["gm"] + means["wm"] * maps["wm"]
    bias = _bias_field(coeffs, float(bias_strength), affine, shape)
    signal *= bias
    real = signal + rng.normal(0.0, noise_sd, size=shape).astype(np.float32)
    imag = rng.normal(0.0, noise_sd, size=shape).astype(np.float32)
    magnitude = np.hypot(real, imag) * np.float32(intensity_scale)

    out_dtype = np.dtype(dtype)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        data = np.clip(np.rint(magnitude), info.min, info.max).astype(out_dtype)
    else:
        data = magnitude.astype(out_dtype)

    # Truth: most probable class per voxel; background is what is left of the voxel.
    tissue_fracs = np.stack([maps["csf"], maps["gm"], maps["wm"]])
    background = np.clip(1.0 - tissue_fracs.sum(axis=0), 0.0, 1.0)
    labels = np.argmax(np.concatenate([background[None], tissue_fracs]), axis=0).astype(np.uint8)
    brain_mask = (maps["brain"] >= 0.5).astype(np.uint8)

    params: dict[str, Any] = {
        "generator": "napari_neuroreview.core.phantoms.anatomy.make_t1_case",
        "template": "MNI152 ICBM 2009 nonlinear symmetric (nilearn), 1 mm",
        "seed": int(seed),
        "voxel_size": [float(v) for v in voxel_size],
        "orientation": "".join(tuple(str(orientation).upper())),
        "rotation_deg": [float(r) for r in rotation_deg],
        "shape": [int(n) for n in shape],
        "affine": np.round(affine, 6).tolist(),
        "bias_strength": float(bias_strength),
        "bias_degree": _BIAS_DEGREE,
        "bias_coefficients": [float(c) for c in coeffs],
        "noise_sd": float(noise_sd),
        "noise_model": "rician (magnitude of complex gaussian)",
        "tissue_jitter": float(tissue_jitter),
        "tissue_means": {k: float(v) for k, v in means.items()},
        "intensity_scale": float(intensity_scale),
        "dtype": out_dtype.name,
        "labels": {str(k): v for k, v in TISSUE_LABELS.items()},
    }
    descrip = "neuroreview simulated T1w (MNI152 2009), not a patient"
    image = _nifti(data, affine, descrip)
    truth: dict[str, Any] = {
        "tissue": _nifti(labels, affine, "neuroreview tissue truth 0 bg 1 csf 2 gm 3 wm"),
        "brain_mask": _nifti(brain_mask, affine, "neuroreview brain mask truth"),
        "landmarks": {k: [float(c) for c in v] for k, v in LANDMARKS_MNI.items()},
        "params": params,
    }
    truth["tissue"].header.set_intent("label")
    return AnatomyCase(image=image, truth=truth)
