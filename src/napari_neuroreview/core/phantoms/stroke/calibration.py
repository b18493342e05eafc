"""What the cohort is calibrated to, measured: cross-validated logistic ROC-AUCs, prevalence, label noise.

Measured on the table and marker level (no image: :func:`~.burden.draw_population` draws 10^5
subjects in well under a second), as the issue's targets (:data:`~.literature.TARGET_AUC`)
state them: a logistic model on the table alone, on the true image markers alone
(:func:`~.burden.marker_matrix`), on both; against the written (noisy) label and the clean one.
scikit-learn does the modelling: median imputation with missing-value indicators, scaling,
logistic regression, stratified 5-fold cross-validated predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .burden import Population, marker_matrix

__all__ = ["TABLE_FEATURES", "measure_calibration", "table_matrix"]

#: The table's model features (``male`` for sex), missing cells NaN.
TABLE_FEATURES: tuple[str, ...] = ("age", "male", "sbp", "bp_treated", "diabetes", "smoking", "af", "cvd", "lvh",
                                   "bmi", "cholesterol")


def table_matrix(pop: Population) -> np.ndarray:
    """The clinical table as the model sees it: :data:`TABLE_FEATURES`, the empty cells NaN."""
    cols = []
    for name in TABLE_FEATURES:
        values = pop.clinical[name].astype(float).copy()
        if name in pop.missing:
            values[pop.missing[name]] = np.nan
        cols.append(values)
    return np.column_stack(cols)


def _cv_auc(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler(),
                          LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    p = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def measure_calibration(pop: Population, seed: int = 0) -> dict[str, Any]:
    """The calibration figures of ``pop``: ``prevalence`` (clean), ``written_prevalence``,
    ``label_ppv`` (the share of written strokes that are true), ``missed`` (the share of true
    strokes unwritten) and ``auc`` / ``auc_clean``: table, markers, both (5-fold CV logistic)."""
    table, markers = table_matrix(pop), marker_matrix(pop.markers)
    both = np.column_stack([table, markers])
    stroke, written = pop.stroke, pop.written
    out: dict[str, Any] = {
        "n": len(pop), "prevalence": float(stroke.mean()), "written_prevalence": float(written.mean()),
        "label_ppv": float(stroke[written == 1].mean()), "missed": float(1.0 - written[stroke == 1].mean())}
    for key, y in (("auc", written), ("auc_clean", stroke)):
        out[key] = {name: round(_cv_auc(x, y, seed), 4) for name, x in
                    (("table", table), ("markers", markers), ("both", both))}
    return out
