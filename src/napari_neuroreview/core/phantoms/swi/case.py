"""One simulated SWI case: :func:`make_swi_case`, which returns a :class:`~..swi_contract.SWICase`.

:func:`make_swi_case` is the recipe, step by step: seeded set-up draws, the scanner
grid, the template's tissue signal sampled with partial volume, the objects in a fixed
order (iron, veins, sulcal and air-bone spots, calcifications, microbleeds), then the
scanner (bias field, complex noise, magnitude and phase) and the ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from napari_neuroreview.core.anatomy import load_mni_anatomy, make_affine, sample_template_maps
from napari_neuroreview.core.phantoms.anatomy import complex_noise, random_bias_field

from ..swi_contract import CMBSite, SiderosisSite, SWICase, check_sites, lesion_weights, phantom_image
from .contrast import _template_signal
from .lesions import add_calcifications, add_microbleed_sites, add_microbleeds, add_siderosis
from .mimics import MIMIC_LABELS, MIMIC_TYPES, add_airbone, add_iron, add_sulcal, add_veins
from .scene import _Grid, _r, _Scene
from .susceptibility import B0_T, BLOOMING_K_PER_MS, PHASE_CONVENTION, _bloom


def _resolve_mimics(rng: np.random.Generator, mimics: dict[str, int] | None) -> dict[str, int]:
    defaults = {
        "vein": int(rng.integers(6, 11)),
        "iron": 1,
        "sulcal": int(rng.integers(1, 4)),
        "airbone": int(rng.integers(1, 3)),
        "calcification": int(rng.integers(0, 3)),
    }
    if mimics is None:
        return defaults
    unknown = set(mimics) - set(MIMIC_TYPES)
    if unknown:
        raise ValueError(f"unknown mimic types {sorted(unknown)}; known: {', '.join(MIMIC_TYPES)}")
    out = dict(defaults)
    for k, v in mimics.items():
        if int(v) < 0:
            raise ValueError(f"mimic count for {k!r} must be >= 0, got {v!r}")
        out[k] = int(v)
    return out


def make_swi_case(
    seed: int,
    voxel_size: tuple[float, float, float] = (0.9, 0.9, 1.8),
    orientation: str = "LAS",
    rotation_deg: tuple[float, float, float] | None = None,
    n_cmb: int | None = None,
    cmb_diameter_mm: tuple[float, float] = (2.0, 10.0),
    location_weights: dict[str, float] | None = None,
    mimics: dict[str, int] | None = None,
    with_phase: bool = True,
    slab: tuple[float, float] | None = None,
    bias_strength: float = 0.2,
    noise_sd: float = 0.03,
    te_ms: float = 20.0,
    intensity_scale: float = 1000.0,
    dtype: Any = np.int16,
    margin_mm: float = 5.0,
    t2star_scale: float = 1.0,
    cmb_sites: Sequence[CMBSite] | None = None,
    siderosis: Sequence[SiderosisSite] | None = None,
) -> SWICase:
    """Simulate an SWI scan (GRE magnitude + filtered phase) with microbleeds and mimics.

    See the package docstring for the physics and anatomy. Every random draw comes from
    ``numpy.random.default_rng(seed)`` in a fixed order, so the same arguments always give
    the same case.

    Parameters
    ----------
    seed : int
        Seed of all random draws.
    voxel_size, orientation
        The grid (see :func:`~.anatomy.make_affine`); default 0.9 x 0.9 x 1.8 mm stored
        LAS, a common clinical SWI.
    rotation_deg : tuple of 3 floats or None
        Head rotation in the scanner (degrees about x, y, z). None draws a slight one,
        uniform in +-3 degrees per axis; ``(0, 0, 0)`` for none.
    n_cmb : int or None
        Number of microbleeds; None draws Poisson(6) (may be 0). Fewer are placed if the
        field of view has no room (``params['n_cmb_placed']``).
    cmb_diameter_mm : (float, float)
        Range of the true (deposit) diameter; draws are skewed to small bleeds
        (``Beta(1.3, 4)`` over the range: 78 % below 5 mm for 2-10 mm). The visible
        diameter is ``(1 + k TE)`` times larger (:data:`BLOOMING_K_PER_MS`).
    location_weights : dict or None
        Share of ``'lobar'``, ``'deep'``, ``'infratentorial'`` bleeds (default 0.5, 0.3,
        0.2); renormalised over the classes the field of view contains.
    mimics : dict or None
        Counts per mimic type (:data:`MIMIC_TYPES`); missing types get seeded defaults:
        veins 6-10, sulcal spots 1-3, air-bone artefacts 1-2, calcifications 0-2; ``iron``
        is on (1, the default: globus pallidus, substantia nigra, red nucleus and dentate
        on both sides, plus the weaker putamen, caudate, thalamus) or off (0).
    with_phase : bool
        Simulate the phase image too (the magnitude is the same either way).
    slab : (float, float) or None
        ``(z_min, z_max)`` world mm of an axial slab, as clinical SWI often is; None
        covers the whole brain.
    bias_strength : float
        Amplitude of the log bias field (spans ``exp(+-bias_strength)``).
    noise_sd : float
        Complex noise SD per channel in normalised signal units (white matter ~0.44 at
        TE 20 ms).
    te_ms : float
        Echo time: sets tissue contrast, blooming and phase.
    intensity_scale : float
        Stored value per unit of normalised signal.
    dtype : numpy dtype
        Magnitude dtype (int16 rounded and clipped, or float32).
    margin_mm : float
        Field of view margin around the brain (in-plane, and in z without ``slab``).
    t2star_scale : float
        Multiplies every tissue's and nucleus's T2*: a contrast change at the same TE
        (1.5 T has ~1.25 x the 3 T T2*, Peters et al. 2007, Magn Reson Imaging 25:748;
        domain randomisation, ``core.phantoms.scanner_draws``). 1.0: the 3 T values.
    cmb_sites : sequence of CMBSite or None
        Draw the microbleeds exactly there (``swi_contract.CMBSite``: centre, true
        diameter, region and location copied into the truth) instead of ``n_cmb`` /
        ``location_weights`` draws (``n_cmb`` must then be None). A site whose visible
        sphere leaves the view or meets an earlier site or a mimic is skipped and listed
        in ``truth['skipped_sites']`` with its reason. None: the drawn microbleeds, the
        case exactly as without this argument.
    siderosis : sequence of SiderosisSite or None
        Cortical superficial siderosis layers, drawn after the microbleeds
        (:func:`~.lesions.add_siderosis`) and recorded as ``siderosis`` mimics.

    Returns
    -------
    SWICase
    """
    if bias_strength < 0 or noise_sd < 0 or te_ms <= 0 or not intensity_scale > 0 or not t2star_scale > 0:
        raise ValueError("bias_strength and noise_sd must be >= 0; te_ms, intensity_scale and t2star_scale > 0")
    if n_cmb is not None and int(n_cmb) < 0:
        raise ValueError(f"n_cmb must be >= 0 or None, got {n_cmb!r}")
    check_sites(cmb_sites, n_cmb, siderosis)
    weights = lesion_weights(cmb_diameter_mm, location_weights)
    lo_d, hi_d = (float(v) for v in cmb_diameter_mm)
    anat = load_mni_anatomy()
    rng = np.random.default_rng(int(seed))

    # 1. draws that fix the case's set-up (always drawn, so one option never shifts others)
    drawn_rotation = rng.uniform(-3.0, 3.0, size=3)
    rotation = drawn_rotation if rotation_deg is None else np.asarray(rotation_deg, float)
    pd_jitter = rng.uniform(-0.04, 0.04, size=3)
    t2_jitter = rng.uniform(-0.08, 0.08, size=3)
    iron_jitter = float(rng.uniform(-0.1, 0.1))
    drawn_n = int(rng.poisson(6.0))
    n_requested = drawn_n if n_cmb is None else int(n_cmb)
    if cmb_sites is not None:
        n_requested = len(cmb_sites)
    counts = _resolve_mimics(rng, mimics)
    if t2star_scale != 1.0:  # T2* = base * (1 + jitter), so scale (1 + jitter); 1.0 leaves the case untouched
        t2_jitter = float(t2star_scale) * (1.0 + t2_jitter) - 1.0
        iron_jitter = float(t2star_scale) * (1.0 + iron_jitter) - 1.0

    # 2. grid
    lo, hi = anat.brain_bbox_mm
    if slab is None:
        affine, shape = make_affine(voxel_size, orientation, tuple(rotation), margin_mm=margin_mm)
    else:
        z0, z1 = (float(v) for v in slab)
        if not z1 > z0:
            raise ValueError(f"slab must be (z_min, z_max) with z_max > z_min, got {slab!r}")
        fov = (hi[0] - lo[0] + 2 * margin_mm, hi[1] - lo[1] + 2 * margin_mm, z1 - z0)
        centre = ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (z0 + z1) / 2)
        affine, shape = make_affine(voxel_size, orientation, tuple(rotation), fov_mm=fov, center_ras=centre)
    grid = _Grid(affine, shape)

    # 3. tissue signal on the template, iron nuclei included; partial-volume sampled
    iron_on = counts["iron"] > 0
    signal_1mm, tissue, nuclei_params = _template_signal(te_ms, pd_jitter, t2_jitter, iron_jitter, iron_on)
    maps = sample_template_maps({"signal": signal_1mm, "brain": anat.brain}, affine, shape, max_workers=2)
    del signal_1mm
    brain_mask = (maps["brain"] >= 0.5).astype(np.uint8)

    # 4-9. objects, in a fixed order (each draws from rng in turn)
    scene = _Scene(grid, rng, te_ms, with_phase)
    if iron_on:
        add_iron(scene, nuclei_params)
    add_veins(scene, counts["vein"])
    add_sulcal(scene, counts["sulcal"])
    add_airbone(scene, counts["airbone"])
    add_calcifications(scene, counts["calcification"])
    skipped: list[dict[str, Any]] = []
    if cmb_sites is None:
        cmb_truth = add_microbleeds(scene, n_requested, weights, (lo_d, hi_d))
    else:
        cmb_truth, skipped = add_microbleed_sites(scene, cmb_sites)
    if siderosis:
        add_siderosis(scene, siderosis)
    layers, mimic_truth = scene.layers, scene.mimic_truth

    # 10. scanner: bias field, complex noise, magnitude and phase
    bias, coeffs = random_bias_field(rng, float(bias_strength), affine, shape)
    signal = maps.pop("signal") * bias * layers.factor
    del bias
    n_re, n_im = complex_noise(rng, float(noise_sd), shape)
    n_re += signal
    magnitude = np.hypot(n_re, n_im)
    phase_img = None
    if layers.phase is not None:
        # Rotating the noise by the local phase leaves it white: magnitude = |S + n| and
        # phase = phi + angle(S + n), the same as angle(S e^{i phi} + n') with n' = n e^{i phi}.
        phase = layers.phase + np.arctan2(n_im, n_re)
        phase = (np.mod(phase + np.float32(np.pi), np.float32(2 * np.pi)) - np.float32(np.pi)).astype(np.float32)
        phase *= brain_mask
        phase_img = phantom_image(phase, affine, "neuroreview simulated SWI filtered phase (rad), not a patient")
    magnitude *= np.float32(intensity_scale)
    out_dtype = np.dtype(dtype)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        mag_data = np.clip(np.rint(magnitude), info.min, info.max).astype(out_dtype)
    else:
        mag_data = magnitude.astype(out_dtype)

    params: dict[str, Any] = {
        "generator": "napari_neuroreview.core.phantoms.swi.make_swi_case",
        "template": "MNI152 ICBM 2009 nonlinear symmetric (nilearn), 1 mm",
        "seed": int(seed),
        "voxel_size": [float(v) for v in voxel_size],
        "orientation": "".join(tuple(str(orientation).upper())),
        "rotation_deg": _r(rotation, 6),
        "rotation_drawn": rotation_deg is None,
        "slab": None if slab is None else [float(v) for v in slab],
        "margin_mm": float(margin_mm),
        "shape": [int(n) for n in shape],
        "affine": np.round(affine, 6).tolist(),
        "n_cmb": None if n_cmb is None else int(n_cmb),
        "n_cmb_requested": n_requested,
        "n_cmb_placed": len(cmb_truth),
        "cmb_diameter_mm": [lo_d, hi_d],
        "location_weights": {k: float(v) for k, v in weights.items()},
        "mimics": counts,
        "with_phase": bool(with_phase),
        "te_ms": float(te_ms),
        "b0_t": B0_T,
        "blooming_k_per_ms": BLOOMING_K_PER_MS,
        "blooming_factor": round(_bloom(te_ms), 6),
        "tissue": {k: {kk: round(float(vv), 6) for kk, vv in v.items()} for k, v in tissue.items()},
        "nuclei": nuclei_params,
        "bias_strength": float(bias_strength),
        "bias_coefficients": [float(c) for c in coeffs],
        "noise_sd": float(noise_sd),
        "noise_model": "rician magnitude / phase of complex gaussian",
        "intensity_scale": float(intensity_scale),
        "dtype": out_dtype.name,
        "phase_convention": PHASE_CONVENTION,
        "mimic_labels": {str(k): v for k, v in MIMIC_LABELS.items()},
    }
    if t2star_scale != 1.0:  # only when set, so default cases' truth stays byte-identical
        params["t2star_scale"] = float(t2star_scale)
    if cmb_sites is not None:  # likewise
        params["cmb_sites"] = [asdict(s) for s in cmb_sites]
    if siderosis:
        params["siderosis"] = [asdict(s) for s in siderosis]
    magnitude_img = phantom_image(mag_data, affine, "neuroreview simulated SWI magnitude (MNI152 2009), not a patient")
    truth: dict[str, Any] = {
        "instances": phantom_image(layers.instances, affine, "neuroreview CMB instance truth", intent_label=True),
        "cmbs": cmb_truth,
        "mimics": mimic_truth,
        "mimic_labels": phantom_image(layers.mimics, affine, "neuroreview mimic truth 1 vein 2 iron 3 sulc/air 4 calc",
                               intent_label=True),
        "brain_mask": phantom_image(brain_mask, affine, "neuroreview brain mask truth"),
        "params": params,
    }
    if cmb_sites is not None:
        truth["skipped_sites"] = skipped
    return SWICase(magnitude=magnitude_img, phase=phase_img, truth=truth)
