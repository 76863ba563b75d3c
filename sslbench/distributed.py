"""Process-group helpers: one code path that is correct on 1 or N processes.

Launch with ``torchrun --nproc-per-node K ...``; :func:`init_from_env` reads the
variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``). Without a process group (or with a group of
one) every helper here is the identity, so the same model and loss code runs
in a plain single-process run.

Gradient convention (what every loss in ``baselines/losses`` relies on):
DistributedDataParallel *averages* parameter gradients over ranks, so rank
``r``'s loss ``L_r`` must satisfy ``mean_r dL_r/dtheta = dL/dtheta``, with ``L``
the 1-process loss on the global batch. :func:`gather_with_grad` gives that for
a loss computed on gathered embeddings: its backward sums the incoming
gradients of all ranks (``all_reduce(SUM)``) and returns this rank's rows, so
rank ``r``'s local embeddings receive ``sum_s dL_s/dz_r``; when every rank
computes the global loss (``L_s = L``) that is ``world_size * dL/dz_r``, and
DDP's average turns it into ``dL/dz_r``. Returning only the local rows of the
gradient (no all_reduce) is a bug public libraries shipped (docs/reference/distributed.md):
it trains ``world_size`` times too slowly through the batch statistics and
drops the cross-rank terms of contrastive losses.

All functions below that communicate are collectives: every rank must call
them, in the same order (and, for :func:`gather_with_grad`, run the backward).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank; 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes; 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """Rank on this machine (torchrun's ``LOCAL_RANK``, the CUDA device index); 0 if unset."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this is rank 0 (the process that logs and writes results)."""
    return rank() == 0


def launched_as_main() -> bool:
    """Whether this process is rank 0 of its launch (torchrun's ``RANK``; true without torchrun),
    readable before a process group exists and after it is torn down."""
    return int(os.environ.get("RANK", "0")) == 0


def init_from_env(device: str | torch.device = "cpu") -> bool:
    """Initialise the default process group from torchrun's environment.

    Does nothing (and returns ``False``) when ``WORLD_SIZE`` is unset or 1. The
    backend is ``nccl`` for a CUDA ``device`` (after
    ``torch.cuda.set_device(LOCAL_RANK)``) and ``gloo`` otherwise; the
    rendezvous is ``env://`` (``MASTER_ADDR``, ``MASTER_PORT``).

    Args:
        device: The training device, e.g. ``"cpu"`` or ``"cuda"``.

    Returns:
        Whether this process is now part of a group of more than one rank.

    Raises:
        RuntimeError: ``WORLD_SIZE > 1`` without ``RANK``, ``MASTER_ADDR`` or
            ``MASTER_PORT`` (not launched by torchrun).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return False
    if dist.is_initialized():
        return is_distributed()
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch with "
            "`torchrun --nproc-per-node K ...`, or unset WORLD_SIZE for a single process"
        )
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(local_rank())
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=int(os.environ["RANK"]), world_size=world)
    return True


def destroy() -> None:
    """Tear down the default process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank; no-op when not distributed."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_gather_sizes(n: int, device: str | torch.device = "cpu") -> list[int]:
    """Every rank's local batch size, in rank order (a collective).

    Args:
        n: This rank's size along dim 0.
        device: Where the small size tensor lives (a CUDA device for nccl).

    Returns:
        ``[n_0, ..., n_{world-1}]``; ``[n]`` when not distributed.
    """
    if not is_distributed():
        return [n]
    t = torch.tensor([n], dtype=torch.int64, device=device)
    out = [torch.zeros_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return [int(v) for v in torch.cat(out).tolist()]


def _all_gather_padded(x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """All-gather ``x`` whose dim 0 differs per rank: pad to the max, gather, trim, concatenate."""
    m = max(sizes)
    if x.shape[0] < m:
        x = torch.cat([x, x.new_zeros((m - x.shape[0], *x.shape[1:]))])
    x = x.contiguous()
    out = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(out, x)
    return torch.cat([o[:s] for o, s in zip(out, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """Forward: all_gather along dim 0. Backward: all_reduce(SUM) of the full gradient, this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:  # type: ignore[override]
        r = dist.get_rank()
        ctx.start = sum(sizes[:r])
        ctx.stop = ctx.start + sizes[r]
        return _all_gather_padded(x, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop], None


def gather_with_grad(x: torch.Tensor, sizes: Sequence[int] | None = None) -> torch.Tensor:
    """All-gather along dim 0 with the correct backward (a collective).

    Forward: the rows of all ranks concatenated in rank order. Backward: the
    gradient of the whole gathered tensor is summed over ranks
    (``all_reduce(SUM)``) and this rank's rows are returned, so rank ``r``'s
    input receives ``sum_s dL_s/dx_r``: every rank's loss's dependence on
    ``x_r``. When every rank computes the same global loss ``L``, that is
    ``world_size * dL/dx_r``, which DistributedDataParallel's gradient average
    brings back to ``dL/dx_r`` (see the module docstring). Ranks may hold
    different numbers of rows. Identity when not distributed.

    Args:
        x: ``(n_r, *S)`` this rank's rows.
        sizes: Every rank's ``n``, if already known (skips one small
            collective); see :func:`all_gather_sizes`.

    Returns:
        ``(sum_r n_r, *S)``; ``x`` itself when not distributed.
    """
    if not is_distributed():
        return x
    if sizes is None:
        sizes = all_gather_sizes(x.shape[0], x.device)
    if sizes[dist.get_rank()] != x.shape[0]:
        raise ValueError(f"sizes[{dist.get_rank()}] = {sizes[dist.get_rank()]} but x has {x.shape[0]} rows")
    return _GatherWithGrad.apply(x, tuple(int(s) for s in sizes))


def gather_pair_with_grad(
    a: torch.Tensor, b: torch.Tensor, sizes: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gather_with_grad` of two views in one collective.

    Args:
        a: ``(n_r, Da)``, e.g. this rank's projector outputs of view a.
        b: ``(n_r, Db)``, row ``i`` paired with ``a[i]``.
        sizes: Every rank's ``n``, if already known.

    Returns:
        ``(N, Da), (N, Db)`` with ``N = sum_r n_r``; ``(a, b)`` when not distributed.
    """
    if not is_distributed():
        return a, b
    both = gather_with_grad(torch.cat([a, b], dim=1), sizes)
    return both[:, : a.shape[1]], both[:, a.shape[1] :]


def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 without autograd, for features and labels (a collective).

    Ranks may hold different numbers of rows (including zero): sizes are
    gathered first, rows padded to the largest, gathered and trimmed. The
    result is in rank order, so contiguous shards (rank ``r`` holding one
    contiguous range of the dataset) come back in dataset order; an
    interleaving sampler (``DistributedSampler``) needs its indices gathered
    too to reorder.

    Args:
        x: ``(n_r, *S)`` this rank's rows, any dtype the backend supports.

    Returns:
        ``(sum_r n_r, *S)``, detached; ``x.detach()`` when not distributed.
    """
    x = x.detach()
    if not is_distributed():
        return x
    return _all_gather_padded(x, all_gather_sizes(x.shape[0], x.device))


def mean_over_ranks(x: torch.Tensor) -> float:
    """Mean of a scalar over ranks (a collective); ``float(x)`` when not distributed.

    Used for the logged loss and the NaN check, so every rank takes the same decision.
    """
    if not is_distributed():
        return float(x)
    y = x.detach().clone().double().reshape(1)
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return float(y) / world_size()
