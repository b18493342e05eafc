"""The microbleed review dock widget: detect, then accept, reject, add, move and delete.

The radiologist picks the SWI (and phase) layer, a detector version, a device and a
threshold, and runs the detector through the shared task rails (worker, progress,
Cancel). The result becomes a Labels layer of instance masks and a Points layer coloured
by review status, with a table sorted by score. Every click goes through
:class:`~napari_neuroreview.core.tasks.cmb.review.ReviewSession`, which writes it to the
annotation store at once, so the store always holds what is on screen; picking a scan
the store already knows restores its review without running anything.

Keys on the points layer (one table, :data:`._cmb_keys.REVIEW_KEYS`, which the *Keys...*
sheet lists): a accept, r reject, Delete/Backspace delete, n add at the cursor, . and ,
next and previous finding, h hide/show the overlays, Ctrl-Z undo, Ctrl-Shift-Z redo;
dragging a point (select mode) moves it. "Reviewed k of n" counts the decided findings;
the side and region columns fill in from a worker (:class:`._cmb_locations.FindingLocator`).
No numerics here: coordinates go through the scan's DisplayGeometry and core.io.export.

The widget composes cohesive parts that own their state: :class:`._cmb_layers.ReviewLayers`
(the review's layers, their sync with the session, napari point-tool edits, navigation),
:class:`._cmb_table.FindingsTable` (rows, the user's pick),
:class:`._cmb_store.ReviewStoreControls` (the store and the reviewer),
:class:`._cmb_export.ReviewExportControls` (the export button and the SEG box), and from
:mod:`._base` the :class:`DevicePicker` (with its visible label) and the
:class:`VersionPicker` (each card's tag). It wires them with callbacks and signals and
keeps the review rules' entry points (accept, reject, delete, add, undo, redo, export).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (QApplication, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                            QPushButton, QVBoxLayout, QWidget)

from ..core.errors import ImageMismatchError, InputFileError, NeuroreviewError
from ..core.io.export import napari_world_to_ras
from ..core.io.layers import META_KEY, geometry_of, volume_from_layer
from ..core.io.orientation import from_display
from ..core.model_labels import version_label
from ..core.registry import installed_versions
from ..core.store import CaseStore, ReviewConflictError
from ..core.tasks.cmb.channels import check_inputs
from ..core.tasks.cmb.io import read_detections
from ..core.tasks.cmb.model import MODEL_NAME, card_threshold
from ..core.tasks.cmb.review import ReviewSession
from ..core.tasks.cmb.review_export import default_reviewer
from ..core.tasks.cmb.review_run import detect_for_review, on_display_grid
from ._base import DevicePicker, VersionPicker, scrolled_panel
from ._cmb_export import ReviewExportControls
from ._cmb_inputs import ScanInputs
from ._cmb_keys import KeysDialog, bindings
from ._cmb_layers import STATUS_RGBA, ReviewLayers, layer_key  # noqa: F401 (STATUS_RGBA: importable here)
from ._cmb_locations import FindingLocator
from ._cmb_store import ReviewStoreControls
from ._cmb_table import COLUMNS, FindingsTable, reviewed_text, summary_text  # noqa: F401 (COLUMNS: importable here)
from ._worker import TaskRunner
from .case import CaseWidget

if TYPE_CHECKING:
    import napari



#: Pixels of the widget that stay visible however the dock is shared (it scrolls below that).
MIN_VISIBLE_HEIGHT = 560


def find_docked(viewer: Any, kind: type) -> list[Any]:
    """Docked widgets of a type (to share the Case widget's store, refresh versions)."""
    try:
        widgets = list(viewer.window.dock_widgets.values())
    except (AttributeError, RuntimeError):
        return []
    return [w for w in widgets if isinstance(w, kind)]


class CMBReviewWidget(QWidget):
    """Dock widget for microbleed detection and review (see the module docstring).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    roots : list of Path, optional
        Registry roots to find detector versions in (default: the user's, then shipped).

    Signals
    -------
    findings_changed
        After every redraw of the review (an edit, undo, a new or closed review): the
        subtype panel compares :meth:`counted_findings` with what it classified.
    """

    findings_changed = Signal()

    def __init__(self, napari_viewer: napari.Viewer, roots: list[Path] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.roots = roots
        self.stores = ReviewStoreControls(lambda: [w.store for w in find_docked(napari_viewer, CaseWidget)
                                                   if w.store is not None])
        self._session: ReviewSession | None = None
        self.locator = FindingLocator(lambda: self._sync(self.selected_ids()[0] if self.selected_ids() else None))
        self.layers = ReviewLayers(napari_viewer, lambda: self.session, bindings(self), self._guard, self._sync,
                                   self.locator.hover)
        self._run_inputs: tuple[Image, str | None] | None = None
        self._scan_key: tuple[Any, str] | None = None  # (layer id, voxel sha256) of layers.scan
        self._looked_up: tuple[Any, str] | None = None  # (scan key, store path) last searched for a review
        self.subtype: dict[int, tuple[str, float]] = {}  # finding id -> (region label, attention): show_subtype

        self.inputs = ScanInputs(napari_viewer)
        self.swi_combo, self.phase_combo = self.inputs.swi_combo, self.inputs.phase_combo
        self.versions = VersionPicker(MODEL_NAME, roots, describe=version_label)
        self.device = DevicePicker()
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setDecimals(3)
        self.reviewer, self.store_path, self.new_store_button = (self.stores.reviewer, self.stores.path_field,
                                                                self.stores.new_button)
        inputs = QGroupBox("Detect")
        form = QFormLayout(inputs)
        for label, field in (("SWI", self.swi_combo), ("Phase", self.phase_combo), ("Model", self.versions),
                             ("Threshold", self.threshold), ("Device", self.device),
                             ("Reviewer", self.reviewer), ("Store", self.store_path)):
            form.addRow(label, field)
        self.runner = TaskRunner("Detect microbleeds", self._start_detection, self._show_result)
        self.import_button = QPushButton("Open detections (det.json)...")
        form.addRow(self.runner)
        form.addRow("", self.new_store_button)
        form.addRow(self.import_button)

        self.table = FindingsTable()
        self.summary = QLabel("No review open")
        self.summary.setWordWrap(True)
        self.reviewed = QLabel("")
        self.reviewed.setStyleSheet("font-weight: bold")
        self.keys_button = QPushButton("Keys...")
        self.keys_button.setToolTip("Every key of the review")
        self.accept_button, self.reject_button = QPushButton("Accept (a)"), QPushButton("Reject (r)")
        self.delete_button, self.add_button = QPushButton("Delete (Del)"), QPushButton("Add at cursor (n)")
        self.undo_button, self.redo_button = QPushButton("Undo (Ctrl-Z)"), QPushButton("Redo (Ctrl-Shift-Z)")
        self.exports = ReviewExportControls()
        self.export_button, self.seg_check = self.exports.button, self.exports.seg_check
        review = QGroupBox("Review")
        review_layout = QVBoxLayout(review)
        top = QHBoxLayout()
        top.addWidget(self.reviewed, 1)
        top.addWidget(self.keys_button)
        review_layout.addLayout(top)
        review_layout.addWidget(self.summary)
        review_layout.addWidget(self.table)
        review_layout.addWidget(self.locator.runner)
        review_layout.addWidget(self.locator.note)
        for pair in ((self.accept_button, self.reject_button), (self.delete_button, self.add_button),
                     (self.undo_button, self.redo_button)):
            row = QHBoxLayout()
            for button in pair:
                row.addWidget(button)
            review_layout.addLayout(row)
        review_layout.addLayout(self.exports.row())
        scrolled_panel(self, (inputs, review), MIN_VISIBLE_HEIGHT, stretch=False)  # the table takes the height

        for signal, slot in (
            (self.swi_combo.currentIndexChanged, self._on_scan_changed), (self.versions.changed, self._on_version),
            (self.import_button.clicked, self._browse_detections), (self.table.picked, self.jump_to),
            (self.accept_button.clicked, self.accept_selected),
            (self.reject_button.clicked, self.reject_selected), (self.delete_button.clicked, self.delete_selected),
            (self.add_button.clicked, self.add_at_cursor), (self.undo_button.clicked, self.undo),
            (self.redo_button.clicked, self.redo), (self.export_button.clicked, self._browse_export),
            (self.keys_button.clicked, self.show_keys),
        ):
            signal.connect(slot)
        self.stores.connect(self._on_store_path, self._on_reviewer, self.new_store)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                      self.viewer.layers.events.reordered):
            event.connect(self._refresh_layers)

        app = QApplication.instance()
        if app is not None:  # closing napari's last window quits: the store is checkpointed and closed then
            app.aboutToQuit.connect(self.cleanup)
        self.refresh_versions()
        self._refresh_layers()
        self._update_buttons()

    # ----------------------------------------------------------------- inputs
    def _layer(self, name: str) -> Image | None:
        return self.inputs.layer(name)

    def _refresh_layers(self, *_: Any) -> None:
        """Follow the viewer's layers: combos, the review of the picked scan, the phase's place.

        Called on every insert, removal and reorder, so it must be idempotent: the review
        is (re)opened only when the picked scan is a different layer or different voxels
        (``_on_scan_changed`` compares layer ids and sha256, never Python identity: napari
        hands plugins proxies of its layers).
        """
        if self.layers.forget_closed():  # the review stays in the store; picking the scan again restores it
            self._show_table()
        self.inputs.refresh()
        self._on_scan_changed()
        QTimer.singleShot(0, self._place_phase)  # after napari has finished inserting (and not once we are closed)

    def _place_phase(self) -> None:
        self.inputs.place_phase()

    def refresh_versions(self, select: str | None = None) -> None:
        """List the installed detector versions, each with its card's tag (held-out figures, demo flag).

        The registry's default is selected (not the newest: a newer version may be worse),
        or ``select``; the threshold follows the selected card.
        """
        error = self.versions.refresh(select)
        if error is not None:
            show_error(error)

    def _on_version(self, *_: Any) -> None:
        card = self.versions.card()
        if card is not None:
            self.threshold.setValue(card_threshold(card))

    def _on_reviewer(self) -> None:
        if self.session is not None:
            self.session.reviewer = self.stores.reviewer_name() or default_reviewer()

    def _on_store_path(self) -> None:
        if self.stores.differs():
            self.layers.remove()
            self._close_store()
            self._scan_key = self._looked_up = None
            self._on_scan_changed()

    @property
    def store(self) -> CaseStore | None:
        """The open annotation store (None until a review needs one)."""
        return self.stores.store

    def open_store(self) -> CaseStore:
        """The store at the path in the field: the Case widget's if it has it open, else our own."""
        return self.stores.open()

    def new_store(self, path: str | Path | None = None) -> CaseStore | None:
        """Create an empty annotation store (asked for a file name) and use it for the reviews."""
        if not self.stores.ask_new(self, path):
            return None
        self._on_store_path()
        return self.store

    @property
    def session(self) -> ReviewSession | None:
        """The open review (None: none)."""
        return self._session

    @session.setter
    def session(self, session: ReviewSession | None) -> None:
        """Another (or no) review drops the subtype's regions and attention: they were the old findings'."""
        self._session, self.subtype = session, {}

    def _close_store(self) -> None:
        self.stores.close()
        self.session = None

    # ----------------------------------------------------------------- detection
    def _start_detection(self) -> Any:
        layer = self._layer(self.swi_combo.currentText())
        if layer is None:
            raise InputFileError("no SWI layer is selected: open the SWI magnitude NIfTI first")
        magnitude = volume_from_layer(layer.data, layer.metadata, layer.name, grid="source")
        phase_layer = self._layer(self.phase_combo.currentText())
        phase = volume_from_layer(phase_layer.data, phase_layer.metadata, phase_layer.name, grid="source") if phase_layer else None
        check_inputs(magnitude, phase)  # bad input: one sentence, nothing run, nothing written
        self.open_store()  # a store that cannot be opened is reported now, not after the run
        phase_path = phase_layer.metadata[META_KEY].get("source_path") if phase_layer is not None else None
        self._run_inputs = (layer, phase_path)
        return detect_for_review(magnitude, phase, self.versions.version(), self.device.requested(),
                                 float(self.threshold.value()), self.roots)

    def _show_result(self, value: Any) -> None:
        result, card = value
        layer, phase_path = self._run_inputs or (None, None)
        if layer is None or layer not in self.viewer.layers:
            show_warning("The scan was closed before the detection finished; nothing was stored")
            return
        geometry = geometry_of(layer.metadata)

        def store_it() -> None:
            session = self._open_session(layer)
            instances = from_display(result.instances, geometry, order=0) if on_display_grid(result, geometry) else None
            added = session.add_detections(result, card.to_dict(), phase_path, instances)
            self._show_session(layer, session)
            if result.detections and not added:
                show_info(f"{layer.name} already has detections of {card.name} {card.version}; "
                          "the stored review is shown unchanged")
            else:
                show_info(f"{len(added)} microbleeds found on {layer.name} ({result.device}, "
                          f"{card.name} {card.version}, threshold {result.threshold:.2f})")

        self._guard(store_it)

    def _open_session(self, layer: Image) -> ReviewSession:
        info, geometry = layer.metadata[META_KEY], geometry_of(layer.metadata)
        if self.session is not None and self.session.sha256 == info["sha256"] and self.store is self.session.store:
            return self.session
        store = self.open_store()
        self.session = ReviewSession.open(store, info["source_path"] or layer.name, info["sha256"],
                                          geometry.source_shape, geometry.source_affine.tolist(),
                                          self.stores.reviewer_name())
        return self.session

    def _on_scan_changed(self, *_: Any) -> None:
        """Restore the stored review of the picked scan (matched by voxel-data sha256).

        Whatever the order: the widget docked before the scan opens, a scan replaced by
        another with the same layer name, a store picked after the scan. A scan already
        looked up in this store is not looked up again.
        """
        layer = self._layer(self.swi_combo.currentText())
        key = None if layer is None else layer_key(layer)
        store_path = self.store_path.text()
        if key is not None and key == self._scan_key and (self.session is not None or self._looked_up == (key, store_path)):
            return
        if key is None and self.layers.scan is None and self.session is None:
            return
        self.session, self.layers.scan, self._scan_key = None, layer, key  # first: removing layers re-enters here
        self.layers.remove()  # the old scan's review stays in the store; picking it restores it
        self._show_table()
        if layer is None or layer.ndim != 3:
            return
        self._looked_up = (key, store_path)

        def restore() -> None:
            info = layer.metadata[META_KEY]
            store = self.open_store()
            if ReviewSession.has_review(store, info["sha256"]):
                session = self._open_session(layer)
                self._show_session(layer, session)
                show_info(f"Restored the microbleed review of {layer.name}: {len(session.findings)} findings")
                return
            for record in ReviewSession.other_scans_at_path(store, info["source_path"] or layer.name, info["sha256"]):
                try:
                    ReviewSession.reopen(store, record, info["sha256"])
                except ImageMismatchError as exc:
                    show_warning(f"{exc} That review is not shown on this scan.")
                break

        self._guard(restore)

    def import_detections_from(self, det_json: str | Path, labels: str | Path | None = None) -> None:
        """Add a det.json's detections to the picked scan; refused for another scan."""

        def load() -> None:
            layer = self._layer(self.swi_combo.currentText())
            if layer is None:
                raise InputFileError("no SWI layer is selected: open the scan the detections were made on")
            doc = read_detections(det_json, expected_sha256=layer.metadata[META_KEY]["sha256"])  # before any write
            cards = [c.to_dict() for _r, c in installed_versions(MODEL_NAME, self.roots)
                     if (c.name, c.version) == (doc["model"].get("name"), doc["model"].get("version"))]
            session = self._open_session(layer)
            added = session.import_detections(det_json, labels, cards[0] if cards else None)
            self._show_session(layer, session)
            show_info(f"{len(added)} detections imported from {Path(det_json).name}")

        self._guard(load)

    def _browse_detections(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Microbleed detections", "", "Detections (*.json)")
        if path:
            self.import_detections_from(path)

    # ----------------------------------------------------------------- review display
    def _show_session(self, layer: Image, session: ReviewSession) -> None:
        """Draw ``session``'s review over ``layer``: new layers, points, table, keys active."""
        self.session, self._scan_key = session, layer_key(layer)  # first: removing layers re-enters here
        self.layers.build(layer, session)
        self._sync()
        self.layers.activate()

    def _sync(self, select: int | None = None) -> None:
        """Points, mask colours, table and buttons from the session (the store's truth)."""
        self.layers.sync(select)
        self.layers.show_attention(self.subtype)
        self._show_table(select)

    def counted_findings(self) -> list[Any]:
        """The review's findings a subtype counts: all visible ones but the rejected.

        Pending findings count (the detector's call until reviewed); accepted, added and
        moved ones count; rejected (and deleted) ones do not. Empty without an open review.
        """
        if self.session is None or self.layers.points is None:
            return []
        return [f for f in self.session.findings if f.status != "rejected"]

    def show_subtype(self, by_id: dict[int, tuple[str, float]]) -> None:
        """Show each finding's MARS region and attention (table columns, point size); {} clears them."""
        self.subtype = dict(by_id)
        self.layers.show_attention(self.subtype)
        self._show_table(self.table.selected_ids()[0] if self.table.selected_ids() else None)

    def _show_table(self, select: int | None = None) -> None:
        review_open = self.session is not None and self.layers.points is not None
        findings = self.session.findings if review_open else []
        self.locator.update(self.layers.scan if review_open else None, findings)  # first: the cells say "…"
        self.table.show_findings(self.viewer, findings, select, self.subtype, self.locator.text)
        self.summary.setText(summary_text(findings, review_open))
        signed = self._signed_off() if review_open else ""
        self.reviewed.setText(reviewed_text(findings) + (f" · signed off by {signed}" if signed else ""))
        self._update_buttons()
        self.findings_changed.emit()

    def refresh_review(self) -> None:
        """Redraw the table and the reviewed line (the worklist calls it after a sign-off or re-open)."""
        self._show_table(self.table.selected_ids()[0] if self.table.selected_ids() else None)

    def _signed_off(self) -> str:
        """Who signed the open scan off and when ('' while not): edits are refused until it is re-opened."""
        try:
            return self.store.scan_state(self.session.sha256).signed if self.store is not None else ""
        except NeuroreviewError:  # a scan not (yet) in the store has no sign-off
            return ""

    def jump_to(self, fid: int) -> None:
        """Show a finding: its slice, the camera centred on it, its point selected."""
        if self.session is not None and fid in self.layers.order:
            self.layers.jump_to(fid, self.session.finding(fid).world)

    def next_finding(self) -> None:
        """Select and centre the next finding in table order."""
        self._step(1)

    def previous_finding(self) -> None:
        """Select and centre the previous finding in table order."""
        self._step(-1)

    def _step(self, step: int) -> None:
        ids = self.selected_ids()
        fid = self.layers.neighbour(ids[0] if ids else None, step)
        if fid is None:
            show_info("No more findings that way" if self.layers.order else "No findings to go to")
            return
        self.jump_to(fid)
        self.table.select(fid)

    def toggle_overlays(self) -> None:
        """Hide or show the review's rings and mask outlines (to see the scan alone)."""
        self.layers.toggle()

    def show_keys(self) -> KeysDialog:
        """Open the sheet of every key of the review (not modal: it may stay open while reviewing)."""
        self._keys_dialog = KeysDialog(self)
        self._keys_dialog.show()
        return self._keys_dialog

    def selected_ids(self) -> list[int]:
        """Findings selected on the points layer, else the table's row."""
        return self.layers.selected_ids() or self.table.selected_ids()

    def _update_buttons(self) -> None:
        active = self.session is not None and self.layers.points is not None
        for button in (self.accept_button, self.reject_button, self.delete_button, self.add_button):
            button.setEnabled(active)
        self.exports.update(active, self.layers.scan)
        self.undo_button.setEnabled(active and self.session.can_undo)
        self.redo_button.setEnabled(active and self.session.can_redo)

    # ----------------------------------------------------------------- edits
    def _edit(self, action: Callable[[], int | None]) -> None:
        """Run one session edit (already in the store when it returns), then redraw."""
        if self.session is None:
            return
        result: list[int | None] = [None]

        def run() -> None:
            result[0] = action()

        self._guard(run)
        self._sync(select=result[0])

    def _decide_selected(self, decide: Callable[[int], Any], advance: bool) -> None:
        ids = self.selected_ids()
        if not ids or self.session is None:
            show_info("Select a microbleed first (click its point or its row)")
            return
        self._edit(lambda: [decide(fid) for fid in ids][-1].id)
        order = self.layers.order
        if advance and len(ids) == 1 and ids[0] in order:  # on to the next finding
            index = order.index(ids[0]) + 1
            if index < len(order):
                self.jump_to(order[index])
                self._show_table(order[index])

    def accept_selected(self) -> None:
        """Accept the selected microbleed(s)."""
        self._decide_selected(lambda fid: self.session.accept(fid), advance=True)

    def reject_selected(self) -> None:
        """Reject the selected microbleed(s)."""
        self._decide_selected(lambda fid: self.session.reject(fid), advance=True)

    def delete_selected(self) -> None:
        """Delete the selected microbleed(s): rejected, and hidden if user-added."""
        self._decide_selected(lambda fid: self.session.delete(fid), advance=False)

    def add_at_cursor(self) -> None:
        """Add a microbleed at the cursor (napari world, turned into RAS mm)."""
        position = np.asarray(self.viewer.cursor.position, dtype=float)[-3:]
        self._edit(lambda: self.session.add(napari_world_to_ras(position)))

    def undo(self) -> None:
        """Undo the latest edit (a compensating review is written)."""
        self._edit(lambda: self.session.undo())

    def redo(self) -> None:
        """Redo the latest undone edit."""
        self._edit(lambda: self.session.redo())

    # ----------------------------------------------------------------- export
    def export_to(self, folder: str | Path, seg: bool | None = None, bids: bool | None = None) -> list[Path]:
        """Write the labels, points JSON/TSV and (``seg``, default the box) a DICOM SEG.

        ``bids`` (default the BIDS box, checked): under ``folder/derivatives/neuroreview/sub-*``
        with sidecars (issue 14's layout); else flat ``<scan>_desc-cmb_dseg.nii.gz`` etc. in
        ``folder``. All together, the SEG from the open layer's series; no SEG (a notice) when
        nothing is accepted.
        """
        if self.session is None:
            show_error("No microbleed review to export: run the detector or pick a reviewed scan")
            return []
        return self.exports.export(self.session, self.layers.scan, folder, seg, self._guard, bids)

    def _browse_export(self) -> None:
        folder = self.exports.ask_folder(self)
        if folder:
            self.export_to(folder)

    # ----------------------------------------------------------------- plumbing
    def _guard(self, call: Callable[[], Any]) -> bool:
        """A user mistake from a synchronous step: one notification, False.

        A conflict with another session (another widget or reviewer changed the finding)
        wrote nothing; the review is read again from the store so the screen shows the
        other decision, and the user can redo theirs on it.
        """
        try:
            call()
        except ReviewConflictError as exc:
            if self.session is not None:
                self.session.reload()
                QTimer.singleShot(0, self._sync)
            show_error(f"{exc} The review was reloaded from the store; undo history cleared.")
            return False
        except NeuroreviewError as exc:
            show_error(str(exc))
            return False
        return True

    def cleanup(self) -> None:
        """Disconnect from the viewer and close our own store (safe to call twice)."""
        app = QApplication.instance()
        if app is not None:
            try:
                app.aboutToQuit.disconnect(self.cleanup)
            except (TypeError, RuntimeError):  # already disconnected
                pass
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                      self.viewer.layers.events.reordered):
            event.disconnect(self._refresh_layers)
        self.layers.disconnect()
        self.locator.cancel()
        self._close_store()

    def closeEvent(self, event: Any) -> None:
        """Let go of the viewer and the store when the dock is closed."""
        self.cleanup()
        super().closeEvent(event)
