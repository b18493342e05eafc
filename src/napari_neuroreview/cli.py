"""``neuroreview``: the command-line twin of every GUI action.

User mistakes (bad files, unavailable devices, mismatched scans, bad arguments, output
paths that cannot be written) print one sentence on stderr and exit with status 2, with
nothing written; anything else is a bug and keeps its traceback. Output paths are checked
before any input is read; JSON on stdout and in files is strict (no NaN).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from .core.config_fields import RANGES
from .core.errors import DeviceError, InputFileError, NeuroreviewError
from .core.progress import Progress, run_to_completion

T = TypeVar("T")
EXIT_USER_ERROR = 2
#: Exit status after the reader of stdout went away (``neuroreview info scan | head``): 128 + SIGPIPE.
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one sentence (the house rule for user mistakes), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def bounded_float(low: float, high: float, what: str) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in [low, high], else one sentence.

    Why: ``float("nan")`` parses, and a NaN threshold keeps nothing or everything
    without a word; a range check in the parser refuses it before any work.
    """
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what} between {low:g} and {high:g}")
        return value
    parse.__name__ = what  # argparse names the type in some messages
    return parse


def bounded_int(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse ``type``: an integer in [low, high], else one sentence (like :func:`bounded_float`).

    Why: a count (components, volumes, folds) out of range either fails deep inside a
    library with a traceback or runs for hours; the parser refuses it before any work.
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what} between {low} and {high}")
        return value
    parse.__name__ = what
    return parse


def name_list(names: Callable[[], Sequence[str]], what: str, cohort: str) -> Callable[[str], tuple[str, ...]]:
    """An argparse ``type``: comma-separated names out of ``names()`` (read when parsing, so the
    parser stays light), duplicates dropped in order, else one sentence."""
    def parse(text: str) -> tuple[str, ...]:
        known = tuple(names())
        chosen = tuple(c.strip() for c in text.split(",") if c.strip())
        unknown = [c for c in chosen if c not in known]
        if not chosen or unknown:
            raise argparse.ArgumentTypeError(
                f"{(unknown or [text])[0]!r} is not a {what} of {cohort} ({what}s: {', '.join(known)})")
        return tuple(dict.fromkeys(chosen))
    parse.__name__ = f"{what} list"
    return parse


def add_cohort_arguments(p: argparse.ArgumentParser, groups: str, group_type: Callable[[str], tuple[str, ...]],
                         group_help: str, voxel_help: str, workers_help: str) -> None:
    """The arguments every ``... phantoms`` command shares (``--out --n --seed``, the groups,
    ``--voxel-size --workers --resume --quiet``), read by :func:`write_cohort_command`."""
    p.add_argument("--out", required=True, help="cohort folder (patient-NNNN/ and labels.tsv)")
    p.add_argument("--n", type=bounded_int(1, 10_000, "number of patients"), default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(f"--{groups}", type=group_type, default=("A", "B", "C"), help=group_help)
    p.add_argument("--voxel-size", nargs=3, type=bounded_float(0.3, 4.0, "voxel size in mm"), default=None,
                   metavar=("X", "Y", "Z"), help=voxel_help)
    p.add_argument("--workers", type=bounded_int(1, 64, "number of worker processes"), default=1, help=workers_help)
    p.add_argument("--resume", action="store_true",
                   help="keep the patients already complete in --out (an interrupted run taken up again)")
    p.add_argument("--quiet", action="store_true")


def write_cohort_command(args: argparse.Namespace, writer: Callable[..., list[Path]], groups: str) -> int:
    """A ``... phantoms`` command: ``writer(out, n, seed, groups, workers=, resume=, **overrides)`` into
    ``--out`` (a folder: a file there is refused, like a ``labels.tsv`` that is an input), one JSON line."""
    from .core.errors import OutputPathError
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs, disk_errors

    out, chosen = Path(args.out), tuple(getattr(args, groups))
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: is a file; the cohort is written into a folder")
    check_outputs([Output(out / "labels.tsv", (".tsv",), "labels.tsv")] if out.is_dir()
                  else [Output(out, what="cohort folder")])
    overrides = {"voxel_size": tuple(args.voxel_size)} if args.voxel_size else {}
    if not args.quiet:
        print(f"Rendering {args.n} patients of {groups} {', '.join(chosen)} into {out}", file=sys.stderr)
    with disk_errors([out]):
        paths = writer(out, args.n, args.seed, chosen, workers=args.workers, resume=args.resume, **overrides)
    print(strict_json.dumps({"out": str(args.out), "patients": args.n, groups: list(chosen), "files": len(paths),
                             **({"voxel_size": list(args.voxel_size)} if args.voxel_size else {})}))
    return 0


def config_type(name: str) -> Callable[[str], float]:
    """An argparse ``type`` for a config setting, in the range the widgets' forms use.

    The range is ``core.config_fields.RANGES[name]``; the option's ``default`` is None, so
    :func:`config_from_args` leaves the config dataclass's own default in place (read here,
    the dataclass would import torch for every command, ``--help`` included).
    """
    bounds = RANGES[name]
    if isinstance(bounds.low, int) and isinstance(bounds.high, int):
        return bounded_int(bounds.low, bounds.high, bounds.what)
    return bounded_float(bounds.low, bounds.high, bounds.what)


def config_from_args(config: type[T], args: argparse.Namespace, **options: str) -> T:
    """The task's config dataclass from the options given (``field="dest"``); the others keep its defaults.

    Why: the dataclass states each default once, for the CLI, the widgets and the core.
    """
    given = {name: getattr(args, dest) for name, dest in options.items() if getattr(args, dest) is not None}
    return config(**given)


def check_files_exist(paths: Sequence[str | None]) -> None:
    """Refuse a missing input before anything slow starts (napari, a model).

    An input is a file, or a DICOM series: a folder holding DICOM, or ``FOLDER::SERIES``
    (``core.io.dicom``); which series and whether it reads are the reader's to say.
    """
    from .core.io.dicom import folder_holds_dicom, split_selector

    for path in paths:
        if path is None:
            continue
        where, _series = split_selector(path)
        if where.is_file() or (where.is_dir() and folder_holds_dicom(where)):
            continue
        problem = "is a folder that holds no DICOM image" if where.is_dir() else "does not exist"
        raise InputFileError(f"{path} {problem}")


def _print_progress(update: Progress) -> None:
    print(f"\r[{update.fraction:6.1%}] {update.message:<60}", end="", file=sys.stderr, flush=True)


def cmd_info(args: argparse.Namespace) -> int:
    """Print shape, voxel size, orientation code and affine as JSON."""
    from .core.io import strict_json
    from .core.io.nifti import constant_value, load_volume, volume_info

    volume = load_volume(args.file)
    value = constant_value(volume)
    if value is not None:
        volume.warnings.append(f"{volume.path.name}: every voxel is {value:g}; the image holds no contrast to analyse")
    for sentence in volume.warnings:
        print(f"warning: {sentence}", file=sys.stderr)
    print(strict_json.dumps(volume_info(volume), indent=2))
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    """Write the simulated sample cases (deterministic) into a folder."""
    from .core.phantoms.samples import write_sample_data

    for path in write_sample_data(Path(args.out), args.case or None):
        print(path)
    return 0


def cmd_device(args: argparse.Namespace) -> int:
    """Say which compute device a task would use."""
    from .core.device import resolve_device

    print(resolve_device(args.device).label)
    return 0


def cmd_mask(args: argparse.Namespace) -> int:
    """Foreground mask of a scan, saved as NIfTI on the scan's grid."""
    import numpy as np

    from .core.io import strict_json
    from .core.io.nifti import load_volume, volume_writer
    from .core.io.outputs import Output, check_outputs, write_together
    from .core.tasks import mask

    check_outputs([Output(args.out, (".nii.gz", ".nii"), "mask")], inputs=[args.file])
    volume = load_volume(args.file)
    result = run_to_completion(mask.run(volume), None if args.quiet else _print_progress)
    if not args.quiet:
        print(file=sys.stderr)
    write_together([(args.out, volume_writer(result.mask, volume.affine, dtype=np.uint8, descrip="napari-neuroreview mask"))])
    print(strict_json.dumps({"out": str(args.out), "volume_ml": round(result.volume_ml, 2), "threshold": result.threshold}))
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    """Summarise an existing annotation store, or (``--verify``) check its audit chain."""
    from .core.errors import StoreError
    from .core.store import CaseStore

    with CaseStore.open_existing(args.store) as store:  # a mistyped --store creates nothing
        if not args.verify:
            print(json.dumps(store.summary(), indent=2))
            return 0
        report = store.verify()
        print(json.dumps({"path": str(store.path), **report.as_dict()}, indent=2))
    if not report.ok:
        raise StoreError(f"The audit log of {store.path} fails verification: {report.problem}.")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """Open napari with files (or a sample case) and the Case widget docked.

    The files and the display are checked first: napari takes seconds to start, and
    without a display Qt's own message (about "xcb") does not say what to do.
    """
    check_files_exist(args.files)
    check_display()
    from .viewer import open_viewer

    open_viewer(args.files, sample=args.sample, run=True)
    return 0


def check_display() -> None:
    """Refuse to start napari on Linux without a display (unless Qt is told to draw offscreen)."""
    if not sys.platform.startswith("linux"):
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal"):
        return
    raise DeviceError("neuroreview view needs a display; run it in a desktop session or under "
                           "xvfb-run (xvfb-run -a neuroreview view ...)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and for --help)."""
    parser = _Parser(prog="neuroreview", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="shape, voxel size, orientation and affine of a scan, as JSON")
    p.add_argument("file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("sample-data", help="write the simulated sample cases")
    p.add_argument("--out", default="sample_data")
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("device", help="which compute device would be used")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_device)

    p = sub.add_parser("mask", help="foreground mask (Otsu + largest component) as NIfTI")
    p.add_argument("file")
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_mask)

    p = sub.add_parser("store", help="summary of an annotation store")
    p.add_argument("--store", default=None, help="SQLite file (default: the user data folder)")
    p.add_argument("--verify", action="store_true", help="check the audit log's hash chain (exit 2 if broken)")
    p.set_defaults(func=cmd_store)

    from . import cli_cmb, cli_csvd, cli_metastasis, cli_models, cli_networks, cli_report, cli_stroke

    cli_cmb.add_parser(sub)
    cli_csvd.add_parser(sub)
    cli_metastasis.add_parser(sub)
    cli_stroke.add_parser(sub)
    cli_networks.add_parser(sub)
    cli_models.add_parser(sub)
    cli_report.add_parser(sub)

    p = sub.add_parser("view", help="open napari with scans and the Case widget")
    p.add_argument("files", nargs="*")
    p.add_argument("--sample", choices=["t1", "cmb", "rsfmri", "metastasis", "stroke"], default=None)
    p.set_defaults(func=cmd_view)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuroreview`` console script.

    Returns the exit status: 0, 2 for a user mistake (one sentence on stderr), 141 when
    the reader of stdout went away (``| head``), quietly.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a bad argument (2, one sentence printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except NeuroreviewError as exc:
        print(f"neuroreview: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # pytest's captured stdout has no real descriptor
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
