"""The side and region of each finding of a review, found off the GUI thread.

:class:`FindingLocator` runs ``core.tasks.cmb.locations.locate_findings`` in a
:class:`TaskRunner` (progress, Cancel) after a review is drawn: the scan is registered to
MNI once (seconds; cached per scan sha256 and affine, so a later edit only looks the new position up),
and the table's side and region columns show :data:`LOCATING` until it ends. Why apart from
the table: the table only shows what it is given; this part decides when to locate again
(a finding added or moved since) and remembers each finding's place by its position.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel

from ..core.errors import NeuroreviewError
from ..core.io.layers import META_KEY, volume_from_layer
from ..core.progress import Progress
from ..core.store import Finding
from ..core.tasks.cmb.locations import Location, locate_findings
from ._worker import TaskRunner

#: What the side and region cells show while the scan is being registered.
LOCATING = "…"


class FindingLocator:
    """Each finding's :class:`Location`, located in a worker; ``on_located`` redraws when they arrive.

    Attributes
    ----------
    runner : TaskRunner
        Its Run button locates again by hand; it starts by itself after each :meth:`update`.
    note : QLabel
        Why the columns stay empty (a scan that does not register to MNI), else nothing.
    """

    def __init__(self, on_located: Callable[[], None]) -> None:
        self._on_located = on_located
        self._placed: dict[int, tuple[tuple[float, ...], Location]] = {}  # fid -> (world it was located at, place)
        self._scan: Any = None
        self._sha = ""
        self._wanted: list[Finding] = []
        self._failed = False
        self.runner = TaskRunner("Locate (side, region)", self._start, self._show)
        self.note = QLabel("")
        self.note.setWordWrap(True)

    def reset(self) -> None:
        """Forget every place (another review or none); a running task's result will be dropped."""
        self._placed, self._scan, self._sha, self._wanted, self._failed = {}, None, "", [], False
        self.note.setText("")

    def update(self, scan: Any, findings: Sequence[Finding]) -> None:
        """Locate the findings of ``scan`` not located at their current position yet (in the worker)."""
        sha = str(getattr(scan, "metadata", {}).get(META_KEY, {}).get("sha256", ""))
        if scan is None or sha != self._sha:
            self.reset()
            self._scan, self._sha = scan, sha
        self._wanted = list(findings)
        self._again()

    def text(self, finding: Finding) -> tuple[str, str]:
        """(side, region) cells of a finding: its place, :data:`LOCATING` while pending, blanks when unknown."""
        placed = self._placed.get(finding.id)
        if placed is not None and placed[0] == tuple(finding.world):
            return placed[1].side, placed[1].region
        return ("", "") if self._failed or self._scan is None else (LOCATING, LOCATING)

    def hover(self, finding: Finding) -> str:
        """A finding's region and side for the hover status (``temporal (L)``), :data:`LOCATING` or ''."""
        side, region = self.text(finding)
        return f"{region} ({side})" if side not in ("", LOCATING) else region

    def cancel(self) -> None:
        """Stop a running registration and locate nothing more (the widget is closing)."""
        self._scan, self._wanted = None, []  # a pending _again finds nothing to do
        if self.runner.running:
            self.runner.cancel()

    def _again(self) -> None:
        """Locate what is missing, once the runner is free (it is busy until its finished signal)."""
        if self.runner.running:
            QTimer.singleShot(100, self._again)
        elif self._scan is not None and not self._failed and self._missing():
            self.runner.run()

    def _missing(self) -> list[Finding]:
        return [f for f in self._wanted
                if f.id not in self._placed or self._placed[f.id][0] != tuple(f.world)]

    def _start(self) -> Generator[Progress, None, Any] | None:
        missing, scan, sha = self._missing(), self._scan, self._sha
        if not missing or scan is None:
            return None
        data, metadata, name = scan.data, dict(scan.metadata), scan.name

        def task() -> Generator[Progress, None, Any]:
            yield Progress(0, 1, f"Reading {name}")
            worlds = [tuple(f.world) for f in missing]
            try:  # any user-facing failure (voxels changed in napari, no brain the template fits) is said once
                volume = volume_from_layer(data, metadata, name, grid="source")  # in the worker: hashing takes time
                found = yield from locate_findings(volume, [f.id for f in missing], np.array(worlds), name)
            except NeuroreviewError as exc:  # the columns stay empty; not retried on every edit
                return sha, str(exc)
            return volume.sha256, {fid: (world, found[fid]) for fid, world in zip(found, worlds)}

        return task()

    def _show(self, value: Any) -> None:
        sha, found = value
        if sha == self._sha:  # else another scan was picked meanwhile
            if isinstance(found, str):
                self._failed = True
                self.note.setText(f"Side and region unknown: {found}")
            else:
                self._placed.update(found)
            self._on_located()
        QTimer.singleShot(0, self._again)  # added or moved while it ran, or another scan: their turn now
