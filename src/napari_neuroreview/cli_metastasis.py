"""``neuroreview metastasis ...``: the metastasis cohort phantom and lesion origin from the shell.

``metastasis phantoms`` writes an origin cohort (``core.phantoms.metastasis``, imported
lazily: the run-time code never imports the simulators); ``metastasis classify`` gives the
origin of every lesion of one session's labels from its sequences, with the Grad-CAM maps
on the contrast T1 (:mod:`core.tasks.metastasis.classify`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli import bounded_float, bounded_int
from .cli_cmb import _drive
from .core.errors import OutputPathError

#: ``metastasis classify``'s sequence options: (option, sequence name of ``classes.SEQUENCES``).
SEQUENCE_OPTIONS: tuple[tuple[str, str], ...] = (
    ("--ce-t1", "ce_t1"), ("--t1", "t1"), ("--t2", "t2"), ("--flair", "flair"), ("--dwi", "dwi"), ("--adc", "adc"))


def site_list(text: str) -> tuple[str, ...]:
    """An argparse ``type``: comma-separated site names of ``core.phantoms.metastasis.SITES``, else one sentence."""
    from .core.phantoms.metastasis import SITES

    names = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in names if c not in SITES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{(unknown or [text])[0]!r} is not a site of the metastasis cohort (sites: {', '.join(SITES)})")
    return tuple(dict.fromkeys(names))


def cmd_phantoms(args: argparse.Namespace) -> int:
    """Write a metastasis cohort: ``patient-NNNN/`` (six sequences, lesions, oedema, truth) and ``labels.tsv``."""
    from .core.io import strict_json
    from .core.io.outputs import Output, check_outputs, disk_errors
    from .core.phantoms.metastasis import write_metastasis_cohort

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: is a file; the cohort is written into a folder")
    check_outputs([Output(out / "labels.tsv", (".tsv",), "labels.tsv")] if out.is_dir()
                  else [Output(out, what="cohort folder")])
    overrides = {"voxel_size": tuple(args.voxel_size)} if args.voxel_size else {}
    if not args.quiet:
        print(f"Rendering {args.n} patients of sites {', '.join(args.sites)} into {out}", file=sys.stderr)
    with disk_errors([out]):
        paths = write_metastasis_cohort(out, args.n, args.seed, args.sites, workers=args.workers, resume=args.resume,
                                        **overrides)
    print(strict_json.dumps({"out": str(args.out), "patients": args.n, "sites": list(args.sites), "files": len(paths),
                             **({"voxel_size": list(args.voxel_size)} if args.voxel_size else {})}))
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """The origin of each lesion of ``--lesion``; writes the JSON (and ``--cam``), both or neither.

    The outputs are checked (not an input, writable, right suffix) before anything is read.
    """
    from .core.io import strict_json
    from .core.io.nifti import load_volume, volume_writer
    from .core.io.outputs import Output, check_outputs, write_together
    from .core.tasks.metastasis.classify import classify_lesions
    from .core.tasks.metastasis.model import load_origin_model

    given = {name: getattr(args, name) for _option, name in SEQUENCE_OPTIONS if getattr(args, name)}
    outputs = [Output(args.out, (".json",), "result JSON")]
    if args.cam:
        outputs.append(Output(args.cam, (".nii.gz", ".nii"), "Grad-CAM volume"))
    check_outputs(outputs, inputs=[*given.values(), args.lesion])
    model = load_origin_model(args.model, device=args.device)
    sequences = {name: load_volume(path) for name, path in given.items()}
    lesions = load_volume(args.lesion)
    result = _drive(classify_lesions(sequences, lesions, model, cam=bool(args.cam)), args.quiet)
    for sentence in result.messages:
        print(f"warning: {sentence}", file=sys.stderr)
    doc = result.to_json()
    text = strict_json.dumps(doc, indent=2) + "\n"
    writes: list[tuple[Any, Any]] = [(args.out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))]
    if args.cam:
        writes.append((args.cam, volume_writer(result.cam, result.affine, dtype="float32",
                                               descrip="neuroreview metastasis Grad-CAM per node")))
    write_together(writes)
    print(strict_json.dumps({"model": doc["model"], "out": str(args.out), "cam": args.cam,
                             "lesions": {str(d["id"]): d["prediction"] for d in doc["lesions"]}}))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``neuroreview metastasis`` and its subcommands."""
    meta = sub.add_parser("metastasis", help="brain metastasis origin from five MRI sequences").add_subparsers(
        dest="metastasis_command", required=True)

    p = meta.add_parser("phantoms", help="write a simulated metastasis cohort (six sequences per patient, labels.tsv)")
    p.add_argument("--out", required=True, help="cohort folder (patient-NNNN/ and labels.tsv)")
    p.add_argument("--n", type=bounded_int(1, 10_000, "number of patients"), default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sites", type=site_list, default=("A", "B", "C"),
                   help="comma-separated sites the patients are dealt to in equal blocks (default A,B,C; C is "
                        "the independent external site)")
    p.add_argument("--voxel-size", nargs=3, type=bounded_float(0.3, 4.0, "voxel size in mm"), default=None,
                   metavar=("X", "Y", "Z"), help="one structural voxel size for every patient (a coarse grid for "
                                                 "quick looks; DWI/ADC stay coarser; default: each site's scanner)")
    p.add_argument("--workers", type=bounded_int(1, 64, "number of worker processes"), default=1,
                   help="render patients in this many processes")
    p.add_argument("--resume", action="store_true",
                   help="keep the patients already complete in --out (an interrupted run taken up again)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_phantoms)

    p = meta.add_parser("classify", help="the origin of each metastasis of a lesion labels file, with Grad-CAM")
    for option, name in SEQUENCE_OPTIONS:
        p.add_argument(option, dest=name, required=name == "ce_t1", default=None,
                       help="contrast T1 (the grid of the results and of --cam)" if name == "ce_t1"
                       else f"{option[2:].upper()} image, any grid of the same session")
    p.add_argument("--lesion", required=True, help="lesion labels (one id per lesion, 0 outside), NIfTI")
    p.add_argument("--out", required=True, help="the result JSON")
    p.add_argument("--cam", default=None, help="also write the Grad-CAM of each node here (4D NIfTI on the "
                                               "--ce-t1 grid, one volume per node as named in the JSON)")
    p.add_argument("--model", default=None, help="origin model version (default: the registry's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_classify)
