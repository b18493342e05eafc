"""The answer side of the metastasis origin panel: the lesion table, the probability tree, the Grad-CAM layer.

:class:`OriginResults` shows a :class:`~..core.tasks.metastasis.classify.ClassifyResult`:
one row per lesion (id, volume, prediction); for the selected row the hierarchy as the
model decides it (lung / non-lung, then SCLC / NSCLC and breast / GI, each branch with its
probability) beside the four-class probabilities the chain rule gives; selecting a row
centres the view on the lesion. :class:`GradCamOverlay` is the
shared :class:`~._heatmap.HeatmapOverlay` (threshold, opacity, the ONE layer and why it is
drawn so) with a node combo on top: the layer is "Grad-CAM: <node>" over the contrast T1, and
switching node replaces its data (never a layer per click).

Why these display choices: the maps are raw Grad-CAM (one scale across lesions and nodes,
0 outside the crops), so the contrast limits run from ``threshold x max`` to the node's
max; the colormap is chosen (inferno by default), transparent at its low end. No numerics here but
the display: the maps come on the grid ``ClassifyResult.affine`` names (the contrast T1's
file grid, or its display grid when an oblique scan's file could not be read again) and
:func:`maps_on_display` puts them on the contrast T1 layer's display grid by that affine,
one rule: ``core.io.orientation.to_display`` (the reader's one mapping) from the file grid,
``resample_to_grid`` from any other. The layer takes that contrast T1 layer's scale,
translate and affine on every draw (one layer reused across patients on other grids), so
the heatmap lies exactly on the voxels it explains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.io.export import ras_to_napari_world
from ..core.io.layers import geometry_of
from ..core.io.orientation import DisplayGeometry, to_display
from ..core.io.resample import resample_to_grid, same_grid
from ..core.tasks.metastasis.classes import NODES
from ..core.tasks.metastasis.classify import LesionOrigin
from ._base import percent, row_table
from ._heatmap import COLORMAPS, HeatmapOverlay
from .case import camera_of

if TYPE_CHECKING:
    import napari

#: What each node is called in the combo and the layer name.
NODE_LABELS = {"lung_vs_non_lung": "lung vs non-lung", "sclc_vs_nsclc": "SCLC vs NSCLC", "breast_vs_gi": "breast vs GI"}
#: The tree: each branch pair with its key in ``LesionOrigin.to_json()['probabilities']``, and its leaves.
TREE = (("lung", ("SCLC", "NSCLC")), ("non_lung", ("breast", "GI")))
_BRANCH_NAMES = {"lung": "lung", "non_lung": "non-lung"}
COLUMNS = ("Lesion", "Volume (mL)", "Prediction")
GRADCAM_PREFIX = "Grad-CAM: "
DEFAULT_THRESHOLD, DEFAULT_OPACITY = 0.2, 0.7


def maps_on_display(cam: np.ndarray, affine: np.ndarray, geometry: DisplayGeometry) -> list[np.ndarray]:
    """(X, Y, Z, N) maps on the grid ``affine`` names -> N float32 maps on ``geometry``'s display grid.

    Why by the maps' own affine: the task reads the contrast T1 on its file grid, but on
    the display grid when an oblique scan's file is gone or changed; assuming the file grid
    would raise or misplace the heatmap then.
    """
    if same_grid(cam.shape[:3], affine, geometry.source_shape, geometry.source_affine):
        shown = to_display(cam, geometry, order=1)  # (N, S, P, L): exact, a view for an axis-aligned scan
        return [np.ascontiguousarray(shown[k], dtype=np.float32) for k in range(cam.shape[-1])]
    return [np.ascontiguousarray(resample_to_grid(cam[..., k], affine, geometry.display_affine,
                                                  geometry.display_shape, order=1), dtype=np.float32)
            for k in range(cam.shape[-1])]


class OriginResults(QWidget):
    """The lesion table and the probability tree of the selected lesion.

    Signals
    -------
    picked(int)
        The row of a lesion was selected (its id).
    """

    picked = Signal(int)

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.lesions: list[LesionOrigin] = []
        self.table = row_table(QTableWidget(0, len(COLUMNS)), COLUMNS, stretch=True)
        self.table.setMinimumHeight(110)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Branch", "P(branch)", "P(origin)"])
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.tree.setRootIsDecorated(False)
        self.tree.setMinimumHeight(60)
        self.heading = QLabel("")
        self.heading.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.heading)
        layout.addWidget(self.tree)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.show_lesions([])

    def show_lesions(self, lesions: list[LesionOrigin]) -> None:
        """One row per lesion; the first selected (its tree shown)."""
        self.lesions = list(lesions)
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.lesions))
        for row, lesion in enumerate(self.lesions):
            prediction = lesion.prediction
            for col, text in enumerate((str(lesion.id), f"{lesion.volume_mm3 / 1000.0:.2f}",
                                        f"{prediction} ({percent(lesion.four_class[prediction])})")):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(row, col, item)
        self.table.blockSignals(False)
        if self.lesions:
            self.table.selectRow(0)  # draws the tree (and centres on it: the user sees what the tree is about)
        else:
            self._show_tree(None)

    def selected(self) -> LesionOrigin | None:
        """The lesion of the selected row."""
        rows = self.table.selectionModel().selectedRows()
        return self.lesions[rows[0].row()] if rows and rows[0].row() < len(self.lesions) else None

    def _on_selection(self) -> None:
        lesion = self.selected()
        self._show_tree(lesion)
        if lesion is not None:
            self.centre_on(lesion)
            self.picked.emit(lesion.id)

    def _show_tree(self, lesion: LesionOrigin | None) -> None:
        """lung / non-lung, then SCLC / NSCLC and breast / GI: P(branch) and the four-class P(origin)."""
        self.tree.clear()
        if lesion is None:
            self.heading.setText("No lesion classified yet")
            return
        doc = lesion.to_json()
        probs, four = doc["probabilities"], doc["four_class"]
        self.heading.setText(f"Lesion {lesion.id}: most likely {doc['prediction']} ({percent(four[doc['prediction']])})")
        for branch, leaves in TREE:
            top = QTreeWidgetItem([_BRANCH_NAMES[branch], percent(probs[branch]), ""])
            for leaf in leaves:
                item = QTreeWidgetItem([leaf, percent(probs[leaf]), percent(four[leaf])])
                if leaf == doc["prediction"]:
                    for col in range(3):
                        font = item.font(col)
                        font.setBold(True)
                        item.setFont(col, font)
                top.addChild(item)
            self.tree.addTopLevelItem(top)
        self.tree.expandAll()
        self._fit_tree()

    def _fit_tree(self) -> None:
        """The tree exactly as tall as its six rows (no empty band between it and what follows)."""
        row = self.tree.sizeHintForRow(0) if self.tree.topLevelItemCount() else 0
        if row > 0:
            rows = sum(1 + self.tree.topLevelItem(i).childCount() for i in range(self.tree.topLevelItemCount()))
            self.tree.setFixedHeight(self.tree.header().sizeHint().height() + rows * row + 2 * self.tree.frameWidth() + 2)

    def tree_percentages(self) -> dict[str, tuple[float, float | None]]:
        """What the tree shows, read back: name -> (P(branch) %, P(origin) % or None), for tests and reports."""
        out: dict[str, tuple[float, float | None]] = {}

        def read(item: QTreeWidgetItem) -> None:
            origin = item.text(2)
            out[item.text(0)] = (float(item.text(1).rstrip(" %")), float(origin.rstrip(" %")) if origin else None)
            for i in range(item.childCount()):
                read(item.child(i))

        for i in range(self.tree.topLevelItemCount()):
            read(self.tree.topLevelItem(i))
        return out

    def centre_on(self, lesion: LesionOrigin) -> None:
        """Show a lesion: its slice in every dimension and the camera centred on it."""
        world = ras_to_napari_world(np.asarray(lesion.world_ras_mm, float))
        offset = self.viewer.dims.ndim - 3
        for axis in range(3):
            self.viewer.dims.set_point(offset + axis, float(world[axis]))
        camera_of(self.viewer).center = tuple(float(v) for v in world)


class GradCamOverlay(HeatmapOverlay):
    """The node combo above the threshold and opacity of the ONE Grad-CAM layer over the contrast T1."""

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(viewer, threshold=DEFAULT_THRESHOLD, opacity=DEFAULT_OPACITY, colormaps=COLORMAPS,
                         interpolation="linear", parent=parent)  # no seam seen on these maps (``_heatmap``)
        self.maps: list[np.ndarray] = []  # one display-order map per node
        self.ce_layer: Any = None
        self.node = QComboBox()
        for node in NODES:
            self.node.addItem(NODE_LABELS[node], node)
        self.form.insertRow(0, "Node", self.node)
        self.node.currentIndexChanged.connect(lambda _i: self._draw_node())

    def show_maps(self, cam: np.ndarray, affine: np.ndarray, ce_layer: Any) -> None:
        """Take a result's (X, Y, Z, 3) maps on the grid ``affine`` names and draw the chosen node over ``ce_layer``."""
        self.maps = maps_on_display(cam, affine, geometry_of(ce_layer.metadata))
        self.ce_layer = ce_layer
        self._draw_node()

    def node_name(self) -> str:
        return str(self.node.currentData())

    def _draw_node(self) -> None:
        """The chosen node's map into the one layer, named for the node."""
        if not self.maps:
            return
        data = self.maps[self.node.currentIndex()]
        label = NODE_LABELS[self.node_name()]
        self.draw(data, self.ce_layer, GRADCAM_PREFIX + label,
                  "" if float(data.max()) > 0 else f"The {label} Grad-CAM is zero in every lesion: "
                                                   "nothing in the crops raised this node's first-named branch.")
