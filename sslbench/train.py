"""The one training loop every method shares.

It owns optimisation (SGD/LARS/AdamW, warmup + cosine), the target-update hook
(``model.after_step(progress)``), an atomic checkpoint after every epoch (and
mid-epoch every :data:`MID_EPOCH_CHECKPOINT_S` and on Ctrl-C/SIGTERM, see
:mod:`sslbench.interrupts`), resumption from it to the exact step, the
training log (:mod:`sslbench.training_log`), the training-time collapse monitor (:func:`probe`), read
after every epoch and, with ``monitor_every``, every N optimiser steps into ``monitor.jsonl``, and a
progress bar on a terminal (plain log lines otherwise). A NaN/Inf loss stops the run and records it as
``diverged`` instead of raising. With ``TrainConfig.early_call_every`` the monitor is also read every
that many steps for the early-call rule (:class:`sslbench.early_call.EarlyCallRule`); when it calls
collapse, training stops there and the run is recorded as ``stopped_early`` with the step, the share of
training done and the reading that triggered it (checkpoint and ``train_status.json``), so a rerun or a
resume does not train it further.

Each epoch ends in one order: the monitor reads the model, the decision to stop
for complete collapse is taken, then the log line and the checkpoint (which
holds that decision) are written. A kill anywhere in between resumes to the
same final encoder: the decision is part of the checkpointed state.

Under ``torchrun`` the model is wrapped in DistributedDataParallel. Every rank
draws the same global batch and the same augmentations (one shared generator)
and keeps its contiguous slice, so a K-process run sees exactly the views of
the 1-process run; the losses gather what must be global
(:mod:`sslbench.distributed`). Batch norm is synchronised across ranks on CUDA
(SyncBatchNorm); on CPU torch has no SyncBatchNorm, so its statistics are per
rank. Only rank 0 writes the checkpoint, the log and the status.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from sslbench import distributed as dist
from sslbench import interrupts
from sslbench.augment import TwoViews, normalize
from sslbench.early_call import EarlyCallRule, MonitorReading
from sslbench.embedding_stats import (
    PROBE_WARMUP_STEPS,
    rankme,
    status_readings,
    std_of_l2_normalized,
)
from sslbench.errors import SslbenchError
from sslbench.faults import maybe_fault
from sslbench.io import atomic_write_json, load_checkpoint, save_checkpoint
from sslbench.layout import RunPaths
from sslbench.method import TrainConfig
from sslbench.optim import build_optimizer, lr_at, set_lr
from sslbench.records import TrainOutcome
from sslbench.training_log import append_row, truncate_log, truncate_monitor
from sslbench.types import ImageData

#: Version of what the loop trains from a given recipe, recorded in every run's identity:
#: bumped when a change trains a different encoder from the same recipe and seed, so runs
#: recorded before it are retrained (2: random-resized crops redraw out-of-range boxes as
#: torchvision does, where 1 clamped them).
TRAINING_VERSION = 2

#: Seconds of training between mid-epoch checkpoints, so a SIGKILL (a Slurm job past its grace
#: period, a lost node) costs at most this much of an epoch.
MID_EPOCH_CHECKPOINT_S = 300.0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@torch.no_grad()
def probe(model: nn.Module, images: torch.Tensor, data: ImageData, device: str) -> dict[str, float | str]:
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
        ``{"probe_rankme", "probe_std_l2", "probe_spread", "probe_effective_dims",
        "probe_uniformity", "probe_status"}``; the status is
        :func:`~sslbench.embedding_stats.collapse_status`, the collapse protocol's rule,
        so the log says at which epoch a run collapsed and how.
    """
    was_training = model.training
    model.eval()
    x = normalize(images.to(device), data.mean, data.std)
    if device == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    z = model.projector(model.backbone(x)).double()
    model.train(was_training)
    readings = status_readings(z.cpu())
    return {"probe_rankme": rankme(z.cpu()), "probe_std_l2": float(std_of_l2_normalized(z)),
            **{f"probe_{k}": v for k, v in readings.items()}}


def _fit_error(path: Any, e: BaseException) -> SslbenchError:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    why = f"no {e} entry" if isinstance(e, KeyError) else " ".join(lines[:2])[:300]
    return SslbenchError(f"checkpoint {path} does not fit this run ({why}); it was written for another model or "
                         "config: delete it to retrain, or use another --out")


def _check_identity(state: dict, paths: RunPaths, identity: dict | None, epochs: int) -> None:
    """Refuse a checkpoint of another run (its recorded identity) or one past this run's epochs."""
    recorded = state.get("identity")
    if identity is not None and isinstance(recorded, str) and _json_of(recorded, paths, "identity") != json.loads(
            json.dumps(identity)):
        raise SslbenchError(f"checkpoint {paths.checkpoint} was written by another run (its recorded method, seed "
                            "or recipe differ); delete it to retrain, or use another --out")
    if not isinstance(state.get("epoch"), int) or not 0 <= state["epoch"] <= epochs:
        raise SslbenchError(f"checkpoint {paths.checkpoint} is at epoch {state.get('epoch')!r} but this run trains "
                            f"{epochs}; delete it to retrain, or use another --out")


def _json_of(text: str, paths: RunPaths, what: str) -> Any:
    """A JSON string a checkpoint holds (its ``identity``, its ``stop``), or the refusal of a damaged one."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise SslbenchError(f"checkpoint {paths.checkpoint} is damaged (its {what} is not JSON); delete it to "
                            "retrain, or use another --out") from None


def _stop_decision(st: Any) -> dict:
    """A recorded stop (``{"status", "epochs", "step", "message"}``, and an early call's ``fraction``
    and ``reading``), checked; ``epochs`` made an int.

    Raises:
        ValueError, TypeError: for one of another shape.
    """
    if not isinstance(st, dict):
        raise TypeError(f"it holds a JSON {type(st).__name__}, not an object")
    if st.get("status") not in ("diverged", "collapsed", "stopped_early"):
        raise ValueError(f"unknown status {st.get('status')!r}"[:120])
    epochs, step = st.get("epochs"), st.get("step")
    if isinstance(epochs, bool) or not isinstance(epochs, int | float):
        raise TypeError(f"'epochs' must be a whole number >= 0, got {epochs!r}"[:120])
    if not float(epochs).is_integer() or epochs < 0:
        raise ValueError(f"'epochs' must be a whole number >= 0, got {epochs!r}"[:120])
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise TypeError(f"'step' must be an integer, got {step!r}"[:120])
    if not isinstance(st.get("message", ""), str):
        raise TypeError("'message' must be a string")
    return {**st, "epochs": int(epochs)}


def _recorded_status(paths: RunPaths) -> dict | None:
    """The status file of a run that stopped early (diverged or collapsed), if any."""
    if not paths.train_status.exists():
        return None
    try:
        return _stop_decision(json.loads(paths.train_status.read_text()))
    except (OSError, ValueError, TypeError, RecursionError, OverflowError) as e:  # OverflowError: float(a huge int)
        raise SslbenchError(f"{paths.train_status} is unreadable ({e}); delete it to retrain this run") from None


def _outcome(st: dict) -> TrainOutcome:
    return TrainOutcome.from_json(st, "the recorded training stop")


@dataclass
class _Loop:
    """The state of one pretraining run: model (and its DDP wrapper), optimiser, schedule, data order."""

    model: nn.Module
    step_model: nn.Module
    optimizer: torch.optim.Optimizer
    gen: torch.Generator
    cfg: TrainConfig
    data: ImageData
    views: TwoViews
    device: str
    batch: int
    steps_per_epoch: int
    warmup: int
    peak: float
    probe_images: torch.Tensor
    monitor_every: int = 0
    rule: EarlyCallRule | None = None
    readings: list[MonitorReading] = field(default_factory=list)
    early_stop: dict | None = None

    @property
    def total(self) -> int:
        """Optimiser steps of the whole run."""
        return self.steps_per_epoch * self.cfg.epochs


def _setup(model: nn.Module, data: ImageData, views: TwoViews, cfg: TrainConfig, seed: int, device: str,
           monitor_every: int = 0) -> _Loop:
    """Seed, place the model (channels-last on CPU, SyncBatchNorm/DDP under torchrun) and build the optimiser."""
    torch.manual_seed(seed)
    world = dist.world_size()
    if world > 1 and torch.device(device).type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if device == "cpu":
        model.to(memory_format=torch.channels_last)
    n = data.train_images.shape[0]
    batch = min(cfg.batch_size, n)
    if batch % world:
        raise SslbenchError(f"batch size {batch} does not split evenly over {world} processes")
    step_model: nn.Module = model
    if world > 1:
        ids = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else None
        step_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    steps = n // batch
    probe_images = data.train_images[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: cfg.probe_images]]
    return _Loop(model, step_model, build_optimizer(model, cfg), torch.Generator().manual_seed(seed), cfg, data, views,
                 device, batch, steps, int(cfg.warmup_epochs * steps), cfg.lr * batch / 256, probe_images,
                 monitor_every, _rule(cfg))


def _rule(cfg: TrainConfig) -> EarlyCallRule | None:
    """The early-call rule of ``cfg`` (``None`` when ``early_call_every`` is 0)."""
    if not cfg.early_call_every:
        return None
    statuses = ("complete",) if cfg.early_call_status == "complete" else ("complete", "dimensional")
    return EarlyCallRule(statuses, cfg.early_call_consecutive, cfg.early_call_after, cfg.early_call_stalled)


def _resume(loop: _Loop, paths: RunPaths, identity: dict | None) -> tuple[int, dict | None, _EpochPart | None]:
    """Restore the last checkpoint (weights, optimiser, data order, RNG).

    Returns:
        ``(epochs done, stop decision, the part of the next epoch done)``.

    The data-order/augmentation generator and torch's global RNG are restored too,
    so a resumed run draws exactly what the uninterrupted run would have drawn.

    Raises:
        SslbenchError: when the checkpoint does not fit this run's model or identity.
    """
    if not paths.checkpoint.exists():
        return 0, None, None
    state = load_checkpoint(paths.checkpoint)
    if not isinstance(state, dict):
        raise SslbenchError(f"checkpoint {paths.checkpoint} holds a {type(state).__name__}, not an sslbench training "
                            "checkpoint: delete it to retrain, or use another --out")
    _check_identity(state, paths, identity, loop.cfg.epochs)
    try:
        loop.model.load_state_dict(state["model"])
        loop.optimizer.load_state_dict(state["optimizer"])
        loop.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        part = _EpochPart.from_state(state["partial"]) if state.get("partial") is not None else None
        if loop.rule is not None:  # the rule's readings so far: a resumed run calls where the uninterrupted one does
            loop.readings = [MonitorReading(**r) for r in json.loads(state.get("early_call") or "[]")]
    except (KeyError, IndexError, AttributeError, RuntimeError, TypeError, ValueError, OverflowError,
            RecursionError) as e:
        raise _fit_error(paths.checkpoint, e) from None
    if part is not None and (part.epoch != state["epoch"] or not 0 < part.step < loop.steps_per_epoch
                             or not torch.is_tensor(part.perm) or part.perm.shape != (loop.data.train_images.shape[0],)):
        raise _fit_error(paths.checkpoint, ValueError(f"its mid-epoch state (epoch {part.epoch + 1}, step "
                                                      f"{part.step}) does not fit {loop.steps_per_epoch} steps"))
    stop = _json_of(state["stop"], paths, "stop decision") if isinstance(state.get("stop"), str) else None
    if stop is not None:
        try:
            stop = _stop_decision(stop)
        except (ValueError, TypeError, OverflowError) as e:
            raise _fit_error(paths.checkpoint, ValueError(f"its stop decision is damaged: {e}")) from None
    return int(state["epoch"]), stop, part


@dataclass
class _EpochPart:
    """How far an epoch is: steps done, its data order and the running sums of the step logs.

    Checkpointed mid-epoch (on a stop request, and every :data:`MID_EPOCH_CHECKPOINT_S`),
    so a resumed epoch continues at the next step with the same order and sums.
    """

    epoch: int
    perm: torch.Tensor
    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    dim: int = 0
    t_data: float = 0.0
    elapsed: float = 0.0

    def to_state(self) -> dict:
        """The checkpoint entry (tensors and plain values only)."""
        return {"epoch": self.epoch, "perm": self.perm, "step": self.step, "sums": json.dumps(self.sums),
                "dim": self.dim, "t_data": self.t_data, "elapsed": self.elapsed}

    @classmethod
    def from_state(cls, st: dict) -> _EpochPart:
        return cls(int(st["epoch"]), st["perm"], int(st["step"]), json.loads(st["sums"]), int(st["dim"]),
                   float(st["t_data"]), float(st["elapsed"]))


def _step(loop: _Loop, part: _EpochPart) -> TrainOutcome | None:
    """Optimiser step ``part.step`` of ``part.epoch``, added to ``part``; the diverged outcome on a NaN/Inf loss."""
    images, b, i = loop.data.train_images, loop.batch, part.step
    world, rank = dist.world_size(), dist.rank()
    step = part.epoch * loop.steps_per_epoch + i
    lr = lr_at(step, loop.total, loop.warmup, loop.peak, loop.cfg.final_lr_ratio)
    set_lr(loop.optimizer, lr, loop.peak)
    td = time.perf_counter()
    v1, v2 = loop.views(images[part.perm[i * b : (i + 1) * b]].to(loop.device, non_blocking=True), loop.gen)
    if world > 1:  # every rank made the global batch's views; keep this rank's slice
        lo, hi = rank * b // world, (rank + 1) * b // world
        v1, v2 = v1[lo:hi], v2[lo:hi]
    if loop.device == "cpu":
        v1 = v1.contiguous(memory_format=torch.channels_last)
        v2 = v2.contiguous(memory_format=torch.channels_last)
    part.t_data += time.perf_counter() - td
    out = loop.step_model(v1, v2)
    loss_value = dist.mean_over_ranks(out.loss.detach())
    if not math.isfinite(loss_value):  # the same decision on every rank
        return TrainOutcome("diverged", part.epoch, step, f"loss became {loss_value} at step {step} "
                            f"(epoch {part.epoch + 1})")
    loop.optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    loop.optimizer.step()
    if hasattr(loop.model, "after_step"):
        loop.model.after_step((step + 1) / loop.total)
    sums = part.sums
    sums["loss"] = sums.get("loss", 0.0) + loss_value
    for k, v in out.terms.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    sums["std_l2"] = sums.get("std_l2", 0.0) + float(std_of_l2_normalized(out.z))
    sums["lr"], part.dim, part.step = lr, out.z.shape[1], i + 1
    maybe_fault(f"after_step:{step + 1}")
    return None


def _pause_now(last_save: float) -> bool:
    """Whether to checkpoint mid-epoch: a stop was requested or the last checkpoint is old (any rank decides)."""
    want = interrupts.requested() is not None or time.monotonic() - last_save >= MID_EPOCH_CHECKPOINT_S
    return dist.mean_over_ranks(torch.tensor(float(want))) > 0 if dist.is_distributed() else want


def _train_epoch(loop: _Loop, part: _EpochPart, paths: RunPaths, identity: dict | None,
                 interactive: bool) -> TrainOutcome | None:
    """Run ``part``'s epoch to its end; the diverged outcome on a NaN/Inf loss.

    Raises:
        StopRequested: after checkpointing the epoch so far, when a stop was requested.
    """
    loop.model.train()
    bar = tqdm(total=loop.steps_per_epoch, initial=part.step, desc=f"{paths.label} ep {part.epoch + 1}/"
               f"{loop.cfg.epochs}", disable=not interactive, leave=False)
    t0, last_save = time.perf_counter() - part.elapsed, time.monotonic()
    while part.step < loop.steps_per_epoch:
        diverged = _step(loop, part)
        if diverged:
            return diverged
        reading = _monitor(loop, part, paths)  # before any checkpoint of this step, which would skip it on resume
        loop.early_stop = _early_call(loop, part, reading)
        if loop.early_stop:
            break
        bar.update(1)
        if interactive:
            bar.set_postfix(loss=f"{part.sums['loss'] / part.step:.4f}")
        if part.step < loop.steps_per_epoch and _pause_now(last_save):
            part.elapsed = time.perf_counter() - t0
            _save(loop, paths, part.epoch, None, identity, part)
            t0, last_save = time.perf_counter() - part.elapsed, time.monotonic()  # the save is not training time
            interrupts.check()
    bar.close()
    part.elapsed = time.perf_counter() - t0
    return None


def _due(every: int, step: int) -> bool:
    return bool(every) and step % every == 0


def _monitor(loop: _Loop, part: _EpochPart, paths: RunPaths) -> dict | None:
    """Append the monitor's reading to ``monitor.jsonl`` (rank 0) when ``monitor_every`` (or the
    early-call rule's ``early_call_every``) steps are done, and return it; ``None`` when none is due.

    It reads the model as :func:`probe` does (eval mode, no gradient, so batch norm's running
    statistics are untouched) under a forked RNG, so training draws exactly what it would draw
    without the monitor and the encoder is bitwise the same.
    """
    step = part.epoch * loop.steps_per_epoch + part.step
    every = loop.cfg.early_call_every
    if not (_due(loop.monitor_every, step) or _due(every, step)) or not dist.is_main():
        return None
    cuda = torch.device(loop.device)
    with torch.random.fork_rng(devices=[cuda.index or 0] if cuda.type == "cuda" else []):
        readings = probe(loop.model, loop.probe_images, loop.data, loop.device)
    row = {"step": step, "epoch": step / loop.steps_per_epoch, "total_steps": loop.total,
           "monitor_every": loop.monitor_every, **({"early_call_every": every} if every else {}), **readings}
    append_row(paths.monitor_log, row)
    return row


def _early_call(loop: _Loop, part: _EpochPart, row: dict | None) -> dict | None:
    """The decision to stop because the early-call rule called collapse on the readings so far
    (rank 0's readings decide for all ranks), as the checkpoint's stop record; ``None`` to go on.

    The rule sees the readings every ``early_call_every`` steps; none at the run's last step,
    where stopping would save nothing.
    """
    step = part.epoch * loop.steps_per_epoch + part.step
    if loop.rule is None or not _due(loop.cfg.early_call_every, step) or step >= loop.total:
        return None
    reading = MonitorReading.from_row(row, loop.total) if row is not None else None
    if reading is not None:
        loop.readings.append(reading)
    called = loop.rule.call(loop.readings) if reading is not None else None
    called = called if called == reading else None  # a call on an earlier reading would have stopped there
    if not dist.mean_over_ranks(torch.tensor(float(called is not None))) > 0:
        return None
    msg = f"early call at step {step}/{loop.total} ({100 * step / loop.total:.1f}% of training): {loop.rule.describe()}"
    if called is not None:
        msg += (f"; the reading was {called.status} (spread {called.spread:.2e}, effective dims "
                f"{called.effective_dims:.1f})")
    return {"status": "stopped_early", "epochs": step // loop.steps_per_epoch, "step": step,
            "fraction": step / loop.total, "reading": dataclasses.asdict(called) if called else None,
            "message": msg}


def _epoch_row(loop: _Loop, part: _EpochPart) -> dict:
    """The training-log row of a finished epoch: means of the step logs, the monitor's readings, throughput."""
    steps, sums = loop.steps_per_epoch, dict(part.sums)
    row: dict[str, Any] = {"epoch": part.epoch + 1, "step": (part.epoch + 1) * steps, "lr": sums.pop("lr"),
                           "world_size": dist.world_size()}
    row.update({k: v / steps for k, v in sums.items()})
    row.update(probe(loop.model, loop.probe_images, loop.data, loop.device))
    row.update({"std_l2_ref": 1 / math.sqrt(part.dim), "images_per_s": steps * loop.batch / part.elapsed,
                "data_share": part.t_data / part.elapsed, "epoch_s": part.elapsed})
    return row


def _collapse_stop(loop: _Loop, row: dict) -> dict | None:
    """The decision to stop for complete collapse (rank 0's reading decides for all ranks, whose BN
    buffers may differ slightly), as ``{"status", "epochs", "step", "message"}``; ``None`` to go on."""
    main = dist.is_main()
    flagged = dist.mean_over_ranks(torch.tensor(float(main and row["probe_status"] == "complete"))) > 0
    if not (loop.cfg.stop_on_collapse and flagged and row["step"] >= PROBE_WARMUP_STEPS):
        return None
    msg = f"complete collapse at epoch {row['epoch']}: probe spread {row['probe_spread']:.2e}"
    return {"status": "collapsed", "epochs": row["epoch"], "step": row["step"], "message": msg}


def _save(loop: _Loop, paths: RunPaths, epochs_done: int, stop: dict | None, identity: dict | None,
          part: _EpochPart | None = None) -> None:
    """Checkpoint (rank 0) after ``epochs_done`` epochs, and ``part`` of the next one if given."""
    if dist.is_main():
        state = {"model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict(),
                 "generator": loop.gen.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epochs_done,
                 "stop": json.dumps(stop) if stop else None,
                 "identity": json.dumps(identity) if identity is not None else None}
        if loop.rule is not None:
            state["early_call"] = json.dumps([dataclasses.asdict(r) for r in loop.readings])
        if part is not None:
            state["partial"] = part.to_state()
        save_checkpoint(paths.checkpoint, state)
    dist.barrier()


def _end_epoch(loop: _Loop, paths: RunPaths, row: dict, stop: dict | None, identity: dict | None) -> None:
    """Write the epoch's log line, then its checkpoint with the stop decision (rank 0), then its status."""
    if dist.is_main():
        # The log line goes first: a kill between the two leaves a line for an epoch that
        # is not checkpointed, which the resume drops and recomputes.
        append_row(paths.metrics_log, row)
    _save(loop, paths, row["epoch"], stop, identity)
    if dist.is_main():
        _log(f"{paths.label} epoch {row['epoch']}/{loop.cfg.epochs} loss {row['loss']:.4f} "
             f"std_l2 {row['probe_std_l2']:.4f} (healthy ~{row['std_l2_ref']:.4f}) "
             f"eff. dims {row['probe_effective_dims']:.1f} {row['probe_status']} "
             f"{row['images_per_s']:.0f} img/s, data {100 * row['data_share']:.0f}%")
    maybe_fault(f"after_epoch:{row['epoch']}")
    if stop:
        _record_stop(paths, stop)


def _record_stop(paths: RunPaths, stop: dict) -> None:
    """Write the status of a run that stopped early (rank 0), after the checkpoint that holds the decision."""
    if dist.is_main():
        atomic_write_json(paths.train_status, stop)
        _log(f"{paths.label}: {stop['message']}; training stopped, the encoder is still evaluated")


def _stop_mid_epoch(loop: _Loop, paths: RunPaths, part: _EpochPart, identity: dict | None) -> TrainOutcome:
    """Checkpoint the weights where the early-call rule stopped, with its decision, then record it."""
    _save(loop, paths, part.epoch, loop.early_stop, identity, part)
    _record_stop(paths, loop.early_stop)
    return _outcome(loop.early_stop)


def _diverged(paths: RunPaths, outcome: TrainOutcome, label: str) -> TrainOutcome:
    """Record a NaN/Inf loss (rank 0) and return its outcome."""
    if dist.is_main():
        atomic_write_json(paths.train_status, outcome.to_json())
        _log(f"{label}: diverged: {outcome.message}")
    return outcome


def pretrain(
    model: nn.Module,
    data: ImageData,
    views: TwoViews,
    cfg: TrainConfig,
    paths: RunPaths,
    seed: int,
    device: str = "cpu",
    identity: dict | None = None,
    monitor_every: int = 0,
) -> TrainOutcome:
    """Train ``model`` on ``data``'s train split, resuming from ``paths`` if possible.

    Args:
        model: A method's model; ``forward(v1, v2) -> StepOutput``.
        data: Images in memory (labels are never used).
        views: Two-view augmentation.
        cfg: Optimisation hyperparameters.
        paths: The run directory (checkpoint, training log, status).
        seed: Seeds the data order and every augmentation.
        device: ``cpu`` or ``cuda``.
        identity: The run's identity; recorded in the checkpoint, and a checkpoint
            recording another one is refused.
        monitor_every: Read the collapse monitor every this many optimiser steps into
            ``paths.monitor_log`` (0: after every epoch only). A run-level setting: it
            changes nothing that is trained.

    Returns:
        The outcome; the model holds the final weights unless it diverged.
    """
    paths.dir.mkdir(parents=True, exist_ok=True)
    recorded = _recorded_status(paths)
    if recorded is not None and recorded["status"] == "diverged":
        return _outcome(recorded)
    loop = _setup(model, data, views, cfg, seed, device, monitor_every)
    start, stop, part = _resume(loop, paths, identity)
    if stop is None and recorded is not None and recorded["epochs"] == start:
        stop = recorded  # a collapse recorded by a version whose checkpoints held no decision
    if stop:
        return _outcome(stop)
    if 0 < start < cfg.epochs or part is not None:
        _log_resume(paths.label, start, part, loop)
    if dist.is_main():
        truncate_log(paths.metrics_log, start)
        truncate_monitor(paths.monitor_log, start * loop.steps_per_epoch + (part.step if part else 0))
    interactive = sys.stderr.isatty() and dist.is_main()
    with interrupts.deferred():
        for epoch in range(start, cfg.epochs):
            part = part or _EpochPart(epoch, torch.randperm(loop.data.train_images.shape[0], generator=loop.gen))
            diverged = _train_epoch(loop, part, paths, identity, interactive)
            if diverged:
                return _diverged(paths, diverged, paths.label)
            if loop.early_stop and part.step < loop.steps_per_epoch:
                return _stop_mid_epoch(loop, paths, part, identity)
            row = _epoch_row(loop, part)
            stop, part = loop.early_stop or _collapse_stop(loop, row), None
            _end_epoch(loop, paths, row, stop, identity)
            if stop:
                return _outcome(stop)
            interrupts.check()
    return TrainOutcome("finished", cfg.epochs)


def _log_resume(label: str, start: int, part: _EpochPart | None, loop: _Loop) -> None:
    if dist.is_main():
        where = f", step {part.step}/{loop.steps_per_epoch} of epoch {part.epoch + 1}" if part else ""
        _log(f"{label}: resuming from epoch {start}/{loop.cfg.epochs}{where}")
