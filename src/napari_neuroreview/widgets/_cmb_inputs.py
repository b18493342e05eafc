"""The scans a microbleed review reads: the SWI and phase pickers, and where the phase layer goes.

:class:`ScanInputs` owns the SWI and Phase combos of the review widget, keeps them in step
with the viewer's scan layers (a layer named like a phase is the phase, the first other
scan the magnitude, until the user picks), and puts a newly picked phase layer under the
magnitude, hidden, once. Why apart from the widget: choosing the inputs has its own rules
and state (the layers already placed); the widget only asks for the picked layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.layers import Image
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QComboBox

from ._base import elide
from ._cmb_layers import is_phase_name, layer_key
from .case import is_scan

if TYPE_CHECKING:
    import napari

#: The phase combo's "no phase image" entry.
NO_PHASE = "none"


class ScanInputs:
    """The SWI and Phase combos over the viewer's scan layers.

    Attributes
    ----------
    swi_combo, phase_combo : QComboBox
    """

    def __init__(self, viewer: napari.Viewer) -> None:
        self.viewer = viewer
        self.swi_combo, self.phase_combo = elide(QComboBox()), elide(QComboBox())
        self._placed_phases: set[tuple[Any, str]] = set()

    def scan_layers(self) -> list[Image]:
        """The viewer's scan layers (images this plugin's reader opened)."""
        return [layer for layer in self.viewer.layers if is_scan(layer)]

    def layer(self, name: str) -> Image | None:
        """The scan layer of that name (None: none)."""
        return next((layer for layer in self.scan_layers() if layer.name == name), None)

    def swi(self) -> Image | None:
        """The picked magnitude layer."""
        return self.layer(self.swi_combo.currentText())

    def phase(self) -> Image | None:
        """The picked phase layer (None: none picked)."""
        return self.layer(self.phase_combo.currentText())

    def refresh(self) -> None:
        """List the scan layers again, keeping the user's picks (signals blocked: not a pick)."""
        names = [layer.name for layer in self.scan_layers()]
        swi, phase = self.swi_combo.currentText(), self.phase_combo.currentText()
        if phase in ("", NO_PHASE) or phase not in names:  # a layer called "phase" is the phase until the user says otherwise
            phase = next((n for n in names if is_phase_name(n)), NO_PHASE)
        if swi == "" or swi not in names:  # and the magnitude is the first scan that is not a phase image
            swi = next((n for n in names if not is_phase_name(n)), "")
        for combo, items, keep in ((self.swi_combo, names, swi), (self.phase_combo, [NO_PHASE, *names], phase)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(items)
            if keep in items:
                combo.setCurrentText(keep)
            combo.blockSignals(False)

    def place_phase(self) -> None:
        """Put a newly picked phase layer under the magnitude, hidden: the review is read on the magnitude.

        Done once per phase layer, so the user can show it again (its eye) to compare.
        """
        phase, swi = self.phase(), self.swi()
        if phase is None or swi is None or phase == swi or layer_key(phase) in self._placed_phases:
            return
        self._placed_phases.add(layer_key(phase))
        layers = self.viewer.layers
        if layers.index(phase) > layers.index(swi):
            layers.move(layers.index(phase), layers.index(swi))
        phase.visible = False
        show_info(f"Phase image '{phase.name}' hidden under '{swi.name}': the review is read on the magnitude "
                  "(tick the phase's eye in the layer list to compare)")
