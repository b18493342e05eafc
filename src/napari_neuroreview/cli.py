"""``neuroreview``: the command-line twin of every GUI action.

User mistakes (bad files, unavailable devices, mismatched scans) print one sentence on
stderr and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .core.errors import NeuroreviewError
from .core.progress import Progress, run_to_completion

EXIT_USER_ERROR = 2


def _print_progress(update: Progress) -> None:
    print(f"\r[{update.fraction:6.1%}] {update.message:<60}", end="", file=sys.stderr, flush=True)


def cmd_info(args: argparse.Namespace) -> int:
    """Print shape, voxel size, orientation code and affine as JSON."""
    from .core.io.nifti import load_volume, volume_info

    volume = load_volume(args.file)
    for sentence in volume.warnings:
        print(f"warning: {sentence}", file=sys.stderr)
    print(json.dumps(volume_info(volume), indent=2))
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
    import nibabel as nib
    import numpy as np

    from .core.io.atomic import write_with
    from .core.io.nifti import load_volume
    from .core.tasks import mask

    volume = load_volume(args.file)
    result = run_to_completion(mask.run(volume), None if args.quiet else _print_progress)
    if not args.quiet:
        print(file=sys.stderr)
    img = nib.Nifti1Image(result.mask.astype(np.uint8), volume.affine)
    img.set_sform(volume.affine, code=1)
    img.set_qform(volume.affine, code=1)
    write_with(args.out, lambda tmp: nib.save(img, str(tmp)))
    print(json.dumps({"out": str(args.out), "volume_ml": round(result.volume_ml, 2), "threshold": result.threshold}))
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
    """Open napari with files (or a sample case) and the Case widget docked."""
    from .viewer import open_viewer

    open_viewer(args.files, sample=args.sample, run=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and for --help)."""
    parser = argparse.ArgumentParser(prog="neuroreview", description=__doc__.splitlines()[0])
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

    from . import cli_cmb, cli_models, cli_networks

    cli_cmb.add_parser(sub)
    cli_networks.add_parser(sub)
    cli_models.add_parser(sub)

    p = sub.add_parser("view", help="open napari with scans and the Case widget")
    p.add_argument("files", nargs="*")
    p.add_argument("--sample", choices=["t1", "cmb", "rsfmri"], default=None)
    p.set_defaults(func=cmd_view)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neuroreview`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NeuroreviewError as exc:
        print(f"neuroreview: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
