"""ICA results on disk: our own folder, an FSL MELODIC folder, or a 4D map + a TSV.

Why three ways in: a radiologist's site may already run FSL MELODIC or another ICA tool,
and re-running ICA on their scans would give other components than the ones they have
looked at. So a folder that MELODIC wrote (``melodic_IC.nii.gz`` + ``melodic_mix``), or
any 4D map file (one volume per component) with a TSV of time courses (one column per
component), loads into the same :class:`ICAComponents` as the folder that
``neuroreview networks extract`` writes.

Our folder (the contract every reader relies on)::

    DIR/components.nii.gz   4D float32 (X, Y, Z, K) on the BOLD's grid, z-scored in the brain
    DIR/timecourses.tsv     T rows, K columns, header IC01 .. ICK (tab separated)
    DIR/networks.json       which component is which network, with its score, plus the
                            source's file name (never its path), its voxel sha256, TR,
                            number of components and method: the networks task's document,
                            read and written by ``core.tasks.networks.assignment_io``

Component numbering: ``component`` in JSON and every index in code is 0-based (the index
of the 4th axis of the map and of the TSV's columns); the TSV header and what a person
reads are the 1-based labels ``IC01`` .. (:func:`component_label`).

Reading is checked once for every consumer (:func:`load_ica`: match, compare, the cohort
loader, the widget): maps that are not blank, time courses that fit them, a plausible TR
(:func:`check_tr`, from networks.json); a broken folder gets one sentence naming the file,
the same whichever command read it. This module reads networks.json only for the TR and
never imports a task (the assignment is the networks task's: ``assignment_io``).

Writing is atomic per file and networks.json (the file that says the folder is complete)
is written last, so an interrupted write never leaves a folder that claims to be whole.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeometryError, InputFileError, OutputPathError
from .nifti import load_volume, volume_writer
from .strict_json import read_object

COMPONENTS_FILE = "components.nii.gz"
TIMECOURSES_FILE = "timecourses.tsv"
NETWORKS_FILE = "networks.json"
MELODIC_MAPS = "melodic_IC.nii.gz"
MELODIC_MIX = "melodic_mix"
#: The files of our folder; anything else in an existing output folder makes us refuse it.
OUR_FILES = (COMPONENTS_FILE, TIMECOURSES_FILE, NETWORKS_FILE)


@dataclass
class ICAComponents:
    """Spatial ICA components: one 3D map and one time course per component.

    Attributes
    ----------
    maps : numpy.ndarray
        ``(X, Y, Z, K)`` float32 on ``affine`` (the BOLD's grid for our own ICA). Zero
        outside the brain mask.
    affine : numpy.ndarray
        4 x 4 voxel -> world RAS+ mm.
    timecourses : numpy.ndarray
        ``(T, K)`` float64, column k is component k's time course.
    tr_s : float or None
        Repetition time in seconds when known (MELODIC folders and TSVs do not say).
    source : str
        Path it was loaded from (or the BOLD it was computed from).
    kind : str
        ``"neuroreview"``, ``"melodic"`` or ``"map+tsv"``.
    warnings : list of str
        Sentences about what was found and treated on loading (NaN voxels set to 0).
    info : dict
        How the components were computed (our ICA's settings and diagnostics); written
        into networks.json by ``neuroreview networks extract``. Empty for loaded folders.
    """

    maps: np.ndarray
    affine: np.ndarray
    timecourses: np.ndarray
    tr_s: float | None
    source: str
    kind: str
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_components(self) -> int:
        """K, the number of components."""
        return int(self.maps.shape[3])

    @property
    def n_volumes(self) -> int:
        """T, the number of time points."""
        return int(self.timecourses.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """The map grid's shape (X, Y, Z)."""
        return tuple(int(s) for s in self.maps.shape[:3])  # type: ignore[return-value]

    @property
    def brain_mask(self) -> np.ndarray:
        """Voxels where any component is non-zero: the ICA's brain mask, as written."""
        return np.any(self.maps != 0, axis=3)


def component_label(index: int) -> str:
    """The 1-based label a person reads for 0-based component ``index`` (0 -> ``IC01``)."""
    return f"IC{index + 1:02d}"


def parse_component(text: str, n_components: int, where: str = "component") -> int:
    """0-based index from ``"IC03"`` (1-based label) or ``"2"`` (0-based index).

    Raises InputFileError naming ``where`` when the text is neither or out of range.
    """
    raw = text.strip()
    try:
        index = int(raw[2:]) - 1 if raw.upper().startswith("IC") else int(raw)
    except ValueError:
        raise InputFileError(
            f"{where}: {text!r} is not a component; write a label like IC03 or a 0-based index like 2"
        ) from None
    if not 0 <= index < n_components:
        raise InputFileError(
            f"{where}: component {text!r} does not exist; there are {n_components} "
            f"(IC01..{component_label(n_components - 1)}, indices 0..{n_components - 1})"
        )
    return index


# --------------------------------------------------------------------------- loading


def load_ica(path: str | Path, timecourses: str | Path | None = None) -> ICAComponents:
    """Load ICA maps and time courses from any of the three supported layouts.

    Parameters
    ----------
    path : str or Path
        A folder written by ``neuroreview networks extract`` (``components.nii.gz``), an
        FSL MELODIC output folder (``melodic_IC.nii.gz`` + ``melodic_mix``), or a 4D map
        file (a ``melodic_IC.nii.gz`` file finds its ``melodic_mix`` next to it).
    timecourses : str or Path, optional
        The TSV (or whitespace-separated text) of time courses for a 4D map file: T rows,
        K columns, an optional header row of names.

    Returns
    -------
    ICAComponents

    Raises
    ------
    InputFileError
        One sentence: nothing ICA-like at ``path``, a 3D map, a missing mix file, a table
        with non-numeric, missing or NaN cells, fewer time points than components.
    GeometryError
        The map's number of components differs from the time courses'.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: does not exist")
    if path.is_dir():
        if (path / COMPONENTS_FILE).exists():
            tsv = path / TIMECOURSES_FILE
            if not tsv.exists():
                raise InputFileError(f"{path}: has {COMPONENTS_FILE} but not its {TIMECOURSES_FILE}")
            comps = _load_pair(path / COMPONENTS_FILE, tsv, kind="neuroreview", source=path)
            comps.tr_s = _tr_from_networks_json(path / NETWORKS_FILE)
            return comps
        if (path / MELODIC_MAPS).exists() or (path / MELODIC_MIX).exists():
            return _load_melodic(path / MELODIC_MAPS, path / MELODIC_MIX, source=path)
        raise InputFileError(
            f"{path}: is neither a neuroreview ICA folder ({COMPONENTS_FILE} + {TIMECOURSES_FILE}) "
            f"nor an FSL MELODIC folder ({MELODIC_MAPS} + {MELODIC_MIX})"
        )
    if timecourses is None:
        if path.name == MELODIC_MAPS:
            return _load_melodic(path, path.parent / MELODIC_MIX, source=path.parent)
        raise InputFileError(
            f"{path}: a 4D component map needs its time courses too (a TSV with one column per component)"
        )
    return _load_pair(path, Path(timecourses), kind="map+tsv", source=path)


def _load_melodic(maps: Path, mix: Path, source: Path) -> ICAComponents:
    if not maps.exists():
        raise InputFileError(f"{source}: the MELODIC folder has no {MELODIC_MAPS} (the component maps)")
    if not mix.exists():
        raise InputFileError(
            f"{source}: the MELODIC folder has no {MELODIC_MIX} file (the component time courses), "
            "so its components cannot be loaded"
        )
    return _load_pair(maps, mix, kind="melodic", source=source)


def _load_pair(maps_path: Path, table_path: Path, kind: str, source: Path) -> ICAComponents:
    volume = load_volume(maps_path)
    if not volume.is_4d:
        raise InputFileError(
            f"{maps_path}: is a 3D image; component maps must be 4D, one volume per component"
        )
    maps = np.asarray(volume.data, dtype=np.float32)
    table = read_timecourse_table(table_path)
    k_maps, k_table = maps.shape[3], table.shape[1]
    if k_maps != k_table:
        raise GeometryError(
            f"{maps_path}: holds {k_maps} component maps but {table_path.name} has {k_table} "
            "time-course columns; they must be one per component"
        )
    if table.shape[0] < k_table:
        raise InputFileError(
            f"{table_path}: has {table.shape[0]} time points for {k_table} components; ICA cannot "
            "give more components than volumes, so this is not an ICA time-course table"
        )
    return check_components(ICAComponents(
        maps=maps, affine=volume.affine, timecourses=table, tr_s=None, source=str(source), kind=kind,
        warnings=list(volume.warnings),
    ))


def read_timecourse_table(path: str | Path) -> np.ndarray:
    """A T x K table of numbers from a TSV / CSV / whitespace text file.

    Tabs, commas or runs of spaces separate cells (MELODIC's ``melodic_mix`` uses
    spaces). A first row in which no cell is a number is a header and is skipped. Every
    other cell must be a finite number, every row as long as the first.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: does not exist")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, not a time-course table")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise InputFileError(f"{path}: could not be read as a text table ({exc})") from None
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise InputFileError(f"{path}: is empty; it should hold one time-course column per component")
    delimiter = "\t" if "\t" in lines[0][1] else "," if "," in lines[0][1] else None
    rows = [(n, [cell.strip() for cell in line.strip().split(delimiter)]) for n, line in lines]
    if not any(_is_number(cell) for cell in rows[0][1]):
        rows = rows[1:]
    if not rows:
        raise InputFileError(f"{path}: has a header but no time points")
    width = len(rows[0][1])
    values = np.empty((len(rows), width), dtype=np.float64)
    for r, (n, cells) in enumerate(rows):
        if len(cells) != width:
            raise InputFileError(f"{path}: line {n} has {len(cells)} cells where the first data row has {width}")
        for c, cell in enumerate(cells):
            try:
                value = float(cell)
            except ValueError:
                raise InputFileError(
                    f"{path}: line {n}, column {c + 1} is {cell!r}, not a number"
                ) from None
            if not math.isfinite(value):
                raise InputFileError(f"{path}: line {n}, column {c + 1} is {cell!r}; time courses must be finite")
            values[r, c] = value
    return values


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


#: Plausible repetition times, seconds. Why these bounds: the fastest whole-brain EPI
#: (magnetic resonance encephalography, multiband) samples at about 0.1 s; above 10 s the
#: Nyquist frequency (0.05 Hz) falls inside the 0.01-0.1 Hz band that carries resting-state
#: networks, so their time courses cannot be resolved. A value outside is a broken header.
TR_RANGE_S: tuple[float, float] = (0.1, 10.0)


def check_tr(tr_s: Any, where: str) -> float:
    """``tr_s`` as a float when it is a plausible repetition time (:data:`TR_RANGE_S`).

    Raises InputFileError naming ``where`` (a file or an option) for NaN, infinite,
    negative, zero or implausible values: one would otherwise flow into the spectral
    features and into JSON as ``NaN``.
    """
    low, high = TR_RANGE_S
    try:
        value = float(tr_s)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(tr_s, bool) or not (math.isfinite(value) and low <= value <= high):
        raise InputFileError(
            f"{where}: the repetition time {tr_s!r} s is not plausible; a BOLD TR lies between {low:g} and {high:g} s"
        )
    return value


def _tr_from_networks_json(path: Path) -> float | None:
    if not path.exists():
        return None
    tr = read_object(path, NETWORKS_FILE).get("tr_s")
    return None if tr is None else check_tr(tr, str(path))


def check_components(comps: ICAComponents) -> ICAComponents:
    """Refuse component maps that hold (almost) nothing: nothing could be matched or compared.

    Why here: every reader of an ICA folder (match, compare, the cohort loader, the
    widget) goes through :func:`load_ica`, so one check gives one sentence everywhere.
    """
    if int(comps.brain_mask.sum()) < 10:
        raise InputFileError(
            f"{comps.source}: the component maps are zero almost everywhere, so nothing can be matched or compared"
        )
    return comps


# --------------------------------------------------------------------------- writing


def check_output_folder(out_dir: str | Path, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Refuse an ICA output folder we must not or cannot write, before any work.

    Why: ``--out`` pointed by mistake at a folder of scans must not get ICA files mixed
    into it, let alone overwrite something; and an ICA must not be spent on a folder that
    cannot be written. Refused: a file, a folder holding anything but our ICA files, a
    folder whose ICA files include an input of the command (``inputs``), a missing or
    unwritable parent folder. A folder we wrote before is fine (rewritten).
    """
    from .outputs import Output, check_outputs

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"{out_dir}: is a file; the ICA output must be a folder")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OUR_FILES and not p.name.startswith("."))
        if foreign:
            shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise OutputPathError(
                f"{out_dir}: already holds files that are not ICA output ({shown}); choose an empty or new folder"
            )
        check_outputs([Output(out_dir / name, what=f"ICA {name}") for name in OUR_FILES], inputs=inputs)
    else:
        check_outputs([Output(out_dir, what="ICA folder")], inputs=inputs)
    return out_dir


def write_ica(out_dir: str | Path, comps: ICAComponents, networks_json: str | None = None) -> list[Path]:
    """Write components.nii.gz, timecourses.tsv and networks.json into ``out_dir``.

    Everything is first written into a hidden temporary folder next to ``out_dir`` and
    then moved in file by file (each move atomic); the old networks.json is removed
    before the first move and the new one moved in last. So no file is ever truncated,
    and a folder with a networks.json is always complete and consistent.

    Parameters
    ----------
    out_dir : str or Path
        Created if missing; refused if it holds files other than ours.
    comps : ICAComponents
    networks_json : str or None
        The text of networks.json (``core.tasks.networks.assignment_io.write_ica_folder``
        makes it); ``None`` writes maps and time courses only (and removes a stale one).

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir = check_output_folder(out_dir)
    if comps.maps.ndim != 4 or comps.timecourses.shape[1] != comps.maps.shape[3]:
        raise GeometryError(
            f"{out_dir}: cannot write {comps.maps.shape} maps with {comps.timecourses.shape} time courses"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        volume_writer(comps.maps, comps.affine, dtype=np.float32)(staging / COMPONENTS_FILE)
        (staging / TIMECOURSES_FILE).write_text(timecourse_tsv(comps.timecourses), encoding="utf-8")
        names = [COMPONENTS_FILE, TIMECOURSES_FILE]
        if networks_json is not None:
            (staging / NETWORKS_FILE).write_text(networks_json, encoding="utf-8")
            names.append(NETWORKS_FILE)
        for name in names:
            with open(staging / name, "rb+") as handle:
                os.fsync(handle.fileno())
        out_dir.mkdir(parents=True, exist_ok=True)
        # networks.json goes first and comes back last: stale matching must never sit next
        # to new maps, and a folder without it is visibly unfinished (extract --cohort redoes it).
        (out_dir / NETWORKS_FILE).unlink(missing_ok=True)
        written = []
        for name in names:
            os.replace(staging / name, out_dir / name)
            written.append(out_dir / name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def timecourse_tsv(timecourses: np.ndarray) -> str:
    """T x K array as TSV text with the header IC01 .. ICK."""
    timecourses = np.asarray(timecourses, dtype=np.float64)
    header = "\t".join(component_label(k) for k in range(timecourses.shape[1]))
    body = "\n".join("\t".join(f"{v:.7g}" for v in row) for row in timecourses)
    return f"{header}\n{body}\n"
