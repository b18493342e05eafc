"""The clinical table: age, sex, BMI, blood pressure, treatment and the binary risk factors.

The draw order (one generator, vectorised over subjects): age, sex, BMI, SBP, cholesterol,
then the binary factors of :data:`~.literature.LOGISTIC` in its order (each may depend on the
ones before it: cardiovascular disease on diabetes and smoking). Correlations come from
those dependencies: SBP rises with age, male sex and BMI; treatment with SBP and age;
diabetes with BMI; AF with age. Missing values (:data:`~.literature.MISSING`) are drawn
after everything else by :func:`draw_missing`, so the complete values do not depend on them.
"""

from __future__ import annotations

import numpy as np

from . import literature as lit

__all__ = ["covariates", "draw_clinical", "draw_missing"]


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def covariates(clinical: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The standardised covariates the coefficients of :mod:`.literature` name (``A``, ``S``,
    ``B``, ``male``) beside the binary factors."""
    out = {"A": (clinical["age"] - 64.0) / 8.0, "S": (clinical["sbp"] - 138.0) / 19.0,
           "B": (clinical["bmi"] - 27.4) / 4.5, "male": clinical["male"]}
    out.update({k: clinical[k] for k in lit.LOGISTIC if k in clinical})
    return out


def linear(coefficients: dict[str, float], cov: dict[str, np.ndarray], n: int) -> np.ndarray:
    """``intercept + sum(coefficient x covariate)`` over the names ``coefficients`` gives
    (``residual_sd`` and ``z`` are not covariates and are skipped)."""
    out = np.full(n, float(coefficients.get("intercept", 0.0)))
    for name, c in coefficients.items():
        if name not in ("intercept", "residual_sd", "z"):
            out += c * cov[name]
    return out


def draw_clinical(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` subjects' complete clinical values (float arrays; ``male`` 0/1), no missing values."""
    mu, sd, lo, hi = lit.AGE
    age = np.clip(rng.normal(mu, sd, n), lo, hi)
    male = (rng.uniform(size=n) >= lit.FEMALE_SHARE).astype(float)
    f_mean, m_mean, bsd, blo, bhi = lit.BMI
    bmi = np.clip(np.where(male > 0, m_mean, f_mean) + rng.normal(0.0, bsd, n), blo, bhi)
    s = lit.SBP
    sbp = np.clip(s["mean"] + s["per_decade"] * (age - 64.0) / 10.0 + s["male"] * (male - 0.5)
                  + s["per_bmi"] * (bmi - 27.4) + rng.normal(0.0, s["sd"], n), s["low"], s["high"])
    c_mean, c_female, c_sd, c_lo, c_hi = lit.CHOLESTEROL
    chol = np.clip(c_mean + c_female * (1.0 - male) + rng.normal(0.0, c_sd, n), c_lo, c_hi)
    clinical = {"age": age, "male": male, "bmi": bmi, "sbp": sbp, "cholesterol": chol}
    for name, coefficients in lit.LOGISTIC.items():
        p = _logistic(linear(coefficients, covariates(clinical), n))
        clinical[name] = (rng.uniform(size=n) < p).astype(float)
    return clinical


def draw_missing(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Which cells are empty: per column of :data:`~.literature.MISSING`, completely at random."""
    return {column: rng.uniform(size=n) < share for column, share in lit.MISSING.items()}
