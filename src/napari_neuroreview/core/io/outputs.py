"""Output paths checked before any work, and several outputs written together or not at all.

Why: a command that computes for minutes and then fails on its output (an unwritable
folder, a folder given as a file, a wrong suffix) wastes the user's time and, worse, an
output path that is also an input overwrites the user's scan. Every command and widget
that writes files calls :func:`check_outputs` first, with its inputs, before it computes;
and a command with several outputs (a det.json and its labels, an export's NIfTI + JSON +
TSV) writes them with :func:`write_together`, so a failure leaves none of them behind and
the previous files intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputPathError

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Output:
    """One output a command will write.

    Parameters
    ----------
    path : path-like
        Where it goes.
    suffixes : tuple of str
        Accepted endings (``(".nii.gz", ".nii")``); empty accepts any.
    what : str
        A few words for messages ("labels", "det.json").
    """

    path: PathLike
    suffixes: tuple[str, ...] = ()
    what: str = "output"


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_outputs(outputs: Iterable[Output], inputs: Iterable[PathLike | None] = (),
                  protected_folders: Iterable[PathLike] = ()) -> list[Path]:
    """Refuse, in one sentence, any output that cannot or must not be written.

    Checked before computing: not an input (same file, also through links), not inside a
    folder that holds inputs the command must not touch (``protected_folders``), not a
    folder, the right suffix, two outputs not the same file, the parent folder exists and
    is writable, and an existing file is writable.

    Returns
    -------
    list of Path
        The output paths, in order.

    Raises
    ------
    OutputPathError
        Naming the path and the problem; nothing has been written.
    """
    outs = [o for o in outputs if o.path is not None]
    ins = [Path(p) for p in inputs if p is not None]
    paths: list[Path] = []
    for out in outs:
        path = Path(out.path).expanduser()
        name = path.name
        if str(out.path).strip() == "" or name in ("", ".", ".."):
            raise OutputPathError(f"the {out.what} path {str(out.path)!r} names no file")
        for source in ins:
            if _same_file(path, source):
                raise OutputPathError(f"{path} is an input of this command; choose another {out.what} path "
                                      "(inputs are never overwritten)")
        for folder in protected_folders:
            if _is_inside(path, Path(folder)):
                raise OutputPathError(f"{path} is inside the input folder {folder}; write the {out.what} elsewhere "
                                      "(input folders are never written)")
        if path.is_dir():
            raise OutputPathError(f"{path} is a folder; give a file name for the {out.what}")
        if out.suffixes and not any(name.lower().endswith(s) for s in out.suffixes):
            raise OutputPathError(f"{path} must end in {' or '.join(out.suffixes)} (the {out.what})")
        for other in paths:
            if _same_file(path, other):
                raise OutputPathError(f"{path} is given for two outputs of this command")
        parent = path.parent if str(path.parent) != "" else Path(".")
        if not parent.is_dir():
            raise OutputPathError(f"the folder {parent} does not exist (for the {out.what} {name}); create it first")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputPathError(f"the folder {parent} is not writable (for the {out.what} {name})")
        if path.exists() and not os.access(path, os.W_OK):
            raise OutputPathError(f"{path} exists and is not writable")
        paths.append(path)
    return paths


def write_together(writes: Sequence[tuple[PathLike, Callable[[Path], object] | None]]) -> list[Path]:
    """Write several files so that either all of them land or none changes.

    Each ``write(tmp)`` fills a temporary file beside its target (same suffix, so
    libraries pick the format). Only when every one succeeded (and is on disk) are they
    moved onto their targets; should a move fail, the targets already replaced are put
    back from their previous contents. A ``None`` writer removes its target (a stale file
    of a previous export), undone the same way.

    Returns
    -------
    list of Path
        The targets written (not those removed), in order.

    Raises
    ------
    OutputPathError
        When the disk fails (full, gone, read-only since the check): the paths were
        checked before computing, so this is the user's disk, not a bug; nothing changed.
    """
    with disk_errors([t for t, _w in writes]):
        return _write_together(writes)


@contextlib.contextmanager
def disk_errors(targets: Sequence[PathLike]) -> Iterator[None]:
    """An OSError while writing ``targets`` becomes one OutputPathError naming them.

    Why: outputs are checked before computing, so an OSError while writing is the user's
    disk (full, gone, read-only since), not a bug. The message names the targets, not
    ``exc.filename``: that is a temporary or staging file the user never chose.
    """
    try:
        yield
    except OSError as exc:
        target = ", ".join(str(t) for t in targets)
        raise OutputPathError(f"{target} could not be written ({exc.strerror or exc}); nothing was written") from None


def _write_together(writes: Sequence[tuple[PathLike, Callable[[Path], object] | None]]) -> list[Path]:
    targets = [Path(t) for t, _w in writes]
    temps: list[Path | None] = []
    backups: list[tuple[Path, Path | None]] = []
    try:
        for target, (_t, write) in zip(targets, writes):
            if write is None:  # a removal: nothing to fill
                temps.append(None)
                continue
            suffix = "".join(target.suffixes) or ".tmp"
            fd, name = tempfile.mkstemp(prefix=f".{target.name.split('.')[0]}.", suffix=suffix, dir=target.parent)
            os.close(fd)
            tmp = Path(name)
            temps.append(tmp)
            write(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        for target, tmp in zip(targets, temps):
            backup: Path | None = None
            if target.exists():
                fd, name = tempfile.mkstemp(prefix=f".{target.name.split('.')[0]}.bak.", dir=target.parent)
                os.close(fd)
                backup = Path(name)
                os.replace(target, backup)
            backups.append((target, backup))
            if tmp is not None:
                os.replace(tmp, target)
    except BaseException:
        for target, backup in reversed(backups):  # undo the moves already made
            if backup is not None:
                os.replace(backup, target)
            elif target.exists():
                target.unlink()
        raise
    finally:
        for tmp in temps:
            if tmp is not None and tmp.exists():
                tmp.unlink()
    for _target, backup in backups:
        if backup is not None and backup.exists():
            backup.unlink()
    return [t for t, tmp in zip(targets, temps) if tmp is not None]
