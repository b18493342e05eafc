"""One simulated resting-state BOLD scan: :func:`make_bold_case` and :class:`BoldCase`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np

from napari_neuroreview.core.anatomy import (
    atlas,
    load_mni_anatomy,
    make_affine,
    sample_template_maps,
    voxel_to_world,
)
from napari_neuroreview.core.anatomy.mni import _brain_bbox_mm
from napari_neuroreview.core.phantoms.anatomy import random_bias_field

from . import signals
from .effect import NODE_CHANGE, SLOW_DIRECTION, SLOW_SHIFT, apply_effect
from .networks import NUISANCE_NETWORKS, PatientNetworks, draw_patient_networks, individual_map

#: Baseline T2*-weighted EPI signal of each tissue, grey matter = 1 (CSF brightest at TE ~30 ms).
TISSUE_SIGNAL: dict[str, float] = {"csf": 1.4, "gm": 1.0, "wm": 0.8}
#: Peak cardiac and respiratory signal change (% of baseline) and of the slow global fluctuation.
CARDIAC_PCT: float = 1.0
RESPIRATORY_PCT: float = 0.5
GLOBAL_PCT: float = 0.4
#: Range of the linear and quadratic drift over the run (% of baseline).
DRIFT_PCT: tuple[float, float] = (1.0, 0.5)
#: Global signal drop per mm of framewise displacement (%), the motion-correlated signal.
MOTION_SIGNAL_PCT_PER_MM: float = 0.5
#: Brain fraction above which a voxel's signal is simulated (below it: air).
_SUPPORT_FRACTION: float = 0.05
#: Brain fraction from which a voxel is kept by the simulated brain extraction.
_EXTRACTION_FRACTION: float = 0.5

STATES: tuple[str, ...] = ("pre", "post")


@dataclass(eq=False)
class BoldCase:
    """A simulated BOLD scan and the truth it was made from.

    Attributes
    ----------
    bold : nib.Nifti1Image
        4D int16 BOLD (x, y, z, t); TR in ``pixdim[4]`` (seconds, ``xyzt_units``),
        interleaved slice timing in the header (``slice_code``, ``slice_duration``).
    tr_s : float
        Repetition time (s).
    truth : dict
        JSON-able: patient seed, state, effect size, every parameter, per network its
        nodes, loadings, amplitude, slow share, effect pattern and true time course
        (z-scored, one value per volume), the nuisance networks, the motion parameters.
        Never give it to a model under test.
    truth_maps : nib.Nifti1Image
        4D float32 (x, y, z, 5): the true spatial maps of the five networks in
        :data:`atlas.NETWORKS` order on the BOLD's grid, in units of the patient's
        pre-operative peak (the signal change at a voxel is
        ``amplitude_pct * map * timecourse``).
    """

    bold: nib.Nifti1Image
    tr_s: float
    truth: dict[str, Any]
    truth_maps: nib.Nifti1Image


def _rng(patient_seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(patient_seed), int(stream)]))


def patient_networks(patient_seed: int, state: str = "pre", effect_size: float = 1.0) -> PatientNetworks:
    """The network parameters of a patient in a state, without simulating a scan (fast).

    The same numbers :func:`make_bold_case` uses: the patient's individual variation
    (drawn from ``patient_seed``) and, for ``"post"``, the surgery effect.
    """
    if state not in STATES:
        raise ValueError(f"state must be 'pre' or 'post', got {state!r}")
    return apply_effect(draw_patient_networks(_rng(patient_seed, 0)), state, effect_size)


@functools.lru_cache(maxsize=4)
def _tissue(key: tuple[bytes, tuple[int, int, int]]) -> dict[str, np.ndarray]:
    affine = np.frombuffer(key[0], dtype=np.float64).reshape(4, 4)
    anat = load_mni_anatomy()
    maps = sample_template_maps({n: getattr(anat, n) for n in ("csf", "gm", "wm", "brain")}, affine, key[1])
    for m in maps.values():
        m.setflags(write=False)
    return maps


def _slice_axis(affine: np.ndarray) -> int:
    """The voxel axis closest to world S-I (axial slices are acquired along it)."""
    lin = np.asarray(affine)[:3, :3]
    return int(np.argmax(np.abs(lin[2]) / np.linalg.norm(lin, axis=0)))


def _nifti(data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...], descrip: str) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms(zooms)
    img.header["descrip"] = descrip[:79].encode("ascii")
    return img


def make_bold_case(
    patient_seed: int,
    state: str = "pre",
    *,
    effect_size: float = 1.0,
    n_volumes: int = 150,
    tr_s: float = 2.0,
    voxel_mm: float = 3.0,
    motion: bool = True,
    physio: bool = True,
    noise_pct: float = 1.4,
    orientation: str = "LAS",
    margin_mm: float = 3.0,
    intensity_scale: float = 300.0,
    brain_extracted: bool = True,
) -> BoldCase:
    """Simulate one resting-state BOLD scan of a patient, before or after surgery.

    See the package docstring for the model. The same arguments give the same bytes: the
    patient's variation comes from ``SeedSequence([patient_seed, 0])``, the scan's own
    draws (activity, physiology, motion, bias, noise) from ``[patient_seed, 1]`` (pre) or
    ``[patient_seed, 2]`` (post), each in a fixed order.

    Parameters
    ----------
    patient_seed : int
        The patient: their networks' individual variation, shared by both states.
    state : {"pre", "post"}
        Pre-operative, or post-operative with the surgery effect (:mod:`.effect`).
    effect_size : float
        Strength of the surgery effect (>= 0; 0: the networks do not change; 1: the
        default, subtle). Ignored for ``"pre"``.
    n_volumes, tr_s : int, float
        Run length and repetition time (150 x 2 s = 5 min).
    voxel_mm : float
        Isotropic voxel size.
    motion, physio : bool
        Simulate head motion (displacement, spin-history spikes, motion-correlated
        signal) and cardiac/respiratory/global fluctuations.
    noise_pct : float
        Thermal noise sd (% of the grey-matter baseline); 1.4 gives a grey-matter
        temporal SNR near 70 before physiological noise, typical at 3 T and 3 mm.
    orientation, margin_mm
        The grid (:func:`napari_neuroreview.core.anatomy.make_affine`); LAS is
        how FSL stores images.
    intensity_scale : float
        Stored value of the grey-matter baseline (arbitrary units).
    brain_extracted : bool
        True: voxels less than half brain are 0, as after brain extraction (and the
        files compress better); False: they hold Rayleigh noise, a brain in air.

    Returns
    -------
    BoldCase
    """
    if state not in STATES:
        raise ValueError(f"state must be 'pre' or 'post', got {state!r}")
    n_volumes, tr_s, voxel_mm = int(n_volumes), float(tr_s), float(voxel_mm)
    if n_volumes < 10 or not tr_s > 0 or not voxel_mm > 0 or noise_pct < 0 or not intensity_scale > 0:
        raise ValueError("need n_volumes >= 10, tr_s > 0, voxel_mm > 0, noise_pct >= 0, intensity_scale > 0")
    if not np.isfinite(effect_size) or effect_size < 0:
        raise ValueError(f"effect_size must be a finite number >= 0, got {effect_size!r}")

    affine, shape = make_affine((voxel_mm,) * 3, orientation, margin_mm=margin_mm)
    tissue = _tissue((np.round(affine, 6).tobytes(), tuple(shape)))
    support = tissue["brain"] > _SUPPORT_FRACTION
    idx = np.nonzero(support)
    gm, wm, csf, brain = (tissue[k][idx].astype(np.float32) for k in ("gm", "wm", "csf", "brain"))

    patient = patient_networks(patient_seed, state, effect_size)
    rng = _rng(patient_seed, 1 if state == "pre" else 2)

    # --- network activity
    full_maps = [individual_map(net, affine, shape) for net in patient.networks]
    maps = np.stack([m[idx] for m in full_maps])  # (N, V)
    tcs = np.stack([signals.network_timecourse(rng, net.slow_share, n_volumes, tr_s) for net in patient.networks])
    amps = np.array([net.amplitude_pct for net in patient.networks]) / 100.0
    frac = ((maps * amps[:, None].astype(np.float32)).T @ tcs.astype(np.float32)).astype(np.float32)  # (V, T)

    # --- physiology, drift (all draws happen whether or not they are used)
    slice_axis = _slice_axis(affine)
    n_slices = int(shape[slice_axis])
    cardiac, resp, physio_params = signals.physio_regressors(rng, n_volumes, tr_s, n_slices)
    glob = signals.slow_global(rng, n_volumes, tr_s)
    drift_amp = rng.uniform(-1.0, 1.0, size=2) * np.array(DRIFT_PCT) / 100.0
    drift_grad = rng.normal(0.0, 0.3, size=(2, 3))
    bias, bias_coeffs = random_bias_field(rng, 0.1, affine, shape)
    world = voxel_to_world(affine, np.stack(idx, axis=-1))
    lo, hi = _brain_bbox_mm(load_mni_anatomy())
    u = ((world - (lo + hi) / 2.0) / ((hi - lo) / 2.0)).astype(np.float32)  # [-1, 1] over the brain
    slice_of = idx[slice_axis]
    if physio:
        card_map = (CARDIAC_PCT / 100.0) * (csf + 0.2 * gm)
        resp_map = (RESPIRATORY_PCT / 100.0) * brain * (1.0 - 0.5 * u[:, 2])
        frac += card_map[:, None] * cardiac[slice_of].astype(np.float32)
        frac += resp_map[:, None] * resp[slice_of].astype(np.float32)
        frac += ((GLOBAL_PCT / 100.0) * gm)[:, None] * glob[None, :].astype(np.float32)
    basis = signals.drift_basis(n_volumes)
    for k in range(2):
        field = drift_amp[k] * (1.0 + u @ drift_grad[k])
        frac += field.astype(np.float32)[:, None] * basis[k][None, :].astype(np.float32)

    # --- motion
    motion_params, jerks = signals.rigid_motion(rng, n_volumes, tr_s)
    spin_history = rng.uniform(0.03, 0.06, size=3)
    if not motion:
        motion_params, jerks = np.zeros_like(motion_params), []
    fd = signals.framewise_displacement(motion_params)
    frac -= ((MOTION_SIGNAL_PCT_PER_MM / 100.0) * brain)[:, None] * fd[None, :].astype(np.float32)

    s0_full = np.zeros(shape, np.float32)
    s0_full[idx] = (TISSUE_SIGNAL["csf"] * csf + TISSUE_SIGNAL["gm"] * gm + TISSUE_SIGNAL["wm"] * wm) * bias[idx]
    s0 = s0_full[idx]
    signal = s0[:, None] * (1.0 + frac)
    if motion:
        # First-order displacement: S(r - u) ~ S(r) - grad S . u, u = d + w x (r - c).
        grad_vox = np.stack(np.gradient(s0_full), axis=-1)[idx]  # (V, 3) per voxel step
        grad = grad_vox @ np.linalg.inv(affine[:3, :3])  # (V, 3) per world mm
        centre = (lo + hi) / 2.0
        arm = np.cross(world - centre, grad)  # w . (r x g) = g . (w x r)
        regress = np.concatenate([grad, arm], axis=1).astype(np.float32)  # (V, 6)
        signal -= regress @ motion_params.T.astype(np.float32)
        odd = (slice_of % 2 == 1).astype(np.float32)  # acquired in the second half of the TR
        for j, t0 in enumerate(jerks):
            for dt_vol, share in ((0, 1.0), (1, 0.5)):
                if t0 + dt_vol < n_volumes:
                    signal[:, t0 + dt_vol] *= 1.0 - share * float(spin_history[j]) * odd

    # --- thermal noise, magnitude, storage
    sd = float(noise_pct) / 100.0
    real = signal + sd * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sd * rng.standard_normal(signal.shape, dtype=np.float32)
    mag = np.hypot(real, imag) * np.float32(intensity_scale)
    data = np.zeros((*shape, n_volumes), dtype=np.int16)
    if not brain_extracted:
        bg = ~support
        data[bg] = np.clip(
            np.rint(rng.rayleigh(sd * intensity_scale, size=(int(bg.sum()), n_volumes))), 0, 32767
        ).astype(np.int16)
    data[idx] = np.clip(np.rint(mag), -32768, 32767).astype(np.int16)
    if brain_extracted:
        data[tissue["brain"] < _EXTRACTION_FRACTION] = 0

    descrip = f"neuroreview simulated rs-fMRI BOLD ({state}), not a patient"
    bold = _nifti(data, affine, (voxel_mm,) * 3 + (tr_s,), descrip)
    hdr = bold.header
    hdr.set_dim_info(slice=slice_axis)
    hdr["slice_code"] = 3  # NIFTI_SLICE_ALT_INC: interleaved, even (0-based) slices first
    hdr["slice_start"], hdr["slice_end"] = 0, n_slices - 1
    hdr["slice_duration"] = tr_s / n_slices

    tmaps = np.stack([full_maps[patient.names.index(n)] for n in atlas.NETWORKS], axis=-1)
    truth_maps = _nifti(tmaps.astype(np.float32), affine, (voxel_mm,) * 3 + (1.0,), "neuroreview true network maps")
    truth_maps.header.set_intent("none")

    n_target = len(atlas.NETWORKS)
    networks = {
        net.name: {**net.to_json(), "timecourse": np.round(tcs[k], 4).tolist()}
        for k, net in enumerate(patient.networks)
    }
    truth: dict[str, Any] = {
        "description": (
            "Simulated data, not a patient: resting-state BOLD on the MNI152 2009 grey matter shipped with "
            "nilearn, networks placed from the Seitzman 2018 ROI table."
        ),
        "generator": "napari_neuroreview.core.phantoms.rsfmri.make_bold_case",
        "patient_seed": int(patient_seed),
        "state": state,
        "label": 0 if state == "pre" else 1,
        "effect_size": float(effect_size),
        "responsiveness": round(patient.responsiveness, 5),
        "global_shift_mm": np.round(patient.global_shift_mm, 4).tolist(),
        "networks_order": list(atlas.NETWORKS),
        "networks": {n: networks[n] for n in patient.names[:n_target]},
        "nuisance_networks": {n: networks[n] for n in NUISANCE_NETWORKS},
        "sources": {n: atlas.network_rois(n).source for n in atlas.NETWORKS},
        "effect": {
            "node_change": NODE_CHANGE,
            "slow_shift": SLOW_SHIFT,
            "slow_direction": dict(SLOW_DIRECTION),
            "applied": state == "post" and effect_size > 0,
        },
        "motion": {
            "params": np.round(motion_params, 5).tolist(),
            "param_order": ["tx_mm", "ty_mm", "tz_mm", "rx_rad", "ry_rad", "rz_rad"],
            "jerk_volumes": [int(j) for j in jerks],
            "mean_fd_mm": round(float(fd.mean()), 5),
        },
        "params": {
            "n_volumes": n_volumes,
            "tr_s": tr_s,
            "voxel_mm": voxel_mm,
            "orientation": "".join(nib.aff2axcodes(affine)),
            "shape": [int(n) for n in shape],
            "affine": np.round(affine, 6).tolist(),
            "slice_axis": slice_axis,
            "slice_order": "interleaved, even slices first",
            "motion": bool(motion),
            "physio": bool(physio),
            **physio_params,
            "noise_pct": float(noise_pct),
            "intensity_scale": float(intensity_scale),
            "brain_extracted": bool(brain_extracted),
            "tissue_signal": dict(TISSUE_SIGNAL),
            "bias_coefficients": np.round(bias_coeffs, 6).tolist(),
            "hrf": "SPM canonical double gamma (nilearn spm_hrf)",
        },
    }
    return BoldCase(bold=bold, tr_s=tr_s, truth=truth, truth_maps=truth_maps)

