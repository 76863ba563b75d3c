"""The one training loop every method shares.

It owns optimisation (SGD/LARS/AdamW, warmup + cosine), the EMA hook
(``model.after_step(progress)``), an atomic checkpoint after every epoch,
resumption from it, ``metrics.jsonl`` (loss, named terms, std of the
l2-normalised embeddings, probe RankMe, images/s, data-pipeline share) and a
progress bar on a terminal (plain log lines otherwise). A NaN/Inf loss stops
the run and records it as ``diverged`` instead of raising.

Under ``torchrun`` the model is wrapped in DistributedDataParallel. Every rank
draws the same global batch and the same augmentations (one shared generator)
and keeps its contiguous slice, so a K-process run sees exactly the views of
the 1-process run; the losses gather what must be global
(:mod:`sslbench.distributed`). Batch norm is synchronised across ranks on CUDA
(SyncBatchNorm); on CPU torch has no SyncBatchNorm, so its statistics are per
rank. Only rank 0 writes the checkpoint, the log and the status.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from tqdm import tqdm

from sslbench import distributed as dist
from sslbench.augment import TwoViews, normalize
from sslbench.embedding_stats import (
    collapse_status,
    is_completely_collapsed,
    rankme,
    std_of_l2_normalized,
    uniformity,
)
from sslbench.errors import SslbenchError
from sslbench.faults import maybe_fault
from sslbench.io import (
    atomic_append_line,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from sslbench.method import TrainConfig
from sslbench.optim import build_optimizer, lr_at, set_lr
from sslbench.types import ImageData

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
STATUS = "train_status.json"


@dataclass
class TrainOutcome:
    """How a pretraining run ended.

    Attributes:
        status: ``finished``, ``diverged`` (NaN/Inf loss) or ``collapsed`` (the probe
            read complete collapse; training stopped there).
        epochs: Epochs completed.
        step: Global step at which it diverged or stopped (``None`` when finished).
        message: Human-readable detail.
    """

    status: Literal["finished", "diverged", "collapsed"]
    epochs: int
    step: int | None = None
    message: str = ""


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rewrite_metrics(path: Path, upto_epoch: int) -> None:
    """Keep only the lines of epochs already checkpointed, so a resume writes no duplicates."""
    if not path.exists():
        return
    keep = []
    for ln in path.read_text().splitlines():
        try:
            if json.loads(ln)["epoch"] <= upto_epoch:
                keep.append(ln)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a kill

    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def _restore(
    state: dict,
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    gen: torch.Generator | None = None,
) -> int:
    """Load a checkpoint's weights (and optimiser and RNG states) into this run; return its epoch.

    The data-order/augmentation generator and torch's global RNG are restored too,
    so a resumed run draws exactly what the uninterrupted run would have drawn.

    Raises:
        SslbenchError: when the checkpoint does not fit this run's model (another
            architecture, width or method) or lacks an entry.
    """
    if not isinstance(state, dict):
        raise SslbenchError(f"checkpoint {path} holds a {type(state).__name__}, not an sslbench training "
                            "checkpoint: delete it to retrain, or use another --out")
    try:
        model.load_state_dict(state["model"])
        if optimizer is None:
            return int(state["epoch"])
        optimizer.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["epoch"])
    except (KeyError, IndexError, AttributeError, RuntimeError, TypeError, ValueError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = f"no {e} entry" if isinstance(e, KeyError) else " ".join(lines[:2])[:300]
        raise SslbenchError(
            f"checkpoint {path} does not fit this run ({why}); it was written for another model or "
            f"config: delete it to retrain, or use another --out"
        ) from None


#: Steps before the probe may stop a run: eval-mode batch norm reads its running
#: statistics, which hold more than 1% of their initial values before ~50 updates at
#: momentum 0.1 (0.9^50 < 0.01); earlier readings can look collapsed when they are not.
PROBE_WARMUP_STEPS = 50


@torch.no_grad()
def probe(model: nn.Module, images: torch.Tensor, data: ImageData, device: str) -> dict[str, float]:
    """RankMe and std of l2-normalised projector outputs on a fixed un-augmented batch.

    The network runs in eval mode, as the protocols see it. Train-mode batch norm
    would hide SimSiam's collapse: its projector ends in a BN that rescales
    whatever tiny variation is left to unit variance.

    Args:
        model: A method's model with ``backbone`` and ``projector``.
        images: ``(P, C, H, W)`` uint8 probe images.
        data: For the normalisation statistics.
        device: Where the model is.

    Returns:
        ``{"probe_rankme", "probe_std_l2", "probe_uniformity", "probe_status"}``; the
        status is :func:`~sslbench.embedding_stats.collapse_status`, the collapse
        protocol's rule, so the log says at which epoch a run collapsed and how.
    """
    was_training = model.training
    model.eval()
    x = normalize(images.to(device), data.mean, data.std)
    if device == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    z = model.projector(model.backbone(x)).double()
    model.train(was_training)
    readings = {
        "probe_rankme": rankme(z.cpu()),
        "probe_std_l2": float(std_of_l2_normalized(z)),
        "probe_uniformity": uniformity(z.cpu()),
    }
    status = collapse_status(readings["probe_std_l2"], z.shape[1], readings["probe_rankme"], readings["probe_uniformity"])
    return {**readings, "probe_status": status}


def pretrain(
    model: nn.Module,
    data: ImageData,
    views: TwoViews,
    cfg: TrainConfig,
    run_dir: Path,
    seed: int,
    device: str = "cpu",
    label: str = "",
) -> TrainOutcome:
    """Train ``model`` on ``data``'s train split, resuming from ``run_dir`` if possible.

    Args:
        model: A method's model; ``forward(v1, v2) -> StepOutput``.
        data: Images in memory (labels are never used).
        views: Two-view augmentation.
        cfg: Optimisation hyperparameters.
        run_dir: Where the checkpoint, ``metrics.jsonl`` and status live.
        seed: Seeds the data order and every augmentation.
        device: ``cpu`` or ``cuda``.
        label: Prefix for log lines.

    Returns:
        The outcome; the model holds the final weights when ``finished``.
    """
    main = dist.is_main()
    run_dir.mkdir(parents=True, exist_ok=True)
    status_path, ckpt_path, metrics_path = run_dir / STATUS, run_dir / CHECKPOINT, run_dir / METRICS
    if status_path.exists():
        try:
            st = json.loads(status_path.read_text())
            status, epochs = st["status"], int(st["epochs"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SslbenchError(f"{status_path} is unreadable ({e}); delete it to retrain this run") from None
        if status == "diverged":
            return TrainOutcome("diverged", epochs, st.get("step"), st.get("message", ""))
        if status == "collapsed":
            _restore(load_checkpoint(ckpt_path), ckpt_path, model)
            return TrainOutcome("collapsed", epochs, st.get("step"), st.get("message", ""))

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    channels_last = device == "cpu"
    world, rank = dist.world_size(), dist.rank()
    if world > 1 and torch.device(device).type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    images = data.train_images
    n = images.shape[0]
    batch = min(cfg.batch_size, n)
    if batch % world:
        raise SslbenchError(f"batch size {batch} does not split evenly over {world} processes")
    lo, hi = rank * batch // world, (rank + 1) * batch // world
    step_model: nn.Module = model
    if world > 1:
        ids = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else None
        step_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    steps_per_epoch = n // batch
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    peak = cfg.lr * batch / 256
    probe_images = images[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: cfg.probe_images]]

    start_epoch = 0
    if ckpt_path.exists():
        start_epoch = _restore(load_checkpoint(ckpt_path), ckpt_path, model, optimizer, gen)
        if start_epoch < cfg.epochs and main:
            _log(f"{label}: resuming from epoch {start_epoch}/{cfg.epochs}")
    if main:
        _rewrite_metrics(metrics_path, start_epoch)

    interactive = sys.stderr.isatty() and main
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        sums: dict[str, float] = {}
        t0, t_data = time.perf_counter(), 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{label} ep {epoch + 1}/{cfg.epochs}", disable=not interactive, leave=False)
        for i in bar:
            step = epoch * steps_per_epoch + i
            lr = lr_at(step, total, warmup, peak, cfg.final_lr_ratio)
            set_lr(optimizer, lr, peak)
            td = time.perf_counter()
            v1, v2 = views(images[perm[i * batch : (i + 1) * batch]].to(device, non_blocking=True), gen)
            if world > 1:  # every rank made the global batch's views; keep this rank's slice
                v1, v2 = v1[lo:hi], v2[lo:hi]
            if channels_last:
                v1 = v1.contiguous(memory_format=torch.channels_last)
                v2 = v2.contiguous(memory_format=torch.channels_last)
            t_data += time.perf_counter() - td
            out = step_model(v1, v2)
            loss_value = dist.mean_over_ranks(out.loss.detach())
            if not math.isfinite(loss_value):  # the same decision on every rank
                msg = f"loss became {loss_value} at step {step} (epoch {epoch + 1})"
                if main:
                    atomic_write_json(status_path, {"status": "diverged", "epochs": epoch, "step": step, "message": msg})
                    _log(f"{label}: diverged: {msg}")
                return TrainOutcome("diverged", epoch, step, msg)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            if hasattr(model, "after_step"):
                model.after_step((step + 1) / total)
            maybe_fault(f"after_step:{step + 1}")
            sums["loss"] = sums.get("loss", 0.0) + loss_value
            for k, v in out.terms.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            sums["std_l2"] = sums.get("std_l2", 0.0) + float(std_of_l2_normalized(out.z))
            if interactive:
                bar.set_postfix(loss=f"{loss_value:.4f}")
        elapsed = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "lr": lr, "world_size": world}
        row.update({k: v / steps_per_epoch for k, v in sums.items()})
        row.update(probe(model, probe_images, data, device))
        row.update(
            {
                "std_l2_ref": 1 / math.sqrt(out.z.shape[1]),
                "images_per_s": steps_per_epoch * batch / elapsed,
                "data_share": t_data / elapsed,
                "epoch_s": elapsed,
            }
        )
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": epoch + 1,
        }
        if main:
            # The log line goes first: a kill between the two leaves a line for an epoch that
            # is not checkpointed, which the resume drops and recomputes.
            atomic_append_line(metrics_path, json.dumps(row))
            save_checkpoint(ckpt_path, state)
        dist.barrier()
        if main:
            _log(
                f"{label} epoch {epoch + 1}/{cfg.epochs} loss {row['loss']:.4f} std_l2 {row['probe_std_l2']:.4f} "
                f"(healthy ~{row['std_l2_ref']:.4f}) rankme {row['probe_rankme']:.1f} {row['probe_status']} "
                f"{row['images_per_s']:.0f} img/s, data {100 * row['data_share']:.0f}%"
            )
        maybe_fault(f"after_epoch:{epoch + 1}")
        # rank 0's reading decides for all ranks (their BN buffers may differ slightly)
        collapsed = dist.mean_over_ranks(torch.tensor(float(main and is_completely_collapsed(row["probe_std_l2"], out.z.shape[1])))) > 0
        if cfg.stop_on_collapse and collapsed and row["step"] >= PROBE_WARMUP_STEPS:
            msg = f"complete collapse at epoch {epoch + 1}: probe std_l2 {row['probe_std_l2']:.2e}"
            if main:
                atomic_write_json(status_path, {"status": "collapsed", "epochs": epoch + 1, "step": row["step"], "message": msg})
                _log(f"{label}: {msg}; training stopped, the encoder is still evaluated")
            return TrainOutcome("collapsed", epoch + 1, row["step"], msg)
    return TrainOutcome("finished", cfg.epochs)
