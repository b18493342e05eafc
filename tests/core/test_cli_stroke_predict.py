"""``neuroreview stroke predict`` (issue 13 item 7) end to end on a tiny cohort and a tiny saved stroke-risk model.

The model: a 1-epoch pretraining (``stroke pretrain``) and 1 epoch of frozen heads
(``downstream.train_downstream``), saved as a registry version; it predicts nothing useful,
but every step from the files to the result is the real one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from stroke_synthetic import write_tiny_cohort

from napari_neuroreview.cli import main
from napari_neuroreview.core.anatomy import registration
from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.io.nifti import Volume, load_volume
from napari_neuroreview.core.io.resample import resample_to_grid
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.reading.window import foreground
from napari_neuroreview.core.tasks.stroke.downstream import (
    DownstreamConfig,
    load_pretrained,
    load_risk_model,
    predict_logits,
    save_risk_model,
    train_downstream,
)
from napari_neuroreview.core.tasks.stroke.explain import ensemble_cam, head_on_grid
from napari_neuroreview.core.tasks.stroke.labels import (
    CLINICAL_COLUMNS,
    read_clinical_row,
    read_stroke_table,
)
from napari_neuroreview.core.tasks.stroke.predict import (
    ModelGrid,
    grid_centre,
    model_input,
    place_on_model_grid,
    predict_for_review,
    predict_subject,
    rigid_part,
)
from napari_neuroreview.core.tasks.stroke.pretrain import load_images
from napari_neuroreview.core.tasks.stroke.split import read_split
from napari_neuroreview.core.tasks.stroke.tabular import TableEncoding

KEYS = ["model", "subject", "risk", "threshold", "high_risk", "modality_share", "missing", "cam_volumes"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path, str]:
    """A tiny cohort (15 labelled, 5 strokes), a registry with a stroke-risk version, and a labelled subject."""
    base = tmp_path_factory.mktemp("stroke-predict")
    cohort = write_tiny_cohort(base / "cohort", n=18, labelled=15)
    lines = (cohort / "labels.tsv").read_text().splitlines()
    (cohort / "labels.tsv").write_text("\n".join([lines[0], *(f"{line.split(chr(9))[0]}\t{int(i % 3 == 0)}"
                                                              for i, line in enumerate(lines[1:]))]) + "\n")
    registry = base / "registry"
    assert main(["stroke", "pretrain", "--data", str(cohort), "--out", str(registry), "--epochs", "1", "--batch",
                 "8", "--width", "2", "--queue", "0", "--device", "cpu", "--quiet"]) == 0
    _root, clip, card = load_pretrained(None, registry)
    split = read_split(registry / card.config["split"]["file"], cohort)
    config = DownstreamConfig(mode="frozen", epochs=1, batch=8, augment=False)
    result = run_to_completion(train_downstream(cohort, split, clip, card, config, "cpu"))
    save_risk_model(result, config, registry, "1.0.0", cohort.name, split, card.config["split"]["file"], card)
    return cohort, registry, split["subjects"]["test"][0]


def _predict(cohort: Path, registry: Path, subject: str, out: Path, *extra: str) -> int:
    return main(["stroke", "predict", str(cohort / subject / "t1.nii.gz"), "--flair",
                 str(cohort / subject / "flair.nii.gz"), "--clinical", str(cohort / "clinical.tsv"), "--subject",
                 subject, "--out", str(out), "--weights", str(registry), "--version", "1.0.0", "--device", "cpu",
                 "--quiet", *extra])


def test_predict_writes_the_result_and_the_cam_as_training_reads_the_subject(setup, tmp_path: Path, capsys) -> None:
    cohort, registry, subject = setup
    out, cam = tmp_path / "res.json", tmp_path / "cam.nii.gz"
    assert _predict(cohort, registry, subject, out, "--cam", str(cam)) == 0
    text = out.read_text(encoding="utf-8")
    doc = json.loads(text)
    assert list(doc) == KEYS and doc["model"] == {"name": "stroke-risk", "version": "1.0.0"}
    assert doc["subject"] == subject and 0.0 < doc["risk"] < 1.0 and doc["high_risk"] == (doc["risk"] >= doc["threshold"])
    assert doc["modality_share"]["image"] + doc["modality_share"]["table"] == pytest.approx(1.0)
    assert str(tmp_path) not in text and str(cohort) not in text and "/" not in text  # no path
    row = next(r for r in read_stroke_table(cohort) if r["subject"] == subject)
    assert doc["missing"] == [c for c in CLINICAL_COLUMNS if row[c] is None]
    # the same risk as the training pipeline's reading of this subject (load_images, the card's encoding)
    model = load_risk_model(registry, "1.0.0")
    images = run_to_completion(load_images(cohort, [subject]))
    logit = predict_logits(model.net, images, model.encoding.encode([row]))["ensemble"][0]
    assert doc["risk"] == pytest.approx(1.0 / (1.0 + np.exp(-logit)), abs=2e-3)
    assert doc["threshold"] == pytest.approx(model.threshold)
    # the cam: on the T1's grid and affine, raw then normalised
    t1 = nib.load(cohort / subject / "t1.nii.gz")
    img = nib.load(cam)
    assert img.shape == (*t1.shape, 2) and np.allclose(img.affine, t1.affine)
    maps = np.asarray(img.dataobj)
    direct = ensemble_cam(model.net, torch.from_numpy(images).float(), torch.from_numpy(model.encoding.encode([row])))
    head = head_on_grid(load_volume(cohort / subject / "t1.nii.gz").data.astype(np.float32))  # masked to the head
    expected = np.where(head, direct.raw[0], 0.0)
    assert np.allclose(maps[..., 0], expected, rtol=0.02, atol=0.02 * max(float(direct.raw.max()), 1e-6))
    assert maps.min() >= 0.0 and maps[..., 1].max() == pytest.approx(1.0 if maps[..., 0].max() > 0 else 0.0)
    assert doc["cam_volumes"] == ["raw", "normalised"]
    # the card records the cohort's grid (shape and affine); this T1 is on it, so nothing is registered or said
    assert np.allclose(model.card.config["image_affine"], t1.affine)
    err = capsys.readouterr().err
    assert model.card.config["image_shape"] == list(t1.shape) and "regist" not in err and "read as on" not in err
    # the CAM's coarseness and the mass the head mask removed are said
    cells = " x ".join(str(v) for v in direct.feature_map.shape[1:])
    share = float(direct.raw[0][~head].sum() / direct.raw[0].sum()) if direct.raw.sum() > 0 else 0.0
    assert f"warning: The Grad-CAM comes from a {cells} feature map" in err and f"{share:.0%} of its mass" in err


def test_csv_table_with_blank_optional_cells_lists_them_as_missing(setup, tmp_path: Path) -> None:
    cohort, registry, subject = setup
    row = next(r for r in read_stroke_table(cohort) if r["subject"] == subject)
    cells = {**{c: "" if row[c] is None else str(row[c]) for c in CLINICAL_COLUMNS}, "lvh": "", "cholesterol": "n/a"}
    table = tmp_path / "clinical.csv"
    table.write_text("subject," + ",".join(c for c in CLINICAL_COLUMNS if c != "bmi") + "\n" + subject + ","
                     + ",".join(cells[c] for c in CLINICAL_COLUMNS if c != "bmi") + "\n", encoding="utf-8")
    out = tmp_path / "res.json"
    assert main(["stroke", "predict", str(cohort / subject / "t1.nii.gz"), "--flair",
                 str(cohort / subject / "flair.nii.gz"), "--clinical", str(table), "--subject", subject, "--out",
                 str(out), "--weights", str(registry), "--device", "cpu", "--quiet"]) == 0
    missing = json.loads(out.read_text())["missing"]
    assert {"lvh", "cholesterol", "bmi"} <= set(missing) and set(missing) <= {c for c in CLINICAL_COLUMNS}


@pytest.mark.parametrize(("case", "words"), [
    ("no subject", r"no row for subject 'sub-99999' in the clinical table\."),
    ("no flair", r"reads a FLAIR beside the T1 and was not trained without one; give --flair"),
    ("out is an input", r"is an input of this command"),
    ("cam is an input", r"is an input of this command"),
    ("out of range", r"sbp \(systolic blood pressure\) is '400' mmHg, outside the allowed 60-260 mmHg\."),
])
def test_user_mistakes_are_one_sentence_and_write_nothing(setup, tmp_path: Path, capsys, case: str,
                                                          words: str) -> None:
    cohort, registry, subject = setup
    t1, flair = cohort / subject / "t1.nii.gz", cohort / subject / "flair.nii.gz"
    table, out = cohort / "clinical.tsv", tmp_path / "res.json"
    stamp = t1.stat().st_mtime_ns
    args = {"t1": str(t1), "--flair": str(flair), "--clinical": str(table), "--subject": subject, "--out": str(out)}
    if case == "no subject":
        args["--subject"] = "sub-99999"
    elif case == "no flair":
        del args["--flair"]
    elif case == "out is an input":
        args["--out"] = str(t1)
    elif case == "cam is an input":
        args["--cam"] = str(flair)
    else:
        text = table.read_text().splitlines()
        header = text[0].split("\t")
        line = next(x for x in text if x.startswith(subject + "\t")).split("\t")
        line[header.index("sbp")] = "400"
        bad = tmp_path / "bad.tsv"
        bad.write_text("\n".join([text[0], "\t".join(line)]) + "\n")
        args["--clinical"] = str(bad)
    argv = ["stroke", "predict", args.pop("t1"), *(x for kv in args.items() for x in kv), "--weights", str(registry),
            "--device", "cpu", "--quiet"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(words, err), err
    assert not out.exists() and t1.stat().st_mtime_ns == stamp and sorted(tmp_path.iterdir()) in (
        [], [tmp_path / "bad.tsv"])


def test_a_t1_of_the_training_shape_but_mirrored_is_registered_through_the_real_card(setup, tmp_path: Path,
                                                                                     monkeypatch, capsys) -> None:
    """The saved card records the grid's affine, so a T1 of the training shape whose voxels are stored mirrored in x
    (its affine says so) is registered, not read as on the grid; the same head in world mm gives the same risk.
    The registration stands in for SimpleITK's: this T1's world is the grid's, so world -> MNI is the identity."""
    cohort, registry, subject = setup
    t1 = nib.load(cohort / subject / "t1.nii.gz")
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = t1.shape[0] - 1
    mirrored = tmp_path / "t1_lr.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(t1.dataobj)[::-1].copy(), t1.affine @ flip), mirrored)
    calls = []

    def fake_register(volume: Volume, name: str | None = None):
        calls.append(name)
        yield from ()
        return registration.MniTransform(matrix=np.eye(4), metric=-1.0, brain_dice=0.97)

    monkeypatch.setattr(registration, "register_to_mni", fake_register)
    assert _predict(cohort, registry, subject, tmp_path / "a.json") == 0
    assert calls == []  # on the grid: read as it is
    argv = ["stroke", "predict", str(mirrored), "--flair", str(cohort / subject / "flair.nii.gz"), "--clinical",
            str(cohort / "clinical.tsv"), "--subject", subject, "--out", str(tmp_path / "b.json"), "--weights",
            str(registry), "--version", "1.0.0", "--device", "cpu", "--quiet"]
    capsys.readouterr()
    assert main(argv) == 0
    assert calls == ["The T1"] and "registered to MNI152" in capsys.readouterr().err
    risks = [json.loads((tmp_path / f"{x}.json").read_text())["risk"] for x in "ab"]
    assert risks[1] == pytest.approx(risks[0], abs=1e-4)


def test_a_t1_off_the_grid_is_registered_and_pulled_onto_it(monkeypatch) -> None:
    """With a card that records the grid's affine: the T1's world -> MNI transform carries the grid into the T1's
    world, and every channel is resampled there (the transform stands in for SimpleITK's, known exactly here)."""
    grid_affine = np.array([[4.0, 0, 0, -22.0], [0, 4.0, 0, -40.0], [0, 0, 4.0, -20.0], [0, 0, 0, 1]])
    grid = ModelGrid((12, 14, 12), grid_affine, ("t1",))
    ijk = np.indices(grid.shape).astype(np.float32)
    on_grid = 100.0 + 50.0 * np.sin(ijk[0] / 3.0) * np.cos(ijk[1] / 4.0) + 10.0 * ijk[2]
    # the subject's head: turned 12 degrees about z and moved; their scanner's 2 mm LAS grid
    t = np.radians(12.0)
    to_mni = np.array([[np.cos(t), -np.sin(t), 0, 6.0], [np.sin(t), np.cos(t), 0, -4.0], [0, 0, 1, 3.0],
                       [0, 0, 0, 1]])
    subject_affine = np.array([[-2.0, 0, 0, 40.0], [0, 2.0, 0, -60.0], [0, 0, 2.0, -40.0], [0, 0, 0, 1]])
    shape = (48, 44, 44)
    data = resample_to_grid(on_grid, grid_affine, to_mni @ subject_affine, shape, order=1)
    t1 = Volume(data=data.astype(np.float32), affine=subject_affine, zooms=(2.0, 2.0, 2.0))
    calls = []

    def fake_register(volume: Volume, name: str | None = None):
        calls.append(name)
        yield from ()
        return registration.MniTransform(matrix=to_mni, metric=-1.0, brain_dice=0.97)

    monkeypatch.setattr(registration, "register_to_mni", fake_register)
    to_subject, messages = run_to_completion(place_on_model_grid(t1, grid, "stroke-risk 1.0.0"))
    assert calls == ["The T1"] and np.allclose(to_subject, np.linalg.inv(to_mni) @ grid_affine)
    assert "registered to MNI152" in messages[0] and "4 x 4 x 4 mm" in messages[0]
    x = model_input({"t1": t1}, grid, to_subject)[0]
    inner = (slice(2, -2),) * 3  # the grid's edge reads the edge of the subject's field of view
    expected = on_grid[inner]
    scale = float((x[inner] * expected).sum() / (x[inner] ** 2).sum())  # the foreground medians' ratio
    assert np.abs(x[inner] * scale - expected).mean() < 0.02 * expected.mean()
    # a T1 already on the grid is read as it is (no registration), divided by its foreground's median
    same = Volume(data=on_grid.astype(np.float32), affine=grid_affine, zooms=(4.0, 4.0, 4.0))
    assert run_to_completion(place_on_model_grid(same, grid, "m"))[1] == [] and len(calls) == 1
    median = float(np.median(foreground(on_grid.astype(np.float32).ravel())))
    assert np.allclose(model_input({"t1": same}, grid, grid_affine)[0], on_grid / median, rtol=1e-5)


def test_nan_voxels_are_said_on_stderr_and_an_all_nan_t1_is_refused_naming_nan(setup, tmp_path: Path, capsys) -> None:
    cohort, registry, subject = setup
    t1 = nib.load(cohort / subject / "t1.nii.gz")
    data = np.asarray(t1.dataobj).astype(np.float32)
    data[0, 0, :3] = np.nan
    holed, empty = tmp_path / "t1_nan.nii.gz", tmp_path / "t1_allnan.nii.gz"
    nib.save(nib.Nifti1Image(data, t1.affine), holed)
    nib.save(nib.Nifti1Image(np.full(t1.shape, np.nan, np.float32), t1.affine), empty)
    argv = ["--flair", str(cohort / subject / "flair.nii.gz"), "--clinical", str(cohort / "clinical.tsv"),
            "--subject", subject, "--weights", str(registry), "--version", "1.0.0", "--device", "cpu", "--quiet"]
    capsys.readouterr()
    assert main(["stroke", "predict", str(holed), "--out", str(tmp_path / "a.json"), *argv]) == 0
    assert re.search(r"warning: .*3 voxels .* are NaN or infinite; they were set to 0", capsys.readouterr().err)
    assert main(["stroke", "predict", str(empty), "--out", str(tmp_path / "b.json"), *argv]) == 2
    assert "NaN" in capsys.readouterr().err and not (tmp_path / "b.json").exists()


def test_a_model_reading_image_volumes_needs_them_filled() -> None:
    encoding = TableEncoding(("age", "sex", "wmh_ml"), {"age": 60.0, "wmh_ml": 5.0}, {"age": 8.0, "wmh_ml": 3.0})
    t1 = Volume(data=np.ones((4, 4, 4), np.float32), affine=np.eye(4), zooms=(1.0, 1.0, 1.0))
    row = {"subject": "s1", "age": 61.0, "sex": "F", "wmh_ml": None}
    task = predict_subject(t1, t1, row, None, encoding, 0.5, {"name": "stroke-risk", "version": "9.0.0"},
                           {"image_shape": [4, 4, 4], "channels": ["t1", "flair"]})
    with pytest.raises(InputFileError, match=r"^Subject s1: the stroke-risk 9\.0\.0 model reads wmh_ml \(white matter "
                                             r"hyperintensity volume \(image-derived\)\), which is blank or absent"):
        run_to_completion(task)


def test_the_review_task_loads_the_model_and_places_the_subject_among_the_training_ones(setup) -> None:
    cohort, registry, subject = setup
    row = read_clinical_row(cohort / "clinical.tsv", subject)
    t1, flair = (load_volume(cohort / subject / f"{c}.nii.gz") for c in ("t1", "flair"))
    result = run_to_completion(predict_for_review(t1, flair, row, "1.0.0", str(registry), device="cpu", cam=False))
    model = load_risk_model(registry, "1.0.0")
    n = len(model.net.reference_labels)
    assert result.cam is None and result.to_json()["cam_volumes"] == [] and result.model["version"] == "1.0.0"
    assert result.place is not None and result.place.reference.shape == (n, 2) and result.place.neighbours == min(20, n)
    assert result.place.neighbour_strokes <= int(model.net.reference_labels.sum())


def test_the_registration_keeps_the_heads_own_size() -> None:
    """An affine world -> MNI with a 10 % larger head: its rotation and the point it maps to the grid's centre are
    kept, its scaling dropped (the training heads keep their own size)."""
    t = np.radians(14.0)
    rotation = np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation / 1.1 @ np.diag([1.0, 1.02, 0.98])  # a head 10 % larger than the template, a little shear
    matrix[:3, 3] = (5.0, -12.0, 7.0)
    grid = ModelGrid((39, 48, 42), np.array([[4.0, 0, 0, -76.0], [0, 4.0, 0, -112.0], [0, 0, 4.0, -70.0],
                                             [0, 0, 0, 1]]), ("t1",))
    centre = grid_centre(grid)
    assert np.allclose(centre, [0.0, -18.0, 12.0])
    rigid = rigid_part(matrix, centre)
    assert np.allclose(rigid[:3, :3] @ rigid[:3, :3].T, np.eye(3)) and np.linalg.det(rigid[:3, :3]) > 0
    assert np.allclose(rigid[:3, :3], rotation, atol=0.02)
    subject_centre = np.linalg.solve(matrix, np.append(centre, 1.0))
    assert np.allclose(rigid @ subject_centre, np.append(centre, 1.0))
    # a rigid transform is its own rigid part
    matrix[:3, :3] = rotation
    assert np.allclose(rigid_part(matrix, centre), matrix)
