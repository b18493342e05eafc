"""The metastasis origin panel: pick the sequences and the lesions, classify, see the tree and the Grad-CAM.

The radiologist picks one layer per sequence (contrast T1 required; T1, T2, FLAIR, DWI and
ADC optional; each combo starts on the layer whose name says that sequence: "ce_t1",
"CE-T1", "t1c"...), the lesion labels layer (one id per lesion), an origin model version
and a device, and clicks *Classify*:
:func:`~napari_neuroreview.core.tasks.metastasis.classify.classify_for_review` loads the
model and classifies every lesion in the worker (progress, Cancel; nothing is added to
the viewer before it returns). Only the sequences the chosen version reads (its card's
``sequences``, and always the contrast T1) are read, in the worker too (hashing, or reading
an oblique scan's file again, must not freeze the viewer; a layer the model ignores, edited
or not, cannot block it), as the model reads files (``volume_from_layer(grid="source")``:
the file's voxels and affine); sequences on another grid (DWI and ADC, as acquired) are
resampled by the crops and the panel says so.

The lesions are read on the contrast T1's DISPLAY grid, the grid the labels layer is drawn
and painted on: the user's edits count as they are, and a labels layer on another grid is
resampled nearest-neighbour with a message (``lesions_from_labels``). *Grow lesion* (a
toggle) makes a click on the contrast T1 (a napari mouse callback on that layer, which is
made the active one) grow a lesion there (``grow_lesion``, in a worker: a 40 mm ball at 1 mm
takes about half a second) and write it as a NEW id into the labels layer (created as
"lesions" on the contrast T1's grid when there is none), only into unlabelled voxels,
through napari's ``data_setitem`` so that the labels layer's own undo (Ctrl-Z) takes it back;
the user corrects it with napari's brush and eraser.

With no origin model installed (none is shipped) the panel says, in one sentence, the
command that trains one, and *Classify* stays disabled. The answer
(:mod:`._metastasis_results`): a lesion table, the probability tree of the selected lesion
(selecting a row centres the view on it), and one Grad-CAM layer over the contrast T1.
"""

from __future__ import annotations

import dataclasses
import re
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFormLayout, QGroupBox, QLabel, QPushButton, QVBoxLayout, QWidget

from ..core.errors import InputFileError, NeuroreviewError
from ..core.io.export import napari_world_to_ras
from ..core.io.layers import geometry_of, labels_kwargs_like, volume_from_layer
from ..core.progress import Progress
from ..core.tasks.metastasis.classes import SEQUENCES
from ..core.tasks.metastasis.classes import SEQUENCE_NAMES
from ..core.tasks.metastasis.classify import REFERENCE, ClassifyResult, and_list, classify_for_review
from ..core.tasks.metastasis.lesion_input import LesionMask, grow_lesion, lesions_from_labels
from ..core.registry import not_installed
from ..core.tasks.metastasis.model import MODEL_NAME, TRAIN_COMMAND, WHAT
from ._base import DevicePicker, LayerPicker, VersionPicker, require_layer, scrolled_panel
from ._metastasis_results import GradCamOverlay, OriginResults
from ._worker import TaskRunner
from .case import is_scan

if TYPE_CHECKING:
    import napari

#: A layer as the worker reads it: its data, a copy of its metadata, its name (``volume_from_layer``'s arguments).
LayerInput = tuple[Any, dict[str, Any], str]
#: The choice "no layer" of an optional sequence.
NONE = "\u2014"
#: The combos top to bottom: the contrast T1 first (required), then the optional ones.
ORDER = ("ce_t1", "t1", "t2", "flair", "dwi", "adc")
LESIONS_LAYER = "lesions"
NO_MODEL = not_installed(WHAT, TRAIN_COMMAND)
CAVEAT = "Simulated training data, not for clinical use."
#: Pixels of the panel that stay visible however the dock is shared (it scrolls below that).
MIN_VISIBLE_HEIGHT = 520
#: Words in a layer name that mean "after contrast" next to a T1 word, and names that alone mean it.
_CONTRAST_WORDS = {"ce", "gd", "gad", "post", "contrast", "c", "+c", "c+", "enhanced"}
_CONTRAST_NAMES = {"cet1", "t1c", "t1ce", "t1gd", "t1post", "t1wce", "t1+c", "ct1", "t1contrast", "t1wgd", "t1cgd"}
assert set(ORDER) == set(SEQUENCES)


def sequence_of(name: str) -> str | None:
    """The sequence a layer's name says ("CE-T1", "ce_t1", "t1c" -> "ce_t1"; "T2-FLAIR" -> "flair"), or None.

    Why by words and not substrings: "sequence_t1" holds "ce" and "t1" but is a T1.
    """
    words = re.findall(r"[a-z0-9+]+", name.lower())
    joined = "".join(words)
    t1_word = any(w in ("t1", "t1w") for w in words)
    if joined in _CONTRAST_NAMES or any(w in _CONTRAST_NAMES for w in words) \
            or (t1_word and any(w in _CONTRAST_WORDS for w in words)):
        return "ce_t1"
    if "flair" in joined:
        return "flair"
    if "adc" in words or joined.startswith("adc") or joined.endswith("adc"):
        return "adc"
    if any(w.startswith(("dwi", "b1000", "trace")) for w in words):
        return "dwi"
    if any(w in ("t2", "t2w") for w in words):
        return "t2"
    if t1_word or joined in ("t1", "t1w", "t1native"):
        return "t1"
    return None


def is_labels(layer: Any) -> bool:
    return isinstance(layer, Labels)


def on_grid_of(layer: Any, image: Any) -> bool:
    """Whether a layer is drawn on an image layer's display grid (same shape, scale and translate)."""
    return (tuple(np.shape(layer.data))[-3:] == tuple(np.shape(image.data))[-3:]
            and np.allclose(np.asarray(layer.scale)[-3:], np.asarray(image.scale)[-3:])
            and np.allclose(np.asarray(layer.translate)[-3:], np.asarray(image.translate)[-3:]))


class MetastasisWidget(QWidget):
    """Dock widget "Metastasis origin" (see the module docstring).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    roots : list of Path, optional
        Registry roots to find origin model versions in (default: the user's, then shipped).
    """

    def __init__(self, napari_viewer: napari.Viewer, roots: list[Path] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.roots = roots
        self.result: ClassifyResult | None = None
        self._run_inputs: Any = None  # the contrast T1 layer of the run in flight
        self._touched: set[str] = set()  # combos the user set by hand: names no longer choose for them
        self._grow_layer: Any = None  # the contrast T1 layer the click callback is on
        self.grow_worker: Any = None

        self.pickers: dict[str, LayerPicker] = {
            s: LayerPicker(napari_viewer, is_scan, leading=() if s == REFERENCE else (NONE,)) for s in ORDER}
        self.lesion_picker = LayerPicker(napari_viewer, is_labels)
        self.grow_button = QPushButton("Grow lesion (click the contrast T1)")
        self.grow_button.setCheckable(True)
        self.versions = VersionPicker(MODEL_NAME, roots)
        self._registry_error = self.versions.refresh()  # a refused registry is its sentence, not "none installed"
        self.model_note = QLabel("")
        self.model_note.setWordWrap(True)
        self.device = DevicePicker()
        inputs = QGroupBox("Classify")
        form = QFormLayout(inputs)
        for s in ORDER:
            form.addRow(SEQUENCE_NAMES[s] if s != REFERENCE else "Contrast T1", self.pickers[s])
        form.addRow("Lesions", self.lesion_picker)
        form.addRow(self.grow_button)
        form.addRow("Model", self.versions)
        form.addRow(self.model_note)
        form.addRow("Device", self.device)
        self.runner = TaskRunner("Classify", self._start, self._show)
        form.addRow(self.runner)

        answer = QGroupBox("Origin")
        box = QVBoxLayout(answer)
        self.results = OriginResults(napari_viewer)
        self.messages = QLabel("")
        self.messages.setWordWrap(True)
        self.caveat = QLabel(CAVEAT)
        self.caveat.setStyleSheet("font-style: italic;")
        box.addWidget(self.results)
        box.addWidget(self.caveat)
        box.addWidget(self.messages)
        cam = QGroupBox("Grad-CAM over the contrast T1")
        self.gradcam = GradCamOverlay(napari_viewer)
        QVBoxLayout(cam).addWidget(self.gradcam)

        self.scroll = scrolled_panel(self, (inputs, answer, cam), MIN_VISIBLE_HEIGHT)

        # Names choose after Qt has said whether the user picked (``activated``): deferred, coalesced.
        self._preselect_timer = QTimer(self)
        self._preselect_timer.setSingleShot(True)
        self._preselect_timer.setInterval(0)
        self._preselect_timer.timeout.connect(self._preselect)
        for s, picker in self.pickers.items():
            picker.activated.connect(lambda _i, s=s: self._touched.add(s))
            picker.changed.connect(self._preselect_timer.start)
        self.lesion_picker.activated.connect(lambda _i: self._touched.add(LESIONS_LAYER))
        self.lesion_picker.changed.connect(self._preselect_timer.start)
        self.pickers[REFERENCE].changed.connect(self._follow_reference)
        self.versions.changed.connect(self._on_version)
        self.grow_button.toggled.connect(self._on_grow_toggled)
        self._preselect()
        self._on_version()

    # ----------------------------------------------------------------- inputs
    def _preselect(self, *_: Any) -> None:
        """Each combo the user has not set follows the layer names (a sequence's name, "lesion")."""
        for s, picker in self.pickers.items():
            if s in self._touched:
                continue
            named = next((layer.name for layer in picker.layers() if sequence_of(layer.name) == s), None)
            wanted = named if named is not None else (NONE if s != REFERENCE else None)
            if wanted is not None and picker.currentText() != wanted:
                picker.setCurrentText(wanted)
        if LESIONS_LAYER not in self._touched:
            named = next((layer.name for layer in self.lesion_picker.layers() if "lesion" in layer.name.lower()), None)
            if named is not None and self.lesion_picker.currentText() != named:
                self.lesion_picker.setCurrentText(named)

    def _on_version(self, *_: Any) -> None:
        """The sequences the chosen model reads, or the sentence saying how to train one; Classify only with a model."""
        card = self.versions.card()
        if card is None:
            self.model_note.setText(self._registry_error or NO_MODEL)
        else:
            reads = and_list(SEQUENCE_NAMES[s] for s in card.config.get("sequences", ()))
            self.model_note.setText(f"{card.name} {card.version} reads {reads}.")
        self.runner.run_button.setEnabled(card is not None and not self.runner.running)

    def _labels_snapshot(self, ce: Any) -> LayerInput:
        """The labels layer as it is now (a copy: the user may paint on while the worker reads it)."""
        labels = require_layer(self.lesion_picker, "No lesion labels layer is chosen: pick one, or switch on "
                                                   "'Grow lesion' and click each lesion on the contrast T1.")
        # A labels layer made in napari on the contrast T1's grid has no file geometry of its own: it has the T1's.
        metadata = labels.metadata if geometry_of(labels.metadata) is not None or not on_grid_of(labels, ce) \
            else ce.metadata
        return np.array(labels.data), dict(metadata), labels.name

    @staticmethod
    def _lesion_masks(labels: LayerInput, ce: LayerInput) -> list[LesionMask]:
        """The labels' lesions on the contrast T1's display grid (the user's edits as they are)."""
        volume = volume_from_layer(*labels, grid="display")
        volume = dataclasses.replace(volume, path=Path(labels[2]))  # messages name the layer, not a file
        return lesions_from_labels(volume, volume_from_layer(*ce, grid="display"))

    # ----------------------------------------------------------------- run
    def _start(self) -> Any:
        """GUI thread: take the chosen layers (a missing one is one sentence); the worker reads them and classifies."""
        card = self.versions.card()
        if card is None:
            raise InputFileError(NO_MODEL)
        ce = require_layer(self.pickers[REFERENCE], "No contrast T1 layer is chosen: open the contrast-enhanced "
                                                     "T1 (File > Open) and pick it.")
        reads = set(card.config.get("sequences") or SEQUENCES) | {REFERENCE}  # no card list: all, as before
        chosen: dict[str, LayerInput] = {s: (p.layer().data, dict(p.layer().metadata), p.layer().name)
                                         for s, p in self.pickers.items() if s in reads and p.layer() is not None}
        labels = self._labels_snapshot(ce)
        version, device, roots = self.versions.version(), self.device.requested(), self.roots

        def task() -> Any:
            yield Progress(0, 1, "Reading the scans")
            sequences = {s: volume_from_layer(*layer, grid="source") for s, layer in chosen.items()}
            masks = self._lesion_masks(labels, chosen[REFERENCE])
            return (yield from classify_for_review(sequences, masks, version, device, cam=True, roots=roots))

        self._run_inputs = ce  # the shown result and its Grad-CAM stay until the new one replaces them
        return task()

    def _show(self, result: ClassifyResult) -> None:
        """GUI thread: table, tree, messages, the Grad-CAM layer over the contrast T1."""
        ce, self._run_inputs = self._run_inputs, None
        if ce is None or ce not in self.viewer.layers:
            show_warning("The contrast T1 was closed before the classification finished; nothing is shown.")
            return
        self.result = result
        self.results.show_lesions(result.lesions)
        self.messages.setText("\n".join(result.messages))
        if result.cam is not None:
            self.gradcam.show_maps(result.cam, result.affine, ce)
        QTimer.singleShot(0, lambda: self.scroll.ensureWidgetVisible(self.gradcam))  # the answer, in a short dock
        show_info(f"{len(result.lesions)} lesion(s) classified ({result.model['name']} {result.model['version']})")

    # ----------------------------------------------------------------- grow a lesion from a click
    def _on_grow_toggled(self, on: bool) -> None:
        self._detach()
        if on:
            ce = self.pickers[REFERENCE].layer()
            if ce is None:
                show_error("No contrast T1 layer is chosen: open it before growing a lesion from a click.")
                self.grow_button.setChecked(False)
                return
            self._attach(ce)

    def _follow_reference(self, *_: Any) -> None:
        """Another contrast T1 picked while growing: the click callback moves to it."""
        if self.grow_button.isChecked():
            ce = self.pickers[REFERENCE].layer()
            if ce is None or self._grow_layer is None or ce.name != self._grow_layer.name:
                self._on_grow_toggled(True)

    def _attach(self, ce: Any) -> None:
        ce.mouse_drag_callbacks.append(self._on_mouse)
        self._grow_layer = ce
        self.viewer.layers.selection.active = ce  # a layer's callbacks run while it is the active one

    def _detach(self) -> None:
        layer, self._grow_layer = self._grow_layer, None
        if layer is not None:
            try:
                layer.mouse_drag_callbacks.remove(self._on_mouse)
            except ValueError:
                pass

    def _on_mouse(self, layer: Any, event: Any) -> Any:
        """A click (press and release without dragging further than a voxel) grows a lesion where it was pressed."""
        if event.button != 1 or event.modifiers:
            return
        start = np.asarray(event.position, float)[-3:]
        yield
        while event.type == "mouse_move":
            yield
        moved = np.abs(np.asarray(event.position, float)[-3:] - start)
        if np.all(moved <= np.abs(np.asarray(layer.scale, float)[-3:])):
            self.grow_at(start)

    def grow_at(self, napari_world: Any) -> None:
        """Grow a lesion at a napari world position of the contrast T1, in a worker; the result lands in the labels."""
        ce = self._grow_layer if self._grow_layer is not None else self.pickers[REFERENCE].layer()
        if ce is None:
            return
        if self.grow_worker is not None:
            show_info("Still growing the previous lesion; click again when it is drawn.")
            return
        try:
            image = volume_from_layer(ce.data, ce.metadata, ce.name, grid="display")
        except NeuroreviewError as exc:
            show_error(str(exc))
            return
        seed = napari_world_to_ras(np.asarray(napari_world, float))
        worker = create_worker(grow_lesion, image, seed, _start_thread=False,
                               _connect={"returned": lambda mask: self._grown(mask, ce),
                                         "errored": self._grow_failed, "finished": self._grow_finished})
        self.grow_worker = worker
        worker.start()

    def _grow_failed(self, exc: BaseException) -> None:
        """A user mistake is one sentence; anything else a bug, with its traceback (as TaskRunner does)."""
        if isinstance(exc, NeuroreviewError):
            show_error(str(exc))
            return
        traceback.print_exception(exc)
        show_error(f"Growing the lesion failed unexpectedly: {type(exc).__name__}: {exc}")

    def _grow_finished(self) -> None:
        self.grow_worker = None

    def _grown(self, mask: LesionMask, ce: Any) -> None:
        """Write a grown mask as a new id into the labels layer (undo-able), only where nothing is labelled."""
        for message in mask.messages:
            show_info(message)
        if mask.empty or ce not in self.viewer.layers:
            return
        labels = self._labels_on(ce)
        if labels is None:
            return
        current = np.asarray(labels.data)
        new = mask.mask & (current == 0)
        if not np.any(new):
            show_info("That lesion is already labelled; edit it with the labels layer's brush and eraser.")
            return
        lesion_id = int(current.max()) + 1
        if lesion_id > np.iinfo(current.dtype).max:
            show_error(f"{labels.name}: holds {current.dtype} ids, and lesion {lesion_id} does not fit; save it and "
                       "start a new labels layer.")
            return
        labels.data_setitem(np.nonzero(new), lesion_id)  # recorded in the layer's history: Ctrl-Z undoes it
        self.viewer.layers.selection.active = ce  # the next click grows again
        show_info(f"Lesion {lesion_id} grown ({np.count_nonzero(new) * float(np.prod(ce.scale[-3:])) / 1000:.2f} mL) in "
                  f"{labels.name}; correct it with the brush and eraser of that layer.")

    def _labels_on(self, ce: Any) -> Any:
        """The chosen labels layer if it is on the contrast T1's grid, else a new "lesions" layer there."""
        chosen = self.lesion_picker.layer()
        if chosen is not None:
            if on_grid_of(chosen, ce):
                return chosen
            show_error(f"{chosen.name} is on another grid than {ce.name}: a grown lesion goes into labels on the "
                       f"contrast T1's grid; pick such a layer, or none to make one.")
            return None
        layer = self.viewer.add_labels(np.zeros(np.shape(ce.data)[-3:], np.uint16),
                                       **labels_kwargs_like(ce.metadata, ce.scale, ce.translate, LESIONS_LAYER))
        self.lesion_picker.setCurrentText(layer.name)
        return layer

    # ----------------------------------------------------------------- plumbing
    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        """List the versions again when the panel comes into view: one trained meanwhile (the CLI) appears."""
        super().showEvent(event)
        if not self.runner.running:
            self._registry_error = self.versions.refresh(self.versions.version())

    def cleanup(self) -> None:
        """Take the click callback off the contrast T1 (safe to call twice)."""
        self._detach()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        self.cleanup()
        super().closeEvent(event)

