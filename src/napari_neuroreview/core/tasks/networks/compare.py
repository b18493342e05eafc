"""One patient's pre- and post-operative networks, side by side: what the Networks widget shows.

:func:`compare` is a task generator (see :mod:`core.progress`) that loads the two
sessions (an ICA folder, a FSL MELODIC folder, a session folder, or a 4D BOLD on which
ICA and matching are run in memory), checks that they can be compared, asks the pre/post
model for P(post) of every network of both scans, and places the patient's ten
embeddings on a t-SNE beside the model's reference embeddings. The CLI
(``neuroreview networks compare``) writes the probabilities as JSON; the widget turns the
same result into layers and plots. Nothing here imports Qt or napari.

The two scans must agree in length and TR (checked by ``model.compare_pre_post``): the
time courses are compared as curves and the model reads spectral features; a different
TR or number of volumes means another protocol, and a comparison across protocols would
show the protocol, not the surgery.
Different *grids* are fine for the model (every map goes onto the model grid) and are
resampled for display with a visible message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...anatomy import atlas
from ...errors import InputFileError
from ...io.atomic import write_text_atomic
from ...io.ica_folder import component_label
from ...io.resample import resample_to_grid, same_grid
from ...progress import Progress, TaskGenerator, relay
from .cohort import Session, load_session
from .features import ScanInputs
from .matching import network_inputs


@dataclass
class Comparison:
    """What :func:`compare` found for one patient.

    Attributes
    ----------
    pre, post : Session
    probabilities : dict
        ``{"pre": {network: P(post)}, "post": {...}}`` from the model.
    model : dict
        ``{"name", "version"}`` of the model that gave them.
    messages : list of str
        Sentences to show (resampling, unconfident matches).
    post_maps_on_pre_grid : bool
        True when the post maps were resampled onto the pre grid for display.
    tsne : dict or None
        ``{"reference": (N, 2), "reference_network": (N,) network names, "reference_state":
        (N,) 'pre'/'post', "patient": {"pre": (5, 2), "post": (5, 2)}, "networks": [...]}``, or None when the
        model ships no reference embeddings.
    predictor : object
        The loaded pre/post model, kept so that an override can be re-predicted without
        loading the weights again (not part of the JSON).
    """

    pre: Session
    post: Session
    probabilities: dict[str, dict[str, float]]
    model: dict[str, str]
    messages: list[str] = field(default_factory=list)
    post_maps_on_pre_grid: bool = False
    tsne: dict[str, Any] | None = None
    predictor: Any = None

    def display_map(self, state: str, network: str) -> tuple[np.ndarray, np.ndarray]:
        """``(map, affine)`` of a network for display, in units of its SD over the brain.

        Why SD units: our ICA gives % signal change, MELODIC gives z; one threshold
        (say 2) then means the same thing for pre and post whatever made them. Post maps
        lie on the pre grid when the grids differ (:attr:`post_maps_on_pre_grid`).
        """
        session = self.pre if state == "pre" else self.post
        data = session.network_map(network)
        inside = session.comps.brain_mask
        sd = float(data[inside].std()) if inside.any() else 0.0
        data = data / np.float32(sd) if sd > 0 else data
        if state == "pre" or not self.post_maps_on_pre_grid:
            return data, session.comps.affine
        data = resample_to_grid(data, self.post.comps.affine, self.pre.comps.affine, self.pre.comps.spatial_shape,
                                antialias=True)
        return data, self.pre.comps.affine

    def to_json(self) -> dict[str, Any]:
        """The ``res.json`` of ``neuroreview networks compare``.

        The scans are named by file or folder name and their BOLD's voxel sha256 only
        (empty when unknown): a full path often holds a patient's name or the user's
        login, and the JSON travels further than the scans.
        """
        networks: dict[str, Any] = {}
        for name in atlas.NETWORKS:
            entry: dict[str, Any] = {}
            for state, session in (("pre", self.pre), ("post", self.post)):
                match = session.assignment.matches[name]
                entry[state] = {
                    "p_post": self.probabilities[state].get(name),
                    "component": match.label, "match_score": round(float(match.score), 4),
                    "confident": match.confident, "automatic": match.automatic,
                }
            networks[name] = entry
        return {
            "pre": Path(self.pre.path).name, "post": Path(self.post.path).name,
            "pre_sha256": self.pre.source_sha256, "post_sha256": self.post.source_sha256, "model": dict(self.model),
            "tr_s": self.pre.tr_s, "n_volumes": self.pre.comps.n_volumes,
            "networks": networks, "messages": list(self.messages),
        }


def patient_tsne(model: Any, embeddings: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any] | None:
    """A t-SNE of the model's reference embeddings with this patient's ten points added.

    t-SNE places points relative to each other only (it has no transform for new points),
    so the patient's embeddings are embedded *together with* the reference set the model
    ships; the map shows where the patient's networks fall among the reference scans.
    None when the model has no reference set.
    """
    from ...explain.embeddings import tsne_coordinates

    reference = getattr(model, "reference", None)
    if not reference:
        return None
    ref = np.asarray(reference["embeddings"], dtype=np.float64)
    points = np.concatenate([ref, embeddings["pre"], embeddings["post"]])
    xy = tsne_coordinates(points, seed=seed)
    n, k = len(ref), len(embeddings["pre"])
    return {
        "reference": xy[:n], "reference_network": np.asarray(reference["networks"], dtype=str),
        "reference_state": np.asarray(reference["states"], dtype=str),
        "patient": {"pre": xy[n:n + k], "post": xy[n + k:]}, "networks": list(embeddings["networks"]),
    }


def compare(
    pre_path: str | Path, post_path: str | Path, *, version: str | None = None, device: str = "auto",
    tr_s: float | None = None, with_tsne: bool = True, model: Any = None, seed: int = 0,
) -> TaskGenerator[Comparison]:
    """Load both scans, check them, and give P(post) of every network of each.

    Parameters
    ----------
    pre_path, post_path : str or Path
        Each an ICA folder, MELODIC folder, session folder or 4D BOLD (see :func:`load_session`).
    version : str, optional
        Pre/post model version (the registry's default when None); ignored when ``model`` is given.
    tr_s : float, optional
        Repetition time for inputs that do not say it (MELODIC folders).
    with_tsne : bool
        Also place the patient on a t-SNE of the model's reference embeddings (seconds).
    """
    from .model import compare_pre_post, load_prepost_model

    pre = yield from _scaled(load_session(pre_path, tr_s=tr_s), 0, "pre-operative")
    post = yield from _scaled(load_session(post_path, tr_s=tr_s), 1, "post-operative")
    messages = [*pre.warnings, *post.warnings]
    on_pre_grid = not same_grid(pre.comps.spatial_shape, pre.comps.affine, post.comps.spatial_shape, post.comps.affine)
    if on_pre_grid:
        messages.append(
            f"{Path(post.path).name} is on another grid ({post.comps.spatial_shape}) than "
            f"{Path(pre.path).name} ({pre.comps.spatial_shape}): its maps are shown resampled onto the pre grid"
        )
    yield Progress(8, 10, "Loading the pre/post model")
    if model is None:
        model = load_prepost_model(version, device=device)
    scans = [ScanInputs(network_inputs(s.comps, s.assignment), s.tr_s, state=None, source=s.path) for s in (pre, post)]
    yield Progress(9, 10, "Predicting pre/post for every network")
    summary = compare_pre_post(model, *scans)  # refuses scans of different length or TR
    result = Comparison(
        pre, post, {"pre": summary["pre"], "post": summary["post"]},
        {"name": model.card.name, "version": model.card.version}, messages, on_pre_grid, predictor=model,
    )
    if with_tsne:
        yield Progress(9, 10, "Placing the patient on the t-SNE of the reference embeddings")
        result.tsne = patient_tsne(model, _embeddings(model, scans), seed)
        if result.tsne is None:
            messages.append(f"Model {model.card.version} ships no reference embeddings: no t-SNE to show")
    yield Progress(10, 10, "Done")
    return result


def override(comparison: Comparison, state: str, network: str, component: int) -> tuple[Comparison, Path | None]:
    """The radiologist assigns ``component`` to ``network`` on the ``state`` scan.

    The new assignment is stored at once in the session's ICA folder (networks.json,
    written atomically, provenance kept) when it came from one; a scan whose ICA was
    computed in memory keeps it for this comparison only, and the returned path is None.
    The probabilities are stale until :func:`repredict` runs.
    """
    from .assignment_io import store_assignment

    if state not in ("pre", "post"):
        raise InputFileError(f"{state!r}: the scan is 'pre' or 'post'")
    session: Session = getattr(comparison, state)
    updated = session.with_assignment(session.assignment.override(network, component))
    written = None
    if updated.ica_folder is not None:
        written = store_assignment(updated.ica_folder, updated.assignment, updated.comps)
    pre, post = (updated, comparison.post) if state == "pre" else (comparison.pre, updated)
    return Comparison(pre, post, comparison.probabilities, comparison.model, list(comparison.messages),
                      comparison.post_maps_on_pre_grid, comparison.tsne, comparison.predictor), written


def repredict(comparison: Comparison, with_tsne: bool = True, seed: int = 0) -> TaskGenerator[Comparison]:
    """P(post) (and the t-SNE) again, after an override changed which components are read."""
    model = comparison.predictor
    scans = [ScanInputs(network_inputs(s.comps, s.assignment), s.tr_s, source=s.path)
             for s in (comparison.pre, comparison.post)]
    yield Progress(1, 3, "Predicting pre/post for every network")
    probabilities = model.predict_scans(scans)
    tsne = comparison.tsne
    if with_tsne:
        yield Progress(2, 3, "Placing the patient on the t-SNE")
        tsne = patient_tsne(model, _embeddings(model, scans), seed)
    yield Progress(3, 3, "Done")
    return Comparison(comparison.pre, comparison.post, {"pre": probabilities[0], "post": probabilities[1]},
                      {"name": model.card.name, "version": model.card.version}, list(comparison.messages),
                      comparison.post_maps_on_pre_grid, tsne, model)


def _embeddings(model: Any, scans: list[ScanInputs]) -> dict[str, Any]:
    from .features import build_rows

    rows = build_rows(scans, model.context, model.networks)
    emb = model.embed(rows)
    names = [model.context.networks[int(k)] for k in rows.networks[rows.scans == 0]]
    return {"pre": emb[rows.scans == 0], "post": emb[rows.scans == 1], "networks": names}


def _scaled(task: TaskGenerator[Session], index: int, what: str) -> TaskGenerator[Session]:
    """Run a session load as steps ``index*4 .. index*4 + 4`` of 10, saying which scan it is."""
    return (yield from relay(task, lambda u: Progress(index * 4 + int(4 * u.fraction), 10, f"{what}: {u.message}")))


def write_comparison(result: Comparison, out: str | Path) -> Path:
    """``res.json`` (atomic, strict JSON): per network, P(post) of each scan and the matched components.

    Through the one sanitiser (``strict_json.plain``: numpy values made Python ones) with
    ``nonfinite="keep"`` and ``allow_nan=False``: the inputs are checked, so a NaN here is
    a bug and is refused rather than written (as ``NaN``, not JSON, or as ``null``).
    """
    import json

    from ...io.strict_json import plain

    text = json.dumps(plain(result.to_json(), nonfinite="keep"), indent=2, allow_nan=False)
    return write_text_atomic(out, text + "\n")


def assignment_table(session: Session) -> list[dict[str, Any]]:
    """Rows for a widget table: network, component label, score, confident, automatic."""
    return [
        {"network": name, "component": component_label(m.component), "score": m.score,
         "second": m.second_score, "confident": m.confident, "automatic": m.automatic}
        for name, m in session.assignment.matches.items()
    ]


__all__ = [
    "Comparison", "Session", "assignment_table", "compare", "load_session", "override",
    "patient_tsne", "repredict", "write_comparison",
]
