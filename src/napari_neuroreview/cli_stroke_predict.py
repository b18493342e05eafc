"""``neuroreview stroke predict``: one subject's stroke risk from a T1 (+ FLAIR) and their clinical row (issue 13 item 7).

The work is :func:`core.tasks.stroke.predict.predict_subject` (the viewer's too); this module
reads the inputs, checks the outputs first (not an input, writable, right suffix: nothing is
read or computed before), and writes the result JSON and ``--cam`` together or neither, as
``metastasis classify`` does. The JSON holds no path; the subject's ID is the one the user
gave (the table's key), the only identifier in it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .cli_cmb import _drive

#: The description written into the ``--cam`` NIfTI's header.
CAM_DESCRIP = "neuroreview stroke Grad-CAM (ensemble): raw, normalised"


def cmd_predict(args: argparse.Namespace) -> int:
    """Write ``--out`` (and ``--cam``); print one JSON line (model, subject, risk, high_risk, out, cam)."""
    from .core.io import strict_json
    from .core.io.nifti import load_volume, volume_writer
    from .core.io.outputs import Output, check_outputs, write_together
    from .core.tasks.stroke.downstream import load_risk_model
    from .core.tasks.stroke.labels import read_clinical_row
    from .core.tasks.stroke.predict import predict_subject

    outputs = [Output(args.out, (".json",), "result JSON")]
    if args.cam:
        outputs.append(Output(args.cam, (".nii.gz", ".nii"), "Grad-CAM volume"))
    check_outputs(outputs, inputs=[args.t1, args.flair, args.clinical])
    # the model before the scans: the row is read for its columns, and neither error waits for a scan to load
    model = load_risk_model(args.weights, args.version, device=args.device)
    card = model.card
    row = read_clinical_row(args.clinical, args.subject, model.encoding.columns)
    t1 = load_volume(args.t1)
    flair = load_volume(args.flair) if args.flair else None
    for volume in (t1, flair):  # what loading fixed (NaN voxels set to 0, orientation), as ``neuroreview info`` says
        for sentence in volume.warnings if volume is not None else ():
            print(f"warning: {sentence}", file=sys.stderr)
    device = next(model.net.parameters()).device
    result = _drive(predict_subject(t1, flair, row, model.net, model.encoding, model.threshold,
                                    {"name": card.name, "version": card.version}, card.config, cam=bool(args.cam),
                                    device=device), args.quiet)
    for sentence in result.messages:
        print(f"warning: {sentence}", file=sys.stderr)
    doc = result.to_json()
    text = strict_json.dumps(doc, indent=2) + "\n"
    writes: list[tuple[Any, Any]] = [(args.out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))]
    if args.cam and result.cam is not None:
        writes.append((args.cam, volume_writer(result.cam.stacked(), result.cam.affine, dtype="float32",
                                               descrip=CAM_DESCRIP)))
    write_together(writes)
    print(strict_json.dumps({"model": doc["model"], "subject": doc["subject"], "risk": doc["risk"],
                             "high_risk": doc["high_risk"], "out": str(args.out), "cam": args.cam}))
    return 0


def add_predict_parser(stroke: Any) -> None:
    """Register ``stroke predict`` under ``neuroreview stroke`` (``cli_stroke.add_parser`` calls it)."""
    p = stroke.add_parser("predict", help="one subject's stroke risk from a T1 (+ FLAIR) and their clinical row, with "
                                          "the modality shares and the Grad-CAM")
    p.add_argument("t1", help="the subject's T1 (NIfTI; the grid of --cam)")
    p.add_argument("--flair", default=None, help="the subject's FLAIR, any grid of the same session (required when "
                                                 "the model reads one)")
    p.add_argument("--clinical", required=True, help="the clinical table, CSV or TSV (README: Stroke clinical table)")
    p.add_argument("--subject", required=True, help="the subject's ID in the table's subject column")
    p.add_argument("--out", required=True, help="the result JSON")
    p.add_argument("--cam", default=None, help="also write the Grad-CAM of the ensemble logit here (NIfTI on the T1's "
                                               "grid: raw, then normalised)")
    p.add_argument("--version", default=None, help="stroke-risk version (default: the registry's default)")
    p.add_argument("--weights", default=None, help="registry folder to read the version from (default: the user's "
                                                   "registry, then the shipped one)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)
