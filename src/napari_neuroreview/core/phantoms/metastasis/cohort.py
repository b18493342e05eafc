"""The cohort: sites, patients, their scans and the files (see the package docstring)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...io import strict_json
from ...io.atomic import write_text_atomic
from ...tasks.metastasis.labels import LABEL_COLUMNS
from ..swi.cohort import _gz, _write_bytes, cohort_seed
from . import literature as lit
from .lesions import Lesion, draw_lesion_count, draw_lesions
from .render import SEQUENCES, MetastasisCase, render_lesions

__all__ = ["SITES", "MetastasisPatient", "Site", "draw_scanner", "make_metastasis_patient",
           "metastasis_patients", "patient_record", "render_metastasis_patient", "write_metastasis_cohort",
           "write_metastasis_patient"]


@dataclass(frozen=True)
class Site:
    """A hospital: its class mix (:data:`~.literature.ORIGINS` order) and scanner.

    ``voxel_size``: the structural grid (t1, t2, flair, ce_t1); ``dwi_voxel_size``: the DWI
    grid; ``noise_sd``: the mean noise (white matter ~0.85 on T1); ``enhancement``: the
    contrast uptake (dose, timing, field); ``t1_contrast``: scales grey/CSF's distance from
    white matter on T1.
    """

    name: str
    class_mix: tuple[float, float, float, float]
    field_t: float
    voxel_size: tuple[float, float, float]
    dwi_voxel_size: tuple[float, float, float]
    orientation: str
    noise_sd: float
    enhancement: float
    t1_contrast: float
    external: bool = False


#: Two development sites (3 T variants) and an independent external one (1.5 T, another
#: vendor's storage order, thicker slices, noisier, less enhancement, another class mix), as a
#: third hospital would be. A: the study's lesion mix (100 / 125 / 116 / 108 of 449, REF
#: issue 12); B: a variant (chosen); C: NSCLC commoner, SCLC rarer, as in general practice
#: where lung adenocarcinoma is the commonest source (chosen). Scanner numbers chosen: 3 T 3D
#: T1 at ~1 mm, EPI DWI at 2 x 2 x 4 mm; 1.5 T at 1 x 1 x 1.5 mm and 2.3 x 2.3 x 5 mm.
SITES: dict[str, Site] = {
    "A": Site("A", (0.223, 0.278, 0.258, 0.241), 3.0, (1.0, 1.0, 1.0), (2.0, 2.0, 4.0), "LAS", 0.020, 1.0, 1.0),
    "B": Site("B", (0.25, 0.30, 0.22, 0.23), 3.0, (0.9, 0.9, 1.0), (1.8, 1.8, 4.0), "RAS", 0.025, 0.9, 0.95),
    "C": Site("C", (0.15, 0.40, 0.25, 0.20), 1.5, (1.0, 1.0, 1.5), (2.3, 2.3, 5.0), "LPS", 0.035, 0.8, 1.1,
              external=True),
}


@dataclass(frozen=True)
class MetastasisPatient:
    """One drawn patient: the latent origin (the label), sex and age (labels.tsv only), the
    lesions to render (``n_lesions_drawn`` before the :data:`~.literature.MAX_RENDERED_LESIONS`
    cap) and the scanner (:func:`draw_scanner`)."""

    seed: int
    site: str
    origin: str
    sex: str
    age: int
    lesions: tuple[Lesion, ...]
    scanner: dict[str, Any] = field(default_factory=dict)
    n_lesions_drawn: int = 0


def draw_scanner(rng: np.random.Generator, site: Site) -> dict[str, Any]:
    """A session on ``site``'s scanner: the keys :func:`.render.render_lesions` reads.

    Per patient (chosen): obliquity within +-5 degrees per axis (slabs tilted to the AC-PC
    line), noise x exp(N(0, 0.15)), bias strength 0.05-0.3 (uncorrected receive-coil
    shading), receiver gain x 0.7-1.4 (log-uniform), tissue contrast jitter +-5 %, the DWI's
    noise half the structural one's (its signal is averaged over directions), a render seed.
    """
    rotation = tuple(round(float(a), 3) for a in rng.uniform(-5.0, 5.0, 3))
    noise = site.noise_sd * math.exp(0.15 * float(rng.standard_normal()))
    bias = float(rng.uniform(0.05, 0.3))
    gain = math.exp(float(rng.uniform(math.log(0.7), math.log(1.4))))
    return {"field_t": site.field_t, "orientation": site.orientation, "rotation_deg": rotation,
            "voxel_size": site.voxel_size, "dwi_voxel_size": site.dwi_voxel_size, "noise_sd": round(noise, 6),
            "dwi_noise_factor": 0.5, "bias_strength": round(bias, 4), "gain": round(gain, 4),
            "tissue_jitter": 0.05, "t1_contrast": site.t1_contrast, "enhancement": site.enhancement,
            "seed": int(rng.integers(2**31 - 1))}


def make_metastasis_patient(seed: int, site: str) -> MetastasisPatient:
    """Draw one patient of ``site`` (a key of :data:`SITES`); no image is made.

    Every draw comes from ``numpy.random.default_rng(seed)`` in this order: origin (the
    site's class mix), lesion count, lesions, scanner, then sex and age, last, so that
    nothing rendered follows from them.
    """
    if site not in SITES:
        raise ValueError(f"site must be one of {sorted(SITES)}, got {site!r}")
    s = SITES[site]
    rng = np.random.default_rng(int(seed))
    mix = np.asarray(s.class_mix, float)
    origin = lit.ORIGINS[int(rng.choice(len(lit.ORIGINS), p=mix / mix.sum()))]
    n = draw_lesion_count(rng, origin)
    lesions = draw_lesions(rng, origin, n)
    scanner = draw_scanner(rng, s)
    sex = "F" if rng.uniform() < lit.FEMALE_SHARE[origin] else "M"
    mu, sd, lo, hi = lit.AGE
    age = round(float(np.clip(rng.normal(mu, sd), lo, hi)))
    return MetastasisPatient(seed=int(seed), site=site, origin=origin, sex=sex, age=age, lesions=lesions,
                             scanner=scanner, n_lesions_drawn=n)


def metastasis_patients(n: int, seed: int, sites: Sequence[str] = tuple(SITES)) -> list[MetastasisPatient]:
    """The cohort's patients without images, dealt to ``sites`` in equal blocks; patient ``i``'s
    seed comes from ``(seed, i)`` (``swi.cohort.cohort_seed``: independent of ``n``)."""
    sites = tuple(sites)
    if not sites or any(s not in SITES for s in sites):
        raise ValueError(f"sites must name sites of {sorted(SITES)}, got {sites!r}")
    blocks = np.array_split(np.arange(int(n)), len(sites))
    return [make_metastasis_patient(cohort_seed(seed, int(i)), site) for site, block in zip(sites, blocks)
            for i in block]


def render_metastasis_patient(patient: MetastasisPatient, **overrides: Any) -> MetastasisCase:
    """Scan ``patient`` (:func:`.render.render_lesions`); ``overrides`` replace scanner keys.

    A ``voxel_size`` given without a ``dwi_voxel_size`` keeps the DWI grid coarser: the
    site's DWI voxel, at least 1.25 x the in-plane and 1.5 x the slice size (a quick coarse
    render in tests keeps the two grids apart).
    """
    unknown = set(overrides) - set(patient.scanner)
    if unknown:
        raise ValueError(f"unknown scanner setting(s) {sorted(unknown)}; expected some of {sorted(patient.scanner)}")
    scanner = {**patient.scanner, **overrides}
    if "voxel_size" in overrides and "dwi_voxel_size" not in overrides:
        vox = np.asarray(overrides["voxel_size"], float)
        scanner["dwi_voxel_size"] = tuple(float(v) for v in np.maximum(
            np.asarray(patient.scanner["dwi_voxel_size"], float), vox * np.array([1.25, 1.25, 1.5])))
    return render_lesions(patient.lesions, scanner)


def write_metastasis_patient(case_dir: str | Path, case: MetastasisCase, cohort: dict[str, Any]) -> list[Path]:
    """Write one rendered patient: the :data:`~.render.SEQUENCES`, ``lesions`` and ``oedema``
    (``.nii.gz``, gzipped reproducibly), then ``truth.json`` (lesions, scanner, grids and
    ``cohort``; never the origin, sex or age); returns the files in that order."""
    case_dir = Path(case_dir)
    files = {stem: f"{stem}.nii.gz" for stem in case.files()}
    written = [_write_bytes(case_dir / files[stem], _gz(img.to_bytes())) for stem, img in case.files().items()]
    truth = {
        "description": ("Simulated data, not a patient: brain metastases on the MNI152 2009 template (nilearn) "
                        "in T1, T2, FLAIR, DWI (b=1000), ADC (1e-6 mm2/s) and contrast T1; world = MNI RAS mm."),
        "files": files, "sequences": list(SEQUENCES), **case.truth, "cohort": cohort}
    written.append(write_text_atomic(case_dir / "truth.json", strict_json.dumps(truth, indent=2) + "\n"))
    return written


def write_metastasis_cohort(out_dir: str | Path, n: int, seed: int, sites: Sequence[str] = tuple(SITES),
                            workers: int = 1, resume: bool = False, **overrides: Any) -> list[Path]:
    """Write a cohort: ``patient-NNNN/`` per patient, then ``labels.tsv``; returns every file.

    ``labels.tsv`` (``tasks.metastasis.labels.LABEL_COLUMNS``: the origin, sex, age, rendered
    lesion count) is written last, apart from the inputs. ``overrides``: scanner keys for every patient
    (:func:`render_metastasis_patient`), recorded in each ``truth.json``. ``workers``
    processes render patients in parallel; ``resume=True`` keeps every folder whose
    ``truth.json`` (written last) records this very patient. Same files either way: a
    patient depends only on ``(seed, index)``.
    """
    out_dir = Path(out_dir)
    jobs = [(out_dir / f"patient-{i:04d}", p, {"seed": int(seed), "index": i, "patient_seed": p.seed,
                                               "site": p.site, "overrides": dict(overrides)})
            for i, p in enumerate(metastasis_patients(n, seed, sites))]
    todo = [job for job in jobs if not (resume and _complete(job[0], job[2]))]
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            results = list(pool.map(_render_and_write, todo, [overrides] * len(todo)))
    else:
        results = [_render_and_write(job, overrides) for job in todo]
    rendered = {job[0]: files for job, files in zip(todo, results)}
    written: list[Path] = []
    rows = ["\t".join(LABEL_COLUMNS)]
    for folder, p, _ in jobs:
        written += rendered.get(folder) or sorted(f for f in folder.iterdir() if f.is_file())
        rows.append("\t".join(str(v) for v in (folder.name, p.site, p.origin, p.sex, p.age, len(p.lesions))))
    written.append(write_text_atomic(out_dir / "labels.tsv", "\n".join(rows) + "\n"))
    return written


def _render_and_write(job: tuple[Path, MetastasisPatient, dict[str, Any]], overrides: dict[str, Any]) -> list[Path]:
    """Render one patient and write its folder (a worker's unit)."""
    folder, patient, cohort = job
    return write_metastasis_patient(folder, render_metastasis_patient(patient, **overrides), cohort)


def _complete(folder: Path, cohort: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a complete patient written for ``cohort``."""
    try:
        truth = strict_json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(truth, dict) and truth.get("cohort") == strict_json.loads(strict_json.dumps(cohort))


def patient_record(patient: MetastasisPatient) -> dict[str, Any]:
    """A patient as plain JSON-ready values (lesions as dicts)."""
    rec = dataclasses.asdict(patient)
    rec["lesions"] = [dataclasses.asdict(les) for les in patient.lesions]
    return rec
