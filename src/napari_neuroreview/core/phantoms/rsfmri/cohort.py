"""Writing a paired pre/post rs-fMRI cohort to disk, reading its truth back, and the sample.

The layout (the contract every other part of the networks workflow reads)::

    DIR/cohort.json                        what was simulated, written last
    DIR/sub-001/ses-pre/bold.nii.gz        4D int16 BOLD (TR in the header)
    DIR/sub-001/ses-pre/truth.json         ground truth: never read by a model under test
    DIR/sub-001/ses-pre/truth_maps.nii.gz  true maps of the five networks (x, y, z, 5)
    DIR/sub-001/ses-post/...

Every file is written atomically (a temporary file moved into place) and reproducibly
(gzip with a zero timestamp, fixed compression level), so the same arguments give the
same bytes; ``cohort.json`` is written after every session, so a folder that has it is
complete.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_neuroreview.core.anatomy import atlas
from napari_neuroreview.core.errors import InputFileError, NeuroreviewError
from napari_neuroreview.core.io.atomic import write_with
from napari_neuroreview.core.progress import Progress

from .case import STATES, BoldCase, make_bold_case

#: gzip level of cohort files. Noise barely compresses: on a default scan (3 mm, 150
#: volumes, 52 MB raw) level 1 takes 0.8 s for 14.2 MB, level 6 3.2 s for 13.4 MB, so the
#: fast level keeps writing a cohort near the cost of simulating it.
COHORT_GZIP_LEVEL: int = 1
#: Quantisation step of the true maps on disk (int16 x step): far below any map value of interest.
TRUTH_MAP_STEP: float = 1e-4


def _gz(payload: bytes, level: int) -> bytes:
    return gzip.compress(payload, compresslevel=level, mtime=0)


def _write_bytes(path: Path, payload: bytes) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(payload))


def quantised_nifti_bytes(img: nib.Nifti1Image, step: float, dtype: Any = np.int16) -> bytes:
    """An image as NIfTI bytes stored as integers of ``dtype`` with ``scl_slope = step``.

    Readers apply the slope (``get_fdata`` returns the original units within ``step / 2``).
    nibabel resets the scaling of in-memory arrays when it writes, so the slope is set in
    the header bytes after writing (as :func:`...swi.cohort.phase_nifti_bytes` does).
    """
    info = np.iinfo(np.dtype(dtype))
    data = np.clip(np.rint(np.asarray(img.dataobj, dtype=np.float64) / step), info.min, info.max).astype(dtype)
    out = nib.Nifti1Image(data, img.affine, img.header.copy())
    out.set_data_dtype(np.dtype(dtype))
    raw = bytearray(out.to_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)))
    header.set_slope_inter(float(step), 0.0)
    raw[: header.sizeof_hdr] = header.binaryblock
    return bytes(raw)


def _patient_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def session_dir(out_dir: str | Path, patient_index: int, state: str) -> Path:
    """``DIR/sub-NNN/ses-STATE`` for a 0-based patient index (``sub-001`` is index 0)."""
    return Path(out_dir) / f"sub-{int(patient_index) + 1:03d}" / f"ses-{state}"


def _write_session(
    case: BoldCase, folder: Path, level: int, bold_step: float | None, bold_dtype: Any, extra: dict[str, Any]
) -> list[Path]:
    if bold_step is None:
        bold_bytes = case.bold.to_bytes()
    else:
        bold_bytes = quantised_nifti_bytes(case.bold, bold_step, bold_dtype)
    written = [
        _write_bytes(folder / "bold.nii.gz", _gz(bold_bytes, level)),
        _write_bytes(folder / "truth_maps.nii.gz", _gz(quantised_nifti_bytes(case.truth_maps, TRUTH_MAP_STEP), level)),
    ]
    truth = {
        **case.truth,
        "files": {"bold": "bold.nii.gz", "truth_maps": "truth_maps.nii.gz"},
        "truth_maps_order": list(atlas.NETWORKS),
        **extra,
    }
    text = json.dumps(truth, indent=1, ensure_ascii=False) + "\n"
    written.append(_write_bytes(folder / "truth.json", text.encode("utf-8")))
    return written


def write_bold_cohort(
    out_dir: str | Path,
    n_patients: int = 56,
    seed: int = 0,
    effect_size: float = 1.0,
    n_volumes: int = 150,
    voxel_mm: float = 3.0,
    tr_s: float = 2.0,
    **case_kwargs: Any,
) -> Generator[Progress, None, list[Path]]:
    """Simulate and write a paired cohort: each patient scanned before and after surgery.

    A generator: it yields a :class:`Progress` after each session and returns every path
    written (session files in order, ``cohort.json`` last). Patient ``i``'s seed is derived
    from ``(seed, i)`` (``numpy.random.SeedSequence``) and recorded in its truth, so a
    patient does not depend on how many are written.

    Parameters
    ----------
    out_dir : path
        The cohort folder (created; existing sessions are overwritten).
    n_patients, seed, effect_size, n_volumes, voxel_mm, tr_s
        See :func:`make_bold_case`; ``effect_size`` applies to the whole cohort.
    **case_kwargs
        Passed on to :func:`make_bold_case` (``motion``, ``noise_pct``, ...).

    Raises
    ------
    NeuroreviewError
        If a number is out of range (nothing is written).
    """
    if int(n_patients) < 1:
        raise NeuroreviewError(f"A cohort needs at least one patient, got n_patients={n_patients}.")
    if not np.isfinite(effect_size) or effect_size < 0:
        raise NeuroreviewError(f"The effect size must be a number >= 0, got {effect_size}.")
    if int(n_volumes) < 10 or not tr_s > 0 or not voxel_mm > 0:
        raise NeuroreviewError(
            f"Need at least 10 volumes, a positive TR and voxel size; got {n_volumes}, {tr_s}, {voxel_mm}."
        )
    out_dir = Path(out_dir)
    total = 2 * int(n_patients)
    written: list[Path] = []
    yield Progress(0, total, f"Simulating {n_patients} patients, before and after surgery")
    patients = []
    for i in range(int(n_patients)):
        pseed = _patient_seed(seed, i)
        patients.append({"subject": f"sub-{i + 1:03d}", "patient_seed": pseed})
        for j, state in enumerate(STATES):
            case = make_bold_case(
                pseed, state, effect_size=effect_size, n_volumes=n_volumes, tr_s=tr_s, voxel_mm=voxel_mm, **case_kwargs
            )
            subject = f"sub-{i + 1:03d}"
            extra = {"cohort": {"seed": int(seed), "index": i, "subject": subject, "session": f"ses-{state}"}}
            written += _write_session(case, session_dir(out_dir, i, state), COHORT_GZIP_LEVEL, None, None, extra)
            yield Progress(2 * i + j + 1, total, f"Patient {i + 1} of {n_patients}: {state}-operative scan written")
    meta = {
        "description": (
            "Simulated paired rs-fMRI cohort, not patients: each subject scanned before (ses-pre) and after "
            "(ses-post) a simulated surgery; napari_neuroreview.core.phantoms.rsfmri."
        ),
        "n_patients": int(n_patients),
        "seed": int(seed),
        "effect_size": float(effect_size),
        "n_volumes": int(n_volumes),
        "tr_s": float(tr_s),
        "voxel_mm": float(voxel_mm),
        "case_kwargs": {k: v for k, v in sorted(case_kwargs.items())},
        "networks": list(atlas.NETWORKS),
        "states": {"pre": 0, "post": 1},
        "subjects": patients,
        "layout": "sub-NNN/ses-{pre,post}/{bold.nii.gz,truth.json,truth_maps.nii.gz}",
    }
    written.append(_write_bytes(out_dir / "cohort.json", (json.dumps(meta, indent=2) + "\n").encode("utf-8")))
    return written


def load_bold_truth(session_dir: str | Path) -> dict[str, Any]:
    """Read a session's truth back (for evaluation and benchmarks; models never read it).

    Returns
    -------
    dict
        The truth JSON, plus ``"truth_maps"``: the nibabel image of the true maps (x, y,
        z, 5 in :data:`atlas.NETWORKS` order) when its file exists.

    Raises
    ------
    InputFileError
        If the folder has no readable ``truth.json``.
    """
    folder = Path(session_dir)
    path = folder / "truth.json"
    if not path.is_file():
        raise InputFileError(f"{folder}: no truth.json (not a session of a simulated cohort).")
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: cannot be read as JSON ({exc}).") from exc
    maps = folder / truth.get("files", {}).get("truth_maps", "truth_maps.nii.gz")
    if maps.is_file():
        truth["truth_maps"] = nib.load(maps)
    return truth


#: Settings of the committed ``rsfmri`` sample (one patient, both sessions). 4D noise
#: compresses poorly (gzip codes each brain sample in ~6 bits whatever the dtype), so the
#: number of brain samples sets the size: at 4 mm and 120 volumes one session is 2.7 MB,
#: at 5 mm 1.4 MB, so the sample uses 5 mm voxels (the model grid is 6 mm anyway), 120
#: volumes (4 min), brain-extracted, the BOLD stored as uint8 with a scale factor whose
#: step equals the thermal noise sd (quantisation adds 8 % to the noise variance). A
#: stronger than default effect makes the pre/post difference visible in one pair.
RSFMRI_SAMPLE: dict[str, Any] = {
    "n_patients": 1,
    "seed": 20240611,
    "effect_size": 1.5,
    "n_volumes": 120,
    "voxel_mm": 5.0,
    "tr_s": 2.0,
    "margin_mm": 2.0,
    "intensity_scale": 1000.0,
    "noise_pct": 1.4,
}


def write_rsfmri_sample(case_dir: Path) -> list[Path]:
    """Resting-state BOLD of one simulated patient before and after surgery, with truth.

    A one-patient cohort in the layout of
    :func:`napari_neuroreview.core.phantoms.rsfmri.write_bold_cohort`: ``cohort.json`` and
    ``sub-001/ses-pre/`` and ``sub-001/ses-post/``, each with ``bold.nii.gz`` (4D, 5 mm
    isotropic voxels stored LAS, 120 volumes, TR 2 s, brain-extracted; uint8 with a scale
    factor, grey matter near 1000), ``truth_maps.nii.gz`` (the true maps of the motor,
    vision, language, frontal and temporal networks, in that order) and ``truth.json``
    (every network's nodes, loadings and true time course, the motion, every parameter).
    Made by :func:`napari_neuroreview.core.phantoms.rsfmri.make_bold_case` from the MNI152
    2009 grey matter and the Seitzman 2018 ROI table: eight networks with HRF-shaped time
    courses, cardiac and respiratory noise, drift, head motion and thermal noise; the
    post-operative session carries the simulated surgery effect (effect size 1.5).
    """
    case_dir = Path(case_dir)
    s = dict(RSFMRI_SAMPLE)
    n_patients, seed = s.pop("n_patients"), s.pop("seed")
    step = s["intensity_scale"] * s["noise_pct"] / 100.0
    written: list[Path] = []
    for state in STATES:
        kwargs = {k: v for k, v in s.items()}
        case = make_bold_case(_patient_seed(seed, 0), state, **kwargs)
        extra = {"cohort": {"seed": seed, "index": 0, "subject": "sub-001", "session": f"ses-{state}"}}
        written += _write_session(case, session_dir(case_dir, 0, state), 9, step, np.uint8, extra)
    meta = {
        "description": "Sample: one simulated patient (not a patient) before and after a simulated surgery.",
        "n_patients": n_patients,
        "seed": seed,
        **{k: RSFMRI_SAMPLE[k] for k in ("effect_size", "n_volumes", "tr_s", "voxel_mm")},
        "bold_storage": f"uint8 x {step:g} (scl_slope)",
        "networks": list(atlas.NETWORKS),
        "states": {"pre": 0, "post": 1},
        "subjects": [{"subject": "sub-001", "patient_seed": _patient_seed(seed, 0)}],
        "layout": "sub-NNN/ses-{pre,post}/{bold.nii.gz,truth.json,truth_maps.nii.gz}",
    }
    written.append(_write_bytes(case_dir / "cohort.json", (json.dumps(meta, indent=2) + "\n").encode("utf-8")))
    return written
