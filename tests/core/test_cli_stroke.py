"""``neuroreview stroke train`` and ``stroke evaluate`` (issue 13 items 4 and 7) end to end on a tiny cohort:
pretrain 1 epoch -> train the heads -> evaluate the test subjects once, and their one-sentence refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stroke_synthetic import write_tiny_cohort

import napari_neuroreview.core.tasks.stroke.pretrain as pretrain_module
from napari_neuroreview.cli import main
from napari_neuroreview.core.models.stroke_risk import HEADS
from napari_neuroreview.core.registry import (
    SHIPPED_WEIGHTS_ROOT,
    installed_versions,
    list_versions,
    next_version,
)
from napari_neuroreview.core.tasks.stroke.downstream import load_risk_model
from napari_neuroreview.core.tasks.stroke.evaluate import METRICS
from napari_neuroreview.core.tasks.stroke.split import read_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a shared 2-core machine

def labelled_cohort(out: Path, seed: int = 0) -> Path:
    """A tiny cohort (30 subjects, all labelled) whose last 10 had a stroke: every split part holds both labels."""
    cohort = write_tiny_cohort(out, n=30, labelled=30, shape=(8, 10, 8), seed=seed)
    lines = (cohort / "labels.tsv").read_text().splitlines()
    body = [f"{line.split(chr(9))[0]}\t{int(i >= 20)}" for i, line in enumerate(lines[1:])]
    (cohort / "labels.tsv").write_text("\n".join([lines[0], *body]) + "\n")
    return cohort


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, one_torch_thread) -> tuple[Path, Path]:
    """The cohort and a registry holding its 1-epoch ``stroke pretrain`` version 1.0.0 (and the split)."""
    base = tmp_path_factory.mktemp("stroke-cli")
    cohort, registry = labelled_cohort(base / "cohort"), base / "registry"
    assert main(["stroke", "pretrain", "--data", str(cohort), "--out", str(registry), "--epochs", "1", "--batch", "8",
                 "--width", "2", "--queue", "0", "--device", "cpu", "--quiet"]) == 0
    return cohort, registry


def test_pretrain_train_evaluate_end_to_end(pretrained, tmp_path: Path, monkeypatch, capsys) -> None:
    cohort, registry = pretrained
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))  # an empty user registry
    shipped = [card.version for _root, card in installed_versions("stroke-risk", [SHIPPED_WEIGHTS_ROOT])]
    assert shipped, "the shipped demo stroke-risk weights are the clash this test guards against"
    first = next_version("stroke-risk", [SHIPPED_WEIGHTS_ROOT])
    split = read_split(next(registry.glob("stroke-split-*.json")), cohort)
    opened: list[Path] = []
    real = pretrain_module.load_volume
    monkeypatch.setattr(pretrain_module, "load_volume", lambda path: opened.append(Path(path)) or real(path))
    out = tmp_path / "risk"
    assert main(["stroke", "train", "--data", str(cohort), "--weights", str(registry), "--out", str(out),
                 "--epochs", "2", "--batch", "4", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    trained = json.loads(captured.out)
    assert "Stroke heads (frozen encoders), epoch 2/2" in captured.err  # progress as stroke pretrain's
    assert trained["parent"] == "1.0.0" and trained["mode"] == "frozen" and set(trained["thresholds"]) == set(HEADS)
    assert trained["version"] == first and first not in shipped  # never the shipped version's number
    for head in HEADS:  # a head ranking worse than chance on validation is warned about on stderr
        warned = f"Warning: The {head} head's validation ROC-AUC" in captured.err
        assert warned == (trained["validation"][f"val_auc_{head}"] < 0.5), head
    installed_versions("stroke-risk", [out, SHIPPED_WEIGHTS_ROOT])  # so no "installed twice" when both are listed
    read = {p.parent.name for p in opened}
    assert read == set(split["subjects"]["train"]) | set(split["subjects"]["val"])  # never a test subject
    card = list_versions(out, "stroke-risk")[0]
    assert card.parent == "1.0.0" and card.config["cohort_fingerprint"] == split["cohort"]
    assert (out / card.config["split"]["file"]).is_file()  # the split travels beside the weights
    assert str(tmp_path) not in json.dumps(card.to_dict())
    model = load_risk_model(out)
    assert model.threshold == card.config["thresholds"]["ensemble"] and model.encoding.columns[0] == "age"
    assert len(model.net.reference_labels) == trained["subjects"]["train"] and 0 < len(model.net.reference_labels)

    opened.clear()
    result_file = tmp_path / "eval.json"
    assert main(["stroke", "evaluate", "--data", str(cohort), "--weights", str(out), "--json", str(result_file),
                 "--boot", "30", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "ensemble" in printed and "roc_auc" in printed
    assert {p.parent.name for p in opened} == set(split["subjects"]["test"])  # the test part, once
    result = json.loads(result_file.read_text())
    assert result["model"] == {"name": "stroke-risk", "version": card.version} and result["mode"] == "frozen"
    assert result["test"]["subjects"] == len(split["subjects"]["test"]) and result["test"]["strokes"] == 2
    for head in HEADS:
        assert set(METRICS) <= set(result["heads"][head])
        assert result["heads"][head]["threshold"] == card.config["thresholds"][head]
        assert len(result["heads"][head]["roc_auc"]["ci95"]) == 2
    assert str(tmp_path) not in json.dumps({k: v for k, v in result.items() if k != "cohort"})

    # trainable mode writes the next version, a child of the same pretraining
    second = next_version("stroke-risk", [out, SHIPPED_WEIGHTS_ROOT])
    assert main(["stroke", "train", "--data", str(cohort), "--weights", str(registry), "--out", str(out),
                 "--mode", "trainable", "--epochs", "1", "--batch", "8", "--no-augment", "--device", "cpu",
                 "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == second
    augment = {c.version: c.config["augment"] for c in list_versions(out, "stroke-risk")}
    assert augment == {card.version: True, second: False}  # --no-augment reaches DownstreamConfig


@pytest.mark.parametrize("case", ["other cohort", "no pretraining", "no risk model"])
def test_train_and_evaluate_refusals_are_one_sentence(case: str, pretrained, tmp_path: Path, capsys) -> None:
    cohort, registry = labelled_cohort(tmp_path / "cohort", seed=2), tmp_path / "registry"
    if case == "other cohort":  # the fixture's pretraining, another cohort's data
        argv = ["stroke", "train", "--data", str(cohort), "--weights", str(pretrained[1]), "--out", str(registry)]
        expected = "pretrained on another cohort"
    elif case == "no pretraining":
        argv, expected = ["stroke", "train", "--data", str(cohort), "--weights", str(registry)], "No stroke pretraining"
    else:
        argv, expected = ["stroke", "evaluate", "--data", str(cohort), "--weights", str(registry)], "stroke risk model"
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written
