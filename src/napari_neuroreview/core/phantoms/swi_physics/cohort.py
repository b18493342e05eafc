"""Writing physics-simulated SWI cases: the folder layout of ``core.phantoms.swi.write_swi_cohort``.

Each ``case-NNN/`` holds ``swi.nii.gz``, ``phase.nii.gz`` (float32 radians),
``truth_instances.nii.gz``, ``truth_mimics.nii.gz`` and ``truth.json``, so evaluation
(``load_swi_truth``), training and the benchmark read either simulator's cases. Images go
through the one NIfTI writer (``core.io.nifti.save_volume``), the JSON through
``core.io.strict_json`` and ``core.io.atomic``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_neuroreview.core.io import strict_json
from napari_neuroreview.core.io.atomic import write_with
from napari_neuroreview.core.io.nifti import save_volume

from .case import make_swi_case
from .objects import MIMIC_LABELS
from .tissue import PHASE_CONVENTION


def _case_seed(seed: int, index: int) -> int:
    """Case ``index``'s seed from ``(seed, index)`` (SeedSequence), independent of the count."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def write_physics_cohort(out_dir: str | Path, n_cases: int, seed: int,
                         *, per_case: Callable[[int], dict[str, Any]] | None = None,
                         **make_swi_case_kwargs: Any) -> list[Path]:
    """Write ``n_cases`` physics-simulated cases with truth; returns every file written (swi first).

    ``per_case(case_seed)``: more keyword arguments per case, as in ``write_swi_cohort``
    (recorded in ``truth.json`` as ``params['per_case']``).
    """
    out_dir = Path(out_dir)
    written: list[Path] = []
    for index in range(int(n_cases)):
        case_seed = _case_seed(seed, index)
        extra = {} if per_case is None else per_case(case_seed)
        case = make_swi_case(case_seed, **{**make_swi_case_kwargs, **extra})
        if per_case is not None:
            case.params["per_case"] = extra
        d = out_dir / f"case-{index:03d}"
        d.mkdir(parents=True, exist_ok=True)
        aff = case.magnitude.affine
        files = {"magnitude": "swi.nii.gz"}
        written.append(save_volume(d / "swi.nii.gz", np.asarray(case.magnitude.dataobj), aff,
                                   dtype=case.magnitude.get_data_dtype(), descrip="physics-simulated SWI magnitude"))
        if case.phase is not None:
            files["phase"] = "phase.nii.gz"
            written.append(save_volume(d / "phase.nii.gz", np.asarray(case.phase.dataobj), aff, dtype=np.float32,
                                       descrip="physics-simulated SWI filtered phase (rad)"))
        files["instances"], files["mimics"] = "truth_instances.nii.gz", "truth_mimics.nii.gz"
        written.append(save_volume(d / files["instances"], np.asarray(case.truth["instances"].dataobj), aff,
                                   dtype=np.uint16, descrip="CMB instance truth"))
        written.append(save_volume(d / files["mimics"], np.asarray(case.truth["mimic_labels"].dataobj), aff,
                                   dtype=np.uint8, descrip="mimic truth"))
        truth = {
            "description": ("Simulated data, not a patient: an SWI made by susceptibility physics (dipole field, "
                            "complex GRE, homodyne filtered phase) on the MNI152 ICBM 2009 template."),
            "files": files,
            "voxel_size_mm": [round(float(z), 6) for z in case.magnitude.header.get_zooms()[:3]],
            "axcodes": "".join(nib.aff2axcodes(aff)),
            "coordinates": "world RAS+ mm (MNI152 2009 space); voxel_ijk through the image affine",
            "phase_convention": PHASE_CONVENTION,
            "mimic_labels": {str(k): v for k, v in MIMIC_LABELS.items()},
            "cmbs": case.truth["cmbs"], "mimics": case.truth["mimics"], "params": case.params,
            "cohort": {"seed": int(seed), "index": index, "case_seed": case_seed},
        }
        text = strict_json.dumps(truth, indent=2, ensure_ascii=False) + "\n"
        written.append(write_with(d / "truth.json", lambda tmp, t=text: tmp.write_text(t, encoding="utf-8")))
    return written
