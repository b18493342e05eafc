"""Run a core task generator off the GUI thread, with progress, Cancel and clear errors.

Every long operation in every widget goes through :class:`TaskRunner`, so they all
behave the same: the Run button is disabled while the task runs, a progress bar (in the
widget and in napari's activity dock) follows the task's :class:`Progress` yields,
Cancel stops it at the next yield (core tasks yield at least once a second) and closes
the generator at once (its ``finally`` blocks run then, not whenever it is collected), and
a :class:`NeuroreviewError` becomes one notification sentence while any other exception
is reported as a bug with its traceback in napari's console.

Progress is coalesced: a task may yield thousands of updates a second, faster than the
GUI can draw them, and napari's progress bar calls ``processEvents`` when its label
changes, which would deliver the next queued update into the handler again (a
re-entrant handler that ends in ``RecursionError``). So the handler only keeps the
latest update, and a timer draws it at most every :data:`DRAW_INTERVAL_MS`; drawing is
never re-entered.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..core.errors import NeuroreviewError
from ..core.progress import Progress

#: Milliseconds between two progress redraws (the latest update wins; ~12 redraws a second).
DRAW_INTERVAL_MS = 80


class TaskRunner(QWidget):
    """A Run button, a Cancel button and a progress bar bound to one task at a time.

    Parameters
    ----------
    run_text : str
        Label of the Run button.
    start : callable
        Called with no arguments when Run is clicked; returns the task generator to run
        (or None to do nothing, e.g. when inputs are missing).
    on_result : callable
        Called on the GUI thread with the task's return value.
    """

    def __init__(
        self,
        run_text: str,
        start: Callable[[], Generator[Progress, None, Any] | None],
        on_result: Callable[[Any], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._start = start
        self._on_result = on_result
        self.worker: GeneratorWorker | None = None
        self._task: Generator[Progress, None, Any] | None = None
        self._pbar: progress | None = None
        self.last_error: BaseException | None = None
        self._latest: Progress | None = None  # newest update not drawn yet
        self._drawing = False
        self._draw_timer = QTimer(self)
        self._draw_timer.setSingleShot(True)
        self._draw_timer.setInterval(DRAW_INTERVAL_MS)
        self._draw_timer.timeout.connect(self._draw_progress)

        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)

    @property
    def running(self) -> bool:
        """True while a task is in flight."""
        return self.worker is not None

    def run(self) -> GeneratorWorker | None:
        """Start the task in a worker thread (ignored while one is running)."""
        if self.running:
            return None
        try:
            task = self._start()
        except NeuroreviewError as exc:
            self._report_error(exc)
            return None
        if task is None:
            return None
        self.last_error = None
        # Our own "errored" handler replaces superqt's default, which re-raises into the
        # Qt event loop: a user error must end as one sentence, not a traceback dialog.
        worker = create_worker(
            lambda: (yield from task),
            _start_thread=False,
            _connect={
                "yielded": self._on_progress,
                "returned": self._on_returned,
                "errored": self._report_error,
                "aborted": self._on_aborted,
                "finished": self._on_finished,
            },
        )
        assert isinstance(worker, GeneratorWorker)
        self.worker, self._task = worker, task
        self._pbar = progress(total=1000, desc=self.run_button.text())
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bar.setValue(0)
        self.status.setText("Starting...")
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the task to stop at its next progress yield."""
        if self.worker is not None:
            self.status.setText("Cancelling...")
            self.cancel_button.setEnabled(False)
            self.worker.quit()

    def _on_progress(self, update: Any) -> None:
        """Keep the newest update; a timer draws it (never re-entered, see the module doc)."""
        if not isinstance(update, Progress):
            return
        self._latest = update
        if not self._drawing and not self._draw_timer.isActive():
            self._draw_timer.start()

    def _draw_progress(self) -> None:
        update, self._latest = self._latest, None
        if update is None or self._drawing or self.worker is None:
            return
        self._drawing = True
        try:
            value = int(round(update.fraction * 1000))
            self.bar.setValue(value)
            self.status.setText(update.message)
            pbar = self._pbar  # napari's progress processes events: updates that arrive meanwhile wait
            if pbar is not None:
                pbar.n = value
                pbar.set_description(update.message or self.run_button.text())
        finally:
            self._drawing = False
        if self._latest is not None and not self._draw_timer.isActive():
            self._draw_timer.start()

    def _on_returned(self, value: Any) -> None:
        self._draw_timer.stop()
        self._latest = None
        self.bar.setValue(1000)
        self.status.setText("Done")
        self._on_result(value)

    def _report_error(self, exc: BaseException) -> None:
        self.last_error = exc
        if isinstance(exc, NeuroreviewError):
            self.status.setText(str(exc))
            show_error(str(exc))
        else:  # a bug, not a user mistake: keep the traceback for the report
            traceback.print_exception(exc)
            self.status.setText(f"Failed: {type(exc).__name__}: {exc}")
            show_error(f"{self.run_button.text()} failed unexpectedly: {type(exc).__name__}: {exc}")

    def _on_aborted(self) -> None:
        # The worker thread has left the generator (superqt checks abort between two steps):
        # close it here so the task's cleanup (files, partial results) runs now.
        task, self._task = self._task, None
        if task is not None:
            try:
                task.close()
            except Exception as exc:  # a task that yields or fails in its cleanup: a bug, with its traceback
                self._report_error(exc)
        self.status.setText("Cancelled")
        show_info(f"{self.run_button.text()}: cancelled")

    def _on_finished(self) -> None:
        self._draw_timer.stop()
        self._latest = None
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.worker, self._task = None, None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
