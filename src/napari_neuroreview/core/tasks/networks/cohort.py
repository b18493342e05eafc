"""Read a pre/post cohort (or one scan) as the network inputs the model consumes.

Cohort layout (see ``core.phantoms.rsfmri``)::

    DIR/sub-001/ses-pre/bold.nii.gz      4D BOLD
    DIR/sub-001/ses-pre/ica/             optional: written by `neuroreview networks extract`
    DIR/sub-001/ses-post/...

For each session the ICA is read from ``ica/`` when it is complete (its networks.json
exists: overrides made by a radiologist are kept), and otherwise computed in memory
from ``bold.nii.gz`` with the same settings as ``extract`` (nothing is written).

**Labels come from the folder names only** (``ses-pre`` = 0, ``ses-post`` = 1); the
patient id is the ``sub-*`` folder. Nothing else in a session folder is opened: in
particular ``truth.json`` and ``truth_maps.nii.gz`` (the phantom's ground truth) are
never read, so a model under evaluation cannot see the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError, InsufficientDataError
from ...io import strict_json
from ...io.ica_folder import ICAComponents
from ...progress import Progress, TaskGenerator, relay
from . import DEFAULT_N_COMPONENTS, DEFAULT_SMOOTHING_FWHM_MM
from .features import ScanInputs
from .matching import Assignment

__all__ = ["STATES", "Session", "check_trainable", "cohort_sessions", "describe_cohort", "is_simulated", "load_cohort",
           "load_scan", "load_session", "session_state"]

#: Session folder name -> state.
STATES: dict[str, str] = {"ses-pre": "pre", "ses-post": "post"}
BOLD_FILE = "bold.nii.gz"
ICA_FOLDER = "ica"


def session_state(session: Path) -> str:
    """``'pre'`` or ``'post'`` from a session folder's name.

    Raises
    ------
    InputFileError
        If the folder is not named ``ses-pre`` or ``ses-post``.
    """
    try:
        return STATES[session.name]
    except KeyError:
        raise InputFileError(
            f"{session}: a cohort session must be named ses-pre or ses-post (the label is the folder name)"
        ) from None


def cohort_sessions(cohort: str | Path) -> list[Path]:
    """Every ``sub-*/ses-*`` folder with a BOLD series or a finished ICA folder, sorted.

    Raises
    ------
    InputFileError
        If ``cohort`` is not a folder or holds no usable session.
    """
    cohort = Path(cohort)
    if not cohort.is_dir():
        raise InputFileError(f"{cohort}: is not a folder; a cohort is a folder of sub-*/ses-pre|ses-post/")
    sessions = sorted(
        p for p in cohort.glob("sub-*/ses-*")
        if p.is_dir() and ((p / BOLD_FILE).is_file() or (p / ICA_FOLDER / "networks.json").is_file())
    )
    if not sessions:
        raise InputFileError(f"{cohort}: holds no sub-*/ses-*/ with {BOLD_FILE} or {ICA_FOLDER}/networks.json")
    return sessions


def check_trainable(cohort: str | Path, folds: int = 0) -> None:
    """Refuse a cohort too small to train or cross-validate on, from its folder names alone.

    Why here and first: loading a cohort runs an ICA per unfinished session (minutes);
    the labels and patients are the folder names, so a cohort with only ``ses-pre``
    sessions, or fewer patients than ``folds``, can be refused before any of that.

    Raises
    ------
    InputFileError
        If the cohort is not a cohort (see :func:`cohort_sessions`, :func:`session_state`).
    InsufficientDataError
        If it lacks pre or post sessions, or holds fewer patients than ``folds`` (when >= 2).
    """
    sessions = cohort_sessions(cohort)
    states = {session_state(s) for s in sessions}
    missing = [state for state in STATES.values() if state not in states]
    if missing:
        raise InsufficientDataError(
            f"{cohort}: holds no ses-{missing[0]} session; a pre/post model needs both pre and post scans")
    n_patients = len({s.parent.name for s in sessions})
    if folds >= 2 and n_patients < folds:
        raise InsufficientDataError(
            f"{cohort}: {n_patients} patients cannot fill {folds} folds; use at most {n_patients} folds")


def _ica_folder(path: Path) -> Path | None:
    """The finished ICA folder for ``path`` (itself, or its ``ica/``), if any."""
    for folder in (path, path / ICA_FOLDER):
        if (folder / "networks.json").is_file():
            return folder
    return None


@dataclass
class Session:
    """One scan's ICA, its network assignment and where it came from.

    Attributes
    ----------
    path : str
        What the user gave (a folder or a BOLD file).
    comps : ICAComponents
        The components (maps on the scan's own grid, time courses).
    assignment : Assignment
        Which component is which network (with the radiologist's overrides, if stored).
    tr_s : float
        Repetition time of the time courses, seconds.
    ica_folder : str or None
        The ICA folder the components were read from (None when computed in memory):
        where an override can be stored.
    warnings : list of str
        Sentences the user must see (unconfident matches, NaN voxels set to 0, ...).
    source_sha256 : str
        The voxel sha256 of the BOLD the components came from (as networks.json records
        it; empty when unknown, e.g. a MELODIC folder): names the scan in exports
        without its path.
    """

    path: str
    comps: ICAComponents
    assignment: Assignment
    tr_s: float
    ica_folder: str | None = None
    warnings: list[str] = field(default_factory=list)
    source_sha256: str = ""

    def network_map(self, network: str) -> np.ndarray:
        """The network's component map on the scan's grid, sign-applied (network positive)."""
        match = self.assignment.matches[network]
        return self.comps.maps[..., match.component].astype(np.float32) * np.float32(match.sign)

    def network_timecourse(self, network: str) -> np.ndarray:
        """The network's time course (T,), sign-applied and z-scored."""
        match = self.assignment.matches[network]
        tc = self.comps.timecourses[:, match.component].astype(np.float64) * match.sign
        sd = tc.std()
        return (tc - tc.mean()) / sd if sd > 0 else tc - tc.mean()

    def with_assignment(self, assignment: Assignment) -> Session:
        """A copy with another assignment (after a radiologist's override)."""
        return Session(self.path, self.comps, assignment, self.tr_s, self.ica_folder, list(self.warnings),
                       self.source_sha256)


def load_session(
    path: str | Path, *, n_components: int = DEFAULT_N_COMPONENTS, seed: int = 0,
    smoothing_fwhm_mm: float | None = DEFAULT_SMOOTHING_FWHM_MM, tr_s: float | None = None,
) -> TaskGenerator[Session]:
    """Read (or compute) one scan's components and network assignment.

    ``path`` may be an ICA folder written by ``neuroreview networks extract`` (its
    networks.json, with any override, is used as stored), a FSL MELODIC folder
    (``melodic_IC.nii.gz`` + ``melodic_mix``: matched here), a session folder holding
    ``ica/`` or ``bold.nii.gz``, or a 4D BOLD file (ICA and matching run in memory;
    nothing is written).
    """
    from ...io.ica_folder import MELODIC_MAPS, check_tr, load_ica
    from ...io.nifti import load_volume
    from .assignment_io import load_ica_folder, read_networks_doc
    from .ica import run_ica
    from .matching import match_networks

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: does not exist")
    folder = _ica_folder(path) if path.is_dir() else None
    if folder is not None:
        yield Progress(0, 1, f"Reading the ICA of {path.name}")
        comps, assignment = load_ica_folder(folder)
        sha256 = str(read_networks_doc(folder).get("source_sha256") or "")
        tr = tr_s or comps.tr_s
        where = f"{folder / 'networks.json'}"
        if tr is None and (path / BOLD_FILE).is_file():
            tr, where = load_volume(path / BOLD_FILE).tr_s, str(path / BOLD_FILE)
    elif path.is_dir() and (path / MELODIC_MAPS).is_file():
        yield Progress(0, 1, f"Reading the MELODIC output {path.name}")
        comps = load_ica(path)
        assignment = match_networks(comps)
        tr, where = tr_s or comps.tr_s, str(path)
        sha256 = ""
        folder = path  # an override is stored beside MELODIC's files, in networks.json
    else:
        bold_path = path / BOLD_FILE if path.is_dir() else path
        if not bold_path.is_file():
            raise InputFileError(
                f"{path}: holds neither an ICA folder (networks.json), a MELODIC output (melodic_IC.nii.gz) "
                "nor bold.nii.gz"
            )
        bold = load_volume(bold_path)
        if tr_s is None and bold.tr_s is not None:
            check_tr(bold.tr_s, str(bold_path))  # before the ICA is spent on a broken header
        comps = yield from run_ica(bold, n_components=n_components, seed=seed, smoothing_fwhm_mm=smoothing_fwhm_mm)
        assignment = match_networks(comps)
        tr, where = tr_s or bold.tr_s, str(bold_path)
        sha256 = bold.sha256
    if tr_s is not None:
        tr, where = tr_s, "--tr"
    if tr is None:
        raise InputFileError(
            f"{path}: the repetition time is unknown (MELODIC folders and TSVs do not say it); give it with --tr"
        )
    tr = check_tr(tr, where)
    warnings = list(comps.warnings)
    unconfident = [name for name, m in assignment.matches.items() if not m.confident]
    if unconfident:
        warnings.append(f"{path.name}: the match of {', '.join(unconfident)} is not confident; check it")
    return Session(str(path), comps, assignment, float(tr), str(folder) if folder else None, warnings, sha256)


def load_scan(path: str | Path, *, n_components: int = DEFAULT_N_COMPONENTS, seed: int = 0,
              smoothing_fwhm_mm: float | None = DEFAULT_SMOOTHING_FWHM_MM, tr_s: float | None = None,
              ) -> TaskGenerator[tuple[ScanInputs, list[str]]]:
    """Network inputs of one scan, from whatever ``path`` is; returns (inputs, warnings).

    ``path`` is anything :func:`load_session` reads. The state is unknown (``None``);
    :func:`load_cohort` sets it from the folder name.
    """
    from .matching import network_inputs

    session = yield from load_session(path, n_components=n_components, seed=seed,
                                      smoothing_fwhm_mm=smoothing_fwhm_mm, tr_s=tr_s)
    inputs = network_inputs(session.comps, session.assignment)
    return ScanInputs(inputs, session.tr_s, source=str(path)), list(session.warnings)


def load_cohort(cohort: str | Path, *, n_components: int = DEFAULT_N_COMPONENTS, seed: int = 0,
                smoothing_fwhm_mm: float | None = DEFAULT_SMOOTHING_FWHM_MM, sessions: Sequence[Path] | None = None
                ) -> TaskGenerator[tuple[list[ScanInputs], list[str]]]:
    """Every session of a cohort as :class:`ScanInputs` (patient, state from the folders).

    Returns ``(scans, warnings)``; yields one :class:`Progress` per session (more while an
    ICA runs). ``sessions`` restricts the load to some session folders.
    """
    cohort = Path(cohort)
    folders = list(sessions) if sessions is not None else cohort_sessions(cohort)
    for folder in folders:
        session_state(folder)  # every name checked before any ICA is spent
    scans: list[ScanInputs] = []
    warnings: list[str] = []
    total = len(folders)
    for i, folder in enumerate(folders):
        name = f"{folder.parent.name}/{folder.name}"
        yield Progress(i, total, f"Session {i + 1}/{total}: {name}")
        task = load_scan(folder, n_components=n_components, seed=seed, smoothing_fwhm_mm=smoothing_fwhm_mm)
        scan, found = yield from relay(
            task, lambda u, i=i, name=name: Progress(i, total, f"Session {i + 1}/{total}: {name}: {u.message}"))
        scan.patient = folder.parent.name
        scan.state = session_state(folder)
        scan.source = name
        scans.append(scan)
        warnings += found
    yield Progress(total, total, f"{total} sessions loaded")
    return scans, warnings


def describe_cohort(cohort: str | Path, scans: Sequence[Any] = ()) -> str:
    """One sentence for a model card: where the training data came from.

    Reads ``cohort.json`` (the phantom writer's settings: patients, seed, effect size,
    volumes, voxel size), which holds no per-scan truth; falls back to counting ``scans``.
    """
    cohort = Path(cohort)
    settings = _phantom_settings(cohort)
    n_patients = len({getattr(s, "patient", "") for s in scans}) or settings.get("n_patients", "?")
    keys = ("seed", "effect_size", "n_volumes", "tr_s", "voxel_mm")
    detail = ", ".join(f"{k} {settings[k]}" for k in keys if k in settings)
    kind = "simulated rs-fMRI phantoms (core.phantoms.rsfmri)" if settings else "rs-fMRI scans"
    return f"{kind} from {cohort.name}: {n_patients} patients, pre and post" + (f" ({detail})" if detail else "")


def is_simulated(cohort: str | Path) -> bool:
    """Whether a cohort was written by the phantom generator (its ``cohort.json`` of settings).

    Why: a model trained on it is demo weights (``registry.DEMO_NOTE`` in its card), one
    trained on real scans is not; the widgets read that flag from the card.
    """
    return bool(_phantom_settings(Path(cohort)))


def _phantom_settings(cohort: Path) -> dict[str, Any]:
    """The phantom writer's ``cohort.json`` (no per-scan truth), or {} for a cohort of real scans."""
    try:
        loaded = strict_json.loads((cohort / "cohort.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):  # JSONDecodeError, NaN: not the phantom writer's
        return {}
    return loaded if isinstance(loaded, dict) else {}
