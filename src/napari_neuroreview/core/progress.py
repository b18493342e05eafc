"""The progress protocol that every long core task follows.

A long task is written as a generator that ``yield``s :class:`Progress` updates and
``return``s its result. Why a generator: the same code then runs three ways without
change. The napari widgets run it in a ``napari.qt.threading`` generator worker (each
yield is a chance to update the progress bar and to honour Cancel); the CLI drives it
with :func:`run_to_completion`; tests call it directly. A task must yield at least
about once a second so that Cancel is felt within a second.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Progress:
    """One progress report.

    Parameters
    ----------
    step : int
        Units of work done so far.
    total : int
        Units of work in all (``step == total`` at the end).
    message : str
        A short sentence for the progress bar ("Masking slice 40 of 96").
    """

    step: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """Share of the work done, in [0, 1]."""
        return 0.0 if self.total <= 0 else min(1.0, max(0.0, self.step / self.total))


TaskGenerator = Generator[Progress, None, R]


def run_to_completion(
    task: Generator[Progress, None, R],
    on_progress: Callable[[Progress], Any] | None = None,
) -> R:
    """Drive a task generator to its end and return what it returned.

    Parameters
    ----------
    task : generator
        A started task, e.g. ``brainmask.run(volume)``.
    on_progress : callable, optional
        Called with every :class:`Progress` the task yields (the CLI prints them).

    Returns
    -------
    The task's return value.
    """
    while True:
        try:
            update = next(task)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(update)


def relay(task: Generator[Progress, None, R], restate: Callable[[Progress], Progress]) -> TaskGenerator[R]:
    """Run a sub-task inside a larger one: yield each of its updates restated, return its result.

    Why: a step of a long task (one session of a cohort, one fold of a cross-validation)
    is itself a task; ``restate`` maps its progress onto the whole (``yield from`` would
    pass its raw step counts through, making the bar jump back at every step).
    """
    while True:
        try:
            update = next(task)
        except StopIteration as stop:
            return stop.value
        yield restate(update)


def within(task: TaskGenerator[R], start: int, span: int, total: int, what: str) -> TaskGenerator[R]:
    """Run a sub-task as units ``start .. start + span`` of ``total``, prefixing its messages.

    Why: a long task made of stages (load, cross-validate, train) shows one progress bar
    that moves through each stage in turn, and Cancel reaches whichever stage runs.
    """
    while True:
        try:
            update = next(task)
        except StopIteration as stop:
            return stop.value
        yield Progress(start + int(span * update.fraction), total, f"{what}: {update.message}")
