"""The Networks dock widget: one patient's pre- and post-operative networks side by side.

The radiologist gives the two scans (each a 4D BOLD, an ICA folder from ``neuroreview
networks extract``, or a FSL MELODIC folder) and the anatomy, and clicks Compare. The
core task (:func:`~napari_neuroreview.core.tasks.networks.compare.compare`) runs in a
worker with progress and Cancel; then:

* the canvas switches to napari's grid mode, two views side by side, *pre* on the left
  and *post* on the right, each the chosen network's map over the anatomy: the patient's
  own (a layer, or a T1 file opened here) when picked, else the MNI152 template, and the
  panel and each pane say which. Grid mode shares the dims and the camera, so slicing
  and zoom are linked by construction;
* each pane says what it is (:mod:`._network_panes`): PRE or POST, the radiological /
  neurological banner with R/L at its sides, a colour bar from the threshold to the peak;
* each network has its own colour (``core.tasks.networks.colours``, the same in
  ``networks evaluate --tsne``); the map is thresholded (in SD units over the brain)
  by making the colormap transparent below the threshold;
* a table gives P(post) of every network for both scans, and which component was
  matched to it (with the match score; unconfident matches are flagged); one line says
  what P(post) means and whether the model's card shows it calibrated;
* a bottom dock plots the two time courses and the t-SNE with the patient marked;
* the component of a network can be overridden per scan; the override is written to
  the scan's ICA folder at once (networks.json) and the probabilities are recomputed.

Scans on different grids are compared on the model grid; for display the post maps are
resampled onto the pre grid, and the widget says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
from napari.utils.colormaps import Colormap
from napari.utils.notifications import show_info, show_warning
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ..core.anatomy import atlas
from ..core.errors import InputFileError, NeuroreviewError
from ..core.io.ica_folder import component_label
from ..core.io.layers import image_layer_data
from ..core.io.nifti import volume_from_image
from ..core.model_labels import is_demo
from ..core.registry import DEMO_NOTE
from ..core.tasks.networks.colours import NETWORK_COLOURS, network_hex
from ..core.tasks.networks.compare import Comparison, compare, override, repredict
from ..core.tasks.networks.model import MODEL_NAME
from . import _network_panes as panes
from ._base import (
    DevicePicker,
    LayerPicker,
    VersionPicker,
    cleanup_when_undocked,
    scrolled_panel,
    view_grid,
)
from ._network_plots import NetworkPlots
from ._worker import TaskRunner

if TYPE_CHECKING:
    import napari

#: Default map threshold, SD units over the brain.
DEFAULT_THRESHOLD = 2.0
#: Pixels of the widget that stay visible however the dock is shared (it scrolls below that).
MIN_VISIBLE_HEIGHT = 600
#: Wide enough for the five-column table without truncating its headers.
MIN_WIDTH = 480
#: Layer names the widget owns (pre on the left, post on the right).
#: A map layer's name is its pane's caption (napari draws a layer's name in its grid pane).
LAYER_NAMES = {"pre": ("PRE: anatomy", "PRE: network"), "post": ("POST: anatomy", "POST: network")}
STATES = ("pre", "post")


def network_colormap(network: str) -> Colormap:
    """Transparent at and below the lower contrast limit, the network's colour above it."""
    r, g, b = NETWORK_COLOURS[network]
    return Colormap(
        colors=[[r, g, b, 0.0], [r * 0.6, g * 0.6, b * 0.6, 0.75],
                [min(1, r * 1.2), min(1, g * 1.2), min(1, b * 1.2), 1.0]],
        controls=[0.0, 1e-3, 1.0], name=f"neuroreview-{network}",
    )


def _path_row(line: QLineEdit, browse: QPushButton) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(line)
    layout.addWidget(browse)
    return row


class NetworksWidget(QWidget):
    """Dock widget: pre vs post networks of one patient (maps, time courses, P(post), t-SNE).

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.comparison: Comparison | None = None
        self.plots: NetworkPlots | None = None
        self._anatomy: dict[str, Any] | None = None
        self._template: dict[str, Any] | None = None  # the MNI152 template, read once in the compare worker
        self.panes = panes.PaneLabels(napari_viewer)
        self._grid_before: tuple[bool, int, tuple[int, ...]] | None = None  # the grid before the view took it

        self.pre_path, self.post_path = QLineEdit(), QLineEdit()
        for line, what in ((self.pre_path, "pre"), (self.post_path, "post")):
            line.setPlaceholderText(f"{what}-operative BOLD .nii.gz, ICA folder or MELODIC folder")
        self.pre_file, self.pre_dir = QPushButton("File..."), QPushButton("Folder...")
        self.post_file, self.post_dir = QPushButton("File..."), QPushButton("Folder...")
        self.anatomy = LayerPicker(napari_viewer, self._is_anatomy, leading=(panes.MNI_TEMPLATE,))
        self.anatomy_file = QPushButton("T1 file...")
        self.anatomy_file.setToolTip("open the patient's T1 (NIfTI, MGH) as a layer and show the maps over it")
        self.versions = VersionPicker(MODEL_NAME)
        self.device = DevicePicker()
        inputs = QGroupBox("Scans")
        form = QFormLayout(inputs)
        for label, line, file_button, dir_button in (("Pre", self.pre_path, self.pre_file, self.pre_dir),
                                                     ("Post", self.post_path, self.post_file, self.post_dir)):
            form.addRow(label, line)
            form.addRow("", _path_row(file_button, dir_button))
        form.addRow("Anatomy", _path_row(self.anatomy, self.anatomy_file))
        form.addRow("Model", self.versions)
        form.addRow("Device", self.device)
        self.runner = TaskRunner("Compare pre and post", self._start_compare, self._show_compared)
        form.addRow(self.runner)
        self.sample_button = QPushButton("Open the sample pair (simulated pre/post)")
        form.addRow(self.sample_button)

        self.network_combo = QComboBox()
        self.network_combo.addItems(list(atlas.NETWORKS))
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 20.0)
        self.threshold.setSingleStep(0.5)
        self.threshold.setValue(DEFAULT_THRESHOLD)
        self.threshold.setSuffix(" SD")
        self.pre_component, self.post_component = QComboBox(), QComboBox()
        self.table = QTableWidget(len(atlas.NETWORKS), 5)
        self.table.setHorizontalHeaderLabels(["network", "pre P(post)", "post P(post)", "pre IC", "post IC"])
        self.table.horizontalHeaderItem(3).setToolTip("component matched in the pre scan (? = not confident, "
                                                      "* = set by hand); hover a cell for the match score")
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setMinimumHeight(180)
        self.messages = QLabel("")
        self.messages.setWordWrap(True)
        self.messages.setStyleSheet("color: #f0a030")
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.p_post_label = QLabel("")
        self.p_post_label.setWordWrap(True)
        self.anatomy_label = QLabel("")
        self.anatomy_label.setWordWrap(True)
        self.repredict_runner = TaskRunner("Recompute P(post)", self._start_repredict, self._show_result)
        self.repredict_runner.setVisible(False)

        view = QGroupBox("Networks")
        view_form = QFormLayout(view)
        view_form.addRow("Network", self.network_combo)
        view_form.addRow("Threshold", self.threshold)
        view_form.addRow("Pre component", self.pre_component)
        view_form.addRow("Post component", self.post_component)
        view_form.addRow(self.repredict_runner)
        view_form.addRow(self.table)
        view_form.addRow(self.p_post_label)
        view_form.addRow(self.model_label)
        view_form.addRow(self.anatomy_label)
        view_form.addRow(self.messages)

        scroll = scrolled_panel(self, (inputs, view), MIN_VISIBLE_HEIGHT, wrap=False)  # the plots keep their width
        scroll.setMinimumWidth(MIN_WIDTH)

        self.sample_button.clicked.connect(self.open_sample_pair)
        self.pre_file.clicked.connect(lambda: self._browse(self.pre_path, folder=False))
        self.pre_dir.clicked.connect(lambda: self._browse(self.pre_path, folder=True))
        self.post_file.clicked.connect(lambda: self._browse(self.post_path, folder=False))
        self.post_dir.clicked.connect(lambda: self._browse(self.post_path, folder=True))
        self.anatomy_file.clicked.connect(self._browse_anatomy)
        self.anatomy.changed.connect(self._on_anatomy)
        self.network_combo.currentTextChanged.connect(self._on_network)
        self.threshold.valueChanged.connect(self._apply_threshold)
        self.table.itemSelectionChanged.connect(self._on_table_selection)
        self.pre_component.activated.connect(lambda _: self._on_override("pre"))
        self.post_component.activated.connect(lambda _: self._on_override("post"))
        cleanup_when_undocked(self, self.cleanup)
        self._update_controls()

    # ------------------------------------------------------------------ inputs
    def open_sample_pair(self) -> None:
        """Fill in the simulated sample's pre and post sessions and compare them.

        Why here: napari's sample menu opens layers, not a pair of sessions for this widget;
        this button puts the Networks sample one menu (Plugins) and one click away.
        """
        from .._sample_data import sample_cache_dir, sample_case_paths

        sample_case_paths("rsfmri")  # writes the sample into the cache on first use
        subject = sample_cache_dir() / "rsfmri" / "sub-001"
        self.pre_path.setText(str(subject / "ses-pre"))
        self.post_path.setText(str(subject / "ses-post"))
        self.runner.run()

    def _browse(self, line: QLineEdit, folder: bool) -> None:
        if folder:
            path = QFileDialog.getExistingDirectory(self, "ICA, MELODIC or session folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "4D BOLD", filter="NIfTI (*.nii *.nii.gz)")
        if path:
            line.setText(path)

    def _browse_anatomy(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "The patient's T1", filter="Scans (*.nii *.nii.gz *.mgz *.mgh)")
        if path:
            self.open_anatomy(path)

    def open_anatomy(self, path: str) -> None:
        """Open a T1 file as napari's File > Open does (the plugin's reader) and pick it as the anatomy.

        Why through the reader: the layer gets the file's geometry (orientation, an oblique scan
        resampled with its warning) exactly as every other scan; the maps are drawn over it in world mm.
        """
        try:
            layers = self.viewer.open(path, plugin="napari-neuroreview")
        except NeuroreviewError as exc:
            show_warning(str(exc))
            return
        images = [layer for layer in layers if self._is_anatomy(layer)]
        if not images:
            show_warning(f"{Path(path).name} holds no 3D image to show under the maps")
            return
        self.anatomy.refresh()
        self.anatomy.setCurrentText(images[0].name)

    @staticmethod
    def _is_anatomy(layer: Any) -> bool:
        """A 3D image the user opened (not one of the widget's own pre/post layers)."""
        own = {name for pair in LAYER_NAMES.values() for name in pair}
        return layer.__class__.__name__ == "Image" and layer.name not in own and layer.ndim == 3

    def _start_compare(self) -> Any:
        pre, post = self.pre_path.text().strip(), self.post_path.text().strip()
        if not pre or not post:
            raise InputFileError("give both scans: the pre-operative and the post-operative one")
        chosen = self._chosen_anatomy()  # read on the GUI thread: the layer is in memory
        version, device = self.versions.version(), self.device.requested()

        template = self._template

        def task() -> Any:
            comparison = yield from compare(pre, post, version=version, device=device)
            # the template is read in the worker, once: the anatomy can then be switched without a wait
            return comparison, chosen, template if template is not None else panes.mni_anatomy()

        return task()

    def _chosen_anatomy(self) -> dict[str, Any] | None:
        """The anatomy layer's data and placement, or None for the MNI152 template."""
        layer = self.anatomy.layer()
        if layer is None:
            return None
        return {"data": layer.data, "scale": list(layer.scale), "translate": list(layer.translate),
                "contrast_limits": list(layer.contrast_limits), "metadata": dict(layer.metadata),
                "source": layer.name}

    def _show_compared(self, value: tuple[Comparison, dict[str, Any] | None, dict[str, Any]]) -> None:
        comparison, chosen, self._template = value
        self._anatomy = chosen if chosen is not None else self._template
        self._show_result(comparison)

    def _on_anatomy(self) -> None:
        """Another anatomy picked after a compare: draw the maps over it at once (nothing is recomputed)."""
        if self.comparison is None or self._anatomy is None or self._template is None:
            return
        chosen = self._chosen_anatomy()
        if (chosen["source"] if chosen is not None else panes.MNI_TEMPLATE) == self._anatomy["source"]:
            return  # the picker refreshes on every layer change, the widget's own included
        self._anatomy = chosen if chosen is not None else self._template
        self._show_layers()

    # ------------------------------------------------------------------ results
    def _show_result(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self._show_layers()
        self._fill_table()
        self._fill_component_choices()
        self.model_label.setText(model_text(comparison))
        self.p_post_label.setText(panes.p_post_text(getattr(comparison.predictor, "card", None)))
        self.messages.setText("\n".join(f"\u26a0 {m}" for m in comparison.messages))
        for message in comparison.messages:
            show_warning(message)
        self._show_plots()
        self._update_controls()
        show_info(f"Compared {Path(comparison.pre.path).name} (pre) with {Path(comparison.post.path).name} (post)")

    def _show_layers(self) -> None:
        comparison, anatomy = self.comparison, self._anatomy
        assert comparison is not None and anatomy is not None
        network = self.network_combo.currentText()
        for name in [n for pair in LAYER_NAMES.values() for n in pair]:
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        for layer in self.viewer.layers:  # only the two views are shown in the grid
            layer.visible = False
        for state in STATES:
            anat_name = LAYER_NAMES[state][0]
            self.viewer.add_image(anatomy["data"], name=anat_name, scale=anatomy["scale"],
                                  translate=anatomy["translate"], contrast_limits=anatomy["contrast_limits"],
                                  colormap="gray", metadata=anatomy["metadata"])
            display, kwargs = self._map_layer_data(state, network)
            self.viewer.add_image(display, **kwargs)
        # napari's grid packs the layer list from its bottom, two by two, hidden layers included:
        # the four at the bottom, pre first, keep each map with its anatomy and pre on the left
        for index, name in enumerate(n for state in STATES for n in LAYER_NAMES[state]):
            self.viewer.layers.move(self.viewer.layers.index(name), index)
        grid = view_grid(self.viewer)
        if self._grid_before is None:  # put back when the view closes
            self._grid_before = (grid.enabled, grid.stride, tuple(grid.shape))
        grid.stride = 2
        grid.shape = (1, 2)
        grid.enabled = True
        self.viewer.dims.ndisplay = 2
        self.panes.dress([self.viewer.layers[LAYER_NAMES[state][1]] for state in STATES], self._pane_key())
        overlaps = panes.boxes_overlap(self.viewer.layers[LAYER_NAMES["pre"][0]].extent.world,
                                       self.viewer.layers[LAYER_NAMES["pre"][1]].extent.world)
        self.anatomy_label.setText(panes.anatomy_text(anatomy["source"], overlaps))
        self._apply_threshold()
        self.viewer.reset_view()
        self._go_to_peak()

    def _go_to_peak(self) -> None:
        """Slice through the pre map's peak, so the chosen network is in view at once."""
        name = LAYER_NAMES["pre"][1]
        if name not in self.viewer.layers:
            return
        layer = self.viewer.layers[name]
        index = np.unravel_index(int(np.nanargmax(layer.data)), layer.data.shape)
        world = layer.data_to_world(np.asarray(index, float))
        self.viewer.dims.set_point(range(len(world)), tuple(float(w) for w in world))

    def _map_layer_data(self, state: str, network: str) -> tuple[np.ndarray, dict[str, Any]]:
        assert self.comparison is not None
        data, affine = self.comparison.display_map(state, network)
        volume = volume_from_image(nib.Nifti1Image(np.asarray(data, np.float32), affine))
        display, kwargs, _, _ = image_layer_data(volume, LAYER_NAMES[state][1])
        kwargs.update(colormap=network_colormap(network), blending="translucent", interpolation2d="linear")
        kwargs.pop("contrast_limits", None)
        return display, kwargs

    def _apply_threshold(self, *_: Any) -> None:
        if self.comparison is None:
            return
        threshold = float(self.threshold.value())
        for state in STATES:
            name = LAYER_NAMES[state][1]
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                peak = float(np.nanmax(layer.data)) if layer.data.size else threshold + 1
                layer.contrast_limits = (threshold, max(peak, threshold + 1e-3))
        self.panes.set_key(self._pane_key())

    def _pane_key(self) -> str:
        """The lines under each pane's colour bar: network and threshold, and whose anatomy lies under the map."""
        template = self._anatomy is None or self._anatomy["source"] == panes.MNI_TEMPLATE
        under = "MNI152 template, not the patient's" if template else "the picked anatomy"
        return f"{self.network_combo.currentText()} \u2265 {self.threshold.value():.1f} SD\n{under}"

    def _on_network(self, network: str) -> None:
        if self.comparison is None:
            return
        for state in STATES:
            name = LAYER_NAMES[state][1]
            if name in self.viewer.layers:
                display, kwargs = self._map_layer_data(state, network)
                layer = self.viewer.layers[name]
                layer.data = display
                layer.colormap = kwargs["colormap"]
        self._apply_threshold()
        self._go_to_peak()
        row = list(atlas.NETWORKS).index(network)
        self.table.blockSignals(True)
        self.table.selectRow(row)
        self.table.blockSignals(False)
        self._fill_component_choices()
        self._show_plots()

    def _on_table_selection(self) -> None:
        rows = {index.row() for index in self.table.selectedIndexes()}
        if rows:
            self.network_combo.setCurrentText(atlas.NETWORKS[min(rows)])

    def _fill_table(self) -> None:
        comparison = self.comparison
        assert comparison is not None
        for row, network in enumerate(atlas.NETWORKS):
            cells = [network]
            for state in STATES:
                p = comparison.probabilities[state].get(network)
                cells.append("-" if p is None else f"{p:.2f}")
            tips = ["", "", ""]
            for state in STATES:
                match = getattr(comparison, state).assignment.matches[network]
                flag = "" if match.confident else " ?"
                who = "" if match.automatic else " *"
                cells.append(f"{match.label}{flag}{who}")
                tips.append(f"{state}: {match.label}, |r| with the {network} template {match.score:.2f} "
                            f"(next best {match.second_score:.2f}); "
                            f"{'confident' if match.confident else 'NOT confident'}, "
                            f"{'automatic' if match.automatic else 'set by hand'}")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(tips[column])
                if column == 0:
                    item.setForeground(QColor(network_hex(network)))  # the t-SNE PNG's colour, to the digit
                self.table.setItem(row, column, item)

    def _fill_component_choices(self) -> None:
        comparison = self.comparison
        if comparison is None:
            return
        network = self.network_combo.currentText()
        for state, combo in (("pre", self.pre_component), ("post", self.post_component)):
            session = getattr(comparison, state)
            scores = session.assignment.scores[list(atlas.NETWORKS).index(network)]
            combo.blockSignals(True)
            combo.clear()
            for k in np.argsort(-scores):
                combo.addItem(f"{component_label(int(k))}  r={scores[k]:.2f}", int(k))
            combo.setCurrentIndex(combo.findData(session.assignment.matches[network].component))
            combo.blockSignals(False)

    def _on_override(self, state: str) -> None:
        if self.comparison is None:
            return
        combo = self.pre_component if state == "pre" else self.post_component
        component, network = combo.currentData(), self.network_combo.currentText()
        if component is None or component == getattr(self.comparison, state).assignment.matches[network].component:
            return
        try:
            self.comparison, written = override(self.comparison, state, network, int(component))
        except NeuroreviewError as exc:
            show_warning(str(exc))
            return
        where = (f"stored in {written}" if written else "kept for this comparison only: the scan has no ICA folder "
                 "to store it in (make one with `neuroreview networks extract` and compare that)")
        show_info(f"{state}: {network} is now {component_label(int(component))}; {where}")
        self._on_network(network)
        self.repredict_runner.run()

    def _start_repredict(self) -> Any:
        if self.comparison is None:
            return None
        return repredict(self.comparison)

    def _show_plots(self) -> None:
        if self.comparison is None:
            return
        if self.plots is None:
            self.plots = NetworkPlots()
            self.viewer.window.add_dock_widget(self.plots, name="Network time courses and t-SNE", area="bottom")
        self.plots.show(self.comparison, self.network_combo.currentText())

    def _update_controls(self) -> None:
        ready = self.comparison is not None
        for widget in (self.pre_component, self.post_component, self.threshold):
            widget.setEnabled(ready)

    # ------------------------------------------------------------------ closing
    def cleanup(self) -> None:
        """Take the view's canvas overlays away, give the grid back, stop following the viewer (safe twice)."""
        self.runner.cancel()
        self.repredict_runner.cancel()
        self.panes.undress()
        if self._grid_before is not None:
            grid = view_grid(self.viewer)
            grid.enabled, grid.stride, grid.shape = self._grid_before
            self._grid_before = None
        self.anatomy.release()

    def closeEvent(self, event: Any) -> None:
        """Clean up when the panel is closed (napari's dock x is handled by ``cleanup_when_undocked``)."""
        self.cleanup()
        super().closeEvent(event)


def model_text(comparison: Comparison) -> str:
    """Which model gave the probabilities, with the demo flag its card carries (``model_labels.is_demo``).

    Why from the card: a version the user trained on their own scans is not demo weights;
    a comparison without its model (never from :func:`compare`) is flagged as demo, the safe side.
    """
    card = getattr(comparison.predictor, "card", None)
    tag = DEMO_NOTE if card is None or is_demo(card) else "own weights"
    return f"Model {comparison.model['name']} {comparison.model['version']} ({tag})"
