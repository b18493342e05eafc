"""The parts every model widget is built from: layers, device, version, settings, run.

A model widget does the same five things; each is one part here (composition, no base
class), so every system's widget looks and behaves alike:

1. :class:`LayerPicker` - a combo of the viewer's layers that a predicate accepts, kept in
   step with the viewer (inserted, removed, reordered); ``layer()`` is the chosen one.
   Task rules (which layer is a phase, which grid) stay in the task, not here.
2. :class:`DevicePicker` - ``auto | cpu | cuda | mps`` and a VISIBLE label of what will
   run (``core.device``), so a CPU fallback is never silent.
3. :class:`VersionPicker` - the installed versions of one model with each card's tag
   (demo or own weights, held-out figures; ``core.model_labels``), the default selected.
4. :class:`ConfigForm` - spin boxes / check boxes for chosen fields of the task's config
   dataclass: defaults from the dataclass, ranges from ``core.config_fields`` (the CLI reads
   the same), so widget, CLI and core share one set of defaults.
5. :class:`~._worker.TaskRunner` - Run / Cancel / progress around the task generator; a
   ``NeuroreviewError`` is one sentence.

A new system's widget (the pattern of ``case.py``, ``networks.py``, ``cmb_train.py``)::

    class StrokeWidget(QWidget):
        def __init__(self, napari_viewer, parent=None):
            super().__init__(parent)
            self.viewer = napari_viewer
            self.scan = LayerPicker(napari_viewer, is_scan)
            self.device = DevicePicker()
            self.versions = VersionPicker(MODEL_NAME)
            form = QFormLayout(self)
            form.addRow("Scan", self.scan)
            form.addRow("Model", self.versions)
            self.settings = ConfigForm(StrokeConfig, ("epochs",), form)  # rows go into `form`
            form.addRow("Device", self.device)
            self.runner = TaskRunner("Predict stroke risk", self._start, self._show)
            form.addRow(self.runner)

        def _start(self):            # GUI thread: read the inputs, raise NeuroreviewError if missing
            layer = require_layer(self.scan, "open a scan first")
            return stroke.run(volume_from_layer(layer), version=self.versions.version(),
                              config=self.settings.config(), device=self.device.requested())

        def _show(self, result):     # GUI thread: layers, table, notification
            ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.config_fields import config_default, field_range
from ..core.device import DeviceChoice, available_devices, resolve_device
from ..core.errors import InputFileError, NeuroreviewError
from ..core.model_labels import tag_label
from ..core.registry import ModelCard, default_version, installed_versions

if TYPE_CHECKING:
    import napari

__all__ = ["ConfigForm", "DevicePicker", "LayerPicker", "VersionPicker", "cleanup_when_undocked", "elide", "percent",
           "require_layer", "scrolled_panel", "view_grid"]


def view_grid(viewer: Any) -> Any:
    """napari's grid settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


class _Undocked(QObject):
    """Calls ``cleanup`` when its widget loses its parent (see :func:`cleanup_when_undocked`)."""

    def __init__(self, widget: QWidget, cleanup: Callable[[], None]) -> None:
        super().__init__(widget)
        self._cleanup = cleanup
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ParentChange and isinstance(watched, QWidget) and watched.parent() is None:
            self._cleanup()
        return False


def cleanup_when_undocked(widget: QWidget, cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` when napari takes ``widget`` out of its dock.

    Why: napari's own close path (the dock's x, ``window.remove_dock_widget``) un-parents
    the widget and deletes the dock without closing the widget, so a ``closeEvent`` alone
    never runs there; canvas overlays and viewer connections would outlive the panel.
    """
    _Undocked(widget, cleanup)


def elide(combo: QComboBox, chars: int = 12) -> QComboBox:
    """A long layer name or version label must not widen the dock past the screen: elide it."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    return combo


def percent(p: float) -> str:
    """'62.4 %': a probability as every panel writes it (one decimal, the precision a 1000-step bar shows)."""
    return f"{100.0 * float(p):.1f} %"


def row_table(table: QTableWidget, columns: Sequence[str], *, stretch: bool = False) -> QTableWidget:
    """Set ``table`` up as every result table: read-only, one whole row selected at a time, no row numbers.

    Why one place: the review's findings, the worklist and the origin panel's lesions are
    picked by row and centre the view on it; they must answer the hand alike. ``stretch``
    spreads the columns over the dock; otherwise each fits its contents.
    """
    table.setColumnCount(len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch if stretch
                                                  else QHeaderView.ResizeMode.ResizeToContents)
    return table


def scrolled_panel(panel: QWidget, parts: Sequence[QWidget], min_height: int, *, stretch: bool = True,
                   wrap: bool = True) -> QScrollArea:
    """Stack ``parts`` top to bottom in a scroll area that fills ``panel``: every dock's layout.

    Why a scroll area: stacked under other docks on a laptop screen, a dock is shorter than
    its groups and Qt would squeeze the rows over each other; ``min_height`` keeps the inputs
    and Run in view. ``stretch`` keeps the groups at the top; ``wrap`` turns the horizontal
    scroll bar off so that rows wrap to the dock's width.
    """
    content = QWidget()
    content_layout = QVBoxLayout(content)
    content_layout.setContentsMargins(0, 0, 0, 0)
    for part in parts:
        content_layout.addWidget(part)
    if stretch:
        content_layout.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    if wrap:
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(content)
    scroll.setMinimumHeight(min_height)
    layout = QVBoxLayout(panel)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(scroll)
    return scroll


class LayerPicker(QComboBox):
    """The viewer's layers that ``accept`` takes, by name, following the viewer.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer (napari hands plugins a proxy: layers are found by name, never by ``is``).
    accept : callable
        ``accept(layer) -> bool``: which layers are offered.
    leading : sequence of str
        Choices listed before the layers (e.g. "(no phase)", "MNI152 template"); ``layer()``
        is None for them.

    Signals
    -------
    changed
        After the user picks another item and after every refresh (the chosen layer's data
        may have been replaced under the same name), so the host updates what it shows.
    """

    changed = Signal()

    def __init__(self, viewer: napari.Viewer, accept: Callable[[Any], bool], leading: Sequence[str] = (),
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.accept = accept
        self.leading = list(leading)
        elide(self)
        self.currentIndexChanged.connect(lambda _index: self.changed.emit())
        viewer.layers.events.removed.connect(self._unfollow)  # before refresh: the removed layer's names go
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            event.connect(self.refresh)
        self.refresh()

    def release(self) -> None:
        """Stop following the viewer's layer list and its layers' names (its panel closes; safe to call twice)."""
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                      self.viewer.layers.events.reordered):
            event.disconnect(self.refresh)
        self.viewer.layers.events.removed.disconnect(self._unfollow)
        for layer in self.viewer.layers:
            layer.events.name.disconnect(self._renamed)

    def _unfollow(self, event: Any) -> None:
        """A layer left the viewer: stop listening to its name."""
        event.value.events.name.disconnect(self._renamed)

    def _renamed(self, event: Any) -> None:
        """A layer was renamed: list the names again; when it was the chosen one, the choice follows it."""
        chosen = self.currentText()
        gone = chosen not in self.leading and chosen not in {layer.name for layer in self.viewer.layers}
        self._list(event.source.name if gone else chosen)

    def layers(self) -> list[Any]:
        """The layers offered, in the viewer's order."""
        return [layer for layer in self.viewer.layers if self.accept(layer)]

    def layer(self) -> Any | None:
        """The chosen layer, or None (nothing chosen, or a leading choice)."""
        name = self.currentText()
        if name in self.leading:
            return None
        return next((layer for layer in self.layers() if layer.name == name), None)

    def refresh(self, *_: Any) -> None:
        """List the layers again, keeping the choice when it is still there."""
        self._list(self.currentText())

    def _list(self, keep: str) -> None:
        """List the layers (following each one's name: connecting twice is a no-op) and choose ``keep`` if listed."""
        for layer in self.viewer.layers:
            layer.events.name.connect(self._renamed)
        items = [*self.leading, *(layer.name for layer in self.layers())]
        self.blockSignals(True)
        self.clear()
        self.addItems(items)
        if keep in items:
            self.setCurrentText(keep)
        self.blockSignals(False)
        self.changed.emit()


def require_layer(picker: LayerPicker, missing: str) -> Any:
    """The chosen layer, or the user mistake ``missing`` as one sentence (``InputFileError``)."""
    layer = picker.layer()
    if layer is None:
        raise InputFileError(missing)
    return layer


class DevicePicker(QWidget):
    """The device combo and, under it, the label of what will run ("Using CPU (requested)").

    Why visible: a silent CPU fallback turns seconds into minutes; the label says it before Run.
    A device asked for by name that is missing is said in the label (and a notification).
    """

    changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = elide(QComboBox())
        self.combo.addItems(available_devices())
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        layout.addWidget(self.label)
        self.combo.currentTextChanged.connect(self._update)
        self._update(self.combo.currentText())

    def requested(self) -> str:
        """What the user asked for (``'auto'``, ``'cpu'``, ...): what core tasks take."""
        return self.combo.currentText()

    def choice(self) -> DeviceChoice:
        """The resolved device (raises ``DeviceError`` for a missing GPU asked for by name)."""
        return resolve_device(self.requested())

    def _update(self, requested: str) -> None:
        try:
            self.label.setText(f"Using {resolve_device(requested).label}")
        except NeuroreviewError as exc:
            self.label.setText(str(exc))
            show_error(str(exc))
        self.changed.emit(requested)


class VersionPicker(QWidget):
    """The installed versions of one model, each with its card's tag; the default selected.

    Parameters
    ----------
    model_name : str
        Registry name (e.g. ``cmb-detector``).
    roots : list of Path, optional
        Registry roots searched (default: the user's, then the shipped weights).
    describe : callable
        ``describe(card, default_version) -> str``, the item text; default
        ``model_labels.tag_label`` (default mark, demo or own weights). The microbleed
        pickers pass ``version_label`` (also held-out review figures: only microbleed
        retraining makes them).
    default_item : str, optional
        A first item meaning "the registry's default" (``version()`` is None for it).
    newest_first : bool
        List the newest version at the top.

    Item data is the version string (None for ``default_item``).
    """

    changed = Signal()

    def __init__(self, model_name: str, roots: list[Path] | None = None,
                 describe: Callable[[ModelCard, str | None], str] = tag_label, default_item: str | None = None,
                 newest_first: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_name = model_name
        self.roots = roots
        self.describe = describe
        self.default_item = default_item
        self.newest_first = newest_first
        self.cards: dict[str, ModelCard] = {}
        self.combo = elide(QComboBox())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        self.combo.currentIndexChanged.connect(lambda _index: self.changed.emit())
        self.refresh()

    def refresh(self, select: str | None = None) -> str | None:
        """List the versions again; select ``select``, else the default item or the default version.

        Returns the registry's refusal as one sentence (the list is then empty), or None.
        """
        self.combo.blockSignals(True)
        self.combo.clear()
        if self.default_item is not None:
            self.combo.addItem(self.default_item, None)
        self.cards = {}
        error: str | None = None
        try:
            versions = installed_versions(self.model_name, self.roots)
            default = default_version(self.model_name, self.roots)
        except NeuroreviewError as exc:
            versions, default, error = [], None, str(exc)
        for _root, card in (reversed(versions) if self.newest_first else versions):
            self.cards[card.version] = card
            self.combo.addItem(self.describe(card, default), card.version)
        wanted = select if select is not None else (None if self.default_item is not None else default)
        # No default item and no default version (none installed may be made default): the newest.
        index = self.combo.findData(wanted) if wanted is not None else (0 if self.default_item is not None else -1)
        if index < 0:  # the wanted version is not installed (or none is wanted): the newest
            index = int(self.default_item is not None) if self.newest_first else self.combo.count() - 1
        self.combo.setCurrentIndex(index)
        self.combo.blockSignals(False)
        self.changed.emit()
        return error

    def version(self) -> str | None:
        """The chosen version (None: the registry's default, or nothing installed)."""
        return self.combo.currentData()

    def card(self) -> ModelCard | None:
        """The chosen version's card (None for the default item)."""
        version = self.version()
        return self.cards.get(version) if version is not None else None


class ConfigForm(QWidget):
    """Inputs for chosen fields of a task's config dataclass, defaults and ranges from one place.

    Parameters
    ----------
    config : type
        The config dataclass (e.g. the microbleed training config).
    fields : sequence of str
        Its fields to offer: ints become spin boxes, floats double spin boxes (range from
        ``core.config_fields.field_range``), bools check boxes; the value shown first is the
        dataclass default (``config_default``), the same one the CLI uses.
    form : QFormLayout, optional
        Put the rows into the host's form (aligned with its other rows) rather than into
        this widget's own.
    """

    def __init__(self, config: type, fields: Sequence[str], form: QFormLayout | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent if parent is not None or form is None else form.parentWidget())
        self.config_class = config
        self.inputs: dict[str, QWidget] = {}
        own = QFormLayout(self)
        own.setContentsMargins(0, 0, 0, 0)
        target = form if form is not None else own
        for name in fields:
            label, widget = self._input(name)
            self.inputs[name] = widget
            target.addRow(label, widget)
        if form is not None:
            self.setVisible(False)  # its rows live in the host's form

    def _input(self, name: str) -> tuple[str, QWidget]:
        default = config_default(self.config_class, name)
        if isinstance(default, bool):
            box = QCheckBox()
            box.setChecked(default)
            return name.replace("_", " ").capitalize(), box
        if not isinstance(default, (int, float)):
            raise TypeError(f"{self.config_class.__name__}.{name}: a form offers int, float and bool fields only")
        bounds = field_range(self.config_class, name)
        if isinstance(default, int):
            spin: QSpinBox | QDoubleSpinBox = QSpinBox()
            spin.setRange(int(bounds.low), int(bounds.high))
        else:
            spin = QDoubleSpinBox()
            spin.setDecimals(max(2, math.ceil(-math.log10(bounds.low))) if 0 < bounds.low < 1 else 2)
            spin.setRange(bounds.low, bounds.high)
        spin.setValue(default)
        return bounds.label, spin

    def widget(self, name: str) -> QWidget:
        """The input of one field."""
        return self.inputs[name]

    def values(self) -> dict[str, Any]:
        """The values shown, by field name."""
        out: dict[str, Any] = {}
        for name, widget in self.inputs.items():
            out[name] = widget.isChecked() if isinstance(widget, QCheckBox) else widget.value()
        return out

    def config(self, **others: Any) -> Any:
        """The config dataclass with the form's values (and ``others``); the rest keep their defaults."""
        return self.config_class(**self.values(), **others)
