"""Tissue, blood, iron, mineral and air: the numbers the physical simulator is made of.

Every value is per field strength where it depends on it (1.5 T and 3 T), with its
source. Susceptibilities are in ppm (SI), relative to brain tissue (the reference the
filtered phase and QSM report against). Values marked *approximate* are of the order
the cited work reports, rounded; they are inputs to a simulator, not measurements.
"""

from __future__ import annotations

import math

#: Phase sign convention of the stored phase images: word for word the phenomenological
#: simulator's (``core.phantoms.swi.PHASE_CONVENTION``), so phase images from both are
#: interchangeable (tests/core/test_swi_physics.py checks the two strings are equal).
PHASE_CONVENTION: str = (
    "positive phase = paramagnetic (dchi > 0: haemosiderin, deoxyhaemoglobin, ferritin); "
    "negative = diamagnetic (calcification); B0 along world +z (RAS superior)"
)

#: Field strengths simulated (T).
FIELD_STRENGTHS_T: tuple[float, ...] = (1.5, 3.0)

#: T2* (ms) of grey and white matter: Peters et al. 2007, Magn Reson Imaging 25:748
#: (frontal GM / WM, 1.5 T: 84.0 / 66.2 ms; 3 T: 66.0 / 53.2 ms). CSF: long (hundreds of
#: ms); approximate.
T2STAR_MS: dict[float, dict[str, float]] = {
    1.5: {"gm": 84.0, "wm": 66.2, "csf": 400.0, "blood": 45.0},
    3.0: {"gm": 66.0, "wm": 53.2, "csf": 300.0, "blood": 20.0},
}
#: T1 (ms): Stanisz et al. 2005, Magn Reson Med 54:507 (GM / WM at 1.5 T 1124 / 884 ms,
#: 3 T 1820 / 1084 ms); CSF ~4000 ms; blood: Lu et al. 2004, Magn Reson Med 52:679
#: (3 T 1649 ms), 1.5 T ~1350 ms (approximate).
T1_MS: dict[float, dict[str, float]] = {
    1.5: {"gm": 1124.0, "wm": 884.0, "csf": 4000.0, "blood": 1350.0},
    3.0: {"gm": 1820.0, "wm": 1084.0, "csf": 4000.0, "blood": 1649.0},
}
#: Proton density (water content): GM 0.80, WM 0.69-0.71, CSF 1.0, blood 0.87
#: (Whittall et al. 1997, Magn Reson Med 37:34; Herscovitch & Raichle 1985, J Cereb
#: Blood Flow Metab 5:65 for blood).
PD: dict[str, float] = {"gm": 0.80, "wm": 0.70, "csf": 1.0, "blood": 0.87, "calcium": 0.2}

#: Sequence of a clinical SWI (Haacke et al. 2004, Magn Reson Med 52:612; 3 T: TR ~30
#: ms, flip 15 deg, TE 20 ms; 1.5 T: TE ~40 ms).
DEFAULT_TR_MS: float = 28.0
DEFAULT_FLIP_DEG: float = 15.0
DEFAULT_TE_MS: dict[float, float] = {1.5: 40.0, 3.0: 20.0}

#: Bulk tissue susceptibility relative to CSF (ppm): white matter is diamagnetic (myelin),
#: grey matter slightly paramagnetic; approximate, as in QSM of the healthy brain
#: (Li W. et al. 2011, NeuroImage 55:1645; Duyn et al. 2007, PNAS 104:11796).
CHI_TISSUE_PPM: dict[str, float] = {"gm": 0.015, "wm": -0.03, "csf": 0.0}

#: Deoxyhaemoglobin: ``chi_vein = Hct * (1 - Y) * dchi_do`` with ``dchi_do = 3.39 ppm``
#: (0.27 ppm cgs x 4 pi; Spees et al. 2001, Magn Reson Med 45:533; Jain et al. 2012,
#: J Cereb Blood Flow Metab 32:1316 use the same), Hct 0.40 and venous saturation
#: Y 0.67-0.78 (Haacke et al. 2004): 0.30-0.45 ppm.
DCHI_DEOXY_PPM: float = 3.39
HCT: float = 0.40
VENOUS_Y_RANGE: tuple[float, float] = (0.67, 0.78)

#: Microbleed (haemosiderin in macrophages) susceptibility (ppm), drawn in this range.
#: Approximate: QSM of microbleeds measures strongly paramagnetic deposits (Liu T. et al.
#: 2012, Radiology 262:269; Klohs et al. 2011, Stroke 42:3458); the deposit's own value
#: depends on its iron load. Inside, the magnetisation of the dense deposit dephases the
#: few protons left: core T2* a few ms (approximate).
CHI_CMB_PPM: tuple[float, float] = (0.5, 1.5)
T2STAR_CMB_MS: float = 3.0
#: Calcification (calcium phosphate, diamagnetic; Chen W. et al. 2014, Radiology
#: 270:496: negative susceptibility on QSM, where bleeds are positive). Approximate.
CHI_CALC_PPM: tuple[float, float] = (-0.6, -0.2)
T2STAR_CALC_MS: float = 10.0
#: Air minus tissue: chi_air = +0.36 ppm, tissue ~ -9.05 ppm (Schenck 1996, Med Phys
#: 23:815): +9.4 ppm.
CHI_AIR_PPM: float = 9.4

#: Iron (ferritin) of the deep grey nuclei, susceptibility relative to CSF (ppm):
#: approximate values of the QSM atlases (Lim et al. 2013, NeuroImage 82:449; Deistung
#: et al. 2013, NeuroImage 65:299): globus pallidus highest, then substantia nigra, red
#: nucleus, dentate, putamen, caudate.
CHI_IRON_PPM: dict[str, float] = {
    "globus_pallidus": 0.18, "substantia_nigra": 0.15, "red_nucleus": 0.13, "dentate": 0.12,
    "putamen": 0.08, "caudate_head": 0.06,
}
#: Extra R2* (1/s) per ppm of iron susceptibility per tesla: R2* grows linearly with iron
#: and with B0 (Haacke et al. 2005, Magn Reson Imaging 23:1; Yao et al. 2009, NeuroImage
#: 44:1259); calibrated so the globus pallidus gains ~25/s at 3 T (R2* ~ 40/s). Approximate.
R2STAR_IRON_PER_PPM_PER_T: float = 46.0


def venous_chi(y: float) -> float:
    """Susceptibility (ppm) of venous blood at oxygen saturation ``y``."""
    return HCT * (1.0 - float(y)) * DCHI_DEOXY_PPM


def ernst(pd: float, t1_ms: float, tr_ms: float, flip_deg: float) -> float:
    """Spoiled-GRE steady state before T2* decay: ``PD sin a (1 - E1) / (1 - cos a E1)``."""
    a = math.radians(flip_deg)
    e1 = math.exp(-tr_ms / t1_ms)
    return pd * math.sin(a) * (1.0 - e1) / (1.0 - math.cos(a) * e1)


def t2star_table(b0_t: float) -> dict[str, float]:
    """T2* (ms) per tissue at ``b0_t`` (one of :data:`FIELD_STRENGTHS_T`)."""
    if float(b0_t) not in T2STAR_MS:
        raise ValueError(f"b0_t must be one of {FIELD_STRENGTHS_T}, got {b0_t!r}")
    return dict(T2STAR_MS[float(b0_t)])


def tissue_signal(name: str, b0_t: float, te_ms: float, tr_ms: float, flip_deg: float) -> float:
    """Noiseless GRE signal of a tissue (``gm``, ``wm``, ``csf``, ``blood``)."""
    b0 = float(b0_t)
    return ernst(PD[name], T1_MS[b0][name], tr_ms, flip_deg) * math.exp(-te_ms / T2STAR_MS[b0][name])
