"""The retraining widget on the widget parts: one set of defaults, the device said, Cancel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import napari_user as user
from napari_neuroreview import cli_cmb
from napari_neuroreview.cli import build_parser
from napari_neuroreview.core.config_fields import RANGES, config_default
from napari_neuroreview.core.device import resolve_device
from napari_neuroreview.core.progress import Progress
from napari_neuroreview.core.tasks.cmb.training import FitConfig
from napari_neuroreview.widgets import cmb_train


@pytest.fixture
def trainer(make_napari_viewer, tmp_path, monkeypatch):
    """The retraining dock as the Plugins menu opens it, with the user's folders in the test's."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    viewer = make_napari_viewer()
    return user.dock(viewer, "Microbleed retraining")


def test_epochs_default_is_stated_once_for_widget_cli_and_core(trainer) -> None:
    """Epochs were 10 in the dataclass, 8 in the CLI and 8 in the widget; now the dataclass says it."""
    spin = trainer.settings.widget("epochs")
    cli_config = cli_cmb.train_config(build_parser().parse_args(["cmb", "train"]))
    assert spin.value() == cli_config.epochs == config_default(FitConfig, "epochs") == 8  # what users got
    assert (spin.minimum(), spin.maximum()) == (RANGES["epochs"].low, RANGES["epochs"].high)
    assert cli_config == FitConfig()  # steps per epoch, lr and seed too: the dataclass's
    given = cli_cmb.train_config(build_parser().parse_args(["cmb", "train", "--epochs", "3", "--lr", "0.01"]))
    assert (given.epochs, given.lr, given.max_steps_per_epoch) == (3, 0.01, FitConfig().max_steps_per_epoch)
    spin.setValue(5)
    assert trainer.settings.config() == FitConfig(epochs=5)


def test_device_and_versions_are_shown_before_run(trainer) -> None:
    assert trainer.device.label.isVisibleTo(trainer)  # it showed no device at all
    assert trainer.device.label.text() == f"Using {resolve_device('auto').label}"
    assert trainer.base.combo.currentText() == cmb_train.DEFAULT and trainer.base.version() is None
    assert "(default)" in trainer.versions.combo.currentText()
    assert "demo weights" in trainer.versions.combo.currentText()  # the shipped card's tag


def test_cancel_stops_the_retraining_within_a_second(trainer, qtbot, tmp_path, monkeypatch) -> None:
    store = tmp_path / "reviews.sqlite"
    store.write_bytes(b"")  # the widget only checks that the store exists; the fake below never opens it
    trainer.store_path.setText(str(store))
    seen: dict = {}

    def slow_retrain(store_path, root, base_version, config, device="auto", roots=None):
        seen.update(store=Path(store_path), base=base_version, epochs=config.epochs, device=device)
        try:
            for step in range(400):
                time.sleep(0.05)
                yield Progress(step, 400, f"epoch step {step}")
        finally:
            seen["closed"] = True
        raise AssertionError("not cancelled")

    monkeypatch.setattr(cmb_train, "retrain_from_store", slow_retrain)
    trainer.device.combo.setCurrentText("cpu")
    trainer.runner.run_button.click()
    qtbot.wait(400)
    assert trainer.runner.running
    clicked = time.perf_counter()
    trainer.runner.cancel_button.click()
    qtbot.waitUntil(lambda: not trainer.runner.running, timeout=5_000)
    assert time.perf_counter() - clicked < 1.0
    assert seen == {"store": store, "base": None, "epochs": 8, "device": "cpu", "closed": True}
    assert trainer.runner.status.text() == "Cancelled" and trainer.last_card is None
