"""The Networks widget, driven as a radiologist would: two scans in, pre and post side by side."""

from __future__ import annotations

import json
from pathlib import Path

import napari_user as user
import numpy as np
import pytest
import torch
from networks_synthetic import make_synthetic_bold, save_bold
from prepost_tiny import install_tiny_model

from napari_neuroreview.core.anatomy import atlas
from napari_neuroreview.core.progress import Progress
from napari_neuroreview.core.registry import default_registry_root
from napari_neuroreview.core.tasks.networks.assignment_io import load_networks_json
from napari_neuroreview.widgets._base import view_grid
from napari_neuroreview.widgets.networks import LAYER_NAMES, NetworksWidget


@pytest.fixture(autouse=True)
def user_data(tmp_path, monkeypatch) -> Path:
    """Store and model registry inside the test's folder, never the user's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


@pytest.fixture
def installed_model(user_data) -> None:
    """The tiny pre/post model in the test's user registry (where the widget looks first)."""
    install_tiny_model(default_registry_root())


@pytest.fixture
def scans(tmp_path):
    """A pre BOLD and a post BOLD (6 mm, 100 volumes) with planted networks."""
    paths = {}
    for state, seed in (("pre", 1), ("post", 2)):
        paths[state] = tmp_path / f"{state}.nii.gz"
        save_bold(make_synthetic_bold(seed=seed), paths[state])
    return paths


def _compare(widget, qtbot, pre, post) -> None:
    widget.pre_path.setText(str(pre))
    widget.post_path.setText(str(post))
    widget.device.combo.setCurrentText("cpu")
    widget.runner.run_button.click()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=120_000)


def test_pre_and_post_side_by_side_with_probabilities_plots_and_override(make_napari_viewer, qtbot, tmp_path,
                                                                         installed_model, scans) -> None:
    viewer = make_napari_viewer()
    widget = user.dock(viewer, "Networks (pre vs post)")  # as the Plugins menu opens it
    _compare(widget, qtbot, scans["pre"], scans["post"])
    assert widget.runner.last_error is None, widget.runner.last_error
    comparison = widget.comparison
    assert comparison is not None

    # two views side by side, linked by napari's grid (one dims, one camera), pre on the left
    grid = view_grid(viewer)
    assert grid.enabled and tuple(grid.shape) == (1, 2) and grid.stride == 2
    names = [layer.name for layer in viewer.layers]
    for state in ("pre", "post"):
        for name in LAYER_NAMES[state]:
            assert name in names
    for state, column in (("pre", 0), ("post", 1)):  # pre on the left, each map with its own anatomy
        for name in LAYER_NAMES[state]:
            assert grid.position(names.index(name), layers=viewer.layers) == (0, column), (name, column)

    # the chosen network's map, thresholded in its own colour, over the anatomy
    motor = viewer.layers[LAYER_NAMES["pre"][1]]
    assert motor.contrast_limits[0] == pytest.approx(widget.threshold.value())
    assert motor.colormap.colors[0][3] == 0.0  # transparent below the threshold
    widget.network_combo.setCurrentText("vision")
    vision = viewer.layers[LAYER_NAMES["pre"][1]]
    assert not np.allclose(vision.colormap.colors[-1], motor.colormap.colors[-1]) or vision is motor
    expected, _ = comparison.display_map("pre", "vision")
    assert np.isclose(float(np.nanmax(vision.data)), float(expected.max()), rtol=1e-3)

    # P(post) of every network for both scans, in the table
    for row, network in enumerate(atlas.NETWORKS):
        assert widget.table.item(row, 0).text() == network
        for column, state in ((1, "pre"), (2, "post")):
            assert widget.table.item(row, column).text() == f"{comparison.probabilities[state][network]:.2f}"

    # the plots dock: two time courses of the selected network
    assert widget.plots is not None
    lines = widget.plots.ax_tc.get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_ydata(), comparison.pre.network_timecourse("vision"))
    # the t-SNE: every reference embedding drawn, and the patient's ten points on top
    assert comparison.tsne is not None
    drawn = sum(len(c.get_offsets()) for c in widget.plots.ax_tsne.collections)
    assert drawn == len(comparison.tsne["reference"]) + 2 * len(atlas.NETWORKS)


def test_each_pane_says_pre_or_post_its_orientation_threshold_and_anatomy(make_napari_viewer, qtbot, tmp_path,
                                                                          installed_model, scans) -> None:
    """Captions, banner and R/L in each pane, a colour bar from the threshold, what P(post) means, and the
    patient's T1 opened after Compare drawn under the maps at once (an odd number of layers open)."""
    import nibabel as nib
    from napari.components.overlays import TextOverlay

    from napari_neuroreview.core.tasks.networks.colours import network_hex
    from napari_neuroreview.widgets import _network_panes as panes
    from napari_neuroreview.widgets.case import (
        NEUROLOGICAL,
        set_convention,
        text_overlay,
    )

    viewer = make_napari_viewer()
    widget = user.dock(viewer, "Networks (pre vs post)")
    _compare(widget, qtbot, scans["pre"], scans["post"])
    assert widget.runner.last_error is None, widget.runner.last_error
    comparison = widget.comparison
    grid = view_grid(viewer)
    for state, column in (("pre", 0), ("post", 1)):
        layer = viewer.layers[LAYER_NAMES[state][1]]
        assert layer.name.startswith(state.upper()) and layer.name_overlay.visible  # the caption in its own pane
        assert grid.position(viewer.layers.index(layer.name), layers=viewer.layers) == (0, column)
        assert layer.colorbar.visible and layer.contrast_limits[0] == pytest.approx(widget.threshold.value())
    banner = text_overlay(viewer)
    assert banner.visible and banner.gridded and "radiological: patient R on screen left" in banner.text
    overlays = panes.canvas_overlays(viewer)
    assert all(isinstance(overlays[k], TextOverlay) and overlays[k].gridded for k in (*panes.SIDE_KEYS, panes.MAP_KEY))
    assert [overlays[k].text for k in panes.SIDE_KEYS] == ["R", "L"]
    set_convention(viewer, NEUROLOGICAL)  # the Case widget's switch: the marks follow the camera
    assert [overlays[k].text for k in panes.SIDE_KEYS] == ["L", "R"] and "neurological" in banner.text
    widget.threshold.setValue(3.5)
    assert "\u2265 3.5 SD" in overlays[panes.MAP_KEY].text and "MNI152 template" in overlays[panes.MAP_KEY].text
    assert viewer.layers[LAYER_NAMES["post"][1]].contrast_limits[0] == pytest.approx(3.5)
    assert "MNI152 template" in widget.anatomy_label.text() and "not this patient" in widget.anatomy_label.text()
    # P(post) explained; the tiny model's card has no calibration figure, so it says so
    assert "P(post)" in widget.p_post_label.text() and "not calibrated" in widget.p_post_label.text()
    # one colour per network from core's table: the table's text, as in the t-SNE PNG
    for row, network in enumerate(atlas.NETWORKS):
        assert widget.table.item(row, 0).foreground().color().name() == network_hex(network)

    # the patient's T1 (here the BOLD's first volume, on its grid) opened after Compare: drawn under both maps
    bold = nib.load(scans["pre"])
    t1 = tmp_path / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(bold.dataobj[..., 0], np.float32), bold.affine), t1)
    widget.open_anatomy(str(t1))
    qtbot.waitUntil(lambda: "sub-01_T1w" in widget.anatomy_label.text(), timeout=10_000)
    assert widget.comparison is comparison, "nothing recomputed"
    assert len(viewer.layers) == 5 and not viewer.layers["sub-01_T1w"].visible
    np.testing.assert_array_equal(viewer.layers[LAYER_NAMES["post"][0]].data, viewer.layers["sub-01_T1w"].data)
    for state, column in (("pre", 0), ("post", 1)):  # the fifth layer does not shift the pairs
        for name in LAYER_NAMES[state]:
            assert grid.position(viewer.layers.index(name), layers=viewer.layers) == (0, column), name
    assert "picked anatomy" in overlays[panes.MAP_KEY].text
    assert "does not overlap" not in widget.anatomy_label.text()
    widget.anatomy.setCurrentText(panes.MNI_TEMPLATE)  # and back to the template, at once
    assert "MNI152 template" in overlays[panes.MAP_KEY].text
    assert viewer.layers[LAYER_NAMES["pre"][0]].data.shape != viewer.layers["sub-01_T1w"].data.shape
    # a T1 from another space (1 m away) is drawn, and the panel says it does not line up
    far = tmp_path / "elsewhere_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(bold.dataobj[..., 0], np.float32), bold.affine @ np.array(
        [[1, 0, 0, 1000.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])), far)
    widget.open_anatomy(str(far))
    assert "elsewhere_T1w" in widget.anatomy_label.text() and "does not overlap" in widget.anatomy_label.text()

    # closed with the dock's x (napari's own path): its overlays go, the grid and the banner are given back
    viewer.window.remove_dock_widget(widget)
    assert not any(k in overlays for k in (*panes.SIDE_KEYS, panes.MAP_KEY))
    assert not banner.gridded and not grid.enabled
    set_convention(viewer, NEUROLOGICAL)  # no longer followed: nothing re-creates or rewrites the marks
    assert not any(k in overlays for k in (*panes.SIDE_KEYS, panes.MAP_KEY))


def test_p_post_line_reports_a_calibration_figure_only_when_the_card_has_one() -> None:
    from types import SimpleNamespace

    from napari_neuroreview.widgets._network_panes import p_post_text

    assert "not calibrated" in p_post_text(SimpleNamespace(metrics={"auc_mean": 0.79}))
    assert "AUC 0.79" in p_post_text(SimpleNamespace(metrics={"auc_mean": 0.79}))
    assert "not calibrated" in p_post_text(None)
    calibrated = p_post_text(SimpleNamespace(metrics={"auc_mean": 0.79, "brier_mean": 0.18}))
    assert "not calibrated" not in calibrated and "brier_mean 0.180" in calibrated


def test_override_is_stored_in_the_ica_folder_and_repredicted(make_napari_viewer, qtbot, tmp_path, installed_model,
                                                              scans) -> None:
    from napari_neuroreview.cli import main

    folders = {}
    for state in ("pre", "post"):
        folders[state] = tmp_path / f"{state}-ica"
        assert main(["networks", "extract", str(scans[state]), "--out", str(folders[state]), "--quiet"]) == 0
    viewer = make_napari_viewer()
    widget = user.dock(viewer, "Networks (pre vs post)")  # as the Plugins menu opens it
    _compare(widget, qtbot, folders["pre"], folders["post"])
    assert widget.comparison is not None
    widget.network_combo.setCurrentText("language")
    before = widget.comparison.post.assignment.matches["language"].component
    other = next(widget.post_component.itemData(i) for i in range(widget.post_component.count())
                 if widget.post_component.itemData(i) != before)
    widget.post_component.setCurrentIndex(widget.post_component.findData(other))
    widget.post_component.activated.emit(widget.post_component.currentIndex())
    qtbot.waitUntil(lambda: not widget.repredict_runner.running, timeout=60_000)
    stored = load_networks_json(folders["post"]).matches["language"]
    assert stored.component == other and not stored.automatic
    assert widget.comparison.post.assignment.matches["language"].component == other
    assert "*" in widget.table.item(list(atlas.NETWORKS).index("language"), 4).text()
    doc = json.loads((folders["pre"] / "networks.json").read_text())
    assert doc["networks"]["language"]["automatic"] is True  # the other scan is untouched


def test_different_lengths_are_refused_with_one_sentence(make_napari_viewer, qtbot, tmp_path, installed_model) -> None:
    pre, post = tmp_path / "pre.nii.gz", tmp_path / "post.nii.gz"
    save_bold(make_synthetic_bold(seed=1, n_volumes=100), pre)
    save_bold(make_synthetic_bold(seed=2, n_volumes=90), post)
    viewer = make_napari_viewer()
    widget = user.dock(viewer, "Networks (pre vs post)")  # as the Plugins menu opens it
    layers_before = len(viewer.layers)
    _compare(widget, qtbot, pre, post)
    assert "volumes" in str(widget.runner.last_error)
    assert widget.comparison is None and len(viewer.layers) == layers_before


def test_rsfmri_sample_opens_in_the_networks_widget_and_is_compared(make_napari_viewer, qtbot, tmp_path,
                                                                    installed_model, monkeypatch) -> None:
    """``neuroreview view --sample rsfmri``: the sample pair filled in and compared, no Case widget.

    The cache holds the committed sample already (``test_samples`` checks it is what the generator
    writes; writing a missing case into the cache is the same code for every sample), so the time
    goes to the comparison, not to simulating the pair again. The viewer is napari's hidden test
    viewer (as the other ``open_viewer`` tests pass): a shown 1920 x 1080 window is drawn by the
    software OpenGL under Xvfb, which took 30 of this test's 34 CPU s.
    """
    import shutil

    from napari_neuroreview._sample_data import sample_cache_dir
    from napari_neuroreview.viewer import open_viewer
    from napari_neuroreview.widgets.cmb_review import find_docked

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    shutil.copytree(Path(__file__).resolve().parents[2] / "sample_data" / "rsfmri", sample_cache_dir() / "rsfmri")
    viewer, case_widget = open_viewer(sample="rsfmri", run=False, viewer=make_napari_viewer())
    assert case_widget is None
    widget = find_docked(viewer, NetworksWidget)[0]
    assert widget.pre_path.text().endswith("ses-pre") and widget.post_path.text().endswith("ses-post")
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=120_000)
    assert widget.runner.last_error is None and widget.comparison is not None
    assert view_grid(viewer).enabled and LAYER_NAMES["pre"][1] in viewer.layers


def test_the_model_line_reads_the_demo_flag_from_the_card() -> None:
    """A version the user trained on real scans is not called demo weights (it used to be, always)."""
    from types import SimpleNamespace

    from napari_neuroreview.core.registry import DEMO_NOTE, ModelCard
    from napari_neuroreview.widgets.networks import model_text

    def text(notes: str) -> str:
        card = ModelCard(name="network-prepost", version="2.0.0", task="rsfmri-prepost", notes=notes)
        return model_text(SimpleNamespace(predictor=SimpleNamespace(card=card),
                                          model={"name": card.name, "version": card.version}))

    assert DEMO_NOTE in text(DEMO_NOTE)
    assert "demo weights" not in text("") and "own weights" in text("")


def test_device_label_and_model_versions_with_their_tags_before_compare(make_napari_viewer, qtbot, installed_model,
                                                                        monkeypatch) -> None:
    """What will run is on screen before Run: the device, and the model version with its card's tag."""
    from napari_neuroreview.core.device import resolve_device
    from napari_neuroreview.core.errors import InputFileError
    from napari_neuroreview.core.registry import ModelCard, save_model
    from napari_neuroreview.widgets import networks

    own = ModelCard(name="network-prepost", version="3.0.0", task="rsfmri-prepost", notes="trained on our scans")
    save_model({"w": torch.zeros(1)}, own, default_registry_root())
    viewer = make_napari_viewer()
    widget = user.dock(viewer, "Networks (pre vs post)")
    assert widget.device.label.isVisibleTo(widget)
    assert widget.device.label.text() == f"Using {resolve_device('auto').label}"
    items = {widget.versions.combo.itemData(i): widget.versions.combo.itemText(i)
             for i in range(widget.versions.combo.count())}
    assert items["0.1.0"].endswith("demo weights") and items["3.0.0"].endswith("own weights")
    assert "(default)" in widget.versions.combo.currentText()

    asked = {}

    def fake_compare(pre, post, *, version=None, device="auto", **_):
        asked.update(version=version, device=device)
        yield Progress(0, 1, "loading")
        raise InputFileError("stop here")

    monkeypatch.setattr(networks, "compare", fake_compare)
    widget.versions.combo.setCurrentIndex(widget.versions.combo.findData("0.1.0"))
    widget.device.combo.setCurrentText("cpu")
    widget.pre_path.setText("pre")
    widget.post_path.setText("post")
    widget.runner.run_button.click()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=10_000)
    assert asked == {"version": "0.1.0", "device": "cpu"}  # the picked version runs, not only the default


def test_stage1_epochs_default_is_stated_once_in_the_dataclass() -> None:
    """``networks evaluate / train`` take stage-1 epochs from ``Stage1Config`` (the value users got: 30)."""
    from napari_neuroreview import cli_networks
    from napari_neuroreview.cli import build_parser
    from napari_neuroreview.core.config_fields import config_default
    from napari_neuroreview.core.tasks.networks.train import Stage1Config

    for command in (["evaluate"], ["train", "--version", "1.1.0"]):
        args = build_parser().parse_args(["networks", *command, "--data", "cohort"])
        assert cli_networks.stage1_config(args).epochs == config_default(Stage1Config, "epochs") == 30
        args = build_parser().parse_args(["networks", *command, "--data", "cohort", "--epochs", "5", "--seed", "3"])
        assert (cli_networks.stage1_config(args).epochs, cli_networks.stage1_config(args).seed) == (5, 3)
