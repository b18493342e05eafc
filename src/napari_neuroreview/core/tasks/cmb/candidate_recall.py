"""How many true microbleeds the candidate screen alone finds, and what its cap drops.

Why: the CNN only ever looks at the screen's candidates (:mod:`.candidates`), so a
microbleed the screen misses is lost whatever the network does (and so was one that a
fixed ``max_candidates`` cap cut off, until the detector stopped capping). The detector's sensitivity is bounded by this recall; measuring it
apart tells a screen failure from a network failure.

The screen is run exactly as the detector runs it (``find_candidates(magnitude.data,
magnitude.zooms, ...)``, as :func:`.channels.make_channels` calls it), once without a cap;
the capped list is its first ``max_candidates`` entries, because the screen sorts darkest
first with a stable sort before it cuts (the test checks the two agree). The truth only
scores the candidates afterwards, with the detector evaluation's own one-to-one matching
(:func:`core.metrics.match_detections`: the candidate's voxel inside the CMB's instance
mask, or centres at most ``max_distance_mm`` apart), so the recall here is an upper bound
of the sensitivity ``cmb evaluate`` can report at the same distance.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...io.nifti import Volume
from ...metrics import match_detections
from .candidates import find_candidates

#: Default match distance (mm): ``evaluate.evaluate_result``'s, so both count the same hits.
MAX_DISTANCE_MM = 5.0
#: The cap the detector had until issue 10 (``detect.run`` now scores every candidate):
#: reported beside the uncapped recall to show what a fixed cap drops.
DEFAULT_CAP = 300


@dataclass(frozen=True)
class CMBRecall:
    """One true microbleed's fate in the screen.

    Attributes
    ----------
    id : int
        The CMB's truth id.
    found : bool
        Matched by a candidate of the uncapped list.
    rank : int or None
        Rank (0 = darkest) in the uncapped list of the candidate it matched; None if not found.
    distance_mm : float or None
        Distance from that candidate to the CMB's centre.
    found_capped : bool
        Matched by a candidate among the first ``max_candidates`` (what the detector sees).
    dropped_by_cap : bool
        Found without the cap but not with it.
    """

    id: int
    found: bool
    rank: int | None
    distance_mm: float | None
    found_capped: bool
    dropped_by_cap: bool


@dataclass(frozen=True)
class CandidateRecall:
    """The screen's result on one scan, scored against its truth.

    Attributes
    ----------
    cmbs : list of CMBRecall
        One per true CMB, in the order given.
    candidate_voxels : numpy.ndarray
        (N, 3) every candidate without a cap, darkest first (file voxel order).
    max_candidates : int
        The cap the ``found_capped`` flags refer to.
    seconds : float
        Wall time of the screen (head mask, contrast, minima), uncapped.
    """

    cmbs: list[CMBRecall]
    candidate_voxels: np.ndarray
    max_candidates: int
    seconds: float

    @property
    def n_candidates(self) -> int:
        """Number of candidates without a cap."""
        return len(self.candidate_voxels)


def _matched(candidates_mm: np.ndarray, candidate_voxels: np.ndarray, truth_mm: np.ndarray,
             truth_instances: np.ndarray | None, truth_ids: np.ndarray, max_distance_mm: float) -> dict[int, tuple[int, float]]:
    """Truth row -> (candidate row, distance) of the one-to-one matching."""
    matching = match_detections(candidates_mm, truth_mm, truth_instances=truth_instances,
                                pred_voxels=candidate_voxels if truth_instances is not None else None,
                                max_distance_mm=max_distance_mm, truth_ids=truth_ids)
    return {t: (p, d) for (p, t), d in zip(matching.pairs, matching.distances)}


def candidate_recall(
    magnitude: Volume,
    truth_cmbs: Sequence[Mapping[str, Any]],
    truth_instances: np.ndarray | None = None,
    max_candidates: int = DEFAULT_CAP,
    max_distance_mm: float = MAX_DISTANCE_MM,
) -> CandidateRecall:
    """Run the detector's candidate screen on ``magnitude`` and score it against the truth.

    Parameters
    ----------
    magnitude : Volume
        The SWI magnitude the detector would be given.
    truth_cmbs : sequence of mapping
        True CMBs, each with ``id`` and ``world_ras_mm`` (a phantom's ``truth['cmbs']``).
    truth_instances : numpy.ndarray, optional
        Truth instance labels on the magnitude's grid (values = the ``id``s); when given, a
        candidate inside a CMB's mask matches it at any distance, as in ``cmb evaluate``.
    max_candidates : int
        The cap whose effect ``found_capped``/``dropped_by_cap`` report.
    max_distance_mm : float
        Largest centre distance of a match without the mask.

    Returns
    -------
    CandidateRecall
    """
    t0 = time.perf_counter()
    # No cap: slicing by sys.maxsize keeps every candidate, in the screen's own order.
    candidates, _, _ = find_candidates(magnitude.data, magnitude.zooms, sys.maxsize)
    seconds = time.perf_counter() - t0
    voxels = candidates.voxels
    affine = np.asarray(magnitude.affine, float)
    candidates_mm = voxels @ affine[:3, :3].T + affine[:3, 3]
    truth_mm = np.array([c["world_ras_mm"] for c in truth_cmbs], float).reshape(-1, 3)
    truth_ids = np.array([int(c["id"]) for c in truth_cmbs], np.int64)
    cap = int(max_candidates)
    uncapped = _matched(candidates_mm, voxels, truth_mm, truth_instances, truth_ids, max_distance_mm)
    capped = _matched(candidates_mm[:cap], voxels[:cap], truth_mm, truth_instances, truth_ids, max_distance_mm)
    cmbs = []
    for row, cmb_id in enumerate(truth_ids):
        hit = uncapped.get(row)
        cmbs.append(CMBRecall(
            id=int(cmb_id), found=hit is not None, rank=None if hit is None else int(hit[0]),
            distance_mm=None if hit is None else round(float(hit[1]), 3),
            found_capped=row in capped, dropped_by_cap=hit is not None and row not in capped,
        ))
    return CandidateRecall(cmbs=cmbs, candidate_voxels=voxels, max_candidates=cap, seconds=seconds)
