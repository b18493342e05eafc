"""Stroke pretraining (issue 13 item 2): the split, the table's encoding, SCARF, hard negatives, the queue,
radians, and ``neuroreview stroke pretrain`` on a tiny cohort (the DDP run: test_stroke_pretrain_ddp.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from stroke_synthetic import write_tiny_cohort

import napari_neuroreview.core.tasks.stroke.pretrain as pretrain_module
from napari_neuroreview.cli import main
from napari_neuroreview.core.errors import InputFileError, InsufficientDataError
from napari_neuroreview.core.models.stroke_net import StrokeClipNet, sample_hard
from napari_neuroreview.core.registry import list_versions
from napari_neuroreview.core.tasks.stroke.labels import (
    read_stroke_labels,
    read_stroke_table,
)
from napari_neuroreview.core.tasks.stroke.pretrain import (
    MAX_ROTATION_RAD,
    ClipBatches,
    PretrainConfig,
    image_augment,
    pretraining_subjects,
)
from napari_neuroreview.core.tasks.stroke.split import (
    make_split,
    read_split,
    split_for_cohort,
)
from napari_neuroreview.core.tasks.stroke.tabular import TableEncoding, scarf_corrupt
from napari_neuroreview.core.train.losses import clip_loss


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return write_tiny_cohort(tmp_path_factory.mktemp("stroke") / "cohort", n=40, labelled=30)


def test_split_is_by_subject_stratified_and_keeps_test_out_of_pretraining(cohort: Path, tmp_path: Path) -> None:
    labels = read_stroke_labels(cohort)
    split = split_for_cohort(tmp_path / "split.json", cohort, seed=3)
    parts = split["subjects"]
    every = [s for p in parts.values() for s in p]
    assert sorted(every) == sorted(r["subject"] for r in read_stroke_table(cohort))  # each subject once
    assert set(parts["test"]) <= set(labels)  # only labelled subjects are tested
    for label in (0, 1):  # each label's subjects are cut at the same shares
        of = [s for s in labels if labels[s] == label]
        assert sum(s in parts["test"] for s in of) == round(0.2 * len(of))
    assert not set(pretraining_subjects(split)["train"] + pretraining_subjects(split)["val"]) & set(parts["test"])
    # persisted: read back, not redrawn with another seed
    assert split_for_cohort(tmp_path / "split.json", cohort, seed=99) == split
    assert make_split(cohort, seed=99)["subjects"] != parts


def test_split_of_another_cohort_is_refused(cohort: Path, tmp_path: Path) -> None:
    other = write_tiny_cohort(tmp_path / "other", n=6, labelled=3, seed=1)
    split_for_cohort(tmp_path / "split.json", other)
    with pytest.raises(InputFileError, match="split of another cohort"):
        read_split(tmp_path / "split.json", cohort)


def test_table_statistics_come_from_training_rows_only() -> None:
    train = [{"age": 50.0, "sex": "F", "sbp": 120.0, "af": 0}, {"age": 70.0, "sex": "M", "sbp": None, "af": 1}]
    encoding = TableEncoding.fit(train)
    assert encoding.columns == ("age", "sex", "sbp", "af")
    assert encoding.mean["age"] == 60.0 and encoding.sd["age"] == 10.0 and encoding.mean["sbp"] == 120.0
    x = encoding.encode([{"age": 90.0, "sex": None, "sbp": None, "af": 1}])[0]
    age, sex, sbp, af = (x[g] for g in encoding.groups)
    assert age.tolist() == [3.0, 0.0]  # (90 - 60) / 10, present
    assert sex.tolist() == [0.0, 0.0, 1.0] and sbp.tolist() == [0.0, 1.0] and af.tolist() == [0.0, 1.0, 0.0]


def test_scarf_replaces_the_share_of_columns_from_the_training_marginal() -> None:
    groups = [slice(0, 2), slice(2, 5), slice(5, 7), slice(7, 9), slice(9, 11), slice(11, 13), slice(13, 15),
              slice(15, 17), slice(17, 19), slice(19, 21)]
    pool = torch.arange(30 * 21, dtype=torch.float32).reshape(30, 21)  # every cell distinct
    x = -torch.ones(50, 21)
    out = scarf_corrupt(x, pool, groups, 0.3, torch.Generator().manual_seed(0))
    for row in out:
        replaced = [g for g in groups if not bool((row[g] == -1).all())]
        assert len(replaced) == 3  # 30 % of 10 columns, in every row
        for g in replaced:  # a whole column group of one training row
            assert any(bool((row[g] == p[g]).all()) for p in pool)


def test_rotations_are_in_radians() -> None:
    ranges = image_augment(PretrainConfig()).rand_affine_grid.rotate_range
    assert ranges == (MAX_ROTATION_RAD,) * 3 and 0 < MAX_ROTATION_RAD < math.pi / 8  # 10 degrees, not 10 radians
    with pytest.raises(ValueError, match="radians"):
        image_augment(PretrainConfig(rotation_rad=10.0))  # the study's bug: degrees given as radians


def test_hard_negatives_follow_the_similarity_and_never_the_pair_itself() -> None:
    sim = torch.zeros(4, 4)
    sim[0, 2] = sim[1, 3] = sim[2, 0] = sim[3, 1] = 5.0
    picks = sample_hard(sim, torch.rand(4, generator=torch.Generator().manual_seed(1)), temperature=0.1)
    assert picks.tolist() == [2, 3, 0, 1]
    sim = torch.eye(3) * 10  # the diagonal is the pair itself: never drawn
    draws = torch.stack([sample_hard(sim, torch.full((3,), u), 1.0) for u in np.linspace(0, 0.999, 50)])
    assert not bool((draws == torch.arange(3)).any())
    # among equals, draws follow the softmax: half each
    counts = torch.bincount(draws[:, 0], minlength=3)
    assert counts[0] == 0 and abs(int(counts[1]) - 25) <= 1


def test_clip_loss_queue_adds_negatives_only() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = (torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1) for _ in range(2))
    queue = torch.nn.functional.normalize(torch.randn(10, 8, generator=g), dim=1)
    assert torch.allclose(clip_loss(a, b, 0.1, queue_a=a[:0], queue_b=b[:0]), clip_loss(a, b, 0.1))
    assert clip_loss(a, b, 0.1, queue_a=queue, queue_b=queue) > clip_loss(a, b, 0.1)


def test_key_encoders_follow_the_online_ones_by_momentum_and_get_no_gradient() -> None:
    torch.manual_seed(0)
    net = StrokeClipNet(3, width=2, embed_dim=4, hidden=8)
    before = net.key["table_projection"].weight.clone()
    with torch.no_grad():
        net.table_projection.weight.add_(1.0)
    net.momentum_update(0.9)
    assert torch.allclose(net.key["table_projection"].weight, before + 0.1)
    assert not any(p.requires_grad for p in net.key.parameters())


def test_the_queue_keeps_the_newest_embeddings_and_not_the_batch_subjects_own(monkeypatch) -> None:
    config = PretrainConfig(width=2, embed_dim=8, hidden=16, queue=20, batch=8)
    rng = np.random.default_rng(0)
    encoding = TableEncoding(("age",), {"age": 0.0}, {"age": 1.0})
    batches = ClipBatches(rng.uniform(0, 1, (24, 2, 8, 8, 8)).astype(np.float16),
                          rng.standard_normal((24, 2)).astype(np.float32), encoding, config)
    torch.manual_seed(0)
    net = StrokeClipNet(encoding.width, config.width, config.embed_dim, config.hidden)
    seen: list[torch.Tensor] = []
    hook = net.register_forward_hook(lambda _m, _i, out: seen.append(out["k_img"]))  # the momentum keys
    for batch in batches.batches(0, torch.Generator().manual_seed(0)):
        batches.loss(net, batch)
    hook.remove()
    assert batches.steps_per_epoch == 3 and batches.queue[0].shape == (20, 8)
    assert torch.allclose(batches.queue[0][:8], seen[2], atol=1e-6)  # newest first
    assert torch.allclose(batches.queue[0][8:16], seen[1], atol=1e-6)
    # next epoch: the negatives from the queue are its entries of other subjects only
    given = []
    monkeypatch.setattr(pretrain_module, "clip_loss", lambda *a, **k: given.append(k) or clip_loss(*a, **k))
    batch = next(iter(batches.batches(1, torch.Generator().manual_seed(1))))
    own = torch.isin(batches.queue[2], batch["index"])
    batches.loss(net, batch)
    assert int(own.sum()) > 0 and len(given[0]["queue_a"]) == len(given[0]["queue_b"]) == int((~own).sum())


def test_cli_pretrain_saves_weights_card_and_split_and_never_reads_a_test_subject(
        cohort: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    opened: list[Path] = []
    real = pretrain_module.load_volume
    monkeypatch.setattr(pretrain_module, "load_volume", lambda path: opened.append(Path(path)) or real(path))
    registry = tmp_path / "registry"
    code = main(["stroke", "pretrain", "--data", str(cohort), "--out", str(registry), "--epochs", "2", "--batch", "8",
                 "--width", "2", "--queue", "16", "--device", "cpu", "--quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    split = read_split(result["split"], cohort)
    assert Path(result["split"]).parent == registry
    read = {p.parent.name for p in opened}
    assert read == set(split["subjects"]["train"]) | set(split["subjects"]["val"])
    assert not read & set(split["subjects"]["test"])
    assert len(result["train_loss"]) == 2 and all(math.isfinite(v) for v in result["train_loss"])
    n_val = len(split["subjects"]["val"])
    assert result["val_retrieval"]["subjects"] == n_val and result["val_retrieval"]["median_rank_chance"] == (n_val + 1) / 2
    assert 1 <= result["val_retrieval"]["median_rank"] <= n_val
    card = list_versions(registry, "stroke-pretrain")[0]
    assert card.metrics["val_retrieval_median_rank"] == result["val_retrieval"]["median_rank"]
    assert card.metrics["val_clip_loss_chance"] == pytest.approx(math.log(n_val))
    assert card.config["cohort_fingerprint"] == split["cohort"] and card.config["split"]["file"] == Path(
        result["split"]).name
    assert card.config["rotation_rad"] == MAX_ROTATION_RAD and card.config["queue"] == 16
    assert str(cohort.parent) not in json.dumps(card.config) + card.training_data  # no absolute path in a card
    # a split of another cohort given by the user: one sentence, exit 2
    other = write_tiny_cohort(tmp_path / "other", n=6, labelled=3, seed=1)
    split_for_cohort(tmp_path / "other-split.json", other)
    assert main(["stroke", "pretrain", "--data", str(cohort), "--out", str(registry), "--split",
                 str(tmp_path / "other-split.json"), "--epochs", "1", "--quiet"]) == 2
    assert "split of another cohort" in capsys.readouterr().err


def test_a_batch_smaller_than_the_processes_is_refused_before_any_rank_starts(monkeypatch, capsys, tmp_path) -> None:
    """--nproc 4 with --batch 2: one sentence, exit 2, torchrun never started; under torchrun by hand
    (or a batch capped by few training subjects) the same refusal comes from the batches, not an empty shard."""
    from napari_neuroreview import cli_stroke

    monkeypatch.setattr(cli_stroke, "_torchrun", lambda args: pytest.fail("torchrun started"))
    assert main(["stroke", "pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--batch", "2",
                 "--nproc", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--batch 2 is smaller than --nproc 4" in err and err.count("\n") == 1
    monkeypatch.setattr(pretrain_module, "rank_and_world", lambda: (0, 3))
    encoding = TableEncoding.fit([{"age": 1.0}, {"age": 2.0}])
    with pytest.raises(InsufficientDataError, match="smaller than the 3 processes"):
        ClipBatches(np.zeros((2, 2, 4, 4, 4), np.float32), np.zeros((2, 1), np.float32), encoding,
                    PretrainConfig(batch=32))


def test_retrieval_ranks_each_true_pair_among_all_rows_both_ways() -> None:
    """Aligned embeddings rank every partner first; a shuffled table side ranks them as chance does."""
    class Fake:
        def embed(self, image: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = torch.nn.functional.normalize(image.flatten(1), dim=1)
            return z, torch.nn.functional.normalize(table, dim=1)

    n = 40
    z = torch.nn.functional.normalize(torch.randn(n, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    images = z.reshape(n, 1, 2, 2, 2)
    aligned = pretrain_module.retrieval(Fake(), images, z.clone(), "cpu")
    assert aligned["median_rank"] == 1.0 and aligned["top5"] == 1.0
    assert aligned["median_rank_chance"] == 20.5 and aligned["top5_chance"] == 5 / 40
    shuffled = pretrain_module.retrieval(Fake(), images, z[torch.randperm(n)], "cpu")
    assert shuffled["median_rank"] > 5 and shuffled["top5"] < 0.5
