"""Which ICA component is which network: template matching and optimal assignment.

Score. For every component k and network n, the score is the absolute Pearson
correlation, over the brain mask (the voxels where any component map is non-zero, i.e.
the ICA's own mask), between the component map and the network's template
(:func:`napari_neuroreview.core.anatomy.atlas.template_maps`, made on the component grid, so no
map is resampled for scoring). The sign of the correlation is kept: a component that
matches with a negative correlation is used flipped (MELODIC does not fix signs; our
own ICA flips to positive skew, so its signs are normally +1). The raw map is used, not
a thresholded one: correlation already weighs the network's peaks most, and a threshold
adds a parameter whose best value differs between our z-scored maps and MELODIC's
mixture-model z-statistics.

Assignment. One component per network, each component for at most one network,
maximising the summed score (:func:`scipy.optimize.linear_sum_assignment`, the
Hungarian method): a strong component cannot be given to two networks, which greedy
best-match would do when networks overlap (language and temporal share the superior
temporal gyrus).

Confidence rule. A match is *confident* when its score is at least
:data:`MIN_SCORE` (0.2) and exceeds the network's second-best score (the best other
component) by at least :data:`MIN_MARGIN` (0.1). A network whose best component went to
another network gets a negative margin and is therefore never confident. The widget
shows unconfident matches for the radiologist to check; an override is stored with
``automatic=False``.

The assignment requires the component maps to be in MNI space (like the templates);
a map grid that does not overlap the templates is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...anatomy import atlas
from ...errors import GeometryError, InputFileError
from ...io.ica_folder import ICAComponents, check_components, component_label
from ...io.resample import resample_to_grid

#: Lowest score (|r|) a confident match may have.
MIN_SCORE: float = 0.2
#: Least margin of the assigned score over the network's second-best score for confidence.
MIN_MARGIN: float = 0.1


@dataclass(frozen=True)
class NetworkMatch:
    """The component chosen for one network.

    Attributes
    ----------
    network : str
        One of :data:`napari_neuroreview.core.anatomy.atlas.NETWORKS`.
    component : int
        0-based component index (the label a person reads is ``IC{component + 1:02d}``).
    score : float
        |spatial correlation| of that component with the network's template.
    second_score : float
        The best score among the network's other components.
    sign : int
        +1, or -1 when the component matches flipped (use ``sign * map``).
    automatic : bool
        False when a radiologist chose this component.
    confident : bool
        ``score >= MIN_SCORE and score - second_score >= MIN_MARGIN``.
    """

    network: str
    component: int
    score: float
    second_score: float
    sign: int
    automatic: bool = True
    confident: bool = False

    @property
    def label(self) -> str:
        """``IC03`` style, 1-based, as in the TSV header."""
        return component_label(self.component)

    def to_json(self) -> dict[str, Any]:
        """The networks.json entry of this network."""
        return {
            "component": self.component, "label": self.label, "score": float(self.score),
            "second_score": float(self.second_score), "sign": self.sign,
            "automatic": self.automatic, "confident": self.confident,
        }


@dataclass(frozen=True)
class Assignment:
    """One component per network, with the full score matrix it was chosen from.

    Attributes
    ----------
    matches : dict of str -> NetworkMatch
        Keyed by network, in :data:`~napari_neuroreview.core.anatomy.atlas.NETWORKS` order.
    scores : numpy.ndarray
        ``(5, K)`` |correlation| of every network template with every component.
    signs : numpy.ndarray
        ``(5, K)`` sign (+1/-1) of those correlations.
    """

    matches: dict[str, NetworkMatch]
    scores: np.ndarray
    signs: np.ndarray

    @property
    def n_components(self) -> int:
        """K."""
        return int(self.scores.shape[1])

    def match_for(self, network: str, component: int, automatic: bool) -> NetworkMatch:
        """The :class:`NetworkMatch` of ``network`` if it were given ``component``."""
        n = _network_index(network)
        if not 0 <= component < self.n_components:
            raise InputFileError(
                f"component {component} does not exist; there are {self.n_components} (0..{self.n_components - 1})"
            )
        row = self.scores[n]
        others = np.delete(row, component)
        second = float(others.max()) if others.size else 0.0
        score = float(row[component])
        return NetworkMatch(
            network=network, component=int(component), score=score, second_score=second,
            sign=int(self.signs[n, component]), automatic=automatic, confident=is_confident(score, second),
        )

    def override(self, network: str, component: int) -> Assignment:
        """A copy with ``network`` assigned to ``component`` by a person (``automatic=False``).

        The other networks keep their components, even if one of them has the same one:
        a radiologist may judge that ICA merged two networks into one component, and
        that judgement is stored as given (:meth:`shared_components` lists such cases).
        """
        matches = dict(self.matches)
        matches[network] = self.match_for(network, int(component), automatic=False)
        return replace(self, matches=matches)

    def reset(self, network: str, automatic: Assignment) -> Assignment:
        """A copy with ``network`` back on its automatic match (from :func:`match_networks`)."""
        _network_index(network)
        matches = dict(self.matches)
        matches[network] = automatic.matches[network]
        return replace(self, matches=matches)

    def shared_components(self) -> dict[int, list[str]]:
        """Components assigned to more than one network (only after overrides)."""
        users: dict[int, list[str]] = {}
        for name, match in self.matches.items():
            users.setdefault(match.component, []).append(name)
        return {k: v for k, v in users.items() if len(v) > 1}

    def to_json(self) -> dict[str, Any]:
        """The matching part of networks.json (JSON-able)."""
        return {
            "matching": {
                "score": "abs Pearson correlation with atlas.template_maps in the brain mask",
                "assignment": "scipy.optimize.linear_sum_assignment",
                "confident_if": f"score >= {MIN_SCORE} and score - second_score >= {MIN_MARGIN}",
            },
            "networks": {name: self.matches[name].to_json() for name in self.matches},
            "scores": {"networks": list(self.matches), "matrix": np.asarray(self.scores, dtype=float).tolist(),
                       "signs": self.signs.astype(int).tolist()},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Assignment:
        """Rebuild from :meth:`to_json` output (a whole networks.json is fine).

        Every field is checked, because the file may have been edited by hand or by
        another tool: all five networks, each on an existing component (an integer),
        sign +1 or -1, scores finite and within [0, 1], a score matrix of the right shape.

        Raises
        ------
        InputFileError
            Naming the field (not the file, which this does not know);
            :func:`~napari_neuroreview.core.tasks.networks.assignment_io.load_networks_json` prefixes the
            file. Any other exception is a bug and keeps its traceback.
        """
        names = _field(doc, "scores", "networks")
        if not isinstance(names, list) or sorted(map(str, names)) != sorted(atlas.NETWORKS):
            raise _bad(f"scores.networks is {str(names)[:80]}, not the five networks {list(atlas.NETWORKS)}")
        scores = _finite_array(_field(doc, "scores", "matrix"), "scores.matrix")
        signs = _finite_array(_field(doc, "scores", "signs"), "scores.signs")
        if scores.ndim != 2 or scores.shape != signs.shape or scores.shape[0] != len(names):
            raise _bad(f"score matrix {scores.shape} and signs {signs.shape} do not fit {len(names)} networks")
        if np.any((scores < 0) | (scores > 1 + 1e-9)):
            raise _bad("scores.matrix holds a value outside [0, 1] (scores are |correlations|)")
        if not np.all(np.isin(signs, (-1, 1))):
            raise _bad("scores.signs holds a value other than +1 or -1")
        matches = {}
        for name in atlas.NETWORKS:
            component = _integer(_field(doc, "networks", name, "component"), f"{name}.component")
            if not 0 <= component < scores.shape[1]:
                raise _bad(f"{name} points at component {component} of {scores.shape[1]}")
            sign = _integer(_field(doc, "networks", name, "sign"), f"{name}.sign")
            if sign not in (-1, 1):
                raise _bad(f"{name}.sign is {sign!r}; a sign is +1 or -1")
            score, second = (float(_finite_array(_field(doc, "networks", name, key), f"{name}.{key}"))
                             for key in ("score", "second_score"))
            if not (0 <= score <= 1 + 1e-9 and 0 <= second <= 1 + 1e-9):
                raise _bad(f"{name}: score {score} or second_score {second} is outside [0, 1]")
            flags = [_field(doc, "networks", name, key) for key in ("automatic", "confident")]
            if not all(isinstance(flag, bool) for flag in flags):
                raise _bad(f"{name}: automatic and confident must be true or false, not {flags}")
            matches[name] = NetworkMatch(network=name, component=component, score=score, second_score=second,
                                         sign=sign, automatic=flags[0], confident=flags[1])
        rows = [names.index(name) for name in atlas.NETWORKS]
        return cls(matches=matches, scores=scores[rows], signs=signs[rows].astype(np.int64))


def _bad(detail: str) -> InputFileError:
    """A field of a networks.json is wrong (the loader names the file)."""
    return InputFileError(detail)


def _field(doc: Any, *keys: str) -> Any:
    """``doc[k1][k2]...`` of a networks.json; InputFileError naming the first missing or misshapen level."""
    value = doc
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise _bad(f"no {'.'.join(keys[:depth + 1])}")
        value = value[key]
    return value


def _finite_array(value: Any, field: str) -> np.ndarray:
    """``value`` as a float array; InputFileError naming ``field`` unless every entry is a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise _bad(f"{field} is not a number or a table of numbers")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):  # ragged or non-numeric lists: the file, not the code
        raise _bad(f"{field} is not a number or a table of numbers") from None
    if not np.all(np.isfinite(array)):
        raise _bad(f"{field} holds a value that is not a finite number")
    return array


def _integer(value: Any, field: str) -> int:
    """``value`` if it is a JSON integer (not a bool, not 2.5); InputFileError naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{field} is {value!r}, not an integer")
    return value


def is_confident(score: float, second_score: float) -> bool:
    """The confidence rule (module docstring)."""
    return score >= MIN_SCORE and score - second_score >= MIN_MARGIN - 1e-12


def _network_index(network: str) -> int:
    try:
        return atlas.NETWORKS.index(network)
    except ValueError:
        raise InputFileError(f"{network!r} is not a network; choose one of {', '.join(atlas.NETWORKS)}") from None


def score_matrix(comps: ICAComponents) -> tuple[np.ndarray, np.ndarray]:
    """Signed spatial correlation of every template with every component: ``(5, K)``.

    Returns ``(abs_scores, signs)``. Computed inside ``comps.brain_mask`` on the
    component grid.
    """
    mask = check_components(comps).brain_mask
    templates = atlas.template_maps(comps.affine, comps.spatial_shape)[:, mask].astype(np.float64)  # (5, V)
    if np.any(templates.std(axis=1) == 0):
        raise GeometryError(
            f"{comps.source}: the component maps do not cover the network templates; they must be in MNI space"
        )
    maps = comps.maps[mask].astype(np.float64)  # (V, K)
    t = templates - templates.mean(axis=1, keepdims=True)
    m = maps - maps.mean(axis=0, keepdims=True)
    denom = np.linalg.norm(t, axis=1)[:, None] * np.linalg.norm(m, axis=0)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (t @ m) / np.where(denom > 0, denom, 1.0), 0.0)
    return np.abs(r), np.where(r < 0, -1, 1).astype(np.int64)


def match_networks(comps: ICAComponents) -> Assignment:
    """Assign one component to each of the five networks (module docstring for the rules).

    Raises
    ------
    InputFileError
        Fewer components than networks.
    GeometryError
        Maps that do not overlap the MNI templates.
    """
    n_net = len(atlas.NETWORKS)
    if comps.n_components < n_net:
        raise InputFileError(
            f"{comps.source}: has {comps.n_components} components, fewer than the {n_net} networks to match"
        )
    scores, signs = score_matrix(comps)
    rows, cols = linear_sum_assignment(-scores)
    base = Assignment(matches={}, scores=scores, signs=signs)
    matches = {atlas.NETWORKS[r]: base.match_for(atlas.NETWORKS[r], int(c), automatic=True) for r, c in zip(rows, cols)}
    return Assignment(matches={name: matches[name] for name in atlas.NETWORKS}, scores=scores, signs=signs)


def network_inputs(comps: ICAComponents, assignment: Assignment) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The per-network (map, time course) pair a model reads.

    Returns
    -------
    dict of str -> (map, timecourse)
        For each network of the assignment: the component map times its sign, divided by
        its standard deviation over the brain mask (so maps from MELODIC and from our ICA
        share a scale; ours already have unit SD), resampled onto
        :func:`~napari_neuroreview.core.anatomy.atlas.model_grid` as float32; and the time course
        ``(T,)`` times its sign, z-scored (float32).
    """
    if assignment.n_components != comps.n_components:
        raise GeometryError(
            f"{comps.source}: the network assignment is for {assignment.n_components} components "
            f"but the maps have {comps.n_components}"
        )
    grid_affine, grid_shape = atlas.model_grid()
    mask = comps.brain_mask
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, match in assignment.matches.items():
        k = match.component
        raw = comps.maps[..., k].astype(np.float32) * match.sign
        sd = float(raw[mask].std()) if mask.any() else 0.0
        scaled = raw / sd if sd > 0 else raw
        grid_map = resample_to_grid(scaled, comps.affine, grid_affine, grid_shape, antialias=True)
        tc = comps.timecourses[:, k].astype(np.float64) * match.sign
        tc_sd = tc.std()
        tc = (tc - tc.mean()) / tc_sd if tc_sd > 0 else tc - tc.mean()
        out[name] = (grid_map, tc.astype(np.float32))
    return out
