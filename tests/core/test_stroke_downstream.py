"""Stroke downstream (issue 13 item 4): the risk net's interface, frozen vs trainable heads, stratified batches
that keep every subject, the signed Youden threshold, the split shared with pretraining, the test metrics.
(The CLI end to end: test_cli_stroke.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    roc_auc_score,
)
from stroke_synthetic import write_tiny_cohort

from napari_neuroreview.cli import main
from napari_neuroreview.core.errors import InputFileError
from napari_neuroreview.core.explain.gradcam import find_layer, grad_cam
from napari_neuroreview.core.metrics.classification import youden_threshold
from napari_neuroreview.core.models.stroke_risk import HEADS, StrokeRiskNet
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.stroke.downstream import (
    DownstreamConfig,
    RiskBatches,
    below_chance_messages,
    check_same_cohort,
    load_pretrained,
    train_downstream,
)
from napari_neuroreview.core.tasks.stroke.evaluate import METRICS, score_binary
from napari_neuroreview.core.tasks.stroke.split import make_split, read_split

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # a shared 2-core machine

def label_cohort(cohort: Path, strokes: int) -> Path:
    """Overwrite the labelled subjects' written labels: the last ``strokes`` of them had one."""
    lines = (cohort / "labels.tsv").read_text().splitlines()
    body = [f"{line.split(chr(9))[0]}\t{int(i >= len(lines) - 1 - strokes)}" for i, line in enumerate(lines[1:])]
    (cohort / "labels.tsv").write_text("\n".join([lines[0], *body]) + "\n")
    return cohort


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, one_torch_thread) -> tuple[Path, Path]:
    """A tiny labelled cohort (30 labelled, 10 strokes) and a registry with a 1-epoch stroke-pretrain version."""
    base = tmp_path_factory.mktemp("stroke-downstream")
    cohort = label_cohort(write_tiny_cohort(base / "cohort", n=40, labelled=30, shape=(8, 10, 8)), strokes=10)
    registry = base / "registry"
    assert main(["stroke", "pretrain", "--data", str(cohort), "--out", str(registry), "--epochs", "1", "--batch",
                 "8", "--width", "2", "--queue", "0", "--device", "cpu", "--quiet"]) == 0
    return cohort, registry


class _EnsembleOfImage(torch.nn.Module):
    """The risk net as a function of the image alone (the table fixed), as Grad-CAM takes a model."""

    def __init__(self, net: StrokeRiskNet, table: torch.Tensor) -> None:
        super().__init__()
        self.net, self.table = net, table

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image, self.table)["ensemble"]


def test_risk_net_interface_shapes_and_cam_layer() -> None:
    torch.manual_seed(0)
    net = StrokeRiskNet(table_width=9, width=2, hidden=16)
    image, table = torch.rand(3, 2, 12, 14, 12), torch.rand(3, 9)
    h_img, h_tab = net.encode_image(image), net.encode_table(table)
    assert h_img.shape == (3, net.d_img) and h_tab.shape == (3, net.d_tab)
    out = net.heads(h_img, h_tab)
    assert tuple(out) == HEADS and all(v.shape == (3,) for v in out.values())
    assert torch.allclose(out["ensemble"], (out["image"] + out["table"] + out["fused"]) / 3)
    assert all(torch.equal(a, b) for a, b in zip(net(image, table).values(), out.values()))
    assert isinstance(find_layer(net, net.image_cam_layer), torch.nn.Conv3d | torch.nn.Sequential)
    cam = grad_cam(_EnsembleOfImage(net, table), image, "net." + net.image_cam_layer)
    assert cam.raw.shape == (3, 12, 14, 12)
    for name in ("reference_img", "reference_tab", "reference_embeddings", "reference_labels"):
        assert name in dict(net.named_buffers())


def test_every_training_subject_is_in_each_epoch_and_each_batch_holds_a_stroke() -> None:
    for n, strokes, batch in ((50, 7, 8), (50, 3, 8), (33, 33 // 4, 5)):
        labels = np.zeros(n, np.float32)
        labels[np.random.default_rng(n).choice(n, strokes, replace=False)] = 1
        batches = RiskBatches(np.zeros((n, 2, 2, 2, 2), np.float16), np.zeros((n, 1), np.float32), labels,
                              DownstreamConfig(batch=batch))
        generator = torch.Generator().manual_seed(0)
        for _epoch in range(3):
            rows = batches.epoch_rows(generator)
            assert len(rows) == batches.steps_per_epoch == -(-n // batch)
            every = torch.cat(rows).tolist()
            assert sorted(every) == list(range(n))  # each subject exactly once: none dropped
            sizes = [len(r) for r in rows]
            assert max(sizes) - min(sizes) <= 2
            per_batch = [int(labels[r.numpy()].sum()) for r in rows]
            if strokes >= len(rows):
                assert min(per_batch) >= 1  # the cohort's share in every batch
            else:
                assert max(per_batch) == 1  # too few strokes for every batch: spread, one each


def test_youden_threshold_is_signed() -> None:
    y = np.array([0] * 6 + [1] * 4)
    s = np.array([0.9, 0.8, 0.85, 0.7, 0.95, 0.75, 0.1, 0.2, 0.15, 0.3])  # anti-correlated: strokes score lowest
    t = youden_threshold(y, s)
    tpr, fpr = (s[y == 1] >= t).mean(), (s[y == 0] >= t).mean()
    assert tpr - fpr == 0.0  # no rule beats chance: signed J's maximum is 0
    # |J| would take the perfect flipped rule, calling "positive" the scores BELOW 0.3 (or >= 0.7 as J = -1)
    assert t not in (0.7, 0.3)
    assert youden_threshold(y, -s) == -0.3  # the same scores turned the right way round: the perfect cut


def test_a_head_below_chance_on_validation_is_warned_about() -> None:
    """Signed Youden on a head that ranks worse than chance calls (nearly) everyone positive: it must be said."""
    y = np.array([0] * 6 + [1] * 4)
    s = np.array([0.9, 0.8, 0.85, 0.7, 0.95, 0.75, 0.1, 0.2, 0.15, 0.3])
    aucs = {"image": roc_auc_score(y, s), "table": roc_auc_score(y, -s), "fused": 0.5, "ensemble": 0.49}
    messages = below_chance_messages({f"val_auc_{h}": v for h, v in aucs.items()})
    assert [m.split("'")[0] for m in messages] == ["The image head", "The ensemble head"]
    assert messages[0].startswith("The image head's validation ROC-AUC is 0.00, below chance (0.5)")
    assert below_chance_messages({f"val_auc_{h}": 0.7 for h in HEADS}) == []


def test_score_binary_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=200) < 0.1).astype(int)
    s = y * 0.8 + rng.uniform(size=200)
    out = score_binary(y, s, threshold=0.7, n_boot=100)
    assert out["n"] == 200 and out["positives"] == int(y.sum()) and out["prevalence"] == y.mean()
    assert out["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, s))
    assert out["pr_auc"]["value"] == pytest.approx(average_precision_score(y, s))
    assert out["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y, s >= 0.7))
    assert out["sensitivity"]["value"] == pytest.approx(((s >= 0.7) & (y == 1)).sum() / y.sum())
    assert out["specificity"]["value"] == pytest.approx(((s < 0.7) & (y == 0)).sum() / (y == 0).sum())
    for key in METRICS:
        low, high = out[key]["ci95"]
        assert low <= out[key]["value"] <= high
    assert out["roc_auc"]["ci95"][0] < out["roc_auc"]["ci95"][1]
    # tied scores (probabilities rounded, as a saturated head gives): the shared cohort metrics agree with sklearn
    tied = np.round(s / s.max(), 1)
    out = score_binary(y, tied, threshold=0.5, n_boot=10)
    assert out["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, tied))
    assert out["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y, tied >= 0.5))


def _train(cohort: Path, registry: Path, mode: str):
    _root, clip, card = load_pretrained(None, registry)
    split = read_split(registry / card.config["split"]["file"], cohort)
    config = DownstreamConfig(mode=mode, epochs=2, batch=8, lr=1e-2, augment=False)
    return clip, card, split, run_to_completion(train_downstream(cohort, split, clip, card, config, "cpu"))


def test_frozen_mode_keeps_the_encoders_bit_identical_and_trainable_mode_moves_them(pretrained) -> None:
    cohort, registry = pretrained
    clip, _card, split, frozen = _train(cohort, registry, "frozen")
    for mine, theirs in ((frozen.net.image_encoder, clip.image_encoder), (frozen.net.table_encoder, clip.table_encoder)):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    assert not any(p.requires_grad for e in frozen.net.encoders for p in e.parameters())
    *_, trainable = _train(cohort, registry, "trainable")
    moved = [not torch.equal(a, b) for a, b in zip(trainable.net.image_encoder.state_dict().values(),
                                                   clip.image_encoder.state_dict().values())]
    assert any(moved)
    assert list(trainable.net.state_dict()) == list(frozen.net.state_dict())  # plain weights again after training
    # the heads learned on train only; thresholds on val, signed Youden per head, as probabilities
    labels = {s for p in ("train",) for s in split["subjects"][p]}
    assert set(frozen.subjects["train"]) <= labels and not set(frozen.subjects["train"]) & set(split["subjects"]["test"])
    assert set(frozen.thresholds) == set(HEADS) and all(0 < t < 1 for t in frozen.thresholds.values())
    assert frozen.net.reference_embeddings.shape == (len(frozen.subjects["train"]), frozen.net.d_img + frozen.net.d_tab)


def test_a_pretrained_version_of_another_cohort_or_split_is_refused(pretrained, tmp_path: Path) -> None:
    cohort, registry = pretrained
    _root, clip, card = load_pretrained(None, registry)
    other = label_cohort(write_tiny_cohort(tmp_path / "other", n=40, labelled=30, seed=1), strokes=10)
    with pytest.raises(InputFileError, match="pretrained on another cohort"):
        check_same_cohort(card, other)
    # a risk model (stroke evaluate's check) is named for what it is
    risk_card = dataclasses.replace(card, name="stroke-risk")
    with pytest.raises(InputFileError, match=r"stroke-risk \S+ was trained \(and pretrained\) on another cohort .*"
                                             r"pretrain and train on this cohort first\.$"):
        check_same_cohort(risk_card, other)
    with pytest.raises(InputFileError, match="pretrained on another cohort"):
        run_to_completion(train_downstream(other, make_split(other), clip, card, DownstreamConfig(), "cpu"))
    with pytest.raises(InputFileError, match="not the one"):  # the same cohort cut with another seed
        run_to_completion(train_downstream(cohort, make_split(cohort, seed=5), clip, card, DownstreamConfig(), "cpu"))
    # the same cohort and seed, but one test subject moved to train by hand: the card's digest of the assignment differs
    edited = read_split(registry / card.config["split"]["file"], cohort)
    edited["subjects"]["train"].append(edited["subjects"]["test"].pop(0))
    with pytest.raises(InputFileError, match="not the one"):
        run_to_completion(train_downstream(cohort, edited, clip, card, DownstreamConfig(), "cpu"))


def test_thresholds_are_youden_on_the_validation_subjects_and_only_they_depend_on_their_labels(
        pretrained, monkeypatch) -> None:
    """Recomputed from the saved net on the val subjects, the thresholds are the ones kept; flipping only the val
    labels (1 epoch: no best-epoch choice for them to sway) changes the thresholds and leaves every head's weights."""
    from scipy.special import expit

    from napari_neuroreview.core.tasks.stroke import downstream as downstream_module
    from napari_neuroreview.core.tasks.stroke.downstream import (
        encoding_from_card,
        predict_logits,
    )
    from napari_neuroreview.core.tasks.stroke.labels import (
        read_stroke_labels,
        read_stroke_table,
    )
    from napari_neuroreview.core.tasks.stroke.pretrain import load_images

    cohort, registry = pretrained
    _root, clip, card = load_pretrained(None, registry)
    split = read_split(registry / card.config["split"]["file"], cohort)
    config = DownstreamConfig(mode="frozen", epochs=1, batch=8, lr=1e-2, augment=False)
    first = run_to_completion(train_downstream(cohort, split, clip, card, config, "cpu"))
    labels, rows = read_stroke_labels(cohort), {r["subject"]: r for r in read_stroke_table(cohort)}
    val = first.subjects["val"]
    y_val = np.array([labels[s] for s in val])
    logits = predict_logits(first.net, run_to_completion(load_images(cohort, val)),
                            encoding_from_card(card).encode([rows[s] for s in val]))
    for h in HEADS:
        assert first.thresholds[h] == youden_threshold(y_val, expit(logits[h].astype(np.float64)))

    flipped = {s: 1 - v if s in set(val) else v for s, v in labels.items()}
    monkeypatch.setattr(downstream_module, "read_stroke_labels", lambda _cohort: dict(flipped))
    second = run_to_completion(train_downstream(cohort, split, clip, card, config, "cpu"))
    weights = first.net.state_dict()  # the heads, the frozen encoders and the training subjects' references
    assert any("_head." in k for k in weights)
    assert all(torch.equal(weights[k], second.net.state_dict()[k]) for k in weights)
    assert any(first.thresholds[h] != second.thresholds[h] for h in HEADS)
