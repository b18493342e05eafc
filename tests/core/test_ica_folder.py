"""ICA folders on disk: ours, FSL MELODIC's, a 4D map + TSV; atomic writes; clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.core.errors import GeometryError, InputFileError, OutputPathError
from napari_neuroreview.core.io.ica_folder import (
    ICAComponents,
    check_output_folder,
    load_ica,
    parse_component,
    read_timecourse_table,
)
from napari_neuroreview.core.tasks.networks.assignment_io import (
    load_networks_json,
    store_assignment,
    write_ica_folder,
)
from napari_neuroreview.core.tasks.networks.matching import Assignment, NetworkMatch

NETS = ("motor", "vision", "language", "frontal", "temporal")
AFFINE = np.array([[-3.0, 0, 0, 90], [0, 3.0, 0, -126], [0, 0, 3.0, -72], [0, 0, 0, 1]])


def _comps(k: int = 6, t: int = 30, seed: int = 0) -> ICAComponents:
    rng = np.random.default_rng(seed)
    maps = rng.standard_normal((8, 9, 7, k)).astype(np.float32)
    maps[0] = 0.0  # outside the brain
    return ICAComponents(maps=maps, affine=AFFINE.copy(), timecourses=rng.standard_normal((t, k)), tr_s=2.0,
                         source="/data/bold.nii.gz", kind="neuroreview")


def _assignment(k: int = 6) -> Assignment:
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 0.3, (5, k))
    signs = np.ones((5, k), dtype=np.int64)
    signs[2, 3] = -1
    matches = {n: NetworkMatch(n, i, float(scores[i, i]), 0.1, int(signs[i, i]), True, False) for i, n in enumerate(NETS)}
    return Assignment(matches=matches, scores=scores, signs=signs)


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))
    return path


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    comps, assignment = _comps(), _assignment()
    written = write_ica_folder(tmp_path / "ica", comps, assignment, {"source_sha256": "ab" * 32, "seed": 3})
    assert [p.name for p in written] == ["components.nii.gz", "timecourses.tsv", "networks.json"]
    assert sorted(p.name for p in (tmp_path / "ica").iterdir()) == sorted(p.name for p in written)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging folder removed
    back = load_ica(tmp_path / "ica")
    assert back.kind == "neuroreview" and back.tr_s == 2.0 and back.n_components == 6
    np.testing.assert_allclose(back.maps, comps.maps, atol=1e-6)
    np.testing.assert_allclose(back.affine, comps.affine)
    np.testing.assert_allclose(back.timecourses, comps.timecourses, rtol=1e-6, atol=1e-6)
    header = (tmp_path / "ica" / "timecourses.tsv").read_text().splitlines()[0]
    assert header.split("\t") == [f"IC{i:02d}" for i in range(1, 7)]
    doc = json.loads((tmp_path / "ica" / "networks.json").read_text())
    assert doc["source"] == "bold.nii.gz" and doc["source_sha256"] == "ab" * 32 and doc["seed"] == 3  # no path
    assert doc["n_components"] == 6 and doc["tr_s"] == 2.0 and doc["method"]
    assert set(doc["networks"]) == set(NETS)
    assert doc["networks"]["language"] == {**doc["networks"]["language"], "component": 2, "label": "IC03", "automatic": True}
    again = load_networks_json(tmp_path / "ica")
    assert again.matches == assignment.matches
    np.testing.assert_allclose(again.scores, assignment.scores, atol=1e-6)
    np.testing.assert_array_equal(again.signs, assignment.signs)


def test_override_round_trips_and_marks_manual(tmp_path: Path) -> None:
    assignment = _assignment().override("language", 3)
    match = assignment.matches["language"]
    assert match.component == 3 and match.automatic is False and match.sign == -1
    assert match.second_score == pytest.approx(float(np.delete(assignment.scores[2], 3).max()))
    assert assignment.matches["motor"].automatic is True
    write_ica_folder(tmp_path / "ica", _comps(), assignment, {})
    assert load_networks_json(tmp_path / "ica").matches["language"] == match


def test_melodic_folder_loads_and_missing_mix_is_one_sentence(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    mel = tmp_path / "rest.ica"
    mel.mkdir()
    _save(mel / "melodic_IC.nii.gz", rng.standard_normal((8, 9, 7, 5)).astype(np.float32))
    mix = rng.standard_normal((40, 5))
    (mel / "melodic_mix").write_text("\n".join("  ".join(f"{v:.6e}" for v in row) + "  " for row in mix) + "\n")
    comps = load_ica(mel)
    assert comps.kind == "melodic" and comps.maps.shape == (8, 9, 7, 5) and comps.tr_s is None
    np.testing.assert_allclose(comps.timecourses, mix, rtol=1e-6)
    assert load_ica(mel / "melodic_IC.nii.gz").kind == "melodic"  # the map file finds its mix
    (mel / "melodic_mix").unlink()
    with pytest.raises(InputFileError, match="no melodic_mix"):
        load_ica(mel)


def test_map_and_tsv_pair(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    maps = _save(tmp_path / "maps.nii.gz", rng.standard_normal((8, 9, 7, 4)).astype(np.float32))
    table = rng.standard_normal((25, 4))
    tsv = tmp_path / "tc.tsv"
    tsv.write_text("a\tb\tc\td\n" + "\n".join("\t".join(str(v) for v in row) for row in table))
    comps = load_ica(maps, tsv)
    assert comps.kind == "map+tsv" and comps.n_components == 4 and comps.n_volumes == 25
    np.testing.assert_allclose(comps.timecourses, table)
    csv = tmp_path / "tc.csv"
    csv.write_text("\n".join(",".join(str(v) for v in row) for row in table))  # no header, commas
    np.testing.assert_allclose(load_ica(maps, csv).timecourses, table)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("IC01\tIC02\n1\t2\n3\tx\n", r"line 3, column 2 is 'x', not a number"),
        ("1\t2\n3\tnan\n", r"line 2, column 2 is 'nan'"),
        ("1\t2\n3\n", r"line 2 has 1 cells"),
        ("IC01\tIC02\n", r"no time points"),
        ("\n\n", r"is empty"),
    ],
)
def test_bad_tables_are_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tc.tsv"
    path.write_text(text)
    with pytest.raises(InputFileError, match=message) as info:
        read_timecourse_table(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_bad_pairs_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    three_d = _save(tmp_path / "one.nii.gz", rng.standard_normal((8, 9, 7)).astype(np.float32))
    four_d = _save(tmp_path / "maps.nii.gz", rng.standard_normal((8, 9, 7, 4)).astype(np.float32))
    good = tmp_path / "tc.tsv"
    good.write_text("\n".join("\t".join("0.5" for _ in range(4)) for _ in range(20)))
    with pytest.raises(InputFileError, match="is a 3D image; component maps must be 4D"):
        load_ica(three_d, good)
    wrong_k = tmp_path / "k3.tsv"
    wrong_k.write_text("\n".join("\t".join("0.5" for _ in range(3)) for _ in range(20)))
    with pytest.raises(GeometryError, match="holds 4 component maps but k3.tsv has 3"):
        load_ica(four_d, wrong_k)
    short = tmp_path / "short.tsv"
    short.write_text("\n".join("\t".join("0.5" for _ in range(4)) for _ in range(3)))
    with pytest.raises(InputFileError, match="3 time points for 4 components"):
        load_ica(four_d, short)
    with pytest.raises(InputFileError, match="needs its time courses"):
        load_ica(four_d)
    with pytest.raises(InputFileError, match="neither a neuroreview ICA folder"):
        load_ica(tmp_path)
    with pytest.raises(InputFileError, match="does not exist"):
        load_ica(tmp_path / "nope")


def test_nan_map_voxels_are_zeroed_with_a_warning(tmp_path: Path) -> None:
    maps = np.ones((8, 9, 7, 4), np.float32)
    maps[0, 0, 0, :] = np.nan
    path = _save(tmp_path / "maps.nii.gz", maps)
    tsv = tmp_path / "tc.tsv"
    tsv.write_text("\n".join("\t".join("0.5" for _ in range(4)) for _ in range(20)))
    comps = load_ica(path, tsv)
    assert np.all(np.isfinite(comps.maps)) and comps.maps[0, 0, 0, 0] == 0
    assert any("NaN" in w for w in comps.warnings)


def test_write_refuses_a_foreign_folder_and_writes_nothing(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "t1.nii.gz").write_bytes(b"precious")
    with pytest.raises(OutputPathError, match="not ICA output"):
        write_ica_folder(scans, _comps(), _assignment(), {})
    assert sorted(p.name for p in scans.iterdir()) == ["t1.nii.gz"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(OutputPathError, match="is a file"):
        check_output_folder(afile)


def test_rewrite_is_whole_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ica"
    write_ica_folder(out, _comps(seed=0), _assignment(), {})
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_dumps(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("napari_neuroreview.core.io.strict_json.json.dumps", broken_dumps)
    with pytest.raises(OSError, match="disk full"):
        write_ica_folder(out, _comps(seed=1), _assignment(), {})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_parse_component_labels_and_indices() -> None:
    assert parse_component("IC03", 10) == 2
    assert parse_component("ic10", 10) == 9
    assert parse_component("2", 10) == 2
    with pytest.raises(InputFileError, match="does not exist"):
        parse_component("IC11", 10)
    with pytest.raises(InputFileError, match="not a component"):
        parse_component("motor", 10)


def test_networks_json_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        load_networks_json(tmp_path)
    (tmp_path / "networks.json").write_text("{not json")
    with pytest.raises(InputFileError, match="not valid JSON"):
        load_networks_json(tmp_path)
    (tmp_path / "networks.json").write_text(json.dumps({"networks": {}}))
    with pytest.raises(InputFileError, match="not a valid networks.json"):
        load_networks_json(tmp_path)


def test_store_assignment_keeps_provenance(tmp_path: Path) -> None:
    out = tmp_path / "ica"
    write_ica_folder(out, _comps(), _assignment(), {"source_sha256": "cd" * 32, "seed": 7})
    store_assignment(out, _assignment().override("motor", 5), _comps())
    doc = json.loads((out / "networks.json").read_text())
    assert doc["source_sha256"] == "cd" * 32 and doc["seed"] == 7
    assert doc["networks"]["motor"]["component"] == 5 and doc["networks"]["motor"]["automatic"] is False
    bare = tmp_path / "melodic"
    bare.mkdir()
    store_assignment(bare, _assignment(), _comps())
    assert json.loads((bare / "networks.json").read_text())["source"] == "bold.nii.gz"  # a name, never a path
    with pytest.raises(GeometryError, match="for 6 components but the maps have 4"):
        store_assignment(bare, _assignment(), _comps(k=4))


def test_core_io_never_imports_a_task() -> None:
    """core.io is below the tasks: networks.json's assignment is read and written by the networks task."""
    import ast

    import napari_neuroreview.core.io as io_package

    offenders = []
    for path in sorted(Path(io_package.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and "tasks" in (node.module or "").split("."):
                offenders.append(f"{path.name}: from {'.' * node.level}{node.module}")
            if isinstance(node, ast.Import):
                offenders += [f"{path.name}: import {a.name}" for a in node.names if ".tasks" in a.name]
    assert offenders == []
