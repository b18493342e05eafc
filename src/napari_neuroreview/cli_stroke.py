"""``neuroreview stroke ...``: stroke risk from brain MRI and a clinical table (issue 13).

``stroke phantoms`` writes a stroke cohort (``core.phantoms.stroke``, imported lazily: the
run-time code never imports the simulators): T1 + FLAIR per subject, ``clinical.tsv``,
``labels.tsv`` apart (the labelled subjects' written label) and ``truth.tsv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli import bounded_float, bounded_int
from .core.errors import InsufficientDataError, OutputPathError

#: The files a cohort's folder gets besides the subjects' folders.
COHORT_TABLES: tuple[str, ...] = ("clinical.tsv", "labels.tsv", "truth.tsv")


def cmd_phantoms(args: argparse.Namespace) -> int:
    """Write a stroke cohort into ``--out``; one JSON line (out, subjects, labelled, files)."""
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs, disk_errors

    if args.labelled > args.n:
        raise InsufficientDataError(f"--labelled {args.labelled} is more than the --n {args.n} subjects of the cohort.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: is a file; the cohort is written into a folder")
    check_outputs([Output(out / name, (".tsv",), name) for name in COHORT_TABLES] if out.is_dir()
                  else [Output(out, what="cohort folder")])
    from .core.phantoms.stroke import write_stroke_cohort

    if not args.quiet:
        print(f"Rendering {args.n} subjects ({args.labelled} labelled) at {args.voxel_mm:g} mm into {out}",
              file=sys.stderr)
    with disk_errors([out]):
        paths = write_stroke_cohort(out, args.n, args.labelled, args.seed, voxel_mm=args.voxel_mm,
                                    image_volumes_in_table=args.image_volumes_in_table, workers=args.workers,
                                    resume=args.resume)
    print(strict_json.dumps({"out": str(args.out), "subjects": args.n, "labelled": args.labelled,
                             "voxel_mm": args.voxel_mm, "image_volumes_in_table": args.image_volumes_in_table,
                             "files": len(paths)}))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``neuroreview stroke`` and its subcommands."""
    stroke = sub.add_parser("stroke", help="stroke risk from brain MRI and a clinical table").add_subparsers(
        dest="stroke_command", required=True)

    p = stroke.add_parser("phantoms", help="write a simulated stroke cohort (T1 + FLAIR per subject, clinical.tsv, "
                                           "labels.tsv apart, truth.tsv)")
    p.add_argument("--out", required=True, help="cohort folder (sub-NNNNN/, clinical.tsv, labels.tsv, truth.tsv)")
    p.add_argument("--n", type=bounded_int(1, 100_000, "number of subjects"), default=100,
                   help="subjects in all (default 100)")
    p.add_argument("--labelled", type=bounded_int(0, 100_000, "number of labelled subjects"), default=20,
                   help="how many of them are labelled (the last ones; the others are for pretraining; default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-volumes-in-table", action="store_true",
                   help="add image-derived WMH, brain and ventricle volumes (ml) to clinical.tsv, as the study's "
                        "table held them")
    p.add_argument("--voxel-mm", type=bounded_float(1.0, 6.0, "voxel size in mm"), default=4.0,
                   help="isotropic voxel of T1 and FLAIR (default 4: cheap enough for thousands of subjects)")
    p.add_argument("--workers", type=bounded_int(1, 64, "number of worker processes"), default=1,
                   help="render subjects in this many processes")
    p.add_argument("--resume", action="store_true",
                   help="keep the subjects already complete in --out (an interrupted run taken up again)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_phantoms)
