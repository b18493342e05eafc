"""Hostile input for `neuroreview networks ...` (issue 8, bad-input classes 2, 3, 7, 9, 10, 11).

Every refusal: exit 2, one line on stderr naming the file or value, no output left
behind, every input byte-identical. Each test drives the CLI as a user does (``main``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.registry import default_registry_root

from networks_synthetic import make_synthetic_bold, save_bold
from prepost_tiny import install_tiny_model

K = "10"


def _snapshot(*paths: Path) -> dict[str, bytes]:
    """Every file under ``paths`` (files or folders) -> its bytes."""
    files: dict[str, bytes] = {}
    for path in paths:
        for f in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            files[str(f)] = f.read_bytes()
    return files


def _refused(argv: list[str], capsys, inputs: list[Path], outputs: list[Path] = ()) -> str:
    """Run ``argv``; assert exit 2, one line on stderr, no output, inputs unchanged; return the message."""
    before = _snapshot(*inputs)
    code = main(argv)
    err = "\n".join(line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning: "))
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("neuroreview") and "Traceback" not in err, err
    for out in outputs:
        assert not out.exists(), out
    assert _snapshot(*inputs) == before
    return err.removeprefix("neuroreview: ")


@pytest.fixture(autouse=True)
def registry(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    install_tiny_model(default_registry_root())
    return default_registry_root()


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, Path]:
    """pre/post BOLD files and their ICA folders (extracted once per module)."""
    root = tmp_path_factory.mktemp("scans")
    paths: dict[str, Path] = {}
    for state, seed in (("pre", 1), ("post", 2)):
        bold = root / f"{state}.nii.gz"
        save_bold(make_synthetic_bold(seed=seed), bold)
        ica = root / f"{state}_ica"
        assert main(["networks", "extract", str(bold), "--out", str(ica), "--n-components", K, "--quiet"]) == 0
        paths[state], paths[f"{state}_ica"] = bold, ica
    return paths


@pytest.fixture
def pre_ica(scans, tmp_path) -> Path:
    """A private copy of the pre ICA folder, free to damage."""
    folder = tmp_path / "pre_ica"
    shutil.copytree(scans["pre_ica"], folder)
    return folder


def _compare(pre: Path, post: Path, out: Path, *extra: str) -> list[str]:
    return ["networks", "compare", "--pre", str(pre), "--post", str(post), "--out", str(out),
            "--version", "0.1.0", "--device", "cpu", "--quiet", *extra]


def _edit_networks_json(folder: Path, edit) -> None:
    doc = json.loads((folder / "networks.json").read_text())
    edit(doc)
    (folder / "networks.json").write_text(json.dumps(doc))


def _zero_maps(folder: Path, components: list[int] | None = None) -> None:
    img = nib.load(str(folder / "components.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float32)
    data[..., components if components is not None else slice(None)] = 0.0
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(folder / "components.nii.gz"))


def _set_sign_zero(doc: dict) -> None:
    doc["networks"]["motor"]["sign"] = 0


# --------------------------------------------------------------------------- class 2


@pytest.mark.parametrize("defect", ["all maps zero", "sign 0", "assigned map zero", "score NaN"])
def test_match_and_compare_refuse_a_broken_ica_folder_with_one_sentence(scans, pre_ica, tmp_path, capsys,
                                                                         defect) -> None:
    """One validation of an ICA folder serves both commands: the same folder, the same sentence."""
    if defect == "all maps zero":
        _zero_maps(pre_ica)
    elif defect == "sign 0":
        _edit_networks_json(pre_ica, _set_sign_zero)
    elif defect == "assigned map zero":
        motor = json.loads((pre_ica / "networks.json").read_text())["networks"]["motor"]["component"]
        _zero_maps(pre_ica, [motor])
    else:
        text = (pre_ica / "networks.json").read_text()
        doc = json.loads(text)
        doc["networks"]["vision"]["score"] = float("nan")
        (pre_ica / "networks.json").write_text(json.dumps(doc))  # Python writes NaN; strict JSON has none
    out = tmp_path / "res.json"
    from_compare = _refused(_compare(pre_ica, scans["post_ica"], out), capsys, [pre_ica, scans["post_ica"]], [out])
    from_match = _refused(["networks", "match", str(pre_ica)], capsys, [pre_ica])
    assert from_compare == from_match
    assert str(pre_ica) in from_match


# --------------------------------------------------------------------------- class 3


def test_compare_never_writes_into_an_input_folder(scans, pre_ica, tmp_path, capsys) -> None:
    out = pre_ica / "networks.json"
    message = _refused(_compare(pre_ica, scans["post_ica"], out), capsys, [pre_ica, scans["post_ica"]])
    assert str(out) in message and "input" in message


def test_compare_never_overwrites_an_input_file(scans, tmp_path, capsys) -> None:
    bold = tmp_path / "pre.nii.gz"
    shutil.copy(scans["pre"], bold)
    message = _refused(_compare(bold, scans["post_ica"], bold), capsys, [bold, scans["post_ica"]])
    assert str(bold) in message


def test_extract_never_overwrites_its_input_in_the_out_folder(pre_ica, capsys) -> None:
    """The 4D components file is a valid BOLD-shaped input; --out its own folder would overwrite it."""
    bold = pre_ica / "components.nii.gz"
    message = _refused(["networks", "extract", str(bold), "--out", str(pre_ica), "--n-components", "5", "--quiet"],
                       capsys, [pre_ica])
    assert str(bold) in message and "input" in message


def _not_called(*_a, **_k):
    raise AssertionError("computed before the output was checked")


def test_evaluate_and_train_never_write_into_the_cohort(tmp_path, capsys, monkeypatch) -> None:
    from napari_neuroreview.core.tasks.networks import evaluate as evaluate_module
    from napari_neuroreview.core.tasks.networks import train as train_module

    monkeypatch.setattr(evaluate_module, "evaluate_cohort", _not_called)
    monkeypatch.setattr(train_module, "train_on_cohort", _not_called)
    cohort = tmp_path / "cohort"
    (cohort / "sub-001" / "ses-pre" / "ica").mkdir(parents=True)
    (cohort / "sub-001" / "ses-pre" / "ica" / "networks.json").write_text("{}")
    out = cohort / "sub-001" / "ses-pre" / "ica" / "networks.json"
    message = _refused(["networks", "evaluate", "--data", str(cohort), "--json", str(out), "--quiet"], capsys,
                       [cohort])
    assert "input folder" in message
    models = cohort / "models"
    message = _refused(["networks", "train", "--data", str(cohort), "--out", str(models), "--version", "9.0.0",
                        "--quiet"], capsys, [cohort], [models])
    assert "input folder" in message


# --------------------------------------------------------------------------- class 7


@pytest.mark.parametrize("where", ["missing folder", "wrong suffix", "a folder"])
def test_compare_refuses_a_bad_out_before_computing(scans, tmp_path, capsys, monkeypatch, where) -> None:
    from napari_neuroreview.core.tasks.networks import compare as compare_module

    def not_called(*_a, **_k):
        raise AssertionError("computed before the output was checked")

    monkeypatch.setattr(compare_module, "load_session", not_called)
    out = {"missing folder": tmp_path / "nowhere" / "res.json", "wrong suffix": tmp_path / "res.txt",
           "a folder": tmp_path / "res.json"}[where]
    if where == "a folder":
        out.mkdir()
    message = _refused(_compare(scans["pre_ica"], scans["post_ica"], out), capsys,
                       [scans["pre_ica"], scans["post_ica"]], [] if where == "a folder" else [out])
    assert out.name in message or out.parent.name in message
    if where == "a folder":
        assert out.is_dir() and not any(out.iterdir())


@pytest.mark.parametrize("option", ["--json", "--tsne"])
def test_evaluate_refuses_a_missing_folder_before_computing(tmp_path, capsys, monkeypatch, option) -> None:
    from napari_neuroreview.core.tasks.networks import evaluate as evaluate_module

    def not_called(*_a, **_k):
        raise AssertionError("computed before the output was checked")

    monkeypatch.setattr(evaluate_module, "evaluate_cohort", not_called)
    cohort = tmp_path / "cohort"
    (cohort / "sub-001" / "ses-pre").mkdir(parents=True)
    out = tmp_path / "nowhere" / ("cv.json" if option == "--json" else "tsne.png")
    message = _refused(["networks", "evaluate", "--data", str(cohort), option, str(out), "--quiet"], capsys,
                       [cohort], [out])
    assert "nowhere" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_compare_refuses_an_unwritable_folder(scans, tmp_path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        _refused(_compare(scans["pre_ica"], scans["post_ica"], locked / "res.json"), capsys,
                 [scans["pre_ica"], scans["post_ica"]], [locked / "res.json"])
    finally:
        locked.chmod(0o755)


def test_a_full_disk_is_one_sentence_and_leaves_nothing(scans, tmp_path, capsys, monkeypatch) -> None:
    import errno

    from napari_neuroreview.core.io import atomic

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    out = tmp_path / "res.json"
    message = _refused(_compare(scans["pre_ica"], scans["post_ica"], out), capsys,
                       [scans["pre_ica"], scans["post_ica"]], [out])
    assert "res.json" in message and "No space left" in message
    ica = tmp_path / "ica"
    message = _refused(["networks", "extract", str(scans["pre"]), "--out", str(ica), "--n-components", K, "--quiet"],
                       capsys, [scans["pre"]], [ica])
    assert str(ica) in message and "No space left" in message
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- class 9


def _bold_with_tr(src: Path, dst: Path, tr: float) -> Path:
    img = nib.load(str(src))
    header = img.header.copy()
    header["pixdim"][4] = tr
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, header), str(dst))
    return dst


@pytest.mark.parametrize("tr", [float("nan"), float("inf"), -2.0, 1e9, 0.01])
def test_extract_refuses_an_implausible_tr(scans, tmp_path, capsys, tr) -> None:
    bold = _bold_with_tr(scans["pre"], tmp_path / "bold.nii.gz", tr)
    out = tmp_path / "ica"
    message = _refused(["networks", "extract", str(bold), "--out", str(out), "--n-components", K, "--quiet"],
                       capsys, [bold], [out])
    assert "bold.nii.gz" in message and "repetition time" in message


@pytest.mark.parametrize("tr", ["nan", "-1", "1e9", "inf"])
def test_compare_refuses_an_implausible_tr_option(scans, tmp_path, capsys, tr) -> None:
    out = tmp_path / "res.json"
    message = _refused(_compare(scans["pre_ica"], scans["post_ica"], out, "--tr", tr), capsys,
                       [scans["pre_ica"], scans["post_ica"]], [out])
    assert "--tr" in message


def test_a_networks_json_with_an_implausible_tr_is_refused(scans, pre_ica, tmp_path, capsys) -> None:
    _edit_networks_json(pre_ica, lambda doc: doc.update(tr_s=-3.0))
    out = tmp_path / "res.json"
    message = _refused(_compare(pre_ica, scans["post_ica"], out), capsys, [pre_ica, scans["post_ica"]], [out])
    assert "networks.json" in message and "repetition time" in message


@pytest.mark.parametrize(("option", "value"), [("--smoothing", "nan"), ("--smoothing", "25"), ("--smoothing", "-1"),
                                               ("--smoothing", "1e6"), ("--n-components", "500")])
def test_extract_refuses_numbers_out_of_range_before_computing(scans, tmp_path, capsys, option, value) -> None:
    out = tmp_path / "ica"
    message = _refused(["networks", "extract", str(scans["pre"]), "--out", str(out), option, value, "--quiet"],
                       capsys, [scans["pre"]], [out])
    assert option in message and value in message


@pytest.mark.parametrize(("option", "value"), [("--n", "100000"), ("--n-volumes", "5000000"),
                                               ("--voxel-mm", "0.01"), ("--effect-size", "nan")])
def test_phantoms_refuse_numbers_out_of_range(tmp_path, capsys, option, value) -> None:
    out = tmp_path / "cohort"
    message = _refused(["networks", "phantoms", "--out", str(out), option, value, "--quiet"], capsys, [], [out])
    assert option in message


def test_compare_json_is_strict(scans, tmp_path, capsys) -> None:
    out = tmp_path / "res.json"
    assert main(_compare(scans["pre_ica"], scans["post_ica"], out)) == 0
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in res.json"))


# --------------------------------------------------------------------------- class 10


def test_no_absolute_path_goes_into_networks_json_or_the_compare_json(scans, tmp_path, capsys) -> None:
    patient = tmp_path / "Doe_Jane_1961"
    patient.mkdir()
    shutil.copy(scans["pre"], patient / "bold.nii.gz")
    ica = patient / "ica"
    assert main(["networks", "extract", str(patient / "bold.nii.gz"), "--out", str(ica), "--n-components", K,
                 "--quiet"]) == 0
    out = tmp_path / "res.json"
    assert main(_compare(ica, scans["post_ica"], out)) == 0
    for written in (ica / "networks.json", out):
        text = written.read_text()
        assert "Doe_Jane" not in text and str(tmp_path) not in text, written
    doc = json.loads((ica / "networks.json").read_text())
    assert doc["source"] == "bold.nii.gz" and len(doc["source_sha256"]) == 64
    res = json.loads(out.read_text())  # the scans named by folder name and voxel sha256
    assert (res["pre"], res["pre_sha256"]) == ("ica", doc["source_sha256"])
    assert res["post_sha256"] == json.loads((scans["post_ica"] / "networks.json").read_text())["source_sha256"]


# --------------------------------------------------------------------------- class 11


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"{not json", b"[1, 2, 3]", b'{"tr_s": NaN}',
                                     b'{"networks": {"motor": 3}}'])
def test_a_bad_networks_json_is_one_sentence_for_match_and_compare(scans, pre_ica, tmp_path, capsys,
                                                                    content) -> None:
    (pre_ica / "networks.json").write_bytes(content)
    out = tmp_path / "res.json"
    from_compare = _refused(_compare(pre_ica, scans["post_ica"], out), capsys, [pre_ica, scans["post_ica"]], [out])
    from_match = _refused(["networks", "match", str(pre_ica)], capsys, [pre_ica])
    assert from_compare == from_match
    assert str(pre_ica / "networks.json") in from_match
