"""Domain randomisation of both SWI simulators: a random scanner per case.

A detector trained on one protocol fails on another (issue 10: 0.65 sensitivity on an
unseen generator with other voxels, storage orders and obliquity). :func:`draw_scanner`
draws the acquisition a case is simulated with — voxel size, storage orientation,
obliquity, coverage, echo time and field, contrast, noise, bias and receiver gain — as
``make_swi_case`` keyword arguments of either simulator (``core.phantoms.swi`` or
``core.phantoms.swi_physics``), so training can span protocols instead of one.
:func:`case_scanner` seeds the draw from a case's seed (same seed, same scanner), on a
stream of its own so it does not shift the simulator's draws.

This module imports neither simulator: it only names their keyword arguments.

Ranges (each with its source or the reason it was chosen):

- In-plane voxel 0.5-1.0 mm, square: chosen to cover clinical SWI matrices of 256-448
  over 200-256 mm FOV (Haacke et al. 2009, AJNR 30:19, for typical SWI parameters).
- Slice 1-3 mm: chosen to cover 3 T SWI at 1-2 mm and 1.5 T at 2-3 mm (Haacke 2009).
  The acquisition is axial, so the thick axis is the voxel axis stored along S-I,
  whatever the storage order.
- Storage orientation: any of the 48 axis-code orders (:data:`ORIENTATIONS`: 6 axis
  permutations x 8 flips), since converters and PACS store the same scan as RAS, LPS,
  LAS, PIL...; chosen to cover every order a reader may meet.
- Obliquity: a rotation of 0-15 degrees about a uniformly random axis: slabs are tilted
  to the AC-PC line, typically by up to ~15 degrees; chosen to cover that.
- Coverage: whole brain or (half of the cases) an axial slab of 70-130 mm anywhere in
  the brain's S-I extent: clinical SWI slabs of 56-72 slices of 1.2-2 mm (Haacke 2009).
- Field and echo time (physics simulator): 1.5 T or 3 T, half each; TE 30-50 ms at
  1.5 T and 15-30 ms at 3 T around Haacke 2009's 40 ms and 20 ms (phase grows with
  B0 x TE, so the two fields give similar weighting); TR = TE + 8-20 ms and flip angle
  10-25 degrees (the contrast: T1 weighting of the spoiled GRE; Haacke 2009: 1.5 T TR 48
  ms flip 20, 3 T TR 28 ms flip 15); B0 within 10 degrees of the head's S-I axis (head
  pitch in the coil; chosen to cover ordinary positioning).
- Echo time (phenomenological simulator, whose T2* and blooming are 3 T's and which
  takes no field): TE 15-30 ms, the 3 T range above; 1.5 T at 30-60 ms has the same
  B0 x TE. Its contrast: tissue T2* x 0.85-1.3 (``t2star_scale``), chosen to cover 3 T
  (1.0) to 1.5 T T2* (~1.25 x, Peters et al. 2007, Magn Reson Imaging 25:748) and
  +-15 % between subjects and scanners.
- Noise: 0.5-2 x the simulator's default SD (log-uniform; white-matter SNR about 7-30
  phenomenological, 13-55 physics): chosen to cover low-SNR thin slices to 3 T thick ones.
- Bias strength 0-0.4 (the log-field amplitude: intensity x0.67-1.5 across the head):
  chosen to cover receive-coil shading of multichannel head coils without correction.
- Receiver gain: 0.5-2 x the simulator's default intensity scale (log-uniform): stored
  ranges differ between scanners; chosen so int16 never clips.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

#: The simulators :func:`draw_scanner` draws for (``cmb phantoms --simulator`` names).
SIMULATORS: tuple[str, ...] = ("phenomenological", "physics")

#: Every storage orientation: 6 permutations of the world axes x 8 sign flips.
ORIENTATIONS: tuple[str, ...] = tuple(
    "".join(pair[s] for pair, s in zip(perm, signs))
    for perm in itertools.permutations((("R", "L"), ("A", "P"), ("S", "I")))
    for signs in itertools.product((0, 1), repeat=3)
)

#: Documented ranges (see the module docstring for their sources).
IN_PLANE_MM: tuple[float, float] = (0.5, 1.0)
SLICE_MM: tuple[float, float] = (1.0, 3.0)
MAX_OBLIQUITY_DEG: float = 15.0
SLAB_SHARE: float = 0.5
SLAB_MM: tuple[float, float] = (70.0, 130.0)
#: S-I extent (world z, mm) of the template's brain mask (``load_mni_anatomy().brain_bbox_mm``).
BRAIN_Z_MM: tuple[float, float] = (-72.5, 82.5)
FIELDS_T: tuple[float, ...] = (1.5, 3.0)
TE_MS: dict[float, tuple[float, float]] = {1.5: (30.0, 50.0), 3.0: (15.0, 30.0)}
TR_MINUS_TE_MS: tuple[float, float] = (8.0, 20.0)
FLIP_DEG: tuple[float, float] = (10.0, 25.0)
MAX_B0_TILT_DEG: float = 10.0
NOISE_FACTOR: tuple[float, float] = (0.5, 2.0)
BIAS_STRENGTH: tuple[float, float] = (0.0, 0.4)
GAIN_FACTOR: tuple[float, float] = (0.5, 2.0)
T2STAR_SCALE: tuple[float, float] = (0.85, 1.3)
#: The simulators' default noise SD and intensity scale (their ``make_swi_case`` defaults).
_DEFAULTS: dict[str, dict[str, float]] = {
    "phenomenological": {"noise_sd": 0.03, "intensity_scale": 1000.0},
    "physics": {"noise_sd": 0.002, "intensity_scale": 10000.0},
}
#: Stream tag of :func:`case_scanner`, so the scanner draw is independent of the case's own draws.
_STREAM = 0x5CA1


def _euler_xyz(r: np.ndarray) -> tuple[float, float, float]:
    """Angles (deg) about x, then y, then z with ``Rz @ Ry @ Rx == r`` (``make_affine``'s order)."""
    ay = math.asin(-float(np.clip(r[2, 0], -1.0, 1.0)))
    ax = math.atan2(float(r[2, 1]), float(r[2, 2]))
    az = math.atan2(float(r[1, 0]), float(r[0, 0]))
    return math.degrees(ax), math.degrees(ay), math.degrees(az)


def _axis_angle(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotation matrix about a unit ``axis`` (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    t = math.radians(angle_deg)
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def draw_scanner(rng: np.random.Generator, simulator: str) -> dict[str, Any]:
    """Draw one scanner: ``make_swi_case`` keyword arguments of ``simulator``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every draw (drawn in a fixed order: the same generator state gives the
        same scanner).
    simulator : str
        ``'phenomenological'`` (``core.phantoms.swi``) or ``'physics'``
        (``core.phantoms.swi_physics``).

    Returns
    -------
    dict
        ``voxel_size``, ``orientation``, ``rotation_deg``, ``slab`` (None: whole brain),
        ``te_ms``, ``noise_sd``, ``bias_strength``, ``intensity_scale``; for physics also
        ``b0_t``, ``tr_ms``, ``flip_deg`` and ``b0_dir``, for phenomenological
        ``t2star_scale``. Plain floats, tuples and
        strings, ready for JSON. Ranges: the module docstring.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, got {simulator!r}")
    # Drawn in one fixed order for both simulators, every draw always made.
    in_plane = float(rng.uniform(*IN_PLANE_MM))
    slice_mm = float(rng.uniform(*SLICE_MM))
    orientation = ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
    obliquity = float(rng.uniform(0.0, MAX_OBLIQUITY_DEG))
    rotation = _euler_xyz(_axis_angle(_unit(rng), obliquity))
    partial = bool(rng.uniform() < SLAB_SHARE)
    length = float(rng.uniform(*SLAB_MM))
    z0 = float(rng.uniform(BRAIN_Z_MM[0], BRAIN_Z_MM[1] - length))
    b0 = FIELDS_T[int(rng.integers(len(FIELDS_T)))]
    te_field = float(rng.uniform(*TE_MS[b0]))
    te_phen = float(rng.uniform(*TE_MS[3.0]))
    tr = te_field + float(rng.uniform(*TR_MINUS_TE_MS))
    flip = float(rng.uniform(*FLIP_DEG))
    tilt = float(rng.uniform(0.0, MAX_B0_TILT_DEG))
    tilt_axis = float(rng.uniform(0.0, 2 * math.pi))
    noise = _log_uniform(rng, *NOISE_FACTOR)
    bias = float(rng.uniform(*BIAS_STRENGTH))
    gain = _log_uniform(rng, *GAIN_FACTOR)
    t2star_scale = float(rng.uniform(*T2STAR_SCALE))

    axis_si = next(i for i, c in enumerate(orientation) if c in "SI")
    voxel = [in_plane, in_plane, in_plane]
    voxel[axis_si] = slice_mm
    defaults = _DEFAULTS[simulator]
    out: dict[str, Any] = {
        "voxel_size": tuple(round(v, 4) for v in voxel),
        "orientation": orientation,
        "rotation_deg": tuple(round(a, 4) for a in rotation),
        "slab": (round(z0, 2), round(z0 + length, 2)) if partial else None,
        "te_ms": round(te_phen if simulator == "phenomenological" else te_field, 3),
        "noise_sd": round(defaults["noise_sd"] * noise, 6),
        "bias_strength": round(bias, 4),
        "intensity_scale": round(defaults["intensity_scale"] * gain, 3),
    }
    if simulator == "physics":
        t = math.radians(tilt)
        b0_dir = (math.sin(t) * math.cos(tilt_axis), math.sin(t) * math.sin(tilt_axis), math.cos(t))
        out.update({"b0_t": b0, "tr_ms": round(tr, 3), "flip_deg": round(flip, 3),
                    "b0_dir": tuple(round(c, 6) for c in b0_dir)})
    else:
        out["t2star_scale"] = round(t2star_scale, 4)
    return out


def case_scanner(case_seed: int, simulator: str) -> dict[str, Any]:
    """The scanner of the case with seed ``case_seed``: :func:`draw_scanner` on its own stream.

    Seeded from ``(case_seed, a fixed tag)`` rather than ``case_seed`` alone, so the draw
    is not correlated with the simulator's own draws from ``default_rng(case_seed)``.
    """
    return draw_scanner(np.random.default_rng([int(case_seed), _STREAM]), simulator)
