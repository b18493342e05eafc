"""The generative model: clinical factors -> latent small vessel burden -> image markers; the outcome.

1. *Clinical table* (:mod:`.clinical`).
2. *Burden.* ``z = LATENT . factors + N(0, residual_sd)`` (:data:`~.literature.LATENT`):
   hypertension, age, diabetes, smoking and LVH drive it; its residual is invisible in the table.
3. *Markers* (:data:`~.literature.MARKERS`), each from ``z`` (and age, which the brain shows as
   atrophy) with its own noise: WMH volume (periventricular and deep), lacune and CMB counts,
   brain volume loss, ventricle volume; intracranial volume from sex (:data:`~.literature.ICV_ML`).
   The images are rendered from these markers only (:mod:`.render`).
4. *Outcome.* ``logit = OUTCOME . factors + OUTCOME['z'] x z``: atrial fibrillation and
   cardiovascular disease act on the outcome only (nothing of them is in the brain); sex and
   age are risk factors too.
5. *Label noise.* The written label (``labels.tsv``) is a registry's: :data:`~.literature.LABEL_PPV`
   of written strokes are true and as many true strokes go unwritten (the clean label is
   only in ``truth.tsv``).
6. *Missing cells* and *measured volumes* (the image-derived volumes a table may hold: the
   markers x (1 + N(0, MEASUREMENT_CV))) are drawn last.

Everything comes from one ``numpy.random.default_rng(seed)`` in that order, vectorised (a
population of 10^5 in well under a second, no image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import literature as lit
from .clinical import covariates, draw_clinical, draw_missing, linear

__all__ = ["PARENCHYMA_FRACTION", "Population", "draw_population", "marker_matrix"]

#: Brain parenchyma / intracranial volume of a young adult brain (approximate, ~0.85): brain
#: volume = ICV x this x (1 - atrophy).
PARENCHYMA_FRACTION: float = 0.85


@dataclass(frozen=True, eq=False)
class Population:
    """Drawn subjects, one array entry each (see the module docstring for every step).

    ``clinical``: complete values (``male`` 0/1); ``missing``: column -> bool (empty cell);
    ``burden``: z; ``markers``: wmh_pv_ml, wmh_deep_ml, wmh_ml, lacunes, cmbs, icv_ml, atrophy,
    brain_ml, ventricles_ml; ``measured``: the image-derived volumes as a pipeline measures
    them; ``risk``: the true probability; ``stroke``: the clean outcome; ``written``: the noisy label.
    """

    clinical: dict[str, np.ndarray]
    missing: dict[str, np.ndarray]
    burden: np.ndarray
    markers: dict[str, np.ndarray]
    measured: dict[str, np.ndarray]
    risk: np.ndarray
    stroke: np.ndarray
    written: np.ndarray

    def __len__(self) -> int:
        return int(self.burden.shape[0])


def _markers(rng: np.random.Generator, z: np.ndarray, age_a: np.ndarray, age: np.ndarray,
             male: np.ndarray) -> dict[str, np.ndarray]:
    """Step 3 (fixed draw order: WMH, lacunes, CMBs, atrophy, ventricles, ICV)."""
    m, n = lit.MARKERS, z.shape[0]
    wmh = np.minimum(np.exp(m["wmh_log_median_ml"] + m["wmh_A"] * age_a + m["wmh_z"] * z
                            + rng.normal(0.0, m["wmh_sd"], n)), m["wmh_max_ml"])
    lacunes = rng.poisson(np.exp(m["lacune_log_rate"] + m["lacune_z"] * z + m["lacune_A"] * age_a)).astype(float)
    cmbs = rng.poisson(np.exp(m["cmb_log_rate"] + m["cmb_z"] * z + m["cmb_A"] * age_a)).astype(float)
    atrophy = np.clip(m["atrophy_per_year"] * np.maximum(age - m["atrophy_from_age"], 0.0) + m["atrophy_z"] * z
                      + rng.normal(0.0, m["atrophy_sd"], n), 0.0, 0.3)
    typical = m["atrophy_per_year"] * (lit.AGE[0] - m["atrophy_from_age"])  # at the mean age: ventricles_ml
    ventricles = np.minimum(m["ventricles_ml"] * np.exp(
        m["ventricles_per_atrophy"] * (atrophy - typical) + m["ventricles_z"] * z + rng.normal(0.0, m["ventricles_sd"], n)),
        m["ventricles_max_ml"])
    f_icv, m_icv, sd_icv = lit.ICV_ML
    icv = np.where(male > 0, m_icv, f_icv) + rng.normal(0.0, sd_icv, n)
    share = m["periventricular_share"]
    return {"wmh_pv_ml": wmh * share, "wmh_deep_ml": wmh * (1.0 - share), "wmh_ml": wmh, "lacunes": lacunes,
            "cmbs": cmbs, "icv_ml": icv, "atrophy": atrophy, "brain_ml": icv * PARENCHYMA_FRACTION * (1.0 - atrophy),
            "ventricles_ml": ventricles}


def _label_noise(rng: np.random.Generator, stroke: np.ndarray) -> np.ndarray:
    """Step 5: flip ``1 - LABEL_PPV`` of the true strokes to 0 and as many non-strokes to 1
    (each non-stroke with the probability that gives that number on average)."""
    wrong = 1.0 - lit.LABEL_PPV
    prevalence = float(stroke.mean()) if stroke.size else 0.0
    flip_neg = wrong * prevalence / max(1.0 - prevalence, 1e-9)
    u = rng.uniform(size=stroke.shape[0])
    return np.where(stroke > 0, u >= wrong, u < flip_neg).astype(int)


def draw_population(n: int, seed: int) -> Population:
    """``n`` subjects drawn from ``default_rng(seed)`` (the module docstring's steps, in order)."""
    rng = np.random.default_rng(int(seed))
    n = int(n)
    clinical = draw_clinical(rng, n)
    cov = covariates(clinical)
    z = linear(lit.LATENT, cov, n) + rng.normal(0.0, lit.LATENT["residual_sd"], n)
    markers = _markers(rng, z, cov["A"], clinical["age"], clinical["male"])
    risk = 1.0 / (1.0 + np.exp(-(linear(lit.OUTCOME, cov, n) + lit.OUTCOME["z"] * z)))
    stroke = (rng.uniform(size=n) < risk).astype(int)
    written = _label_noise(rng, stroke)
    missing = draw_missing(rng, n)
    measured = {k: markers[k] * np.clip(1.0 + rng.normal(0.0, lit.MEASUREMENT_CV, n), 0.5, 1.5)
                for k in ("wmh_ml", "brain_ml", "ventricles_ml")}
    return Population(clinical=clinical, missing=missing, burden=z, markers=markers, measured=measured, risk=risk,
                      stroke=stroke, written=written)


def marker_matrix(markers: dict[str, np.ndarray]) -> np.ndarray:
    """The image markers a clinician reads (the issue's "clinical standard to beat"), as model
    features: log WMH volume, log1p lacunes, log1p CMBs, brain volume (litres), log ventricle volume."""
    return np.column_stack([np.log(markers["wmh_ml"]), np.log1p(markers["lacunes"]), np.log1p(markers["cmbs"]),
                            markers["brain_ml"] / 1000.0, np.log(markers["ventricles_ml"])])
