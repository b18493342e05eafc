"""Scanning a patient: the six sequences, the lesion and oedema labels, and the truth.

The recipe (standard MRI knowledge; every value approximate, chosen to give the textbook
appearance, with the per-patient jitter and per-site contrast of :mod:`.cohort`):

1. *Tissue on the grid.* Grey matter, white matter and CSF fractions of the MNI152
   template sampled onto the grid with partial volume (``core.anatomy.sample_template_maps``;
   their sum is the brain's, which clips the lesions to the brain);
   each lesion's parts (:mod:`.shapes`) replace the tissue they occupy: a tumour replaces
   everything, its oedema shell replaces the white matter and 30 % of the grey matter
   (vasogenic oedema spreads in white matter and spares the cortex), not the CSF.
2. *Contrast.* Each sequence's signal is the fraction-weighted sum of :data:`CONTRAST`
   (linear partial-volume mixing): T1 WM > GM > CSF, the tumour iso-hypointense, a
   subacute haemorrhage bright; T2 CSF bright, oedema and necrosis bright, the solid part
   intermediate, dark when the lesion is ``t2_dark`` (:data:`T2_DARK`); FLAIR CSF dark,
   oedema brightest; contrast T1 the T1 plus :data:`ENHANCEMENT` in the solid part (the
   rim of a ring lesion; the necrotic core does not enhance).
3. *Diffusion, on its own coarser grid* (EPI DWI is acquired at 2 x 2 x 4-5 mm): a b = 0
   and a b = 1000 s/mm2 image from T2-weighted ``S0`` and :data:`ADC_1E3` (10^-3 mm2/s)
   per part, ``S_b = S0 exp(-b ADC)``, the solid part's ADC the lesion's ``adc_ratio`` x
   white matter's. The scanner's ADC map is computed back from the two noisy magnitudes,
   ``ln(S0 / S_b) / b``, as scanners do; ``dwi`` is the b = 1000 trace image.
4. *Scanner.* One receive-coil bias field per session (``anatomy.scanner.random_bias_field``,
   the same field in world mm on both grids, so it cancels in the ADC), Rician noise
   (``complex_noise``), a receiver gain; int16 (ADC in 10^-6 mm2/s, 0 where the b = 0 signal
   is noise).

Nothing here reads the patient's origin, sex or age: the images depend on the lesions and
the scanner only (tests check that sex and age do not change a voxel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

from ...anatomy import (
    load_mni_anatomy,
    make_affine,
    sample_template_maps,
    world_to_voxel,
)
from ...tasks.metastasis.classes import SEQUENCES
from ..anatomy.scanner import complex_noise, random_bias_field
from ..swi_contract import phantom_image
from .lesions import Lesion
from .shapes import LesionParts, lesion_parts

__all__ = ["ADC_1E3", "CONTRAST", "ENHANCEMENT", "SEQUENCES", "T2_DARK", "MetastasisCase", "render_lesions"]

_PARTS: tuple[str, ...] = ("csf", "gm", "wm", "oedema", "solid", "necrosis", "haemorrhage")
#: Normalised signal per part (step 2); ``s0`` is the DWI's b = 0 weighting (T2-like).
CONTRAST: dict[str, dict[str, float]] = {
    "t1": {"csf": 0.25, "gm": 0.60, "wm": 0.85, "oedema": 0.52, "solid": 0.55, "necrosis": 0.30, "haemorrhage": 0.95},
    "t2": {"csf": 1.00, "gm": 0.55, "wm": 0.40, "oedema": 0.80, "solid": 0.62, "necrosis": 0.90, "haemorrhage": 0.30},
    "flair": {"csf": 0.08, "gm": 0.62, "wm": 0.48, "oedema": 0.95, "solid": 0.75, "necrosis": 0.45,
              "haemorrhage": 0.40},
    "s0": {"csf": 1.00, "gm": 0.60, "wm": 0.45, "oedema": 0.80, "solid": 0.62, "necrosis": 0.90, "haemorrhage": 0.30},
}
#: A ``t2_dark`` lesion's solid part on the T2-weighted contrasts (below white matter on T2).
T2_DARK: dict[str, float] = {"t2": 0.30, "flair": 0.42, "s0": 0.32}
#: Contrast T1: added to the solid part's T1 signal at enhancement 1 (solid ~1.1: brighter than white matter).
ENHANCEMENT: float = 0.55
#: ADC (10^-3 mm2/s) per part; the solid part's is ``adc_ratio x ADC_1E3['wm']``.
ADC_1E3: dict[str, float] = {"csf": 3.0, "gm": 0.85, "wm": 0.75, "oedema": 1.45, "necrosis": 2.2, "haemorrhage": 0.6}
_B_1E3: float = 1.0  # b = 1000 s/mm2 in mm2/(10^-3 s) units
_OEDEMA_GM: float = 0.3
_SCALE: float = 1000.0
#: The b = 1000 image's extra gain (its signal is ~0.15 of T1's white matter; chosen to use int16 well).
_DWI_GAIN: float = 4.0
#: ADC maps are clipped here (10^-3 mm2/s; free water at body temperature is 3.0).
_ADC_MAX_1E3: float = 4.0
_DESCRIP = "neuroreview simulated {} (MNI152 2009), not a patient"


@dataclass(eq=False)
class MetastasisCase:
    """A rendered patient: ``images`` (the :data:`SEQUENCES` stems -> int16 NIfTI, t1, t2,
    flair and ce_t1 on the structural grid, dwi and adc on the DWI grid, all in MNI world mm),
    ``lesions`` and ``oedema`` (label images on the ce_t1 grid: a lesion's id over its tumour,
    and over its oedema) and ``truth`` (lesions, scanner, grids; never the origin, sex or age)."""

    images: dict[str, nib.Nifti1Image]
    lesions: nib.Nifti1Image
    oedema: nib.Nifti1Image
    truth: dict[str, Any] = field(default_factory=dict)

    def files(self) -> dict[str, nib.Nifti1Image]:
        """Every image by file stem: the sequences, then ``lesions`` and ``oedema``."""
        return {**self.images, "lesions": self.lesions, "oedema": self.oedema}


@dataclass(frozen=True, eq=False)
class _Scene:
    """Fractions of every part on one grid, and each lesion's own (for labels)."""

    fractions: dict[str, np.ndarray]
    per_lesion: list[tuple[Lesion, LesionParts]]
    oedema_tissue: np.ndarray  # the share of a voxel's tissue that oedema takes (wm + 0.3 gm)


def _scene(lesions: tuple[Lesion, ...], affine: np.ndarray, shape: tuple[int, int, int]) -> _Scene:
    """Step 1: tissue fractions with the lesions' parts put in (see the module docstring)."""
    anat = load_mni_anatomy()
    t = sample_template_maps({k: getattr(anat, k) for k in ("csf", "gm", "wm")}, affine, shape)
    brain = np.clip(t["csf"] + t["gm"] + t["wm"], 0.0, 1.0)  # the mask's partial volume (csf = mask - gm - wm)
    tumour = np.zeros(shape, np.float32)
    shell = np.zeros(shape, np.float32)
    per: list[tuple[Lesion, LesionParts]] = []
    for lesion in lesions:
        parts = lesion_parts(lesion, affine, shape)
        if parts is None:
            continue
        inside = brain[parts.box]
        parts = LesionParts(parts.box, parts.solid * inside, parts.necrosis * inside, parts.haemorrhage * inside,
                            parts.shell * inside)
        tumour[parts.box] += parts.tumour
        shell[parts.box] += parts.shell
        per.append((lesion, parts))
    tumour = np.clip(tumour, 0.0, 1.0)
    shell = np.minimum(shell, 1.0 - tumour)
    tissue = t["wm"] + _OEDEMA_GM * t["gm"]
    frac = {
        "csf": t["csf"] * (1.0 - tumour),
        "gm": t["gm"] * np.clip(1.0 - tumour - _OEDEMA_GM * shell, 0.0, 1.0),
        "wm": t["wm"] * np.clip(1.0 - tumour - shell, 0.0, 1.0),
        "oedema": shell * tissue,
    }
    return _Scene(frac, per, tissue)


def _signal(scene: _Scene, values: dict[str, float], solid: Callable[[Lesion], float]) -> np.ndarray:
    """Fraction-weighted sum of ``values``; ``solid(lesion)`` is a lesion's solid-part value."""
    out = np.zeros(scene.fractions["csf"].shape, np.float32)
    for k in ("csf", "gm", "wm", "oedema"):
        out += scene.fractions[k] * np.float32(values[k])
    for lesion, p in scene.per_lesion:
        out[p.box] += p.solid * np.float32(solid(lesion)) + p.necrosis * np.float32(values["necrosis"]) \
            + p.haemorrhage * np.float32(values["haemorrhage"])
    return out


def _magnitude(rng: np.random.Generator, signal: np.ndarray, noise_sd: float) -> np.ndarray:
    real, imag = complex_noise(rng, noise_sd, signal.shape)
    return np.hypot(signal + real, imag)


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _labels(scene: _Scene, shape: tuple[int, int, int], oedema: bool) -> np.ndarray:
    """Each voxel's lesion id where that lesion's tumour (or, ``oedema``, its oedema) fills >= half of it."""
    best = np.zeros(shape, np.float32)
    out = np.zeros(shape, np.uint8)
    for lesion, p in scene.per_lesion:
        f = p.shell * scene.oedema_tissue[p.box] if oedema else p.tumour
        take = (f >= 0.5) & (f > best[p.box])
        out[p.box][take] = lesion.id
        best[p.box][take] = f[take]
    return out


def _contrast(rng: np.random.Generator, scanner: dict[str, Any]) -> dict[str, dict[str, float]]:
    """This session's values per sequence: :data:`CONTRAST` (with :data:`T2_DARK` as a T2-weighted
    table's ``"solid_dark"``), each x (1 +- ``tissue_jitter``), T1's grey matter and CSF moved
    from white matter by the site's ``t1_contrast``; ``"ce_t1"``: T1 plus the site's
    :data:`ENHANCEMENT` in the solid part; ``"adc"``: the jittered :data:`ADC_1E3`."""
    jitter = {seq: {k: float(1.0 + scanner["tissue_jitter"] * rng.uniform(-1, 1)) for k in _PARTS}
              for seq in (*CONTRAST, "adc")}
    out = {seq: {k: v * jitter[seq][k] for k, v in table.items()} for seq, table in CONTRAST.items()}
    for seq, dark in T2_DARK.items():
        out[seq]["solid_dark"] = dark * jitter[seq]["solid"]
    out["adc"] = {k: v * jitter["adc"][k] for k, v in ADC_1E3.items()}
    wm = out["t1"]["wm"]
    for key in ("gm", "csf"):
        out["t1"][key] = wm - float(scanner["t1_contrast"]) * (wm - out["t1"][key])
    out["ce_t1"] = {**out["t1"], "solid": out["t1"]["solid"] + ENHANCEMENT * float(scanner["enhancement"])}
    return out


def _solid(table: dict[str, float]) -> Callable[[Lesion], float]:
    """A lesion's solid-part value in ``table``: its T2-dark value where it has one and the lesion is dark."""
    return lambda lesion: table["solid_dark"] if lesion.t2_dark and "solid_dark" in table else table["solid"]


def render_lesions(lesions: tuple[Lesion, ...], scanner: dict[str, Any]) -> MetastasisCase:
    """Render ``lesions`` with ``scanner`` (the keys :func:`.cohort.draw_scanner` gives).

    Every random draw (tissue jitter, bias, noise) comes from ``default_rng(scanner['seed'])``
    in a fixed order, so the same lesions and scanner give the same images.
    """
    rng = np.random.default_rng(int(scanner["seed"]))
    contrast = _contrast(rng, scanner)
    bias_seed = int(rng.integers(2**31 - 1))
    gain, noise = _SCALE * float(scanner["gain"]), float(scanner["noise_sd"])
    grids = {name: make_affine(tuple(scanner[key]), scanner["orientation"], tuple(scanner["rotation_deg"]))
             for name, key in (("structural", "voxel_size"), ("dwi", "dwi_voxel_size"))}
    images: dict[str, nib.Nifti1Image] = {}

    affine, shape = grids["structural"]
    scene = _scene(lesions, affine, shape)
    bias, _ = random_bias_field(np.random.default_rng(bias_seed), float(scanner["bias_strength"]), affine, shape)
    for seq in ("t1", "t2", "flair", "ce_t1"):
        signal = _signal(scene, contrast[seq], _solid(contrast[seq])) * bias
        images[seq] = phantom_image(_int16(_magnitude(rng, signal, noise) * gain), affine, _DESCRIP.format(seq))
    lesion_labels, oedema_labels = _labels(scene, shape, False), _labels(scene, shape, True)
    truth_lesions = [_lesion_truth(lesion, lesion_labels, oedema_labels, affine) for lesion in lesions]
    labels = (phantom_image(lesion_labels, affine, "neuroreview lesion ids (truth)", intent_label=True),
              phantom_image(oedema_labels, affine, "neuroreview oedema by lesion id (truth)", intent_label=True))

    affine, shape = grids["dwi"]
    scene = _scene(lesions, affine, shape)
    bias, _ = random_bias_field(np.random.default_rng(bias_seed), float(scanner["bias_strength"]), affine, shape)
    s0, adc = contrast["s0"], contrast["adc"]
    b0 = _signal(scene, s0, _solid(s0))
    weighted = {k: s0[k] * float(np.exp(-_B_1E3 * adc[k])) for k in adc}
    b1000 = _signal(scene, weighted, lambda les: _solid(s0)(les) * float(np.exp(-_B_1E3 * les.adc_ratio * adc["wm"])))
    dnoise = noise * float(scanner["dwi_noise_factor"])
    m0, m1 = _magnitude(rng, b0 * bias, dnoise), _magnitude(rng, b1000 * bias, dnoise)
    measured = np.where(m0 > 5.0 * dnoise, np.log(np.maximum(m0, 1e-6) / np.maximum(m1, 1e-6)) / _B_1E3, 0.0)
    images["dwi"] = phantom_image(_int16(m1 * gain * _DWI_GAIN), affine, _DESCRIP.format("dwi b=1000"))
    images["adc"] = phantom_image(_int16(np.clip(measured, 0.0, _ADC_MAX_1E3) * 1000.0), affine,
                                  _DESCRIP.format("adc 1e-6 mm2/s"))

    truth = {
        "lesions": truth_lesions,
        "scanner": dict(scanner),
        "contrast": contrast,
        "grids": {name: {"affine": np.round(a, 6).tolist(), "shape": [int(n) for n in s]}
                  for name, (a, s) in grids.items()},
    }
    return MetastasisCase(images={seq: images[seq] for seq in SEQUENCES}, lesions=labels[0], oedema=labels[1],
                          truth=truth)


def _lesion_truth(lesion: Lesion, lesions: np.ndarray, oedema: np.ndarray, affine: np.ndarray) -> dict[str, Any]:
    """A lesion's truth: drawn attributes, world position, voxel on the ce_t1 grid, label volumes."""
    vox_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    rec = {k: getattr(lesion, k) for k in ("id", "diameter_mm", "enhancement", "necrosis_fraction", "oedema_ratio",
                                           "adc_ratio", "t2_dark", "haemorrhage", "location", "region")}
    rec["world_ras_mm"] = [float(v) for v in lesion.centre_mni_mm]
    rec["voxel_ijk"] = [round(float(v), 3) for v in world_to_voxel(affine, np.asarray(lesion.centre_mni_mm))]
    rec["volume_mm3"] = round(float((lesions == lesion.id).sum()) * vox_mm3, 3)
    rec["oedema_volume_mm3"] = round(float((oedema == lesion.id).sum()) * vox_mm3, 3)
    return rec
