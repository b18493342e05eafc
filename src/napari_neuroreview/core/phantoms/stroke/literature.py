"""The numbers of the stroke cohort: the clinical table, the small vessel burden, the markers, the outcome.

Every number cites ``../shared/REFERENCES.md``, "Stroke risk (numbers for phantoms)" (*REF*
below), or says it was chosen (and why) or is approximate. Standardised covariates used by
the coefficients: ``A = (age - 64) / 8``, ``S = (SBP - 138) / 19`` (a UK-Biobank-like
imaging cohort's means and SDs, approximate), ``B = (BMI - 27.4) / 4.5``.

The calibration numbers (:data:`TARGET_AUC`) are REF's: Framingham-style risk alone
C ~ 0.69-0.73, with MRI infarcts and WMH 0.75-0.77; the coefficients of :data:`LATENT`,
:data:`MARKERS` and :data:`OUTCOME` were chosen so that the logistic models measured on a
large draw land there (the tests measure them; ``calibration.measure_calibration``).
"""

from __future__ import annotations

__all__ = [
    "AGE", "BMI", "CHOLESTEROL", "FEMALE_SHARE", "ICV_ML", "LABEL_PPV", "LATENT", "LOGISTIC", "MARKERS",
    "MEASUREMENT_CV", "MISSING", "OUTCOME", "SBP", "TARGET_AUC", "TARGET_PREVALENCE",
]

#: Age at the scan (years): normal (mean, SD) clipped to (low, high). Approximate: the UK
#: Biobank imaging visit (44-82, mean ~64).
AGE: tuple[float, float, float, float] = (64.0, 7.7, 45.0, 82.0)
#: Share of women (approximate: UK Biobank imaging, ~52 %).
FEMALE_SHARE: float = 0.52
#: BMI (kg/m2): mean for women, men; SD; clip. Approximate (UK Biobank: ~27 and 26.5 / 27.8).
BMI: tuple[float, float, float, float, float] = (26.8, 27.9, 4.4, 16.0, 55.0)
#: Systolic BP (mmHg) = mean + per decade of age + male + per BMI unit + N(0, SD), clipped.
#: Approximate (UK Biobank: mean ~138, SD ~19; rises ~5-6 mmHg per decade, men ~5 higher).
SBP: dict[str, float] = {"mean": 136.0, "per_decade": 6.0, "male": 5.0, "per_bmi": 0.6, "sd": 17.0,
                         "low": 85.0, "high": 230.0}
#: Total cholesterol (mmol/L): mean, women's excess, SD, clip (approximate: UK Biobank ~5.7 +- 1.1).
CHOLESTEROL: tuple[float, float, float, float, float] = (5.55, 0.3, 1.1, 2.0, 12.0)
#: The binary factors: logit = intercept + coefficient x covariate (A, S, B, male, and earlier
#: factors by name). Intercepts chosen for the approximate UK-Biobank-age prevalences noted
#: (measured in the tests within a few points): antihypertensive treatment ~22 %, current
#: smoking ~8 %, diabetes ~6 %, atrial fibrillation ~2.5 %, cardiovascular disease
#: (coronary disease or heart failure) ~6 %, ECG left ventricular hypertrophy ~3 %.
LOGISTIC: dict[str, dict[str, float]] = {
    "bp_treated": {"intercept": -1.45, "A": 0.45, "S": 0.55, "B": 0.30, "male": 0.15},
    "smoking": {"intercept": -2.45, "A": -0.25, "male": 0.25},
    "diabetes": {"intercept": -3.05, "A": 0.25, "B": 0.65, "male": 0.45},
    "af": {"intercept": -4.0, "A": 0.75, "male": 0.5, "B": 0.2},
    "cvd": {"intercept": -3.35, "A": 0.5, "male": 0.9, "S": 0.15, "diabetes": 0.6, "smoking": 0.5},
    "lvh": {"intercept": -3.65, "A": 0.25, "S": 0.55, "male": 0.35},
}
#: Share of each column left empty (``n/a``), missing completely at random (chosen, of UK
#: Biobank's order: ECG-based LVH and blood cholesterol are the most often missing).
MISSING: dict[str, float] = {"sbp": 0.03, "bp_treated": 0.015, "diabetes": 0.01, "smoking": 0.01,
                             "bmi": 0.02, "cholesterol": 0.08, "lvh": 0.12}

#: The latent small vessel burden ``z = sum(coef x factor) + N(0, residual_sd)``: hypertension,
#: age, diabetes, smoking and LVH drive it, weakly (chosen). Its residual, invisible in the
#: table, is what the image markers add: the issue's "beyond the table" (both ~0.75 against
#: the table's ~0.70) needs the markers to see mostly what the table does not, and 21 % label
#: noise caps what two channels of ~0.70 each can reach together (~0.76).
LATENT: dict[str, float] = {"A": 0.1, "S": 0.15, "bp_treated": 0.1, "diabetes": 0.1, "smoking": 0.1,
                            "lvh": 0.1, "residual_sd": 1.0}
#: Image markers from the burden (and age, which brains show as atrophy), each with its own noise:
#: WMH volume log-normal (ml, median ~3 ml at 64, approximate; its wide SD keeps it a noisy
#: read of the burden, as a single WMH volume is), 70 % of it periventricular
#: (chosen); lacunes and CMBs Poisson (~15 % with a silent infarct, ~15 % with a microbleed
#: at 60-70: approximate, Rotterdam); brain volume loss ~0.4 %/year past 45 plus burden
#: (approximate); ventricles ~20 ml at 64, doubling with ~10 % brain loss (approximate). WMH
#: capped at 120 ml and ventricles at 200 ml (chosen: the log-normal tails past what brains hold).
MARKERS: dict[str, float] = {
    "wmh_log_median_ml": 1.1, "wmh_A": 0.15, "wmh_z": 0.75, "wmh_sd": 1.1, "periventricular_share": 0.7,
    "lacune_log_rate": -2.4, "lacune_z": 0.9, "lacune_A": 0.1,
    "cmb_log_rate": -2.2, "cmb_z": 0.7, "cmb_A": 0.15,
    "atrophy_per_year": 0.004, "atrophy_from_age": 45.0, "atrophy_z": 0.012, "atrophy_sd": 0.015,
    "ventricles_ml": 20.0, "ventricles_per_atrophy": 7.0, "ventricles_z": 0.12, "ventricles_sd": 0.3,
    "wmh_max_ml": 120.0, "ventricles_max_ml": 200.0,
}
#: Intracranial volume (ml): women, men, SD (approximate: ~1350 / 1550 ml, SD ~110).
ICV_ML: tuple[float, float, float] = (1350.0, 1550.0, 110.0)
#: The outcome (stroke within ~10 years): logit = intercept + coefficient x factor + z x burden.
#: REF's odds ratios set the factors' order: atrial fibrillation ~5x (ln 5 = 1.6), cardiac
#: causes 2.4-3.2 (1.3 here: OR 3.7 direct, chosen above REF's range so that the table, not
#: the age the images also show, carries the table's signal), current smoking 1.7-2.1 (0.65),
#: diabetes 1.4 (0.35), hypertension 2.6-3.0 (SBP per SD 0.65: OR 1.9, ~2.8 from 120 to
#: 160 mmHg, plus treatment and the burden it drives); age 0.25 per 8 years direct, ~0.37 with
#: the burden (OR ~1.6 per decade, below Framingham's doubling, chosen for the same reason as
#: cardiac disease). AF and cardiac disease act on the outcome only (emboli from the heart:
#: invisible in the brain until the stroke). The burden's coefficient and the intercept are
#: chosen for :data:`TARGET_AUC` and :data:`TARGET_PREVALENCE`.
OUTCOME: dict[str, float] = {"intercept": -4.0, "A": 0.25, "male": 0.35, "S": 0.65, "bp_treated": 0.2,
                             "smoking": 0.65, "diabetes": 0.35, "af": 1.6, "cvd": 1.3, "lvh": 0.3, "z": 1.2}
#: Event rate over ~10 years: 5-10 % (REF).
TARGET_PREVALENCE: tuple[float, float] = (0.05, 0.10)
#: UK Biobank stroke codes are right ~79 % of the time (REF): 21 % of the written stroke labels
#: are false, and as many true strokes go unwritten, so the written prevalence is the true one.
LABEL_PPV: float = 0.79
#: Cross-validated logistic ROC-AUC on the written (noisy) label (REF's C statistics, issue 13):
#: the table alone, the image markers alone, both.
TARGET_AUC: dict[str, tuple[float, float]] = {"table": (0.69, 0.73), "markers": (0.65, 0.70),
                                              "both": (0.75, 0.77)}
#: Coefficient of variation of the image-derived volumes written to the table with
#: ``image_volumes_in_table`` (a segmentation pipeline's error; chosen, approximate).
MEASUREMENT_CV: float = 0.08
