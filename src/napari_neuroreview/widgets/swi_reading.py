"""The SWI reading panel: window presets, a minIP slab, magnitude and phase side by side.

What a neuroradiologist sets up before reading an SWI for microbleeds:

1. **Window.** A preset per modality (:mod:`~..core.reading.window`: SWI magnitude, SWI
   phase, T1, FLAIR, auto) applied to the chosen layer's contrast limits. The preset
   follows the layer's name ("phase" -> SWI phase) until the user picks one; picking one
   applies it at once, *Apply window* applies it again (after editing the limits by hand).
2. **minIP.** The minimum over a slab of 2-20 mm (6 by default) along the axis the viewer
   slices, every slice at once (:mod:`~..core.reading.minip`, in :class:`TaskRunner`:
   progress, Cancel), so scrolling through it is instant. It is its own image layer,
   "minIP <mm> mm: <layer>" (the slab's real thickness, a whole number of slices), on the
   source's scale, translate and affine, just above the source (so detections drawn over
   the scan stay on top), with the SWI window. Changing the thickness computes it again
   and replaces that layer's data, and so does slicing along another axis (the dims
   order); nothing is added until the worker returns.
3. **Side by side.** napari's grid mode with only the magnitude, the phase and the minIP
   visible, one per cell in one row, each captioned with its layer's name: one camera and
   one slice for all (zoom, pan and scroll move them together). Unchecking restores the
   grid settings, every layer's visibility and its caption as they were.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QWidget,
)

from ..core.errors import NeuroreviewError
from ..core.io.layers import volume_from_layer
from ..core.progress import TaskGenerator
from ..core.reading import minip
from ..core.reading.window import PRESETS, contrast_limits, modality_from_name
from ._base import (
    LayerPicker,
    cleanup_when_undocked,
    elide,
    require_layer,
    scrolled_panel,
    view_grid,
)
from ._worker import TaskRunner
from .case import is_scan

if TYPE_CHECKING:
    import napari

#: Key of a minIP layer's metadata: its source layer's unique_id and its slab.
MINIP_KEY = "neuroreview_minip"
#: The phase combo's "none" choice.
NO_PHASE = "(no phase)"
#: Milliseconds of quiet after a thickness change before the minIP is computed again.
RECOMPUTE_DELAY_MS = 400
MIN_VISIBLE_HEIGHT = 360


def sliced_axis(viewer: napari.Viewer, layer_ndim: int) -> int:
    """The layer's array axis the viewer slices in 2D (the first of its last three in the dims order).

    A layer's axes are the viewer's last ``layer_ndim`` axes; in 3D display the same axis
    (the one a 2D view would slice) is taken.
    """
    offset = viewer.dims.ndim - layer_ndim
    axes = [a - offset for a in viewer.dims.order if a >= offset]
    return axes[-3] if len(axes) >= 3 else 0


def is_minip(layer: Any) -> bool:
    """A minIP layer made by this panel (its metadata names its source)."""
    return MINIP_KEY in layer.metadata


def set_window(layer: Any, limits: tuple[float, float]) -> None:
    """Set contrast limits, widening the slider's range first when they lie outside it (phase: +-pi)."""
    low, high = layer.contrast_limits_range
    layer.contrast_limits_range = (min(low, limits[0]), max(high, limits[1]))
    layer.contrast_limits = list(limits)


class SWIReadingWidget(QWidget):
    """Dock widget "SWI reading" (see the module docstring)."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._touched: set[str] = set()  # combos the user set by hand: names no longer choose for them
        self._run: dict[str, Any] | None = None  # the source and slab of the minIP in flight
        self._saved: dict[str, Any] | None = None  # visibility and grid settings before side by side

        window = QGroupBox("Window")
        form = QFormLayout(window)
        self.image = LayerPicker(napari_viewer, lambda layer: is_scan(layer) or is_minip(layer))
        self.preset = elide(QComboBox())
        for key, label in PRESETS.items():
            self.preset.addItem(label, key)
        self.apply_button = QPushButton("Apply window")
        form.addRow("Image", self.image)
        form.addRow("Preset", self.preset)
        form.addRow(self.apply_button)

        slab = QGroupBox("minIP slab")
        form = QFormLayout(slab)
        self.magnitude = LayerPicker(napari_viewer, is_scan)
        self.thickness = QDoubleSpinBox()
        self.thickness.setRange(*minip.SLAB_RANGE_MM)
        self.thickness.setSingleStep(1.0)
        self.thickness.setDecimals(1)
        self.thickness.setSuffix(" mm")
        self.thickness.setValue(minip.DEFAULT_SLAB_MM)
        self.thickness.setToolTip("4-8 mm is usual; the slab is a whole number of slices along the axis shown")
        self.slab_note = QLabel("")
        self.slab_note.setWordWrap(True)
        self.minip_runner = TaskRunner("Compute minIP", self._start_minip, self._show_minip)
        form.addRow("Magnitude", self.magnitude)
        form.addRow("Thickness", self.thickness)
        form.addRow(self.minip_runner)
        form.addRow(self.slab_note)

        side = QGroupBox("Side by side")
        form = QFormLayout(side)
        self.phase = LayerPicker(napari_viewer, is_scan, leading=(NO_PHASE,))
        self.side_by_side = QCheckBox("Side by side, linked")
        self.side_by_side.setToolTip("The magnitude, the phase and the minIP in a row: one slice, zoom and pan")
        form.addRow("Phase", self.phase)
        form.addRow(self.side_by_side)

        self.scroll = scrolled_panel(self, (window, slab, side), MIN_VISIBLE_HEIGHT)

        self._recompute_timer = QTimer(self)
        self._recompute_timer.setSingleShot(True)
        self._recompute_timer.setInterval(RECOMPUTE_DELAY_MS)
        self._recompute_timer.timeout.connect(self._recompute)
        for key, picker in (("image", self.image), ("magnitude", self.magnitude), ("phase", self.phase)):
            picker.activated.connect(lambda _i, key=key: self._touched.add(key))
            picker.changed.connect(self._preselect)
        self.image.changed.connect(self._follow_image)
        self.preset.activated.connect(self._on_preset_picked)
        self.apply_button.clicked.connect(self.apply_window)
        self.thickness.valueChanged.connect(lambda _v: self._recompute_timer.start())
        napari_viewer.dims.events.order.connect(self._on_order)  # another sliced axis
        self.side_by_side.toggled.connect(self._set_side_by_side)
        self._preselect()
        self._follow_image()
        cleanup_when_undocked(self, self.cleanup)

    # ----------------------------------------------------------------- inputs
    def _preselect(self, *_: Any) -> None:
        """The magnitude and phase combos the user has not set follow the layer names."""
        for key, picker, wanted in (("magnitude", self.magnitude, "swi"), ("phase", self.phase, "phase")):
            if key in self._touched:
                continue
            named = next((layer.name for layer in picker.layers()
                          if modality_from_name(layer.name) == wanted), None)
            if named is not None and picker.currentText() != named:
                picker.blockSignals(True)
                picker.setCurrentText(named)
                picker.blockSignals(False)

    def _follow_image(self, *_: Any) -> None:
        """The preset follows the chosen image's name (the user's pick of a preset applies at once)."""
        layer = self.image.layer()
        if layer is not None:
            self.preset.setCurrentIndex(self.preset.findData(modality_from_name(layer.name)))

    def _on_preset_picked(self, _index: int) -> None:
        self.apply_window()

    def apply_window(self) -> tuple[float, float] | None:
        """Apply the chosen preset to the chosen image's contrast limits; a refusal is one sentence."""
        layer = self.image.layer()
        if layer is None:
            show_error("No image is chosen: open a scan (File > Open) and pick it.")
            return None
        try:
            limits = contrast_limits(layer.data, self.preset.currentData(), layer.name)
        except NeuroreviewError as exc:
            show_error(str(exc))
            return None
        set_window(layer, limits)
        return limits

    # ----------------------------------------------------------------- minIP
    def minip_layer(self, source: Any | None = None) -> Any | None:
        """The minIP layer made from ``source`` (default: the chosen magnitude), or None."""
        source = source if source is not None else self.magnitude.layer()
        if source is None:
            return None
        return next((layer for layer in self.viewer.layers
                     if (layer.metadata.get(MINIP_KEY) or {}).get("source") == source.unique_id), None)

    def _start_minip(self) -> TaskGenerator[Any]:
        """GUI thread: the magnitude as shown (display grid) and the sliced axis; the worker does the rest."""
        layer = require_layer(self.magnitude, "No SWI magnitude is chosen: open one (File > Open) and pick it.")
        volume = volume_from_layer(layer.data, dict(layer.metadata), layer.name, grid="display")
        asked = float(self.thickness.value())
        task = minip.run(volume, sliced_axis(self.viewer, np.ndim(layer.data)), asked, layer.name)
        self._run = {"source": layer.unique_id, "asked": asked}
        return self._minip_and_window(task, layer.name)

    @staticmethod
    def _minip_and_window(task: TaskGenerator[minip.MinipResult], name: str) -> TaskGenerator[Any]:
        """The minIP and its SWI window, both in the worker."""
        result = yield from task
        return result, contrast_limits(result.data, "swi", name)

    def _show_minip(self, answer: tuple[minip.MinipResult, tuple[float, float]]) -> None:
        """GUI thread: replace the source's minIP layer's data, or add one just above the source."""
        result, limits = answer
        run, self._run = self._run, None
        source = next((layer for layer in self.viewer.layers if run and layer.unique_id == run["source"]), None)
        if source is None or run is None:
            show_info("The magnitude was closed before its minIP was ready; nothing is shown.")
            return
        name = f"minIP {result.slab.thickness_mm:.3g} mm: {source.name}"
        metadata = {MINIP_KEY: {"source": source.unique_id, "axis": result.slab.axis, "slices": result.slab.slices,
                                "thickness_mm": result.slab.thickness_mm}}
        existing = self.minip_layer(source)
        if existing is not None and np.shape(existing.data) == result.data.shape:
            existing.data = result.data
            existing.name = name
            existing.metadata = metadata
            set_window(existing, limits)
        else:
            if existing is not None:
                self.viewer.layers.remove(existing)
            layer = Image(result.data, name=name, metadata=metadata, colormap="gray", contrast_limits=list(limits),
                          interpolation2d="nearest", scale=np.asarray(source.scale), translate=np.asarray(source.translate),
                          rotate=np.asarray(source.rotate), shear=np.asarray(source.shear),
                          affine=np.asarray(source.affine.affine_matrix))
            index = next(i for i, layer in enumerate(self.viewer.layers) if layer.unique_id == source.unique_id)
            self.viewer.layers.insert(index + 1, layer)
        self.slab_note.setText(result.slab.describe(run["asked"]))
        if self.side_by_side.isChecked():
            self._show_in_grid()
        if abs(float(self.thickness.value()) - run["asked"]) > 1e-9:  # changed while computing
            self._recompute_timer.start()

    def _on_order(self, _event: Any = None) -> None:
        self._recompute_timer.start()

    def _recompute(self) -> None:
        """After a thickness or axis change: compute the minIP again when there is one (else wait for the button)."""
        if self.minip_layer() is not None and not self.minip_runner.running:
            self.minip_runner.run()

    # ----------------------------------------------------------------- side by side
    def grid_layers(self) -> list[Any]:
        """The layers side by side: the magnitude, the phase (when chosen) and the magnitude's minIP."""
        chosen = [self.magnitude.layer(), self.phase.layer(), self.minip_layer()]
        return [layer for layer in chosen if layer is not None]

    def _set_side_by_side(self, on: bool) -> None:
        grid = view_grid(self.viewer)
        if on:
            if not self.grid_layers():
                show_error("No magnitude is chosen: open the SWI (File > Open) and pick it.")
                self.side_by_side.setChecked(False)
                return
            self._saved = {"visible": {layer.unique_id: layer.visible for layer in self.viewer.layers},
                           "named": {layer.unique_id: (layer.name_overlay.visible, layer.name_overlay.position)
                                     for layer in self.viewer.layers},
                           "stride": grid.stride, "shape": tuple(grid.shape)}
            self._show_in_grid()
            self.viewer.reset_view()  # fit the scan to one cell (the camera kept the whole canvas' zoom)
            return
        saved, self._saved = self._saved, None
        grid.enabled = False
        if saved is None:
            return
        grid.stride, grid.shape = saved["stride"], saved["shape"]
        for layer in self.viewer.layers:
            if layer.unique_id in saved["visible"]:
                layer.visible = saved["visible"][layer.unique_id]
                layer.name_overlay.visible, layer.name_overlay.position = saved["named"][layer.unique_id]
        self.viewer.reset_view()  # one view again: fit the scan to the whole canvas

    def _show_in_grid(self) -> None:
        """Only the chosen layers visible, one per cell, in one row, each cell captioned with its layer's name."""
        grid = view_grid(self.viewer)
        shown = {layer.unique_id for layer in self.grid_layers()}
        for layer in self.viewer.layers:
            layer.visible = layer.unique_id in shown
            if layer.visible:  # at the cell's foot: the orientation banner runs along the canvas' top
                layer.name_overlay.visible, layer.name_overlay.position = True, "bottom_left"
        grid.stride, grid.shape = 1, (1, -1)
        grid.enabled = True

    # ----------------------------------------------------------------- closing
    def cleanup(self) -> None:
        """Give the grid back, stop recomputing and following the viewer (safe to call twice)."""
        self._recompute_timer.stop()
        self.minip_runner.cancel()
        if self.side_by_side.isChecked():
            self.side_by_side.setChecked(False)  # restores the layers' visibility and the grid
        self.viewer.dims.events.order.disconnect(self._on_order)
        for picker in (self.image, self.magnitude, self.phase):
            picker.release()

    def closeEvent(self, event: Any) -> None:
        """Clean up when the panel is closed (napari's dock x is handled by ``cleanup_when_undocked``)."""
        self.cleanup()
        super().closeEvent(event)
