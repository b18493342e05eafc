"""The cohort: subjects, their scans and the files (see the package docstring for the layout)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ...io import strict_json
from ...io.atomic import write_text_atomic
from ...tasks.stroke.labels import (
    CLINICAL_COLUMNS,
    IMAGE_VOLUME_COLUMNS,
    LABEL_COLUMNS,
    MISSING,
)
from ..swi.cohort import _gz, _write_bytes, cohort_seed
from .burden import Population, draw_population
from .render import StrokeCase, render_markers

__all__ = ["MARKER_KEYS", "TRUTH_COLUMNS", "clinical_rows", "draw_scanner", "render_subject", "subject_markers",
           "write_stroke_cohort"]

#: The markers a subject is rendered from (``burden.Population.markers``).
MARKER_KEYS: tuple[str, ...] = ("wmh_pv_ml", "wmh_deep_ml", "wmh_ml", "lacunes", "cmbs", "icv_ml", "atrophy",
                                "brain_ml", "ventricles_ml")
#: ``truth.tsv``: never an input (the clean outcome, the true risk, the burden, the markers).
TRUTH_COLUMNS: tuple[str, ...] = ("subject", "set", "stroke_clean", "stroke_written", "risk", "burden", *MARKER_KEYS)
#: How each clinical column is written (decimals; sex as F/M).
_DECIMALS: dict[str, int] = {"age": 1, "sbp": 0, "bmi": 1, "cholesterol": 2, "wmh_ml": 2, "brain_ml": 1,
                             "ventricles_ml": 1}


def draw_scanner(seed: int, voxel_mm: float) -> dict[str, Any]:
    """A session (chosen, as the metastasis cohort's): noise 0.02 x exp(N(0, 0.15)), bias strength
    0.05-0.25, receiver gain x 0.7-1.4 (log-uniform), tissue contrast jitter +-5 %, a render seed;
    from ``default_rng(seed)``."""
    rng = np.random.default_rng(int(seed))
    noise = 0.02 * math.exp(0.15 * float(rng.standard_normal()))
    bias = float(rng.uniform(0.05, 0.25))
    gain = math.exp(float(rng.uniform(math.log(0.7), math.log(1.4))))
    return {"voxel_mm": float(voxel_mm), "noise_sd": round(noise, 6), "bias_strength": round(bias, 4),
            "gain": round(gain, 4), "tissue_jitter": 0.05, "seed": int(rng.integers(2**31 - 1))}


def subject_markers(pop: Population, i: int) -> dict[str, float]:
    """Subject ``i``'s markers as plain numbers (what :func:`.render.render_markers` reads)."""
    return {k: float(pop.markers[k][i]) for k in MARKER_KEYS}


def render_subject(pop: Population, i: int, seed: int, voxel_mm: float) -> StrokeCase:
    """Render subject ``i`` of the cohort drawn with ``seed`` (its scanner from ``(seed, i)``)."""
    return render_markers(subject_markers(pop, i), draw_scanner(cohort_seed(seed, i), voxel_mm))


def _cell(column: str, value: float, missing: bool) -> str:
    if missing:
        return MISSING
    if column == "sex":
        return "M" if value > 0 else "F"
    if column in _DECIMALS:
        return f"{value:.{_DECIMALS[column]}f}"
    return str(int(value))


def clinical_rows(pop: Population, subjects: list[str], sets: list[str],
                  image_volumes_in_table: bool = False) -> list[str]:
    """``clinical.tsv``'s lines (header first; ``tasks.stroke.labels``'s columns, ``n/a`` where missing)."""
    columns = (*CLINICAL_COLUMNS, *(IMAGE_VOLUME_COLUMNS if image_volumes_in_table else ()))
    values = {**pop.clinical, "sex": pop.clinical["male"], **pop.measured}
    none = np.zeros(len(pop), bool)
    lines = ["\t".join(("subject", "set", *columns))]
    for i, (subject, which) in enumerate(zip(subjects, sets)):
        cells = [_cell(c, float(values[c][i]), bool(pop.missing.get(c, none)[i])) for c in columns]
        lines.append("\t".join((subject, which, *cells)))
    return lines


def _write_subject(job: tuple[Path, dict[str, float], dict[str, Any], dict[str, Any]]) -> list[Path]:
    """Render one subject and write its folder (a worker's unit): images, then ``truth.json`` last."""
    folder, markers, scanner, cohort = job
    case = render_markers(markers, scanner)
    written = [_write_bytes(folder / f"{stem}.nii.gz", _gz(img.to_bytes())) for stem, img in case.files().items()]
    truth = {"description": ("Simulated data, not a patient: T1 and FLAIR of a stroke-risk cohort on the MNI152 "
                             "2009 template (nilearn), rendered from image markers only; world = MNI RAS mm."),
             "files": {stem: f"{stem}.nii.gz" for stem in case.files()}, **case.truth, "cohort": cohort}
    written.append(write_text_atomic(folder / "truth.json", strict_json.dumps(truth, indent=2) + "\n"))
    return written


def _complete(folder: Path, cohort: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a complete subject written for ``cohort`` (its ``truth.json`` is last)."""
    try:
        truth = strict_json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(truth, dict) and truth.get("cohort") == strict_json.loads(strict_json.dumps(cohort))


def write_stroke_cohort(out_dir: str | Path, n: int, labelled: int, seed: int, voxel_mm: float = 4.0,
                        image_volumes_in_table: bool = False, workers: int = 1, resume: bool = False) -> list[Path]:
    """Write a cohort of ``n`` subjects, the last ``labelled`` of them labelled; returns every file.

    ``sub-NNNNN/`` per subject (``t1``, ``flair``, ``truth_lesions`` ``.nii.gz``, ``truth.json``
    last: markers, rendered volumes, scanner; never the table or the outcome), then
    ``clinical.tsv`` (every subject's table, ``set`` unlabelled or labelled; with
    ``image_volumes_in_table`` the measured WMH, brain and ventricle volumes too), ``labels.tsv``
    (the labelled subjects' written, noisy label, apart from the inputs) and ``truth.tsv`` (the
    clean outcome and the markers of every subject). ``workers`` processes render subjects in
    parallel; ``resume=True`` keeps every folder whose ``truth.json`` records this very subject.
    The population is ``burden.draw_population(n, seed)``; subject ``i``'s scanner comes from
    ``(seed, i)``, so the files are the same whatever ``workers`` and ``resume``.
    """
    n, labelled = int(n), int(labelled)
    if not 0 <= labelled <= n or n < 1:
        raise ValueError(f"need 1 <= n and 0 <= labelled <= n, got n={n}, labelled={labelled}")
    out_dir = Path(out_dir)
    pop = draw_population(n, seed)
    width = max(5, len(str(n - 1)))
    subjects = [f"sub-{i:0{width}d}" for i in range(n)]
    sets = ["unlabelled"] * (n - labelled) + ["labelled"] * labelled
    jobs = []
    for i, subject in enumerate(subjects):
        cohort = {"seed": int(seed), "n": n, "labelled": labelled, "index": i, "voxel_mm": float(voxel_mm)}
        jobs.append((out_dir / subject, subject_markers(pop, i), draw_scanner(cohort_seed(seed, i), voxel_mm), cohort))
    todo = [job for job in jobs if not (resume and _complete(job[0], job[3]))]
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            results = list(pool.map(_write_subject, todo, chunksize=max(1, len(todo) // (8 * int(workers)))))
    else:
        results = [_write_subject(job) for job in todo]
    rendered = {job[0]: files for job, files in zip(todo, results)}
    written: list[Path] = []
    for folder, *_ in jobs:
        written += rendered.get(folder) or sorted(f for f in folder.iterdir() if f.is_file())
    table = clinical_rows(pop, subjects, sets, image_volumes_in_table)
    written.append(write_text_atomic(out_dir / "clinical.tsv", "\n".join(table) + "\n"))
    labels = ["\t".join(LABEL_COLUMNS)] + [f"{s}\t{int(pop.written[i])}" for i, s in enumerate(subjects)
                                           if sets[i] == "labelled"]
    written.append(write_text_atomic(out_dir / "labels.tsv", "\n".join(labels) + "\n"))
    truth = ["\t".join(TRUTH_COLUMNS)] + [
        "\t".join((s, sets[i], str(int(pop.stroke[i])), str(int(pop.written[i])), f"{pop.risk[i]:.5f}",
                   f"{pop.burden[i]:.4f}", *(f"{pop.markers[k][i]:.4f}" for k in MARKER_KEYS)))
        for i, s in enumerate(subjects)]
    written.append(write_text_atomic(out_dir / "truth.tsv", "\n".join(truth) + "\n"))
    return written
