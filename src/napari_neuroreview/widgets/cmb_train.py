"""The microbleed retraining dock widget: fine-tune the detector from the store's reviews.

The GUI twin of ``neuroreview cmb train --store DB [--base VERSION]``. It runs
:func:`~napari_neuroreview.core.tasks.cmb.retrain.retrain_from_store` through the shared
task rails (worker, progress bar, Cancel), saves the new version into the user's model
registry, shows its metrics on reviewed scans held out from training next to the parent
version's, and makes the review widget offer it at once. Why a separate widget: training
takes minutes and is done now and then, reviewing is done all day.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_info
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QLineEdit, QSpinBox, QVBoxLayout, QWidget

from ..core.device import available_devices
from ..core.errors import InputFileError, NeuroreviewError
from ..core.registry import ModelCard, default_registry_root
from ..core.store import default_store_path
from ..core.tasks.cmb.model import available_versions
from ..core.tasks.cmb.retrain import retrain_from_store
from ..core.train.loop import FitConfig
from ._worker import TaskRunner
from .cmb_review import CMBReviewWidget, find_docked

if TYPE_CHECKING:
    import napari

NEWEST = "newest"


def held_out_text(card: ModelCard) -> str:
    """'sensitivity 0.61 -> 0.72, FP/scan ...' from a fine-tuned card's held-out metrics."""
    before, after = card.config.get("held_out_before") or {}, card.config.get("held_out_after") or {}
    parts = []
    for key, label in (("sensitivity", "sensitivity"), ("precision", "precision"), ("fp_per_subject", "FP/scan"),
                       ("f1", "F1")):
        if key in before and key in after:
            parts.append(f"{label} {float(before[key]):.2f} \u2192 {float(after[key]):.2f}")
    return ", ".join(parts) or "no held-out metrics in the model card"


class CMBTrainWidget(QWidget):
    """Dock widget: fine-tune the microbleed detector from reviewed scans.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    root : Path, optional
        Registry folder the new version is saved into (default: the user's registry,
        which the review widget and ``load_detector`` search first).
    """

    def __init__(self, napari_viewer: napari.Viewer, root: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.root = Path(root) if root is not None else default_registry_root()
        self.last_card: ModelCard | None = None
        reviewers = find_docked(napari_viewer, CMBReviewWidget)
        self.store_path = QLineEdit(reviewers[0].store_path.text() if reviewers else str(default_store_path()))
        self.base_combo = QComboBox()
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(8)
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.runner = TaskRunner("Fine-tune from reviews", self._start, self._show_result)
        self.result = QLabel("Reviewed scans are split into training and held-out scans by their voxel data, "
                             "so the metrics below are on scans the new version never saw.")
        self.result.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Store", self.store_path)
        form.addRow("Base version", self.base_combo)
        form.addRow("Epochs", self.epochs)
        form.addRow("Device", self.device_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.runner)
        layout.addWidget(self.result)
        layout.addStretch(1)
        self.refresh_versions()

    def refresh_versions(self) -> None:
        """List the versions to fine-tune from (those ``load_detector`` can find)."""
        self.base_combo.clear()
        self.base_combo.addItem(NEWEST, None)
        try:
            versions = available_versions()
        except NeuroreviewError as exc:
            self.result.setText(str(exc))
            return
        for _root, card in reversed(versions):
            self.base_combo.addItem(card.version, card.version)

    def _start(self) -> Any:
        store = Path(self.store_path.text()).expanduser()
        if not store.is_file():
            raise InputFileError(f"{store}: no annotation store here; review some scans first")
        config = FitConfig(epochs=int(self.epochs.value()))
        return retrain_from_store(store, self.root, self.base_combo.currentData(), config,
                                  device=self.device_combo.currentText())

    def _show_result(self, card: ModelCard) -> None:
        self.last_card = card
        text = (f"New version {card.version} (from {card.parent or 'scratch'}), saved in {self.root}.\n"
                f"Held-out reviewed scans: {held_out_text(card)}")
        skipped = card.config.get("skipped_scans") or []
        if skipped:
            text += f"\n{len(skipped)} scan(s) skipped: " + "; ".join(skipped)
        self.result.setText(text)
        self.refresh_versions()
        for widget in find_docked(self.viewer, CMBReviewWidget):
            widget.refresh_versions(select=card.version)
        show_info(f"Microbleed detector {card.version} is ready and offered in the review widget")
