"""The ONE heat-map layer over a reference layer, and its threshold, opacity and colormap controls.

:class:`HeatmapOverlay` is what the metastasis origin panel (its Grad-CAM per node,
``_metastasis_results.GradCamOverlay`` adds the node combo) and the Stroke risk panel (its
Grad-CAM, ``_stroke_results.CamOverlay``) show their explanation maps with, so both answer the
hand alike and draw alike. It owns one image layer: created when the viewer has none, else
updated in place (data, name, and the reference layer's scale, translate and affine, since the
next result may lie on another grid), never a layer per draw.

Why these display choices: contrast limits run from ``threshold x max`` to the map's max, and
the colormap's low end is transparent (:func:`transparent_low`), so everything under the
threshold leaves the scan as it is. Translucent, not additive blending: added to tissue that
is already white (enhancing lesions on the contrast T1, bright FLAIR lesions), the map vanished
exactly where it explains (screenshots). Nearest interpolation by default, as the scans are
drawn: linear drew a diagonal seam across the slice's quad under software GL (the stroke map,
whole-head, screenshot under Xvfb); the metastasis maps (0 outside the lesion crops) showed no
seam in nine Xvfb views and keep linear.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.colormaps import Colormap, ensure_colormap
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QSlider, QSpinBox, QWidget

if TYPE_CHECKING:
    import napari

__all__ = ["COLORMAPS", "HeatmapOverlay", "transparent_low"]

#: The colormaps both Grad-CAM panels offer (issue 12 item 7: colormap, threshold, opacity), the first the default.
COLORMAPS: tuple[str, ...] = ("inferno", "magma", "hot", "viridis")


def transparent_low(name: str) -> Colormap:
    """Colormap ``name`` whose opacity rises from 0 at its low end to 1 (square root: weak evidence stays visible)."""
    colors = np.array(ensure_colormap(name).colors, dtype=float)
    colors[:, 3] = np.sqrt(np.linspace(0.0, 1.0, len(colors)))
    return Colormap(colors, name=f"{name} (transparent low end)", controls=np.linspace(0.0, 1.0, len(colors)))


def _percent_slider(value: float) -> QSlider:
    """A horizontal 0-100 % slider in steps of 1, set to ``value`` (a share, 0-1)."""
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, 100)
    slider.setValue(round(100 * value))
    return slider


class HeatmapOverlay(QWidget):
    """Threshold, opacity, an optional colormap choice and a note, for ONE heat-map layer over a reference layer.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the layer lives.
    threshold, opacity : float
        Defaults, shares (0-1): the threshold of the map's max below which it is transparent,
        and the layer's opacity.
    colormaps : sequence of str
        napari colormap names offered (each with a transparent low end); with one name the
        combo is not shown.
    interpolation : str
        napari's ``interpolation2d`` of the layer (module docstring).

    ``form`` is public so that a host adds its own rows (e.g. the metastasis node) above these.
    """

    def __init__(self, viewer: napari.Viewer, *, threshold: float, opacity: float,
                 colormaps: Sequence[str] = COLORMAPS, interpolation: str = "nearest",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.interpolation = interpolation
        self.layer: Any = None
        self.colormap = QComboBox()
        self.colormap.addItems(list(colormaps))
        self.threshold = QSpinBox()  # legible as a number: "20 % of max"
        self.threshold.setRange(0, 99)
        self.threshold.setSingleStep(5)
        self.threshold.setSuffix(" % of max")
        self.threshold.setValue(round(100 * threshold))
        self.opacity = _percent_slider(opacity)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        if len(colormaps) > 1:
            self.form.addRow("Colormap", self.colormap)
        self.form.addRow("Threshold", self.threshold)
        self.form.addRow("Opacity", self.opacity)
        self.form.addRow(self.note)
        self.colormap.currentTextChanged.connect(lambda _t: self._style())
        self.threshold.valueChanged.connect(lambda _v: self._style())
        self.opacity.valueChanged.connect(lambda _v: self._style())
        self.setEnabled(False)

    def colormap_name(self) -> str:
        """The chosen colormap's napari name."""
        return self.colormap.currentText()

    def draw(self, data: np.ndarray, reference: Any, name: str, note: str = "") -> Any:
        """Draw ``data`` (on ``reference``'s display grid) as the layer ``name`` over ``reference``; returns the layer.

        The layer takes ``reference``'s scale, translate and affine, and metadata naming its
        file affine and the layer it lies over; ``note`` is shown under the controls ("" for none).
        """
        spatial = {"scale": list(reference.scale)[-3:], "translate": list(reference.translate)[-3:],
                   "affine": np.asarray(reference.affine.affine_matrix)[-4:, -4:]}
        metadata = {"affine": np.asarray(reference.metadata["affine"]).copy(), "over": reference.name}
        if self.layer is None or self.layer not in self.viewer.layers:
            self.layer = self.viewer.add_image(data, name=name, colormap=transparent_low(self.colormap_name()),
                                               blending="translucent", interpolation2d=self.interpolation, metadata=metadata,
                                               **spatial)
        else:
            self.layer.data = data
            for key, value in spatial.items():
                setattr(self.layer, key, value)
            self.layer.name = name
            self.layer.metadata = metadata
        self.note.setText(note)
        self.setEnabled(True)
        self._style()
        return self.layer

    def _style(self) -> None:
        """Colormap, contrast limits from the threshold (a share of the map's max), opacity."""
        if self.layer is None or self.layer not in self.viewer.layers:
            return
        top = float(np.asarray(self.layer.data).max()) or 1.0
        if not self.layer.colormap.name.startswith(self.colormap_name() + " "):
            self.layer.colormap = transparent_low(self.colormap_name())
        self.layer.contrast_limits = (min(self.threshold.value() / 100.0, 0.99) * top, top)
        self.layer.opacity = self.opacity.value() / 100.0
