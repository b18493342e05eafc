"""Tests of the model registry: safe loading, card integrity, immutability, ordering."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from napari_neuroreview.core.errors import RegistryError
from napari_neuroreview.core.registry import (
    CARD_FILE,
    DEMO_NOTE,
    SHIPPED_WEIGHTS_ROOT,
    WEIGHTS_FILE,
    ModelCard,
    latest,
    list_versions,
    load_state_dict,
    read_card,
    save_model,
    version_key,
)


def make_card(version: str = "1.0.0", parent: str | None = None) -> ModelCard:
    return ModelCard(
        name="cmb-det",
        version=version,
        task="cmb",
        parent=parent,
        training_data="200 SWI phantoms, seed 0",
        metrics={"f1": 0.81, "sensitivity": 0.9},
        notes=DEMO_NOTE,
        config={"in_channels": 1},
    )


@pytest.fixture
def linear() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)


def test_round_trip_keeps_values_and_card(tmp_path: Path, linear: torch.nn.Linear) -> None:
    card = make_card()
    folder = save_model(linear.state_dict(), card, tmp_path)
    assert folder == tmp_path / "cmb-det" / "1.0.0"
    assert sorted(p.name for p in folder.iterdir()) == [CARD_FILE, WEIGHTS_FILE]
    assert card.weights_sha256 == ""  # the caller's card is not mutated

    state, loaded = load_state_dict(folder)
    assert state.keys() == linear.state_dict().keys()
    for key, value in linear.state_dict().items():
        assert torch.equal(state[key], value)
    assert len(loaded.weights_sha256) == 64
    assert loaded.metrics == {"f1": 0.81, "sensitivity": 0.9}
    assert (loaded.task, loaded.parent, loaded.notes) == ("cmb", None, DEMO_NOTE)
    assert loaded.config == {"in_channels": 1}
    assert loaded.framework == f"torch {torch.__version__}"
    assert loaded.training_data == card.training_data and loaded.date == card.date

    fresh = torch.nn.Linear(4, 3)
    fresh.load_state_dict(load_state_dict(folder / WEIGHTS_FILE)[0])
    x = torch.randn(2, 4)
    assert torch.equal(fresh(x), linear(x))
    assert not any(p.name.startswith(".tmp") for p in folder.parent.iterdir())


def test_pickle_is_refused_even_when_renamed(tmp_path: Path, linear: torch.nn.Linear) -> None:
    folder = save_model(linear.state_dict(), make_card(), tmp_path)
    checkpoint = tmp_path / "model.pt"
    torch.save(linear.state_dict(), checkpoint)  # zip container holding a pickle
    with pytest.raises(RegistryError, match="Refusing to unpickle .*model.pt"):
        load_state_dict(checkpoint)

    (folder / WEIGHTS_FILE).write_bytes(checkpoint.read_bytes())  # disguised as safetensors
    with pytest.raises(RegistryError, match="Refusing to unpickle"):
        load_state_dict(folder)

    (folder / WEIGHTS_FILE).write_bytes(pickle.dumps({"w": [1.0]}, protocol=4))  # bare pickle
    with pytest.raises(RegistryError, match="Refusing to unpickle"):
        load_state_dict(folder)

    (folder / WEIGHTS_FILE).write_bytes(b"hello, not weights at all")
    with pytest.raises(RegistryError, match="not a safetensors file"):
        load_state_dict(folder)


def test_tampered_weights_fail_the_sha_check(tmp_path: Path, linear: torch.nn.Linear) -> None:
    from safetensors.torch import save_file

    folder = save_model(linear.state_dict(), make_card(), tmp_path)
    tampered = {k: v.clone() for k, v in linear.state_dict().items()}
    tampered["bias"][0] += 1.0
    save_file(tampered, str(folder / WEIGHTS_FILE))  # valid safetensors, wrong weights
    with pytest.raises(RegistryError, match="does not match its model card"):
        load_state_dict(folder)


def test_missing_card_is_an_error(tmp_path: Path, linear: torch.nn.Linear) -> None:
    folder = save_model(linear.state_dict(), make_card(), tmp_path)
    (folder / CARD_FILE).unlink()
    with pytest.raises(RegistryError, match="no model card"):
        load_state_dict(folder)
    with pytest.raises(RegistryError, match="No weight file"):
        load_state_dict(tmp_path / "nowhere")


def test_existing_version_is_never_overwritten(tmp_path: Path, linear: torch.nn.Linear) -> None:
    folder = save_model(linear.state_dict(), make_card(), tmp_path)
    before = (folder / WEIGHTS_FILE).read_bytes()
    other = torch.nn.Linear(4, 3)
    with pytest.raises(RegistryError, match="already exists"):
        save_model(other.state_dict(), make_card(), tmp_path)
    assert (folder / WEIGHTS_FILE).read_bytes() == before
    with pytest.raises(RegistryError, match="dotted numbers"):
        save_model(other.state_dict(), make_card(version="2.0-beta"), tmp_path)


def test_versions_sort_numerically(tmp_path: Path, linear: torch.nn.Linear) -> None:
    assert latest(tmp_path, "cmb-det") is None
    for version, parent in [("1.9.0", None), ("1.10.0", "1.9.0"), ("1.2.0", None)]:
        save_model(linear.state_dict(), make_card(version, parent), tmp_path)
    (tmp_path / "cmb-det" / ".tmp-2.0.0-abc").mkdir()  # an interrupted save: ignored
    assert [c.version for c in list_versions(tmp_path, "cmb-det")] == ["1.2.0", "1.9.0", "1.10.0"]
    newest = latest(tmp_path, "cmb-det")
    assert newest is not None and (newest.version, newest.parent) == ("1.10.0", "1.9.0")
    assert version_key("1.10.0") > version_key("1.9.0") > version_key("1.2")
    assert list_versions(tmp_path, "other") == []


def test_card_mismatching_its_folder_is_reported(tmp_path: Path, linear: torch.nn.Linear) -> None:
    folder = save_model(linear.state_dict(), make_card(), tmp_path)
    data = json.loads((folder / CARD_FILE).read_text())
    data["version"] = "3.0.0"
    (folder / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(RegistryError, match="says cmb-det 3.0.0"):
        list_versions(tmp_path, "cmb-det")
    assert read_card(folder).version == "3.0.0"


def test_shipped_weights_root_is_in_the_package() -> None:
    import napari_neuroreview

    assert SHIPPED_WEIGHTS_ROOT == Path(napari_neuroreview.__file__).resolve().parent / "weights"
