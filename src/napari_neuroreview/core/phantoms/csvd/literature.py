"""The numbers of the subtype cohort: per subtype, how many microbleeds, where, cSS, age.

Every number cites ``../shared/REFERENCES.md``, "Small vessel disease subtype from
microbleeds" (*REF* below), or says it was chosen and why. The regions are MARS regions
(``core.anatomy.mars``); where the lobar ones go is :mod:`.sites`'s.
"""

from __future__ import annotations

import numpy as np

# The latent diseases (also the order of a centre's class mix) are the subtype task's
# classes, so a cohort's labels are the classifier's by construction.
from ...tasks.csvd.baselines import SUBTYPES
#: Share of patients with no microbleed at all (background included). aSVD: ~77 % of ICH
#: patients have one (REF); CAA: >= 1-2 lobar lesions by definition (REF), so 0; CADASIL:
#: 34-74 % have one across cohorts (REF), 0.5 taken in that range.
ZERO_SHARE: dict[str, float] = {"aSVD": 0.23, "CAA": 0.0, "CADASIL": 0.5}
#: CMB-positive counts: ``1 + NegBin(mean, k)`` (numpy's n = k, p = k / (k + mean)).
#: aSVD: mean 11, median 6, range 1-65 in ICH (REF) -> mean 10, k 0.6 (mean 11, median 6,
#: SD 13). CAA: lobar median 10 when microbleeds are the presentation, 2 after a lobar ICH
#: (REF) -> mean 8, k 0.6 (median 5, mean 9, SD 11). CADASIL: 5.9 +- 7.3, median 4, and
#: median 13 with a range to 286 (REF) -> mean 10, k 0.32 (median 4, mean 11, SD 18,
#: 0.6 % above 100: the long tail to hundreds).
COUNT_NB: dict[str, tuple[float, float]] = {"aSVD": (10.0, 0.6), "CAA": (8.0, 0.6), "CADASIL": (10.0, 0.32)}
#: Share of patients with background microbleeds: 15 % of people over 45 (Rotterdam, REF);
#: 1 + Poisson(:data:`BACKGROUND_EXTRA_MEAN`) of them ("a few"; chosen).
BACKGROUND_SHARE: float = 0.15
BACKGROUND_EXTRA_MEAN: float = 0.5
#: MARS class of a background microbleed (chosen: the simulators' default 0.5 / 0.3 / 0.2;
#: REF: deep ones track vascular risk, lobar ones APOE e4). CAA patients' are lobar
#: (strictly lobar by definition, REF).
BACKGROUND_CLASSES: dict[str, float] = {"lobar": 0.5, "deep": 0.3, "infratentorial": 0.2}
#: Regions within a background class (chosen: the deep grey nuclei and white matter, the
#: brainstem before the cerebellum).
BACKGROUND_REGIONS: dict[str, dict[str, float]] = {
    "deep": {"basal_ganglia": 0.5, "thalamus": 0.3, "deep_white_matter": 0.2},
    "infratentorial": {"brainstem": 0.6, "cerebellum": 0.4},
}
#: aSVD per-microbleed shares (ICH, REF): cortex-subcortex 41 %, basal ganglia 27 %,
#: thalamus 14 %, brainstem 13 %, cerebellum 9 % (sum 104: normalised); "lobar" spreads
#: over the lobes by junction volume.
ASVD_REGIONS: dict[str, float] = {"lobar": 41.0, "basal_ganglia": 27.0, "thalamus": 14.0, "brainstem": 13.0,
                                  "cerebellum": 9.0}
#: aSVD patient pattern when >= 2 microbleeds: mixed lobar + deep in ~43 % of CMB-positive
#: (REF), "some strictly lobar" (REF; 0.10 chosen), the rest strictly deep/infratentorial.
#: 0.40 mixed among >= 2 (chosen: with single-CMB patients and background microbleeds the
#: mixed share of CMB-positive patients comes to ~0.43; measured in the tests).
ASVD_PATTERN: dict[str, float] = {"mixed": 0.50, "lobar": 0.07, "deep": 0.43}
#: CAA: strictly lobar, at the junction; lobe weight = junction volume x factor: temporal
#: x1.37 and occipital x1.45 of expected (REF); frontal, parietal and insula share one
#: factor, solved so that the shares sum to 1 (observed / expected = these factors).
CAA_LOBE_FACTORS: dict[str, float] = {"temporal": 1.37, "occipital": 1.45}
#: CADASIL per-microbleed shares (REF): cortical-subcortical 38 %, white matter 20 %,
#: thalamus 13 %, brainstem 14 %; the remaining 15 % (not given) to the basal ganglia
#: (chosen: the other deep grey matter).
CADASIL_REGIONS: dict[str, float] = {"lobar": 38.0, "deep_white_matter": 20.0, "thalamus": 13.0, "brainstem": 14.0,
                                     "basal_ganglia": 15.0}
#: CADASIL: "thalamus and temporal lobe most frequent" (REF): the temporal lobe takes 40 % of
#: its lobar microbleeds (chosen so it ranks with the thalamus), the others by volume.
CADASIL_TEMPORAL_SHARE: float = 0.40
#: Cortical superficial siderosis: 44 % in CAA with strictly lobar CMBs (REF), 10.5 % in
#: aSVD (REF, 0.10), CADASIL "rare" (none given in REF; 0.02 chosen).
CSS_SHARE: dict[str, float] = {"aSVD": 0.10, "CAA": 0.44, "CADASIL": 0.02}
#: cSS layers: 1-3 sulci (focal cSS, chosen), 1-2 mm thick, 10-40 mm long (issue 11).
CSS_THICKNESS_MM: tuple[float, float] = (1.0, 2.0)
CSS_LENGTH_MM: tuple[float, float] = (10.0, 40.0)
#: Microbleeds rendered per patient at most (the latent count is kept): CADASIL's tail
#: reaches hundreds (REF); chosen to keep a scan's objects apart and its render time bounded.
MAX_RENDERED_CMB: int = 150
#: True diameter range (issue 11: 2-10 mm).
CMB_DIAMETER_MM: tuple[float, float] = (2.0, 10.0)
#: Age (years, normal, clipped) and share male per subtype: not in REF, chosen. CAA >= 50
#: (the Boston criteria's age), a disease of the elderly; aSVD of hypertensive middle and
#: old age; CADASIL presents in midlife.
AGE: dict[str, tuple[float, float, float, float]] = {
    "aSVD": (66.0, 11.0, 35.0, 95.0), "CAA": (73.0, 8.0, 50.0, 95.0), "CADASIL": (51.0, 10.0, 25.0, 85.0)}
MALE_SHARE: dict[str, float] = {"aSVD": 0.6, "CAA": 0.5, "CADASIL": 0.45}


def draw_cmb_count(rng: np.random.Generator, subtype: str) -> tuple[int, int]:
    """(disease, background) microbleed counts of one patient of ``subtype``.

    The disease count is 0 with probability ``ZERO_SHARE / (1 - BACKGROUND_SHARE)`` (so
    that, with background microbleeds, :data:`ZERO_SHARE` of patients have none), else
    ``1 + NegBin`` (:data:`COUNT_NB`). Three draws, always made, in this order.
    """
    mean, k = COUNT_NB[subtype]
    zero = rng.uniform() < ZERO_SHARE[subtype] / (1.0 - BACKGROUND_SHARE)
    n = 1 + int(rng.negative_binomial(k, k / (k + mean)))
    has_bg = rng.uniform() < BACKGROUND_SHARE
    n_bg = 1 + int(rng.poisson(BACKGROUND_EXTRA_MEAN))
    return (0 if zero else n), (n_bg if has_bg else 0)
