"""Classify one patient's small vessel disease subtype from the microbleeds on a scan.

Steps (issue 11 item 5): the SWI is registered to MNI152
(:func:`~...anatomy.registration.register_to_mni`); each microbleed's world position is
carried into MNI and given its MARS region (:func:`.bags.make_sites`); the bag is built
with the features the model was trained on (the detector's patch embedding only if the
model's card says so, with the same detector version); the model gives the three
probabilities and each microbleed's attention.

The microbleeds (:class:`Finding`: id, world RAS mm, volume) come from a det.json, a
review, or a detector run (:func:`classify_scan`). Their size is the diameter of the
sphere of their volume (:func:`.bags.equivalent_diameter_mm`), as the end-to-end
evaluation uses it. A patient without any microbleed is classified too: the empty bag
has its own learned embedding (``core.models.mil``).

The result's JSON (:meth:`SubtypeResult.to_json`) identifies the scan by the sha256 of its
voxel data, never by a path or a patient identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...anatomy.mars import MARS_CLASSES
from ...anatomy.registration import MniTransform
from ...io.nifti import Volume
from ...progress import Progress, TaskGenerator, within
from ..cmb.locations import mni_transform
from .bags import Bag, BagInstance, ScanChannels, build_bag, equivalent_diameter_mm, make_sites
from .baselines import SUBTYPES, mars_counts
from .model import LoadedSubtypeModel, load_subtype_model

__all__ = ["Finding", "SubtypeResult", "classify_findings", "classify_scan", "findings_from_detections"]

#: The diameter of a microbleed whose volume is unknown (a det.json entry without ``volume_mm3``,
#: a point added in review without a mask): the median true diameter of the subtype cohort's
#: drawn microbleeds (3.4 mm over 300 drawn patients; 10th-90th percentile 2.3-5.5 mm).
UNKNOWN_DIAMETER_MM = 3.4
#: Progress units of :func:`classify_findings`, and where each stage starts.
_TOTAL, _REGISTER, _BAG, _MODEL = 100, 5, 70, 90


@dataclass(frozen=True)
class Finding:
    """One microbleed to classify from: its id in the source, centre in world RAS mm, volume in mm3 (None: unknown)."""

    id: int
    world_ras_mm: tuple[float, float, float]
    volume_mm3: float | None = None

    @property
    def diameter_mm(self) -> float:
        """The diameter of the sphere of its volume, or :data:`UNKNOWN_DIAMETER_MM`."""
        if self.volume_mm3 is None:
            return UNKNOWN_DIAMETER_MM
        return float(equivalent_diameter_mm(self.volume_mm3))


def findings_from_detections(detections: Sequence[Any]) -> list[Finding]:
    """Findings from det.json entries (dicts) or ``cmb.detect.CMBDetection`` s.

    A det.json entry without ``volume_mm3`` (the field is optional in the file contract)
    gets :data:`UNKNOWN_DIAMETER_MM`.
    """
    out = []
    for d in detections:
        get = d.get if isinstance(d, dict) else lambda k, default=None, d=d: getattr(d, k, default)
        volume = get("volume_mm3")
        out.append(Finding(int(get("id")), tuple(float(v) for v in get("world_ras_mm")),
                           None if volume is None else float(volume)))
    return out


@dataclass
class SubtypeResult:
    """The subtype of one scan's patient, and what it rests on."""

    image_sha256: str
    model: dict[str, str]
    probabilities: dict[str, float]
    sites: list[BagInstance]
    attention: np.ndarray
    transform: MniTransform

    @property
    def prediction(self) -> str:
        """The most probable subtype."""
        return max(SUBTYPES, key=lambda c: self.probabilities[c])

    @property
    def mars_counts(self) -> dict[str, Any]:
        """``baselines.mars_counts`` of the microbleeds' regions."""
        return mars_counts([s.region for s in self.sites])

    def to_json(self) -> dict[str, Any]:
        """The document of ``neuroreview csvd classify`` (issue 11 item 5, plus side and the registration)."""
        counts = self.mars_counts
        return {
            "image_sha256": self.image_sha256,
            "model": dict(self.model),
            "probabilities": {c: float(self.probabilities[c]) for c in SUBTYPES},
            "prediction": self.prediction,
            "mars_counts": {c: int(counts[c]) for c in MARS_CLASSES},
            "regions": {r: int(n) for r, n in sorted(counts["regions"].items())},
            "cmbs": [{"id": s.id, "world_ras_mm": [round(v, 3) for v in s.world_ras_mm], "region": s.region.region,
                      "mars_class": s.region.mars_class, "side": s.region.side, "attention": float(a)}
                     for s, a in zip(self.sites, self.attention)],
            "registration": {"scales": [round(float(v), 4) for v in self.transform.scales],
                             "brain_dice": round(float(self.transform.brain_dice), 4)},
        }


def classify_findings(magnitude: Volume, phase: Volume | None, findings: Sequence[Finding],
                      model: LoadedSubtypeModel, device: str = "auto") -> TaskGenerator[SubtypeResult]:
    """The subtype of the patient of ``magnitude`` from ``findings`` (see the module docstring).

    Parameters
    ----------
    magnitude, phase : Volume
        The SWI (registered to MNI; the patch embedding's source) and its phase, if any.
    findings : sequence of Finding
        The microbleeds, possibly none.
    model : LoadedSubtypeModel
    device : str
        For the detector's encoder, when the model reads patch embeddings.

    Raises
    ------
    InputFileError
        The scan cannot be registered to MNI (one sentence, from ``register_to_mni``; done once per
        scan, shared with the review's location columns: ``cmb.locations.mni_transform``).
    """
    yield Progress(0, _TOTAL, "Registering the scan to MNI152")
    transform = yield from within(mni_transform(magnitude), _REGISTER, _BAG - _REGISTER, _TOTAL, "Registration")
    world = np.array([f.world_ras_mm for f in findings], float).reshape(-1, 3)
    sites = make_sites([f.id for f in findings], world, transform.to_mni(world),
                       [f.diameter_mm for f in findings])
    yield Progress(_BAG, _TOTAL, f"{len(sites)} microbleeds into a bag")
    if model.features.layout == "patch" and sites:
        from ..cmb.model import load_detector

        detector = load_detector(model.features.detector["version"], device=device)
        bag = build_bag("patient", sites, detector.net, ScanChannels.from_scan(magnitude, phase))
    elif model.features.layout == "patch":  # no microbleed: nothing to embed, no detector to load
        bag = Bag("patient", np.zeros((0, model.features.in_features), np.float32), (),
                  model.features.embedding_width)
    else:
        bag = build_bag("patient", sites)
    yield Progress(_MODEL, _TOTAL, "Subtype probabilities")
    proba = model.estimator.predict_proba([bag])[0]
    attention = model.estimator.attention([bag])[0]
    yield Progress(_TOTAL, _TOTAL, "Done")
    return SubtypeResult(magnitude.sha256, model.model, {c: float(p) for c, p in zip(SUBTYPES, proba)}, sites,
                         np.asarray(attention, float), transform)


def classify_scan(magnitude: Volume, phase: Volume | None, model: LoadedSubtypeModel, detector: Any = None,
                  device: str = "auto") -> TaskGenerator[SubtypeResult]:
    """Detect the microbleeds (``cmb.detect.run``, the default detector unless one is given), then classify."""
    from ..cmb.detect import run

    result = yield from within(run(magnitude, phase, detector, device=device), 0, 50, 100, "Microbleeds")
    findings = findings_from_detections(result.detections)
    return (yield from within(classify_findings(magnitude, phase, findings, model, device), 50, 50, 100, "Subtype"))


def classify_for_review(magnitude: Volume, phase: Volume | None, findings: Sequence[Finding] | None,
                        version: str | None, device: str = "auto", roots: list[Path] | None = None
                        ) -> TaskGenerator[SubtypeResult]:
    """Load a subtype model version, then classify ``findings`` (detect first when None), in one task.

    Why one task: loading the weights (and moving them to the device) takes time and must
    not block the GUI thread, so the panel's worker does it (as
    ``cmb.review_run.detect_for_review`` does for the detector).
    """
    yield Progress(0, 1, "Loading the subtype model")
    model = load_subtype_model(version, device=device, roots=roots)
    if findings is None:
        return (yield from classify_scan(magnitude, phase, model, device=device))
    return (yield from classify_findings(magnitude, phase, findings, model, device))
