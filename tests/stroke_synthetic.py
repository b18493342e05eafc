"""A tiny stroke cohort on disk for the pretraining tests: the phantom's table and labels, small random scans.

Why not ``write_stroke_cohort``: rendering takes about a second a subject on this machine;
pretraining only needs files in the cohort's layout, whose table and labels are the
phantom's own (``core.phantoms.stroke``'s population and writer of the table).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_neuroreview.core.io.nifti import save_volume
from napari_neuroreview.core.phantoms.stroke import draw_population
from napari_neuroreview.core.phantoms.stroke.cohort import clinical_rows


def write_tiny_cohort(out: Path, n: int = 24, labelled: int = 12, shape: tuple[int, int, int] = (12, 14, 12),
                      seed: int = 0) -> Path:
    """``out`` with ``clinical.tsv``, ``labels.tsv`` and ``sub-*/t1.nii.gz, flair.nii.gz`` (noise over a bright box)."""
    out.mkdir(parents=True, exist_ok=True)
    pop = draw_population(n, seed)
    subjects = [f"sub-{i:05d}" for i in range(n)]
    sets = ["unlabelled"] * (n - labelled) + ["labelled"] * labelled
    (out / "clinical.tsv").write_text("\n".join(clinical_rows(pop, subjects, sets)) + "\n")
    labels = ["subject\tstroke"] + [f"{s}\t{int(pop.written[i])}" for i, s in enumerate(subjects) if i >= n - labelled]
    (out / "labels.tsv").write_text("\n".join(labels) + "\n")
    rng = np.random.default_rng(seed)
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    for subject in subjects:
        (out / subject).mkdir(exist_ok=True)
        for channel in ("t1", "flair"):
            data = rng.uniform(0, 50, shape)
            data[2:-2, 3:-3, 2:-2] += rng.uniform(300, 700)
            save_volume(out / subject / f"{channel}.nii.gz", data.astype(np.int16), affine, dtype=np.int16)
    return out
