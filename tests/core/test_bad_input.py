"""Bad input and faults (issue 8), one parametrised case per class, through ``cli.main``.

Each case asserts the house rule: exit 2, ONE line on stderr naming the file or value
and the problem (no traceback), no output path exists afterwards, and every input is
byte-identical. The decompression bombs also assert that memory stays small.
"""

from __future__ import annotations

import errno
import gzip
import json
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview import cli
from napari_neuroreview.cli import main
from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.tasks.cmb.evaluate import truth_labels
from napari_neuroreview.core.tasks.cmb.io import read_detections

from cmb_synthetic import synthetic_swi

GiB = 1 << 30


# --------------------------------------------------------------------------- builders


def _gzip_zeros(path: Path, head: bytes, zero_bytes: int) -> Path:
    """A gzip file holding ``head`` then ``zero_bytes`` zeros, written without allocating them.

    After a full flush deflate starts afresh, so the compressed form of 1 MiB of zeros is
    the same bytes every time: the file is built by repeating it (about 1 KB per MiB).
    """
    block = 1 << 20
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc = zlib.crc32(head)
    zeros = bytes(block)
    with open(path, "wb") as out:
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        out.write(comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH))
        piece = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
        zeros_crc = crc
        for _ in range(zero_bytes // block):
            out.write(piece)
            zeros_crc = zlib.crc32(zeros, zeros_crc)
        out.write(comp.flush(zlib.Z_FINISH))
        out.write((zeros_crc & 0xFFFFFFFF).to_bytes(4, "little"))
        out.write(((len(head) + zero_bytes) & 0xFFFFFFFF).to_bytes(4, "little"))
    return path


def _nifti_header(shape: tuple[int, ...], dtype: type = np.int16, affine: np.ndarray | None = None) -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    header.set_sform(np.eye(4) if affine is None else affine, code=1)
    header.set_qform(np.eye(4) if affine is None else affine, code=1)
    header["vox_offset"] = 352
    return header


def _raw_nifti(path: Path, header: nib.Nifti1Header, data: np.ndarray) -> Path:
    """Header fields exactly as set (nibabel's writer would recompute scaling and pixdim)."""
    blob = header.binaryblock + b"\x00" * 4 + np.asarray(data, header.get_data_dtype()).tobytes(order="F")
    path.write_bytes(gzip.compress(blob, mtime=0) if path.name.endswith(".gz") else blob)
    return path


def _nifti_bomb(path: Path) -> Path:
    """1 GiB of int16 zeros claimed by the header, and really in the stream: ~1 MB on disk."""
    header = _nifti_header((1024, 1024, 512))
    return _gzip_zeros(path, header.binaryblock + b"\x00" * 4, GiB)


def _stream_bomb(path: Path) -> Path:
    """A header promising 64^3 int16 (0.5 MiB) over a stream that inflates to 256 MiB."""
    header = _nifti_header((64, 64, 64))
    return _gzip_zeros(path, header.binaryblock + b"\x00" * 4, 256 << 20)


def _mgz_bomb(path: Path) -> Path:
    header = nib.freesurfer.mghformat.MGHHeader()
    header.set_data_dtype(np.int16)
    header.set_data_shape((1024, 1024, 512))
    head = header.binaryblock
    return _gzip_zeros(path, head + b"\x00" * (284 - len(head)), GiB)


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, Path]:
    """A small synthetic SWI (64 x 72 x 40 at 0.9 x 0.9 x 1.8 mm) and a case folder."""
    root = tmp_path_factory.mktemp("scans")
    volume, truth = synthetic_swi(seed=3)
    swi = root / "swi.nii.gz"
    nib.save(nib.Nifti1Image(volume.data, volume.affine), str(swi))
    case = root / "data" / "case1"
    case.mkdir(parents=True)
    nib.save(nib.Nifti1Image(volume.data, volume.affine), str(case / "swi.nii.gz"))
    halves = truth.astype(np.float32) - np.float32(0.5) * (truth > 0)  # ids 0.5, 1.5, ...: not integers
    nib.save(nib.Nifti1Image(halves, volume.affine), str(case / "truth_instances.nii.gz"))
    return {"swi": swi, "affine": volume.affine, "data": case.parent}  # type: ignore[dict-item]


@dataclass
class Case:
    argv: list[str]
    outputs: list[Path]
    inputs: list[Path]
    words: str
    env: dict[str, str] = field(default_factory=dict)


def _image(tmp: Path, name: str, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path = tmp / name
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _detect(scan: Path, out: Path, *extra: str) -> list[str]:
    return ["cmb", "detect", str(scan), "--out", str(out), "--device", "cpu", "--quiet", *extra]


def _flipped_qform(tmp: Path) -> Path:
    header = _nifti_header((20, 20, 20), np.float32)
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = 19.0
    header.set_qform(flipped, code=1)
    return _raw_nifti(tmp / "flipped.nii.gz", header, np.random.default_rng(0).random((20, 20, 20)))


def _zero_pixdim_qform(tmp: Path) -> Path:
    header = _nifti_header((20, 20, 20), np.float32)
    header.set_sform(np.eye(4), code=0)
    header["pixdim"][1:4] = 0.0
    return _raw_nifti(tmp / "nopixdim.nii.gz", header, np.random.default_rng(0).random((20, 20, 20)))


def _huge_slope(tmp: Path) -> Path:
    header = _nifti_header((20, 20, 20), np.int16)
    header["scl_slope"], header["scl_inter"] = 1e38, 0.0
    return _raw_nifti(tmp / "slope.nii.gz", header, np.arange(8000).reshape(20, 20, 20) % 1000)


def _cases(tmp: Path, s: dict[str, Path]) -> dict[str, Callable[[], Case]]:
    swi, det, lab = s["swi"], tmp / "det.json", tmp / "lab.nii.gz"
    rng = np.random.default_rng(1)
    return {
        # 1: decompression bombs, refused from the header or while inflating
        "1 bomb info": lambda: Case(["info", str(b := _nifti_bomb(tmp / "bomb.nii.gz"))], [], [b], "voxels"),
        "1 bomb mask": lambda: Case(["mask", str(b := _nifti_bomb(tmp / "bomb.nii.gz")), "--out", str(tmp / "m.nii.gz"),
                                     "--quiet"], [tmp / "m.nii.gz"], [b], "voxels"),
        "1 bomb detect": lambda: Case(_detect(b := _nifti_bomb(tmp / "bomb.nii.gz"), det), [det], [b], "voxels"),
        "1 bomb mgz": lambda: Case(["info", str(b := _mgz_bomb(tmp / "bomb.mgz"))], [], [b], "voxels"),
        "1 stream beyond header": lambda: Case(["info", str(b := _stream_bomb(tmp / "lies.nii.gz"))], [], [b],
                                               "inflates to more"),
        # 3: outputs that are inputs
        "3 mask out is the scan": lambda: Case(["mask", str(swi), "--out", str(swi), "--quiet"], [], [swi], "is an input"),
        "3 detect labels is the scan": lambda: Case(_detect(swi, det, "--labels", str(swi)), [det], [swi], "is an input"),
        # 5: sform / qform
        "5 qform flips left-right": lambda: Case(["info", str(f := _flipped_qform(tmp))], [], [f], "left and right"),
        "5 qform-only pixdim 0": lambda: Case(["info", str(f := _zero_pixdim_qform(tmp))], [], [f], "pixdim"),
        # 7: outputs that cannot be written, found before any work
        "7 out is a folder": lambda: Case(["mask", str(swi), "--out", str(tmp), "--quiet"], [], [swi], "is a folder"),
        "7 out has the wrong suffix": lambda: Case(["mask", str(swi), "--out", str(tmp / "m.txt"), "--quiet"],
                                                   [tmp / "m.txt"], [swi], "must end in"),
        "7 json into a missing folder": lambda: Case(
            ["cmb", "evaluate", "--data", str(s["data"]), "--json", str(tmp / "no" / "m.json"), "--quiet"],
            [tmp / "no" / "m.json"], [s["data"] / "case1" / "swi.nii.gz"], "does not exist"),
        "7 labels into a missing folder": lambda: Case(_detect(swi, det, "--labels", str(tmp / "no" / "l.nii.gz")),
                                                       [det, tmp / "no" / "l.nii.gz"], [swi], "does not exist"),
        # 9: invalid numbers
        "9 scale factor 1e38": lambda: Case(["info", str(f := _huge_slope(tmp))], [], [f], "scale factor"),
        "9 threshold nan": lambda: Case(_detect(swi, det, "--threshold", "nan"), [det], [swi], "'nan'"),
        "9 threshold -1": lambda: Case(_detect(swi, det, "--threshold", "-1"), [det], [swi], "'-1'"),
        "9 threshold 2": lambda: Case(_detect(swi, det, "--threshold", "2"), [det], [swi], "'2'"),
        # 15: degenerate scans
        "15 constant detect": lambda: Case(_detect(c := _image(tmp, "c.nii.gz", np.full((40, 40, 40), 7, np.float32)), det),
                                           [det], [c], "constant"),
        "15 constant mask": lambda: Case(["mask", str(c := _image(tmp, "c.nii.gz", np.full((40, 40, 40), 7, np.float32))),
                                          "--out", str(tmp / "m.nii.gz"), "--quiet"], [tmp / "m.nii.gz"], [c], "constant"),
        "15 one slice detect": lambda: Case(_detect(o := _image(tmp, "o.nii.gz", rng.random((60, 60, 1), np.float32)),
                                                    det, "--labels", str(lab)), [det, lab], [o], "1 slice"),
        "15 2x2x2 detect": lambda: Case(_detect(t := _image(tmp, "t.nii.gz", rng.random((2, 2, 2), np.float32)), det),
                                        [det], [t], "2 slices"),
        # 16: non-integer truth labels
        "16 non-integer truth": lambda: Case(
            ["cmb", "evaluate", "--data", str(s["data"]), "--json", str(tmp / "m.json"), "--device", "cpu", "--quiet"],
            [tmp / "m.json"], [s["data"] / "case1" / "truth_instances.nii.gz"], "integers"),
    }


CASES = [
    "1 bomb info", "1 bomb mask", "1 bomb detect", "1 bomb mgz", "1 stream beyond header",
    "3 mask out is the scan", "3 detect labels is the scan",
    "5 qform flips left-right", "5 qform-only pixdim 0",
    "7 out is a folder", "7 out has the wrong suffix", "7 json into a missing folder", "7 labels into a missing folder",
    "9 scale factor 1e38", "9 threshold nan", "9 threshold -1", "9 threshold 2",
    "15 constant detect", "15 constant mask", "15 one slice detect", "15 2x2x2 detect",
    "16 non-integer truth",
]


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    """An empty user data folder, so only the shipped weights are installed."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path


def _assert_refused(code: int, err: str, words: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and words in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(name, scans, user_dirs, capsys) -> None:
    work = user_dirs / "work"
    work.mkdir()
    case = _cases(work, scans)[name]()
    before = {p: p.read_bytes() for p in case.inputs}
    listing = sorted(p.name for p in work.iterdir())
    tracemalloc.start()
    code = main(case.argv)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    _assert_refused(code, capsys.readouterr().err, case.words)
    for out in case.outputs:
        assert not out.exists(), out
    assert sorted(p.name for p in work.iterdir()) == listing  # no temporary file left either
    assert {p: p.read_bytes() for p in case.inputs} == before
    if name.startswith("1 "):
        assert peak < 64 * 2**20, f"{name}: {peak / 2**20:.0f} MiB allocated for a bomb"


# --------------------------------------------------------------------------- faults on output (7, 8)


def test_full_disk_while_writing_labels_leaves_no_det_json(scans, user_dirs, monkeypatch, capsys) -> None:
    """Class 8 and 7: the labels fail (ENOSPC) after det.json was written: neither remains."""
    det, lab = user_dirs / "det.json", user_dirs / "lab.nii.gz"
    det.write_text("previous run\n")
    real_save = nib.save

    def full_disk(img, filename, *args, **kwargs):
        real_save(img, filename, *args, **kwargs)  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))

    monkeypatch.setattr(nib, "save", full_disk)
    code = main(_detect(scans["swi"], det, "--labels", str(lab)))
    line = _assert_refused(code, capsys.readouterr().err, "No space left on device")
    assert "could not be written" in line
    assert det.read_text() == "previous run\n" and not lab.exists()
    assert sorted(p.name for p in user_dirs.iterdir() if p.name != "xdg") == ["det.json"]


def test_broken_pipe_is_quiet(scans, monkeypatch, capsys) -> None:
    """``neuroreview info scan | head -1``: no traceback when the reader goes away."""
    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["info", str(scans["swi"])]) == cli.EXIT_BROKEN_PIPE
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------------- class 10: no paths in exports


def test_det_json_holds_the_file_name_not_the_path(scans, user_dirs, capsys) -> None:
    patient = user_dirs / "Doe_Jane_1950"
    patient.mkdir()
    scan = patient / "swi.nii.gz"
    scan.write_bytes(scans["swi"].read_bytes())
    det = user_dirs / "det.json"
    assert main(_detect(scan, det)) == 0
    text = det.read_text()
    doc = json.loads(text)
    assert doc["image"] == "swi.nii.gz" and "image_path" not in doc
    assert "Doe_Jane" not in text and str(user_dirs) not in text
    assert read_detections(det, expected_sha256=doc["image_sha256"])["image_sha256"] == doc["image_sha256"]
    assert main(_detect(scan, det, "--with-paths")) == 0
    assert json.loads(det.read_text())["image_path"] == str(scan)


# --------------------------------------------------------------------------- class 17: malformed det.json


def _det_doc() -> dict:
    return {"image": "swi.nii.gz", "image_sha256": "a" * 64, "model": {"name": "cmb-detector", "version": "1.0.0"},
            "threshold": 0.5, "detections": [{"id": 1, "world_ras_mm": [1.0, 2.0, 3.0], "voxel_ijk": [4, 5, 6],
                                              "score": 0.9, "volume_mm3": 2.0}]}


def _broken(edit: Callable[[dict], object]) -> dict:
    doc = _det_doc()
    edit(doc)
    return doc


MALFORMED = {
    "detections not a list": (_broken(lambda d: d.update(detections={"1": 2})), "detections"),
    "detections missing": (_broken(lambda d: d.pop("detections")), "detections"),
    "position is a string": (_broken(lambda d: d["detections"][0].update(world_ras_mm="1,2,3")), "world_ras_mm"),
    "position has 2 numbers": (_broken(lambda d: d["detections"][0].update(voxel_ijk=[1, 2])), "voxel_ijk"),
    "score missing": (_broken(lambda d: d["detections"][0].pop("score")), "score"),
    "score is a string": (_broken(lambda d: d["detections"][0].update(score="high")), "score"),
    "score above 1": (_broken(lambda d: d["detections"][0].update(score=7)), "score"),
    "id is a float": (_broken(lambda d: d["detections"][0].update(id=1.5)), "id"),
    "detection is a number": (_broken(lambda d: d.update(detections=[3])), "detections[0]"),
    "wrong sha": (_broken(lambda d: d.update(image_sha256="xyz")), "image_sha256"),
    "model not an object": (_broken(lambda d: d.update(model="v1")), "model"),
    "model missing": (_broken(lambda d: d.pop("model")), "model is missing"),
    "huge list": (_broken(lambda d: d.update(detections=[d["detections"][0]] * 100_001)), "detections"),
}


@pytest.mark.parametrize("name", [*MALFORMED, "NaN score", "not UTF-8", "a list"])
def test_malformed_det_json_is_one_sentence_naming_the_field(tmp_path, name) -> None:
    path = tmp_path / "det.json"
    if name == "NaN score":
        path.write_text(json.dumps(_det_doc()).replace("0.9", "NaN"))
        words = "NaN"
    elif name == "not UTF-8":
        path.write_bytes(b"\xff\xfe{" + b"\x00" * 10)
        words = "not a microbleed detection file"
    elif name == "a list":
        path.write_text("[1, 2]")
        words = "JSON object"
    else:
        doc, words = MALFORMED[name]
        path.write_text(json.dumps(doc))
    with pytest.raises(InputFileError) as info:
        read_detections(path, expected_sha256="a" * 64)
    message = str(info.value)
    assert str(path) in message and words in message and "\n" not in message


# --------------------------------------------------------------------------- class 16: sparse ids


def test_truth_labels_are_relabelled_not_allocated_per_value() -> None:
    data = np.zeros((20, 20, 20), np.float32)
    data[2, 2, 2], data[10, 10, 10], data[15, 3, 4] = 1e6, 7, 4e9
    tracemalloc.start()
    labels = truth_labels(data, "truth.nii.gz")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2, 3]
    assert labels[10, 10, 10] == 1 and labels[2, 2, 2] == 2 and labels[15, 3, 4] == 3
    assert peak < 8 * 2**20


# --------------------------------------------------------------------------- item 6: view


def test_view_missing_file_is_one_sentence_before_napari(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr("napari_neuroreview.viewer.open_viewer", _must_not_start, raising=False)
    code = main(["view", str(tmp_path / "missing.nii.gz")])
    _assert_refused(code, capsys.readouterr().err, "does not exist")


def test_view_without_a_display_says_use_xvfb(tmp_path, monkeypatch, capsys) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setattr("napari_neuroreview.viewer.open_viewer", _must_not_start, raising=False)
    code = main(["view", "--sample", "cmb"])
    line = _assert_refused(code, capsys.readouterr().err, "needs a display")
    assert "xvfb-run" in line


def _must_not_start(*args, **kwargs):
    raise AssertionError("napari was started")


# --------------------------------------------------------------------------- class 9: strict JSON


def test_strict_json_writes_null_for_nan_and_refuses_to_read_nan() -> None:
    from napari_neuroreview.core.io import strict_json

    text = strict_json.dumps({"precision": float("nan"), "n": np.int64(3), "xs": np.array([1.5, np.inf])})
    assert json.loads(text) == {"precision": None, "n": 3, "xs": [1.5, None]}
    with pytest.raises(ValueError, match="NaN"):
        strict_json.loads('{"score": NaN}')


# --------------------------------------------------------------------------- class 15: an empty result is said


def test_detect_with_nothing_above_threshold_says_so(scans, user_dirs, capsys) -> None:
    det = user_dirs / "det.json"
    assert main(_detect(scans["swi"], det, "--threshold", "1")) == 0
    captured = capsys.readouterr()
    assert json.loads(det.read_text())["detections"] == []
    assert "no microbleed scored at least 1.000" in captured.err and "candidate" in captured.err
