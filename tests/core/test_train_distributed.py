"""The one training loop under ``torchrun``: 2 CPU processes (gloo) against 1 on the same global batches.

The test launches this file with ``python -m torch.distributed.run --nproc_per_node 2``
(the ``__main__`` block is the worker), once per module, and compares what rank 0
wrote with the same runs in the test process:

* a per-sample mean loss: the same loss curve and weights (DDP averages the gradients
  of equal shards, which is the single-process gradient);
* a contrastive loss on :func:`gather_with_grad` embeddings, with unequal shards (7
  rows on 2 ranks): the same loss curve, and for one step the same loss value and the
  same parameter gradients as one process on the global batch;
* checkpoints and logs (``on_epoch``) written by rank 0 only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.train import distributed
from napari_neuroreview.core.train.loop import LoopConfig, fit
from napari_neuroreview.core.train.losses import clip_loss, supcon_loss

CPU = torch.device("cpu")


class Regression:
    """y = X w + noise, 16 rows in 2 batches of 8 (equal shards on 2 ranks)."""

    steps_per_epoch = 2

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.x = torch.from_numpy(rng.standard_normal((16, 4)).astype(np.float32))
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.from_numpy(
            rng.standard_normal(16).astype(np.float32))

    def batches(self, epoch: int, generator: torch.Generator) -> Any:
        for idx in torch.randperm(16, generator=generator).chunk(2):
            yield self.x[idx], self.y[idx]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(model(x).squeeze(1), y)


class PairNet(nn.Module):
    """Two small encoders onto the unit sphere."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(5, 8), nn.Linear(5, 8)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(self.a(a), dim=1), F.normalize(self.b(b), dim=1)


class Pairs:
    """14 (a, b) pairs of 3 classes in 2 batches of 7: shards of 4 and 3 rows on 2 ranks."""

    steps_per_epoch = 2

    def __init__(self) -> None:
        rng = np.random.default_rng(1)
        self.a = torch.from_numpy(rng.standard_normal((14, 5)).astype(np.float32))
        self.b = self.a + 0.3 * torch.from_numpy(rng.standard_normal((14, 5)).astype(np.float32))
        self.labels = torch.arange(14) % 3

    def batches(self, epoch: int, generator: torch.Generator) -> Any:
        for idx in torch.randperm(14, generator=generator).chunk(2):
            yield {"a": self.a[idx], "b": self.b[idx], "labels": self.labels[idx]}

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        za, zb = model(batch["a"], batch["b"])
        za, zb = distributed.gather_with_grad(za), distributed.gather_with_grad(zb)
        labels = distributed.gather_with_grad(batch["labels"])
        return clip_loss(za, zb, 0.5) + supcon_loss(torch.cat([za, zb]), torch.cat([labels, labels]), 0.5)


def _weights(model: nn.Module) -> list[list[float]]:
    return [p.detach().flatten().tolist() for p in model.parameters()]


def runs(on_epoch: Any = None) -> dict[str, Any]:
    """The runs both sides make: a regression and a contrastive fit, and one gathered step."""
    out: dict[str, Any] = {}
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    history = run_to_completion(fit(model, Regression(), LoopConfig(epochs=4, lr=0.3, seed=3), CPU,
                                    on_epoch=on_epoch))
    out["regression"] = {"loss": history.train_loss, "weights": _weights(model)}
    torch.manual_seed(0)
    pair = PairNet()
    history = run_to_completion(fit(pair, Pairs(), LoopConfig(epochs=3, lr=0.02, seed=4), CPU))
    out["contrastive"] = {"loss": history.train_loss, "weights": _weights(pair)}
    # One step by hand: the gathered loss and the gradients DDP leaves on the parameters.
    torch.manual_seed(5)
    pair = PairNet()
    trained = distributed.wrap(pair, CPU)
    data = Pairs()
    rank, world = distributed.rank_and_world()
    batch = distributed.shard({"a": data.a[:7], "b": data.b[:7], "labels": data.labels[:7]}, rank, world)
    loss = data.loss(trained, batch)
    loss.backward()
    out["step"] = {"loss": float(loss.detach()), "rows": int(batch["a"].shape[0]),
                   "grads": [p.grad.flatten().tolist() for p in pair.parameters()]}
    return out


def worker(folder: Path) -> None:
    """One rank under torchrun: the runs, on_epoch files named by rank, results from rank 0."""
    torch.set_num_threads(1)
    assert distributed.init_from_env(CPU)
    rank, world = distributed.rank_and_world()
    result = runs(on_epoch=lambda epoch, _history: (folder / f"epoch{epoch}-rank{rank}").write_text("written"))
    result["world"] = world
    rows = [torch.zeros(1) for _ in range(world)]
    torch.distributed.all_gather(rows, torch.tensor([float(result["step"]["rows"])]))
    result["step"]["rows_per_rank"] = [int(r.item()) for r in rows]
    if distributed.is_main():
        (folder / "result.json").write_text(json.dumps(result))
    distributed.finish()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, str(folder)],
        check=False, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / "result.json").read_text()), folder


@pytest.fixture(scope="module")
def one_rank() -> dict[str, Any]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return runs()
    finally:
        torch.set_num_threads(before)


def test_two_ranks_follow_the_single_process_loss_curve(two_ranks, one_rank) -> None:
    result, _ = two_ranks
    assert result["world"] == 2
    for name in ("regression", "contrastive"):
        np.testing.assert_allclose(result[name]["loss"], one_rank[name]["loss"], rtol=1e-4, err_msg=name)
        for got, want in zip(result[name]["weights"], one_rank[name]["weights"]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
    assert one_rank["regression"]["loss"][-1] < 0.5 * one_rank["regression"]["loss"][0]  # it did train


def test_gathered_contrastive_loss_is_the_global_batch_loss(two_ranks, one_rank) -> None:
    step = two_ranks[0]["step"]
    assert step["rows_per_rank"] == [4, 3]  # unequal shards, padded and unpadded in the gather
    assert one_rank["step"]["rows"] == 7
    assert step["loss"] == pytest.approx(one_rank["step"]["loss"], rel=1e-5)
    for got, want in zip(step["grads"], one_rank["step"]["grads"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_only_rank_zero_writes(two_ranks) -> None:
    _, folder = two_ranks
    written = sorted(p.name for p in folder.iterdir() if p.name.startswith("epoch"))
    assert written == [f"epoch{e}-rank0" for e in range(4)]


def test_shard_splits_like_array_split() -> None:
    batch = {"x": torch.arange(7), "pair": (np.arange(7), torch.tensor(3.0))}
    parts = [distributed.shard(batch, rank, 2) for rank in range(2)]
    assert [p["x"].tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [p["pair"][0].tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6]]
    assert all(float(p["pair"][1]) == 3.0 for p in parts)  # a scalar is kept whole
    assert distributed.shard(batch, 0, 1) is batch
    assert distributed.gather_with_grad(batch["x"]) is batch["x"]  # alone: nothing to gather


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
