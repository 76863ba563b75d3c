"""``sslbench run``: for each run of the plan (cell x seed), pretrain -> features -> protocols -> result records.

The plan (:mod:`sslbench.sweep`) lists the configured methods, every cell of
every declared sweep and the floors, each with its seeds. Each run is one
:func:`attempt`: claim the run directory's lock without waiting (another
process holding it means another worker is on it: move on), then resume
whatever is missing. Every stage is resumable: a finished checkpoint is not
retrained, cached features are not recomputed, a current result
(:func:`sslbench.store.is_current`) is not re-evaluated. A run that fails
(bad checkpoint, divergence) records its one-line reason in its
``failure.json`` and the others go on. An executor (:mod:`sslbench.executors`)
decides where the attempts run: here, in local worker processes, or in
Slurm array tasks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslbench import bisect_sweep, executors
from sslbench import distributed as dist
from sslbench.augment import TwoViews
from sslbench.backbones import build_backbone
from sslbench.config import RecipeChanges, RunConfig
from sslbench.data import load_dataset
from sslbench.data.transfer import transfer_set
from sslbench.errors import SslbenchError
from sslbench.executors import Execution, Outcome
from sslbench.faults import in_run, maybe_fault
from sslbench.features import Extras, cached_features
from sslbench.interrupts import graceful_stop
from sslbench.io import OutputError, atomic_write_json, remove_stale_temp_files, remove_stale_temp_files_in
from sslbench.layout import RunLayout, RunPaths
from sslbench.lock import RUN_LOCK_NAME, RunLock, describe
from sslbench.manifest import Manifest, PlanEntry, record_plan
from sslbench.method import Method, TrainConfig, ViewConfig, identity_fields, variant_changes
from sslbench.protocol import Protocol, check_features, select_protocols
from sslbench.records import DatasetInfo, RunHeader, SweepInfo, Timings, TrainOutcome
from sslbench.registry import registry
from sslbench.scoring import ScoringJob, log, score, write_empty
from sslbench.store import claim_run_dir, versions
from sslbench.sweep import Plan, PlannedRun, build_plan, register_worker_methods
from sslbench.train import TRAINING_VERSION, pretrain
from sslbench.training_log import train_seconds
from sslbench.types import ImageData

#: Why a protocol is skipped, per lacking requirement.
_WHY = {"transfer": "it requires a transfer set (set `transfer` under [run], or --transfer)"}


@dataclass(frozen=True)
class RunSpec:
    """One ``(method, seed)`` run with its recipe resolved once.

    Attributes:
        method: The method, variant, floor or sweep cell.
        seed: The seed.
        train: Its training config in this run.
        heads: Its head sizes.
        views: Its two view recipes (floors: the default views with the preset's changes,
            for the collapse suite's positive pairs).
        sweep: A sweep cell's sweep and coordinates.
    """

    method: Method
    seed: int
    train: TrainConfig
    heads: dict[str, int]
    views: tuple[ViewConfig, ViewConfig]
    sweep: SweepInfo | None = None

    @classmethod
    def of(cls, method: Method, seed: int, cfg: RunConfig, changes: RecipeChanges | None = None,
           sweep: SweepInfo | None = None) -> RunSpec:
        """Resolve ``method``'s recipe in ``cfg`` (with a sweep cell's ``changes`` on top)."""
        train, heads, views = cfg.recipe(method, changes)
        return cls(method, seed, train, heads, views, sweep)

    def identity(self, cfg: RunConfig) -> dict[str, Any]:
        """The run's identity (``config.json``): everything that changes its encoder."""
        m, trained = self.method, self.method.encoder == "trained"
        return {
            "method": m.name, "base": m.base, "encoder_kind": m.encoder, "preset": cfg.preset,
            "dataset": cfg.dataset, "backbone": cfg.backbone, "width": cfg.width, "seed": self.seed,
            "train": identity_fields(self.train) if trained else None,
            "heads": self.heads if trained else None,
            "loss": {"type": type(m.loss).__name__, **identity_fields(m.loss)} if m.loss else None,
            **({"target": {"type": type(m.target).__name__, **identity_fields(m.target)}} if m.target else {}),
            "views": [identity_fields(v) for v in self.views] if trained else None,
            **({"training": TRAINING_VERSION} if trained else {}),
            **({"sweep": self.sweep.to_json()} if self.sweep is not None else {}),
        }


def _encoder(spec: RunSpec, data: ImageData, cfg: RunConfig,
             paths: RunPaths, identity: dict[str, Any]) -> tuple[nn.Module | None, nn.Module | None, TrainOutcome]:
    """``(backbone, projector, outcome)``: pretrains when the method trains."""
    method = spec.method
    if method.encoder == "raw_pixels":
        return None, None, TrainOutcome("not_trained")
    torch.manual_seed(spec.seed)
    backbone = build_backbone(cfg.backbone, data.channels, cfg.width)
    if method.encoder == "random_init":
        return backbone, None, TrainOutcome("not_trained")
    model = method.build_model(backbone, spec.heads, per_view=spec.train.per_view_forward)
    views = TwoViews(*spec.views, mean=data.mean, std=data.std)
    outcome = pretrain(model, data, views, spec.train, paths, spec.seed, cfg.device, identity,
                       monitor_every=cfg.monitor_every)
    return model.backbone, getattr(model, "projector", None), outcome


def _header(spec: RunSpec, cfg: RunConfig, data: ImageData, identity: dict[str, Any],
            outcome: TrainOutcome) -> RunHeader:
    m = spec.method
    base = registry("methods").get(m.base) if m.base else None
    return RunHeader(
        method=m.name, base=m.base, encoder_kind=m.encoder, loss_changes=variant_changes(m, base), seed=spec.seed,
        config=identity, run_config=cfg.to_dict(), dataset=DatasetInfo(
            data.name, data.fingerprint, data.source, int(data.train_images.shape[0]), int(data.test_images.shape[0])),
        train=outcome, versions=versions(), sweep=spec.sweep,
    )


def run_one(method: Method, seed: int, cfg: RunConfig, data: ImageData, protocols: list[Protocol],
            layout: RunLayout, transfer: tuple[torch.Tensor, torch.Tensor] | None = None, *,
            changes: RecipeChanges | None = None, sweep: SweepInfo | None = None) -> int:
    """Pretrain (if needed), extract features and evaluate every protocol for one run.

    Args:
        method: The method, variant, floor or sweep cell.
        seed: Seed of the run.
        cfg: The resolved run configuration.
        data: The pretraining dataset.
        protocols: Protocols to evaluate.
        layout: The output directory.
        transfer: ``(images, labels)`` of the transfer set, matched to ``data``'s images.
        changes: A sweep cell's recipe changes.
        sweep: A sweep cell's sweep and coordinates.

    Returns:
        The number of protocols that failed with an input error.
    """
    return _run(RunSpec.of(method, seed, cfg, changes, sweep), cfg, data, protocols, layout, transfer)[0]


def _run(spec: RunSpec, cfg: RunConfig, data: ImageData, protocols: list[Protocol], layout: RunLayout,
         transfer: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[int, bool]:
    """:func:`run_one` of a resolved spec: ``(protocols failed, whether every result was already current)``."""
    paths = layout.run(spec.method.name, spec.seed)
    identity = spec.identity(cfg)
    if dist.is_main():
        claim_run_dir(paths, identity)
    job = ScoringJob(paths, identity, split=cfg.split)
    if not job.pending(protocols):
        log(f"{paths.label}: all results present, skipped")
        return 0, True
    encoder, projector, outcome = _encoder(spec, data, cfg, paths, identity)
    header = _header(spec, cfg, data, identity, outcome)
    timings = Timings(train_s=train_seconds(paths.metrics_log))
    if outcome.status == "diverged":
        if dist.is_main():
            write_empty(job, header, protocols, timings)
        return 0, False
    t0 = time.perf_counter()
    extras = Extras(projector=projector, views=TwoViews(*spec.views, mean=data.mean, std=data.std),
                    transfer=transfer, transfer_name=cfg.transfer or "", seed=spec.seed)
    features, enc_hash, hit = cached_features(encoder, data, layout.cache, cfg.device, paths.label, extras)
    check_features(features)
    timings = dataclasses.replace(timings, features_s=time.perf_counter() - t0, features_cache_hit=hit)
    log(f"{paths.label}: features {features.train.x.shape[1]}-d "
        f"({'cache hit' if hit else f'extracted in {timings.features_s:.1f}s'})")
    maybe_fault("after_features")
    if not dist.is_main():  # protocols run and write on rank 0 only
        return 0, False
    return score(job, header, protocols, features, enc_hash, timings), False


# ----------------------------------------------------------------------------- one attempt at one run


@dataclass
class Context:
    """What every run of a worker shares: the config, the data, the protocols and the output directory.

    Attributes:
        cfg: The resolved config (``threads`` set to this worker's torch threads).
        data: The pretraining dataset.
        transfer: The transfer set, matched to ``data``'s images.
        protocols: The protocols to evaluate.
        layout: The output directory.
    """

    cfg: RunConfig
    data: ImageData
    transfer: tuple[torch.Tensor, torch.Tensor] | None
    protocols: list[Protocol]
    layout: RunLayout


def protocols_of(cfg: RunConfig, quiet: bool = False) -> list[Protocol]:
    """The protocols ``cfg`` asks for whose requirements a run meets (a transfer set when ``cfg`` names one)."""
    available = {"labels", "encoder"} | ({"transfer"} if cfg.transfer else set())
    protocols, skipped = select_protocols(cfg.protocols, available, cfg.protocol_params, _WHY)
    for msg in skipped if not quiet else ():
        log(msg)
    return protocols


def load_context(cfg: RunConfig, quiet: bool = False) -> Context:
    """Load the data of ``cfg`` and build its protocols (once per process); ``threads`` records this
    process's torch thread count."""
    data, transfer = _load_data(cfg, quiet)
    return Context(dataclasses.replace(cfg, threads=torch.get_num_threads()), data, transfer,
                   protocols_of(cfg, quiet), RunLayout(cfg.out))


def record_failure(paths: RunPaths, message: str) -> None:
    """Write the run's ``failure.json`` (its one-line reason; rank 0), best effort: a full disk may refuse it."""
    if not dist.is_main():
        return
    try:
        atomic_write_json(paths.failure, {"message": " ".join(message.splitlines()), "time": time.time(),
                                          "host": socket.gethostname(), "pid": os.getpid()})
    except SslbenchError:
        pass


def attempt(run: PlannedRun, ctx: Context, crash_is_failure: bool = False) -> Outcome:
    """Claim ``run``'s lock and run it; another process holding the lock makes it ``busy``.

    Args:
        run: The run.
        ctx: The worker's context.
        crash_is_failure: Record an unexpected exception (a bug) as the run's failure and
            go on (workers), instead of raising it.

    Returns:
        The outcome: ``done``, ``skipped`` (every result current), ``failed`` (the reason
        is also in the run's ``failure.json``), ``busy`` or ``stopped`` (an output error).
    """
    cell, t0 = run.cell, time.perf_counter()
    paths = ctx.layout.run(cell.name, run.seed)
    lock = RunLock(paths.dir, refuse_nested=False, name=RUN_LOCK_NAME, tries=3)
    try:
        claimed = lock.try_acquire() if dist.is_main() else True
        if dist.is_distributed():  # rank 0 claims for every rank
            claimed = dist.mean_over_ranks(torch.tensor(float(claimed and dist.is_main()))) > 0
        if not claimed:
            return Outcome(run.label, "busy", 0.0, describe(lock.holder))
        if lock.taken_over:
            log(f"{run.label}: {lock.taken_over}")
        if dist.is_main():
            remove_stale_temp_files_in(paths.dir)
        with in_run(run.label):
            spec = RunSpec.of(cell.method, run.seed, ctx.cfg, cell.changes, cell.sweep)
            failed, skipped = _run(spec, ctx.cfg, ctx.data, ctx.protocols, ctx.layout, ctx.transfer)
        if failed:
            message = f"{failed} protocol(s) failed with an input error (the ERROR lines above say which)"
            record_failure(paths, message)
            return Outcome(run.label, "failed", time.perf_counter() - t0, message)
        if dist.is_main():
            paths.failure.unlink(missing_ok=True)
        return Outcome(run.label, "skipped" if skipped else "done", time.perf_counter() - t0)
    except OutputError as e:
        record_failure(paths, str(e))
        return Outcome(run.label, "stopped", time.perf_counter() - t0, " ".join(str(e).splitlines()))
    except SslbenchError as e:
        record_failure(paths, str(e))
        log(f"ERROR {run.label}: {e} (the sweep goes on)")
        return Outcome(run.label, "failed", time.perf_counter() - t0, " ".join(str(e).splitlines()))
    except Exception as e:
        if not crash_is_failure:
            raise
        record_failure(paths, f"crashed: {type(e).__name__}: {e}")
        log(f"ERROR {run.label}: crashed: {type(e).__name__}: {e} (the sweep goes on)")
        return Outcome(run.label, "failed", time.perf_counter() - t0, f"crashed: {type(e).__name__}: {e}")
    finally:
        lock.release()


# ----------------------------------------------------------------------------- workers (spawned processes, cluster tasks)


@dataclass(frozen=True)
class WorkerPayload:
    """What a worker process needs to build its :class:`Context` without reading the config file again.

    Attributes:
        cfg: The resolved config.
        methods: Methods to register first (variants a config file declared).
        threads: torch threads per run (``None``: torch's default).
    """

    cfg: RunConfig
    methods: dict[str, Method]
    threads: int | None = None


def _worker_init(payload: WorkerPayload) -> Context:
    register_worker_methods(payload.methods)
    executors.set_threads(payload.threads)
    return load_context(payload.cfg, quiet=True)


def _worker_attempt(ctx: Context, run: PlannedRun) -> Outcome:
    return attempt(run, ctx, crash_is_failure=True)


def _worker_death(ctx_layout: RunLayout, run: PlannedRun, message: str) -> None:
    record_failure(ctx_layout.run(run.cell.name, run.seed), message)


def _task_main(payload: WorkerPayload, runs: list[PlannedRun]) -> list[Outcome]:
    """One cluster task: its own manifest entry, then an attempt at each of its runs, in order."""
    submitit = executors.require_submitit()
    job = submitit.JobEnvironment()
    ctx = _worker_init(payload)
    describe_task = {"executor": "slurm", "task": job.job_id, "host": socket.gethostname(),
                     "runs": [r.label for r in runs], "threads_per_job": torch.get_num_threads()}
    lock = RunLock(ctx.layout.out, shared=True, refuse_nested=False, command=f"submitit task {job.job_id}")
    with lock, Manifest(ctx.layout.out, ctx.cfg, execution=describe_task, alone=lock.alone) as manifest:
        manifest.record_data(ctx.data, ctx.protocols)
        outcomes = [_worker_attempt(ctx, r) for r in runs]
        manifest.failures = sum(o.status == "failed" for o in outcomes)
        error = executors.first_output_error(outcomes)
        if error is not None:
            raise error
    return outcomes


# ----------------------------------------------------------------------------- sslbench run


def run(cfg: RunConfig, execution: Execution | None = None) -> int:
    """Run the plan of ``cfg`` (the command line then writes and prints the leaderboard).

    Rank 0 shares ``<out>/.sslbench.lock`` with any other invocation on ``out``
    (:mod:`sslbench.lock`); alone there, it first clears the temp files of writes a
    kill cut short. It records the plan in ``<out>/plan.json`` and this invocation in
    ``<out>/manifest.json`` (:mod:`sslbench.manifest`). SIGTERM unwinds like Ctrl-C.

    Returns:
        The number of runs that failed with a reported error or did not finish.

    Raises:
        SslbenchError: for bad input (before anything is written).
        OutputError: when the output cannot be written (full disk, unwritable ``--out``).
    """
    execution = execution or Execution()
    execution.check()
    cfg = cfg.resolved()
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise SslbenchError("--device cuda was asked for, but torch sees no CUDA device")
    plan = build_plan(cfg, execution.max_runs)
    searching = any(s.bisect is not None for s in cfg.sweeps.values())
    if searching:
        _check_searches(cfg, execution)
    if execution.kind == "slurm" and not execution.dry_run:
        executors.require_submitit()  # before anything is written
    if execution.dry_run:
        from sslbench.status import plan_report

        if len(plan) or not searching:
            print(plan_report(RunLayout(cfg.out), plan_entries(plan, cfg), execution.jobs), end="")
        if searching:
            print("\n".join(bisect_sweep.plan_lines(cfg, RunLayout(cfg.out), entry_maker(cfg))))
        return 0
    if dist.init_from_env(cfg.device) and cfg.device == "cuda":
        cfg = dataclasses.replace(cfg, device=f"cuda:{dist.local_rank()}")
    layout = RunLayout(cfg.out)
    if not dist.is_main():  # rank 0 alone keeps the locks and the manifest
        layout.out.mkdir(parents=True, exist_ok=True)
        return _sequential(plan, cfg, execution, None)
    with graceful_stop(), RunLock(layout.out, shared=True) as lock:
        if lock.taken_over:
            log(f"sslbench: {lock.taken_over}")
        if lock.alone:
            stray = remove_stale_temp_files(layout.out)
            if stray:
                log(f"sslbench: removed {len(stray)} temp file(s) of writes cut short: "
                    f"{', '.join(p.name for p in stray[:3])}")
        lock.share()
        record_plan(layout.out, plan_entries(plan, cfg))
        with Manifest(layout.out, cfg, execution=execution.describe(), alone=lock.alone) as manifest:
            if execution.kind == "slurm":
                manifest.status_on_success = "finished" if execution.slurm.wait else "submitted"

            def execute(p: Plan) -> int:
                if execution.kind == "slurm":
                    return _slurm(p, cfg, execution, layout)
                if execution.kind == "local":
                    return _local(p, cfg, execution, manifest)
                return _sequential(p, cfg, execution, manifest)

            def execute_round(p: Plan) -> int:  # a search's probes, planned one round at a time
                record_plan(layout.out, plan_entries(p, cfg))
                return execute(p)

            manifest.failures = execute(plan) if len(plan) or not searching else 0
            if searching:
                results, failed = bisect_sweep.run_searches(cfg, layout, entry_maker(cfg), execute_round)
                manifest.failures += failed
                bisect_sweep.write_reports(layout, results)
                print("\n".join(bisect_sweep.report_lines(results)), flush=True)
    return manifest.failures


def _check_searches(cfg: RunConfig, execution: Execution) -> None:
    """Refuse what a boundary search cannot run under, before anything is written.

    Raises:
        SslbenchError: under ``torchrun`` (ranks would have to agree on every round's plan),
            with ``--executor slurm`` without ``--wait`` (a round needs the last one's
            results), or for a search whose end cells are invalid.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SslbenchError("a bisect sweep chooses each probe from the last one's result; run it without "
                            "torchrun (one process, or --jobs N for the seeds side by side)")
    if execution.kind == "slurm" and not execution.slurm.wait and not execution.dry_run:
        raise SslbenchError("a bisect sweep chooses each probe from the last one's result, so each round must "
                            "finish first: add --wait to --executor slurm")
    bisect_sweep.check_searches(cfg)


def plan_entries(plan: Plan, cfg: RunConfig) -> list[PlanEntry]:
    """The ``plan.json`` entries of ``plan``: what makes each run's results current."""
    entry_of = entry_maker(cfg)
    return [entry_of(r) for r in plan]


def entry_maker(cfg: RunConfig) -> bisect_sweep.EntryOf:
    """``entry_of(run)``: the plan entry of one run of ``cfg`` (its protocols' versions read once)."""
    protocols = {p.name: {"version": p.info().version, "params": p.info().params} for p in protocols_of(cfg, quiet=True)}

    def entry_of(r: PlannedRun) -> PlanEntry:
        spec = RunSpec.of(r.cell.method, r.seed, cfg, r.cell.changes, r.cell.sweep)
        epochs = spec.train.epochs if spec.method.encoder == "trained" else None
        return PlanEntry(r.cell.name, r.seed, json.loads(json.dumps(spec.identity(cfg))), protocols, epochs,
                         r.cell.sweep)

    return entry_of


def _load_data(cfg: RunConfig, quiet: bool = False) -> tuple[ImageData, tuple[torch.Tensor, torch.Tensor] | None]:
    data = load_dataset(cfg.dataset, cfg.data_root)
    if not quiet:
        log(f"dataset {data.name}: {data.train_images.shape[0]} train / {data.test_images.shape[0]} test, "
            f"fingerprint {data.fingerprint[:12]}")
    transfer = None
    if cfg.transfer:
        transfer = transfer_set(load_dataset(cfg.transfer, cfg.data_root), data)
        if not quiet:
            log(f"transfer set {cfg.transfer}: {len(transfer[1])} images resized to {data.image_size}px")
    return data, transfer


def _summary(outcomes: list[Outcome], total: int) -> int:
    """Log what was left to others or not attempted; return the failures (raise the output error, if any)."""
    busy = [o.label for o in outcomes if o.status == "busy"]
    if busy:
        log(f"sslbench: {len(busy)} run(s) were held by other processes and left to them "
            f"({', '.join(busy[:3])}{', ...' if len(busy) > 3 else ''}); `sslbench status` follows them")
    missing = total - len(outcomes)
    error = executors.first_output_error(outcomes)
    if error is not None:
        raise error  # a full disk or an unwritable --out fails the later runs too
    if missing:
        log(f"sslbench: {missing} run(s) did not finish (a task or worker ended first); rerun the same command")
    return sum(o.status == "failed" for o in outcomes) + missing


def _sequential(plan: Plan, cfg: RunConfig, execution: Execution, manifest: Manifest | None) -> int:
    """Every run in this process, one after another (``torchrun``: every rank, in step)."""
    before = torch.get_num_threads()
    executors.set_threads(execution.threads())
    try:
        ctx = load_context(cfg)
        if manifest is not None:
            manifest.record_data(ctx.data, ctx.protocols)

        def work(r: PlannedRun) -> Outcome:
            dist.barrier()  # every rank sees the files rank 0 wrote for the previous run
            return attempt(r, ctx)

        outcomes = executors.run_sequential(plan.runs, work, executors.Progress(len(plan), 1, log))
        dist.barrier()
        dist.destroy()
    finally:
        torch.set_num_threads(before)  # a caller in this process keeps its own count
    return _summary(outcomes, len(plan))


def _local(plan: Plan, cfg: RunConfig, execution: Execution, manifest: Manifest) -> int:
    """Every run in ``--jobs`` spawned worker processes."""
    ctx = load_context(cfg)  # here too: the manifest records the data, and bad data stops before any worker
    manifest.record_data(ctx.data, ctx.protocols)
    threads = execution.threads()
    log(f"sslbench: {len(plan)} runs on {execution.jobs} worker processes, {threads} torch thread(s) each")
    payload = WorkerPayload(cfg, plan.worker_methods(), threads)
    pool = executors.LocalPool(plan.runs, execution.jobs, threads, _worker_init, payload, _worker_attempt,
                               lambda r, msg: _worker_death(ctx.layout, r, msg),
                               executors.Progress(len(plan), execution.jobs, log))
    return _summary(pool.run(), len(plan))


def _slurm(plan: Plan, cfg: RunConfig, execution: Execution, layout: RunLayout) -> int:
    """Submit the runs as one job array (and, with ``--wait``, wait for it)."""
    opts = execution.slurm
    executors.require_submitit()
    payload = WorkerPayload(cfg, plan.worker_methods(), execution.threads())
    jobs = executors.submit(plan.runs, _task_main, payload, layout.submitit, opts)
    ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
    log(f"sslbench: submitted {len(plan)} runs as {len(jobs)} task(s) of {opts.runs_per_task} run(s) "
        f"(job {', '.join(ids)}; logs in {layout.submitit}); follow them with `sslbench status {layout.out}`")
    if not opts.wait:
        log(f"sslbench: when they are done, `sslbench leaderboard {layout.out} --write {layout.out}` writes the leaderboard")
        return 0
    outcomes = executors.wait_for(jobs, executors.Progress(len(plan), min(len(jobs), opts.array_parallelism), log))
    return _summary(outcomes, len(plan))
