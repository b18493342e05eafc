"""Which of the store's scans the microbleed worklist lists.

Why a rule of its own: the annotation store registers whatever scan a widget opens it on
(the Case widget registers the selected layer: a T1, a phase image, a 4D BOLD), and the
store keeps no modality. A scan belongs on the microbleed worklist when microbleed work
was done on it (findings of the task, or a sign-off), or, still untouched, when it could
be a microbleed review: one 3D volume whose file name does not name another modality.
An SWI on which the model found nothing stays listed, so that it can be signed off as read.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...reading.window import modality_from_name
from ...store import ScanState

#: File-name modalities (``reading.window.modality_from_name``) an untouched scan may have.
REVIEWABLE = frozenset({"swi", "auto"})


def on_worklist(state: ScanState) -> bool:
    """Whether the microbleed worklist lists this scan (``state`` from ``scan_states('cmb')``)."""
    if state.findings or state.state != "pending":
        return True
    return len(tuple(state.image.shape)) == 3 and modality_from_name(state.file_name) in REVIEWABLE


def worklist_states(states: Sequence[ScanState]) -> list[ScanState]:
    """The scans of ``states`` the microbleed worklist lists, in their order."""
    return [state for state in states if on_worklist(state)]
