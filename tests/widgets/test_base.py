"""The widget parts every model widget is built from (widgets/_base.py).

The parts are opened inside the Case dock (napari's viewer proxy, the plugin path) where
they depend on the viewer; the viewer-free parts are built alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import napari_user as user
import numpy as np
import pytest
import torch
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QSpinBox

from napari_neuroreview.core.config_fields import (
    RANGES,
    FieldRange,
    config_default,
    field_range,
)
from napari_neuroreview.core.device import resolve_device
from napari_neuroreview.core.model_labels import is_demo, tag_label
from napari_neuroreview.core.registry import (
    DEMO_NOTE,
    SHIPPED_WEIGHTS_ROOT,
    ModelCard,
    save_model,
    set_default,
)
from napari_neuroreview.widgets._base import (
    ConfigForm,
    DevicePicker,
    LayerPicker,
    VersionPicker,
)


@dataclass
class ToyConfig:
    epochs: int = 7
    lr: float = 3e-4
    augment: bool = False
    width: int = field(default=16, metadata={"range": FieldRange(4, 64, "network width", "Width")})
    names: list[str] = field(default_factory=lambda: ["a"])


def test_device_picker_says_what_will_run(qtbot) -> None:
    picker = DevicePicker()
    qtbot.addWidget(picker)
    picker.show()
    assert picker.requested() == "auto"
    assert picker.label.isVisible() and picker.label.text() == f"Using {resolve_device('auto').label}"
    picker.combo.setCurrentText("cpu")
    assert picker.label.text() == "Using CPU (requested)" and picker.choice().device == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_picker_says_a_missing_gpu_in_one_sentence(qtbot, notifications) -> None:
    picker = DevicePicker()
    qtbot.addWidget(picker)
    picker.combo.addItem("cuda")  # e.g. a stale choice: the label refuses it, no traceback
    picker.combo.setCurrentText("cuda")
    assert picker.label.text().startswith("CUDA was requested but no CUDA GPU")
    assert any("CUDA was requested" in m for m in notifications)


def test_version_picker_shows_each_card_tag_and_selects_the_default(qtbot, tmp_path) -> None:
    name = "network-prepost"
    own = ModelCard(name=name, version="2.0.0", task="rsfmri-prepost", notes="trained on our scans")
    save_model({"w": torch.zeros(2)}, own, tmp_path)
    picker = VersionPicker(name, [tmp_path, SHIPPED_WEIGHTS_ROOT], describe=tag_label)
    qtbot.addWidget(picker)
    texts = [picker.combo.itemText(i) for i in range(picker.combo.count())]
    assert texts == ["1.0.0 (default) \u00b7 demo weights", "2.0.0 \u00b7 own weights"]
    assert picker.version() == "1.0.0" and is_demo(picker.card())  # the registry's default, not the newest
    set_default(name, "2.0.0", [tmp_path, SHIPPED_WEIGHTS_ROOT])
    picker.refresh()
    assert picker.combo.currentText() == "2.0.0 (default) \u00b7 own weights"
    assert picker.version() == "2.0.0" and picker.card().notes == "trained on our scans"

    newest_first = VersionPicker(name, [tmp_path, SHIPPED_WEIGHTS_ROOT], default_item="the default",
                                 newest_first=True)
    qtbot.addWidget(newest_first)
    assert [newest_first.combo.itemData(i) for i in range(newest_first.combo.count())] == [None, "2.0.0", "1.0.0"]
    assert newest_first.version() is None and newest_first.card() is None  # "the default" first
    assert "demo weights" in newest_first.combo.itemText(2)  # model_labels.tag_label by default
    newest_first.refresh(select="1.0.0")
    assert newest_first.card().notes.startswith(DEMO_NOTE[:10])



def test_version_picker_without_a_default_selects_the_newest(qtbot, tmp_path, monkeypatch) -> None:
    name = "network-prepost"
    save_model({"w": torch.zeros(2)}, ModelCard(name=name, version="2.0.0", task="rsfmri-prepost"), tmp_path)
    monkeypatch.setattr("napari_neuroreview.widgets._base.default_version", lambda *_args: None)
    picker = VersionPicker(name, [tmp_path, SHIPPED_WEIGHTS_ROOT], describe=tag_label)
    qtbot.addWidget(picker)
    assert picker.version() == "2.0.0"  # not the oldest, which the list shows first

def test_layer_picker_follows_the_viewer_in_a_docked_widget(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    case = user.dock(viewer, "Case")  # napari hands the dock a viewer proxy
    picker = LayerPicker(case.viewer, lambda layer: layer.__class__.__name__ == "Image" and layer.ndim == 3,
                         leading=("MNI template",))
    seen: list[str] = []
    picker.changed.connect(lambda: seen.append(picker.currentText()))
    assert [picker.itemText(i) for i in range(picker.count())] == ["MNI template"] and picker.layer() is None
    viewer.add_image(np.zeros((4, 5, 6)), name="t1")
    viewer.add_image(np.zeros((5, 6)), name="flat")  # not accepted
    viewer.add_image(np.ones((4, 5, 6)), name="swi")
    assert [picker.itemText(i) for i in range(picker.count())] == ["MNI template", "t1", "swi"]
    picker.setCurrentText("swi")
    assert picker.layer().name == "swi" and float(np.asarray(picker.layer().data).max()) == 1.0
    viewer.layers.remove("t1")
    assert picker.currentText() == "swi" and seen[-1] == "swi"  # the choice is kept, the host told
    viewer.layers.remove("swi")
    assert picker.currentText() == "MNI template" and picker.layer() is None


def test_layer_picker_follows_renames_and_lets_go_of_removed_layers(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    case = user.dock(viewer, "Case")  # napari hands the dock a viewer proxy
    picker = LayerPicker(case.viewer, lambda layer: not layer.name.endswith("_phase"))
    a = viewer.add_image(np.zeros((4, 5, 6)), name="a")
    viewer.add_image(np.zeros((4, 5, 6)), name="b")
    picker.setCurrentText("b")
    seen: list[str] = []
    picker.changed.connect(lambda: seen.append(picker.currentText()))
    viewer.layers["b"].name = "b renamed"  # the chosen layer: the choice follows it
    assert [picker.itemText(i) for i in range(picker.count())] == ["a", "b renamed"]
    assert picker.currentText() == "b renamed" and picker.layer().name == "b renamed" and seen[-1] == "b renamed"
    viewer.layers["a"].name = "a_phase"  # renamed out of what the picker offers
    assert [picker.itemText(i) for i in range(picker.count())] == ["b renamed"]
    assert picker.currentText() == "b renamed"
    def follows(layer) -> bool:
        return any(isinstance(cb, tuple) and cb[0]() is picker for cb in layer.events.name.callbacks)

    assert follows(a)
    viewer.layers.remove("a_phase")
    assert not follows(a)  # a removed layer no longer calls the picker
    picker.release()
    assert not follows(viewer.layers["b renamed"])
    viewer.layers["b renamed"].name = "c"
    assert picker.currentText() == "b renamed"  # released: no longer follows


def test_config_form_takes_defaults_from_the_dataclass_and_ranges_from_one_place(qtbot) -> None:
    form = ConfigForm(ToyConfig, ("epochs", "lr", "augment", "width"))
    qtbot.addWidget(form)
    epochs, lr, augment, width = (form.widget(n) for n in ("epochs", "lr", "augment", "width"))
    assert isinstance(epochs, QSpinBox) and isinstance(lr, QDoubleSpinBox) and isinstance(augment, QCheckBox)
    assert epochs.value() == config_default(ToyConfig, "epochs") == 7
    assert (epochs.minimum(), epochs.maximum()) == (RANGES["epochs"].low, RANGES["epochs"].high)
    assert lr.value() == pytest.approx(3e-4) and lr.minimum() == pytest.approx(RANGES["lr"].low)
    assert (width.minimum(), width.maximum()) == (4, 64)  # the field's own range wins
    assert field_range(ToyConfig, "width").what == "network width"
    assert config_default(ToyConfig, "names") == ["a"]
    epochs.setValue(3)
    augment.setChecked(True)
    assert form.config(names=["b"]) == ToyConfig(epochs=3, lr=3e-4, augment=True, width=16, names=["b"])
    with pytest.raises(TypeError):
        ConfigForm(ToyConfig, ("names",))
