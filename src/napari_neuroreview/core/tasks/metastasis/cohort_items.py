"""The lesions of a rendered origin cohort as :class:`~.crops.LesionCrop` s, from their files.

Why from the files: training and evaluating on a cohort must go the way a real session
goes: each sequence is read from its NIfTI on its own grid (DWI and ADC on their coarser
one), and the crops are cut through each file's affine (:func:`~.crops.lesion_crops`),
exactly as ``metastasis classify`` cuts them, so a model trained here reads at run time
the input it was trained on. ``core.tasks`` never imports the simulators: the cohort is
the folder ``metastasis phantoms`` writes (``labels.tsv`` and ``patient-NNNN/{stem}.nii.gz``).

Patients are read one at a time: a patient's scans are loaded, cut and dropped, so only
the crops of the cohort are ever in memory, never its scans. Every file of every patient
is checked to exist before the first scan is read: a cohort missing one file fails at
once with one sentence naming it, not an hour into a run.

Labels, sites and lesion counts come from the cohort's ``labels.tsv`` through its one
reader (:func:`.labels.read_metastasis_labels`). :func:`node_aucs` scores a model's node
probabilities on such lesions (``metastasis train``'s external site).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError
from ...io.nifti import load_volume
from ...progress import Progress, TaskGenerator
from .classes import NODES, SEQUENCES, node_targets
from .crops import CropSpec, LesionCrop, lesion_crops
from .labels import read_metastasis_labels

__all__ = ["CohortCrops", "crops_from_cohort", "lesion_items", "node_aucs"]

#: What :func:`crops_from_cohort` returns: the crops, and per crop its origin, patient and site.
CohortCrops = tuple[list[LesionCrop], list[str], list[str], list[str]]


def _patient_files(cohort_dir: Path, rows: list[dict[str, Any]], stems: Sequence[str]) -> list[dict[str, Path]]:
    """``{stem: path}`` of every patient, all checked to exist before the first scan is read."""
    if not rows:
        raise InputFileError(f"{cohort_dir / 'labels.tsv'}: lists no patients.")
    files = []
    for row in rows:
        folder = cohort_dir / row["patient"]
        paths = {stem: folder / f"{stem}.nii.gz" for stem in stems}
        for path in paths.values():
            if not path.is_file():
                raise InputFileError(f"{path}: is missing, so {cohort_dir} is not a complete metastasis cohort "
                                     f"(labels.tsv lists {row['patient']}).")
        files.append(paths)
    return files


def crops_from_cohort(cohort_dir: str | Path, sequences: Sequence[str], spec: CropSpec = CropSpec(), *,
                      oedema: bool = False) -> TaskGenerator[CohortCrops]:
    """The crops of every lesion of every patient of a cohort written by ``metastasis phantoms``.

    Parameters
    ----------
    cohort_dir : path
        ``labels.tsv`` and one ``patient-NNNN/`` folder per row holding the ``sequences``
        and ``lesions.nii.gz`` (``oedema.nii.gz`` too with ``oedema=True``).
    sequences : sequence of str
        The channels, in this order (a model's ``sequences``, names of :data:`~.classes.SEQUENCES`).
    spec : CropSpec
        The cube.
    oedema : bool
        Also cut each lesion's oedema (for the Grad-CAM energy checks).

    Returns
    -------
    crops, origins, patients, sites
        The crops in patient order (lesions by increasing id), and per crop the patient's
        origin (:data:`~.classes.ORIGINS`), folder name and site.

    Raises
    ------
    InputFileError
        ``cohort_dir`` is not a cohort (no or a malformed ``labels.tsv``, a patient without
        one of its files), or a scan or its labels cannot be read or cut: one sentence each.
    GeometryError
        A lesion outside a sequence's field of view.
    """
    names = tuple(sequences)
    if not names or any(s not in SEQUENCES for s in names):  # the caller's wiring: the CLI checks the names
        raise ValueError(f"sequences must be some of {SEQUENCES}, not {names}")
    cohort_dir = Path(cohort_dir)
    rows = read_metastasis_labels(cohort_dir)
    stems = (*names, "lesions", *(("oedema",) if oedema else ()))
    files = _patient_files(cohort_dir, rows, stems)
    crops: list[LesionCrop] = []
    origins: list[str] = []
    patients: list[str] = []
    sites: list[str] = []
    for k, (row, paths) in enumerate(zip(rows, files)):
        name = row["patient"]
        yield Progress(k, len(rows), f"{name} ({k + 1} of {len(rows)}): reading {', '.join(names)} and its lesions")
        volumes = {s: load_volume(paths[s]) for s in names}
        these = lesion_crops(volumes, load_volume(paths["lesions"]), channels=names, spec=spec,
                             oedema=load_volume(paths["oedema"]) if oedema else None)
        del volumes  # the scans go; only the crops stay
        crops += these
        origins += [row["origin"]] * len(these)
        patients += [name] * len(these)
        sites += [row["site"]] * len(these)
    yield Progress(len(rows), len(rows), f"{len(crops)} lesions of {len(rows)} patients")
    return crops, origins, patients, sites


def lesion_items(cohort_dir: str | Path, sequences: Sequence[str], spec: CropSpec = CropSpec(), *,
                 oedema: bool = False) -> TaskGenerator[tuple[list[Any], list[str]]]:
    """:func:`crops_from_cohort` as the evaluation reads it: one ``evaluate.LesionItem`` per lesion, and the origins."""
    from .evaluate import LesionItem  # evaluate holds the protocol; this module only reads files

    crops, origins, patients, sites = yield from crops_from_cohort(cohort_dir, sequences, spec, oedema=oedema)
    return [LesionItem(c, p, s) for c, p, s in zip(crops, patients, sites)], origins


def node_aucs(p_nodes: np.ndarray, origins: Sequence[str]) -> dict[str, float | None]:
    """Lesion-level AUC of each of the :data:`~.classes.NODES` on that node's own lesions.

    Why per node on its own lesions: SCLC vs NSCLC is only asked of lung lesions and breast
    vs GI only of non-lung ones (``classes.node_targets``), as the paper reports them. A node
    whose lesions are all of one branch has no AUC: None, never a made-up 0.5.
    """
    from sklearn.metrics import roc_auc_score

    targets, mask = node_targets(list(origins))
    p = np.asarray(p_nodes, float).reshape(-1, len(NODES))
    out: dict[str, float | None] = {}
    for j, node in enumerate(NODES):
        y = targets[mask[:, j], j]
        out[node] = float(roc_auc_score(y, p[mask[:, j], j])) if len(np.unique(y)) == 2 else None
    return out
