"""One person's resting-state networks: where their nodes are and how strongly each loads.

A group template (:mod:`napari_neuroreview.core.anatomy.atlas`) is an average over people; any one
person's network differs from it. :func:`draw_patient_networks` draws that individual
variation from the patient's seed, the same draw for the pre- and the post-operative scan
(the same person): every node (ROI) is displaced by a few millimetres (a shared shift,
as left after imperfect normalisation, plus its own jitter: functional areas vary in
position by about their size between people), its loading is scaled by a log-normal
factor, and each network gets its own signal amplitude and its own share of slow
(block-like) against fast (event-like) activity. Language lateralisation varies most
between people, so the right-hemisphere language nodes share one extra factor.

Besides the five target networks, three non-target ("nuisance") networks are simulated:
default mode, dorsal attention and cingulo-opercular (Seitzman 2018 labels), so that ICA
meets the competition it meets in real data. Nodes a target network already uses are not
used again by a nuisance network.

:func:`individual_map` turns a network's nodes into a map on a grid: weighted ROI balls
blurred by :data:`MAP_SMOOTHING_MM` (:func:`napari_neuroreview.core.anatomy.atlas.roi_map`), times
the soft grey-matter mask the templates use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from napari_neuroreview.core.anatomy import atlas

#: Non-target networks simulated beside the five (Seitzman 2018 labels, cortical ROIs).
NUISANCE_NETWORKS: tuple[str, ...] = ("DefaultMode", "DorsalAttention", "CinguloOpercular")

#: Sd (mm, per axis) of the patient's shift shared by all nodes.
GLOBAL_SHIFT_SD_MM: float = 2.0
#: Sd (mm, per axis) of each node's own displacement.
NODE_JITTER_SD_MM: float = 2.5
#: Sd of the log of each node's loading factor.
NODE_WEIGHT_LOG_SD: float = 0.3
#: Sd of the log of the factor shared by the right-hemisphere language nodes.
LANGUAGE_RIGHT_LOG_SD: float = 0.3
#: Network signal amplitude (% of baseline at the map's peak): the range drawn from.
AMPLITUDE_PCT_RANGE: tuple[float, float] = (1.5, 2.5)
#: Share of slow, block-like activity in a network's activity: the range drawn from.
SLOW_SHARE_RANGE: tuple[float, float] = (0.3, 0.7)
#: Range of the patient's responsiveness, which scales the surgery effect (see effect.py).
RESPONSIVENESS_RANGE: tuple[float, float] = (0.5, 1.5)
#: FWHM (mm) of the blur that turns a network's nodes into its individual map.
MAP_SMOOTHING_MM: float = 6.0
#: Radius (mm) of a node in a person: the table's 10 mm spheres mark the centres of
#: functional areas about 15 mm across.
NODE_RADIUS_MM: float = 7.0


@dataclass(frozen=True)
class NetworkState:
    """One network of one person in one state.

    Attributes
    ----------
    name : str
        A name in :data:`atlas.NETWORKS` or :data:`NUISANCE_NETWORKS`.
    coords_mm : np.ndarray
        (n, 3) node centres, world RAS mm (the atlas ROIs, displaced).
    base_weights : np.ndarray
        (n,) the person's loadings before any surgery effect.
    weights : np.ndarray
        (n,) the loadings in this state (:mod:`.effect`).
    radius_mm : float
        Node ball radius.
    amplitude_pct : float
        Signal change (% of baseline) where the pre-operative map peaks, per unit of the
        z-scored time course.
    base_slow_share : float
        The person's share of slow, block-like activity (see :mod:`.signals`) before
        any surgery effect.
    slow_share : float
        The share in this state.
    effect_pattern : np.ndarray
        (n,) the surgery effect's sign per node (-1 weaker, +1 stronger, 0 unchanged);
        zeros for nuisance networks.
    """

    name: str
    coords_mm: np.ndarray
    base_weights: np.ndarray
    weights: np.ndarray
    radius_mm: float
    amplitude_pct: float
    base_slow_share: float
    slow_share: float
    effect_pattern: np.ndarray

    def to_json(self) -> dict[str, Any]:
        """JSON-able description (numbers rounded to what matters)."""
        return {
            "coords_mm": np.round(self.coords_mm, 3).tolist(),
            "base_weights": np.round(self.base_weights, 5).tolist(),
            "weights": np.round(self.weights, 5).tolist(),
            "radius_mm": float(self.radius_mm),
            "amplitude_pct": round(float(self.amplitude_pct), 5),
            "base_slow_share": round(float(self.base_slow_share), 5),
            "slow_share": round(float(self.slow_share), 5),
            "effect_pattern": [int(s) for s in self.effect_pattern],
        }

    def with_state(self, weights: np.ndarray, slow_share: float) -> "NetworkState":
        """The same network with other loadings and slow share (a state, :mod:`.effect`)."""
        return replace(self, weights=np.asarray(weights, dtype=np.float64), slow_share=float(slow_share))


@dataclass(frozen=True)
class PatientNetworks:
    """All networks of one person (targets in :data:`atlas.NETWORKS` order, then nuisance)."""

    networks: tuple[NetworkState, ...]
    global_shift_mm: np.ndarray
    responsiveness: float

    def __getitem__(self, name: str) -> NetworkState:
        for net in self.networks:
            if net.name == name:
                return net
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.networks)


def _nuisance_rois(label: str, used: np.ndarray) -> atlas.NetworkROIs:
    rois = atlas.seitzman_rois(label)
    # Drop nodes within 6 mm of a node a target network uses (the language MTG node is a
    # DefaultMode ROI in the table).
    d = np.sqrt(((rois.coords_mm[:, None, :] - used[None, :, :]) ** 2).sum(-1)).min(axis=1)
    keep = d > 6.0
    return atlas.NetworkROIs(label, rois.coords_mm[keep], rois.weights[keep], rois.radius_mm, rois.source)


def draw_patient_networks(rng: np.random.Generator) -> PatientNetworks:
    """Draw one person's individual variation of every network (see the module docstring).

    Draws, in this fixed order: the shared shift (3 normals), the responsiveness
    (1 uniform), then per network in :data:`atlas.NETWORKS` + :data:`NUISANCE_NETWORKS`
    order: node jitter (n x 3 normals), node loading factors (n normals), amplitude and
    slow share (2 uniforms), and for language the right-hemisphere factor (1 normal).
    Effect patterns are not random (:mod:`.effect`); they are filled in there.
    """
    from .effect import effect_pattern  # local: effect imports this module

    shift = rng.normal(0.0, GLOBAL_SHIFT_SD_MM, size=3)
    responsiveness = float(rng.uniform(*RESPONSIVENESS_RANGE))
    targets = [atlas.network_rois(n) for n in atlas.NETWORKS]
    used = np.concatenate([r.coords_mm for r in targets])
    all_rois = targets + [_nuisance_rois(label, used) for label in NUISANCE_NETWORKS]
    nets = []
    for rois in all_rois:
        n = len(rois.weights)
        coords = rois.coords_mm + shift + rng.normal(0.0, NODE_JITTER_SD_MM, size=(n, 3))
        weights = rois.weights * np.exp(rng.normal(0.0, NODE_WEIGHT_LOG_SD, size=n))
        amplitude = float(rng.uniform(*AMPLITUDE_PCT_RANGE))
        slow = float(rng.uniform(*SLOW_SHARE_RANGE))
        if rois.name == "language":
            right = rois.coords_mm[:, 0] > 0
            weights = np.where(right, weights * np.exp(rng.normal(0.0, LANGUAGE_RIGHT_LOG_SD)), weights)
        pattern = effect_pattern(rois.name) if rois.name in atlas.NETWORKS else np.zeros(n, int)
        nets.append(
            NetworkState(
                name=rois.name,
                coords_mm=coords,
                base_weights=weights,
                weights=weights,
                radius_mm=NODE_RADIUS_MM,
                amplitude_pct=amplitude,
                base_slow_share=slow,
                slow_share=slow,
                effect_pattern=pattern,
            )
        )
    return PatientNetworks(networks=tuple(nets), global_shift_mm=shift, responsiveness=responsiveness)


def individual_map(
    net: NetworkState, affine: np.ndarray, shape: tuple[int, int, int], weights: np.ndarray | None = None
) -> np.ndarray:
    """A network's map on a grid, in units of the peak of the person's state-free map.

    The map of ``weights`` (default: the state's) is divided by the peak of the map of
    ``base_weights``, so both states of a person share one scale.
    """
    gm = np.clip(atlas.grey_matter_probability(affine, shape) / 0.5, 0.0, 1.0)

    def raw(w: np.ndarray) -> np.ndarray:
        return atlas.roi_map(net.coords_mm, w, net.radius_mm, affine, shape, MAP_SMOOTHING_MM) * gm

    base = raw(net.base_weights)
    peak = float(base.max())
    if peak <= 0:
        return np.zeros(shape, np.float32)
    w = net.weights if weights is None else weights
    m = base if np.array_equal(w, net.base_weights) else raw(w)
    return (m / peak).astype(np.float32)
