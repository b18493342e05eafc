"""`neuroreview metastasis phantoms / train / classify` as a user runs them: the cohort layout; a tiny origin
model (trained here on the cohort's coarse lesions, installed in a user folder of its own and made the default
there, over the shipped demo model) through `classify`:
the document's keys, probabilities that sum to 1, the Grad-CAM volume on the contrast T1's grid, a DWI on
its coarser grid accepted with a message; `train --data DIR` on a five-patient cohort (a loadable version,
its card naming the cohort's folder and no path, the external site's node AUCs, `classify` reading it); and
the refusals (no model installed: the shipped one hidden, a missing sequence or cohort file, malformed labels, an output that is an
input) as one sentence, exit 2, nothing written."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_neuroreview.cli import main
from napari_neuroreview.core import registry
from napari_neuroreview.core.anatomy import make_affine, voxel_to_world
from napari_neuroreview.core.errors import RegistryError
from napari_neuroreview.core.io.nifti import Volume, load_volume
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.registry import set_default
from napari_neuroreview.core.tasks.metastasis.classes import NODES, ORIGINS
from napari_neuroreview.core.tasks.metastasis.classify import _place, classify_lesions
from napari_neuroreview.core.tasks.metastasis.crops import (
    CropSpec,
    LesionCrop,
    crop_grid,
    lesion_crops,
)
from napari_neuroreview.core.tasks.metastasis.labels import LABEL_COLUMNS
from napari_neuroreview.core.tasks.metastasis.lesion_input import lesions_from_labels
from napari_neuroreview.core.tasks.metastasis.model import (
    MODEL_NAME,
    load_origin_model,
    save_origin_model,
)
from napari_neuroreview.core.tasks.metastasis.train import (
    MetastasisConfig,
    MetastasisEstimator,
)

#: The tiny model reads the contrast T1 and the DWI (on its own coarser grid) on 16^3 crops of 48 mm.
SEQS, SPEC = ("dwi", "ce_t1"), CropSpec(48.0, 16)
FILES = ("t1", "t2", "flair", "dwi", "adc", "ce_t1", "lesions", "oedema")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, str]:
    """Three site-A patients on a 3 mm grid, through the CLI."""
    out = tmp_path_factory.mktemp("meta") / "cohort"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["metastasis", "phantoms", "--out", str(out), "--n", "3", "--seed", "7", "--sites", "A",
                     "--voxel-size", "3", "3", "3", "--quiet"])
    assert code == 0
    return out, buffer.getvalue()


@pytest.fixture(scope="module")
def xdg(cohort, tmp_path_factory) -> Path:
    """A user data folder holding one tiny origin model (0.1.0), trained for two epochs on the cohort's lesions."""
    out, _ = cohort
    rows = [line.split("\t") for line in (out / "labels.tsv").read_text().splitlines()[1:]]
    crops, origins = [], []
    for patient, _site, origin, *_ in rows:
        seqs = {s: load_volume(out / patient / f"{s}.nii.gz") for s in SEQS}
        these = lesion_crops(seqs, load_volume(out / patient / "lesions.nii.gz"), channels=SEQS, spec=SPEC)
        crops += these
        origins += [origin] * len(these)
    est = MetastasisEstimator(MetastasisConfig(width=4, sequences=SEQS, epochs=2, batch=4, dropout=0.0), "cpu")
    run_to_completion(est.fit(crops, origins))
    home = tmp_path_factory.mktemp("xdg")
    root = home / "napari-neuroreview" / "models"
    save_origin_model(est, root, "0.1.0", "3 coarse phantom patients (test)")
    set_default(MODEL_NAME, "0.1.0", [root])  # the user's choice, so the shipped demo model is not the default
    return home


@pytest.fixture
def installed(xdg, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))


def _one_sentence(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1, err
    return lines[0]


def _inputs(out: Path, patient: str = "patient-0000") -> dict[str, Path]:
    return {s: out / patient / f"{s}.nii.gz" for s in FILES}


def test_phantoms_writes_the_cohort_layout(cohort) -> None:
    out, stdout = cohort
    summary = json.loads(stdout)
    assert summary["patients"] == 3 and summary["sites"] == ["A"] and summary["voxel_size"] == [3.0, 3.0, 3.0]
    lines = (out / "labels.tsv").read_text().splitlines()
    assert lines[0].split("\t") == list(LABEL_COLUMNS)
    assert [line.split("\t")[0] for line in lines[1:]] == ["patient-0000", "patient-0001", "patient-0002"]
    for line in lines[1:]:
        folder = out / line.split("\t")[0]
        assert {p.name for p in folder.iterdir()} == {f"{s}.nii.gz" for s in FILES} | {"truth.json"}
        assert nib.load(str(folder / "ce_t1.nii.gz")).header.get_zooms()[:3] == pytest.approx((3.0, 3.0, 3.0))
        assert min(nib.load(str(folder / "dwi.nii.gz")).header.get_zooms()[:3]) > 3.0  # its own coarser grid
        assert "origin" not in json.loads((folder / "truth.json").read_text())
    assert summary["files"] == len([p for p in out.rglob("*") if p.is_file()])


def test_phantoms_refuses_an_unknown_site_or_a_file_in_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "c"
    assert main(["metastasis", "phantoms", "--out", str(out), "--n", "2", "--sites", "A,X"]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "'X' is not a site" in line and "A, B, C" in line
    assert not out.exists()
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main(["metastasis", "phantoms", "--out", str(afile), "--n", "1"]) == 2
    assert "is a file" in _one_sentence(capsys.readouterr().err)


def test_classify_writes_the_document_and_the_cam_on_the_contrast_t1_grid(cohort, installed, tmp_path,
                                                                           capsys) -> None:
    out, _ = cohort
    files = _inputs(out)
    res, cam = tmp_path / "res.json", tmp_path / "cam.nii.gz"
    code = main(["metastasis", "classify", "--ce-t1", str(files["ce_t1"]), "--dwi", str(files["dwi"]),
                 "--t2", str(files["t2"]), "--lesion", str(files["lesions"]), "--out", str(res), "--cam", str(cam),
                 "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # the DWI on its coarser grid is accepted, with a message; the T2 the model does not read is named
    assert "The DWI image is on another grid" in captured.err and "resampled" in captured.err
    assert "does not read T2, so it is not used" in captured.err
    doc = json.loads(res.read_text())
    assert set(doc) == {"model", "sequences", "lesions", "cam_volumes"}
    assert doc["model"] == {"name": "metastasis-origin", "version": "0.1.0"}
    assert doc["sequences"] == list(SEQS) and doc["cam_volumes"] == list(NODES)
    labels = nib.load(str(files["lesions"]))
    ids = sorted(int(i) for i in np.unique(np.asarray(labels.dataobj)) if i > 0)
    truth = {t["id"]: t for t in json.loads((out / "patient-0000" / "truth.json").read_text())["lesions"]}
    assert [d["id"] for d in doc["lesions"]] == ids
    for d in doc["lesions"]:
        assert set(d) == {"id", "world_ras_mm", "volume_mm3", "probabilities", "four_class", "prediction"}
        p = d["probabilities"]
        assert set(p) == {"lung", "non_lung", "SCLC", "NSCLC", "breast", "GI"}
        for a, b in (("lung", "non_lung"), ("SCLC", "NSCLC"), ("breast", "GI")):
            assert p[a] + p[b] == pytest.approx(1.0)
        assert list(d["four_class"]) == list(ORIGINS)
        assert sum(d["four_class"].values()) == pytest.approx(1.0, abs=1e-6)
        assert d["four_class"]["SCLC"] == pytest.approx(p["lung"] * p["SCLC"])
        assert d["prediction"] == max(ORIGINS, key=d["four_class"].get)
        assert np.linalg.norm(np.subtract(d["world_ras_mm"], truth[d["id"]]["world_ras_mm"])) < 4.0
        assert d["volume_mm3"] == pytest.approx(truth[d["id"]]["volume_mm3"])
    text = res.read_text()
    assert str(tmp_path) not in text and str(out) not in text and "patient" not in text
    # the maps: 4D, one per node, on the contrast T1's grid and affine, nonzero at each lesion, 0 far away
    ce, maps = nib.load(str(files["ce_t1"])), nib.load(str(cam))
    data = np.asarray(maps.dataobj)
    assert data.shape == (*ce.shape, len(NODES)) and data.dtype == np.float32
    np.testing.assert_allclose(maps.affine, ce.affine, atol=1e-4)
    lesion_labels = np.asarray(labels.dataobj)
    for i in ids:
        assert data[lesion_labels == i].max() > 0
    centres = np.array([d["world_ras_mm"] for d in doc["lesions"]])
    ijk = np.indices(ce.shape).reshape(3, -1).T
    world = nib.affines.apply_affine(ce.affine, ijk)
    far = np.min(np.linalg.norm(world[:, None] - centres[None], axis=2), axis=1) > SPEC.size_mm * np.sqrt(3) / 2 + 4
    assert np.all(data.reshape(-1, len(NODES))[far] == 0)


def test_classify_without_a_model_installed_says_to_train_one(cohort, no_shipped_weights, tmp_path, monkeypatch,
                                                             capsys) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    out, _ = cohort
    files = _inputs(out)
    res = tmp_path / "res.json"
    assert main(["metastasis", "classify", "--ce-t1", str(files["ce_t1"]), "--lesion", str(files["lesions"]),
                 "--out", str(res), "--quiet"]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "No metastasis origin model is installed" in line and "neuroreview metastasis train" in line
    assert not res.exists()


def test_classify_names_a_missing_sequence_the_model_reads(cohort, installed, tmp_path, capsys) -> None:
    out, _ = cohort
    files = _inputs(out)
    res, cam = tmp_path / "res.json", tmp_path / "cam.nii.gz"
    assert main(["metastasis", "classify", "--ce-t1", str(files["ce_t1"]), "--t1", str(files["t1"]),
                 "--lesion", str(files["lesions"]), "--out", str(res), "--cam", str(cam), "--quiet"]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "metastasis-origin 0.1.0" in line and "DWI was not given" in line
    assert not res.exists() and not cam.exists()


@pytest.mark.parametrize("which", ["out", "cam"])
def test_classify_refuses_an_output_that_is_an_input_and_writes_nothing(cohort, installed, tmp_path, capsys,
                                                                        which) -> None:
    out, _ = cohort
    files = _inputs(out)
    before = {s: p.read_bytes() for s, p in files.items()}
    res, cam = tmp_path / "res.json", tmp_path / "cam.nii.gz"
    paths = {"out": str(res), "cam": str(cam), which: str(files["lesions"] if which == "out" else files["ce_t1"])}
    assert main(["metastasis", "classify", "--ce-t1", str(files["ce_t1"]), "--dwi", str(files["dwi"]),
                 "--lesion", str(files["lesions"]), "--out", paths["out"], "--cam", paths["cam"], "--quiet"]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "is an input of this command" in line
    assert all(files[s].read_bytes() == before[s] for s in files)
    assert not res.exists() and not cam.exists()


def _model(xdg: Path):
    return load_origin_model("0.1.0", device="cpu", roots=[xdg / "napari-neuroreview" / "models"])


def test_lesions_chosen_in_the_viewer_give_the_answers_of_the_labels_file(cohort, xdg) -> None:
    """The widget's path (LesionMasks on the contrast T1, any order) and the CLI's (a labels volume) agree."""
    out, _ = cohort
    files = _inputs(out, "patient-0001")
    seqs = {s: load_volume(files[s]) for s in SEQS}
    labels = load_volume(files["lesions"])
    model = _model(xdg)
    by_file = run_to_completion(classify_lesions(seqs, labels, model))
    by_masks = run_to_completion(classify_lesions(seqs, lesions_from_labels(labels, seqs["ce_t1"])[::-1], model))
    assert by_file.cam is None and by_file.to_json()["cam_volumes"] == []
    assert [d["id"] for d in by_masks.to_json()["lesions"]] == [d["id"] for d in by_file.to_json()["lesions"]][::-1]
    assert sorted(by_masks.to_json()["lesions"], key=lambda d: d["id"]) == by_file.to_json()["lesions"]


def test_a_crops_map_lands_on_the_contrast_t1_voxels_it_covers() -> None:
    """A constant map on a crop is 1 on the (oblique, LPS) reference voxels inside the cube and 0 beyond it."""
    affine, shape = make_affine((2.0, 2.0, 3.0), "LPS", rotation_deg=(4.0, -3.0, 5.0), fov_mm=(80.0, 80.0, 80.0))
    ref = Volume(np.zeros(shape, np.float32), affine, (2.0, 2.0, 3.0))
    centre = (5.0, -7.0, 3.0)
    crop = LesionCrop(np.zeros((1, 16, 16, 16), np.float32), np.zeros((16,) * 3, bool), None, 1, centre, 1.0,
                      ("ce_t1",), crop_grid(centre, SPEC), SPEC)
    maps = np.zeros((*shape, 2), np.float32)
    _place(np.ones((16, 16, 16, 2), np.float32), crop, ref, maps)
    world = voxel_to_world(affine, np.indices(shape).reshape(3, -1).T)
    # the cube's voxel centres span size - spacing; the linear kernel reaches half a voxel further
    offset = np.max(np.abs(world - centre), axis=1)
    half = (SPEC.size_mm - SPEC.spacing_mm) / 2
    flat = maps.reshape(-1, 2)
    assert np.allclose(flat[offset < half - 0.01], 1.0)
    assert np.all(flat[offset > half + SPEC.spacing_mm] == 0.0)
    assert np.count_nonzero(flat[:, 0]) > 0.9 * (half * 2 / 2.0) ** 2 * (half * 2 / 3.0)


# --- metastasis train --data DIR ------------------------------------------------------------

#: The train command's tiny recipe: the two sequences on 16^3 crops of 48 mm, one epoch.
TRAIN_ARGS = ("--sequences", "dwi,ce_t1", "--crop-mm", "48", "--crop-voxels", "16", "--epochs", "1",
              "--device", "cpu")


@pytest.fixture(scope="module")
def train_cohort(tmp_path_factory) -> Path:
    """Five coarse patients: three of site A (SCLC, GI, breast), two of the external site C (NSCLC, breast)."""
    out = tmp_path_factory.mktemp("meta-train") / "cohort-0"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["metastasis", "phantoms", "--out", str(out), "--n", "5", "--seed", "0", "--sites", "A,C",
                     "--voxel-size", "3", "3", "3", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def trained(train_cohort, tmp_path_factory) -> tuple[Path, dict, str]:
    """``metastasis train`` into a user data folder of its own: (that folder, the stdout summary, stderr)."""
    home = tmp_path_factory.mktemp("xdg-train")
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        mp.setenv("XDG_DATA_HOME", str(home))
        # no origin model installed anywhere, the shipped one hidden as by the no_shipped_weights fixture: a first 1.0.0
        mp.setattr(registry, "SHIPPED_WEIGHTS_ROOT", tmp_path_factory.mktemp("no-shipped-weights"))
        code = main(["metastasis", "train", "--data", str(train_cohort), "--out",
                     str(home / "napari-neuroreview" / "models"), *TRAIN_ARGS])
    assert code == 0, stderr.getvalue()
    return home, json.loads(stdout.getvalue()), stderr.getvalue()


def test_train_writes_a_loadable_version_whose_card_names_the_cohort_folder_but_no_path(train_cohort,
                                                                                        trained) -> None:
    home, summary, stderr = trained
    root = home / "napari-neuroreview" / "models"
    assert summary["version"] == "1.0.0" and summary["made_default"] and summary["patients"] == 3
    model = load_origin_model("1.0.0", device="cpu", roots=[root])
    card = model.card
    assert model.sequences == ("dwi", "ce_t1") and model.crop == CropSpec(48.0, 16)
    assert card.config["train_sites"] == ["A"] and card.config["n_train_patients"] == 3
    assert card.config["per_class_train"] == {"SCLC": 1, "NSCLC": 0, "breast": 1, "GI": 1}
    assert "'cohort-0'" in card.training_data and "site(s) A" in card.training_data
    assert "external site C" in card.training_data
    text = (root / "metastasis-origin" / "1.0.0" / "card.json").read_text()
    assert str(train_cohort.parent) not in text and str(Path.home()) not in text
    # the external site's lesions: one NSCLC and one breast, so only the lung node has an AUC
    assert set(card.metrics) == {"external_auc_lung_vs_non_lung"}
    assert summary["external_auc"]["sclc_vs_nsclc"] is None
    assert "External site C (2 patients, 2 lesions)" in stderr and "lung_vs_non_lung" in stderr


def test_classify_reads_the_version_train_wrote(train_cohort, trained, no_shipped_weights, tmp_path, monkeypatch,
                                               capsys) -> None:
    home, _, _ = trained
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    files = _inputs(train_cohort, "patient-0003")
    res = tmp_path / "res.json"
    assert main(["metastasis", "classify", "--ce-t1", str(files["ce_t1"]), "--dwi", str(files["dwi"]),
                 "--lesion", str(files["lesions"]), "--out", str(res), "--quiet"]) == 0
    doc = json.loads(res.read_text())
    assert doc["model"] == {"name": "metastasis-origin", "version": "1.0.0"} and doc["sequences"] == ["dwi", "ce_t1"]
    assert len(doc["lesions"]) == 1 and sum(doc["lesions"][0]["four_class"].values()) == pytest.approx(1.0)


def test_train_refuses_a_cohort_missing_a_file_before_a_scan_is_read(train_cohort, tmp_path, monkeypatch,
                                                                      capsys) -> None:
    from napari_neuroreview.core.tasks.metastasis import cohort_items

    data = tmp_path / "partial"
    shutil.copytree(train_cohort, data)
    (data / "patient-0004" / "dwi.nii.gz").unlink()

    def never(*_args, **_kwargs):
        raise AssertionError("a scan was read before every file was checked")

    monkeypatch.setattr(cohort_items, "load_volume", never)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    registry = tmp_path / "registry"
    assert main(["metastasis", "train", "--data", str(data), "--out", str(registry), *TRAIN_ARGS]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert str(data / "patient-0004" / "dwi.nii.gz") in line and "labels.tsv lists patient-0004" in line
    assert not registry.exists()


def test_train_refuses_malformed_labels_and_bad_options_in_one_line(train_cohort, tmp_path, monkeypatch,
                                                                    capsys) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    data = tmp_path / "bad"
    data.mkdir()
    lines = (train_cohort / "labels.tsv").read_text().splitlines()
    (data / "labels.tsv").write_text("\n".join([*lines[:2], lines[2].replace("\tGI\t", "\tliver\t"), ""]))
    assert main(["metastasis", "train", "--data", str(data), "--out", str(tmp_path / "r"), *TRAIN_ARGS]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "labels.tsv: line 3 is not a patient's labels" in line
    assert main(["metastasis", "train", "--data", str(train_cohort), "--out", str(tmp_path / "r"),
                 "--sequences", "t1,swi"]) == 2
    assert "'swi' is not a list of distinct sequences" in _one_sentence(capsys.readouterr().err)
    assert main(["metastasis", "train", "--data", str(train_cohort), "--out", str(train_cohort / "models"),
                 *TRAIN_ARGS]) == 2
    assert "inside the input folder" in _one_sentence(capsys.readouterr().err)
    assert not (train_cohort / "models").exists()


def test_no_model_installed_says_train_with_data_or_reinstall(tmp_path) -> None:
    """The package ships a demo origin model, so reinstalling brings one back (the registry's shipped sentence)."""
    with pytest.raises(RegistryError) as err:
        load_origin_model(roots=[tmp_path / "empty"])
    assert str(err.value) == ("No metastasis origin model is installed: train one with "
                              "`neuroreview metastasis train --data DIR` "
                              "or reinstall napari-neuroreview (it ships demo weights).")


def test_crops_from_cohort_gives_each_lesion_its_patients_origin_and_site(train_cohort) -> None:
    from napari_neuroreview.core.tasks.metastasis.cohort_items import crops_from_cohort

    crops, origins, patients, sites = run_to_completion(crops_from_cohort(train_cohort, SEQS, SPEC, oedema=True))
    rows = [line.split("\t") for line in (train_cohort / "labels.tsv").read_text().splitlines()[1:]]
    expected = [(r[0], r[2], r[1]) for r in rows for _ in range(int(r[5]))]
    assert list(zip(patients, origins, sites)) == expected
    assert all(c.sequences == SEQS and c.spec == SPEC and c.oedema is not None and c.mask.any() for c in crops)
    first = lesion_crops({s: load_volume(train_cohort / "patient-0000" / f"{s}.nii.gz") for s in SEQS},
                         load_volume(train_cohort / "patient-0000" / "lesions.nii.gz"), channels=SEQS, spec=SPEC)
    assert np.array_equal(crops[0].image, first[0].image)  # the same crop classify cuts


def test_node_aucs_score_each_node_on_its_own_lesions() -> None:
    from napari_neuroreview.core.tasks.metastasis.cohort_items import node_aucs

    origins = ["SCLC", "NSCLC", "breast", "GI", "GI"]
    p = np.array([[0.9, 0.8, 0.5], [0.6, 0.1, 0.5], [0.7, 0.5, 0.2], [0.2, 0.5, 0.9], [0.1, 0.5, 0.1]])
    aucs = node_aucs(p, origins)
    assert aucs["lung_vs_non_lung"] == pytest.approx(5 / 6)  # 0.7 (breast) above 0.6 (NSCLC): one pair of six
    assert aucs["sclc_vs_nsclc"] == 1.0
    assert aucs["breast_vs_gi"] == pytest.approx(0.5)  # breast 0.2 between GI 0.9 and 0.1
    assert node_aucs(p[2:], origins[2:])["lung_vs_non_lung"] is None  # no lung lesion: no AUC, not 0.5


def test_train_and_evaluate_cut_the_benchmarks_cubes_unless_asked_otherwise() -> None:
    """Both commands default to CropSpec's cube (evaluate once cut 64 mm / 32 voxels while train cut 32 / 16)."""
    from napari_neuroreview.cli import build_parser
    from napari_neuroreview.cli_metastasis import crop_spec_of

    parser = build_parser()
    for command in ("train", "evaluate"):
        extra = ["--out", "reg"] if command == "train" else []
        args = parser.parse_args(["metastasis", command, "--data", "cohort", *extra])
        assert crop_spec_of(args) == CropSpec(), command
        args = parser.parse_args(["metastasis", command, "--data", "cohort", *extra, "--crop-mm", "48"])
        assert crop_spec_of(args) == CropSpec(48.0, CropSpec().shape), command
