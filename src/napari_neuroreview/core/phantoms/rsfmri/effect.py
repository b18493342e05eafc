"""The simulated surgery effect: how the pre- and post-operative networks of a person differ.

The study this imitates (hypothalamic hamartoma surgery, scans before and six months
after) reports that a model can tell pre- from post-operative scans per network from the
network's ICA map and time course, without saying which voxels change. The phantom needs
*an* effect with the properties that make that task meaningful, and documents it rather
than claiming it is the biology:

1. **Consistent across patients** (a learnable direction), scaled by ``effect_size`` and by
   each patient's responsiveness (uniform 0.5-1.5, :mod:`.networks`): not everyone
   reorganises equally.
2. **Small relative to individual variation.** Node loadings vary between people by a
   log-normal factor of sd 0.3, node positions by ~3 mm, network amplitudes over
   1.5-2.5 %, the slow-activity share over 0.3-0.7.
3. **Invisible to summaries that ignore where the change is.** Within each target network
   the nodes are paired with their nearest neighbour (:func:`effect_pattern`); surgery
   moves loading from one node of each pair to the other, the same way in every patient.
   The two states sit symmetrically about the person's own loadings (pre-operatively
   ``1 - NODE_CHANGE * g * e / 2``, post-operatively ``1 + NODE_CHANGE * g * e / 2`` times
   the node's sign; ``e = effect_size x responsiveness``, ``g`` = :data:`NODE_CHANGE_GAIN`),
   so the *distribution* of node loadings, hence a map's peak, extent, total loading and
   histogram, is the same in both states, and its centroid and lateralisation hardly
   move: only a reader that knows which node is which can tell the states apart. At the
   default ``effect_size = 1`` and responsiveness 1, a changed node's post/pre loading
   ratio is ``(1 + 0.2) / (1 - 0.2) = 1.5`` (language ``1.3 / 0.7``), comparable to how
   much one node's loading varies between people (log-normal sd 0.3, a factor of 1.35),
   and blurred further by node-position jitter and the noise of an ICA estimate.
4. **A moderate time-course change** a single conventional feature sees only weakly:
   the share of slow (block-like, < 0.02 Hz) activity in the network's BOLD variance
   (:mod:`.signals`) is ``base -/+ SLOW_SHIFT * e / 2`` (pre/post) in the direction
   :data:`SLOW_DIRECTION` (motor, language, temporal slower after surgery; vision and
   frontal faster). Low-frequency power fractions (fALFF-like) or the lag-1
   autocorrelation then differ with an AUC of about 0.6-0.7 over a 56-patient cohort.

Measured with ``effect_size = 1`` on 56 simulated patients (true maps on the model grid
plus noise of an ICA estimate): the best single summary feature per network (peak,
extent, total, lateralisation, centroid, fALFF, slow/fast power, lag-1 autocorrelation)
reaches a cross-patient AUC of 0.61-0.71, a logistic regression on all of them 0.48-0.68,
and a regularised linear model on the whole map (6 mm model grid) and the log spectrum
0.85-0.95 (language 0.85; grouped 5-fold cross-validation). Estimated maps and time
courses from ICA are noisier than these, so a model trained on them scores lower;
raise ``effect_size`` for an easier task. Nuisance networks do not change. ``effect_size = 0`` makes the two
states' network parameters identical (only the scan's activity realisation, physiology,
motion and noise differ, as between two sessions).
"""

from __future__ import annotations

import numpy as np

from napari_neuroreview.core.anatomy import atlas

from .networks import PatientNetworks

#: Post minus pre relative loading of a changed node at effect_size x responsiveness = 1.
NODE_CHANGE: float = 0.4
#: Post minus pre slow-activity share at effect_size x responsiveness = 1.
SLOW_SHIFT: float = 0.15
#: Sign of the slow-share change per network (+1: activity gets slower).
SLOW_DIRECTION: dict[str, int] = {"motor": 1, "vision": -1, "language": 1, "frontal": -1, "temporal": 1}
#: Per-network multiplier of NODE_CHANGE: the language network has only ten nodes (five
#: pairs), so each changes more to make its effect about as detectable as the others'.
NODE_CHANGE_GAIN: dict[str, float] = {"motor": 1.0, "vision": 1.0, "language": 1.5, "frontal": 1.0, "temporal": 1.0}


def effect_pattern(name: str) -> np.ndarray:
    """The effect's sign per node of a target network (-1, 0, +1), in atlas ROI order.

    +1: the node's loading is higher after surgery than before; -1: lower; 0: unchanged.

    Nodes are paired greedily with their nearest unpaired neighbour (closest pairs
    first, on the atlas, not jittered, positions); in each pair one node gets weaker and
    the other stronger, an odd node out is unchanged. Which node of a pair gets stronger
    is chosen pair by pair (in the same order) to keep the running sum of
    ``sign x weight x position`` as small as possible, so the network's total loading,
    centroid and lateralisation hardly move. The pattern depends only on the atlas, so it
    is the same for every patient.
    """
    if name not in SLOW_DIRECTION:
        raise ValueError(f"no surgery effect is defined for network {name!r}")
    rois = atlas.network_rois(name)
    c, w = rois.coords_mm, rois.weights
    n = len(c)
    d = np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    d[np.diag_indices(n)] = np.inf
    s = np.zeros(n, dtype=int)
    free = np.ones(n, dtype=bool)
    moment = np.zeros(4)  # sum of sign * weight * (1, x, y, z)
    for flat in np.argsort(d, axis=None, kind="stable"):
        i, j = divmod(int(flat), n)
        if not (i < j and free[i] and free[j]):
            continue
        step = w[i] * np.r_[1.0, c[i]] - w[j] * np.r_[1.0, c[j]]  # i stronger, j weaker
        sign = 1 if np.linalg.norm(moment + step) <= np.linalg.norm(moment - step) else -1
        s[i], s[j] = sign, -sign
        moment += sign * step
        free[i] = free[j] = False
        if free.sum() < 2:
            break
    return s


def apply_effect(patient: PatientNetworks, state: str, effect_size: float) -> PatientNetworks:
    """The person's networks in ``state`` ("pre" or "post"), see the module docstring.

    The two states sit symmetrically about the person's own (state-free) parameters:
    a node's loading is ``base * (1 + h * NODE_CHANGE * e * s)`` and the slow share
    ``base + h * SLOW_SHIFT * e * direction`` with ``h = -1/2`` before and ``+1/2``
    after surgery, ``e = effect_size * responsiveness``.
    """
    if not np.isfinite(effect_size) or effect_size < 0:
        raise ValueError(f"effect_size must be a finite number >= 0, got {effect_size!r}")
    if state not in ("pre", "post"):
        raise ValueError(f"state must be 'pre' or 'post', got {state!r}")
    h = -0.5 if state == "pre" else 0.5
    e = float(effect_size) * patient.responsiveness
    nets = []
    for net in patient.networks:
        if net.name not in SLOW_DIRECTION or effect_size == 0:
            nets.append(net)
            continue
        factor = 1.0 + h * NODE_CHANGE * NODE_CHANGE_GAIN[net.name] * e * net.effect_pattern
        weights = net.base_weights * np.clip(factor, 0.05, None)  # a loading stays positive
        slow = float(np.clip(net.base_slow_share + h * SLOW_SHIFT * e * SLOW_DIRECTION[net.name], 0.05, 0.95))
        nets.append(net.with_state(weights, slow))
    return PatientNetworks(tuple(nets), patient.global_shift_mm, patient.responsiveness)


__all__ = ["NODE_CHANGE", "NODE_CHANGE_GAIN", "SLOW_DIRECTION", "SLOW_SHIFT", "apply_effect", "effect_pattern"]
