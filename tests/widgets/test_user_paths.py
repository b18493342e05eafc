"""What a new user hit in the first hour, replayed as they did it (issue 8, items 1-5).

Every widget here is opened from the manifest (``add_plugin_dock_widget``: napari hands
the widget a proxy of the viewer), in napari's real event loop, and driven with real mouse
and key events on the canvas (``napari_user``). Each test failed on the code before the fix.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from qtpy.QtCore import Qt

import napari_user as user
from napari_neuroreview.core.io.export import napari_world_to_ras
from napari_neuroreview.core.progress import Progress
from napari_neuroreview.core.registry import ModelCard, default_registry_root, save_model, set_default
from napari_neuroreview.core.store import CaseStore
from napari_neuroreview.core.tasks import mask as mask_task
from napari_neuroreview.core.tasks.cmb import model

from cmb_synthetic import synthetic_swi
from synthetic import reorient_to, save_nifti


@pytest.fixture(autouse=True)
def user_data(tmp_path, monkeypatch) -> Path:
    """The user's data folder (default store, model registry) inside the test's folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


@pytest.fixture
def viewer(make_napari_viewer):
    """A shown napari window of a laptop's size (the canvas has real pixels to click)."""
    v = make_napari_viewer(show=True)
    v.window._qt_window.resize(1400, 900)
    return v


def install_detector(version: str = "0.1.0", threshold: float = 0.0) -> None:
    """A small untrained detector in the user's registry, made the default as `neuroreview models set-default` does.

    Threshold 0 keeps every candidate, so these tests of the review's plumbing never hang on
    what a shipped detector happens to find on a tiny synthetic scan.
    """
    torch.manual_seed(0)
    card = ModelCard(name=model.MODEL_NAME, version=version, task=model.TASK, config={"width": 8, "threshold": threshold})
    save_model(model.state_dict_cpu(model.build_net(card)), card, default_registry_root())
    set_default(model.MODEL_NAME, version)


def swi_file(folder: Path, seed: int = 1, name: str = "swi.nii.gz") -> Path:
    volume, _ = synthetic_swi(seed=seed, shape=(40, 44, 24), zooms=(1.0, 1.0, 2.0))
    data, affine = reorient_to(volume.data, volume.affine, "LPS")
    folder.mkdir(parents=True, exist_ok=True)
    return save_nifti(folder / name, data, affine)


def use_store(widget, path: Path) -> None:
    """Pick a store as the user does: type an existing one, or "New store..." for a new file."""
    if path.exists():
        widget.store_path.setText(str(path))
        widget.store_path.editingFinished.emit()
    else:
        widget.new_store(path)


def detect(widget, qtbot) -> None:
    qtbot.mouseClick(widget.runner.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)


def stored(path: Path) -> dict[int, tuple[str, tuple[float, float, float]]]:
    """What another process reads from the store: finding id -> (status, world RAS mm)."""
    with CaseStore(path) as store:
        out = {}
        for image in store.images():
            out.update({f.id: (f.status, f.world) for f in store.findings_for(image.sha256, task="cmb")})
        return out


def show_point(viewer, points, index: int) -> np.ndarray:
    """Put the slice of a point under the view, fitted; return the point's world position."""
    world = np.asarray(points.data_to_world(points.data[index]), dtype=float)
    viewer.reset_view()
    viewer.dims.set_point(0, world[0])
    return world


# ---------------------------------------------------------------- item 1
def test_a_flood_of_progress_neither_recurses_nor_hangs(viewer, qtbot, tmp_path, monkeypatch) -> None:
    """Item 1: a task that yields thousands of updates at once finishes; the bar ends full."""
    path = swi_file(tmp_path)
    viewer.open(str(path), plugin="napari-neuroreview")
    case = user.dock(viewer, "Case")
    real_run = mask_task.run

    def flood(volume, *args, **kwargs):
        for k in range(20_000):  # far faster than the GUI can draw
            yield Progress(k, 20_000, f"Filling holes, slice {k} of 20000")
        return (yield from real_run(volume, *args, **kwargs))

    monkeypatch.setattr(mask_task, "run", flood)
    errors: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: errors.append(exc[1]))
    qtbot.mouseClick(case.mask_runner.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not case.mask_runner.running, timeout=30_000)
    assert errors == []
    assert case.mask_runner.status.text() == "Done" and case.mask_runner.bar.value() == 1000
    assert "swi foreground mask" in viewer.layers
    assert case.mask_runner.run_button.isEnabled() and not case.mask_runner.cancel_button.isEnabled()


# ---------------------------------------------------------------- item 2
@pytest.fixture
def reviewed(viewer, qtbot, tmp_path):
    """The review widget from the Plugins menu on a detected scan, its store in the test folder."""
    install_detector()
    viewer.open(str(swi_file(tmp_path)), plugin="napari-neuroreview")
    widget = user.dock(viewer, "Microbleed review")
    use_store(widget, tmp_path / "reviews.sqlite")
    detect(widget, qtbot)
    points = viewer.layers["swi CMBs"]
    assert len(points.data) >= 3
    return widget, points, tmp_path / "reviews.sqlite"


def test_napari_tools_edits_reach_the_store(viewer, qtbot, reviewed) -> None:
    """Item 2: drag (select tool), add tool, delete-selected: each is in the store at once."""
    widget, points, store = reviewed
    centre = np.asarray(viewer.layers["swi"].extent.world).mean(axis=0)
    worlds = np.array([points.data_to_world(p) for p in points.data], dtype=float)
    index = int(np.argmin(np.linalg.norm(worlds - centre, axis=1)))  # room to drag and add around it
    first = int(points.features["id"][index])
    start = show_point(viewer, points, index)
    end = start + np.array([0.0, 3.0, -2.0])
    qtbot.wait(50)
    user.drag(viewer, start, end)
    qtbot.waitUntil(lambda: stored(store)[first][0] == "moved", timeout=5_000)
    np.testing.assert_allclose(stored(store)[first][1], napari_world_to_ras(end), atol=0.6)

    # napari's add-point tool: a click on the canvas in add mode.
    before = set(stored(store))
    points.mode = "add"
    target = start + np.array([0.0, -6.0, 6.0])
    target[0] = viewer.dims.point[0]  # napari adds on the slice shown
    user.click(viewer, target)
    qtbot.waitUntil(lambda: len(set(stored(store)) - before) == 1, timeout=5_000)
    (new,) = set(stored(store)) - before
    assert stored(store)[new][0] == "added"
    np.testing.assert_allclose(stored(store)[new][1], napari_world_to_ras(target), atol=0.6)

    # napari's delete-selected: select the added point, its Delete key (napari's own binding)
    points.mode = "select"
    widget.jump_to(new)
    points.remove_selected()
    qtbot.waitUntil(lambda: stored(store)[new][0] == "rejected", timeout=5_000)
    assert new not in [int(i) for i in points.features["id"]]


def test_review_keys_and_buttons_reach_the_store(viewer, qtbot, reviewed) -> None:
    """Item 2: the review keys on the canvas and the widget's buttons, through the plugin path."""
    widget, points, store = reviewed
    ids = [int(i) for i in points.features["id"]]
    widget.table.selectRow(0)
    user.key(viewer, Qt.Key.Key_A)
    assert stored(store)[ids[0]][0] == "accepted"
    widget.table.selectRow(1)
    qtbot.mouseClick(widget.reject_button, Qt.MouseButton.LeftButton)
    assert stored(store)[ids[1]][0] == "rejected"
    user.key(viewer, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert stored(store)[ids[1]][0] == "pending"


# ---------------------------------------------------------------- item 3
def test_review_restored_when_the_widget_is_docked_first(viewer, qtbot, tmp_path) -> None:
    """Item 3: dock, then open the scan (the natural order): the stored review comes back."""
    install_detector()
    store = tmp_path / "reviews.sqlite"
    scan = swi_file(tmp_path)
    layer = viewer.open(str(scan), plugin="napari-neuroreview")[0]
    widget = user.dock(viewer, "Microbleed review")
    use_store(widget, store)
    detect(widget, qtbot)
    widget.table.selectRow(0)
    widget.accept_selected()
    saved = stored(store)
    widget.close()
    viewer.window.remove_dock_widget(widget)
    viewer.layers.clear()

    again = user.dock(viewer, "Microbleed review")  # docked before any scan is open
    use_store(again, store)
    viewer.open(str(scan), plugin="napari-neuroreview")
    assert "swi CMBs" in viewer.layers
    restored = viewer.layers["swi CMBs"]
    assert {int(i): s for i, s in zip(restored.features["id"], restored.features["status"])} == \
        {fid: s for fid, (s, _) in saved.items()}
    assert layer is not None


def test_review_follows_a_new_subject_with_the_same_file_name(viewer, qtbot, tmp_path) -> None:
    """Item 3: subject B's swi.nii.gz replaces subject A's: B's review (or none) is shown, not A's."""
    install_detector()
    store = tmp_path / "reviews.sqlite"
    a, b = swi_file(tmp_path / "sub-A", seed=1), swi_file(tmp_path / "sub-B", seed=2)
    widget = user.dock(viewer, "Microbleed review")
    use_store(widget, store)
    for scan in (b, a):  # both reviewed; A open last
        viewer.layers.clear()
        viewer.open(str(scan), plugin="napari-neuroreview")
        detect(widget, qtbot)
        widget.table.selectRow(0)
        widget.accept_selected() if scan == a else widget.reject_selected()
    a_status = sorted(str(s) for s in viewer.layers["swi CMBs"].features["status"])
    viewer.layers.remove("swi")  # close subject A's scan; its review layers go with it
    viewer.open(str(b), plugin="napari-neuroreview")  # same layer name "swi"
    qtbot.wait(50)
    shown = viewer.layers["swi CMBs"]
    assert "rejected" in list(shown.features["status"]) and "accepted" not in list(shown.features["status"])
    assert sorted(str(s) for s in shown.features["status"]) != a_status
    assert widget.session is not None and widget.session.sha256 == viewer.layers["swi"].metadata["neuroreview"]["sha256"]


# ---------------------------------------------------------------- item 5
def test_phase_opened_after_the_magnitude_stays_under_it(viewer, qtbot, tmp_path) -> None:
    """Item 5: SWI, then phase, opened as files: the magnitude stays the visible base image."""
    scan = swi_file(tmp_path)
    import nibabel as nib

    img = nib.load(str(scan))
    phase = np.random.default_rng(0).uniform(-np.pi, np.pi, img.shape).astype(np.float32)
    phase_path = save_nifti(tmp_path / "swi_phase.nii.gz", phase, img.affine)
    widget = user.dock(viewer, "Microbleed review")
    viewer.open(str(scan), plugin="napari-neuroreview")
    viewer.open(str(phase_path), plugin="napari-neuroreview")
    qtbot.wait(50)
    assert widget.swi_combo.currentText() == "swi" and widget.phase_combo.currentText() == "swi_phase"
    images = [layer for layer in viewer.layers if layer.name in ("swi", "swi_phase")]
    visible = [layer.name for layer in images if layer.visible]
    assert visible[-1] == "swi", f"the top visible image is {visible[-1]}"  # napari draws the last layer on top
    assert not viewer.layers["swi_phase"].visible
    assert json.dumps(widget.summary.text())  # the widget says something, never raises


# ---------------------------------------------------------------- item 6 (store) and class 18
def test_quitting_leaves_every_review_in_the_store_file(viewer, qtbot, reviewed, tmp_path) -> None:
    """Closing napari's last window quits: the write-ahead log is folded into the store file."""
    from qtpy.QtWidgets import QApplication
    import shutil

    widget, points, store = reviewed
    widget.table.selectRow(0)
    widget.accept_selected()
    expected = stored(store)
    QApplication.instance().aboutToQuit.emit()
    wal = store.with_name(store.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    copy = tmp_path / "copy" / "reviews.sqlite"
    copy.parent.mkdir()
    shutil.copy(store, copy)  # the file alone, as a user backs it up
    assert stored(copy) == expected


def test_a_mistyped_store_path_is_refused_not_created(viewer, qtbot, tmp_path, notifications) -> None:
    """Class 18: only "New store..." creates a store; a path that is none gives one message."""
    widget = user.dock(viewer, "Microbleed review")
    viewer.open(str(swi_file(tmp_path)), plugin="napari-neuroreview")
    typo = tmp_path / "reviewz.sqlite"
    widget.store_path.setText(str(typo))
    widget.store_path.editingFinished.emit()
    assert not typo.exists() and not typo.with_name(typo.name + "-wal").exists()
    assert any("no annotation store" in m for m in notifications)
    assert widget.new_store(typo) is not None and typo.exists()


# ---------------------------------------------------------------- class 13 in the widget
def test_a_conflict_with_another_reviewer_is_said_and_reloaded(viewer, qtbot, reviewed, notifications) -> None:
    """Another session decides a finding; this reviewer's stale edit is refused and the screen catches up."""
    from napari_neuroreview.core.tasks.cmb.review import ReviewSession

    widget, points, store = reviewed
    fid = int(points.features["id"][0])
    image = widget.session.image
    with CaseStore(store) as other_store:
        other = ReviewSession.open(other_store, image.path, image.sha256, image.shape, image.affine, "dr.other")
        other.accept(fid)
    widget.table.selectRow(0)
    notifications.clear()
    user.key(viewer, Qt.Key.Key_R)  # reject, from a view that still says pending
    assert stored(store)[fid][0] == "accepted"  # the other decision stands
    assert any("another session" in m for m in notifications)
    qtbot.waitUntil(lambda: str(points.features["status"][0]) == "accepted", timeout=5_000)


# ---------------------------------------------------------------- item 7
def test_make_demo_shows_the_microbleeds_ready_to_review(make_napari_viewer, qtbot) -> None:
    """``make demo``: the microbleed sample, its detections on screen, the review widget in front,
    and the subtype panel under it classifying the review's microbleeds once they are in."""
    from napari_neuroreview._sample_data import sample_cache_dir
    from napari_neuroreview.viewer import MIN_WINDOW, open_viewer
    from napari_neuroreview.widgets.cmb_review import CMBReviewWidget, find_docked
    from napari_neuroreview.widgets.csvd_subtype import SubtypeWidget

    viewer, _case = open_viewer(sample="cmb", run=False, viewer=make_napari_viewer(show=True))
    try:
        (review,) = find_docked(viewer, CMBReviewWidget)
        qtbot.waitUntil(lambda: not review.runner.running and review.session is not None, timeout=180_000)
        points = viewer.layers["SWI CMBs"]
        truth = json.loads(next((sample_cache_dir() / "cmb").glob("*_truth.json")).read_text())
        centres = np.array([c["world_ras_mm"] for c in truth["cmbs"]])
        found = np.array([napari_world_to_ras(points.data_to_world(p)) for p in points.data])
        nearest = np.linalg.norm(centres[:, None, :] - found[None, :, :], axis=2).min(axis=1)
        assert (nearest < 2.0).sum() >= len(centres) - 1, nearest
        assert review.table.rowCount() == len(points.data) and review.accept_button.isEnabled()
        assert review.isVisible()  # tabbed in front of the Case widget
        shown = [layer.name for layer in viewer.layers if layer.visible and layer.name in ("SWI", "phase")]
        assert shown == ["SWI"]
        window = viewer.window._qt_window
        assert window.width() >= MIN_WINDOW[0] and window.height() >= MIN_WINDOW[1]
        qtbot.wait(400)  # the view is fitted again once the window has its size
        canvas = viewer.window._qt_viewer.canvas
        corners = [user.to_canvas(viewer, c) for c in (viewer.layers["SWI"].extent.world[0],
                                                        viewer.layers["SWI"].extent.world[1])]
        width, height = canvas.native.width(), canvas.native.height()
        for corner in corners:  # the whole slab is on the canvas: nothing cut at its edges
            assert -2 <= corner.x() <= width + 2 and -2 <= corner.y() <= height + 2, (corner, width, height)
        (panel,) = find_docked(viewer, SubtypeWidget)
        qtbot.waitUntil(lambda: panel.result is not None and not panel.runner.running, timeout=120_000)
        assert panel.isVisible() and review.isVisible()  # under the review, not a tab hiding it
        assert len(panel.result.sites) == len(review.counted_findings()) == len(points.data)
        assert sum(panel.result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    finally:
        for widget in find_docked(viewer, CMBReviewWidget) + find_docked(viewer, SubtypeWidget):
            widget.cleanup()
