"""What a subtype model must beat: MARS counts, the Boston criteria v2.0 rule, a count regression.

Why these baselines: in the published microbleed study the CAA label was itself given by
the Boston criteria, a rule on strictly lobar haemorrhagic lesions, so a network can score
well by re-deriving the rule. Reporting the rule (and a regression on MARS counts) in the
same folds says what the network adds over where the microbleeds are and how many.

Items handed to the estimators are any objects with ``regions`` (a sequence of
:class:`core.anatomy.mars.MarsRegion`, one per microbleed) and ``age`` (years, or None).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from ...anatomy.mars import MARS_CLASSES, REGION_CLASS, REGIONS, MarsRegion

#: The three subtypes, in the column order of every probability table of this task.
SUBTYPES: tuple[str, ...] = ("aSVD", "CAA", "CADASIL")

#: Boston criteria v2.0 (Charidimou et al., Lancet Neurol 2022;21:714): probable CAA needs
#: age >= 50 ...
BOSTON_MIN_AGE = 50.0
#: ... and at least two strictly lobar haemorrhagic lesions (ICH, CMB or cSS foci) with no
#: deep haemorrhagic lesion. Cerebellar lesions neither count nor exclude (v2.0 lists them
#: as neither lobar nor deep), brainstem, basal ganglia and thalamus exclude.
BOSTON_MIN_LOBAR = 2
#: The "else" branch, ours (the criteria only say "probable CAA" or not): a CADASIL
#: patient is young (stroke onset mean 45-50 years, Chabriat et al., Lancet Neurol
#: 2009;8:643), arteriolosclerosis is the disease of older hypertensive patients. Below
#: this age a non-CAA patient is called CADASIL, otherwise aSVD.
CADASIL_MAX_AGE = 55.0
#: Deep regions whose haemorrhagic lesions exclude probable CAA. The criteria name the basal
#: ganglia, thalamus and brainstem; the other MARS-deep regions (capsules, corpus callosum,
#: deep and periventricular white matter) are counted as deep too, as MARS rates them (our
#: choice, the stricter reading).
BOSTON_DEEP_REGIONS = frozenset({r for r, c in REGION_CLASS.items() if c == "deep"} | {"brainstem"})


class PatientFindings(Protocol):
    """What the baselines read of a patient: the microbleeds' regions and the age."""

    regions: Sequence[MarsRegion]
    age: float | None


def mars_counts(regions: Sequence[MarsRegion]) -> dict[str, Any]:
    """MARS counts of one patient: per class, per region, and per class and side.

    Returns ``{"lobar": n, "deep": n, "infratentorial": n, "regions": {region: n},
    "sides": {"lobar_left": n, ...}}``; CMBs outside the brain are counted under
    ``"outside"`` in ``regions`` only (MARS does not rate them).
    """
    by_class = {c: 0 for c in MARS_CLASSES}
    by_region: dict[str, int] = {}
    by_side = {f"{c}_{s}": 0 for c in MARS_CLASSES for s in ("left", "right")}
    for r in regions:
        by_region[r.region] = by_region.get(r.region, 0) + 1
        if r.mars_class in by_class:
            by_class[r.mars_class] += 1
            by_side[f"{r.mars_class}_{r.side}"] += 1
    return {**by_class, "regions": by_region, "sides": by_side}


def boston_v2(regions: Sequence[MarsRegion], age: float | None, css_foci: int = 0) -> str:
    """The subtype the Boston criteria v2.0 rule (with our documented else branch) gives.

    ``css_foci``: cortical superficial siderosis foci the reader counted (each counts as a
    lobar haemorrhagic lesion); the detector does not find siderosis, so it is 0 unless a
    reviewer entered it. ``age`` None is taken as meeting the age criterion (the rule is
    then on the lesions alone) and as older than :data:`CADASIL_MAX_AGE`.
    """
    lobar = sum(r.mars_class == "lobar" for r in regions) + int(css_foci)
    deep = sum(r.region in BOSTON_DEEP_REGIONS for r in regions)
    old_enough = age is None or age >= BOSTON_MIN_AGE
    if old_enough and lobar >= BOSTON_MIN_LOBAR and deep == 0:
        return "CAA"
    if age is not None and age < CADASIL_MAX_AGE:
        return "CADASIL"
    return "aSVD"


class BostonRule:
    """The Boston v2.0 rule as an estimator of the cohort harness: nothing to fit.

    Its probabilities are the one-hot call; AUCs of a hard rule are those of its single
    operating point (the harness's rank AUC handles ties), which is what a reader gets.
    """

    def fit(self, items: Sequence[PatientFindings], labels: np.ndarray) -> None:
        """Nothing is learned (the rule is fixed); kept for the estimator protocol."""

    def predict_proba(self, items: Sequence[PatientFindings]) -> np.ndarray:
        """(n, 3) one-hot calls in :data:`SUBTYPES` order."""
        out = np.zeros((len(items), len(SUBTYPES)))
        for i, item in enumerate(items):
            out[i, SUBTYPES.index(boston_v2(item.regions, item.age))] = 1.0
        return out


def count_features(item: PatientFindings) -> np.ndarray:
    """log1p counts per MARS class, per region and per class-and-side, and log1p of the total.

    Why log: counts are over-dispersed (CADASIL reaches hundreds), and a linear model on
    raw counts is driven by the tail.
    """
    counts = mars_counts(item.regions)
    values = [counts[c] for c in MARS_CLASSES]
    values += [counts["regions"].get(r, 0) for r in REGIONS]
    values += list(counts["sides"].values())
    values.append(len(item.regions))
    return np.log1p(np.asarray(values, dtype=float))


class MarsCountLogistic:
    """Multinomial logistic regression on :func:`count_features` (scaled, class-balanced).

    The scaler and the model are fitted inside ``fit`` only (the harness builds a new one
    per fold), so no label-using stage sees a held-out patient.
    """

    def __init__(self, c: float = 1.0, seed: int = 0) -> None:
        self.c = c
        self.seed = seed
        self.model: Any = None

    def fit(self, items: Sequence[PatientFindings], labels: np.ndarray) -> None:
        """Fit scaler and regression on these patients' count features."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = np.stack([count_features(item) for item in items])
        self.model = make_pipeline(StandardScaler(), LogisticRegression(
            C=self.c, class_weight="balanced", max_iter=2000, random_state=self.seed))
        self.model.fit(x, np.asarray(labels, dtype=int))

    def predict_proba(self, items: Sequence[PatientFindings]) -> np.ndarray:
        """(n, 3) probabilities, columns in :data:`SUBTYPES` order (classes absent in training get 0)."""
        x = np.stack([count_features(item) for item in items])
        raw = self.model.predict_proba(x)
        out = np.zeros((len(items), len(SUBTYPES)))
        out[:, self.model.classes_.astype(int)] = raw
        return out
