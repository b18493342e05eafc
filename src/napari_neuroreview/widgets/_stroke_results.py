"""The answer side of the Stroke risk panel: risk and threshold, modality shares, the subject among the
training subjects, and the ONE Grad-CAM layer over the T1.

Nothing is computed here but the display: :class:`RiskAnswer` shows a
:class:`~napari_neuroreview.core.tasks.stroke.predict.StrokePrediction` (risk, frozen
threshold, high/low, the two Shapley shares as bars, blank columns), :class:`PlacePlot` its
``place`` (``explain.embedding_place``: the training subjects on the first two principal
components of their embeddings, coloured by their written label, the subject as a star; a
matplotlib figure, as the Networks panel's t-SNE), and :class:`CamOverlay` its Grad-CAM.

The Grad-CAM is drawn by the overlay the metastasis panel uses too (``_heatmap.HeatmapOverlay``:
threshold, opacity, colormap, the ONE layer and why it is drawn so): the map comes on the T1's
file grid (``SubjectCam.affine``) and ``_metastasis_results.maps_on_display`` puts it on the T1
layer's display grid; the layer takes the T1 layer's scale, translate and affine. The
normalised map is shown (the raw one's scale is the logit's gradient, not something to read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import (
    QFormLayout,
    QLabel,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from ..core.io.layers import geometry_of
from ..core.tasks.stroke.explain import EmbeddingPlace
from ..core.tasks.stroke.predict import StrokePrediction
from ._base import percent
from ._heatmap import COLORMAPS, HeatmapOverlay
from ._metastasis_results import maps_on_display

if TYPE_CHECKING:
    import napari

CAM_LAYER = "Grad-CAM: stroke risk"
#: Colormaps offered for the Grad-CAM (each with a transparent low end: ``_heatmap.transparent_low``).
#: Marker colours of the training subjects by written label, and of the subject (napari's dark theme).
LABEL_COLOURS = {0: "#8fa3bf", 1: "#ff6b3d"}
#: The map's default threshold (share of its max) and opacity. Higher than the metastasis panel's 0.2: this
#: map is of a whole head at the model's coarse last stage, and at 0.2 it washed over the anatomy (screenshot).
DEFAULT_THRESHOLD, DEFAULT_OPACITY = 0.5, 0.6
SUBJECT_COLOUR = "#ffd500"
_BACKGROUND = "#262930"


def _share_bar(name: str) -> QProgressBar:
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setFormat(f"{name}: -")
    bar.setTextVisible(True)
    return bar


class RiskAnswer(QWidget):
    """Risk, threshold and high/low; the image and table shares; the blank columns; the model's messages."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.risk = QLabel("No prediction yet")
        self.risk.setWordWrap(True)
        self.image_bar = _share_bar("Image")
        self.table_bar = _share_bar("Table")
        self.shares_note = QLabel("")
        self.shares_note.setWordWrap(True)
        self.missing = QLabel("")
        self.missing.setWordWrap(True)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self.risk)
        form.addRow("Image share", self.image_bar)
        form.addRow("Table share", self.table_bar)
        form.addRow(self.shares_note)
        form.addRow(self.missing)

    def show_result(self, result: StrokePrediction) -> None:
        """Fill every line from ``result``."""
        level = "HIGH" if result.high_risk else "low"
        colour = "#ff6b3d" if result.high_risk else "#8fd18f"
        self.risk.setText(f"{result.subject}: risk <b>{percent(result.risk)}</b>, "
                          f"<b style='color:{colour}'>{level}</b> (threshold {percent(result.threshold)}, "
                          f"{result.model['name']} {result.model['version']})")
        shares = result.shares
        for bar, name, share in ((self.image_bar, "Image", shares.image), (self.table_bar, "Table", shares.table)):
            bar.setValue(round(1000 * share))
            bar.setFormat(f"{name}: {percent(share)}")
        self.shares_note.setText(
            f"Of this subject's distance from an average training subject (logit {shares.logit:+.2f} vs "
            f"{shares.reference_logit:+.2f}): image {shares.phi_image:+.2f}, table {shares.phi_table:+.2f} "
            "(Shapley values; not a causal split).")
        self.missing.setText("Blank, read as the encoder's missing value: " + ", ".join(result.missing)
                             if result.missing else "No blank column.")

    def shares_shown(self) -> tuple[float, float]:
        """The image and table shares the bars show (0-1), read back for tests and reports."""
        return self.image_bar.value() / 1000.0, self.table_bar.value() / 1000.0


class PlacePlot(QWidget):
    """The training subjects on their embeddings' first two principal components, and the subject as a star."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(3.6, 2.8), facecolor=_BACKGROUND, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        layout.addWidget(self.note)
        self.place: EmbeddingPlace | None = None
        self.show_place(None)

    def show_place(self, place: EmbeddingPlace | None) -> None:
        """Draw ``place`` (None: an empty plot and why)."""
        self.place = place
        self.figure.clear()
        ax = self.figure.add_subplot(1, 1, 1)
        ax.set_facecolor(_BACKGROUND)
        for spine in ax.spines.values():
            spine.set_color("#888888")
        ax.tick_params(colors="#cccccc", labelsize=7)
        if place is None:
            ax.set_xticks([])
            ax.set_yticks([])
            self.note.setText("The subject among the model's training subjects shows here after a prediction.")
            self.canvas.draw_idle()
            return
        for label, name in ((0, "no stroke"), (1, "stroke (written)")):
            points = place.reference[place.labels == label]
            ax.scatter(points[:, 0], points[:, 1], s=10 if label == 0 else 22, c=LABEL_COLOURS[label],
                       alpha=0.6 if label == 0 else 0.95, linewidths=0, label=f"{name} ({len(points)})")
        ax.scatter([place.subject[0]], [place.subject[1]], marker="*", s=260, c=SUBJECT_COLOUR,
                   edgecolors="black", linewidths=0.8, label="this subject", zorder=5)
        ax.set_xlabel(f"PC1 ({percent(place.explained[0])})", color="#cccccc", fontsize=8)
        ax.set_ylabel(f"PC2 ({percent(place.explained[1])})", color="#cccccc", fontsize=8)
        legend = ax.legend(fontsize=7, loc="best", facecolor=_BACKGROUND, edgecolor="#888888", labelcolor="#dddddd",
                           framealpha=0.8)
        legend.set_zorder(10)
        self.note.setText(f"{place.neighbour_strokes} of the {place.neighbours} training subjects nearest to this one "
                          "(full embedding) had a written stroke. The plane is for the eye; its distances are not "
                          "the model's.")
        self.canvas.draw_idle()


class CamOverlay(HeatmapOverlay):
    """Colormap, threshold and opacity of the ONE Grad-CAM layer over the T1 (the shared ``HeatmapOverlay``)."""

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(viewer, threshold=DEFAULT_THRESHOLD, opacity=DEFAULT_OPACITY, colormaps=COLORMAPS,
                         parent=parent)

    def show_cam(self, result: StrokePrediction, t1_layer: Any) -> None:
        """Draw the result's normalised Grad-CAM over ``t1_layer`` (the layer the T1 was read from)."""
        cam = result.cam
        if cam is None:
            return
        shown = maps_on_display(cam.normalised[..., None], cam.affine, geometry_of(t1_layer.metadata))[0]
        self.draw(shown, t1_layer, CAM_LAYER, "" if float(cam.raw.max()) > 0 else
                  "The Grad-CAM is zero everywhere: this subject's image only lowers the risk logit.")
