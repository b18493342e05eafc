"""The Stroke risk panel on the committed stroke sample, opened and driven as a user does.

A tiny stroke-risk model (1 pretraining epoch at width 2, 1 epoch of frozen heads) is trained
once on a synthetic cohort on the sample's grid shape (``stroke_synthetic.write_tiny_cohort``)
and installed as the user's default in a data folder of its own; it predicts nothing useful,
but every step from the layers to the panel is the real one. Each test opens the sample as
napari's File > Open Sample does (from a copy in a cache folder of its own) and docks the
panel from the manifest. Clicks and typing are real Qt events on the panel's buttons and inputs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import napari_user as user
import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from stroke_synthetic import write_tiny_cohort

from napari_neuroreview.cli import main
from napari_neuroreview.core.io.layers import META_KEY
from napari_neuroreview.core.io.nifti import load_volume
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.registry import DEMO_NOTE, set_default
from napari_neuroreview.core.tasks.stroke.downstream import (
    MODEL_NAME,
    DownstreamConfig,
    load_pretrained,
    save_risk_model,
    train_downstream,
)
from napari_neuroreview.core.tasks.stroke.labels import read_clinical_row
from napari_neuroreview.core.tasks.stroke.split import read_split
from napari_neuroreview.widgets._base import percent
from napari_neuroreview.widgets._stroke_results import CAM_LAYER
from napari_neuroreview.widgets.stroke_risk import NO_MODEL, StrokeRiskWidget

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "stroke"
VERSION = "0.1.0"


@pytest.fixture(scope="session")
def model_home(tmp_path_factory) -> Path:
    """A user data folder whose default stroke-risk version is a tiny model reading the sample's grid shape."""
    base = tmp_path_factory.mktemp("stroke-widget")
    shape = tuple(int(v) for v in load_volume(SAMPLE / "t1.nii.gz").spatial_shape)
    cohort = write_tiny_cohort(base / "cohort", n=18, labelled=15, shape=shape)
    lines = (cohort / "labels.tsv").read_text().splitlines()  # both labels in every part of the split
    (cohort / "labels.tsv").write_text("\n".join([lines[0], *(f"{line.split(chr(9))[0]}\t{int(i % 3 == 0)}"
                                                              for i, line in enumerate(lines[1:]))]) + "\n")
    pretrained = base / "pretrained"
    assert main(["stroke", "pretrain", "--data", str(cohort), "--out", str(pretrained), "--epochs", "1", "--batch",
                 "8", "--width", "2", "--queue", "0", "--device", "cpu", "--quiet"]) == 0
    _root, clip, card = load_pretrained(None, pretrained)
    split = read_split(pretrained / card.config["split"]["file"], cohort)
    config = DownstreamConfig(mode="frozen", epochs=1, batch=8, augment=False)
    result = run_to_completion(train_downstream(cohort, split, clip, card, config, "cpu"))
    home = base / "data"
    registry = home / "napari-neuroreview" / "models"
    save_risk_model(result, config, registry, VERSION, cohort.name, split, card.config["split"]["file"], card)
    set_default(MODEL_NAME, VERSION, [registry])
    return home


@pytest.fixture
def sample_home(model_home, tmp_path, monkeypatch) -> Path:
    """The sample in a cache of its own (as if made before); the tiny model is the user's default."""
    cache = tmp_path / "cache"
    shutil.copytree(SAMPLE, cache / "napari-neuroreview" / "sample_data" / "stroke")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("XDG_DATA_HOME", str(model_home))
    return cache / "napari-neuroreview" / "sample_data" / "stroke"


def panel_on_sample(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-neuroreview", "stroke")
    panel = user.dock(viewer, "Stroke risk")
    assert isinstance(panel, StrokeRiskWidget)
    qtbot.wait(10)  # the combos follow the layer names once Qt has delivered the user's picks
    panel.device.combo.setCurrentText("cpu")
    return viewer, panel


def predict(panel, qtbot) -> None:
    qtbot.mouseClick(panel.runner.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.runner.running, timeout=60_000)


def test_predict_on_the_sample_gives_risk_shares_place_and_a_gradcam_on_the_t1(
        sample_home, make_napari_viewer, qtbot) -> None:
    viewer, panel = panel_on_sample(make_napari_viewer, qtbot)
    assert [layer.name for layer in viewer.layers] == ["T1", "FLAIR", "lesions (truth)"]
    assert (panel.t1.currentText(), panel.flair.currentText()) == ("T1", "FLAIR")
    # The table beside the T1 is opened by itself, its one subject's row in the form.
    assert Path(panel.clinical.path.text()) == sample_home / "clinical.tsv"
    assert panel.clinical.subject.text() == "sub-demo"
    row = read_clinical_row(sample_home / "clinical.tsv", "sub-demo", panel.clinical.columns)
    assert panel.clinical.row() == row
    assert panel.model_note.text().startswith(f"stroke-risk {VERSION} reads the T1 and FLAIR and 11 clinical columns")
    assert panel.runner.run_button.isEnabled() and "not for clinical use" in panel.caveat.text()

    predict(panel, qtbot)
    assert panel.runner.last_error is None, panel.runner.status.text()
    result = panel.result
    assert 0.0 < result.risk < 1.0 and result.subject == "sub-demo"
    assert result.missing == [c for c in panel.clinical.columns if row[c] is None] == ["lvh", "cholesterol"]
    text = panel.answer.risk.text()
    assert percent(result.risk) in text and percent(result.threshold) in text
    assert ("HIGH" if result.risk >= result.threshold else "low") in text
    image, table = panel.answer.shares_shown()
    assert image + table == pytest.approx(1.0, abs=2e-3)
    assert result.shares.image + result.shares.table == pytest.approx(1.0)
    assert image == pytest.approx(result.shares.image, abs=1e-3)
    # The subject among the training subjects: a plane with both labels, and the subject on it.
    place = panel.place.place
    assert place is not None and set(np.unique(place.labels)) == {0, 1} and np.all(np.isfinite(place.subject))
    assert "nearest" in panel.place.note.text()

    # One Grad-CAM layer, on the T1's grid, placed as it is, in [0, 1] with the threshold's limits.
    t1 = viewer.layers["T1"]
    cams = [layer for layer in viewer.layers if layer.name == CAM_LAYER]
    assert len(cams) == 1
    cam = cams[0]
    assert cam.data.shape == t1.data.shape
    np.testing.assert_allclose(cam.scale, t1.scale)
    np.testing.assert_allclose(cam.translate, t1.translate)
    np.testing.assert_allclose(cam.affine.affine_matrix, t1.affine.affine_matrix)
    assert 0.0 <= float(np.min(cam.data)) and float(np.max(cam.data)) <= 1.0 + 1e-6
    top = float(np.max(cam.data)) or 1.0  # the tiny model's image may only lower the logit: then the map is 0
    assert (panel.cam.note.text() == "") == (float(np.max(result.cam.raw)) > 0)
    assert cam.contrast_limits[0] == pytest.approx(0.5 * top) and cam.opacity == pytest.approx(0.6)
    panel.cam.threshold.setValue(30)
    panel.cam.colormap.setCurrentText("magma")
    panel.cam.opacity.setValue(40)
    assert cam.contrast_limits[0] == pytest.approx(0.3 * top) and cam.colormap.name.startswith("magma")
    assert cam.opacity == pytest.approx(0.4)

    # A second run replaces the map in the same layer.
    predict(panel, qtbot)
    assert [layer.name for layer in viewer.layers].count(CAM_LAYER) == 1


def test_a_bad_typed_value_is_one_sentence_and_nothing_runs(sample_home, make_napari_viewer, qtbot) -> None:
    viewer, panel = panel_on_sample(make_napari_viewer, qtbot)
    before = [layer.name for layer in viewer.layers]
    sbp = panel.clinical.inputs["sbp"]
    sbp.clear()
    QTest.keyClicks(sbp, "16")  # kPa, not mmHg
    qtbot.mouseClick(panel.runner.run_button, Qt.MouseButton.LeftButton)
    assert not panel.runner.running and panel.result is None
    sentence = panel.runner.status.text()
    assert sentence == ("Subject sub-demo: sbp (systolic blood pressure) is '16' mmHg, outside the allowed "
                        "60-260 mmHg.")
    assert [layer.name for layer in viewer.layers] == before


def test_cancel_leaves_no_layer(sample_home, make_napari_viewer, qtbot) -> None:
    viewer, panel = panel_on_sample(make_napari_viewer, qtbot)
    before = [layer.name for layer in viewer.layers]
    qtbot.mouseClick(panel.runner.run_button, Qt.MouseButton.LeftButton)
    assert panel.runner.running
    qtbot.mouseClick(panel.runner.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.runner.running, timeout=30_000)
    qtbot.wait(50)
    assert panel.runner.status.text() == "Cancelled" and panel.result is None
    assert [layer.name for layer in viewer.layers] == before


def test_a_typed_row_without_a_table_runs(sample_home, make_napari_viewer, qtbot) -> None:
    """No table: the row typed into the form is the one run (a required blank would be refused)."""
    _viewer, panel = panel_on_sample(make_napari_viewer, qtbot)
    form = panel.clinical
    form.path.clear()
    form.subject.clear()
    for column in form.columns:
        form.set_value(column, None)
    qtbot.mouseClick(panel.runner.run_button, Qt.MouseButton.LeftButton)
    assert panel.runner.status.text() == ("Subject typed row: age (age at the scan) is blank, but it is required "
                                          "(allowed: 18-110 years).")
    for column, value in {"age": "71", "sex": "M", "sbp": "150", "af": "1", "cvd": "0"}.items():
        form.set_value(column, value)
    predict(panel, qtbot)
    assert panel.runner.last_error is None, panel.runner.status.text()
    assert panel.result.subject == "typed row" and "sbp" not in panel.result.missing
    assert set(panel.result.missing) == {"bp_treated", "diabetes", "smoking", "lvh", "bmi", "cholesterol"}


def test_closing_the_dock_stops_following_the_viewer(sample_home, make_napari_viewer, qtbot) -> None:
    viewer, panel = panel_on_sample(make_napari_viewer, qtbot)
    items = [panel.t1.itemText(i) for i in range(panel.t1.count())]
    viewer.window.remove_dock_widget(panel)  # the dock's x does this (napari never closes the panel itself)
    viewer.layers.remove("FLAIR")
    assert [panel.t1.itemText(i) for i in range(panel.t1.count())] == items
    assert panel.flair.currentText() == "FLAIR"


def test_view_sample_stroke_docks_the_panel_ready_on_its_layers(sample_home, make_napari_viewer, qtbot) -> None:
    """`neuroreview view --sample stroke`: the sample's layers, and the panel docked on them with the row."""
    from napari_neuroreview.viewer import open_viewer

    viewer, _case = open_viewer(sample="stroke", run=False, viewer=make_napari_viewer())
    docked = [w for w in viewer.window.dock_widgets.values() if isinstance(w, StrokeRiskWidget)]
    assert len(docked) == 1
    panel = docked[0]
    qtbot.wait(10)
    assert (panel.t1.currentText(), panel.flair.currentText()) == ("T1", "FLAIR")
    assert panel.clinical.subject.text() == "sub-demo" and panel.runner.run_button.isEnabled()


def test_the_shipped_demo_model_predicts_the_sample(tmp_path, make_napari_viewer, qtbot, monkeypatch) -> None:
    """An empty user registry: the shipped demo stroke-risk model is the one listed, flagged, and it reads the sample."""
    cache = tmp_path / "cache"
    shutil.copytree(SAMPLE, cache / "napari-neuroreview" / "sample_data" / "stroke")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    viewer, panel = panel_on_sample(make_napari_viewer, qtbot)
    card = panel.versions.card()
    assert card is not None and DEMO_NOTE in card.notes and "PHANTOM figures" in card.notes
    assert "test_roc_auc_ensemble" in card.metrics and "not for clinical use" in panel.caveat.text()
    assert panel.caveat.text().startswith("Demo weights") and "the score is not a calibrated risk" in panel.caveat.text()
    # the card calls the number what it is for this model: its validation ROC-AUC, the test specificity
    specificity = card.config["test"]["heads"]["ensemble"]["specificity"]["value"]
    assert f"validation ROC-AUC is {card.metrics['val_auc_ensemble']:.2f}" in card.notes
    assert f"test specificity {specificity:.2f}" in card.notes and "not a calibrated risk" in card.notes
    predict(panel, qtbot)
    assert panel.runner.last_error is None, panel.runner.status.text()
    assert panel.result.model == {"name": MODEL_NAME, "version": card.version} and 0.0 < panel.result.risk < 1.0
    assert sum(panel.answer.shares_shown()) == pytest.approx(1.0, abs=2e-3)
    assert viewer.layers[CAM_LAYER].data.shape == viewer.layers["T1"].data.shape


def test_changing_the_t1_loads_its_own_row_never_another_subjects(tmp_path, make_napari_viewer, qtbot,
                                                                   monkeypatch) -> None:
    """A cohort table of three subjects: each T1 picked (real key presses) shows its folder's row; a T1 the table
    lacks, or a table opened with no subject, clears the form (never the first row), and Predict refuses."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    header, sample_row = (SAMPLE / "clinical.tsv").read_text().splitlines()
    cells = sample_row.split("\t")
    ages = {"sub-a": "61", "sub-b": "72", "sub-c": "83"}
    table = tmp_path / "cohort" / "clinical.tsv"
    table.parent.mkdir()
    table.write_text("\n".join([header, *("\t".join([s, a, *cells[2:]]) for s, a in ages.items())]) + "\n")
    viewer = make_napari_viewer()
    for name, folder in (("sub-b", tmp_path / "cohort" / "sub-b"), ("sub-a", tmp_path / "cohort" / "sub-a"),
                         ("sub-x", tmp_path / "elsewhere" / "sub-x")):
        viewer.add_image(np.zeros((4, 5, 6), np.float32), name=name,
                         metadata={META_KEY: {"source_path": str(folder / "t1.nii.gz")}})
    panel = user.dock(viewer, "Stroke risk")  # from the manifest, on napari's proxy viewer
    form = panel.clinical
    assert panel.t1.currentText() == "sub-b" and Path(form.path.text()) == table
    assert (form.subject.text(), form._raw("age")) == ("sub-b", "72")

    panel.t1.setFocus()
    QTest.keyClick(panel.t1, Qt.Key.Key_Down)  # the user picks the next T1: another subject's folder
    qtbot.waitUntil(lambda: form.subject.text() == "sub-a", timeout=2_000)
    assert form._raw("age") == "61" and form.subject_combo.currentText() == "sub-a"

    QTest.keyClick(panel.t1, Qt.Key.Key_Down)  # a T1 whose folder the open table has no row for
    qtbot.waitUntil(lambda: form.subject.text() == "", timeout=2_000)
    assert all(form._raw(c) == "" for c in form.columns) and form.subject_combo.currentIndex() == -1
    assert form.message.text() == "clinical.tsv has no row for subject 'sub-x': pick its row or type it."
    qtbot.mouseClick(panel.runner.run_button, Qt.MouseButton.LeftButton)
    assert not panel.runner.running and "age (age at the scan) is blank" in panel.runner.status.text()

    form.path.clear()  # the table typed in by hand, no subject named: not its first row
    QTest.keyClicks(form.path, str(table))
    QTest.keyClick(form.path, Qt.Key.Key_Return)
    assert form.subject.text() == "" and form._raw("age") == "" and form.subject_combo.count() == 3
    assert form.message.text() == "Pick the subject's row of clinical.tsv, or type it."


def test_a_semicolon_csv_opens_in_the_panel_as_the_core_reads_it(tmp_path, make_napari_viewer, qtbot,
                                                                 monkeypatch) -> None:
    """A spreadsheet's semicolon CSV (decimal-comma locales): typed into Table, its subjects listed, a row picked."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    header, sample_row = (SAMPLE / "clinical.tsv").read_text().splitlines()
    cells = sample_row.split("\t")
    table = tmp_path / "clinical.csv"
    table.write_text("\n".join(";".join(r) for r in (header.split("\t"), ["sub-1", "55", *cells[2:]],
                                                     ["sub-2", "66", *cells[2:]])) + "\n")
    panel = user.dock(make_napari_viewer(), "Stroke risk")
    form = panel.clinical
    QTest.keyClicks(form.path, str(table))
    QTest.keyClick(form.path, Qt.Key.Key_Return)
    assert [form.subject_combo.itemText(i) for i in range(form.subject_combo.count())] == ["sub-1", "sub-2"]
    form.subject_combo.setFocus()
    QTest.keyClick(form.subject_combo, Qt.Key.Key_Down)  # from no row to the first: the user's pick
    assert (form.subject.text(), form._raw("age")) == ("sub-1", "55")
    assert form.row() == {**read_clinical_row(table, "sub-1", form.columns)}


def test_no_model_installed_is_one_sentence_and_no_predict(
        no_shipped_weights, make_napari_viewer, qtbot, tmp_path, monkeypatch) -> None:
    """Nothing installed (the shipped weights gone, no user model): the panel says how to get one, Predict is off."""
    cache = tmp_path / "cache"
    shutil.copytree(SAMPLE, cache / "napari-neuroreview" / "sample_data" / "stroke")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    _viewer, panel = panel_on_sample(make_napari_viewer, qtbot)
    assert panel.model_note.text() == NO_MODEL and NO_MODEL.count(". ") == 0
    assert "reinstall napari-neuroreview" in NO_MODEL and "neuroreview stroke train" in NO_MODEL
    assert not panel.runner.run_button.isEnabled()
