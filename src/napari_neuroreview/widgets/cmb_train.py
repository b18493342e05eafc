"""The microbleed retraining dock widget: fine-tune the detector from the store's reviews.

The GUI twin of ``neuroreview cmb train --store DB [--base VERSION]``. It runs
:func:`~napari_neuroreview.core.tasks.cmb.retrain.retrain_from_store` through the shared
task rails (worker, progress bar, Cancel), saves the new version into the user's model
registry, and shows the parent's and the new version's figures on the same held-out
reviewed scans, each at its own threshold. The new version becomes the default (what the
review widget selects and ``cmb detect`` uses) only if it is not worse there; otherwise
it is kept and flagged, and the user is told in one sentence. The default can be set or
rolled back here too (the twin of ``neuroreview models set-default / rollback``). Why a
separate widget: training takes minutes and is done now and then, reviewing all day.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from ..core.errors import InputFileError, NeuroreviewError
from ..core.model_labels import version_label
from ..core.registry import SHIPPED_WEIGHTS_ROOT, ModelCard, default_registry_root, rollback_default, set_default
from ..core.store import default_store_path
from ..core.tasks.cmb.model import MODEL_NAME
from ..core.tasks.cmb.retrain import RetrainResult, retrain_from_store
from ..core.tasks.cmb.training import FitConfig
from ._base import ConfigForm, DevicePicker, VersionPicker
from ._worker import TaskRunner
from .cmb_review import CMBReviewWidget, find_docked

if TYPE_CHECKING:
    import napari

DEFAULT = "the default"


class CMBTrainWidget(QWidget):
    """Dock widget: fine-tune the microbleed detector from reviewed scans.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    root : Path, optional
        Registry folder the new version is saved into (default: the user's registry,
        which the review widget and ``load_detector`` search first); the default version
        is kept there too.
    """

    def __init__(self, napari_viewer: napari.Viewer, root: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.root = Path(root) if root is not None else default_registry_root()
        self.roots = list(dict.fromkeys([self.root, default_registry_root(), SHIPPED_WEIGHTS_ROOT]))
        self.last_card: ModelCard | None = None
        self.last_result: RetrainResult | None = None
        reviewers = find_docked(napari_viewer, CMBReviewWidget)
        self.store_path = QLineEdit(reviewers[0].store_path.text() if reviewers else str(default_store_path()))
        self.base = VersionPicker(MODEL_NAME, self.roots, describe=lambda card, _default: card.version,
                                  default_item=DEFAULT, newest_first=True)
        self.device = DevicePicker()
        self.runner = TaskRunner("Fine-tune from reviews", self._start, self._show_result)
        self.result = QLabel("Reviewed scans are split into training and held-out scans by their voxel data; "
                             "the new version's threshold is chosen on the held-out ones and it becomes the "
                             "default only if it is not worse there than its parent.")
        self.result.setWordWrap(True)
        self.versions = VersionPicker(MODEL_NAME, self.roots, describe=version_label, newest_first=True)
        self.set_default_button = QPushButton("Set as default")
        self.set_default_button.clicked.connect(self.set_default)
        self.rollback_button = QPushButton("Roll back default")
        self.rollback_button.clicked.connect(self.rollback)
        buttons = QHBoxLayout()
        buttons.addWidget(self.set_default_button)
        buttons.addWidget(self.rollback_button)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("Store", self.store_path)
        form.addRow("Base version", self.base)
        self.settings = ConfigForm(FitConfig, ("epochs",), form, parent=self)  # default and range: FitConfig's
        form.addRow("Device", self.device)
        layout.addLayout(form)
        layout.addWidget(self.runner)
        layout.addWidget(self.result)
        versions = QFormLayout()
        versions.addRow("Versions", self.versions)
        layout.addLayout(versions)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.refresh_versions()

    def refresh_versions(self) -> None:
        """List the versions (to fine-tune from, and to make the default), the default marked."""
        errors = [self.base.refresh(), self.versions.refresh()]
        if errors[0]:
            self.result.setText(errors[0])

    def set_default(self) -> None:
        """Make the picked version the default (what the review widget and ``cmb detect`` use)."""
        version = self.versions.version()
        if version is not None:
            self._change_default(lambda: (set_default(MODEL_NAME, version, self.roots), version)[1])

    def rollback(self) -> None:
        """Go back to the previous default."""
        self._change_default(lambda: rollback_default(MODEL_NAME, self.roots))

    def _change_default(self, change: Any) -> None:
        try:
            version = change()
        except NeuroreviewError as exc:
            show_error(str(exc))
            return
        self._refresh_all()
        show_info(f"Microbleed detector {version} is now the default")

    def _refresh_all(self) -> None:
        self.refresh_versions()
        for widget in find_docked(self.viewer, CMBReviewWidget):
            widget.refresh_versions()

    def _start(self) -> Any:
        store = Path(self.store_path.text()).expanduser()
        if not store.is_file():
            raise InputFileError(f"{store}: no annotation store here; review some scans first")
        return retrain_from_store(store, self.root, self.base.version(), self.settings.config(),
                                  device=self.device.requested(), roots=self.roots)

    def _show_result(self, result: RetrainResult) -> None:
        """Both versions on the same held-out reviews, then the verdict (also as a notification)."""
        card = result.card
        self.last_result, self.last_card = result, card
        lines = [f"New version {card.version} (from {card.parent or 'scratch'}), saved in {self.root}.",
                 *result.comparison_lines(), result.verdict]
        if result.skipped:
            lines.append(f"{len(result.skipped)} scan(s) skipped: " + "; ".join(result.skipped))
        self.result.setText("\n".join(lines))
        self._refresh_all()
        show_info(result.verdict)
