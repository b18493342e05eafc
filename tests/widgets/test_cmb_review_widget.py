"""The microbleed review and retraining widgets, driven as a radiologist would."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

import napari_user
import napari_user as user
from napari_neuroreview.core.io.export import napari_world_to_ras, ras_to_napari_world
from napari_neuroreview.core.progress import Progress
from napari_neuroreview.core.registry import ModelCard, default_registry_root, save_model, set_default
from napari_neuroreview.core.store import CaseStore
from napari_neuroreview.core.tasks.cmb import model
from napari_neuroreview.core.tasks.cmb.io import write_detections
from napari_neuroreview.widgets import cmb_train
from napari_neuroreview.widgets.cmb_review import STATUS_RGBA, CMBReviewWidget

from cmb_synthetic import synthetic_swi
from synthetic import reorient_to, save_nifti


@pytest.fixture(autouse=True)
def user_data(tmp_path, monkeypatch) -> Path:
    """Default store and model registry inside the test's folder, never the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def test_the_review_widget_composes_its_parts_rather_than_mixing_them_in(case) -> None:
    """Issue 9: layers, table, device and version are parts the widget owns and wires, not mixins."""
    from qtpy.QtWidgets import QWidget

    from napari_neuroreview.widgets import _cmb_layers, _cmb_table, cmb_review
    from napari_neuroreview.widgets._base import DevicePicker, VersionPicker

    _viewer, widget, _affine, _tmp = case
    assert CMBReviewWidget.__bases__ == (QWidget,)
    assert isinstance(widget.layers, _cmb_layers.ReviewLayers) and isinstance(widget.table, _cmb_table.FindingsTable)
    assert isinstance(widget.device, DevicePicker) and widget.device.label.text().startswith("Using ")
    assert isinstance(widget.versions, VersionPicker) and widget.versions.version() == "0.1.0"
    for module in (cmb_review, _cmb_layers, _cmb_table):
        assert len(Path(module.__file__).read_text(encoding="utf-8").splitlines()) < 600


def save_detector(root: Path, version: str, threshold: float = 0.0) -> ModelCard:
    torch.manual_seed(0)
    card = ModelCard(name=model.MODEL_NAME, version=version, task=model.TASK, config={"width": 8, "threshold": threshold})
    save_model(model.state_dict_cpu(model.build_net(card)), card, root)
    return card


@pytest.fixture
def case(make_napari_viewer, tmp_path):
    """A small LPS-stored SWI with dark spheres opened in napari, and a review widget on it."""
    volume, _ = synthetic_swi(seed=1, shape=(40, 44, 24), zooms=(1.0, 1.0, 2.0))
    data, affine = reorient_to(volume.data, volume.affine, "LPS")
    path = save_nifti(tmp_path / "swi.nii.gz", data, affine)
    save_detector(default_registry_root(), "0.1.0")  # the user's model folder, where the plugin looks
    set_default(model.MODEL_NAME, "0.1.0")
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-neuroreview")
    widget = new_widget(viewer, tmp_path / "reviews.sqlite")
    return viewer, widget, affine, tmp_path


def new_widget(viewer, store: Path) -> CMBReviewWidget:
    """The review widget as the Plugins menu opens it, on a store (typed, or made with New store...)."""
    widget = user.dock(viewer, "Microbleed review")
    if store.exists():
        widget.store_path.setText(str(store))
        widget.store_path.editingFinished.emit()
    else:
        widget.new_store(store)  # the "New store..." button with the file name chosen
    return widget


def press(viewer, key, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """A real key press on the canvas, as napari dispatches it to the active layer."""
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    QTest.keyClick(canvas, key, modifiers)


def run_detection(widget, qtbot) -> None:
    widget.runner.run_button.click()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)


def stored(path: Path) -> dict[int, tuple[str, tuple[float, float, float], str]]:
    """What another process sees in the store: id -> (status, world, source)."""
    with CaseStore(path) as store:
        image = store.images()[0]
        return {f.id: (f.status, f.world, f.source) for f in store.findings_for(image.sha256, task="cmb")}


def test_detect_review_export_and_restore(case, qtbot, tmp_path) -> None:
    viewer, widget, affine, _ = case
    assert widget.threshold.value() == 0.0  # the model card's operating point
    run_detection(widget, qtbot)
    points, masks, scan = viewer.layers["swi CMBs"], viewer.layers["swi CMB masks"], viewer.layers["swi"]
    session = widget.session
    n = len(session.findings)
    assert n >= 3 and len(points.data) == n and widget.table.rowCount() == n
    np.testing.assert_allclose(points.scale, scan.scale)
    np.testing.assert_allclose(masks.translate, scan.translate)
    assert list(points.features.columns) == ["id", "score", "status", "source", "model_version", "volume_mm3", "region"]
    assert set(points.features["status"]) == {"pending"} and set(points.features["model_version"]) == {"0.1.0"}
    scores = [widget.table.item(r, 1).data(Qt.ItemDataRole.UserRole) for r in range(n)]
    assert scores == sorted(scores, reverse=True)
    for i, finding in enumerate(session.findings):  # points and masks sit where the store says
        np.testing.assert_allclose(napari_world_to_ras(points.data_to_world(points.data[i])), finding.world, atol=1e-6)
        ijk = np.asarray(finding.extra["mask_ijk"])
        world = ras_to_napari_world(nib.affines.apply_affine(affine, ijk))
        index = np.rint([masks.world_to_data(w) for w in world]).astype(int)
        assert np.all(masks.data[tuple(index.T)] == finding.id)
    store_path = tmp_path / "reviews.sqlite"

    # Click the second row: the viewer jumps to that CMB and selects its point.
    widget.table.selectRow(1)
    second = session.findings[1]
    target = ras_to_napari_world(second.world)
    assert viewer.dims.point[0] == pytest.approx(target[0], abs=scan.scale[0])
    assert points.selected_data == {1}
    widget.accept_button.click()  # accepts #2, moves on to #3
    assert stored(store_path)[second.id][0] == "accepted"
    np.testing.assert_allclose(points.face_color[1], STATUS_RGBA["accepted"])
    third = session.findings[2]
    assert points.selected_data == {2}
    press(viewer, Qt.Key.Key_R)  # the 'r' key on the points layer
    assert stored(store_path)[third.id][0] == "rejected"
    widget.undo_button.click()
    assert stored(store_path)[third.id][0] == "pending"
    press(viewer, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert stored(store_path)[third.id][0] == "rejected"

    # Add at the cursor, then drag the first point by 1 voxel along P (napari's select tool).
    added_ras = nib.affines.apply_affine(affine, [20, 22, 12])
    viewer.cursor.position = tuple(ras_to_napari_world(added_ras))
    widget.add_button.click()
    user = [fid for fid, (status, _, source) in stored(store_path).items() if source == "user"]
    assert len(user) == 1 and stored(store_path)[user[0]][0] == "added"
    np.testing.assert_allclose(stored(store_path)[user[0]][1], added_ras, atol=1e-6)
    first = session.findings[0]
    moved = np.array(points.data)
    moved[0] += [0, 1, 0]
    points.data = moved
    qtbot.waitUntil(lambda: np.allclose(points.face_color[0], STATUS_RGBA["moved"]), timeout=5_000)
    status, world, _ = stored(store_path)[first.id]
    assert status == "moved"
    np.testing.assert_allclose(world, napari_world_to_ras(points.data_to_world(moved[0])), atol=1e-6)
    assert np.linalg.norm(np.subtract(world, first.world)) == pytest.approx(scan.scale[1])

    # Delete the user-added point with its key: it disappears, the store keeps a 'deleted' rejection.
    widget.jump_to(user[0])
    press(viewer, Qt.Key.Key_Delete)
    assert user[0] not in list(points.features["id"]) and stored(store_path)[user[0]][0] == "rejected"
    widget.undo_button.click()
    assert user[0] in list(points.features["id"])

    # Export: labels on the file's own grid and affine, points in world RAS mm.
    written = widget.export_to(tmp_path / "out", bids=False)
    assert [p.name for p in written] == ["swi_desc-cmb_dseg.nii.gz", "swi_desc-cmb_points.json", "swi_desc-cmb_points.tsv"]
    labels = nib.load(str(written[0]))
    source = nib.load(str(tmp_path / "swi.nii.gz"))
    np.testing.assert_allclose(labels.affine, source.affine)
    assert labels.shape == source.shape
    label_data = np.asarray(labels.dataobj)
    assert (label_data == third.id).sum() == 0  # rejected: not a microbleed
    assert np.all(label_data[tuple(np.asarray(second.extra["mask_ijk"]).T)] == second.id)
    doc = json.loads(written[1].read_text())
    by_id = {p["id"]: p for p in doc["points"]}
    truth = stored(store_path)
    assert set(by_id) == {fid for fid in truth if fid != user[0] or truth[fid][0] != "rejected"}
    for fid, record in by_id.items():
        np.testing.assert_allclose(record["world_ras_mm"], truth[fid][1], atol=1e-3)
        assert record["status"] == truth[fid][0]

    # Close the widget; a new one on the same scan restores the review without running.
    before = {fid: (s, w) for fid, (s, w, _) in stored(store_path).items()}
    widget.close()
    viewer.window.remove_dock_widget(widget)
    again = napari_user.dock(viewer, "Microbleed review")  # the manifest entry (`user` is a list here)
    assert again.session is None  # the default store (empty) knows nothing of this scan
    again.store_path.setText(str(store_path))
    again.store_path.editingFinished.emit()
    assert again.session is not None and again.runner.status.text() == ""
    restored = viewer.layers["swi CMBs"]
    assert restored is not points and again.table.rowCount() == len(restored.data)
    for i, fid in enumerate(restored.features["id"]):
        status, world = before[int(fid)]
        assert restored.features["status"][i] == status
        np.testing.assert_allclose(napari_world_to_ras(restored.data_to_world(restored.data[i])), world, atol=1e-6)
    assert {int(f) for f in restored.features["id"]} == {f for f, (s, _) in before.items() if f != user[0] or s != "rejected"}


def test_phase_on_another_grid_is_refused_with_one_message(case, qtbot, notifications, tmp_path) -> None:
    viewer, widget, affine, _ = case
    phase = np.random.default_rng(0).normal(size=(20, 22, 12)).astype(np.float32)
    viewer.open(str(save_nifti(tmp_path / "phase.nii.gz", phase, affine @ np.diag([2, 2, 2, 1]))),
                plugin="napari-neuroreview")
    widget.phase_combo.setCurrentText("phase")
    widget.swi_combo.setCurrentText("swi")
    notifications.clear()
    widget.runner.run_button.click()
    assert not widget.runner.running
    errors = [m for m in notifications if "grid" in m]
    assert len(errors) == 1 and "phase" in errors[0] and "different grid" in errors[0]
    assert "swi CMBs" not in viewer.layers and "swi CMB masks" not in viewer.layers
    with CaseStore(tmp_path / "reviews.sqlite") as store:
        assert store.summary()["findings"] == 0 and store.summary()["images"] == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [(np.ones((12, 14, 10, 3), np.float32), "4D series"), (np.zeros((12, 14, 10), np.float32), "all zero")],
    ids=["4d", "all-zero"],
)
def test_unusable_swi_gives_one_message_and_writes_nothing(case, qtbot, notifications, tmp_path, data, message) -> None:
    viewer, widget, affine, _ = case
    viewer.open(str(save_nifti(tmp_path / "bad.nii.gz", data, affine)), plugin="napari-neuroreview")
    widget.swi_combo.setCurrentText("bad")
    notifications.clear()
    widget.runner.run_button.click()
    assert not widget.runner.running
    assert len([m for m in notifications if message in m]) == 1
    assert not [layer for layer in viewer.layers if "CMB" in layer.name]
    with CaseStore(tmp_path / "reviews.sqlite") as store:
        assert store.summary()["findings"] == 0


def test_detections_of_another_scan_are_refused(case, qtbot, notifications, tmp_path) -> None:
    viewer, widget, _, _ = case
    other, _ = synthetic_swi(seed=5, shape=(40, 44, 24), zooms=(1.0, 1.0, 2.0))
    from napari_neuroreview.core.progress import run_to_completion
    from napari_neuroreview.core.tasks.cmb.detect import run

    detector = model.load_detector(None, "cpu", None)
    det = tmp_path / "other_det.json"
    write_detections(run_to_completion(run(other, None, detector, threshold=0.0, device="cpu")), det)
    notifications.clear()
    widget.import_detections_from(det)
    assert len([m for m in notifications if "made on another scan" in m]) == 1
    assert "swi CMBs" not in viewer.layers
    with CaseStore(tmp_path / "reviews.sqlite") as store:
        assert store.summary()["findings"] == 0 and store.summary()["images"] == 0


def test_retraining_offers_the_new_version(case, qtbot, notifications, tmp_path, monkeypatch) -> None:
    viewer, review, _, _ = case
    trainer = user.dock(viewer, "Microbleed retraining")
    assert trainer.store_path.text() == str(tmp_path / "reviews.sqlite")  # the review widget's store

    notifications.clear()
    trainer.runner.run_button.click()  # nothing reviewed yet: one sentence, no version
    qtbot.waitUntil(lambda: not trainer.runner.running, timeout=30_000)
    assert any("review more scans first" in m for m in notifications)
    assert trainer.last_card is None

    calls = {}

    def fake_retrain(made_default: bool, version: str):
        def retrain_from_store(store_path, root, base_version, config, version_=None, device="auto", roots=None):
            from napari_neuroreview.core.registry import set_default
            from napari_neuroreview.core.tasks.cmb.retrain import RetrainResult

            calls.update(store=Path(store_path), base=base_version, epochs=config.epochs)
            yield Progress(1, 2, "Fine-tuning")
            card = save_detector(Path(root), version, threshold=0.25)
            card.parent = "0.1.0"
            card.config["held_out"] = {"n_scans": 2, "parent": "0.1.0"}
            before = {"threshold": 0.0, "sensitivity": 0.5, "fp_per_subject": 3.0}
            after = {"threshold": 0.25, "sensitivity": 0.75 if made_default else 0.25, "fp_per_subject": 2.0}
            if made_default:
                set_default(model.MODEL_NAME, version, roots)
            else:  # what the real one does: flag the card, keep the default as it is
                card.config["not_default"] = "worse on held-out reviews than 0.1.0: sensitivity 0.50 \u2192 0.25"
                set_default(model.MODEL_NAME, "0.1.0", roots)
            verdict = (f"{version} is now the default: not worse than 0.1.0 on held-out reviews." if made_default
                       else f"{version} is kept but is not the default: worse than 0.1.0 on held-out reviews "
                            "(sensitivity 0.50 \u2192 0.25).")
            return RetrainResult(card, before, after, made_default, verdict, version if made_default else "0.1.0")

        return retrain_from_store

    # A worse new version is kept, the user is told, and the review widget keeps the default.
    monkeypatch.setattr(cmb_train, "retrain_from_store", fake_retrain(False, "0.2.0"))
    trainer.settings.widget("epochs").setValue(3)
    notifications.clear()
    trainer.runner.run_button.click()
    qtbot.waitUntil(lambda: not trainer.runner.running, timeout=30_000)
    assert calls == {"store": tmp_path / "reviews.sqlite", "base": None, "epochs": 3}
    assert "0.2.0 is kept but is not the default" in trainer.result.text()
    assert [m for m in notifications if "0.2.0 is kept but is not the default" in m]
    assert review.versions.version() == "0.1.0" and "(default)" in review.versions.combo.currentText()

    # A better one becomes the default; both versions' held-out figures are shown.
    monkeypatch.setattr(cmb_train, "retrain_from_store", fake_retrain(True, "0.3.0"))
    trainer.runner.run_button.click()
    qtbot.waitUntil(lambda: not trainer.runner.running, timeout=30_000)
    text = trainer.result.text()
    assert "sensitivity 0.50" in text and "sensitivity 0.75" in text and "0.3.0 is now the default" in text
    assert review.versions.version() == "0.3.0"
    assert review.threshold.value() == pytest.approx(0.25)

    # Roll back and set the default from the retraining widget; the review widget follows.
    trainer.rollback_button.click()
    assert review.versions.version() == "0.1.0"
    trainer.versions.combo.setCurrentIndex(trainer.versions.combo.findData("0.2.0"))
    trainer.set_default_button.click()
    assert review.versions.version() == "0.2.0" and model.load_detector(
        None, "cpu", None).card.version == "0.2.0"


def test_napari_point_tools_are_recorded_too(case, qtbot, tmp_path) -> None:
    viewer, widget, affine, _ = case
    run_detection(widget, qtbot)
    points, store_path = viewer.layers["swi CMBs"], tmp_path / "reviews.sqlite"
    first = widget.session.findings[0].id
    target = nib.affines.apply_affine(affine, [10, 30, 6])
    points.add(points.world_to_data(ras_to_napari_world(target)))  # napari's add tool
    qtbot.waitUntil(lambda: "user" in list(points.features["source"]), timeout=5_000)
    user = [fid for fid, (_, _, source) in stored(store_path).items() if source == "user"]
    assert len(user) == 1 and stored(store_path)[user[0]][0] == "added"
    np.testing.assert_allclose(stored(store_path)[user[0]][1], target, atol=1e-6)
    points.selected_data = {0}
    points.remove_selected()  # napari's own delete: the detection stays, rejected
    qtbot.waitUntil(lambda: len(points.data) == len(widget.session.findings) and
                    points.features["status"][0] == "rejected", timeout=5_000)
    assert stored(store_path)[first][0] == "rejected" and points.features["id"][0] == first


def test_shares_the_case_widgets_store(case, tmp_path) -> None:
    viewer, first, _, _ = case
    first.close()  # the review dock closed, then opened again from the Plugins menu once Case has a store
    viewer.window.remove_dock_widget(first)
    case_widget = user.dock(viewer, "Case")
    CaseStore(tmp_path / "shared.sqlite").close()
    case_widget.store_path.setText(str(tmp_path / "shared.sqlite"))
    case_widget.open_store()
    review = user.dock(viewer, "Microbleed review")
    assert review.store_path.text() == str(tmp_path / "shared.sqlite")
    assert review.open_store() is case_widget.store
    review.close()
    assert case_widget.store.summary()["images"] == 1  # still open: not ours to close


@pytest.mark.parametrize("file_kept", [True, False], ids=["file-grid", "display-grid-fallback"])
def test_oblique_scan_is_reviewed_and_exported_on_its_own_grid(make_napari_viewer, qtbot, tmp_path, file_kept) -> None:
    """Detected on the file's voxels (read again) or, when the file is gone, on the display grid."""
    from scipy.spatial.transform import Rotation

    volume, _ = synthetic_swi(seed=2, shape=(40, 44, 24), zooms=(1.0, 1.0, 2.0))
    affine = volume.affine.copy()
    affine[:3, :3] = Rotation.from_euler("x", 20, degrees=True).as_matrix() @ affine[:3, :3]
    path = save_nifti(tmp_path / "oblique.nii.gz", volume.data, affine)
    save_detector(default_registry_root(), "0.1.0")
    set_default(model.MODEL_NAME, "0.1.0")
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-neuroreview")
    widget = new_widget(viewer, tmp_path / "reviews.sqlite")
    if not file_kept:
        path.rename(tmp_path / "moved.nii.gz")
    run_detection(widget, qtbot)
    points = viewer.layers["oblique CMBs"]
    findings = widget.session.findings
    assert findings and len(points.data) == len(findings)
    for finding in findings:  # the labels export holds decided microbleeds (accepted, added, moved)
        widget.session.accept(finding.id)
    written = widget.export_to(tmp_path / "out", bids=False)
    labels = nib.load(str(written[0]))
    np.testing.assert_allclose(labels.affine, affine, atol=1e-6)
    assert labels.shape == volume.data.shape
    data = np.asarray(labels.dataobj)
    for i, finding in enumerate(findings):
        np.testing.assert_allclose(napari_world_to_ras(points.data_to_world(points.data[i])), finding.world, atol=1e-6)
        assert finding.extra["mask_ijk"], "each detection keeps its mask on the file grid"
        inside = np.argwhere(data == finding.id)  # its mask is on the file grid, around its centre
        centre = nib.affines.apply_affine(affine, inside.mean(axis=0))
        assert np.linalg.norm(centre - np.asarray(finding.world)) < 2.5


def test_real_fine_tuning_from_reviews_through_the_widget(make_napari_viewer, qtbot, tmp_path) -> None:
    """Reviews written by ReviewSession are what retrain_from_store learns from (1 epoch, tiny scans)."""
    from napari_neuroreview.core.io.nifti import load_volume
    from napari_neuroreview.core.progress import run_to_completion
    from napari_neuroreview.core.registry import default_registry_root
    from napari_neuroreview.core.tasks.cmb import retrain
    from napari_neuroreview.core.tasks.cmb.detect import run
    from napari_neuroreview.core.tasks.cmb.review import ReviewSession

    save_detector(default_registry_root(), "0.1.0", threshold=0.3)
    detector = model.load_detector(None, "cpu")
    sides: set[bool] = set()
    with CaseStore(tmp_path / "reviews.sqlite") as store:
        for seed in range(12):
            volume, truth = synthetic_swi(seed=seed, shape=(40, 44, 24), zooms=(1.0, 1.0, 2.0))
            scan = load_volume(save_nifti(tmp_path / f"swi{seed}.nii.gz", volume.data, volume.affine))
            if retrain.is_held_out(scan.sha256) in sides:
                continue
            sides.add(retrain.is_held_out(scan.sha256))
            session = ReviewSession.open(store, scan.path, scan.sha256, scan.spatial_shape, scan.affine, "dr.a")
            session.add_detections(run_to_completion(run(scan, None, detector, threshold=0.0, device="cpu")),
                                   detector.card.to_dict())
            for finding in session.findings:
                hit = truth[tuple(np.rint(finding.voxel).astype(int))] != 0
                (session.accept if hit else session.reject)(finding.id)
            if len(sides) == 2:
                break
    assert sides == {True, False}
    viewer = make_napari_viewer()
    review = new_widget(viewer, tmp_path / "reviews.sqlite")  # the user's registry + shipped weights
    trainer = user.dock(viewer, "Microbleed retraining")
    trainer.settings.widget("epochs").setValue(1)
    trainer.device.combo.setCurrentText("cpu")
    # The shipped 1.0.0 is newer than this test's 0.1.0: fine-tune the one the reviews came from.
    trainer.base.combo.setCurrentIndex(trainer.base.combo.findData("0.1.0"))
    assert trainer.base.version() == "0.1.0"
    trainer.runner.run_button.click()
    qtbot.waitUntil(lambda: not trainer.runner.running, timeout=300_000)
    card, result = trainer.last_card, trainer.last_result
    assert card is not None and card.parent == "0.1.0"
    held_out = card.config["held_out"]
    assert {"sensitivity", "fp_per_subject", "threshold"} <= set(held_out["before"]) == set(held_out["after"])
    assert "held-out reviewed scans" in trainer.result.text() and result.verdict in trainer.result.text()
    assert review.versions.version() == result.default


def test_tilted_sample_case_finds_its_microbleeds_with_the_shipped_weights(make_napari_viewer, qtbot, tmp_path) -> None:
    """The committed ``cmb`` sample is oblique (2.5 deg): detection must run on its file voxels.

    On the resampled display grid the shipped detector found none of its 7 microbleeds.
    """
    sample = Path(__file__).resolve().parents[2] / "sample_data" / "cmb"
    truth = json.loads((sample / "sub-demo_truth.json").read_text())
    viewer = make_napari_viewer()
    viewer.open(str(sample / "sub-demo_swi.nii.gz"), plugin="napari-neuroreview")
    viewer.open(str(sample / "sub-demo_phase.nii.gz"), plugin="napari-neuroreview")
    widget = new_widget(viewer, tmp_path / "reviews.sqlite")
    widget.swi_combo.setCurrentText("sub-demo_swi")
    widget.phase_combo.setCurrentText("sub-demo_phase")
    widget.device.combo.setCurrentText("cpu")
    run_detection(widget, qtbot)
    found = np.array([f.world for f in widget.session.findings]).reshape(-1, 3)
    centres = np.array([c["world_ras_mm"] for c in truth["cmbs"]])
    assert len(found) >= len(centres) - 1
    nearest = np.linalg.norm(centres[:, None, :] - found[None, :, :], axis=2).min(axis=1)
    assert (nearest < 2.0).sum() >= len(centres) - 1, nearest
