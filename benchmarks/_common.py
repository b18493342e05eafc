"""Small helpers shared by the benchmark scripts: child workers, peak memory, timing, tables.

Why child processes: peak memory is only meaningful per method when each method runs in
a fresh interpreter, and timings are only comparable when nothing else of ours runs at
the same time. A benchmark script re-runs itself with ``--worker SPEC.json``; the child
writes its answer to a pickle beside the spec (our own temporary file, never a download).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import os
import pickle
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

GIB = float(1 << 30)


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process so far, in GiB.

    ``vmhwm_gib`` is the kernel's high-water mark of *this* address space
    (``/proc/self/status`` VmHWM). ``ru_maxrss_gib`` is ``getrusage(RUSAGE_SELF)``:
    on Linux it is carried over from the parent across fork+exec (a child of a 2 GiB
    parent reports >= 2 GiB whatever it does), so VmHWM is the number to report and
    ru_maxrss is kept for reference. Both include the interpreter and its imports.
    """
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ru = rss / GIB if sys.platform == "darwin" else rss * 1024 / GIB  # bytes on macOS, KiB on Linux
    out = {"ru_maxrss_gib": ru, "vmhwm_gib": float("nan")}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    out["vmhwm_gib"] = int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    out["peak_gib"] = out["vmhwm_gib"] if math.isfinite(out["vmhwm_gib"]) else ru
    return out


class WorkerError(RuntimeError):
    """A child worker failed; its stderr tail is in the message."""


def start_worker(script: Path, spec: dict[str, Any], workdir: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """Start ``python script --worker spec.json`` (a fresh interpreter); see :func:`finish_worker`."""
    spec_path = workdir / f"{name}.spec.json"
    out_path = workdir / f"{name}.out.pkl"
    spec = dict(spec, out=str(out_path))
    spec_path.write_text(json.dumps(clean_json(spec), indent=1))
    err = open(workdir / f"{name}.stderr.txt", "w")  # noqa: SIM115 - closed in finish_worker
    proc = subprocess.Popen([sys.executable, str(script), "--worker", str(spec_path)],
                            stdout=err, stderr=subprocess.STDOUT)
    proc._bench_err = err  # type: ignore[attr-defined]
    proc._bench_name = name  # type: ignore[attr-defined]
    return proc, out_path


def finish_worker(proc: subprocess.Popen, out_path: Path) -> Any:
    """Wait for a worker and return what it pickled."""
    code = proc.wait()
    proc._bench_err.close()  # type: ignore[attr-defined]
    log = Path(proc._bench_err.name).read_text(errors="replace")  # type: ignore[attr-defined]
    if code != 0 or not out_path.is_file():
        tail = "\n".join(log.strip().splitlines()[-25:])
        raise WorkerError(f"worker {proc._bench_name} failed (exit {code}):\n{tail}")  # type: ignore[attr-defined]
    with out_path.open("rb") as fh:
        return pickle.load(fh)


def run_worker(script: Path, spec: dict[str, Any], workdir: Path, name: str) -> Any:
    """Run one worker to its end and return its answer."""
    return finish_worker(*start_worker(script, spec, workdir, name))


def write_answer(spec: dict[str, Any], answer: Any) -> None:
    """The worker's side: pickle the answer where the parent expects it."""
    tmp = Path(spec["out"] + ".tmp")
    with tmp.open("wb") as fh:
        pickle.dump(answer, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, spec["out"])


def cached(path: Path, key: Any, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """``compute()``'s value, kept in the pickle ``path`` with ``key`` and reused while the key matches.

    Why: a benchmark reads a rendered cohort's scans once (minutes to hours) and later runs
    with the same settings reuse what it read; ``key`` holds everything the value depends
    on (the cohort's ``labels.tsv`` text, the settings, a weights digest). A cache torn by
    a killed run or written by another version of a script is computed again, and each
    process writes its own temporary file before the move, so two runs never share one.
    The pickle is the script's own file in its own work folder, never user input.
    Returns the value and whether it came from the cache.
    """
    if path.is_file():
        try:
            with path.open("rb") as fh:
                saved = pickle.load(fh)
            if saved["key"] == key:
                return saved["value"], True
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError, ImportError):
            pass  # torn, or from another version of the script: computed again
    value = compute()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        pickle.dump({"key": key, "value": value}, fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return value, False


def cohort_fingerprint(folder: Path, modules: Sequence[str]) -> str:
    """A digest of a rendered cohort's files (name, size, modification time) and of the reading code.

    Why: a cache keyed by ``labels.tsv`` alone outlives a re-render of the same patients at
    another voxel size, or a change to the code that reads them, and hands back stale values
    without a word. ``modules``: the modules whose source decides what is read (dotted names).
    Files whose name starts with a dot (the caches themselves) are left out.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for name in modules:
        digest.update(inspect.getsource(importlib.import_module(name)).encode())
    return digest.hexdigest()


def time_repeated(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1,
                  sync: Callable[[], None] | None = None) -> list[float]:
    """Wall seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return times


def crop_or_pad(array: np.ndarray, affine: np.ndarray, shape: Sequence[int],
                fill: float = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop/pad ``array`` to ``shape``; the affine is shifted so voxels keep their world place.

    New voxel ``i`` is old voxel ``i + offset`` (offset < 0 where padded), so the new affine
    is ``affine @ T(offset)``.
    """
    offset = [(s - t) // 2 for s, t in zip(array.shape, shape)]
    out = np.full(tuple(shape), fill, dtype=array.dtype)
    src, dst = [], []
    for o, s, t in zip(offset, array.shape, shape):
        lo = max(o, 0)
        hi = min(o + t, s)
        src.append(slice(lo, hi))
        dst.append(slice(lo - o, hi - o))
    out[tuple(dst)] = array[tuple(src)]
    shift = np.eye(4)
    shift[:3, 3] = offset
    return out, np.asarray(affine, float) @ shift


def machine_info() -> dict[str, Any]:
    """CPU count and load (timings on a busy machine are slower; say so)."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    return info


def print_run_header(libraries: str) -> dict[str, Any]:
    """Print the command line, the machine, ``libraries`` (their versions) and a note when it is busy.

    Every benchmark starts its output this way, so that a figure can always be read
    against the load it was measured under. Returns :func:`machine_info` with the command.
    """
    import shlex
    import sys

    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    print(f"$ {command}")
    machine = {**machine_info(), "command": command}
    cpus = machine.get("cpu_affinity", machine["cpu_count"])
    print(f"machine: {machine.get('cpu', '?')}, {cpus} CPUs, load average {machine.get('loadavg_1_5_15')}; {libraries}")
    busy = machine.get("loadavg_1_5_15", [0])[0]
    if busy > 0.5 * (cpus or 1):
        print(f"note: the machine is busy (load {busy}); timings are slower than on an idle machine")
    sys.stdout.flush()
    return machine


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """An aligned text table; a row with one cell is a section title."""
    width = len(header)
    cells = [list(header)] + [list(r) + [""] * (width - len(r)) for r in rows if len(r) > 1]
    cols = [max(len(str(r[i])) for r in cells) for i in range(width)]
    line = "  ".join("-" * c for c in cols)
    out = ["  ".join(str(h).ljust(c) for h, c in zip(header, cols)), line]
    for r in rows:
        if len(r) == 1:
            out.append(str(r[0]))
            continue
        padded = list(r) + [""] * (width - len(r))
        out.append("  ".join([str(padded[0]).ljust(cols[0])] + [str(v).rjust(c) for v, c in zip(padded[1:], cols[1:])]))
    return "\n".join(out)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for the table; '-' for missing/NaN."""
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "-"
    return f"{v:.{digits}f}"


def clean_json(obj: Any) -> Any:
    """Strict-JSON-ready ``obj``: the package's sanitiser (``core.io.strict_json.plain``), paths as text.

    Benchmark results name their own temporary files and weight folders, so paths are kept
    here (unlike in the plugin's exports).
    """
    from napari_neuroreview.core.io.strict_json import plain

    return json.loads(json.dumps(plain(obj), default=str))
