"""What an origin network must beat: a radiomics-style logistic regression and the ADC-ratio rule.

Why these two (issue 12 item 5): radiomics with a linear model is what the peers report
(AUC 0.73-0.95 for pairwise origins, SCLC vs NSCLC ~0.76-0.80; ../shared/REFERENCES.md),
and the lower ADC ratio of small-cell metastases (0.68 +- 0.12 vs 1.47 +- 0.31 in one
series, no difference in another) is the one-number rule a radiologist would try first.
A network that does not beat them in the same folds adds nothing.

Both read :class:`~.crops.LesionCrop` s, whose channels are already normalised by their
scan's foreground median (``crops.NORMALISATION``), so an intensity statistic reads "times
the scan's typical tissue" and the ADC channel is roughly the ADC ratio. Labels handed to
``fit`` are class indices of :data:`~.classes.ORIGINS` (a cohort's codes), or of
(NSCLC, SCLC) for the binary rule.

The oedema shell is a ring of :data:`SHELL_MM` around the lesion mask, not the crop's
oedema label: at classification time the user gives only the lesion (``metastasis
classify --lesion``), so the features must be computable from the lesion mask alone.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...metrics.classification import youden_threshold
from .classes import NODES, ORIGINS, SEQUENCES, four_class, node_targets
from .crops import LesionCrop

__all__ = ["INTENSITY_STATS", "SHELL_MM", "ADCRatioRule", "RadiomicsLogistic", "adc_ratio", "feature_names",
           "radiomics_features", "shape_features"]

#: Per sequence and region: mean, SD and the 10th, 50th and 90th percentiles.
INTENSITY_STATS: tuple[str, ...] = ("mean", "sd", "p10", "p50", "p90")
#: Width of the peritumoural shell (the oedema a few mm around the lesion, where the
#: oedema/mass ratio differs by origin).
SHELL_MM = 5.0
#: Features per crop, computed once (a nested CV fits many models on the same crops).
_CACHE: weakref.WeakKeyDictionary[LesionCrop, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()


def _ball(radius_vox: float) -> np.ndarray:
    r = int(np.ceil(radius_vox))
    grid = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (grid ** 2).sum(axis=0) <= radius_vox ** 2 + 1e-9


def _stats(values: np.ndarray) -> np.ndarray:
    if values.size == 0:  # a lesion filling the cube has no shell: neutral zeros, not NaN
        return np.zeros(len(INTENSITY_STATS))
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return np.array([values.mean(), values.std(), p10, p50, p90])


def shape_features(crop: LesionCrop) -> np.ndarray:
    """log volume (mm^3) and sphericity (pi^(1/3) (6V)^(2/3) / A: 1 for a ball, lower for irregular).

    The surface ``A`` counts exposed voxel faces, which overstates a smooth surface by
    about 1.5x, so a voxelised ball reads ~0.67; the ordering, not the value, is the feature.
    """
    m = np.asarray(crop.mask, bool)
    voxel = crop.spec.spacing_mm
    padded = np.pad(m, 1)
    faces = sum(int(np.count_nonzero(np.diff(padded.astype(np.int8), axis=a))) for a in range(3))
    volume = float(m.sum()) * voxel ** 3
    area = faces * voxel ** 2
    sphericity = np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area if area > 0 else 0.0
    return np.array([np.log1p(volume), sphericity])


def _per_sequence(crop: LesionCrop) -> dict[str, np.ndarray]:
    cached = _CACHE.get(crop)
    if cached is not None:
        return cached
    from scipy.ndimage import binary_dilation

    mask = np.asarray(crop.mask, bool)
    shell = binary_dilation(mask, _ball(SHELL_MM / crop.spec.spacing_mm)) & ~mask
    out = {s: np.concatenate([_stats(crop.image[c][mask]), _stats(crop.image[c][shell])])
           for c, s in enumerate(crop.sequences)}
    out["shape"] = shape_features(crop)
    _CACHE[crop] = out
    return out


def feature_names(sequences: Sequence[str]) -> list[str]:
    """Column names of :func:`radiomics_features` (sequence, region, statistic; then shape)."""
    return [f"{s}_{region}_{stat}" for s in sequences for region in ("lesion", "shell") for stat in INTENSITY_STATS] \
        + ["log_volume_mm3", "sphericity"]


def radiomics_features(crop: LesionCrop, sequences: Sequence[str]) -> np.ndarray:
    """Intensity statistics in the lesion and its shell for each of ``sequences``, then shape."""
    per = _per_sequence(crop)
    missing = [s for s in sequences if s not in per]
    if missing:  # the caller's wiring: the crops are cut with every sequence a model may read
        raise ValueError(f"crop of lesion {crop.lesion_id} holds {crop.sequences}, not {missing}")
    return np.concatenate([*(per[s] for s in sequences), per["shape"]])


def _logistic(c: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=2000,
                                                              random_state=seed))


class RadiomicsLogistic:
    """Standardised logistic regression on :func:`radiomics_features`, per node or four-class.

    Parameters
    ----------
    sequences : tuple of str
        The sequences whose statistics enter (a sequence-ablation row reads only its own).
    hierarchy : bool
        True: one binary regression per node (:data:`~.classes.NODES`), each fitted on the
        lesions the node applies to, the four origins by the chain rule, as the network;
        False: one multinomial regression over the four origins.
    output : str
        ``"four_class"`` (n, 4) in ORIGINS order, or ``"nodes"`` (n, 3; hierarchy only).
    c : float
        Inverse L2 strength (features outnumber the lesions of a small fold).

    Scaler and regressions are fitted in ``fit`` only (the harness builds one per fold).
    """

    def __init__(self, sequences: Sequence[str] = tuple(s for s in SEQUENCES if s != "adc"), hierarchy: bool = True,
                 output: str = "four_class", c: float = 0.1, seed: int = 0) -> None:
        if output not in ("four_class", "nodes") or not sequences or (output == "nodes" and not hierarchy):
            # set by code
            raise ValueError(f"invalid radiomics baseline: output {output!r}, sequences {sequences!r}")
        self.sequences, self.hierarchy, self.output, self.c, self.seed = tuple(sequences), hierarchy, output, c, seed
        self.models: list[Any] = []

    def _x(self, crops: Sequence[LesionCrop]) -> np.ndarray:
        return np.stack([radiomics_features(c, self.sequences) for c in crops])

    def fit(self, crops: Sequence[LesionCrop], labels: np.ndarray) -> None:
        """Fit on these lesions; ``labels`` are ORIGINS indices."""
        x, y = self._x(crops), np.asarray(labels, int)
        if not self.hierarchy:
            self.models = [_logistic(self.c, self.seed).fit(x, y)]
            return
        targets, applies = node_targets([ORIGINS[i] for i in y])
        self.models = []
        for k in range(len(NODES)):
            t = targets[applies[:, k], k]
            if np.unique(t).size < 2:  # the node's lesions are of one branch: its training prevalence
                self.models.append(float(t.mean()) if t.size else 0.5)
            else:
                self.models.append(_logistic(self.c, self.seed).fit(x[applies[:, k]], t.astype(int)))
        return

    def predict_nodes(self, crops: Sequence[LesionCrop]) -> np.ndarray:
        """(n, 3) node probabilities (hierarchy only)."""
        if not self.models or not self.hierarchy:
            raise RuntimeError("RadiomicsLogistic.predict_nodes needs a fitted hierarchical model")
        x = self._x(crops)
        return np.stack([np.full(len(x), m) if isinstance(m, float) else m.predict_proba(x)[:, 1]
                         for m in self.models], axis=1)

    def predict_proba(self, crops: Sequence[LesionCrop]) -> np.ndarray:
        """(n, 4) origin probabilities (classes absent from training get 0), or (n, 3) nodes."""
        if not self.models:
            raise RuntimeError("RadiomicsLogistic.predict before fit")
        if self.hierarchy:
            nodes = self.predict_nodes(crops)
            return nodes if self.output == "nodes" else four_class(nodes)
        model = self.models[0]
        out = np.zeros((len(crops), len(ORIGINS)))
        out[:, model.classes_.astype(int)] = model.predict_proba(self._x(crops))
        return out


def adc_ratio(crop: LesionCrop) -> float:
    """Median ADC of the lesion's solid part, as a ratio to the scan's typical tissue.

    The solid part: the lesion voxels at or above the lesion's median contrast-T1 signal
    (the enhancing rim or nodule, not the necrotic core, whose ADC is high in every
    origin); the whole lesion when the crop has no contrast T1. The ADC channel is divided
    by its scan's foreground median (``crops``), which makes it the ratio.
    """
    if "adc" not in crop.sequences:  # the caller's wiring: the rule is run only on crops with ADC
        raise ValueError(f"crop of lesion {crop.lesion_id} has no ADC channel ({crop.sequences})")
    mask = np.asarray(crop.mask, bool)
    if not mask.any():
        raise ValueError(f"crop of lesion {crop.lesion_id} has an empty mask")
    adc = crop.image[crop.sequences.index("adc")][mask]
    if "ce_t1" in crop.sequences:
        ce = crop.image[crop.sequences.index("ce_t1")][mask]
        adc = adc[ce >= np.median(ce)]
    return float(np.median(adc))


class ADCRatioRule:
    """SCLC vs NSCLC from the solid part's ADC ratio alone (:func:`adc_ratio`).

    ``fit`` (lung lesions, labels 1 = SCLC, 0 = NSCLC) picks the direction (lower ratio
    means SCLC when the training SCLC lesions' median is lower, as published; the other
    way if this cohort says so) and the threshold maximising Youden's J on the training
    lesions only. ``predict_proba`` gives P(SCLC) = sigmoid((sign x ratio - threshold) /
    spread), sign -1 when lower means SCLC: monotone in the ratio (so its AUC is the
    ratio's) and 0.5 at the threshold (so a call at 0.5 is the rule's call); ``spread`` is
    the training ratios' SD.
    """

    def __init__(self) -> None:
        self.sign: float | None = None
        self.threshold: float | None = None
        self.spread = 1.0

    def fit(self, crops: Sequence[LesionCrop], labels: np.ndarray) -> None:
        """Fit direction and threshold on these (training) lesions."""
        r, y = np.array([adc_ratio(c) for c in crops]), np.asarray(labels, int)
        if not 0 < y.sum() < y.size:  # the harness stratifies by origin: both classes train
            raise ValueError("ADCRatioRule.fit needs SCLC and NSCLC lesions")
        self.sign = -1.0 if np.median(r[y == 1]) <= np.median(r[y == 0]) else 1.0
        self.threshold = youden_threshold(y, self.sign * r)  # score >= threshold means SCLC
        self.spread = float(r.std()) or 1.0

    def predict_proba(self, crops: Sequence[LesionCrop]) -> np.ndarray:
        """(n,) P(SCLC) of lung lesions."""
        if self.sign is None or self.threshold is None:
            raise RuntimeError("ADCRatioRule.predict before fit")
        score = self.sign * np.array([adc_ratio(c) for c in crops], float)
        return 1.0 / (1.0 + np.exp(-(score - self.threshold) / self.spread))
