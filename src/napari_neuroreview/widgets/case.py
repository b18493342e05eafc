"""The Case dock widget: what scan is open, how it is shown, where results go.

It shows the selected scan's file, shape, voxel size, file orientation and voxel-data
hash; keeps any geometry warning (oblique scan shown resampled, NaN voxels set to 0, no
orientation in the header) visible for as long as the scan is selected; switches the
radiological / neurological view (a camera flip: the data never change); shows the
compute device; opens the annotation store; makes empty Labels and Points layers on the
scan's grid (so they save aligned); runs the foreground mask through the shared task
rails; and writes the case report of the selected scan from the store (Report..., asking
where to save; ``core.report.write.write_report`` in the worker, the HTML and, when asked
and Chromium is installed, its PDF). No numerics here: every computation is a core call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Points
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QApplication,
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import NeuroreviewError
from ..core.io.export import napari_world_to_ras
from ..core.io.layers import META_KEY, geometry_of, volume_from_layer
from ..core.report import browser
from ..core.store import CaseStore, default_store_path
from ..core.tasks import mask as mask_task
from ._base import DevicePicker, LayerPicker, require_layer
from ._worker import TaskRunner

if TYPE_CHECKING:
    import napari

RADIOLOGICAL = "radiological"
NEUROLOGICAL = "neurological"
_WARNING_STYLE = "color: #ffb347; font-weight: bold;"


def set_convention(viewer: napari.Viewer, convention: str) -> None:
    """Flip the 2D camera so the patient's right is on screen left (radiological) or right.

    The display array runs patient right -> left along its columns, so radiological is
    napari's default horizontal direction and neurological its mirror image.
    """
    horizontal = "right" if convention == RADIOLOGICAL else "left"
    camera_of(viewer).orientation2d = ("down", horizontal)
    left = "R" if convention == RADIOLOGICAL else "L"
    overlay = text_overlay(viewer)
    overlay.text = f"axial, {convention}: patient {left} on screen left | anterior up"
    overlay.position = "top_center"
    overlay.visible = True


def camera_of(viewer: napari.Viewer) -> Any:
    """The 2D/3D camera (``viewer.scene.camera`` since napari 0.9, where ``viewer.camera`` is deprecated)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def text_overlay(viewer: napari.Viewer) -> Any:
    """The canvas text overlay (``viewer.canvas.overlays.text`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays.text if canvas is not None else viewer.text_overlay


def cursor_text(napari_world: np.ndarray, geometry: Any) -> str:
    """'RAS (x, y, z) mm, voxel (i, j, k)' for a napari world position (S, P, L mm)."""
    ras = napari_world_to_ras(napari_world)
    text = "Cursor: RAS ({:.1f}, {:.1f}, {:.1f}) mm".format(*ras)
    if geometry is not None:
        ijk = np.rint(geometry.world_to_source(ras)).astype(int)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(geometry.source_shape)))
        text += ", voxel ({}, {}, {})".format(*ijk) if inside else ", outside the scan"
    return text


def is_scan(layer: Any) -> bool:
    """An Image layer made by this plugin's reader (it carries the file's geometry)."""
    return isinstance(layer, Image) and META_KEY in layer.metadata


class CaseWidget(QWidget):
    """Dock widget for the open case (see the module docstring)."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.store: CaseStore | None = None

        self.scan = LayerPicker(napari_viewer, is_scan)
        self.info = QLabel("No scan loaded. File > Open a NIfTI/MGH scan, or File > Open Sample.")
        self.info.setWordWrap(True)
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(_WARNING_STYLE)
        self.warning.setVisible(False)

        scan_box = QGroupBox("Scan")
        scan_layout = QVBoxLayout(scan_box)
        scan_layout.addWidget(self.scan)
        scan_layout.addWidget(self.info)
        scan_layout.addWidget(self.warning)
        self.cursor = QLabel("Cursor: move over the image")
        scan_layout.addWidget(self.cursor)

        self.radiological = QRadioButton("Radiological (patient right on screen left)")
        self.neurological = QRadioButton("Neurological (patient right on screen right)")
        self.radiological.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.radiological)
        group.addButton(self.neurological)
        view_box = QGroupBox("View")
        view_layout = QVBoxLayout(view_box)
        view_layout.addWidget(self.radiological)
        view_layout.addWidget(self.neurological)

        self.device = DevicePicker()
        self.store_path = QLineEdit(str(default_store_path()))
        self.store_button = QPushButton("Open store")
        self.store_browse = QPushButton("...")
        self.store_label = QLabel("Store not open")
        self.store_label.setWordWrap(True)
        store_row = QHBoxLayout()
        store_row.addWidget(self.store_path)
        store_row.addWidget(self.store_browse)
        store_row.addWidget(self.store_button)
        setup_box = QGroupBox("Compute and store")
        setup_form = QFormLayout(setup_box)
        setup_form.addRow("Device", self.device)
        setup_form.addRow("Store", store_row)
        setup_form.addRow("", self.store_label)

        self.new_labels_button = QPushButton("New labels on this scan")
        self.new_points_button = QPushButton("New points on this scan")
        self.mask_runner = TaskRunner("Foreground mask", self._start_mask, self._show_mask)
        tools_box = QGroupBox("Annotate")
        tools_layout = QVBoxLayout(tools_box)
        row = QHBoxLayout()
        row.addWidget(self.new_labels_button)
        row.addWidget(self.new_points_button)
        tools_layout.addLayout(row)
        tools_layout.addWidget(self.mask_runner)

        self.report_runner = TaskRunner("Report...", self._start_report, self._show_report)
        self._report_folder = Path.home()  # where the save dialog opens: the last report's folder after one
        self.report_pdf = QCheckBox("also print a PDF beside it")
        has_browser = browser.available()
        self.report_pdf.setEnabled(has_browser)
        self.report_pdf.setToolTip("printed by headless Chromium" if has_browser
                                   else "install chromium to print the report as a PDF")
        self.report_label = QLabel("The selected scan's review, as one HTML page")
        self.report_label.setWordWrap(True)
        self.report_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        report_box = QGroupBox("Case report")
        report_layout = QVBoxLayout(report_box)
        report_layout.addWidget(self.report_pdf)
        report_layout.addWidget(self.report_runner)
        report_layout.addWidget(self.report_label)

        layout = QVBoxLayout(self)
        for box in (scan_box, view_box, setup_box, tools_box, report_box):
            layout.addWidget(box)
        layout.addStretch(1)

        self.radiological.toggled.connect(self._on_convention)
        self.store_button.clicked.connect(self.open_store)
        self.store_browse.clicked.connect(self._browse_store)
        self.scan.changed.connect(self._show_scan)
        self.new_labels_button.clicked.connect(self.new_labels)
        self.new_points_button.clicked.connect(self.new_points)

        self.viewer.mouse_move_callbacks.append(self._on_mouse_move)
        app = QApplication.instance()
        if app is not None:  # closing napari's last window quits: checkpoint and close the store then
            app.aboutToQuit.connect(self.close_store)

        set_convention(self.viewer, RADIOLOGICAL)
        self._show_scan()

    # ----------------------------------------------------------------- scan
    def selected_image(self) -> Image | None:
        """The scan chosen in the combo box (an Image layer made by this plugin's reader)."""
        return self.scan.layer()

    def _show_scan(self, *_: Any) -> None:
        layer = self.selected_image()
        if layer is None:
            self.info.setText("No scan loaded. File > Open a NIfTI/MGH scan, or File > Open Sample.")
            self.warning.setVisible(False)
            return
        info = layer.metadata[META_KEY]
        geometry = geometry_of(layer.metadata)
        zooms = " x ".join(f"{z:.3g}" for z in info["zooms"])
        shape = " x ".join(str(s) for s in geometry.source_shape) if geometry else "?"
        extra = f", {layer.data.shape[0]} volumes, TR {info['tr_s']:.3g} s" if layer.ndim == 4 and info.get("tr_s") else ""
        self.info.setText(
            f"<b>{Path(info['source_path']).name if info['source_path'] else layer.name}</b><br>"
            f"{shape} voxels of {zooms} mm{extra}<br>"
            f"file orientation {info['orientation']}, shown axial, anterior up<br>"
            f"voxel data sha256 {info['sha256'][:12]}"
        )
        warnings = list(info.get("warnings") or [])
        self.warning.setText("\n".join(f"\u26a0 {w}" for w in warnings))
        self.warning.setVisible(bool(warnings))

    def _on_mouse_move(self, _viewer: Any, event: Any) -> None:
        """Show where the cursor is in world RAS mm and in the file's own voxel indices."""
        layer = self.selected_image()
        geometry = geometry_of(layer.metadata) if layer is not None else None
        self.cursor.setText(cursor_text(np.asarray(event.position)[-3:], geometry))

    # ----------------------------------------------------------------- view
    def _on_convention(self, *_: Any) -> None:
        set_convention(self.viewer, RADIOLOGICAL if self.radiological.isChecked() else NEUROLOGICAL)

    # ----------------------------------------------------------------- store
    def _browse_store(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Annotation store", self.store_path.text(), "SQLite (*.sqlite)")
        if path:
            self.store_path.setText(path)
            self.open_store()

    def close_store(self) -> None:
        """Close the store (its write-ahead log checkpointed into the file); safe to call twice."""
        if self.store is not None:
            self.store.close()
            self.store = None

    def open_store(self) -> CaseStore | None:
        """Open (or create) the SQLite store at the path in the field."""
        try:
            if self.store is not None:
                self.store.close()
            path = Path(self.store_path.text()).expanduser()
            # The default store is the plugin's own; any other must exist (the review widget's
            # "New store..." creates one): a mistyped path never becomes an empty store.
            self.store = CaseStore(path) if path == default_store_path() else CaseStore.open_existing(path)
        except NeuroreviewError as exc:
            self.store = None
            self.store_label.setText(str(exc))
            show_error(str(exc))
            return None
        layer = self.selected_image()
        if layer is not None:
            info = layer.metadata[META_KEY]
            geometry = geometry_of(layer.metadata)
            self.store.register_image(info["source_path"] or layer.name, info["sha256"],
                                      list(geometry.source_shape), geometry.source_affine.tolist())
        summary = self.store.summary()
        self.store_label.setText(
            f"{summary['images']} scans, {summary['findings']} findings, {summary['reviews']} reviews"
        )
        return self.store

    # ----------------------------------------------------------------- annotate
    def _require_scan(self) -> Image:
        return require_layer(self.scan, "no scan is selected: open a NIfTI/MGH scan first")

    def new_labels(self) -> Labels | None:
        """An empty Labels layer on the selected scan's grid, saved aligned by the writer."""
        try:
            layer = self._require_scan()
        except NeuroreviewError as exc:
            show_error(str(exc))
            return None
        shape = layer.data.shape[-3:]
        return self.viewer.add_labels(
            np.zeros(shape, dtype=np.uint16), name=f"{layer.name} labels", scale=layer.scale[-3:],
            translate=layer.translate[-3:], metadata=dict(layer.metadata), opacity=0.6,
        )

    def new_points(self) -> Points | None:
        """An empty Points layer on the selected scan's grid (saved in world RAS mm)."""
        try:
            layer = self._require_scan()
        except NeuroreviewError as exc:
            show_error(str(exc))
            return None
        return self.viewer.add_points(
            np.empty((0, 3)), name=f"{layer.name} points", scale=layer.scale[-3:],
            translate=layer.translate[-3:], metadata=dict(layer.metadata), size=4,
            face_color="yellow", ndim=3,
        )

    def _start_mask(self) -> Any:
        layer = self._require_scan()
        # The mask is shown over the layer: it is computed on the display grid (mean over time for 4D).
        volume = volume_from_layer(layer.data, layer.metadata, layer.name, grid="display")
        self._mask_source = layer
        return mask_task.run(volume)

    def _show_mask(self, result: mask_task.MaskResult) -> None:
        layer = self._mask_source
        labels = result.mask.astype(np.uint8)
        name = f"{layer.name} foreground mask"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.viewer.add_labels(
            labels, name=name, scale=layer.scale[-3:], translate=layer.translate[-3:],
            metadata=dict(layer.metadata), opacity=0.3,
        )
        show_info(f"Foreground mask: {result.volume_ml:.0f} mL")

    # ----------------------------------------------------------------- report
    def _start_report(self) -> Any:
        """GUI thread: the scan, the store and where to save (a dialog); the report is made in the worker."""
        # Imported on first use: it reads the review through the CMB task, which imports torch.
        from ..core.report.write import write_report

        layer = self._require_scan()
        store = self.store if self.store is not None else self.open_store()
        if store is None:  # open_store said why
            return None
        info = layer.metadata[META_KEY]
        suggested = self._report_folder / f"{store.scan_state(info['sha256']).label}_report.html"  # a pseudonym
        path, _ = QFileDialog.getSaveFileName(self, "Save the case report", str(suggested), "HTML (*.html)")
        if not path:
            return None
        html = Path(path) if Path(path).suffix.lower() in (".html", ".htm") else Path(f"{path}.html")
        pdf = html.with_suffix(".pdf") if self.report_pdf.isChecked() else None
        # The file the layer was opened from, checked against the store's sha256 in the worker;
        # a layer made in memory has no file: the store's own path, found by the voxels' sha256.
        return write_report(store, info["source_path"] or info["sha256"], html, pdf)

    def _show_report(self, written: list[Path]) -> None:
        self._report_folder = written[0].parent
        self.report_label.setText("Written: " + ", ".join(str(p) for p in written))
        show_info(f"Case report written to {written[0]}")
