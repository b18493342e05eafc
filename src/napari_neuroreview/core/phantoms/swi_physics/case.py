"""One physically simulated SWI case: :func:`make_swi_case` and :class:`SWICase`.

The recipe: seeded draws; the acquisition grid; the GRE signal of the template's
tissues (Ernst steady state x T2* decay, iron nuclei's extra R2*); the whole-head field
(:func:`~.render.macro_field`) with its intravoxel dephasing; dural sinuses and deep
veins (blood signal); small veins, calcifications and microbleeds in fine patches;
receive bias and complex noise; then SWI processing (homodyne filtered phase) and the
truth. Same output contract as the phenomenological simulator
(``core.phantoms.swi.make_swi_case``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from scipy import ndimage

from napari_neuroreview.core.anatomy import (
    load_mni_anatomy,
    make_affine,
    sample_template_maps,
    voxel_to_world,
)

from ..swi_contract import CMBSite, SiderosisSite, SWICase, check_sites, lesion_weights, phantom_image
from .dipole import rad_per_ppm
from .objects import (
    MIMIC_LABEL_OF,
    MIMIC_LABELS,
    Scene,
    _r,
    add_calcifications,
    add_microbleed_sites,
    add_microbleeds,
    add_siderosis,
    add_small_veins,
)
from .processing import highpass_phase
from .render import AcqGrid, macro_field, tube_fraction
from .sources import (
    AIR_MNI,
    NUCLEI_MNI,
    ellipsoid_weight,
    large_vein_paths,
    nuclei_sides,
)
from .tissue import (
    CHI_IRON_PPM,
    DEFAULT_FLIP_DEG,
    DEFAULT_TE_MS,
    DEFAULT_TR_MS,
    PHASE_CONVENTION,
    R2STAR_IRON_PER_PPM_PER_T,
    VENOUS_Y_RANGE,
    t2star_table,
    tissue_signal,
    venous_chi,
)

#: Mimic types, as keys of ``make_swi_case(mimics=...)``.
MIMIC_TYPES: tuple[str, ...] = ("vein", "iron", "airbone", "calcification")


def _template_signal(b0: float, te_ms: float, tr_ms: float, flip_deg: float, iron_scale: float,
                     iron_on: bool) -> np.ndarray:
    """Noiseless GRE signal on the 1 mm template, the nuclei's iron R2* included."""
    anat = load_mni_anatomy()
    s = {k: np.float32(tissue_signal(k, b0, te_ms, tr_ms, flip_deg)) for k in ("csf", "gm", "wm")}
    signal = anat.csf * s["csf"] + anat.gm * s["gm"] + anat.wm * s["wm"]
    if not iron_on:
        return signal
    for name, _side, c, semi in nuclei_sides():
        r2 = R2STAR_IRON_PER_PPM_PER_T * iron_scale * CHI_IRON_PPM[name] * b0  # 1/s
        lo = np.maximum(np.floor(np.linalg.solve(anat.affine[:3, :3], c - semi - 3 - anat.affine[:3, 3])), 0).astype(int)
        hi = np.minimum(np.ceil(np.linalg.solve(anat.affine[:3, :3], c + semi + 3 - anat.affine[:3, 3])) + 1,
                        anat.shape).astype(int)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        g = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
        w = ellipsoid_weight(voxel_to_world(anat.affine, g), c, semi).astype(np.float32)
        signal[sl] *= np.exp(-w * np.float32(r2 * te_ms * 1e-3))
    return signal


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
    b0_t: float = 3.0,
    te_ms: float | None = None,
    b0_dir: tuple[float, float, float] = (0.0, 0.0, 1.0),
    tr_ms: float = DEFAULT_TR_MS,
    flip_deg: float = DEFAULT_FLIP_DEG,
    bias_strength: float = 0.2,
    noise_sd: float = 0.002,
    intensity_scale: float = 10000.0,
    dtype: Any = np.int16,
    margin_mm: float = 5.0,
    macro_mm: float = 1.5,
    fine_mm: float = 0.3,
    highpass_sigma_mm: float = 4.0,
    cmb_sites: Sequence[CMBSite] | None = None,
    siderosis: Sequence[SiderosisSite] | None = None,
) -> SWICase:
    """Simulate an SWI (GRE magnitude + filtered phase) from susceptibility physics.

    Arguments shared with ``core.phantoms.swi.make_swi_case`` mean the same; the others:
    ``b0_t`` (1.5 or 3 T), ``te_ms`` (default 40 ms at 1.5 T, 20 ms at 3 T), ``b0_dir``
    (world direction of B0), ``tr_ms`` and ``flip_deg`` (spoiled GRE), ``macro_mm`` (grid
    of the whole-head field), ``fine_mm`` (sub-voxel spacing around small sources),
    ``highpass_sigma_mm`` (homodyne filter). ``mimics`` counts: ``vein`` (small veins,
    default 14-24), ``iron`` (0/1: nuclei iron), ``airbone`` (0/1: skull-base air),
    ``calcification`` (default 0-2); the dural sinuses and deep veins are always there.
    ``cmb_sites`` (microbleeds drawn exactly there instead of ``n_cmb`` draws; skipped
    ones in ``truth['skipped_sites']``) and ``siderosis`` (cortical superficial siderosis,
    ``siderosis`` mimics) as in the other simulator; None: the case as without them.
    Every draw comes from ``numpy.random.default_rng(seed)`` in a fixed order.
    """
    b0 = float(b0_t)
    t2s = t2star_table(b0)  # validates b0
    te = DEFAULT_TE_MS[b0] if te_ms is None else float(te_ms)
    if te <= 0 or noise_sd < 0 or bias_strength < 0 or not intensity_scale > 0:
        raise ValueError("te_ms and intensity_scale must be > 0; noise_sd and bias_strength >= 0")
    check_sites(cmb_sites, n_cmb, siderosis)
    weights = lesion_weights(cmb_diameter_mm, location_weights)
    lo_d, hi_d = (float(v) for v in cmb_diameter_mm)
    anat = load_mni_anatomy()
    rng = np.random.default_rng(int(seed))

    # 1. set-up draws (always drawn, in this order)
    drawn_rot = rng.uniform(-3.0, 3.0, 3)
    rotation = drawn_rot if rotation_deg is None else np.asarray(rotation_deg, float)
    y_venous = float(rng.uniform(*VENOUS_Y_RANGE))
    iron_scale = float(rng.uniform(0.85, 1.15))
    drawn_n = int(rng.poisson(6.0))
    n_req = drawn_n if n_cmb is None else int(n_cmb)
    if n_req < 0:
        raise ValueError(f"n_cmb must be >= 0 or None, got {n_cmb!r}")
    if cmb_sites is not None:
        n_req = len(cmb_sites)
    counts = {"vein": int(rng.integers(14, 25)), "iron": 1, "airbone": 1, "calcification": int(rng.integers(0, 3))}
    for k, v in (mimics or {}).items():
        if k not in counts or int(v) < 0:
            raise ValueError(f"mimics must map {MIMIC_TYPES} to counts >= 0, got {mimics!r}")
        counts[k] = int(v)

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
    grid = AcqGrid(affine, shape, np.asarray(b0_dir, float))
    rpp = rad_per_ppm(b0, te)

    # 3. tissue signal, partial-volume sampled
    sig_1mm = _template_signal(b0, te, tr_ms, flip_deg, iron_scale, counts["iron"] > 0)
    maps = sample_template_maps({"signal": sig_1mm, "brain": anat.brain}, affine, shape, max_workers=2)
    del sig_1mm
    brain = (maps["brain"] >= 0.5).astype(np.uint8)
    signal = maps.pop("signal").astype(np.complex64)
    mimic_lab = np.zeros(shape, np.uint8)

    # 4. large veins: blood signal in their lumen (their field is in the macro field)
    chi_v = venous_chi(y_venous)
    s_blood = tissue_signal("blood", b0, te, tr_ms, flip_deg)
    for _name, path, r in large_vein_paths():
        vlo, vhi, f = tube_fraction(grid, path, r)
        if f.size:
            box = tuple(slice(a, b) for a, b in zip(vlo, vhi))
            signal[box] = (1 - f) * signal[box] + f * np.float32(s_blood)
            mimic_lab[box][f >= 0.5] = MIMIC_LABEL_OF["vein"]

    # 5. whole-head field: phase and intravoxel dephasing
    fld, steps, _ = macro_field(grid, 4.0, macro_mm, chi_v, iron_scale, counts["airbone"] > 0, counts["iron"] > 0)
    deph = np.prod(np.sinc(rpp * steps / (2 * np.pi)), axis=-1).astype(np.float32)  # np.sinc(x) = sin(pi x)/(pi x)
    del steps
    signal *= deph * np.exp(1j * np.float32(rpp) * fld).astype(np.complex64)
    del fld
    if counts["airbone"] > 0:
        mimic_lab[(deph < 0.5) & (brain > 0) & (mimic_lab == 0)] = MIMIC_LABEL_OF["airbone"]
    if counts["iron"] > 0:
        _label_iron(grid, mimic_lab)

    # 6. small sources in fine patches
    scene = Scene(grid, signal, rng, rpp, te, float(fine_mm), np.zeros(shape, np.uint16), mimic_lab)
    for _name, path, r in large_vein_paths():
        scene.tubes.append((path, r + 1.0))
    mimic_truth = _large_truth(scene, counts, deph, brain, chi_v, iron_scale)
    scene.mimic_truth.extend(mimic_truth)
    add_small_veins(scene, counts["vein"], chi_v, s_blood)
    add_calcifications(scene, counts["calcification"])
    skipped: list[dict[str, Any]] = []
    if cmb_sites is None:
        cmb_truth = add_microbleeds(scene, n_req, weights, (lo_d, hi_d))
    else:
        cmb_truth, skipped = add_microbleed_sites(scene, cmb_sites)
    if siderosis:
        add_siderosis(scene, siderosis)

    # 7. scanner: receive bias, complex noise; magnitude and filtered phase
    bias = _bias(rng, float(bias_strength), grid)
    signal *= bias
    signal += (rng.standard_normal(shape, np.float32) + 1j * rng.standard_normal(shape, np.float32)) * np.float32(noise_sd)
    magnitude = np.abs(signal) * np.float32(intensity_scale)
    phase_img = None
    if with_phase:
        phase = highpass_phase(signal, grid.vs, highpass_sigma_mm) * brain
        phase_img = phantom_image(phase.astype(np.float32), affine, "neuroreview physics-simulated SWI filtered phase (rad)")
    out_dtype = np.dtype(dtype)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        mag = np.clip(np.rint(magnitude), info.min, info.max).astype(out_dtype)
    else:
        mag = magnitude.astype(out_dtype)
    params: dict[str, Any] = {
        "generator": "napari_neuroreview.core.phantoms.swi_physics.make_swi_case",
        "template": "MNI152 ICBM 2009 nonlinear symmetric (nilearn), 1 mm",
        "seed": int(seed), "voxel_size": [float(v) for v in voxel_size],
        "orientation": "".join(tuple(str(orientation).upper())), "rotation_deg": _r(rotation, 6),
        "rotation_drawn": rotation_deg is None, "slab": None if slab is None else [float(v) for v in slab],
        "margin_mm": float(margin_mm), "shape": [int(n) for n in shape], "affine": np.round(affine, 6).tolist(),
        "n_cmb": None if n_cmb is None else int(n_cmb), "n_cmb_requested": n_req, "n_cmb_placed": len(cmb_truth),
        "cmb_diameter_mm": [lo_d, hi_d], "location_weights": {k: float(v) for k, v in weights.items()},
        "mimics": counts, "with_phase": bool(with_phase), "b0_t": b0, "te_ms": te, "tr_ms": float(tr_ms),
        "flip_deg": float(flip_deg), "b0_dir": _r(grid.b_world, 6), "t2star_ms": t2s,
        "venous_saturation": round(y_venous, 4), "venous_chi_ppm": round(chi_v, 4), "iron_scale": round(iron_scale, 4),
        "macro_mm": float(macro_mm), "fine_mm": float(fine_mm), "highpass_sigma_mm": float(highpass_sigma_mm),
        "bias_strength": float(bias_strength), "noise_sd": float(noise_sd),
        "intensity_scale": float(intensity_scale), "dtype": out_dtype.name, "phase_convention": PHASE_CONVENTION,
        "mimic_labels": {str(k): v for k, v in MIMIC_LABELS.items()},
    }
    if cmb_sites is not None:  # only when given, so default cases' truth stays byte-identical
        params["cmb_sites"] = [asdict(s) for s in cmb_sites]
    if siderosis:
        params["siderosis"] = [asdict(s) for s in siderosis]
    truth: dict[str, Any] = {
        "instances": phantom_image(scene.instances, affine, "neuroreview CMB instance truth", intent_label=True),
        "cmbs": cmb_truth,
        "mimics": scene.mimic_truth,
        "mimic_labels": phantom_image(scene.mimics, affine, "neuroreview mimic truth 1 vein 2 iron 3 air 4 calc", intent_label=True),
        "brain_mask": phantom_image(brain, affine, "neuroreview brain mask truth"),
        "params": params,
    }
    if cmb_sites is not None:
        truth["skipped_sites"] = skipped
    return SWICase(phantom_image(mag, affine, "neuroreview physics-simulated SWI magnitude, not a patient"), phase_img, truth)


def _label_iron(grid: AcqGrid, labels: np.ndarray) -> None:
    """Label the small iron-rich nuclei (ellipsoid weight >= 0.5) as iron mimics."""
    for name, _side, c, semi in nuclei_sides():
        if not NUCLEI_MNI[name]["mimic"]:
            continue
        lo, hi = grid.box_around(c - semi - 2, c + semi + 2)
        if np.any(hi <= lo):
            continue
        w = ellipsoid_weight(grid.centres(lo, hi), c, semi)
        box = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        box[(w >= 0.5) & (box == 0)] = MIMIC_LABEL_OF["iron"]


def _large_truth(scene: Scene, counts: dict[str, int], deph: np.ndarray, brain: np.ndarray, chi_v: float,
                 iron_scale: float) -> list[dict[str, Any]]:
    """Truth records of the sinuses and deep veins, iron nuclei and air-tissue dark bands in view."""
    out: list[dict[str, Any]] = []
    grid = scene.grid

    def rec(type_: str, ras: np.ndarray, **extra: Any) -> None:
        if scene.inside(np.asarray(ras, float), 0.0):
            ras = np.round(np.asarray(ras, float), 4)
            out.append({"type": type_, "world_ras_mm": _r(ras), "voxel_ijk": _r(grid.voxel(ras)), **extra})

    for name, path, r in large_vein_paths():
        rec("vein", path[len(path) // 2], kind=name, path=[_r(q, 3) for q in path], radius_mm=r,
            susceptibility_ppm=round(chi_v, 4))
    if counts["iron"] > 0:
        for name, side, c, _semi in nuclei_sides():
            if NUCLEI_MNI[name]["mimic"]:
                rec("iron", c, structure=name, side=side, susceptibility_ppm=round(iron_scale * CHI_IRON_PPM[name], 4))
    if counts["airbone"] > 0:
        lab, n = ndimage.label((deph < 0.5) & (brain > 0))
        if n:
            sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
            for k in np.flatnonzero(sizes >= 5) + 1:
                com = np.asarray(ndimage.center_of_mass(lab == k))
                ras = voxel_to_world(grid.affine, com)
                site = min(AIR_MNI, key=lambda s: np.linalg.norm(np.abs(ras) - np.abs(AIR_MNI[s]["centre"])))
                rec("airbone", ras, site=site, n_voxels=int(sizes[k - 1]))
    return out


def _bias(rng: np.random.Generator, strength: float, grid: AcqGrid) -> np.ndarray:
    """Smooth receive-coil bias: exp of a random linear + quadratic polynomial of world position."""
    coeffs = rng.uniform(-1.0, 1.0, 9)
    if strength == 0:
        return np.ones(grid.shape, np.float32)
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in grid.shape]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    terms = [x, y, z, x * x, y * y, z * z, x * y, y * z, x * z]
    poly = sum(np.float32(c) * t for c, t in zip(coeffs, terms))
    poly = poly / max(float(np.abs(poly).max()), 1e-6)
    return np.exp(np.float32(strength) * poly).astype(np.float32)
