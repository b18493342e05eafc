"""The small vessel disease subtype panel: aSVD, CAA or CADASIL from the scan's microbleeds.

The radiologist picks the SWI (and phase) layer, a subtype model version and a device, and
clicks *Classify*: :func:`~napari_neuroreview.core.tasks.csvd.classify.classify_for_review`
loads the model and classifies in the worker (registration to MNI takes seconds; progress,
Cancel). Its microbleeds
are the review's when the microbleed review widget has the same scan open: accepted,
added, moved and pending ones (pending: the detector's call until reviewed), never the
rejected. Without a review the default detector runs first
(:func:`~napari_neuroreview.core.tasks.csvd.classify.classify_scan`).

The result: one bar per subtype (the predicted one highlighted), the MARS table (class x
side), each microbleed's region and attention in the review's table and as its point's
size. When the review changes after a classification the result is marked stale and
classified again once the edits pause (:data:`RERUN_DELAY_MS`), in the worker. The model
was trained on simulated patients: the panel says so under the bars.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.layers import Image
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (QAbstractItemView, QFormLayout, QGridLayout, QGroupBox, QHeaderView, QLabel,
                            QProgressBar, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ..core.anatomy.mars import MARS_CLASSES, SIDES
from ..core.io.layers import META_KEY, volume_from_layer
from ..core.tasks.cmb.channels import check_inputs
from ..core.tasks.csvd.baselines import SUBTYPES
from ..core.tasks.csvd.classify import Finding, SubtypeResult, classify_for_review
from ..core.tasks.csvd.model import MODEL_NAME
from ._base import DevicePicker, LayerPicker, VersionPicker, percent, require_layer, scrolled_panel
from ._cmb_inputs import NO_PHASE
from ._cmb_layers import is_phase_name
from ._worker import TaskRunner
from .case import is_scan
from .cmb_review import CMBReviewWidget, find_docked

if TYPE_CHECKING:
    import napari

#: Milliseconds the review must stay unchanged before a stale result is classified again.
RERUN_DELAY_MS = 1000
CAVEAT = "Simulated training data, not for clinical use."
#: Pixels of the panel that stay visible however the dock is shared (it scrolls below that).
MIN_VISIBLE_HEIGHT = 480
#: The bar of the predicted subtype, and the others.
_BAR_STYLE = {True: "QProgressBar::chunk { background-color: #d9822b; }",
              False: "QProgressBar::chunk { background-color: #5c7080; }"}
_SUBTYPE_NAMES = {"aSVD": "arteriolosclerosis", "CAA": "cerebral amyloid angiopathy", "CADASIL": "CADASIL"}


def _as_findings(found: list[Any]) -> list[Finding]:
    """The review's counted findings as the classifier's (id, world RAS mm, mask volume)."""
    return [Finding(f.id, tuple(f.world), f.extra.get("volume_mm3")) for f in found]


class SubtypeWidget(QWidget):
    """Dock widget "Small vessel disease subtype" (see the module docstring).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    roots : list of Path, optional
        Registry roots to find subtype model versions in (default: the user's, then shipped).
    """

    def __init__(self, napari_viewer: napari.Viewer, roots: list[Path] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.roots = roots
        self.review: CMBReviewWidget | None = None
        self.result: SubtypeResult | None = None
        self._classified: tuple | None = None  # the inputs of the shown result (see _inputs_key)
        self._running: tuple | None = None  # the inputs of the run in flight

        self.swi = LayerPicker(napari_viewer, lambda layer: is_scan(layer) and not is_phase_name(layer.name))
        self.phase = LayerPicker(napari_viewer, is_scan, leading=(NO_PHASE,))
        self.versions = VersionPicker(MODEL_NAME, roots)
        self.device = DevicePicker()
        self.source = QLabel("")
        self.source.setWordWrap(True)
        inputs = QGroupBox("Classify")
        form = QFormLayout(inputs)
        for label, field in (("SWI", self.swi), ("Phase", self.phase), ("Model", self.versions),
                             ("Device", self.device)):
            form.addRow(label, field)
        form.addRow(self.source)  # full width: the sentence is long
        self.runner = TaskRunner("Classify", self._start, self._show)
        form.addRow(self.runner)

        results = QGroupBox("Subtype")
        box = QVBoxLayout(results)
        self.verdict = QLabel("Not classified yet")
        self.verdict.setWordWrap(True)
        self.stale = QLabel("")
        self.stale.setWordWrap(True)
        self.stale.setStyleSheet("color: #d9822b;")
        self.stale.setVisible(False)  # shown only while a result is stale
        bars = QGridLayout()
        self.bar_labels: dict[str, QLabel] = {}
        self.bars: dict[str, QProgressBar] = {}
        for row, subtype in enumerate(SUBTYPES):
            label, bar = QLabel(subtype), QProgressBar()
            label.setToolTip(_SUBTYPE_NAMES[subtype])
            bar.setRange(0, 1000)
            bar.setValue(0)
            bar.setFormat("")
            bar.setTextVisible(True)
            self.bar_labels[subtype], self.bars[subtype] = label, bar
            bars.addWidget(label, row, 0)
            bars.addWidget(bar, row, 1)
        self.mars = QTableWidget(len(MARS_CLASSES), len(SIDES) + 1)
        self.mars.setHorizontalHeaderLabels([*SIDES, "total"])
        self.mars.setVerticalHeaderLabels(list(MARS_CLASSES))
        self.mars.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.mars.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.mars.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        for policy in (self.mars.setVerticalScrollBarPolicy, self.mars.setHorizontalScrollBarPolicy):
            policy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._fit_mars()
        self.caveat = QLabel(CAVEAT)
        self.caveat.setStyleSheet("font-style: italic;")
        for part in (self.verdict, self.stale):
            box.addWidget(part)
        box.addLayout(bars)
        box.addWidget(self.caveat)  # right under the probabilities it qualifies
        box.addWidget(QLabel("MARS microbleed counts"))
        box.addWidget(self.mars)
        self.scroll = scrolled_panel(self, (inputs, results), MIN_VISIBLE_HEIGHT)

        self._rerun = QTimer(self)
        self._rerun.setSingleShot(True)
        self._rerun.setInterval(RERUN_DELAY_MS)
        self._rerun.timeout.connect(self._rerun_if_stale)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._find_review)
        for signal in (self.swi.changed, self.phase.changed, self.versions.changed):
            signal.connect(self._on_inputs)
        self._find_review()
        self._show_mars(None)

    # ----------------------------------------------------------------- inputs
    def _find_review(self, *_: Any) -> None:
        """Follow the microbleed review widget (docked before or after this panel)."""
        docked = find_docked(self.viewer, CMBReviewWidget)
        if docked and docked[0] is not self.review:
            self.review = docked[0]
            self.review.findings_changed.connect(self._on_inputs)
        if self.phase.currentText() == NO_PHASE:  # a layer called "phase" is the phase until the user says otherwise
            named = [layer.name for layer in self.phase.layers() if is_phase_name(layer.name)]
            if named:
                self.phase.setCurrentText(named[0])
        self._on_inputs()

    def _review_findings(self, layer: Image | None) -> list[Any] | None:
        """The review's counted findings when the review shows ``layer``'s scan, else None (no review)."""
        review = self.review
        if layer is None or review is None or review.session is None or review.layers.points is None:
            return None
        if review.session.sha256 != layer.metadata.get(META_KEY, {}).get("sha256"):
            return None
        return review.counted_findings()

    def _inputs_key(self) -> tuple:
        """What a result depends on: scan, phase, model, device and the counted microbleeds."""
        layer, phase = self.swi.layer(), self.phase.layer()
        found = self._review_findings(layer)
        cmbs = None if found is None else tuple(_as_findings(found))
        return (None if layer is None else layer.metadata.get(META_KEY, {}).get("sha256"),
                None if phase is None else phase.name, self.versions.version(), cmbs)

    def _on_inputs(self, *_: Any) -> None:
        """Say which microbleeds count; mark a shown result stale and schedule a re-run."""
        layer = self.swi.layer()
        found = self._review_findings(layer)
        if layer is None:
            self.source.setText("Open the SWI magnitude first")
        elif found is None:
            self.source.setText("No microbleed review of this scan is open: Classify runs the default detector "
                                "and uses its detections unreviewed")
        else:
            counts = {s: sum(f.status == s for f in found) for s in ("accepted", "added", "moved", "pending")}
            rejected = len(self.review.session.findings) - len(found)
            said = ", ".join(f"{n} {s}" for s, n in counts.items() if n and s != "pending") or "none reviewed yet"
            pending = (f"; {counts['pending']} pending count as the detector's call until reviewed"
                       if counts["pending"] else "")
            self.source.setText(f"From the review: {len(found)} microbleeds ({said}{pending}); "
                                f"{rejected} rejected left out")
        if self.result is not None and self._inputs_key() != self._classified:
            self.stale.setText("Stale: the microbleeds changed since this result; classifying again...")
            self._rerun.start()
        elif self.result is not None:
            self.stale.setText("")
        self.stale.setVisible(bool(self.stale.text()))

    def _rerun_if_stale(self) -> None:
        """The debounced re-run: once edits pause; after the run in flight if there is one."""
        if self.result is None or self._inputs_key() == self._classified:
            return
        if self.runner.running:
            self._rerun.start()
            return
        self.runner.run()

    # ----------------------------------------------------------------- run
    def _start(self) -> Any:
        """GUI thread: read the inputs (bad input is one sentence) and hand the task to the worker."""
        layer = require_layer(self.swi, "no SWI layer is selected: open the SWI magnitude NIfTI first")
        magnitude = volume_from_layer(layer.data, layer.metadata, layer.name, grid="source")
        phase_layer = self.phase.layer()
        phase = (volume_from_layer(phase_layer.data, phase_layer.metadata, phase_layer.name, grid="source")
                 if phase_layer is not None and phase_layer.name != layer.name else None)
        check_inputs(magnitude, phase)
        found = self._review_findings(layer)
        self._running = self._inputs_key()
        return classify_for_review(magnitude, phase, None if found is None else _as_findings(found),
                                   self.versions.version(), self.device.requested(), self.roots)

    def _show(self, result: SubtypeResult) -> None:
        """GUI thread: bars, verdict, MARS table, the review's columns and point sizes."""
        self.result, self._classified = result, self._running
        prediction = result.prediction
        for subtype in SUBTYPES:
            p = float(result.probabilities[subtype])
            bar, label = self.bars[subtype], self.bar_labels[subtype]
            bar.setValue(int(round(p * 1000)))
            bar.setFormat(percent(p))
            bar.setStyleSheet(_BAR_STYLE[subtype == prediction])
            font = label.font()
            font.setBold(subtype == prediction)
            label.setFont(font)
        n = len(result.sites)
        cmbs = "no microbleeds" if n == 0 else f"{n} microbleed{'s' * (n != 1)}"
        self.verdict.setText(f"Most likely {_SUBTYPE_NAMES[prediction]} ({prediction}, "
                             f"{100 * result.probabilities[prediction]:.0f} %) from {cmbs}"
                             f" ({result.model['name']} {result.model['version']})")
        self._show_mars(result)
        self._fit_mars()
        QTimer.singleShot(0, self._scroll_to_result)
        if self.review is not None and self._classified[3] is not None:  # the microbleeds came from the review
            self.review.show_subtype({s.id: (s.region.label, float(a)) for s, a in zip(result.sites, result.attention)})
        self._on_inputs()

    def _show_mars(self, result: SubtypeResult | None) -> None:
        sides = result.mars_counts["sides"] if result is not None else {}
        for row, mars_class in enumerate(MARS_CLASSES):
            values = [sides.get(f"{mars_class}_{side}", 0) for side in SIDES]
            for col, value in enumerate([*values, sum(values)]):
                item = QTableWidgetItem("" if result is None else str(value))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.mars.setItem(row, col, item)

    def _fit_mars(self) -> None:
        """The MARS table exactly as tall as its rows (napari's style sets their height only once shown)."""
        self.mars.setFixedHeight(self.mars.horizontalHeader().height() + self.mars.verticalHeader().length()
                                 + 2 * self.mars.frameWidth())

    def _scroll_to_result(self) -> None:
        """Bring the answer into view in a short dock, once laid out."""
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        """Fit the MARS table to its rows as styled."""
        super().showEvent(event)
        self._fit_mars()

    def mars_counts(self) -> dict[str, int]:
        """The MARS table's totals per class as shown (for the radiologist's report, and tests)."""
        return {c: int(self.mars.item(r, len(SIDES)).text() or 0) for r, c in enumerate(MARS_CLASSES)}

    # ----------------------------------------------------------------- plumbing
    def cleanup(self) -> None:
        """Stop following the viewer and the review (safe to call twice)."""
        self._rerun.stop()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            try:
                event.disconnect(self._find_review)
            except (TypeError, RuntimeError, ValueError):
                pass
        if self.review is not None:
            try:
                self.review.findings_changed.disconnect(self._on_inputs)
            except (TypeError, RuntimeError):
                pass
            self.review = None

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        """Let go of the viewer and the review when the dock is closed."""
        self.cleanup()
        super().closeEvent(event)
