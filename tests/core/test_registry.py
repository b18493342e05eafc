"""Tests of the model registry: safe loading, card integrity, immutability, ordering, the default, configs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from napari_neuroreview.core.errors import RegistryError
from napari_neuroreview.core.model_config import ConfigRule, check_config
from napari_neuroreview.core.model_loading import load_state_dict
from napari_neuroreview.core.registry import (
    CARD_FILE,
    DEFAULT_FILE,
    DEMO_NOTE,
    SHIPPED_WEIGHTS_ROOT,
    WEIGHTS_FILE,
    ModelCard,
    card_digest,
    check_new_version,
    default_version,
    find_version,
    installed_versions,
    next_version,
    rollback_default,
    set_default,
    latest,
    list_versions,
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


def _rewrite_card(folder: Path, rehash: bool, **changes) -> None:
    """Edit a saved card; ``rehash`` recomputes card_sha256 (a consistent card, e.g. in the wrong folder)."""
    data = json.loads((folder / CARD_FILE).read_text())
    data.update(changes)
    if rehash:
        data["card_sha256"] = card_digest(data)
    (folder / CARD_FILE).write_text(json.dumps(data))


def test_card_mismatching_its_folder_is_reported(tmp_path: Path, linear: torch.nn.Linear) -> None:
    folder = save_model(linear.state_dict(), make_card(), tmp_path)
    _rewrite_card(folder, rehash=True, version="3.0.0")
    with pytest.raises(RegistryError, match="says cmb-det 3.0.0"):
        list_versions(tmp_path, "cmb-det")
    assert read_card(folder).version == "3.0.0"


def test_card_edited_after_saving_is_refused(tmp_path: Path, linear: torch.nn.Linear) -> None:
    """A hand-edited threshold (1.5: nothing is ever detected) is caught like swapped weights."""
    folder = save_model(linear.state_dict(), make_card(), tmp_path)
    assert read_card(folder).card_sha256 == card_digest(json.loads((folder / CARD_FILE).read_text()))
    _rewrite_card(folder, rehash=False, config={"in_channels": 1, "threshold": 1.5})
    with pytest.raises(RegistryError, match="does not match its card_sha256.*changed after saving"):
        load_state_dict(folder)
    _rewrite_card(folder, rehash=False, card_sha256="")
    with pytest.raises(RegistryError, match="has no card_sha256"):
        read_card(folder)


def _config_checks() -> dict:
    """Each shipped model's config check, by model name: the one its loader runs before building a network."""
    from napari_neuroreview.core.tasks.cmb import model as cmb
    from napari_neuroreview.core.tasks.csvd import model as csvd
    from napari_neuroreview.core.tasks.metastasis import model as metastasis
    from napari_neuroreview.core.tasks.networks import model as networks
    from napari_neuroreview.core.tasks.stroke import downstream as stroke

    return {cmb.MODEL_NAME: cmb.check_detector_config, csvd.MODEL_NAME: csvd.check_subtype_config,
            metastasis.MODEL_NAME: metastasis.check_origin_config, networks.MODEL_NAME: networks.check_prepost_config,
            stroke.MODEL_NAME: stroke._check_risk_card}


def test_shipped_cards_pass_their_own_check() -> None:
    """Every shipped card's digest and config pass the checks its loader runs (a new shipped model needs one here)."""
    checks = _config_checks()
    for card_path in SHIPPED_WEIGHTS_ROOT.glob("*/*/card.json"):
        card = read_card(card_path.parent)
        assert card.card_sha256
        assert card.name in checks, f"shipped {card.name} has no config check in this test"
        checks[card.name](card)


def test_a_version_in_two_roots_is_refused(tmp_path: Path, linear: torch.nn.Linear) -> None:
    save_model(linear.state_dict(), make_card("1.0.0"), tmp_path / "user")
    save_model(linear.state_dict(), make_card("1.0.0"), tmp_path / "shipped")
    roots = [tmp_path / "user", tmp_path / "shipped"]
    with pytest.raises(RegistryError, match=r"installed twice, in .*user.*1\.0\.0 and in .*shipped.*1\.0\.0"):
        installed_versions("cmb-det", roots)
    with pytest.raises(RegistryError, match="installed twice"):
        find_version("cmb-det", None, roots, "detector", "train")
    with pytest.raises(RegistryError, match="already exists"):
        check_new_version("cmb-det", "1.0.0", [tmp_path / "user"])
    assert [c.version for _r, c in installed_versions("cmb-det", [tmp_path / "user", tmp_path / "user"])] == ["1.0.0"]


def test_default_is_explicit_not_the_newest(tmp_path: Path, linear: torch.nn.Linear) -> None:
    user, shipped = tmp_path / "user", tmp_path / "shipped"
    roots = [user, shipped]
    save_model(linear.state_dict(), make_card("1.0.0"), shipped)
    save_model(linear.state_dict(), make_card("1.1.0", "1.0.0"), user)
    assert default_version("cmb-det", roots) == "1.0.0"  # no recorded default: the shipped newest
    assert find_version("cmb-det", None, roots, "detector", "train")[1].version == "1.0.0"

    assert set_default("cmb-det", "1.1.0", roots) == "1.0.0"
    assert default_version("cmb-det", roots) == "1.1.0"
    assert (user / "cmb-det" / DEFAULT_FILE).is_file() and not (shipped / "cmb-det" / DEFAULT_FILE).exists()
    save_model(linear.state_dict(), make_card("1.2.0", "1.1.0"), user)
    assert default_version("cmb-det", roots) == "1.1.0"  # a newer version does not take over
    set_default("cmb-det", "1.2.0", roots)
    assert rollback_default("cmb-det", roots) == "1.1.0"
    assert rollback_default("cmb-det", roots) == "1.0.0"
    with pytest.raises(RegistryError, match="no earlier default"):
        rollback_default("cmb-det", roots)
    with pytest.raises(RegistryError, match="9.9.9 is not installed"):
        set_default("cmb-det", "9.9.9", roots)
    assert next_version("cmb-det", roots) == "1.3.0"


def test_flagged_version_is_never_the_fallback_default(tmp_path: Path, linear: torch.nn.Linear) -> None:
    save_model(linear.state_dict(), make_card("1.0.0"), tmp_path)
    flagged = make_card("1.1.0", "1.0.0")
    flagged.config = {**flagged.config, "not_default": "worse on held-out reviews"}
    save_model(linear.state_dict(), flagged, tmp_path)
    assert default_version("cmb-det", [tmp_path]) == "1.0.0"


def test_check_config_refuses_out_of_bounds_and_unknown_keys() -> None:
    rules = {"width": ConfigRule(int, 1, 64), "threshold": ConfigRule(float, 0.0, 1.0)}
    check_config({"width": 8, "threshold": 0.3, "note": "x"}, rules, "card c", allowed={"note"})
    for bad, match in [({"width": 100000}, "width=100000, which is not an integer in \\[1, 64\\]"),
                       ({"width": 8.0}, "width=8.0"), ({"width": True}, "width=true"),
                       ({"threshold": 1.5}, "threshold=1.5"), ({"threshold": float("nan")}, "threshold=NaN"),
                       ({"width": 8, "depth": 3}, "unknown key\\(s\\) depth")]:
        with pytest.raises(RegistryError, match=match):
            check_config(bad, rules, "card c", allowed={"note"})
    with pytest.raises(RegistryError, match="not a JSON object"):
        check_config([1], rules, "card c")


def test_shipped_weights_root_is_in_the_package() -> None:
    import napari_neuroreview

    assert SHIPPED_WEIGHTS_ROOT == Path(napari_neuroreview.__file__).resolve().parent / "weights"


def test_a_card_holding_a_folder_is_a_bug(tmp_path: Path, linear: torch.nn.Linear) -> None:
    """Cards travel with the weights: a folder can name a patient or the user, so saving one is refused."""
    card = make_card()
    card.training_data = f"reviews in {tmp_path / 'Doe_John' / 'reviews.sqlite'}"
    with pytest.raises(ValueError, match="training_data holds a path"):
        save_model(linear.state_dict(), card, tmp_path)
    assert not (tmp_path / "cmb-det" / "1.0.0").exists()
    card.training_data = "12 reviewed scans of reviews.sqlite (sha256 0123456789ab); FP/scan 0.5"
    save_model(linear.state_dict(), card, tmp_path)


def test_load_version_is_the_one_lookup(tmp_path: Path, linear: torch.nn.Linear) -> None:
    """Default when None, the card checked before the weights are read, built on the resolved device."""
    from napari_neuroreview.core.model_loading import load_version

    user, shipped = tmp_path / "user", tmp_path / "shipped"
    roots = [user, shipped]
    save_model(linear.state_dict(), make_card("1.0.0"), shipped)
    save_model(linear.state_dict(), make_card("1.1.0", "1.0.0"), user)

    def build(state, card, device):
        return card.version, device, sorted(state)

    assert load_version("cmb-det", None, build, device="cpu", roots=roots) == (
        "1.0.0", torch.device("cpu"), ["bias", "weight"])  # the default, not the newest
    set_default("cmb-det", "1.1.0", roots)
    assert load_version("cmb-det", None, build, device="cpu", roots=roots)[0] == "1.1.0"
    assert load_version("cmb-det", "1.0.0", build, device="cpu", roots=roots)[0] == "1.0.0"

    (user / "cmb-det" / "1.1.0" / WEIGHTS_FILE).write_bytes(b"\x80 a pickle")  # never read: the check refuses first

    def refuse(card):
        raise RegistryError(f"card {card.version} refused")

    with pytest.raises(RegistryError, match="card 1.1.0 refused"):
        load_version("cmb-det", None, build, device="cpu", roots=roots, check=refuse)
    with pytest.raises(RegistryError, match="No detector is installed: train one with `train`"):
        load_version("cmb-det", None, build, roots=[tmp_path / "empty"], what="detector", train_command="train")


def test_every_system_loads_through_the_one_lookup(monkeypatch) -> None:
    """The detector and the pre/post model have no lookup of their own (issue 9: nine copies before)."""
    from napari_neuroreview.core import model_loading
    from napari_neuroreview.core.tasks.cmb import model as cmb_model
    from napari_neuroreview.core.tasks.networks import model as net_model

    calls = []
    monkeypatch.setattr(cmb_model, "load_version", lambda name, version, build, **kw: calls.append(name) or "cmb")
    monkeypatch.setattr(net_model, "load_version", lambda name, version, build, **kw: calls.append(name) or "net")
    assert cmb_model.load_detector("1.0.0", "cpu") == "cmb" and net_model.load_prepost_model("1.0.0", "cpu") == "net"
    assert calls == [cmb_model.MODEL_NAME, net_model.MODEL_NAME]
    for module in (cmb_model, net_model):
        assert not hasattr(module, "available_versions") and not hasattr(module, "find_version")
    assert model_loading.load_version.__module__ == model_loading.__name__


def test_weights_that_do_not_fit_the_card_are_one_sentence_naming_model_and_version(
    tmp_path: Path, linear: torch.nn.Linear
) -> None:
    """A verified file whose tensors are not the network the card describes (another code's card)."""
    from napari_neuroreview.core.model_loading import card_mismatch, load_version

    save_model(linear.state_dict(), make_card("1.0.0"), tmp_path)

    def build(state: dict[str, torch.Tensor], card: ModelCard, _device: torch.device) -> torch.nn.Linear:
        net = torch.nn.Linear(4, 5)  # the code's idea of the network differs from the saved weights
        with card_mismatch(card):
            net.load_state_dict(state)
        return net

    with pytest.raises(RegistryError, match=r"^The model card cmb-det 1\.0\.0 does not describe its weights \(.*size"):
        load_version("cmb-det", "1.0.0", build, device="cpu", roots=[tmp_path])

    def build_ok(state: dict[str, torch.Tensor], card: ModelCard, _device: torch.device) -> torch.nn.Linear:
        net = torch.nn.Linear(4, 3)
        with card_mismatch(card):
            net.load_state_dict(state)
        return net

    loaded = load_version("cmb-det", "1.0.0", build_ok, device="cpu", roots=[tmp_path])
    assert torch.equal(loaded.weight, linear.weight)


def test_the_detector_loader_reports_weights_missing_a_layer(tmp_path: Path) -> None:
    """The shipped detector's card with one tensor left out of its weights: RegistryError, not torch's traceback."""
    from napari_neuroreview.core.tasks.cmb.model import MODEL_NAME, build_net, load_detector

    shipped = read_card(SHIPPED_WEIGHTS_ROOT / MODEL_NAME / "1.0.0")
    state = build_net(shipped).state_dict()
    dropped = sorted(state)[0]
    del state[dropped]
    card = ModelCard(name=MODEL_NAME, version="9.0.0", task=shipped.task, parent=None,
                     training_data="test", metrics={}, notes=DEMO_NOTE, config=dict(shipped.config))
    save_model(state, card, tmp_path)
    with pytest.raises(RegistryError, match=rf"cmb-detector 9\.0\.0 does not describe its weights \(.*{dropped}"):
        load_detector("9.0.0", device="cpu", roots=[tmp_path])


def test_read_card_of_a_missing_version_names_that_version(tmp_path: Path) -> None:
    """Not the parent folder: 'the weights in models/cmb-detector have no card' sent users to the wrong place."""
    missing = tmp_path / "cmb-detector" / "9.9.9"
    (tmp_path / "cmb-detector").mkdir()
    with pytest.raises(RegistryError) as err:
        read_card(missing)
    assert str(err.value) == f"There is no model version at {missing}."
