"""The review flow of issue 14: rings that leave the spot visible, hover, located columns, next/previous, k of n, keys."""

# ruff: noqa: F811 (the review widget tests' fixtures, imported, are test parameters here)

from __future__ import annotations

from pathlib import Path

import napari_user as user
import numpy as np
import pytest
from napari.utils.key_bindings import coerce_keybinding
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QEnterEvent
from qtpy.QtWidgets import QApplication
from test_cmb_review_widget import case, new_widget, run_detection, user_data  # noqa: F401 (fixtures shared)

from napari_neuroreview.core.io.export import ras_to_napari_world
from napari_neuroreview.widgets._cmb_keys import REVIEW_KEYS, KeysDialog
from napari_neuroreview.widgets._cmb_layers import STATUS_RGBA
from napari_neuroreview.widgets._cmb_locations import LOCATING
from napari_neuroreview.widgets._cmb_table import COLUMNS

SIDE, REGION, SLICE = COLUMNS.index("side"), COLUMNS.index("region"), COLUMNS.index("slice mm")
SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "cmb"


def _canvas_rgb(viewer, world) -> np.ndarray:
    """The canvas pixel under a world position, as napari draws it (RGB)."""
    image = viewer.screenshot(canvas_only=True, flash=False)
    canvas = viewer.window._qt_viewer.canvas.native
    pos = user.to_canvas(viewer, world)
    ratio = image.shape[1] / canvas.width()
    return image[round(pos.y() * ratio), round(pos.x() * ratio), :3].astype(int)


def test_rings_leave_the_spot_visible_outlines_and_h_hides_the_overlays(case, qtbot) -> None:
    viewer, widget, _affine, _ = case
    run_detection(widget, qtbot)
    points, masks = viewer.layers["swi CMBs"], viewer.layers["swi CMB masks"]
    assert set(np.asarray(points.symbol).astype(str)) == {"ring"} and masks.contour >= 1
    np.testing.assert_allclose(points.face_color[0], STATUS_RGBA["pending"])
    first = widget.session.findings[0]
    widget.jump_to(first.id)
    points.selected_data = set()  # no selection highlight over it
    scan_only = np.array(viewer.layers["swi"].data)
    centre = ras_to_napari_world(first.world)
    spot = _canvas_rgb(viewer, centre)
    yellow = np.array(STATUS_RGBA["pending"][:3]) * 255
    assert np.abs(spot - yellow).max() > 100  # the spot itself shows at the ring's centre, not the marker
    assert abs(int(spot[0]) - int(spot[2])) < 30  # grey: the scan's own (dark) value
    user.key(viewer, Qt.Key.Key_H)
    assert not points.visible and not masks.visible
    user.key(viewer, Qt.Key.Key_H)
    assert points.visible and masks.visible
    assert np.array_equal(viewer.layers["swi"].data, scan_only)


def test_next_previous_keys_and_reviewed_k_of_n(case, qtbot) -> None:
    viewer, widget, _affine, _ = case
    run_detection(widget, qtbot)
    points, session = viewer.layers["swi CMBs"], widget.session
    n = len(session.findings)
    assert n >= 3 and widget.reviewed.text() == f"Reviewed 0 of {n}"
    points.selected_data = set()
    widget.table.clearSelection()
    user.key(viewer, Qt.Key.Key_Period)  # '.': the first finding in table order
    assert points.selected_data == {0} and widget.table.selected_ids() == [session.findings[0].id]
    user.key(viewer, Qt.Key.Key_Period)
    second = session.findings[1]
    assert points.selected_data == {1} and widget.table.selected_ids() == [second.id]
    target = ras_to_napari_world(second.world)
    assert viewer.dims.point[0] == pytest.approx(target[0], abs=viewer.layers["swi"].scale[0])
    np.testing.assert_allclose(viewer.camera.center[-2:], target[-2:], atol=1e-6)  # centred on it
    user.key(viewer, Qt.Key.Key_Comma)  # ',': back to the first
    assert points.selected_data == {0}
    user.key(viewer, Qt.Key.Key_A)  # accept: one decided, on to the next
    assert widget.reviewed.text() == f"Reviewed 1 of {n}"
    user.key(viewer, Qt.Key.Key_R)
    assert widget.reviewed.text() == f"Reviewed 2 of {n}"
    user.key(viewer, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert widget.reviewed.text() == f"Reviewed 1 of {n}"


def test_the_keys_sheet_lists_exactly_the_bound_keys(case, qtbot) -> None:
    viewer, widget, _affine, _ = case
    run_detection(widget, qtbot)
    widget.keys_button.click()
    QApplication.processEvents()
    sheet = widget._keys_dialog
    assert isinstance(sheet, KeysDialog) and sheet.isVisible()
    assert sheet.keys() == [k.shown for k in REVIEW_KEYS]
    bound = set(viewer.layers["swi CMBs"].keymap)
    assert {coerce_keybinding(k.key) for k in REVIEW_KEYS} <= bound
    for k in REVIEW_KEYS:  # each row names a method of the widget that its key runs
        assert callable(getattr(widget, k.action))
    sheet.close()


def test_a_scan_that_does_not_register_leaves_the_location_blank_with_one_sentence(case, qtbot) -> None:
    """The synthetic scan is no brain: the columns stay empty and the panel says why, once, without an error box."""
    _viewer, widget, _affine, _ = case
    run_detection(widget, qtbot)
    qtbot.waitUntil(lambda: widget.locator.note.text() != "", timeout=300_000)
    assert widget.locator.note.text().startswith("Side and region unknown: ")
    assert widget.locator.note.text().endswith("so it is probably not a brain scan.")
    assert {widget.table.item(r, SIDE).text() for r in range(widget.table.rowCount())} == {""}


def test_a_layer_that_fails_otherwise_is_tried_once_not_on_every_edit(qtbot, monkeypatch) -> None:
    """Voxels changed in napari (ImageMismatchError, not InputFileError): said once, cells blank, not retried."""
    from napari_neuroreview.core.errors import ImageMismatchError
    from napari_neuroreview.core.store import Finding
    from napari_neuroreview.widgets import _cmb_locations

    calls: list[int] = []

    def changed(*_args, **_kwargs):
        calls.append(1)
        raise ImageMismatchError("swi: the layer's voxels were changed in napari")

    class Scan:
        def __init__(self) -> None:
            self.name, self.data, self.metadata = "swi", None, {"neuroreview": {"sha256": "ab" * 32}}

    monkeypatch.setattr(_cmb_locations, "volume_from_layer", changed)
    locator = _cmb_locations.FindingLocator(lambda: None)
    finding = Finding(1, 1, "ab" * 32, "cmb", (1.0, 2.0, 3.0), (1.0, 2.0, 3.0), 0.9, None, "model")
    for _edit in range(3):  # three redraws of the review
        locator.update(Scan(), [finding])
        qtbot.waitUntil(lambda: not locator.runner.running, timeout=5000)
        qtbot.wait(50)
    assert len(calls) == 1
    assert locator.note.text() == "Side and region unknown: swi: the layer's voxels were changed in napari"
    assert locator.text(finding) == ("", "")


def test_the_sample_gets_side_region_and_a_hover_status(make_napari_viewer, qtbot, tmp_path) -> None:
    """The CMB sample lies in MNI space: each finding's side is the sign of its world x (x < 0: left)."""
    viewer = make_napari_viewer()
    viewer.open(str(SAMPLE / "sub-demo_swi.nii.gz"), plugin="napari-neuroreview")
    widget = new_widget(viewer, tmp_path / "reviews.sqlite")
    widget.device.combo.setCurrentText("cpu")
    run_detection(widget, qtbot)
    table, findings = widget.table, widget.session.findings
    assert table.horizontalHeaderItem(SLICE).text() == "slice mm"
    assert {table.item(r, SIDE).text() for r in range(table.rowCount())} == {LOCATING}  # not blocking: pending
    qtbot.waitUntil(lambda: table.item(0, SIDE).text() != LOCATING, timeout=300_000)
    for row, finding in enumerate(findings):
        assert table.item(row, SLICE).text() == f"S {finding.world[2]:.1f}"
        if abs(finding.world[0]) > 5:
            assert table.item(row, SIDE).text() == ("L" if finding.world[0] < 0 else "R")
        assert table.item(row, REGION).text() not in ("", LOCATING)

    # Hovering a point: id, score, region, volume and status in napari's status bar.
    finding = findings[0]
    widget.jump_to(finding.id)
    viewer.layers["sub-demo_swi CMBs"].selected_data = set()
    centre = ras_to_napari_world(finding.world)
    canvas, pos = user.canvas_widget(viewer), QPointF(user.to_canvas(viewer, centre + np.array([0.0, 3.0, 3.0])))
    QApplication.sendEvent(canvas, QEnterEvent(pos, pos, QPointF(canvas.mapToGlobal(pos))))  # the mouse comes in
    user.hover(viewer, centre + np.array([0.0, 3.0, 3.0]))  # off the point first
    user.hover(viewer, centre)
    viewer.update_status_from_cursor()  # napari's status thread does this; under Xvfb no real pointer starts it
    qtbot.waitUntil(lambda: f"id: {finding.id}," in str(viewer.status), timeout=10_000)
    status = str(viewer.status)
    region = f"{table.item(0, REGION).text()} ({table.item(0, SIDE).text()})"
    for part in ("score: ", f"status: {finding.status}", f"region: {region}", "volume_mm3: "):
        assert part in status, status
