"""Stroke pretraining under ``torchrun``: 2 CPU processes (gloo) against 1 on the same global batches.

As ``test_train_distributed.py`` does for the rails: this file is launched with
``python -m torch.distributed.run --nproc_per_node 2`` (the ``__main__`` block is the worker)
and rank 0's results are compared with the same run in the test process. The run is the
real one (``ClipBatches`` + ``StrokeClipNet`` on the one loop: features gathered across
ranks, hard negatives, the queue) on synthetic arrays; then the CLI's ``--nproc 2`` on a
tiny cohort on disk against the same command in one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_neuroreview.core.models.stroke_net import StrokeClipNet
from napari_neuroreview.core.progress import run_to_completion
from napari_neuroreview.core.tasks.stroke.pretrain import ClipBatches, PretrainConfig
from napari_neuroreview.core.tasks.stroke.tabular import TableEncoding
from napari_neuroreview.core.train import distributed
from napari_neuroreview.core.train.loop import LoopConfig, fit

CPU = torch.device("cpu")
CONFIG = PretrainConfig(width=4, embed_dim=16, hidden=32, queue=12, epochs=2, batch=8, lr=3e-3)


def _data() -> tuple[np.ndarray, np.ndarray, TableEncoding]:
    rng = np.random.default_rng(0)
    rows = [{"age": float(rng.uniform(40, 80)), "sex": "FM"[i % 2], "sbp": float(rng.uniform(100, 180)),
             "smoking": None if i % 5 == 0 else i % 2} for i in range(20)]
    encoding = TableEncoding(("age", "sex", "sbp", "smoking"), {"age": 60.0, "sbp": 140.0}, {"age": 10.0, "sbp": 20.0})
    images = rng.uniform(0, 2, (20, 2, 10, 10, 10)).astype(np.float16)
    return images, encoding.encode(rows), encoding


def run() -> dict[str, Any]:
    """The pretraining both sides make: 2 epochs of 2 steps of 8 rows, validated on 4 rows."""
    images, table, encoding = _data()
    torch.manual_seed(CONFIG.seed)
    net = StrokeClipNet(encoding.width, CONFIG.width, CONFIG.embed_dim, CONFIG.hidden)
    batches = ClipBatches(images[:16], table[:16], encoding, CONFIG, images[16:], table[16:])
    loop = LoopConfig(epochs=CONFIG.epochs, lr=CONFIG.lr, seed=CONFIG.seed)
    history = run_to_completion(fit(net, batches, loop, CPU))
    return {"train_loss": history.train_loss, "val_loss": history.val_loss,
            "weights": [float(p.detach().double().sum()) for p in net.parameters()]}


def worker(folder: Path) -> None:
    """One rank under torchrun; rank 0 writes the result."""
    torch.set_num_threads(1)
    assert distributed.init_from_env(CPU)
    result = run()
    result["world"] = distributed.rank_and_world()[1]
    if distributed.is_main():
        (folder / "result.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()


def test_two_ranks_same_loss_as_one(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
         str(tmp_path)], check=False, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "result.json").read_text())
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run()
    finally:
        torch.set_num_threads(before)
    assert two["world"] == 2
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(two["val_loss"], one["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(two["weights"], one["weights"], rtol=1e-3, atol=1e-4)


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
