"""The Stroke risk panel: a subject's T1 (+ FLAIR) and clinical row -> risk, modality shares, Grad-CAM, place.

The radiologist picks the T1 layer and the FLAIR layer (each combo starts on the layer whose
name says it: ``metastasis.sequence_of``), the clinical row (:mod:`._stroke_clinical`: picked
from a table file and a subject, or typed; the table beside the T1's file is opened by
itself), a stroke-risk model version and a device, and clicks *Predict stroke risk*. The
worker reads the layers as the model reads files (``volume_from_layer(grid="source")``) and
runs :func:`~napari_neuroreview.core.tasks.stroke.predict.predict_for_review` (loads the
model, puts the T1 on its grid, risk, shares, Grad-CAM, the subject among the training
subjects), with progress and Cancel; nothing is added to the viewer before it returns.
The form is read first, on the GUI thread: a bad value is the schema's one sentence under
the button, and nothing runs.

The answer (:mod:`._stroke_results`): the risk against the model's frozen threshold (high
or low), the image and table shares of the ensemble logit, the blank columns, the subject
on the plane of the training subjects' embeddings, and one Grad-CAM layer over the T1.

With no stroke-risk model installed the panel says, in one sentence, how to train one, and
Predict stays disabled. Closing the dock (napari's x) stops following the viewer
(``_base.cleanup_when_undocked``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFormLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from ..core.errors import InputFileError
from ..core.io.layers import META_KEY, volume_from_layer
from ..core.model_labels import is_demo
from ..core.progress import Progress
from ..core.registry import not_installed
from ..core.tasks.stroke.downstream import MODEL_NAME, TRAIN_COMMAND, WHAT
from ..core.tasks.stroke.labels import CLINICAL_COLUMNS
from ..core.tasks.stroke.predict import StrokePrediction, predict_for_review
from ._base import (
    DevicePicker,
    LayerPicker,
    VersionPicker,
    cleanup_when_undocked,
    require_layer,
    scrolled_panel,
)
from ._stroke_clinical import ClinicalRowForm, table_beside
from ._stroke_results import CamOverlay, PlacePlot, RiskAnswer
from ._worker import TaskRunner
from .case import is_scan
from .metastasis import sequence_of

if TYPE_CHECKING:
    import napari

#: The choice "no FLAIR".
NONE = "\u2014"
NO_MODEL = not_installed(WHAT, TRAIN_COMMAND)
CAVEAT = ("Demo weights trained on simulated data: the score is not a calibrated risk (the model card's notes say "
          "how it ranks), phantom figures, not for clinical use.")
#: Pixels of the panel that stay visible however the dock is shared (it scrolls below that).
MIN_VISIBLE_HEIGHT = 520


class StrokeRiskWidget(QWidget):
    """Dock widget "Stroke risk" (see the module docstring).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    roots : list of Path, optional
        Registry roots to find stroke-risk versions in (default: the user's, then the shipped one).
    """

    def __init__(self, napari_viewer: napari.Viewer, roots: list[Path] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.roots = roots
        self.result: StrokePrediction | None = None
        self._run_t1: str | None = None  # the T1 layer's name of the run in flight
        self._touched: set[str] = set()  # combos the user set by hand: names no longer choose for them
        self._table_for: str | None = None  # the T1 file whose neighbouring table was opened

        self.t1 = LayerPicker(napari_viewer, is_scan)
        self.flair = LayerPicker(napari_viewer, is_scan, leading=(NONE,))
        self.versions = VersionPicker(MODEL_NAME, roots)
        self._registry_error = self.versions.refresh()
        self.model_note = QLabel("")
        self.model_note.setWordWrap(True)
        self.device = DevicePicker()
        scans = QGroupBox("Subject")
        form = QFormLayout(scans)
        form.addRow("T1", self.t1)
        form.addRow("FLAIR", self.flair)
        form.addRow("Model", self.versions)
        form.addRow(self.model_note)
        form.addRow("Device", self.device)
        clinical = QGroupBox("Clinical row")
        self.clinical = ClinicalRowForm()
        QVBoxLayout(clinical).addWidget(self.clinical)
        self.runner = TaskRunner("Predict stroke risk", self._start, self._show)

        answer = QGroupBox("Risk")
        box = QVBoxLayout(answer)
        self.answer = RiskAnswer()
        self.caveat = QLabel("")
        self.caveat.setWordWrap(True)
        self.caveat.setStyleSheet("font-style: italic;")
        self.messages = QLabel("")
        self.messages.setWordWrap(True)
        box.addWidget(self.answer)
        box.addWidget(self.caveat)
        box.addWidget(self.messages)
        place = QGroupBox("Among the training subjects")
        self.place = PlacePlot()
        QVBoxLayout(place).addWidget(self.place)
        cam = QGroupBox("Grad-CAM over the T1")
        self.cam = CamOverlay(napari_viewer)
        QVBoxLayout(cam).addWidget(self.cam)
        self.scroll = scrolled_panel(self, (scans, clinical, self.runner, answer, place, cam), MIN_VISIBLE_HEIGHT)

        # Names choose after Qt has said whether the user picked (``activated``): deferred, coalesced.
        self._preselect_timer = QTimer(self)
        self._preselect_timer.setSingleShot(True)
        self._preselect_timer.setInterval(0)
        self._preselect_timer.timeout.connect(self._preselect)
        for key, picker in (("t1", self.t1), ("flair", self.flair)):
            picker.activated.connect(lambda _i, key=key: self._touched.add(key))
            picker.changed.connect(self._preselect_timer.start)
        self.versions.changed.connect(self._on_version)
        self._preselect()
        self._on_version()
        cleanup_when_undocked(self, self.cleanup)

    # ----------------------------------------------------------------- inputs
    def _preselect(self, *_: Any) -> None:
        """Each combo the user has not set follows the layer names; then the table beside the T1's file."""
        for key, picker in (("t1", self.t1), ("flair", self.flair)):
            if key in self._touched:
                continue
            named = next((layer.name for layer in picker.layers() if sequence_of(layer.name) == key), None)
            wanted = named if named is not None else (NONE if key == "flair" else None)
            if wanted is not None and picker.currentText() != wanted:
                picker.setCurrentText(wanted)
        self._open_table_beside()

    def _open_table_beside(self) -> None:
        """Once per T1 file: that subject's row (a cohort's subject folder is named for its row).

        With a table open, its row for the T1's folder, or a cleared form that says so: the row
        of the subject picked before must never be run with another subject's T1. With none
        open, the table in the T1's folder (or the one above).
        """
        layer = self.t1.layer()
        source = ((layer.metadata.get(META_KEY) or {}).get("source_path") if layer is not None else None)
        if source == self._table_for:
            return
        previous, self._table_for = self._table_for, source
        if self.clinical.path.text().strip():
            if source:
                self.clinical.select_subject(Path(source).parent.name)
            elif previous:
                self.clinical.clear_row(f"The T1 {layer.name if layer else ''} has no file to name its subject: "
                                        "pick its row or type it.")
            return
        table = table_beside(source)
        if table is not None:
            self.clinical.open_table(table, subject=Path(source).parent.name)

    def _on_version(self, *_: Any) -> None:
        """The columns the chosen model reads, its demo caveat, or the sentence saying how to train one."""
        card = self.versions.card()
        if card is None:
            self.model_note.setText(self._registry_error or NO_MODEL)
            self.clinical.set_columns(CLINICAL_COLUMNS)
        else:
            columns = tuple(card.config.get("table", {}).get("columns", CLINICAL_COLUMNS))
            self.clinical.set_columns(columns)
            channels = " and ".join(c.upper() if c == "flair" else c.capitalize()
                                    for c in card.config.get("channels", ()))
            self.model_note.setText(f"{card.name} {card.version} reads the {channels} and {len(columns)} clinical "
                                    f"columns; threshold {100 * float(card.config.get('threshold', 0.0)):.1f} %.")
        self.caveat.setText(CAVEAT if card is not None and is_demo(card) else "")
        self.runner.run_button.setEnabled(card is not None and not self.runner.running)

    # ----------------------------------------------------------------- run
    def _start(self) -> Any:
        """GUI thread: the layers and the form's row (a bad value is one sentence); the worker reads and predicts."""
        if self.versions.card() is None:
            raise InputFileError(self._registry_error or NO_MODEL)
        t1 = require_layer(self.t1, "No T1 layer is chosen: open the subject's T1 (File > Open) and pick it.")
        flair = self.flair.layer()
        row = self.clinical.row()
        inputs = {"t1": (t1.data, dict(t1.metadata), t1.name),
                  "flair": (flair.data, dict(flair.metadata), flair.name) if flair is not None else None}
        version, device, root = self.versions.version(), self.device.requested(), self._root()

        def task() -> Any:
            yield Progress(0, 1, "Reading the scans")
            t1_volume = volume_from_layer(*inputs["t1"], grid="source")
            flair_volume = volume_from_layer(*inputs["flair"], grid="source") if inputs["flair"] else None
            return (yield from predict_for_review(t1_volume, flair_volume, row, version, root, device, cam=True))

        self._run_t1 = t1.name
        return task()

    def _root(self) -> str | None:
        """The registry folder of the chosen version when the panel was given its own roots (tests), else None."""
        if self.roots is None:
            return None
        version = self.versions.version()
        from ..core.registry import installed_versions

        return next((str(root) for root, card in installed_versions(MODEL_NAME, self.roots)
                     if card.version == version), None)

    def _show(self, result: StrokePrediction) -> None:
        """GUI thread: risk, shares, place, messages, the Grad-CAM layer over the T1."""
        name, self._run_t1 = self._run_t1, None
        t1 = next((layer for layer in self.viewer.layers if layer.name == name), None)
        if t1 is None:
            show_warning("The T1 was closed before the prediction finished; nothing is shown.")
            return
        self.result = result
        self.answer.show_result(result)
        self.place.show_place(result.place)
        self.messages.setText("\n".join(result.messages))
        self.cam.show_cam(result, t1)
        QTimer.singleShot(0, lambda: self.scroll.ensureWidgetVisible(self.answer))
        show_info(f"{result.subject}: stroke risk {100 * result.risk:.1f} % "
                  f"({'high' if result.high_risk else 'low'}; {result.model['name']} {result.model['version']})")

    # ----------------------------------------------------------------- plumbing
    def showEvent(self, event: Any) -> None:
        """List the versions again when the panel comes into view: one trained meanwhile (the CLI) appears."""
        super().showEvent(event)
        if not self.runner.running:
            self._registry_error = self.versions.refresh(self.versions.version())

    def cleanup(self) -> None:
        """Stop following the viewer's layers and cancel a run in flight (safe to call twice)."""
        self._preselect_timer.stop()
        self.runner.cancel()
        for picker in (self.t1, self.flair):
            picker.release()

    def closeEvent(self, event: Any) -> None:
        self.cleanup()
        super().closeEvent(event)
