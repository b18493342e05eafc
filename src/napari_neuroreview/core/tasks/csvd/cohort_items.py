"""The patients of a rendered subtype cohort as :class:`~.evaluate.CSVDItem` s, from their images.

Why: :func:`~.evaluate.items_from_patients` is the oracle without images (the drawn sites,
their world position taken as MNI). A real evaluation must go the way a real scan goes:
each patient's SWI is read from its file, registered to MNI152
(:func:`~...anatomy.registration.register_to_mni`), and its microbleeds' MNI positions and
MARS regions come from that registration. The phantom's world happens to be MNI space
(the simulators scan the MNI152 anatomy), so the registration is not needed for these
patients; it is run anyway, so the evaluation measures the whole chain and the test can
check the registration against the truth (registered vs true MNI position of each CMB).

The microbleeds come from one of two sources:

* ``source="truth"`` (the oracle): ``truth.json``'s ``cmbs`` (``world_ras_mm``,
  ``diameter_mm``, ``id``), i.e. what a perfect detector would give;
* ``source="detector"`` (end to end): the shipped microbleed detector
  (:func:`..cmb.detect.run` at its card's threshold); a detection's diameter is that of the
  sphere of its mask's volume (:func:`.bags.equivalent_diameter_mm`).

With ``encoder="detector"`` each bag gets the detector's frozen patch embedding
(:func:`.bags.build_bag`), from the channels of that one scan; otherwise the bags are
location-only. Patients are processed one at a time: a scan is loaded, used and dropped,
so the cohort's scans are never all in memory.

Labels, centres and ages come from the cohort's ``labels.tsv`` through its one reader
(:func:`.labels.read_csvd_labels`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...anatomy.registration import register_to_mni
from ...errors import InputFileError
from ...io.nifti import Volume, load_volume
from ...io.strict_json import read_object
from ...progress import Progress, TaskGenerator, within
from .bags import ScanChannels, build_bag, equivalent_diameter_mm, make_sites
from .evaluate import CSVDItem
from .labels import read_csvd_labels

__all__ = ["ENCODERS", "SOURCES", "items_from_cohort"]

#: Where a patient's microbleeds come from.
SOURCES: tuple[str, ...] = ("truth", "detector")
#: Patch encoders of the bags (None: location-only bags).
ENCODERS: tuple[str | None, ...] = (None, "detector")
#: Progress units per patient, and where each stage starts within them.
_UNITS = 100
_REGISTER, _SOURCE, _EMBED = 5, 40, 85


def _patient_files(cohort_dir: Path, rows: list[dict[str, Any]], source: str) -> list[tuple[Path, Path | None]]:
    """(swi, phase or None) of every patient, all checked before the first scan is read."""
    if not rows:
        raise InputFileError(f"{cohort_dir / 'labels.tsv'}: lists no patients.")
    files = []
    for row in rows:
        folder = cohort_dir / row["patient"]
        swi = folder / "swi.nii.gz"
        if not swi.is_file():
            raise InputFileError(f"{swi}: is missing, so {cohort_dir} is not a complete subtype cohort "
                                 f"(labels.tsv lists {row['patient']}).")
        if source == "truth" and not (folder / "truth.json").is_file():
            raise InputFileError(f"{folder / 'truth.json'}: is missing; the oracle source reads the true "
                                 "microbleeds from it (or use the detector as the source).")
        phase = folder / "phase.nii.gz"
        files.append((swi, phase if phase.is_file() else None))
    return files


def _truth_cmbs(path: Path) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Ids, world RAS mm (n, 3) and diameters of the microbleeds in a phantom's ``truth.json``."""
    cmbs = read_object(path, "truth.json").get("cmbs")
    try:
        if not isinstance(cmbs, list):
            raise TypeError
        ids = [int(c["id"]) for c in cmbs]
        world = np.array([c["world_ras_mm"] for c in cmbs], float).reshape(-1, 3)
        diameter = np.array([c["diameter_mm"] for c in cmbs], float).reshape(-1)
    except (KeyError, TypeError, ValueError):
        raise InputFileError(f"{path}: its 'cmbs' are not a list of microbleeds with id, world_ras_mm and "
                             "diameter_mm.") from None
    return ids, world, diameter


def _detected_cmbs(magnitude: Volume, phase: Volume | None, detector: Any, device: str
                   ) -> TaskGenerator[tuple[list[int], np.ndarray, np.ndarray]]:
    """Ids, world RAS mm and equivalent diameters of the detector's microbleeds at its card's threshold."""
    from ..cmb.detect import run

    result = yield from run(magnitude, phase, detector, device=device)
    dets = result.detections
    world = np.array([d.world_ras_mm for d in dets], float).reshape(-1, 3)
    diameter = equivalent_diameter_mm(np.array([d.volume_mm3 for d in dets], float))
    return [d.id for d in dets], world, diameter


def items_from_cohort(cohort_dir: str | Path, source: str = "truth", encoder: str | None = None,
                      device: str = "auto") -> TaskGenerator[tuple[list[CSVDItem], list[str], list[str]]]:
    """Items, labels and centres of a cohort written by ``write_csvd_cohort`` (see the module docstring).

    Parameters
    ----------
    cohort_dir : path
        ``labels.tsv`` and one ``patient-NNNN/`` folder per row (``swi.nii.gz``, optional
        ``phase.nii.gz``, ``truth.json`` for ``source="truth"``).
    source : {"truth", "detector"}
        The true microbleeds (oracle) or the shipped detector's (end to end).
    encoder : {None, "detector"}
        Location-only bags, or bags with the detector's frozen patch embedding.
    device : str
        For the detector: ``auto``, ``cpu``, ``cuda`` or ``mps``.

    Raises
    ------
    InputFileError
        ``cohort_dir`` is not a cohort (no or a malformed ``labels.tsv``, a patient without
        its scan or truth), or a scan cannot be read or registered to MNI.
    """
    if source not in SOURCES or encoder not in ENCODERS:  # the caller's wiring, not the user's input
        raise ValueError(f"source must be one of {SOURCES} and encoder one of {ENCODERS}, got {source!r}, {encoder!r}")
    cohort_dir = Path(cohort_dir)
    rows = read_csvd_labels(cohort_dir)
    files = _patient_files(cohort_dir, rows, source)
    detector = None
    if source == "detector" or encoder == "detector":
        from ..cmb.model import load_detector

        detector = load_detector(device=device)
    total = _UNITS * len(rows)
    items: list[CSVDItem] = []
    for k, (row, (swi, phase_path)) in enumerate(zip(rows, files)):
        name, at = row["patient"], _UNITS * k
        yield Progress(at, total, f"{name} ({k + 1} of {len(rows)}): reading the scan")
        magnitude = load_volume(swi)
        phase = load_volume(phase_path) if phase_path is not None else None
        transform = yield from within(register_to_mni(magnitude, f"{name}/{swi.name}"), at + _REGISTER,
                                      _SOURCE - _REGISTER, total, name)
        if source == "truth":
            ids, world, diameter = _truth_cmbs(swi.parent / "truth.json")
        else:
            ids, world, diameter = yield from within(_detected_cmbs(magnitude, phase, detector, device),
                                                     at + _SOURCE, _EMBED - _SOURCE, total, f"{name}: detection")
        sites = make_sites(ids, world, transform.to_mni(world), diameter)
        yield Progress(at + _EMBED, total, f"{name}: {len(sites)} microbleeds into a bag")
        if encoder == "detector":
            scan = ScanChannels.from_scan(magnitude, phase) if sites else None
            bag = build_bag(name, sites, detector.net, scan)
        else:
            bag = build_bag(name, sites)
        items.append(CSVDItem(name, bag, tuple(s.region for s in sites), float(row["age"])))
    yield Progress(total, total, f"{len(items)} patients")
    return items, [row["subtype"] for row in rows], [row["centre"] for row in rows]
