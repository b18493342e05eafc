"""The progress protocol: driving a task, and relaying a sub-task's progress."""

from __future__ import annotations

from napari_neuroreview.core.progress import Progress, relay, run_to_completion


def _sub(n: int):
    for i in range(n):
        yield Progress(i, n, f"step {i}")
    return "done"


def test_relay_restates_every_update_and_returns_the_result() -> None:
    seen: list[Progress] = []

    def outer():
        result = yield from relay(_sub(3), lambda u: Progress(10 + u.step, 20, f"outer: {u.message}"))
        return result.upper()

    assert run_to_completion(outer(), seen.append) == "DONE"
    assert [(p.step, p.total, p.message) for p in seen] == [
        (10, 20, "outer: step 0"), (11, 20, "outer: step 1"), (12, 20, "outer: step 2")]
