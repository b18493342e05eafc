"""The rails: a core task runs off the GUI thread, with progress, Cancel and clear errors."""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QTimer

from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.progress import Progress
from napari_neuroreview.widgets._worker import TaskRunner


def busy_task(seconds: float, step_s: float = 0.05):
    """Real CPU work (matrix products) for ``seconds``, yielding progress every ``step_s``."""
    rng = np.random.default_rng(0)
    a = rng.random((160, 160))
    steps = int(seconds / step_s)
    for step in range(steps):
        until = time.perf_counter() + step_s
        while time.perf_counter() < until:
            a = np.tanh(a @ a.T / 160.0)
        yield Progress(step + 1, steps, f"step {step + 1} of {steps}")
    return float(a.sum())


def test_gui_thread_keeps_turning_during_a_5_second_task(qtbot) -> None:
    results: list[float] = []
    runner = TaskRunner("Busy", lambda: busy_task(5.0), results.append)
    qtbot.addWidget(runner)
    beats: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    timer.start()
    started = time.perf_counter()
    runner.run_button.click()
    assert runner.running and not runner.run_button.isEnabled() and runner.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not runner.running, timeout=30_000)
    elapsed = time.perf_counter() - started
    timer.stop()
    assert len(results) == 1 and runner.bar.value() == 1000
    assert elapsed >= 4.9
    during = [t for t in beats if started <= t <= started + elapsed]
    gaps = np.diff(during)
    assert len(during) > 100, "the GUI thread barely ran"
    assert gaps.max() < 0.100, f"GUI thread stalled for {gaps.max() * 1000:.0f} ms"
    assert runner.run_button.isEnabled() and not runner.cancel_button.isEnabled()


def test_cancel_stops_the_task_within_a_second(qtbot) -> None:
    results: list[float] = []
    runner = TaskRunner("Busy", lambda: busy_task(20.0), results.append)
    qtbot.addWidget(runner)
    runner.run_button.click()
    qtbot.wait(500)
    assert runner.running and 0 < runner.bar.value() < 1000
    clicked = time.perf_counter()
    runner.cancel_button.click()
    qtbot.waitUntil(lambda: not runner.running, timeout=5_000)
    assert time.perf_counter() - clicked < 1.0
    assert results == [] and runner.status.text() == "Cancelled"
    assert runner.run_button.isEnabled()


def failing_task():
    yield Progress(1, 2, "reading")
    raise InputFileError("scan.nii.gz: is truncated")


def test_a_user_error_becomes_one_notification(qtbot, notifications) -> None:
    runner = TaskRunner("Load", failing_task, lambda _: None)
    qtbot.addWidget(runner)
    runner.run_button.click()
    qtbot.waitUntil(lambda: not runner.running, timeout=5_000)
    assert isinstance(runner.last_error, InputFileError)
    assert notifications == ["scan.nii.gz: is truncated"]
    assert runner.status.text() == "scan.nii.gz: is truncated" and runner.run_button.isEnabled()


def test_cancel_closes_the_task_at_once(qtbot) -> None:
    """The task's cleanup runs when Cancel stops it, not whenever the generator is collected."""
    cleaned: list[str] = []

    def task():
        try:
            yield from busy_task(20.0)
        finally:
            cleaned.append("closed")

    runner = TaskRunner("Busy", task, lambda _: None)
    qtbot.addWidget(runner)
    runner.run_button.click()
    qtbot.wait(300)
    runner.cancel_button.click()
    qtbot.waitUntil(lambda: not runner.running, timeout=5_000)
    assert cleaned == ["closed"] and runner.status.text() == "Cancelled" and runner.last_error is None
