"""The cohort: centres, patients, their scans and the files (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_neuroreview.core.io import strict_json
from napari_neuroreview.core.io.atomic import write_text_atomic

from ...tasks.csvd.labels import LABEL_COLUMNS
from .. import scanner_draws
from ..swi.cohort import cohort_seed, write_swi_case
from ..swi_contract import CMBSite, SiderosisSite, SWICase
from .literature import AGE, CSS_SHARE, MALE_SHARE, MAX_RENDERED_CMB, SUBTYPES, draw_cmb_count
from .sites import (
    background_regions,
    caa_lobe_weights,
    choose,
    disease_regions,
    draw_site,
    lobe_volumes,
    siderosis_path,
)





@dataclass(frozen=True)
class Centre:
    """A centre: its scanner (simulator, field, means and SDs of TE and voxel) and class mix."""

    name: str
    simulator: str
    class_mix: tuple[float, float, float]  # aSVD, CAA, CADASIL
    b0_t: float
    te_ms: tuple[float, float]
    in_plane_mm: tuple[float, float]
    slice_mm: tuple[float, float]
    external: bool = False


#: Two development centres on either simulator at 3 T and an external one at 1.5 T (chosen:
#: the external test differs in scanner and class mix, as a third hospital would). Class
#: mixes after issue 11 (the study's 217 / 106 / 41 is 60 / 29 / 11).
CENTRES: dict[str, Centre] = {
    "A": Centre("A", "phenomenological", (0.60, 0.30, 0.10), 3.0, (20.0, 2.0), (0.9, 0.05), (1.8, 0.2)),
    "B": Centre("B", "physics", (0.50, 0.30, 0.20), 3.0, (20.0, 2.0), (0.8, 0.05), (1.6, 0.15)),
    "C": Centre("C", "physics", (0.45, 0.35, 0.20), 1.5, (40.0, 3.0), (0.95, 0.05), (2.5, 0.2), external=True),
}


@dataclass(frozen=True)
class CSVDPatient:
    """One drawn patient: the latent subtype, what it shows, and the scan to simulate.

    ``sites``: the microbleeds to render (disease first, then background; at most
    :data:`MAX_RENDERED_CMB`); ``n_cmb_latent``: the count before that cap. ``scanner``:
    ``make_swi_case`` keywords of ``simulator`` (not the sites).
    """

    seed: int
    centre: str
    subtype: str
    age: int
    sex: str
    n_cmb_latent: int
    sites: tuple[CMBSite, ...]
    css: bool
    siderosis: tuple[SiderosisSite, ...]
    simulator: str
    scanner: dict[str, Any] = field(default_factory=dict)
    case_seed: int = 0

    def case_kwargs(self) -> dict[str, Any]:
        """``make_swi_case`` keywords of this patient's scan (seed included)."""
        return {"seed": self.case_seed, **self.scanner, "cmb_sites": self.sites, "siderosis": self.siderosis}


def _draw_scan(rng: np.random.Generator, centre: Centre) -> dict[str, Any]:
    """The centre's scanner: ``scanner_draws.draw_scanner`` (orientation, obliquity, noise,
    bias, gain...) with the centre's field, TE and voxel drawn around its means (clipped to
    the ranges of ``scanner_draws``), whole brain."""
    sc = scanner_draws.draw_scanner(rng, centre.simulator)
    te_range = scanner_draws.TE_MS[centre.b0_t]
    te = float(np.clip(rng.normal(*centre.te_ms), *te_range))
    in_plane = float(np.clip(rng.normal(*centre.in_plane_mm), *scanner_draws.IN_PLANE_MM))
    slice_mm = float(np.clip(rng.normal(*centre.slice_mm), *scanner_draws.SLICE_MM))
    axis_si = next(i for i, c in enumerate(sc["orientation"]) if c in "SI")
    voxel = [in_plane] * 3
    voxel[axis_si] = slice_mm
    if centre.simulator == "physics":
        sc["tr_ms"] = round(te + (sc["tr_ms"] - sc["te_ms"]), 3)
        sc["b0_t"] = centre.b0_t
    sc.update({"voxel_size": tuple(round(v, 4) for v in voxel), "te_ms": round(te, 3), "slab": None})
    return sc


def make_csvd_patient(seed: int, centre: str) -> CSVDPatient:
    """Draw one patient of ``centre`` (a key of :data:`CENTRES`); no image is made.

    Every draw comes from ``numpy.random.default_rng(seed)`` in this order: subtype (the
    centre's class mix), age, sex, scanner, case seed, counts, disease regions, background
    regions, sites, cSS and its layers.
    """
    if centre not in CENTRES:
        raise ValueError(f"centre must be one of {sorted(CENTRES)}, got {centre!r}")
    c = CENTRES[centre]
    rng = np.random.default_rng(int(seed))
    subtype = SUBTYPES[int(rng.choice(len(SUBTYPES), p=np.asarray(c.class_mix) / sum(c.class_mix)))]
    mu, sd, lo, hi = AGE[subtype]
    age = int(round(float(np.clip(rng.normal(mu, sd), lo, hi))))
    sex = "M" if rng.uniform() < MALE_SHARE[subtype] else "F"
    scanner = _draw_scan(rng, c)
    case_seed = int(rng.integers(2**31 - 1))
    n_disease, n_bg = draw_cmb_count(rng, subtype)
    n_render = min(n_disease + n_bg, MAX_RENDERED_CMB)
    regions = disease_regions(rng, subtype, min(n_disease, n_render))
    regions += background_regions(rng, subtype, n_render - len(regions))
    placed: list[tuple[np.ndarray, float]] = []
    sites = tuple(s for s in (draw_site(rng, r, placed) for r in regions) if s is not None)
    css = bool(rng.uniform() < CSS_SHARE[subtype])
    layers: list[SiderosisSite] = []
    if css:
        lobe_w = caa_lobe_weights() if subtype == "CAA" else lobe_volumes()
        for _ in range(int(rng.integers(1, 4))):
            layer = siderosis_path(rng, choose(rng, lobe_w))
            if layer is not None:
                layers.append(layer)
    return CSVDPatient(seed=int(seed), centre=centre, subtype=subtype, age=age, sex=sex,
                       n_cmb_latent=n_disease + n_bg, sites=sites, css=css, siderosis=tuple(layers),
                       simulator=c.simulator, scanner=scanner, case_seed=case_seed)


def _allocate(n: int, centres: Sequence[str] | Mapping[str, float]) -> list[str]:
    """The centre of each of ``n`` patients, in blocks: equal shares, or a mapping's shares
    (largest remainders)."""
    shares = dict(centres) if isinstance(centres, Mapping) else {k: 1.0 for k in centres}
    unknown = set(shares) - set(CENTRES)
    if unknown or not shares or any(float(v) < 0 for v in shares.values()) or sum(shares.values()) <= 0:
        raise ValueError(f"centres must name centres of {sorted(CENTRES)} with shares >= 0, got {centres!r}")
    total = sum(float(v) for v in shares.values())
    exact = {k: n * float(v) / total for k, v in shares.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: counts[k] - exact[k])[: n - sum(counts.values())]:
        counts[k] += 1
    return [k for k in shares for _ in range(counts[k])]


def csvd_patients(n_patients: int, seed: int,
                  centres: Sequence[str] | Mapping[str, float] = tuple(CENTRES)) -> list[CSVDPatient]:
    """The cohort's patients without images (what :func:`write_csvd_cohort` renders)."""
    return [make_csvd_patient(cohort_seed(seed, i), c) for i, c in enumerate(_allocate(int(n_patients), centres))]


def render_csvd_patient(patient: CSVDPatient, **overrides: Any) -> SWICase:
    """Scan ``patient`` on its centre's simulator; ``overrides`` replace scanner keywords
    (e.g. a coarse ``voxel_size`` for a quick look)."""
    kwargs = {**patient.case_kwargs(), **overrides}
    if patient.simulator == "physics":
        from ..swi_physics import make_swi_case
    else:
        from ..swi import make_swi_case
    return make_swi_case(**kwargs)


def write_csvd_patient(case_dir: str | Path, case: SWICase, cohort: dict[str, Any]) -> list[Path]:
    """Write one rendered patient in ``write_swi_cohort``'s layout (its writers); returns the files.

    ``truth.json`` holds the microbleeds (with their MARS region), the skipped sites, the
    mimics (siderosis among them), the parameters and ``cohort``; never the subtype.
    """
    extra = {"skipped_sites": case.truth.get("skipped_sites", []), "cohort": cohort}
    return write_swi_case(case_dir, case, extra, truth_text=lambda t: strict_json.dumps(t, indent=2) + "\n")


def write_csvd_cohort(out_dir: str | Path, n_patients: int, seed: int,
                      centres: Sequence[str] | Mapping[str, float] = tuple(CENTRES),
                      workers: int = 1, resume: bool = False, **overrides: Any) -> list[Path]:
    """Write a subtype cohort: ``patient-NNNN/`` per patient and ``labels.tsv``; returns every file.

    Patients are dealt to ``centres`` in blocks (equal shares, or a mapping's shares);
    patient ``i``'s seed comes from ``(seed, i)``. Each folder is :func:`write_csvd_patient`'s;
    ``labels.tsv`` (:data:`LABEL_COLUMNS`: the latent subtype, the rendered ``n_cmb`` and
    the latent count, cSS...) is written last, apart from the inputs. ``overrides``:
    scanner keywords for every patient (:func:`render_csvd_patient`), recorded in each
    ``truth.json``.

    Why ``workers`` and ``resume``: a physics patient takes 15-75 s to render, so hundreds
    of them are rendered in ``workers`` processes, and an interrupted run is taken up again
    with ``resume=True``, which keeps every folder whose ``truth.json`` (written last, so
    present only when the folder is complete) records this very patient. Same files either
    way: each patient depends only on ``(seed, index)``.
    """
    out_dir = Path(out_dir)
    jobs = [(out_dir / f"patient-{index:04d}", patient, {
        "seed": int(seed), "index": index, "patient_seed": patient.seed, "centre": patient.centre,
        "overrides": dict(overrides)}) for index, patient in enumerate(csvd_patients(n_patients, seed, centres))]
    done = {folder: _written_cmbs(folder, cohort) for folder, _, cohort in jobs} if resume else {}
    todo = [job for job in jobs if done.get(job[0]) is None]
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            results = list(pool.map(_render_and_write, todo, [overrides] * len(todo)))
    else:
        results = [_render_and_write(job, overrides) for job in todo]
    written: list[Path] = []
    for (folder, _, _), (files, n_cmb) in zip(todo, results):
        written += files
        done[folder] = n_cmb
    rendered = {job[0] for job in todo}
    rows = ["\t".join(LABEL_COLUMNS)]
    for folder, patient, _ in jobs:
        if folder not in rendered:
            written += sorted(p for p in folder.iterdir() if p.is_file())
        values = (folder.name, patient.centre, patient.subtype, patient.age, done[folder], int(patient.css),
                  patient.sex, patient.n_cmb_latent, patient.simulator)
        rows.append("\t".join(str(v) for v in values))
    written.append(write_text_atomic(out_dir / "labels.tsv", "\n".join(rows) + "\n"))
    return written


def _render_and_write(job: tuple[Path, CSVDPatient, dict[str, Any]], overrides: dict[str, Any]
                      ) -> tuple[list[Path], int]:
    """Render one patient and write its folder (a worker's unit): (files, rendered CMB count)."""
    folder, patient, cohort = job
    case = render_csvd_patient(patient, **overrides)
    return write_csvd_patient(folder, case, cohort), len(case.truth["cmbs"])


def _written_cmbs(folder: Path, cohort: dict[str, Any]) -> int | None:
    """The rendered CMB count of a complete folder written for ``cohort``'s patient, else None."""
    try:
        truth = strict_json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(truth, dict) or truth.get("cohort") != strict_json.loads(strict_json.dumps(cohort)) or not isinstance(truth.get("cmbs"), list):
        return None
    return len(truth["cmbs"])


def patient_record(patient: CSVDPatient) -> dict[str, Any]:
    """A patient as plain JSON-ready values (the sites and layers as dicts)."""
    rec = asdict(patient)
    rec["sites"] = [asdict(s) for s in patient.sites]
    rec["siderosis"] = [asdict(s) for s in patient.siderosis]
    return rec
