"""The metastasis origin panel on the committed metastasis sample, opened and driven as a user does.

A tiny origin model (1 epoch, width 4, 16-voxel crops of the sample's DWI and contrast T1) is
trained once and installed in a user data folder of its own, recorded there as the default over
the shipped demo model; the panel finds it there as napari opens it (``XDG_DATA_HOME``). Each test
opens the sample's files with the plugin's reader; one classifies with the shipped demo model.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import napari_user as user
from napari_neuroreview.core.io.export import napari_world_to_ras, ras_to_napari_world
from napari_neuroreview.core.io.layers import geometry_of
from napari_neuroreview.core.io.nifti import load_volume, save_volume
from napari_neuroreview.core.io.orientation import plan_display, to_display
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.registry import DEMO_NOTE, set_default
from napari_neuroreview.core.tasks.metastasis.classes import NODES
from napari_neuroreview.core.tasks.metastasis.crops import CropSpec, lesion_crops
from napari_neuroreview.core.tasks.metastasis.model import MODEL_NAME, save_origin_model
from napari_neuroreview.core.tasks.metastasis.train import PAPER_SEQUENCES, MetastasisConfig, MetastasisEstimator
from napari_neuroreview.widgets._heatmap import HeatmapOverlay
from napari_neuroreview.widgets._metastasis_results import GRADCAM_PREFIX, NODE_LABELS
from napari_neuroreview.widgets import metastasis as metastasis_widget
from napari_neuroreview.widgets.case import camera_of
from napari_neuroreview.widgets.metastasis import NO_MODEL, NONE, MetastasisWidget, sequence_of

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "metastasis"
SEQS, SPEC = ("dwi", "ce_t1"), CropSpec(48.0, 16)
#: What most tests open: the model's two sequences and the lesion labels (each layer costs napari time).
OPENED = ("dwi", "ce_t1", "lesions")
ORIGIN_WORDS = ("origin", "sclc", "nsclc", "breast", "gi", "lung", "primary")


@pytest.fixture(scope="session")
def model_home(tmp_path_factory) -> Path:
    """A user data folder with one tiny origin model, 0.1.0, trained on the sample's three lesions: the default."""
    seqs = {s: load_volume(SAMPLE / f"{s}.nii.gz") for s in SEQS}
    crops = lesion_crops(seqs, load_volume(SAMPLE / "lesions.nii.gz"), channels=SEQS, spec=SPEC)
    est = MetastasisEstimator(MetastasisConfig(width=4, sequences=SEQS, epochs=1, batch=4, dropout=0.0), "cpu")
    run_to_completion(est.fit(crops, ["SCLC", "breast", "GI"][:len(crops)]))
    home = tmp_path_factory.mktemp("xdg")
    root = home / "napari-neuroreview" / "models"
    save_origin_model(est, root, "0.1.0", "the sample's lesions (test)")
    set_default(MODEL_NAME, "0.1.0", [root])  # the user's choice over the shipped demo model
    return home


@pytest.fixture
def installed(model_home, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(model_home))
    return model_home


def open_sample(viewer, stems=OPENED) -> None:
    for stem in stems:
        viewer.open(str(SAMPLE / f"{stem}.nii.gz"), plugin="napari-neuroreview")


def panel_of(viewer, qtbot) -> MetastasisWidget:
    panel = user.dock(viewer, "Metastasis origin")
    assert isinstance(panel, MetastasisWidget)
    qtbot.wait(10)  # the combos follow the layer names once Qt has delivered the user's picks
    panel.device.combo.setCurrentText("cpu")
    return panel


def classify(panel, qtbot) -> None:
    panel.runner.run_button.click()
    qtbot.waitUntil(lambda: not panel.runner.running, timeout=60_000)


def truth_lesions() -> dict:
    return {les["id"]: les for les in json.loads((SAMPLE / "truth.json").read_text())["lesions"]}


def gradcam_layers(viewer) -> list:
    return [layer for layer in viewer.layers if layer.name.startswith(GRADCAM_PREFIX)]


@pytest.mark.parametrize("name, sequence", [
    ("ce_t1", "ce_t1"), ("CE-T1", "ce_t1"), ("t1c", "ce_t1"), ("T1 Gd", "ce_t1"), ("sub-01_T1w_ce", "ce_t1"),
    ("T1", "t1"), ("t1w", "t1"), ("sequence_t1", "t1"), ("T2", "t2"), ("T2-FLAIR", "flair"), ("flair", "flair"),
    ("DWI", "dwi"), ("dwi_b1000", "dwi"), ("ADC", "adc"), ("lesions", None), ("Grad-CAM: lung vs non-lung", None),
])
def test_a_layer_name_says_its_sequence(name, sequence) -> None:
    assert sequence_of(name) == sequence


def test_classify_fills_the_table_the_tree_and_one_gradcam_layer_on_the_contrast_t1(
        installed, make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer)
    panel = panel_of(viewer, qtbot)
    assert {s: p.currentText() for s, p in panel.pickers.items()} == {
        "ce_t1": "ce_t1", "dwi": "dwi", "t1": NONE, "t2": NONE, "flair": NONE, "adc": NONE}
    assert panel.lesion_picker.currentText() == "lesions"
    assert panel.model_note.text() == "metastasis-origin 0.1.0 reads DWI and contrast T1."
    assert panel.runner.run_button.isEnabled()

    classify(panel, qtbot)
    assert panel.runner.last_error is None, panel.runner.status.text()
    result = panel.result
    ce = viewer.layers["ce_t1"]
    labels = np.asarray(viewer.layers["lesions"].data)
    table = panel.results.table
    assert [int(table.item(r, 0).text()) for r in range(table.rowCount())] == [1, 2, 3]
    for row, lesion in enumerate(result.lesions):  # mL from the labels on the 2 mm grid
        assert float(table.item(row, 1).text()) == pytest.approx(np.count_nonzero(labels == lesion.id) * 8e-3, abs=0.01)
        assert table.item(row, 2).text().startswith(lesion.prediction)
    assert any("DWI image is on another grid" in m for m in result.messages)
    assert "DWI image is on another grid" in panel.messages.text()

    # The tree of the selected lesion: each pair sums to 100 %, the four origins too, and they are the model's.
    table.selectRow(1)
    shown = panel.results.tree_percentages()
    assert shown["lung"][0] + shown["non-lung"][0] == pytest.approx(100.0, abs=0.11)
    assert shown["SCLC"][0] + shown["NSCLC"][0] == pytest.approx(100.0, abs=0.11)
    assert shown["breast"][0] + shown["GI"][0] == pytest.approx(100.0, abs=0.11)
    assert sum(shown[o][1] for o in ("SCLC", "NSCLC", "breast", "GI")) == pytest.approx(100.0, abs=0.2)
    doc = result.lesions[1].to_json()
    for name, key in (("lung", "lung"), ("non-lung", "non_lung"), ("SCLC", "SCLC"), ("GI", "GI")):
        assert shown[name][0] == pytest.approx(100 * doc["probabilities"][key], abs=0.051)
    assert shown["breast"][1] == pytest.approx(100 * doc["four_class"]["breast"], abs=0.051)
    # ... and the view is centred on that lesion, on its slice.
    world = ras_to_napari_world(result.lesions[1].world_ras_mm)
    assert np.allclose(viewer.dims.point[-3:], world, atol=1.01 * max(ce.scale))
    assert np.allclose(camera_of(viewer).center[-2:], world[-2:], atol=1e-3)

    # One Grad-CAM layer, on the contrast T1's grid, placed as it is.
    cams = gradcam_layers(viewer)
    assert len(cams) == 1 and cams[0].name == GRADCAM_PREFIX + NODE_LABELS[NODES[0]]
    cam = cams[0]
    assert cam.data.shape == ce.data.shape
    np.testing.assert_allclose(cam.scale, ce.scale)
    np.testing.assert_allclose(cam.translate, ce.translate)
    np.testing.assert_allclose(cam.affine.affine_matrix, ce.affine.affine_matrix)
    np.testing.assert_allclose(cam.metadata["affine"], ce.metadata["affine"])
    assert str(cam.blending) == "translucent" and cam.colormap.name.startswith("inferno")
    assert cam.colormap.colors[0, 3] == 0.0 and cam.colormap.colors[-1, 3] == 1.0  # below the threshold: transparent

    # Each node replaces the data of that one layer; some node lights up inside the lesions, and only
    # within the crops around them (a flipped or shifted overlay would light up elsewhere).
    centres = np.array([lesion.world_ras_mm for lesion in result.lesions])
    reach = SPEC.size_mm / 2 * np.sqrt(3) + 2 * max(ce.scale)
    lit = []
    for k, node in enumerate(NODES):
        panel.gradcam.node.setCurrentIndex(k)
        assert gradcam_layers(viewer) == [cam] and cam.name == GRADCAM_PREFIX + NODE_LABELS[node]
        data = np.asarray(cam.data)
        assert np.array_equal(data, to_display(result.cam[..., k], plan_display(result.cam.shape[:3], result.affine),
                                               order=1).astype(np.float32))
        lit.append(float(data[labels > 0].max()))
        on = np.argwhere(data > 0)
        ras = napari_world_to_ras(on * np.asarray(ce.scale) + np.asarray(ce.translate))
        assert np.min(np.linalg.norm(ras[:, None, :] - centres[None], axis=2), axis=1).max() <= reach
    assert max(lit) > 0
    panel.gradcam.node.setCurrentIndex(int(np.argmax(lit)))
    top = float(np.asarray(cam.data).max())
    panel.gradcam.threshold.setValue(50)
    panel.gradcam.opacity.setValue(30)
    assert cam.contrast_limits[0] == pytest.approx(0.5 * top, rel=1e-5) and cam.opacity == pytest.approx(0.3)

    classify(panel, qtbot)  # again: still the one layer
    assert gradcam_layers(viewer) == [cam]


def test_the_shared_heatmap_overlay_styles_one_layer_and_moves_it_to_another_reference(make_napari_viewer,
                                                                                      qtbot) -> None:
    """The overlay both explanation panels use: threshold and opacity style its layer; a second draw moves it."""
    viewer = make_napari_viewer()
    a = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="a", scale=(2, 2, 2), translate=(1, 2, 3),
                         metadata={"affine": np.eye(4)})
    b = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="b", scale=(3, 1, 1), translate=(-5, 0, 7),
                         affine=[[1, 0, 0, 0], [0, 0.9, 0.1, 0], [0, -0.1, 0.9, 0], [0, 0, 0, 1]],
                         metadata={"affine": 2 * np.eye(4)})
    overlay = HeatmapOverlay(viewer, threshold=0.2, opacity=0.7, colormaps=("inferno", "magma"))
    qtbot.addWidget(overlay)
    assert not overlay.isEnabled() and overlay.form.rowCount() == 4  # colormap, threshold, opacity, note
    assert HeatmapOverlay(viewer, threshold=0.2, opacity=0.7, colormaps=("inferno",)).form.rowCount() == 3  # no combo
    data = np.linspace(0.0, 4.0, 120, dtype=np.float32).reshape(4, 5, 6)
    layer = overlay.draw(data, a, "heat")
    assert overlay.isEnabled() and layer.name == "heat" and layer.metadata["over"] == "a"
    assert str(layer.interpolation2d) == "nearest" and str(layer.blending) == "translucent"
    assert layer.contrast_limits == pytest.approx((0.8, 4.0)) and layer.opacity == pytest.approx(0.7)
    overlay.threshold.setValue(50)
    overlay.opacity.setValue(30)
    assert layer.contrast_limits == pytest.approx((2.0, 4.0)) and layer.opacity == pytest.approx(0.3)
    overlay.colormap.setCurrentText("magma")
    assert layer.colormap.name.startswith("magma ") and layer.colormap.colors[0, 3] == 0.0

    moved = overlay.draw(2 * data, b, "heat 2", note="zero")
    assert moved is layer and [lay.name for lay in viewer.layers] == ["a", "b", "heat 2"]
    np.testing.assert_allclose(layer.scale, b.scale)
    np.testing.assert_allclose(layer.translate, b.translate)
    np.testing.assert_allclose(layer.affine.affine_matrix, b.affine.affine_matrix)
    assert not np.allclose(a.affine.affine_matrix, b.affine.affine_matrix)
    np.testing.assert_allclose(layer.metadata["affine"], 2 * np.eye(4))
    assert layer.metadata["over"] == "b" and overlay.note.text() == "zero"
    assert layer.contrast_limits == pytest.approx((4.0, 8.0)) and layer.opacity == pytest.approx(0.3)

    viewer.layers.remove(layer)  # the user deleted it: the next draw adds one again
    again = overlay.draw(data, a, "heat")
    assert again is not layer and [lay.name for lay in viewer.layers] == ["a", "b", "heat"]


@pytest.fixture(scope="module")
def tilted(tmp_path_factory) -> Path:
    """The sample's patient scanned tilted (4 and 3 degrees) on a 3 mm grid: napari shows it resampled."""
    from napari_neuroreview.core.phantoms.metastasis import (make_metastasis_patient, render_metastasis_patient,
                                                              write_metastasis_patient)

    folder = tmp_path_factory.mktemp("tilted")
    case = render_metastasis_patient(make_metastasis_patient(8, "A"), voxel_size=(3.0, 3.0, 3.0),
                                     rotation_deg=(4.0, 0.0, 3.0))
    write_metastasis_patient(folder, case, {"test": "tilted"})
    return folder


def test_an_oblique_contrast_t1_gets_its_gradcam_on_the_lesions(installed, tilted, make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    for stem in OPENED:
        viewer.open(str(tilted / f"{stem}.nii.gz"), plugin="napari-neuroreview")
    ce = viewer.layers["ce_t1"]
    assert geometry_of(ce.metadata).resampled  # the display is not the file's grid: the path under test
    panel = panel_of(viewer, qtbot)
    classify(panel, qtbot)
    assert panel.runner.last_error is None, panel.runner.status.text()
    assert not any("resampled (nearest" in m for m in panel.result.messages)  # labels and T1: one display grid
    labels = np.asarray(viewer.layers["lesions"].data)
    (cam,) = gradcam_layers(viewer)
    assert cam.data.shape == ce.data.shape
    np.testing.assert_allclose(cam.scale, ce.scale)
    np.testing.assert_allclose(cam.translate, ce.translate)
    centres = np.array([lesion.world_ras_mm for lesion in panel.result.lesions])
    truth = np.array([les["world_ras_mm"] for les in json.loads((tilted / "truth.json").read_text())["lesions"]])
    assert np.linalg.norm(centres - truth, axis=1).max() < 3.0  # the lesions where they were drawn
    reach = SPEC.size_mm / 2 * np.sqrt(3) + 2 * max(ce.scale)
    lit = []
    for k in range(len(NODES)):
        panel.gradcam.node.setCurrentIndex(k)
        data = np.asarray(cam.data)
        lit.append(float(data[labels > 0].max()))
        ras = napari_world_to_ras(np.argwhere(data > 0) * np.asarray(ce.scale) + np.asarray(ce.translate))
        assert np.min(np.linalg.norm(ras[:, None, :] - centres[None], axis=2), axis=1).max() <= reach
    assert max(lit) > 0


def to_world(layer, ijk: np.ndarray) -> np.ndarray:
    """A layer's data indices (N, 3) -> napari world, as napari places them (scale, translate, then affine)."""
    matrix = np.asarray(layer.affine.affine_matrix)[-4:, -4:]
    return (np.asarray(ijk, float) * np.asarray(layer.scale)[-3:] + np.asarray(layer.translate)[-3:]) @ matrix[:3, :3].T \
        + matrix[:3, 3]


def lit_per_node(panel, cam, labels_layer) -> list[float]:
    """Each node's Grad-CAM max inside the lesions, read through napari's world coordinates (where the user sees it)."""
    world = to_world(labels_layer, np.argwhere(np.asarray(labels_layer.data) > 0))
    matrix = np.asarray(cam.affine.affine_matrix)[-4:, -4:]
    local = (world - matrix[:3, 3]) @ np.linalg.inv(matrix[:3, :3]).T
    ijk = np.round((local - np.asarray(cam.translate)[-3:]) / np.asarray(cam.scale)[-3:]).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.asarray(cam.data.shape)), axis=1)
    lit = []
    for k in range(len(NODES)):
        panel.gradcam.node.setCurrentIndex(k)
        data = np.asarray(cam.data)
        lit.append(float(data[tuple(ijk[ok].T)].max()) if ok.any() else 0.0)
    return lit


def same_placement(a, b) -> bool:
    return (a.data.shape == b.data.shape and np.allclose(a.scale, b.scale) and np.allclose(a.translate, b.translate)
            and np.allclose(a.affine.affine_matrix, b.affine.affine_matrix))


@pytest.fixture(scope="module")
def cropped(tmp_path_factory) -> Path:
    """Another patient's contrast T1 and lesions: the sample's on another field of view (other shape and origin)."""
    folder = tmp_path_factory.mktemp("cropped")
    lo, hi = np.array([3, 6, 4]), np.array([75, 92, 80])
    for stem, dtype in (("ce_t1", np.float32), ("lesions", np.uint8)):
        volume = load_volume(SAMPLE / f"{stem}.nii.gz")
        affine = volume.affine.copy()
        affine[:3, 3] = volume.affine[:3, :3] @ lo + volume.affine[:3, 3]
        save_volume(folder / f"{stem}.nii.gz", np.asarray(volume.data)[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], affine,
                    dtype=dtype)
    return folder


def test_a_second_patient_on_another_grid_gets_its_gradcam_on_its_own_lesions(
        installed, cropped, make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer)
    panel = panel_of(viewer, qtbot)
    classify(panel, qtbot)
    (cam,) = gradcam_layers(viewer)
    for name in ("ce_t1", "lesions"):  # patient A closed, patient B opened (the Grad-CAM layer stays)
        viewer.layers.remove(name)
    for stem in ("ce_t1", "lesions"):
        viewer.open(str(cropped / f"{stem}.nii.gz"), plugin="napari-neuroreview")
    qtbot.wait(10)
    ce, labels = viewer.layers["ce_t1"], viewer.layers["lesions"]
    assert ce.data.shape != cam.data.shape and not np.allclose(ce.translate, cam.translate)  # the path under test
    classify(panel, qtbot)
    assert panel.runner.last_error is None, panel.runner.status.text()
    assert gradcam_layers(viewer) == [cam] and same_placement(cam, ce)
    assert max(lit_per_node(panel, cam, labels)) > 0
    centres = np.array([lesion.world_ras_mm for lesion in panel.result.lesions])
    truth = np.array([les["world_ras_mm"] for les in truth_lesions().values()])
    assert np.linalg.norm(centres - truth, axis=1).max() < 2.0  # the same lesions, where they are in the world
    reach = SPEC.size_mm / 2 * np.sqrt(3) + 2 * max(ce.scale)
    for k in range(len(NODES)):
        panel.gradcam.node.setCurrentIndex(k)
        on = np.argwhere(np.asarray(cam.data) > 0)
        ras = napari_world_to_ras(to_world(cam, on))
        assert np.min(np.linalg.norm(ras[:, None, :] - centres[None], axis=2), axis=1).max() <= reach


def test_an_oblique_contrast_t1_whose_file_is_gone_gets_its_gradcam_on_the_lesions(
        installed, tilted, make_napari_viewer, qtbot, tmp_path) -> None:
    folder = tmp_path / "tilted"
    shutil.copytree(tilted, folder)
    viewer = make_napari_viewer()
    for stem in OPENED:
        viewer.open(str(folder / f"{stem}.nii.gz"), plugin="napari-neuroreview")
    (folder / "ce_t1.nii.gz").unlink()  # moved away after opening: the display grid is what the model reads
    ce, labels = viewer.layers["ce_t1"], viewer.layers["lesions"]
    assert geometry_of(ce.metadata).resampled
    panel = panel_of(viewer, qtbot)
    classify(panel, qtbot)
    assert panel.runner.last_error is None, panel.runner.status.text()
    assert np.allclose(panel.result.affine, geometry_of(ce.metadata).display_affine)  # the path under test
    (cam,) = gradcam_layers(viewer)
    assert same_placement(cam, ce)
    assert max(lit_per_node(panel, cam, labels)) > 0
    centres = np.array([lesion.world_ras_mm for lesion in panel.result.lesions])
    reach = SPEC.size_mm / 2 * np.sqrt(3) + 2 * max(ce.scale)
    for k in range(len(NODES)):
        panel.gradcam.node.setCurrentIndex(k)
        ras = napari_world_to_ras(np.argwhere(np.asarray(cam.data) > 0) * np.asarray(ce.scale) + np.asarray(ce.translate))
        assert np.min(np.linalg.norm(ras[:, None, :] - centres[None], axis=2), axis=1).max() <= reach


def test_an_edited_layer_the_model_does_not_read_does_not_block_classify(
        installed, make_napari_viewer, qtbot, monkeypatch) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer, (*OPENED, "t2"))
    t2 = viewer.layers["t2"]
    t2.data = np.asarray(t2.data) + 1.0  # edited in napari: no longer the file's voxels
    reads = []
    real = metastasis_widget.volume_from_layer

    def recording(display, metadata, name="layer", grid="source"):
        reads.append((name, grid, threading.current_thread() is threading.main_thread()))
        return real(display, metadata, name, grid=grid)

    monkeypatch.setattr(metastasis_widget, "volume_from_layer", recording)
    panel = panel_of(viewer, qtbot)
    assert panel.pickers["t2"].currentText() == "t2"
    classify(panel, qtbot)
    assert panel.runner.last_error is None, panel.runner.status.text()
    assert [lesion.id for lesion in panel.result.lesions] == [1, 2, 3]
    assert sorted(name for name, grid, _ in reads if grid == "source") == ["ce_t1", "dwi"]
    assert not any(on_gui for _, _, on_gui in reads)  # the reading is the worker's


def test_a_cancelled_run_leaves_the_last_result_and_its_gradcam_as_they_were(
        installed, make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer)
    panel = panel_of(viewer, qtbot)
    classify(panel, qtbot)
    table = panel.results.table
    result, (cam,) = panel.result, gradcam_layers(viewer)
    panel.gradcam.node.setCurrentIndex(1)
    rows = [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]
    tree, data, name = panel.results.tree_percentages(), np.array(cam.data), cam.name
    panel.runner.run_button.click()
    assert panel.runner.running
    panel.runner.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.runner.running, timeout=30_000)
    qtbot.wait(50)
    assert panel.runner.status.text() == "Cancelled" and panel.result is result
    assert [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())] == rows
    assert panel.results.tree_percentages() == tree
    assert gradcam_layers(viewer) == [cam] and cam.name == name and np.array_equal(cam.data, data)
    assert panel.gradcam.isEnabled() and panel.gradcam.node.currentIndex() == 1


def test_cancel_stops_the_run_and_adds_no_layer(installed, make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer)
    panel = panel_of(viewer, qtbot)
    before = [layer.name for layer in viewer.layers]
    panel.runner.run_button.click()
    assert panel.runner.running
    panel.runner.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.runner.running, timeout=30_000)
    assert panel.runner.status.text() == "Cancelled" and panel.result is None
    assert [layer.name for layer in viewer.layers] == before and panel.results.table.rowCount() == 0


def test_a_click_on_the_contrast_t1_grows_a_new_lesion_id(installed, make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer, ("ce_t1",))  # no lesion labels yet
    panel = panel_of(viewer, qtbot)
    assert panel.lesion_picker.layer() is None
    ce_file = load_volume(SAMPLE / "ce_t1.nii.gz")
    truth = to_display(np.asarray(load_volume(SAMPLE / "lesions.nii.gz").data),
                       plan_display(ce_file.shape, ce_file.affine), order=0)
    panel.grow_button.click()
    assert panel.grow_button.isChecked() and viewer.layers.selection.active.name == "ce_t1"

    for new_id, truth_id in ((1, 2), (2, 1)):
        world = ras_to_napari_world(truth_lesions()[truth_id]["world_ras_mm"])
        viewer.dims.set_point(range(3), tuple(world))
        user.click(viewer, world)
        qtbot.waitUntil(lambda: panel.grow_worker is None and "lesions" in viewer.layers
                        and int(np.asarray(viewer.layers["lesions"].data).max()) == new_id, timeout=30_000)
        labels = viewer.layers["lesions"]
        data = np.asarray(labels.data)
        grown, true = data == new_id, truth == truth_id
        assert 2 * np.count_nonzero(grown & true) / (np.count_nonzero(grown) + np.count_nonzero(true)) > 0.6
    assert set(np.unique(data)) == {0, 1, 2}
    np.testing.assert_allclose(labels.scale, viewer.layers["ce_t1"].scale)
    assert panel.lesion_picker.currentText() == "lesions"
    labels.undo()  # napari's own undo takes the last grown lesion back
    assert set(np.unique(np.asarray(labels.data))) == {0, 1}


def test_no_model_installed_is_one_sentence_and_no_classify(no_shipped_weights, make_napari_viewer, qtbot, tmp_path,
                                                            monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    viewer = make_napari_viewer()
    open_sample(viewer, ("ce_t1", "lesions"))
    panel = panel_of(viewer, qtbot)
    assert panel.model_note.text() == NO_MODEL and "neuroreview metastasis train" in NO_MODEL
    assert NO_MODEL.count(". ") == 0 and not panel.runner.run_button.isEnabled()


def test_a_missing_sequence_the_model_reads_is_the_core_sentence(installed, make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer)
    panel = panel_of(viewer, qtbot)
    dwi = panel.pickers["dwi"]
    dwi.setCurrentText(NONE)
    dwi.activated.emit(dwi.currentIndex())  # what Qt says when the user picks an item
    qtbot.wait(10)
    assert dwi.currentText() == NONE  # the name no longer chooses for it
    classify(panel, qtbot)
    assert panel.runner.status.text() == ("The metastasis-origin 0.1.0 model reads DWI and contrast T1, "
                                          "but DWI was not given.")
    assert gradcam_layers(viewer) == [] and panel.results.table.rowCount() == 0


def test_the_sample_opens_named_for_the_panel_without_its_origin(installed, make_napari_viewer, qtbot, tmp_path,
                                                                 monkeypatch) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(SAMPLE, cache / "napari-neuroreview" / "sample_data" / "metastasis")  # as if made before
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-neuroreview", "metastasis")
    names = [layer.name for layer in viewer.layers]
    assert names == ["T1", "T2", "FLAIR", "DWI", "ADC", "CE-T1", "lesions"]
    assert [layer.name for layer in viewer.layers if layer.visible] == ["CE-T1", "lesions"]
    assert not any(word in name.lower().split() for name in names for word in ORIGIN_WORDS)
    panel = panel_of(viewer, qtbot)
    assert {s: p.currentText() for s, p in panel.pickers.items()} == {
        "ce_t1": "CE-T1", "t1": "T1", "t2": "T2", "flair": "FLAIR", "dwi": "DWI", "adc": "ADC"}
    assert panel.lesion_picker.currentText() == "lesions"


def test_a_model_trained_while_the_panel_is_open_appears_when_it_is_shown_again(
        model_home, no_shipped_weights, make_napari_viewer, qtbot, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    viewer = make_napari_viewer(show=True)
    open_sample(viewer, ("ce_t1",))
    panel = panel_of(viewer, qtbot)
    assert panel.model_note.text() == NO_MODEL
    shutil.copytree(model_home, tmp_path / "data")  # `neuroreview metastasis train` in a terminal meanwhile
    panel.hide()  # another dock tab in front, then this one again
    panel.show()
    qtbot.waitUntil(panel.isVisible, timeout=5_000)
    assert panel.model_note.text().startswith("metastasis-origin 0.1.0 reads") and panel.runner.run_button.isEnabled()


def test_view_sample_metastasis_docks_the_panel_ready_on_its_layers(installed, make_napari_viewer, qtbot, tmp_path,
                                                                    monkeypatch) -> None:
    """`neuroreview view --sample metastasis`: the sample's layers, and the panel docked on them."""
    from napari_neuroreview.viewer import open_viewer

    cache = tmp_path / "cache"
    shutil.copytree(SAMPLE, cache / "napari-neuroreview" / "sample_data" / "metastasis")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    viewer, _case = open_viewer(sample="metastasis", run=False, viewer=make_napari_viewer())
    docked = [w for w in viewer.window.dock_widgets.values() if isinstance(w, MetastasisWidget)]
    assert len(docked) == 1  # docked by `view`, not by this test
    panel = panel_of(viewer, qtbot)
    assert panel is docked[0]
    assert panel.pickers["ce_t1"].currentText() == "CE-T1" and panel.lesion_picker.currentText() == "lesions"
    assert panel.model_note.text().startswith("metastasis-origin 0.1.0 reads") and panel.runner.run_button.isEnabled()


def test_the_shipped_demo_model_classifies_the_sample(make_napari_viewer, qtbot, tmp_path, monkeypatch) -> None:
    """An empty user registry: `neuroreview view --sample metastasis` docks the panel on the shipped demo model,
    the only version listed, and Classify gives every lesion a valid tree and a Grad-CAM map on it."""
    from napari_neuroreview.viewer import open_viewer

    cache = tmp_path / "cache"
    shutil.copytree(SAMPLE, cache / "napari-neuroreview" / "sample_data" / "metastasis")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    viewer, _case = open_viewer(sample="metastasis", run=False, viewer=make_napari_viewer())
    panel = panel_of(viewer, qtbot)
    combo = panel.versions.combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["1.0.0"]
    assert combo.currentText().startswith("1.0.0 (default)") and "demo weights" in combo.currentText()
    assert "reviews" not in combo.currentText()  # held-out reviews are a microbleed idea (tag_label)
    card = panel.versions.card()
    assert card.name == MODEL_NAME and DEMO_NOTE in card.notes and card.config["sequences"] == list(PAPER_SEQUENCES)
    assert panel.model_note.text().startswith("metastasis-origin 1.0.0 reads") and panel.runner.run_button.isEnabled()
    assert {s: panel.pickers[s].currentText() for s in PAPER_SEQUENCES} == {
        "t1": "T1", "t2": "T2", "flair": "FLAIR", "dwi": "DWI", "ce_t1": "CE-T1"}

    classify(panel, qtbot)
    assert panel.runner.last_error is None, panel.runner.status.text()
    result = panel.result
    assert result.model == {"name": MODEL_NAME, "version": "1.0.0"}
    assert [lesion.id for lesion in result.lesions] == [1, 2, 3] and panel.results.table.rowCount() == 3
    for lesion in result.lesions:
        doc = lesion.to_json()
        p = doc["probabilities"]
        assert all(0.0 <= v <= 1.0 for v in p.values())
        for a, b in (("lung", "non_lung"), ("SCLC", "NSCLC"), ("breast", "GI")):
            assert p[a] + p[b] == pytest.approx(1.0, abs=1e-6)
        assert sum(doc["four_class"].values()) == pytest.approx(1.0, abs=1e-6)
    panel.results.table.selectRow(0)
    shown = panel.results.tree_percentages()
    assert shown["lung"][0] + shown["non-lung"][0] == pytest.approx(100.0, abs=0.11)
    assert sum(shown[o][1] for o in ("SCLC", "NSCLC", "breast", "GI")) == pytest.approx(100.0, abs=0.2)
    (cam,) = gradcam_layers(viewer)
    assert same_placement(cam, viewer.layers["CE-T1"])
    assert max(lit_per_node(panel, cam, viewer.layers["lesions"])) > 0  # a map on the lesions, not an empty layer
