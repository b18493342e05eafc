"""The numbers of the metastasis cohort: per origin, how many lesions, how large, where, how they look.

Every number cites ``../shared/REFERENCES.md``, "Metastasis origin (numbers for phantoms)"
(*REF* below), or says it was chosen (and why) or is approximate. Origins are
``core.tasks.metastasis.classes.ORIGINS`` (SCLC, NSCLC, breast, GI), the order of every
per-origin tuple here. Rule kept throughout: every origin effect overlaps the others (a
single attribute never separates two origins), as REF asks of the ADC ratio and as the
peers' pairwise AUCs of 0.73-0.95 (REF) imply.
"""

from __future__ import annotations

from ...tasks.metastasis.classes import ORIGINS

__all__ = [
    "ADC_RATIO", "ADC_RATIO_RANGE", "AGE", "CEREBELLUM_SHARE", "DEEP_SHARE", "DIAMETER_MM",
    "DIAMETER_RANGE_MM", "FEMALE_SHARE", "HAEMORRHAGE_SHARE", "LESION_COUNT_NB", "MAX_RENDERED_LESIONS",
    "NECROSIS_FRACTION", "OEDEMA_MIN_DIAMETER_MM", "OEDEMA_RATIO", "OEDEMA_SHARE", "ORIGINS", "RING_SHARE",
    "RING_SIZE_SLOPE_PER_MM", "T2_DARK_SHARE", "WATERSHED_SHARE", "WATERSHED_SURFACE_SHARE",
]

#: Lesions per patient: ``1 + NegBin(mean, k)`` (numpy's n = k, p = k / (k + mean)), over-
#: dispersed. REF: 2.1 per patient in the study (3.5 and 9.0 in other series), single in
#: ~49 %; SCLC spreads more diffusely; NSCLC 1-2 lesions in 56 % (a series with more
#: lesions than the study's). Chosen: SCLC mean 3.3, NSCLC 2.2, breast 2.0, GI 1.7
#: lesions, single in 39 / 49 / 52 / 58 % (overall ~50 % single, mean ~2.3 at the study's
#: mix; measured in the tests); NSCLC's 1-2 share comes to ~70 % (approximate: the study's
#: lower mean).
LESION_COUNT_NB: dict[str, tuple[float, float]] = {
    "SCLC": (2.3, 0.7), "NSCLC": (1.2, 0.8), "breast": (1.0, 0.8), "GI": (0.7, 0.9)}
#: Lesions rendered per patient at most (chosen: keeps a render bounded and the lesions
#: apart; the tail above it is rare at these means). The drawn count is kept in the labels.
MAX_RENDERED_LESIONS: int = 8
#: Tumour diameter (mm): log-normal (median, sigma), clipped to :data:`DIAMETER_RANGE_MM`.
#: REF: NSCLC <= 2 cm in 73 % -> median 13, sigma 0.55 (P(<= 20 mm) = 0.78). SCLC smaller
#: (many small lesions; chosen 10), breast 13, GI larger (chosen 15): approximate.
DIAMETER_MM: dict[str, tuple[float, float]] = {
    "SCLC": (10.0, 0.55), "NSCLC": (13.0, 0.55), "breast": (13.0, 0.55), "GI": (15.0, 0.55)}
#: Chosen: below 4 mm a metastasis is not seen on 1 mm contrast T1; above 40 mm rare.
DIAMETER_RANGE_MM: tuple[float, float] = (4.0, 40.0)
#: Share of lesions in the cerebellum (REF: ~15 % overall, more for breast and GI; the 5x
#: posterior-fossa excess for GI of one 1988 series was not replicated, so a modest excess).
CEREBELLUM_SHARE: dict[str, float] = {"SCLC": 0.12, "NSCLC": 0.12, "breast": 0.19, "GI": 0.20}
#: Share in the deep grey nuclei (basal ganglia, thalamus): chosen, few (haematogenous
#: spread goes to the grey-white junction of the cortex, REF), the same for every origin.
DEEP_SHARE: float = 0.04
#: Of the supratentorial junction lesions, the share in the watershed zones (REF: 37 % of
#: metastases on 29 % of the surface).
WATERSHED_SHARE: float = 0.37
#: The share of the junction that our watershed boxes cover (``lesions.WATERSHED_BOXES_MNI``;
#: REF's 29 %, checked in the tests).
WATERSHED_SURFACE_SHARE: float = 0.29
#: Ring (rim) enhancement with necrosis vs solid: P(ring) = logistic(logit(share) +
#: slope x (diameter - the origin's median diameter)). REF: NSCLC ring enhancement 73 %.
#: Chosen (approximate): SCLC often solid (0.45), breast 0.55, GI 0.65 (necrotic, mucinous);
#: necrosis grows with size (slope 0.25 per mm: small lesions mostly solid).
RING_SHARE: dict[str, float] = {"SCLC": 0.45, "NSCLC": 0.73, "breast": 0.55, "GI": 0.65}
RING_SIZE_SLOPE_PER_MM: float = 0.25
#: Necrotic core diameter / tumour diameter of a ring lesion: uniform (chosen: a rim of
#: 1-3 mm on a 10-30 mm lesion).
NECROSIS_FRACTION: tuple[float, float] = (0.4, 0.8)
#: Peritumoural oedema: present in a lesion of >= :data:`OEDEMA_MIN_DIAMETER_MM` with
#: probability :data:`OEDEMA_SHARE`, rare below it (REF: rarely below ~9 mm; the share x 0.2
#: there, chosen). REF: NSCLC oedema in 61 % of lesions -> 0.76 at >= 9 mm (a quarter of its
#: lesions are smaller; measured in the tests). Chosen: SCLC 0.85 (lung: more oedema, REF),
#: breast 0.70, GI 0.75.
OEDEMA_SHARE: dict[str, float] = {"SCLC": 0.85, "NSCLC": 0.76, "breast": 0.70, "GI": 0.75}
OEDEMA_MIN_DIAMETER_MM: float = 9.0
#: Oedema / tumour volume ratio where there is oedema: log-normal (median, sigma). REF:
#: higher in lung; breast 1.95-2.48 -> median 2.2. Lung 3.0 (SCLC) and 3.3 (NSCLC), GI
#: 2.5: chosen above breast, sigma 0.55 keeps them overlapping.
OEDEMA_RATIO: dict[str, tuple[float, float]] = {
    "SCLC": (3.0, 0.55), "NSCLC": (3.3, 0.55), "breast": (2.2, 0.55), "GI": (2.5, 0.55)}
#: ADC of the solid part / ADC of normal white matter: normal (mean, SD), clipped to
#: :data:`ADC_RATIO_RANGE`. REF: SCLC 0.68 +- 0.12 vs NSCLC 1.47 +- 0.31 in one series,
#: no difference by origin in another: kept OVERLAPPING, halfway between (SCLC 0.85 +-
#: 0.18, NSCLC 1.15 +- 0.28); breast 1.0 and GI 1.05 +- 0.25 (chosen, between them).
ADC_RATIO: dict[str, tuple[float, float]] = {
    "SCLC": (0.85, 0.18), "NSCLC": (1.15, 0.28), "breast": (1.00, 0.25), "GI": (1.05, 0.25)}
ADC_RATIO_RANGE: tuple[float, float] = (0.45, 2.2)
#: T2-hypointense solid part. REF: ~20 % of adenocarcinoma metastases; adenocarcinoma taken
#: as 65 % of NSCLC brain metastases (chosen) -> 0.13; mucinous GI classically T2-dark
#: (chosen 0.25: mucinous and signet-ring share of GI primaries, approximate); SCLC and
#: breast rarely (chosen 0.04, 0.06: never zero, so no attribute separates).
T2_DARK_SHARE: dict[str, float] = {"SCLC": 0.04, "NSCLC": 0.13, "breast": 0.06, "GI": 0.25}
#: Haemorrhage within the tumour. REF: 3-14 % of metastases; chosen within that range.
HAEMORRHAGE_SHARE: dict[str, float] = {"SCLC": 0.05, "NSCLC": 0.08, "breast": 0.06, "GI": 0.11}
#: Age (years): normal (mean, SD) clipped to (low, high), ONE distribution for every origin
#: (chosen: brain metastases present around 60; the same for all so age cannot leak the class).
AGE: tuple[float, float, float, float] = (62.0, 11.0, 30.0, 90.0)
#: Share female. Breast primaries are female (male breast cancer ~1 %: 0.99); the others
#: half (chosen). Sex is CONTROLLED, not balanced: nothing rendered depends on sex or age
#: (``render`` never reads them; tested), so a model of the images cannot learn it; it is
#: written to labels.tsv only, for stratified reporting, never as a feature.
FEMALE_SHARE: dict[str, float] = {"SCLC": 0.5, "NSCLC": 0.5, "breast": 0.99, "GI": 0.5}

for _table in (LESION_COUNT_NB, DIAMETER_MM, CEREBELLUM_SHARE, RING_SHARE, OEDEMA_SHARE, OEDEMA_RATIO, ADC_RATIO,
               T2_DARK_SHARE, HAEMORRHAGE_SHARE, FEMALE_SHARE):
    assert tuple(_table) == ORIGINS, "every per-origin table is in ORIGINS order"
