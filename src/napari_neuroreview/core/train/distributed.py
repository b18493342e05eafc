"""What the training loop needs to run unchanged under ``torchrun``.

Why so little: ``torch.distributed`` and ``DistributedDataParallel`` do the work. The
loop asks three things of this module: wrap the model in DDP when a process group is
initialised (gradients are averaged over ranks by DDP, never by hand), give each rank
its share of every global batch, and tell rank 0 apart (only rank 0 writes).

Every rank draws the SAME global batch from the same seeds, then keeps its contiguous
slice (:func:`shard`). So a run on W processes sees the batches a single process
sees: a loss that is a mean over samples of equal shards gets the single-process
gradient from DDP's average, and a contrastive loss computed on the embeddings gathered
by :func:`gather_with_grad` gets it too (see there). Drawing the global batch on every
rank costs a little CPU; in exchange the random streams, the schedule and the loss
curve do not depend on the number of ranks.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = ["finish", "gather_with_grad", "init_from_env", "is_distributed", "is_main", "map_batch", "mean_over_ranks",
           "rank_and_world", "shard", "wrap"]


def is_distributed() -> bool:
    """Whether a process group is initialised (``torchrun`` + :func:`init_from_env`)."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks; (0, 1) outside ``torchrun``."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """Rank 0: the only rank that writes files, checkpoints and reports."""
    return rank_and_world()[0] == 0


def init_from_env(device: torch.device) -> bool:
    """Initialise the process group from ``torchrun``'s environment; False when not launched by it.

    NCCL for CUDA, gloo otherwise. Idempotent: an initialised group is kept.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def finish() -> None:
    """Tear the process group down once every rank has got here; nothing outside ``torchrun``.

    Why the barrier: a rank that destroys its gloo group while another still writes
    (rank 0 saves the card) can abort the whole run at exit ("terminate called without
    an active exception"), losing a finished training to a teardown race.
    """
    if not is_distributed():
        return
    dist.barrier()
    dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model in DistributedDataParallel when distributed, else the model itself.

    ``find_unused_parameters``: a head may get no gradient in a step (the microbleed
    mask head when a batch has no known mask), which DDP must be told to expect.
    """
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def map_batch(batch: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every tensor and array of a batch (tuples, lists, dicts, dataclasses)."""
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        return fn(batch)
    if isinstance(batch, dict):
        return {key: map_batch(value, fn) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(map_batch(value, fn) for value in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(map_batch(value, fn) for value in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: map_batch(getattr(batch, f.name), fn)
                                             for f in dataclasses.fields(batch) if f.init})
    return batch


def shard(batch: Any, rank: int, world: int) -> Any:
    """This rank's contiguous slice (along the first axis) of every tensor in a global batch.

    Slices follow ``numpy.array_split``: the first ``n % world`` ranks get one sample more.
    Scalars (0-d tensors) are kept whole.
    """
    if world == 1:
        return batch

    def piece(x: Any) -> Any:
        if x.ndim == 0:
            return x
        q, r = divmod(int(x.shape[0]), world)
        start = rank * q + min(rank, r)
        return x[start:start + q + (rank < r)]

    return map_batch(batch, piece)


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of a number over ranks (for the loss a run reports); the number itself when alone."""
    _rank, world = rank_and_world()
    if world == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)  # gloo has no AVG
    return float(total.item()) / world


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``scale`` on the way back."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


def gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of ``z``, in rank order; the gradient flows back through this rank's rows.

    Why: a contrastive loss needs every rank's negatives. Each rank then computes the loss
    of the whole global batch, and its backward reaches its own rows only. DDP averages
    the ranks' gradients, which would divide the single-process gradient by the world
    size, so the local rows' gradient is multiplied by it here: with DDP the update is
    the single-process one. Shards may differ in size by a row or more (padded for the
    all-gather, unpadded after). Outside ``torchrun``: ``z`` itself.
    """
    rank, world = rank_and_world()
    if world == 1:
        return z
    sizes = [torch.zeros(1, dtype=torch.long, device=z.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([z.shape[0]], dtype=torch.long, device=z.device))
    counts = [int(s.item()) for s in sizes]
    padded = z.detach()
    if padded.shape[0] < max(counts):
        padded = torch.cat([padded, padded.new_zeros((max(counts) - padded.shape[0], *padded.shape[1:]))])
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    pieces = [part[:count] for part, count in zip(parts, counts)]
    pieces[rank] = _ScaleGrad.apply(z, float(world)) if z.requires_grad else z
    return torch.cat(pieces)
