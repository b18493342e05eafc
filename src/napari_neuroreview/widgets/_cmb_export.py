"""Exporting a microbleed review from the widget: the button, the DICOM SEG box, the file names.

:class:`ReviewExportControls` owns the *Export...* button and the *+ DICOM SEG* box and
writes a review's outputs with :meth:`ReviewSession.export` (all together or none). Why
apart from the widget: what an export is named and when a SEG can be offered are export
rules, not review rules; the widget only says which session and which scan layer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.utils.notifications import show_info
from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QPushButton, QWidget

from ..core.io.dicom_seg import can_reference
from ..core.io.layers import META_KEY
from ..core.tasks.cmb.review import ReviewSession
from ..core.tasks.cmb.review_export import export_bids

#: What each export file ends with: labels, points JSON, points TSV, DICOM SEG.
ENDINGS = ("dseg.nii.gz", "points.json", "points.tsv", "seg.dcm")


def source_path(layer: Any) -> str:
    """A scan layer's source path ('' if none): the store keeps the path first opened, or a layer name."""
    return str(getattr(layer, "metadata", {}).get(META_KEY, {}).get("source_path") or "")


def export_paths(session: ReviewSession, folder: Path) -> list[Path]:
    """``<scan>_desc-cmb_<ending>`` in ``folder``, the scan named from the store's path (``FOLDER::SERIES`` too)."""
    stem = Path(session.image.path).name.split(".")[0].replace("::", "_") or "scan"
    return [Path(f"{folder / stem}_desc-cmb_{end}") for end in ENDINGS]


class ReviewExportControls:
    """The *Export...* button and the *+ DICOM SEG* box.

    Attributes
    ----------
    button : QPushButton
    seg_check : QCheckBox
        Offered only for a scan opened from DICOM (the SEG references its series).
    """

    def __init__(self) -> None:
        self.button = QPushButton("Export labels + JSON + TSV...")
        self.seg_check = QCheckBox("+ DICOM SEG")
        self.seg_check.setToolTip("Also export a DICOM SEG for PACS, referencing the DICOM series (scans opened from "
                                  "DICOM only). It carries the patient's identity from the series, as PACS needs.")
        self.bids_check = QCheckBox("BIDS")
        self.bids_check.setToolTip("Export as BIDS derivatives: <folder>/derivatives/neuroreview/sub-<label>/..., "
                                   "a JSON sidecar per file and dataset_description.json (core.tasks.cmb.review_export."
                                   "export_bids); the subject is the scan's own BIDS label, else a pseudonym. "
                                   "Unchecked: flat <scan>_desc-cmb_* files in the folder")
        self.bids_check.setChecked(True)  # issue 14: exports land in a BIDS-derivatives layout

    def row(self) -> QHBoxLayout:
        """The button and the box side by side."""
        layout = QHBoxLayout()
        layout.addWidget(self.button, 1)
        layout.addWidget(self.seg_check)
        layout.addWidget(self.bids_check)
        return layout

    def update(self, active: bool, scan: Any) -> None:
        """Enable for an open review; the SEG box only when ``scan`` came from DICOM."""
        self.button.setEnabled(active)
        self.seg_check.setEnabled(active and can_reference(source_path(scan)))
        if not self.seg_check.isEnabled():
            self.seg_check.setChecked(False)

    def export(self, session: ReviewSession, scan: Any, folder: str | Path, seg: bool | None,
               guard: Callable[[Callable[[], Any]], bool], bids: bool | None = None) -> list[Path]:
        """Write the labels, points JSON/TSV and (``seg``, default the box) the SEG; [] when refused.

        ``bids`` (default the BIDS box): the BIDS-derivatives layout, else flat names.

        The SEG is made from ``scan``'s series; none (a notice) when nothing is accepted.
        """
        seg = self.seg_check.isChecked() and self.seg_check.isEnabled() if seg is None else seg
        bids = self.bids_check.isChecked() if bids is None else bids
        folder = Path(folder)
        written: list[Path] = []

        def export() -> None:
            folder.mkdir(parents=True, exist_ok=True)  # the folder the user named for this export
            if bids:  # the same files by the same writers, in the BIDS layout
                written.extend(export_bids(session, folder, seg=bool(seg), seg_source=source_path(scan)))
                missing = not any(p.suffix == ".dcm" for p in written)
            else:
                paths = export_paths(session, folder)
                written.extend(session.export(*paths[:3], seg_path=paths[3] if seg else None,
                                              seg_source=source_path(scan)))
                missing = paths[3] not in written
            skipped = " (no DICOM SEG: no accepted microbleed to segment)" if seg and missing else ""
            show_info(f"Exported the microbleed review to {folder}{skipped}")

        guard(export)
        return written

    @staticmethod
    def ask_folder(parent: QWidget) -> str:
        """The folder to export to ('' when cancelled)."""
        return QFileDialog.getExistingDirectory(parent, "Export the microbleed review to")
