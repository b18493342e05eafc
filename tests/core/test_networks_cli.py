"""`neuroreview networks extract / match` as a user runs them: the folder contract, overrides, refusals."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core.anatomy import atlas
from napari_neuroreview.core.io.ica_folder import load_ica
from napari_neuroreview.core.io.nifti import load_volume
from napari_neuroreview.core.tasks.networks.assignment_io import load_networks_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from networks_synthetic import make_synthetic_bold, save_bold  # noqa: E402

K = "10"


@pytest.fixture(scope="module")
def bold_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scan") / "bold.nii.gz"
    save_bold(make_synthetic_bold(seed=5, n_volumes=60, noise=0.003), path)
    return path


@pytest.fixture(scope="module")
def extracted(bold_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "ica"
    assert main(["networks", "extract", str(bold_file), "--out", str(out), "--n-components", K, "--quiet"]) == 0
    return out


def test_extract_writes_the_contract(bold_file, extracted, capsys) -> None:
    assert sorted(p.name for p in extracted.iterdir()) == ["components.nii.gz", "networks.json", "timecourses.tsv"]
    bold = load_volume(bold_file)
    img = nib.load(str(extracted / "components.nii.gz"))
    assert img.shape == (*bold.spatial_shape, 10)
    np.testing.assert_allclose(img.affine, bold.affine, atol=1e-5)
    rows = (extracted / "timecourses.tsv").read_text().splitlines()
    assert rows[0].split("\t") == [f"IC{i:02d}" for i in range(1, 11)] and len(rows) == 61
    doc = json.loads((extracted / "networks.json").read_text())
    assert doc["source"] == bold_file.name and doc["source_sha256"] == bold.sha256  # a name, never a path
    assert doc["tr_s"] == 2.0 and doc["n_components"] == 10 and doc["seed"] == 0 and "FastICA" in doc["method"]
    assert doc["fastica_iterations"] >= 1 and doc["mask_voxels"] > 1000 and doc["smoothing_fwhm_mm"] == 6.0
    assert list(doc["networks"]) == list(atlas.NETWORKS)
    for entry in doc["networks"].values():
        assert entry["automatic"] is True and 0 <= entry["component"] < 10 and 0 <= entry["score"] <= 1
        assert entry["label"] == f"IC{entry['component'] + 1:02d}" and isinstance(entry["confident"], bool)
    assert len({e["component"] for e in doc["networks"].values()}) == 5
    comps = load_ica(extracted)
    assert comps.kind == "neuroreview" and comps.tr_s == 2.0 and comps.n_volumes == 60


def test_match_stores_an_override_and_auto_restores(extracted, tmp_path, capsys) -> None:
    folder = tmp_path / "ica"
    shutil.copytree(extracted, folder)
    before = load_networks_json(folder)
    target = next(k for k in range(10) if k != before.matches["motor"].component)
    assert main(["networks", "match", str(folder), "--set", f"motor=IC{target + 1:02d}"]) == 0
    after = load_networks_json(folder)
    assert after.matches["motor"].component == target and after.matches["motor"].automatic is False
    assert {n: after.matches[n] for n in atlas.NETWORKS[1:]} == {n: before.matches[n] for n in atlas.NETWORKS[1:]}
    doc = json.loads((folder / "networks.json").read_text())
    assert doc["source_sha256"] and doc["seed"] == 0  # provenance kept
    printed = json.loads(capsys.readouterr().out)
    assert printed["networks"]["motor"]["component"] == f"IC{target + 1:02d}"
    assert main(["networks", "match", str(folder), "--set", "motor=auto"]) == 0
    assert load_networks_json(folder).matches["motor"] == before.matches["motor"]


@pytest.mark.parametrize(("setting", "message"), [("motor=IC11", "does not exist"), ("hearing=IC01", "NETWORK one of"),
                                                  ("motor", "NETWORK=COMPONENT"), ("motor=left", "not a component")])
def test_match_refuses_bad_overrides_without_writing(extracted, tmp_path, capsys, setting, message) -> None:
    folder = tmp_path / "ica"
    shutil.copytree(extracted, folder)
    before = (folder / "networks.json").read_bytes()
    assert main(["networks", "match", str(folder), "--set", "vision=IC01", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert (folder / "networks.json").read_bytes() == before


def test_match_a_melodic_folder(extracted, tmp_path) -> None:
    comps = load_ica(extracted)
    mel = tmp_path / "rest.ica"
    mel.mkdir()
    nib.save(nib.Nifti1Image(-comps.maps, comps.affine), str(mel / "melodic_IC.nii.gz"))  # MELODIC may flip signs
    np.savetxt(mel / "melodic_mix", -comps.timecourses, fmt="%.6e", delimiter="  ")
    assert main(["networks", "match", str(mel)]) == 0
    ours, theirs = load_networks_json(extracted), load_networks_json(mel)
    for name in atlas.NETWORKS:
        assert theirs.matches[name].component == ours.matches[name].component
        assert theirs.matches[name].sign == -ours.matches[name].sign
    (mel / "melodic_mix").unlink()
    assert main(["networks", "match", str(mel)]) == 2


def test_extract_refuses_bad_input_and_writes_nothing(bold_file, tmp_path, capsys) -> None:
    data = np.asarray(nib.load(str(bold_file)).dataobj)
    affine = nib.load(str(bold_file)).affine
    three_d = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(data[..., 0], affine), str(three_d))
    short = tmp_path / "short.nii.gz"
    nib.save(nib.Nifti1Image(data[..., :8], affine), str(short))
    cases = [
        ([str(three_d)], "is a 3D image"),
        ([str(short)], "has 8 volumes, too few for 10 components"),
        ([str(bold_file), "--n-components", "3"], "between 5 and 100"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        argv = ["networks", "extract", *args, "--out", str(out), "--quiet"]
        if "--n-components" not in args:
            argv += ["--n-components", K]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "notes.txt").write_text("keep")
    assert main(["networks", "extract", str(bold_file), "--out", str(scans), "--quiet"]) == 2
    assert "not ICA output" in capsys.readouterr().err and [p.name for p in scans.iterdir()] == ["notes.txt"]
    assert main(["networks", "extract", "--quiet"]) == 2
    assert main(["networks", "extract", "--cohort", str(tmp_path / "empty"), "--quiet"]) == 2


def test_extract_cohort_fills_only_missing_sessions(bold_file, extracted, tmp_path, capsys) -> None:
    cohort = tmp_path / "cohort"
    for ses in ("ses-pre", "ses-post"):
        (cohort / "sub-001" / ses).mkdir(parents=True)
        shutil.copy(bold_file, cohort / "sub-001" / ses / "bold.nii.gz")
    shutil.copytree(extracted, cohort / "sub-001" / "ses-pre" / "ica")
    done_before = (cohort / "sub-001" / "ses-pre" / "ica" / "networks.json").stat().st_mtime_ns
    (cohort / "sub-001" / "ses-post" / "ica").mkdir()  # unfinished: no networks.json
    assert main(["networks", "extract", "--cohort", str(cohort), "--n-components", K, "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["already_done"] == 1 and [d["session"] for d in report["extracted"]] == ["sub-001/ses-post"]
    assert (cohort / "sub-001" / "ses-pre" / "ica" / "networks.json").stat().st_mtime_ns == done_before
    post = load_networks_json(cohort / "sub-001" / "ses-post" / "ica")
    assert post.matches == load_networks_json(extracted).matches  # same scan, same seed


def test_phantom_scan_end_to_end(tmp_path, capsys) -> None:
    """One 3 mm, 150-volume phantom scan (motion, physiology, 8 networks): extract --cohort finds all five."""
    from napari_neuroreview.core.phantoms.rsfmri import make_bold_case

    case = make_bold_case(101, "pre")
    session = tmp_path / "cohort" / "sub-001" / "ses-pre"
    session.mkdir(parents=True)
    nib.save(case.bold, str(session / "bold.nii.gz"))
    assert main(["networks", "extract", "--cohort", str(tmp_path / "cohort"), "--quiet"]) == 0
    comps = load_ica(session / "ica")
    assignment = load_networks_json(session / "ica")
    truth = np.asarray(case.truth_maps.dataobj, dtype=np.float32)
    mask = comps.brain_mask
    correlations = []
    for n, name in enumerate(atlas.NETWORKS):
        match = assignment.matches[name]
        per_component = [abs(np.corrcoef(truth[..., n][mask], comps.maps[..., k][mask])[0, 1]) for k in range(20)]
        assert match.component == int(np.argmax(per_component)), name
        assert match.confident, name
        correlations.append(match.sign * np.corrcoef(truth[..., n][mask], comps.maps[..., match.component][mask])[0, 1])
    assert np.median(correlations) >= 0.8 and min(correlations) > 0.5, correlations


def test_phantoms_writes_a_paired_cohort_and_refuses_bad_numbers(tmp_path, capsys) -> None:
    out = tmp_path / "cohort"
    assert main(["networks", "phantoms", "--out", str(out), "--n", "1", "--n-volumes", "40", "--voxel-mm", "6",
                 "--quiet"]) == 0
    for state in ("pre", "post"):
        bold = load_volume(out / "sub-001" / f"ses-{state}" / "bold.nii.gz")
        assert bold.is_4d and bold.shape[3] == 40 and bold.tr_s == pytest.approx(2.0)
    assert json.loads((out / "cohort.json").read_text())["n_patients"] == 1
    bad = tmp_path / "bad"
    assert main(["networks", "phantoms", "--out", str(bad), "--n", "0", "--quiet"]) == 2
    assert "--n" in capsys.readouterr().err and not bad.exists()


def test_evaluate_and_train_on_a_small_cohort(tmp_path, capsys) -> None:
    """CV by patient prints a per-network table, writes JSON + t-SNE; train saves a loadable version.

    The sessions' ICA is extracted once first (the user's order: ``extract --cohort``, then
    evaluate and train read each ``ica/``), rather than run in memory by both commands.
    """
    from napari_neuroreview.core.tasks.networks.model import load_prepost_model

    cohort = tmp_path / "cohort"
    assert main(["networks", "phantoms", "--out", str(cohort), "--n", "4", "--n-volumes", "40", "--voxel-mm", "6",
                 "--quiet"]) == 0
    assert main(["networks", "extract", "--cohort", str(cohort), "--quiet"]) == 0
    assert len(list(cohort.glob("sub-*/ses-*/ica/networks.json"))) == 8
    capsys.readouterr()
    out_json, png = tmp_path / "cv.json", tmp_path / "tsne.png"
    assert main(["networks", "evaluate", "--data", str(cohort), "--folds", "2", "--epochs", "1", "--n-boot", "20",
                 "--device", "cpu", "--json", str(out_json), "--tsne", str(png), "--quiet"]) == 0
    printed = capsys.readouterr().out
    for name in atlas.NETWORKS:
        assert name in printed
    doc = json.loads(out_json.read_text())
    assert png.stat().st_size > 1000 and doc
    root = tmp_path / "models"
    assert main(["networks", "train", "--data", str(cohort), "--out", str(root), "--version", "0.5.0", "--epochs", "1",
                 "--cv", "0", "--device", "cpu", "--quiet"]) == 0
    assert load_prepost_model("0.5.0", device="cpu", roots=[root]).card.version == "0.5.0"
    assert main(["networks", "evaluate", "--data", str(tmp_path / "nothing"), "--quiet"]) == 2
