"""Run a core task generator off the GUI thread, with progress, Cancel and clear errors.

Every long operation in every widget goes through :class:`TaskRunner`, so they all
behave the same: the Run button is disabled while the task runs, a progress bar (in the
widget and in napari's activity dock) follows the task's :class:`Progress` yields,
Cancel stops it at the next yield (core tasks yield at least once a second), and a
:class:`NeuroreviewError` becomes one notification sentence while any other exception
is reported as a bug with its traceback in napari's console.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..core.errors import NeuroreviewError
from ..core.progress import Progress


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
        self._pbar: progress | None = None
        self.last_error: BaseException | None = None

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
        self.worker = worker
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
        if not isinstance(update, Progress):
            return
        value = int(round(update.fraction * 1000))
        self.bar.setValue(value)
        self.status.setText(update.message)
        pbar = self._pbar  # napari's progress may process events, so finish can run meanwhile
        if pbar is not None:
            pbar.n = value
            pbar.set_description(update.message or self.run_button.text())

    def _on_returned(self, value: Any) -> None:
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
        self.status.setText("Cancelled")
        show_info(f"{self.run_button.text()}: cancelled")

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
