"""Writing simulated SWI cases to disk, and reading their truth back.

:func:`write_swi_cohort` writes a folder per case (images gzipped reproducibly, phase as
int16 radians, truth JSON), :func:`load_swi_truth` reads a case's truth for evaluation,
and :func:`write_cmb_sample` writes the committed ``cmb`` sample (:data:`CMB_SAMPLE`).
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_neuroreview.core.io.atomic import write_with

from ..swi_contract import SWICase, phantom_image
from .case import make_swi_case
from .mimics import MIMIC_LABELS
from .susceptibility import PHASE_CONVENTION

#: Quantisation step (rad) of cohort phase images written to disk (int16 with scl_slope):
#: a tenth of the phase noise in white matter at the default noise.
PHASE_STEP_RAD: float = 0.005
#: The same for the committed sample, coarser to fit its size budget.
SAMPLE_PHASE_STEP_RAD: float = 0.015


def phase_nifti_bytes(phase: nib.Nifti1Image, step: float = PHASE_STEP_RAD) -> bytes:
    """A phase image as NIfTI bytes: int16 with ``scl_slope = step`` (radians per unit).

    Noise compresses badly and float32 costs 4 bytes a voxel; the default 0.005 rad step
    is far below the phase noise (~0.07 rad in white matter at the default noise). nibabel resets
    the scaling of in-memory arrays when it writes, so the slope is set in the header
    bytes after writing; any reader applies it (``get_fdata`` returns radians).
    """
    data = np.rint(np.asarray(phase.dataobj, dtype=np.float64) / step)
    data = np.clip(data, -32768, 32767).astype(np.int16)
    img = phantom_image(data, phase.affine, phase.header["descrip"].tobytes().split(b"\0")[0].decode("ascii", "replace"))
    raw = bytearray(img.to_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)))
    header.set_slope_inter(float(step), 0.0)
    raw[: header.sizeof_hdr] = header.binaryblock
    return bytes(raw)


def _gz(payload: bytes) -> bytes:
    return gzip.compress(payload, compresslevel=9, mtime=0)


def _write_bytes(path: Path, payload: bytes) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(payload))


def _truth_json(case: SWICase, files: dict[str, str]) -> dict[str, Any]:
    img = case.magnitude
    return {
        "description": (
            "Simulated data, not a patient: an SWI (T2*-weighted GRE magnitude and filtered phase) "
            "made from the MNI152 ICBM 2009 template shipped with nilearn, with seeded microbleeds "
            "and mimics (veins, iron, sulcal/air-bone spots, calcifications)."
        ),
        "files": files,
        "voxel_size_mm": [round(float(z), 6) for z in img.header.get_zooms()[:3]],
        "axcodes": "".join(nib.aff2axcodes(img.affine)),
        "coordinates": "world RAS+ mm (MNI152 2009 space); voxel_ijk through the image affine",
        "phase_convention": PHASE_CONVENTION,
        "mimic_labels": {str(k): v for k, v in MIMIC_LABELS.items()},
        "cmbs": case.truth["cmbs"],
        "mimics": case.truth["mimics"],
        "params": case.params,
    }


def _truth_text(truth: dict[str, Any]) -> str:
    return json.dumps(truth, indent=2, ensure_ascii=False) + "\n"


def write_swi_case(case_dir: str | Path, case: SWICase, extra_truth: dict[str, Any] | None = None,
                   *, truth_text: Callable[[dict[str, Any]], str] = _truth_text) -> list[Path]:
    """Write one case in :func:`write_swi_cohort`'s layout; returns the files (``swi.nii.gz`` first).

    ``swi.nii.gz``, ``phase.nii.gz`` (if the case has a phase), ``truth_instances.nii.gz``
    and ``truth_mimics.nii.gz`` (gzipped reproducibly), then ``truth.json``: the case's
    truth with ``extra_truth``'s keys added in order, made text by ``truth_text``
    (default: ``json.dumps``, indent 2, UTF-8, newline-terminated).
    """
    case_dir = Path(case_dir)
    payloads = {"magnitude": ("swi.nii.gz", case.magnitude.to_bytes())}
    if case.phase is not None:
        payloads["phase"] = ("phase.nii.gz", phase_nifti_bytes(case.phase))
    payloads["instances"] = ("truth_instances.nii.gz", case.truth["instances"].to_bytes())
    payloads["mimics"] = ("truth_mimics.nii.gz", case.truth["mimic_labels"].to_bytes())
    written = [_write_bytes(case_dir / name, _gz(raw)) for name, raw in payloads.values()]
    truth = _truth_json(case, {key: name for key, (name, _) in payloads.items()})
    truth.update(extra_truth or {})
    written.append(_write_bytes(case_dir / "truth.json", truth_text(truth).encode("utf-8")))
    return written


def cohort_seed(seed: int, index: int) -> int:
    """Case ``index``'s seed from ``(seed, index)`` (SeedSequence): independent of the count."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def write_swi_cohort(out_dir: str | Path, n_cases: int, seed: int,
                     *, per_case: Callable[[int], dict[str, Any]] | None = None,
                     **make_swi_case_kwargs: Any) -> list[Path]:
    """Write ``n_cases`` simulated SWI cases with their truth, one folder each.

    Each ``out_dir/case-000/``, ``case-001/``... holds ``swi.nii.gz`` (magnitude), ``phase.nii.gz`` (filtered
    phase, int16 radians x :data:`PHASE_STEP_RAD`; absent with ``with_phase=False``),
    ``truth_instances.nii.gz`` (microbleed ids), ``truth_mimics.nii.gz``
    (:data:`MIMIC_LABELS`) and ``truth.json`` (microbleeds, mimics, parameters, and a note
    that the data are simulated). Case ``i``'s seed is derived from ``(seed, i)``
    (``numpy.random.SeedSequence``) and recorded in its ``truth.json``
    (``cohort.case_seed``), so a case does not depend on how many are written. Files are
    written atomically and reproducibly (gzip without timestamp). ``per_case(case_seed)``,
    if given, returns more keyword arguments for that case (e.g. a scanner of
    ``core.phantoms.scanner_draws.case_scanner``); they override ``make_swi_case_kwargs``
    and are recorded in ``truth.json`` as ``params['per_case']``.

    Returns
    -------
    list of Path
        Every file written, case by case (``swi.nii.gz`` first in each); a case's folder
        is its files' parent.
    """
    out_dir = Path(out_dir)
    written: list[Path] = []
    for index in range(int(n_cases)):
        case_seed = cohort_seed(seed, index)
        extra = {} if per_case is None else per_case(case_seed)
        case = make_swi_case(case_seed, **{**make_swi_case_kwargs, **extra})
        if per_case is not None:
            case.params["per_case"] = extra
        cohort = {"seed": int(seed), "index": index, "case_seed": case_seed}
        written += write_swi_case(out_dir / f"case-{index:03d}", case, {"cohort": cohort})
    return written


def load_swi_truth(case_dir: str | Path) -> dict[str, Any]:
    """Read a case's truth back (for evaluation code; models never read it).

    Works on a :func:`write_swi_cohort` folder and on the ``cmb`` sample folder.

    Returns
    -------
    dict
        The truth JSON (``cmbs``, ``mimics``, ``params``, ...), plus ``'instances'`` and
        ``'mimic_labels'`` as nibabel images where their files exist.
    """
    case_dir = Path(case_dir)
    jsons = [case_dir / "truth.json"] + sorted(case_dir.glob("*_truth.json"))
    found = [p for p in jsons if p.is_file()]
    if not found:
        raise FileNotFoundError(f"{case_dir}: no truth.json")
    truth = json.loads(found[0].read_text(encoding="utf-8"))
    files = truth.get("files", {})
    for key, name in (("instances", files.get("instances")), ("mimic_labels", files.get("mimics"))):
        if name and (case_dir / name).is_file():
            truth[key] = nib.load(case_dir / name)
    return truth


#: Settings of the committed ``cmb`` sample: an axial slab from the lower pallidum to the
#: centrum semiovale (z -10..62 mm: 40 slices of 1.8 mm), 0.9 x 0.9 mm in plane, LAS,
#: lobar and deep bleeds, veins, the pallidal iron and one calcification. Gzip compresses
#: noise poorly, so noise, dynamic range and slice count set the folder's size (budget
#: 1.6 MB): noise 0.02 (white-matter SNR ~22, as SWI has) and a receiver scale putting
#: white matter near 35, so the noise (1.6 units) stays above the int16 step; the phase
#: is stored in steps of :data:`SAMPLE_PHASE_STEP_RAD`, a third of its noise in white
#: matter.
CMB_SAMPLE: dict[str, Any] = {
    "seed": 20240607,
    "voxel_size": (0.9, 0.9, 1.8),
    "orientation": "LAS",
    "rotation_deg": (1.5, -1.0, 2.0),
    "n_cmb": 7,
    "location_weights": {"lobar": 0.6, "deep": 0.4},
    "mimics": {"vein": 8, "iron": 1, "sulcal": 2, "airbone": 0, "calcification": 1},
    "slab": (-10.0, 62.0),
    "bias_strength": 0.15,
    "noise_sd": 0.02,
    "te_ms": 20.0,
    "intensity_scale": 80.0,
    "margin_mm": 3.0,
}


def write_cmb_sample(case_dir: Path) -> list[Path]:
    """Susceptibility-weighted slab with microbleeds and their mimics, with truth.

    ``sub-demo_swi.nii.gz``: int16 T2*-weighted GRE magnitude, an axial slab of 40 slices
    (0.9 x 0.9 x 1.8 mm, stored LAS, head slightly rotated) from the lower basal ganglia
    (z = -10 mm) to the centrum semiovale (z = 62 mm), made by
    :func:`napari_neuroreview.core.phantoms.swi.make_swi_case` from the MNI152 2009
    template (partial volume, GRE tissue contrast with iron in the deep grey nuclei, bias
    field, Rician noise). ``sub-demo_phase.nii.gz``: filtered phase in radians (int16 with
    a scale factor of 0.015 rad; positive = paramagnetic). ``sub-demo_cmb-instances.nii.gz``: one label
    per microbleed (visible extent, blooming included). ``sub-demo_truth.json``: the
    microbleeds (world RAS mm, voxel, diameter, location lobar/deep) and the mimics
    (veins with their paths, the iron of the globus pallidus and red nucleus on both sides,
    a calcification with the opposite phase sign, sulcal spots), and every simulation parameter.
    """
    case_dir = Path(case_dir)
    case = make_swi_case(**CMB_SAMPLE)
    assert case.phase is not None
    written = [
        _write_bytes(case_dir / "sub-demo_swi.nii.gz", _gz(case.magnitude.to_bytes())),
        _write_bytes(case_dir / "sub-demo_phase.nii.gz", _gz(phase_nifti_bytes(case.phase, SAMPLE_PHASE_STEP_RAD))),
        _write_bytes(case_dir / "sub-demo_cmb-instances.nii.gz", _gz(case.truth["instances"].to_bytes())),
    ]
    files = {"magnitude": written[0].name, "phase": written[1].name, "instances": written[2].name}
    truth = _truth_json(case, files)
    text = json.dumps(truth, indent=2, ensure_ascii=False) + "\n"
    written.append(_write_bytes(case_dir / "sub-demo_truth.json", text.encode("utf-8")))
    return written
