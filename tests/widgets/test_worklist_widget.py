"""The worklist dock widget, docked and clicked as a radiologist would, beside the microbleed review."""

from __future__ import annotations

from pathlib import Path

import napari_user as user
import nibabel as nib
import numpy as np
import pytest
from cmb_synthetic import synthetic_swi
from synthetic import save_nifti

from napari_neuroreview.core.io.nifti import load_volume
from napari_neuroreview.core.store import CaseStore
from napari_neuroreview.widgets.worklist import COLUMNS, WorklistWidget


@pytest.fixture(autouse=True)
def user_data(tmp_path, monkeypatch) -> Path:
    """Default store and model registry inside the test's folder, never the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def two_scans(tmp_path: Path) -> tuple[Path, list]:
    """A store with two scans: sub-01 in review (one of two findings accepted), sub-02 pending."""
    volumes = []
    for n in (1, 2):
        volume, _ = synthetic_swi(seed=n, shape=(32, 36, 16), zooms=(1.0, 1.0, 2.0))
        volumes.append(load_volume(save_nifti(tmp_path / f"sub-0{n}_swi.nii.gz", volume.data, volume.affine)))
    store_path = tmp_path / "reviews.sqlite"
    with CaseStore(store_path) as store:
        for volume in volumes:
            store.register_image(volume.path, volume.sha256, volume.data.shape[:3], volume.affine)
        points = nib.affines.apply_affine(volumes[0].affine, [(10, 12, 8), (20, 20, 6)])
        found = store.add_findings(volumes[0].sha256, [
            {"task": "cmb", "world_ras_mm": p, "voxel_ijk": None, "score": s} for p, s in zip(points, (0.9, 0.5))])
        store.review(found[0].id, "accepted", "dr.test")
    return store_path, volumes


def rows(widget: WorklistWidget) -> list[list[str]]:
    table = widget.table
    return [[table.item(r, c).text() for c in range(len(COLUMNS))] for r in range(table.rowCount())]


def test_worklist_lists_opens_the_next_scan_and_signs_off(make_napari_viewer, qtbot, tmp_path, notifications) -> None:
    store_path, (first, second) = two_scans(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(first.path), plugin="napari-neuroreview")
    review = user.dock(viewer, "Microbleed review")
    review.reviewer.setText("dr.test")
    review.store_path.setText(str(store_path))
    review.store_path.editingFinished.emit()
    assert review.session is not None and review.session.sha256 == first.sha256  # restored from the store

    worklist = user.dock(viewer, "Worklist")
    assert worklist.store() is review.store  # the review's store, not a second connection
    label_a, label_b = f"scan-{first.sha256[:8]}", f"scan-{second.sha256[:8]}"
    assert rows(worklist) == [[label_a, "in review", "1 of 2", "sub-01_swi.nii.gz"],
                              [label_b, "pending", "0 of 0", "sub-02_swi.nii.gz"]]
    assert worklist.table.item(0, 0).font().bold() and not worklist.table.item(1, 0).font().bold()  # the open scan
    assert "sub-01" in worklist.current.text() and worklist.sign_button.isEnabled()

    worklist.sign_button.click()  # one finding undecided: refused, nothing changes
    assert any("1 of 2 findings still undecided" in m for m in notifications)
    assert rows(worklist)[0][1] == "in review"

    review.table.selectRow(1)  # the pending finding (lower score), decided in the review widget
    review.accept_button.click()
    assert rows(worklist)[0][1:3] == ["in review", "2 of 2"]  # redrawn after the edit, no Refresh needed
    worklist.sign_button.click()
    assert rows(worklist)[0][1] == "signed off" and "by dr.test, " in worklist.current.text()
    assert "signed off by dr.test, " in worklist.table.item(0, 1).toolTip()
    assert not worklist.sign_button.isEnabled() and worklist.reopen_button.isEnabled()
    assert review.reviewed.text().startswith("Reviewed 2 of 2 · signed off by dr.test, ")  # the review says so too

    review.table.selectRow(0)
    review.reject_button.click()  # a signed-off scan's findings are frozen: one sentence, nothing written
    assert any("was signed off by dr.test" in m and "re-open it" in m for m in notifications)
    assert [f.status for f in review.store.findings_for(first.sha256)] == ["accepted", "accepted"]

    worklist.runner.run_button.click()  # Open next: the pending scan, read off the GUI thread
    qtbot.waitUntil(lambda: not worklist.runner.running, timeout=30_000)
    opened = viewer.layers["sub-02_swi"]
    assert review.swi_combo.currentText() == "sub-02_swi" and review.layers.scan.name == "sub-02_swi"
    assert not viewer.layers["sub-01_swi"].visible  # the previous scan is hidden, not closed
    assert np.array_equal(np.asarray(opened.data).shape, np.asarray(viewer.layers["sub-01_swi"].data).shape)
    assert worklist.current_sha() == second.sha256 and worklist.table.item(1, 0).font().bold()
    assert worklist.table.selectionModel().selectedRows()[0].row() == 1  # the selection follows the new scan

    worklist.sign_button.click()  # nothing found on it: the reviewer signs it off as read
    assert [r[1] for r in rows(worklist)] == ["signed off", "signed off"]
    worklist.runner.run_button.click()
    qtbot.waitUntil(lambda: not worklist.runner.running, timeout=30_000)
    assert any("Every other scan in the store is signed off" in m for m in notifications)

    worklist.reopen_button.click()
    assert rows(worklist)[1][1] == "in review" and "signed off" not in review.reviewed.text()
    worklist.sign_button.click()

    # The sign-off is in the store: another process, and a worklist on its own store, see it.
    with CaseStore.open_existing(store_path) as other:
        state = other.scan_state(second.sha256)
        assert (state.state, state.signed_by) == ("signed off", "dr.test")
        actions = [(e["action"], e["actor"]) for e in other.audit_log() if e["action"].startswith("scan.")]
        assert actions == [("scan.signed_off", "dr.test")] * 2 + [("scan.reopened", "dr.test"),
                                                                   ("scan.signed_off", "dr.test")]
    alone = user.dock(make_napari_viewer(), "Worklist")
    alone.store_path.setText(str(store_path))
    alone.store_path.editingFinished.emit()
    assert [r[1] for r in rows(alone)] == ["signed off", "signed off"] and alone.store() is not review.store


def test_a_moved_scan_and_a_missing_store_are_one_sentence(make_napari_viewer, qtbot, tmp_path, notifications) -> None:
    store_path, (first, _second) = two_scans(tmp_path)
    Path(first.path).rename(tmp_path / "elsewhere.nii.gz")
    worklist = user.dock(make_napari_viewer(), "Worklist")
    worklist.store_path.setText(str(tmp_path / "typo.sqlite"))
    worklist.store_path.editingFinished.emit()
    assert "There is no annotation store at" in worklist.source.text() and worklist.table.rowCount() == 0
    assert not (tmp_path / "typo.sqlite").exists()  # never created
    worklist.store_path.setText(str(store_path))
    worklist.store_path.editingFinished.emit()
    worklist.runner.run_button.click()  # the next scan is sub-01, whose file has moved
    qtbot.waitUntil(lambda: not worklist.runner.running, timeout=30_000)
    assert any("sub-01_swi.nii.gz is not there any more" in m for m in notifications)
    assert len(worklist.viewer.layers) == 0


def test_open_next_shows_a_scan_already_open_instead_of_reading_it_again(make_napari_viewer, qtbot, tmp_path) -> None:
    store_path, (first, second) = two_scans(tmp_path)
    viewer = make_napari_viewer()
    for volume in (second, first):
        viewer.open(str(volume.path), plugin="napari-neuroreview")
    viewer.layers["sub-02_swi"].visible = False
    review = user.dock(viewer, "Microbleed review")
    review.store_path.setText(str(store_path))
    review.store_path.editingFinished.emit()
    review.swi_combo.setCurrentText("sub-01_swi")  # the user reads sub-01
    worklist = user.dock(viewer, "Worklist")
    assert worklist.current_sha() == first.sha256
    worklist.runner.run_button.click()
    qtbot.waitUntil(lambda: not worklist.runner.running, timeout=30_000)
    assert [layer.name for layer in viewer.layers if layer.name.startswith("sub-")] == ["sub-02_swi", "sub-01_swi"]
    assert viewer.layers["sub-02_swi"].visible and not viewer.layers["sub-01_swi"].visible
    assert review.layers.scan.name == "sub-02_swi" and worklist.current_sha() == second.sha256
    qtbot.wait(100)  # the review widget's deferred phase placement runs before the viewer closes


def test_sign_off_acts_on_the_row_the_user_clicked(make_napari_viewer, qtbot, tmp_path, notifications) -> None:
    from qtpy.QtCore import Qt

    store_path, (first, second) = two_scans(tmp_path)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(first.path), plugin="napari-neuroreview")
    review = user.dock(viewer, "Microbleed review")
    review.reviewer.setText("dr.test")
    review.store_path.setText(str(store_path))
    review.store_path.editingFinished.emit()
    worklist = user.dock(viewer, "Worklist")
    assert worklist.current.text().startswith("Current scan: ") and "sub-01" in worklist.current.text()

    row = [s.sha256 for s in worklist.states].index(second.sha256)  # the other scan (nothing found on it)
    cell = worklist.table.visualItemRect(worklist.table.item(row, 0)).center()
    qtbot.mouseClick(worklist.table.viewport(), Qt.MouseButton.LeftButton, pos=cell)
    assert worklist.current.text().startswith("Picked scan (not the open one): ") and "sub-02" in worklist.current.text()
    qtbot.mouseClick(worklist.sign_button, Qt.MouseButton.LeftButton)
    states = {s.sha256: s.state for s in review.store.scan_states("cmb")}
    assert states == {first.sha256: "in review", second.sha256: "signed off"}  # the picked one, not the open one
    assert review.session.sha256 == first.sha256  # the review stays on its scan
    assert worklist.reopen_button.isEnabled() and "sub-02" in worklist.current.text()  # the pick stays after redraw


def test_only_microbleed_scans_are_listed_not_what_other_widgets_registered(make_napari_viewer, qtbot,
                                                                             tmp_path) -> None:
    """A T1, a phase image and a 4D BOLD the Case widget registered are no rows."""
    store_path, _ = two_scans(tmp_path)
    with CaseStore(store_path) as store:  # as widgets/case.py registers the selected layer
        for n, (name, shape) in enumerate((("sub-01_T1w.nii.gz", (32, 36, 16)), ("sub-01_phase.nii.gz", (32, 36, 16)),
                                           ("sub-01_bold.nii.gz", (32, 36, 16, 50)))):
            store.register_image(tmp_path / name, f"{n + 1:064x}", shape, np.eye(4))
        assert len(store.scan_states("cmb")) == 5
    worklist = user.dock(make_napari_viewer(), "Worklist")
    worklist.store_path.setText(str(store_path))
    worklist.store_path.editingFinished.emit()
    assert [r[3] for r in rows(worklist)] == ["sub-01_swi.nii.gz", "sub-02_swi.nii.gz"]
    assert "2 scans in store" in worklist.source.text()
