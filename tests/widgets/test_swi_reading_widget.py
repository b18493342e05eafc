"""The SWI reading panel on the committed microbleed sample, opened and driven as a user does."""

from __future__ import annotations

import threading
from pathlib import Path

import napari_user as user
import numpy as np
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QWheelEvent
from qtpy.QtWidgets import QApplication

from napari_neuroreview.core.reading import minip as minip_module
from napari_neuroreview.core.reading.window import contrast_limits
from napari_neuroreview.widgets._base import view_grid
from napari_neuroreview.widgets.case import camera_of
from napari_neuroreview.widgets.swi_reading import MINIP_KEY, SWIReadingWidget

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "cmb"
SWI, PHASE, TRUTH = "sub-demo_swi", "sub-demo_phase", "sub-demo_cmb-instances"


def open_sample(viewer, stems=(SWI, PHASE)) -> None:
    for stem in stems:
        viewer.open(str(SAMPLE / f"{stem}.nii.gz"), plugin="napari-neuroreview")


def panel_of(viewer, qtbot) -> SWIReadingWidget:
    panel = user.dock(viewer, "SWI reading")
    assert isinstance(panel, SWIReadingWidget)
    qtbot.wait(10)
    return panel


def minip_layers(viewer) -> list:
    return [layer for layer in viewer.layers if MINIP_KEY in layer.metadata]


def compute(panel, qtbot) -> None:
    qtbot.mouseClick(panel.minip_runner.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.minip_runner.running, timeout=60_000)


def brute_minip(data: np.ndarray, axis: int, slices: int) -> np.ndarray:
    """The minimum over ``slices`` neighbours along ``axis``, the extra one of an even count before, cut at the edges."""
    before, after = slices // 2, slices - 1 - slices // 2
    moved = np.moveaxis(np.asarray(data), axis, 0)
    out = np.stack([moved[max(0, i - before):i + after + 1].min(axis=0) for i in range(len(moved))])
    return np.moveaxis(out, 0, axis)


def test_presets_follow_the_layer_name_and_set_its_contrast_limits(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer)
    panel = panel_of(viewer, qtbot)
    swi, phase = viewer.layers[SWI], viewer.layers[PHASE]
    assert panel.image.currentText() == SWI and panel.preset.currentData() == "swi"
    assert panel.magnitude.currentText() == SWI and panel.phase.currentText() == PHASE
    as_opened = tuple(swi.contrast_limits)
    qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    wanted = contrast_limits(np.asarray(swi.data), "swi")
    np.testing.assert_allclose(swi.contrast_limits, wanted)
    assert not np.allclose(as_opened, wanted)  # not the reader's window
    panel.image.setCurrentText(PHASE)  # the preset follows the name
    assert panel.preset.currentData() == "phase"
    qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    np.testing.assert_allclose(phase.contrast_limits, (-np.pi, np.pi))  # the sample's phase is in radians
    panel.image.setCurrentText(SWI)
    index = panel.preset.findData("t1")
    panel.preset.setCurrentIndex(index)
    panel.preset.activated.emit(index)  # a preset the user picks applies at once
    np.testing.assert_allclose(swi.contrast_limits, contrast_limits(np.asarray(swi.data), "t1"))


def test_minip_layer_appears_after_the_worker_on_the_sliced_axis_and_is_replaced(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer)
    panel = panel_of(viewer, qtbot)
    swi = viewer.layers[SWI]
    data = np.asarray(swi.data)
    assert viewer.dims.not_displayed == (0,)
    compute(panel, qtbot)
    (layer,) = minip_layers(viewer)
    slices = round(6.0 / swi.scale[0])  # 6 mm over the 1.8 mm slices the viewer scrolls through: 3
    assert layer.name == f"minIP {slices * swi.scale[0]:.3g} mm: {SWI}"
    np.testing.assert_array_equal(layer.data, brute_minip(data, 0, slices))
    np.testing.assert_allclose(layer.scale, swi.scale)
    np.testing.assert_allclose(layer.translate, swi.translate)
    np.testing.assert_allclose(layer.affine.affine_matrix, swi.affine.affine_matrix)
    np.testing.assert_allclose(layer.contrast_limits, contrast_limits(layer.data, "swi"))
    names = [lay.name for lay in viewer.layers]
    assert names.index(layer.name) == names.index(SWI) + 1  # just above its scan, under anything drawn over it
    assert f"{slices} slices" in panel.slab_note.text()

    for order, thickness in (((1, 0, 2), 6.0), ((1, 0, 2), 8.0)):
        # The user slices coronally (0.9 mm voxels along the slab), then asks for 8 mm: each computes again.
        viewer.dims.order, previous = order, minip_layers(viewer)[0].name
        panel.thickness.setValue(thickness)
        axis = order[0]
        slices = round(thickness / swi.scale[axis])  # 6.7 -> 7, then 8.9 -> 9
        wanted = f"minIP {slices * swi.scale[axis]:.3g} mm: {SWI}"
        assert wanted != previous
        qtbot.waitUntil(lambda wanted=wanted: [lay.name for lay in minip_layers(viewer)] == [wanted], timeout=60_000)
        qtbot.waitUntil(lambda: not panel.minip_runner.running, timeout=60_000)
        (again,) = minip_layers(viewer)  # replaced, never a second one
        np.testing.assert_array_equal(again.data, brute_minip(data, axis, slices))


def test_cancel_leaves_no_minip_layer(make_napari_viewer, qtbot, monkeypatch) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer, (SWI,))
    panel = panel_of(viewer, qtbot)
    started, release = threading.Event(), threading.Event()
    real = minip_module.ndimage.minimum_filter1d

    class Held:
        @staticmethod
        def minimum_filter1d(*args, **kwargs):
            started.set()
            release.wait(30)
            return real(*args, **kwargs)

    monkeypatch.setattr(minip_module, "ndimage", Held)
    qtbot.mouseClick(panel.minip_runner.run_button, Qt.MouseButton.LeftButton)
    assert started.wait(30)
    qtbot.mouseClick(panel.minip_runner.cancel_button, Qt.MouseButton.LeftButton)
    release.set()
    qtbot.waitUntil(lambda: not panel.minip_runner.running, timeout=30_000)
    assert panel.minip_runner.status.text() == "Cancelled"
    qtbot.wait(100)
    assert minip_layers(viewer) == []


def wheel(viewer, world, steps: int = 1) -> None:
    """A real mouse wheel turn over the canvas at a world position (napari zooms in 2D)."""
    widget, pos = user.canvas_widget(viewer), user.to_canvas(viewer, world)
    event = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)
    QApplication.processEvents()


def test_side_by_side_is_linked_and_off_restores_what_was_shown(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer(show=True)
    open_sample(viewer, (SWI, PHASE, TRUTH))
    panel = panel_of(viewer, qtbot)
    compute(panel, qtbot)
    viewer.layers[PHASE].visible = False  # as the review leaves it: the phase hidden under the SWI
    before = {layer.name: layer.visible for layer in viewer.layers}
    minip_name = minip_layers(viewer)[0].name
    qtbot.mouseClick(panel.side_by_side, Qt.MouseButton.LeftButton, pos=QPoint(5, panel.side_by_side.height() // 2))
    assert panel.side_by_side.isChecked() and view_grid(viewer).enabled
    shown = {layer.name for layer in viewer.layers if layer.visible}
    assert shown == {SWI, PHASE, minip_name}  # the truth labels are hidden, the phase shown
    canvas = viewer.window._qt_viewer.canvas
    qtbot.waitUntil(lambda: len(canvas.grid_cameras) == 3, timeout=5_000)

    # Linked slice: Right arrow on the canvas moves every cell to the same new slice.
    start = viewer.dims.current_step[0]
    for _ in range(3):
        user.key(viewer, Qt.Key.Key_Right)
    step = viewer.dims.current_step[0]
    assert step != start
    for name in shown:
        layer = viewer.layers[name]
        qtbot.waitUntil(lambda layer=layer: np.array_equal(layer._slice.image.raw, np.asarray(layer.data)[step]),
                        timeout=5_000)

    # Linked zoom and pan: one wheel turn over one cell zooms all three cells alike.
    zoom = camera_of(viewer).zoom
    centre = np.asarray(viewer.layers[SWI].extent.world).mean(axis=0)
    wheel(viewer, centre, 2)
    qtbot.waitUntil(lambda: camera_of(viewer).zoom > zoom * 1.05, timeout=5_000)
    zooms = [camera.zoom for camera in canvas.grid_cameras]
    centres = [np.asarray(camera.center)[-2:] for camera in canvas.grid_cameras]
    np.testing.assert_allclose(zooms, camera_of(viewer).zoom, rtol=1e-6)
    for c in centres:
        np.testing.assert_allclose(c, np.asarray(camera_of(viewer).center)[-2:], atol=1e-6)

    qtbot.mouseClick(panel.side_by_side, Qt.MouseButton.LeftButton, pos=QPoint(5, panel.side_by_side.height() // 2))
    assert not view_grid(viewer).enabled
    assert {layer.name: layer.visible for layer in viewer.layers} == before
    assert not any(layer.name_overlay.visible for layer in viewer.layers)


def test_side_by_side_without_a_phase_shows_the_magnitude_alone(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer, (SWI,))
    panel = panel_of(viewer, qtbot)
    assert panel.phase.layer() is None
    panel.side_by_side.setChecked(True)
    assert view_grid(viewer).enabled and [layer.name for layer in panel.grid_layers()] == [SWI]
    panel.side_by_side.setChecked(False)
    assert not view_grid(viewer).enabled


def test_closing_the_dock_gives_the_grid_back_and_stops_following_the_viewer(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    open_sample(viewer)
    panel = panel_of(viewer, qtbot)
    compute(panel, qtbot)
    before = {layer.name: layer.visible for layer in viewer.layers}
    panel.side_by_side.setChecked(True)
    assert view_grid(viewer).enabled
    viewer.window.remove_dock_widget(panel)  # the dock's x does this (napari never closes the panel itself)
    assert not view_grid(viewer).enabled and {layer.name: layer.visible for layer in viewer.layers} == before
    viewer.dims.order = tuple(np.roll(viewer.dims.order, 1))  # another sliced axis: no minIP for a closed panel
    assert not panel._recompute_timer.isActive() and not panel.minip_runner.running
