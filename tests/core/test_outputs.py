"""Output checks before any work, and outputs written together or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_neuroreview.core.errors import OutputPathError
from napari_neuroreview.core.io.outputs import Output, check_outputs, write_together


def test_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"x")
    link = tmp_path / "link.nii.gz"
    link.symlink_to(scan)
    for out in (scan, link, tmp_path / "." / "scan.nii.gz"):
        with pytest.raises(OutputPathError, match="is an input"):
            check_outputs([Output(out, (".nii.gz",), "mask")], [scan])
    assert scan.read_bytes() == b"x"


@pytest.mark.parametrize("name, message", [
    ("missing/out.json", "does not exist"), ("folder", "is a folder"), ("out.txt", "must end in"), ("", "names no file"),
])
def test_bad_output_paths(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "folder").mkdir()
    path = tmp_path / name if name else ""
    with pytest.raises(OutputPathError, match=message):
        check_outputs([Output(path, (".json",), "det.json")])


def test_two_outputs_same_file_and_protected_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="two outputs"):
        check_outputs([Output(tmp_path / "a.json"), Output(tmp_path / "a.json")])
    with pytest.raises(OutputPathError, match="inside the input folder"):
        check_outputs([Output(tmp_path / "ica" / "networks.json")], protected_folders=[tmp_path / "ica"])


def test_write_together_all_or_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.nii.gz"
    a.write_text("old a")

    def fail(tmp: Path) -> None:
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(OutputPathError, match="No space left on device"):
        write_together([(a, lambda tmp: tmp.write_text("new a")), (b, fail)])
    assert a.read_text() == "old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no temporary left behind
    write_together([(a, lambda tmp: tmp.write_text("new a")), (b, lambda tmp: tmp.write_text("b"))])
    assert a.read_text() == "new a" and b.read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.nii.gz"]


def test_write_together_removes_a_stale_file_only_when_every_write_lands(tmp_path: Path) -> None:
    """A ``None`` writer removes its target, with the others or not at all."""
    stale, a = tmp_path / "old_seg.dcm", tmp_path / "a.json"
    stale.write_text("old seg")

    def fail(tmp: Path) -> None:
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(OutputPathError):
        write_together([(stale, None), (a, fail)])
    assert stale.read_text() == "old seg" and not a.exists()
    assert write_together([(stale, None), (a, lambda tmp: tmp.write_text("a"))]) == [a]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
