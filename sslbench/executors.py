"""How the runs of a plan execute: in this process, in N local worker processes, or as Slurm job arrays.

Every executor runs the same unit of work, :func:`sslbench.runner.attempt`, on
each run of a plan: claim the run's lock without waiting, train, extract and
score what is missing, release. A run that another process holds comes back
``busy`` and is tried once more at the end, so any number of invocations,
workers and cluster tasks can share one ``--out``: none trains a run another is
training, and none redoes a finished one.

- ``sequential``: this process, one run after another (``torchrun`` DDP per run
  lives here).
- ``local``: ``--jobs N`` worker processes (spawned, so no state is shared), each
  with its own torch thread count (cores/N unless ``--threads-per-job``). A worker
  that fails or is killed costs only its run: the parent records why (the run's
  ``failure.json``), starts a new worker and goes on. An output error (full
  disk, unwritable ``--out``) stops new runs from starting; the running ones finish.
- ``slurm``: submitit (``pip install 'sslbench[slurm]'``) submits the runs as one
  job array, several runs packed per task (``--runs-per-task``). A task is
  checkpointable: on preemption or at its time limit submitit requeues it, and
  the requeued task reruns its runs, each resuming from its last per-epoch
  checkpoint. submitit's local executor (``--submitit-cluster local``) runs the same
  tasks as real subprocesses on this machine.

SIGTERM (a cluster's preemption, ``docker stop``) is handled like Ctrl-C in the
command and in local workers (:mod:`sslbench.interrupts`): training finishes its
step and checkpoints where it is, and the rerun resumes.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal

from sslbench.config import MAX_RUNS
from sslbench.errors import SslbenchError
from sslbench.interrupts import graceful_stop
from sslbench.io import OutputError

EXECUTORS = ("sequential", "local", "slurm")
SUBMITIT_CLUSTERS = ("slurm", "local")
#: Thread environment variables set in each local worker before it imports torch (torch, OpenMP
#: in faiss and MKL read them at start-up).
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

Status = Literal["done", "skipped", "failed", "busy", "stopped"]


@dataclass(frozen=True)
class Outcome:
    """What one attempt at one run gave.

    Attributes:
        label: ``<method>/seed<k>``.
        status: ``done`` (trained or scored now), ``skipped`` (every result was
            current), ``failed`` (an error; ``message`` says it), ``busy`` (another
            process holds the run) or ``stopped`` (an output error: start no more runs).
        seconds: Wall-clock seconds of the attempt.
        message: The one-line reason of a failure, or who holds a busy run.
    """

    label: str
    status: Status
    seconds: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class SlurmOptions:
    """Options of ``--executor slurm``.

    Attributes:
        partition: Slurm partition (default: the cluster's).
        time_min: Time limit of one task, minutes.
        cpus_per_task: CPUs per task (and torch threads per run, unless ``--threads-per-job``).
        gpus_per_task: GPUs per task.
        mem_gb: Memory per task, GB (default: the partition's).
        array_parallelism: Most tasks of the array running at once.
        runs_per_task: Runs packed into one task (run one after another).
        cluster: ``slurm``, or ``local`` for submitit's local executor (real
            subprocesses on this machine).
        wait: Wait for every task, then write the leaderboard.
    """

    partition: str | None = None
    time_min: int = 240
    cpus_per_task: int = 4
    gpus_per_task: int = 0
    mem_gb: float | None = None
    array_parallelism: int = 256
    runs_per_task: int = 4
    cluster: str = "slurm"
    wait: bool = False


@dataclass(frozen=True)
class Execution:
    """How ``sslbench run`` executes its plan (none of it changes a number, so none of it is in a run's identity).

    Attributes:
        executor: One of :data:`EXECUTORS`; ``None``: ``local`` when ``jobs > 1``, else ``sequential``.
        jobs: Local worker processes.
        threads_per_job: torch threads per run (default: cores/jobs for ``local``,
            ``cpus_per_task`` for ``slurm``, torch's own for ``sequential``).
        max_runs: Most runs the plan may have.
        dry_run: List the plan, what is done and its cost; run nothing.
        slurm: Options of the ``slurm`` executor.
    """

    executor: str | None = None
    jobs: int = 1
    threads_per_job: int | None = None
    max_runs: int = MAX_RUNS
    dry_run: bool = False
    slurm: SlurmOptions = field(default_factory=SlurmOptions)

    @property
    def kind(self) -> str:
        """The executor this resolves to."""
        if self.executor is None:
            return "local" if self.jobs > 1 else "sequential"
        return self.executor

    def threads(self) -> int | None:
        """torch threads per run (``None``: leave torch's default)."""
        if self.threads_per_job is not None:
            return self.threads_per_job
        if self.kind == "local":
            return max(1, available_cores() // max(1, self.jobs))
        if self.kind == "slurm":
            return self.slurm.cpus_per_task
        return None

    def check(self) -> None:
        """Refuse options that do not go together.

        Raises:
            SslbenchError: for an unknown executor, ``--jobs`` with another executor than
                ``local``, or several processes under ``torchrun`` with another executor than
                ``sequential``.
        """
        if self.kind not in EXECUTORS:
            raise SslbenchError(f"unknown executor {self.kind!r} (known: {', '.join(EXECUTORS)})")
        if self.jobs > 1 and self.kind != "local":
            raise SslbenchError(f"--jobs {self.jobs} runs local worker processes; it does not go with "
                                f"--executor {self.kind} (use --executor local, or drop --jobs)")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and self.kind != "sequential":
            raise SslbenchError("under torchrun each run is one DDP job: runs go one after another; "
                                "drop --jobs/--executor (launch torchrun per sweep, or sweep on one process per run)")
        if self.slurm.cluster not in SUBMITIT_CLUSTERS:
            raise SslbenchError(f"unknown --submitit-cluster {self.slurm.cluster!r} "
                                f"(known: {', '.join(SUBMITIT_CLUSTERS)})")

    def describe(self) -> dict[str, Any]:
        """What the manifest records of it."""
        out: dict[str, Any] = {"executor": self.kind, "jobs": self.jobs, "threads_per_job": self.threads()}
        if self.kind == "slurm":
            out["slurm"] = {k: getattr(self.slurm, k) for k in SlurmOptions.__dataclass_fields__}
        return out


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Use ``threads`` torch threads in this process (``None``: keep the current count); return the count."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# ----------------------------------------------------------------------------- progress


class Progress:
    """One line per finished attempt, naming the run, the count and an ETA from measured run times.

    Args:
        total: Runs in the plan.
        parallel: Runs going at once (for the ETA).
        log: Where lines go.
    """

    def __init__(self, total: int, parallel: int, log: Callable[[str], None]) -> None:
        self.total, self.parallel, self.log = total, max(1, parallel), log
        self.count = 0
        self.measured: list[float] = []
        self.t0 = time.perf_counter()

    def eta_s(self) -> float | None:
        """Seconds left: runs left x the mean measured run time / runs at once (``None`` before any)."""
        if not self.measured:
            return None
        return (self.total - self.count) * (sum(self.measured) / len(self.measured)) / self.parallel

    def update(self, outcome: Outcome, final: bool = True) -> None:
        """Count ``outcome`` (a ``busy`` one that will be retried is not final) and log its line."""
        if final:
            self.count += 1
        if outcome.status == "done":
            self.measured.append(outcome.seconds)
        what = {"done": f"done in {outcome.seconds:.0f}s", "skipped": "all results present, skipped",
                "failed": f"FAILED after {outcome.seconds:.0f}s: {outcome.message}",
                "busy": f"held by another process ({outcome.message}); " + ("left to it" if final else "retried at the end"),
                "stopped": f"stopped: {outcome.message}"}[outcome.status]
        eta = self.eta_s()
        left = f", ETA {format_duration(eta)}" if eta is not None and self.count < self.total else ""
        self.log(f"[{self.count}/{self.total}] {outcome.label}: {what} "
                 f"(sweep {(time.perf_counter() - self.t0) / 60:.1f} min{left})")


def format_duration(seconds: float) -> str:
    """``42s``, ``7.5 min``, ``3.2 h``, ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# ----------------------------------------------------------------------------- sequential


def run_sequential(runs: Sequence[Any], work: Callable[[Any], Outcome], progress: Progress) -> list[Outcome]:
    """Attempt every run here, one after another; busy runs once more at the end.

    Returns:
        The final outcome of each run attempted (a ``stopped`` one ends the pass).
    """
    outcomes: dict[int, Outcome] = {}
    for retry in (False, True):
        todo = [i for i in range(len(runs)) if not retry or outcomes[i].status == "busy"]
        for i in todo:
            outcome = work(runs[i])
            outcomes[i] = outcome
            progress.update(outcome, final=retry or outcome.status != "busy")
            if outcome.status == "stopped":
                return list(outcomes.values())
    return list(outcomes.values())


# ----------------------------------------------------------------------------- local worker processes


def _worker_main(conn: Connection, init: Callable[[Any], Any], payload: Any,
                 work: Callable[[Any, Any], Outcome], threads: int | None) -> None:
    """A local worker: build its context once, then attempt each run the parent sends until it sends ``None``."""
    import tqdm

    # tqdm's default lock is a multiprocessing semaphore, which a killed worker would leak (and the
    # parent warn about at exit); a worker's bars are its own, so a thread lock is enough.
    tqdm.tqdm.set_lock(threading.RLock())
    try:
        with graceful_stop():
            _serve(conn, init, payload, work, threads)
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass  # interrupted, or the parent is gone: the run's last checkpoint stays
    finally:
        conn.close()


def _serve(conn: Connection, init: Callable[[Any], Any], payload: Any, work: Callable[[Any, Any], Outcome],
           threads: int | None) -> None:
    """Build the worker's context once, then attempt each run the parent sends until it sends ``None``."""
    set_threads(threads)
    try:
        ctx = init(payload)
    except SslbenchError as e:
        conn.send(("init_error", " ".join(str(e).splitlines())))
        return
    conn.send(("ready", None))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        index, run = msg
        try:
            outcome = work(ctx, run)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001 - a bug in one run must not cost the others
            outcome = Outcome(getattr(run, "label", str(index)), "failed", 0.0, f"crashed: {type(e).__name__}: {e}")
        conn.send(("outcome", (index, outcome)))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    current: int | None = None
    ready: bool = False


class LocalPool:
    """``jobs`` spawned worker processes that attempt the runs a parent hands out one at a time.

    Args:
        runs: The runs.
        jobs: Worker processes.
        threads: torch threads per worker (``None``: torch's default).
        init: ``init(payload) -> context``, run once in each worker (module-level, so it pickles).
        payload: What ``init`` gets.
        work: ``work(context, run) -> Outcome`` (module-level).
        on_death: ``on_death(run, message)`` in the parent when a worker dies during a run.
        progress: The progress printer.
    """

    def __init__(self, runs: Sequence[Any], jobs: int, threads: int | None, init: Callable[[Any], Any], payload: Any,
                 work: Callable[[Any, Any], Outcome], on_death: Callable[[Any, str], None], progress: Progress) -> None:
        self.runs, self.jobs, self.threads = runs, jobs, threads
        self.init, self.payload, self.work, self.on_death, self.progress = init, payload, work, on_death, progress
        self.queue: collections.deque[int] = collections.deque(range(len(runs)))
        self.retried: set[int] = set()
        self.outcomes: dict[int, Outcome] = {}
        self.workers: list[_Worker] = []
        self.stopping = False
        self.starts = 0

    def _start_worker(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        saved = {k: os.environ.get(k) for k in THREAD_ENV}
        if self.threads is not None:  # read by OpenMP and MKL when the worker imports torch and faiss
            os.environ.update({k: str(self.threads) for k in THREAD_ENV})
        try:
            proc = ctx.Process(target=_worker_main, args=(child, self.init, self.payload, self.work, self.threads),
                               name=f"sslbench-worker-{self.starts}", daemon=False)
            proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.starts += 1
        self.workers.append(_Worker(proc, parent))

    def run(self) -> list[Outcome]:
        """Attempt every run; return their final outcomes.

        Raises:
            SslbenchError: when a worker cannot start (the data cannot be loaded, ...).
        """
        try:
            for _ in range(min(self.jobs, len(self.runs))):
                self._start_worker()
            while self.workers:
                ready = wait([w.conn for w in self.workers] + [w.process.sentinel for w in self.workers])
                for w in list(self.workers):
                    if w.conn in ready or w.process.sentinel in ready:
                        self._service(w)
        except BaseException:
            self._terminate()
            raise
        return [self.outcomes[i] for i in sorted(self.outcomes)]

    def _service(self, w: _Worker) -> None:
        """Read what ``w`` said (or learn that it died) and hand it its next run."""
        try:
            kind, body = w.conn.recv()
        except (EOFError, OSError):
            self._reap(w)
            return
        if kind == "init_error":
            self._reap(w, quiet=True)
            raise SslbenchError(body)
        if kind == "outcome":
            index, outcome = body
            w.current = None
            final = outcome.status != "busy" or index in self.retried
            self.outcomes[index] = outcome
            if outcome.status == "busy" and index not in self.retried:
                self.retried.add(index)
                self.queue.append(index)  # behind everything else: tried once more at the end
            if outcome.status == "stopped":
                self.stopping = True
            self.progress.update(outcome, final=final)
        self._dispatch(w)

    def _dispatch(self, w: _Worker) -> None:
        if self.stopping or not self.queue:
            if w.current is None:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
            return
        w.current = self.queue.popleft()
        try:
            w.conn.send((w.current, self.runs[w.current]))
        except OSError:  # it died after its last message: the run goes back, the death is read next
            self.queue.appendleft(w.current)
            w.current = None

    def _reap(self, w: _Worker, quiet: bool = False) -> None:
        """A worker ended: record its run as failed if it died during one; start another if work is left."""
        w.process.join(timeout=30)
        self.workers.remove(w)
        w.conn.close()
        died = w.current is not None or w.process.exitcode != 0
        if w.current is not None and not quiet:
            run, code = self.runs[w.current], w.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
            message = f"worker process {w.process.pid} {how} during this run; rerun to resume it"
            self.on_death(run, message)
            outcome = Outcome(getattr(run, "label", str(w.current)), "failed", 0.0, message)
            self.outcomes[w.current] = outcome
            self.progress.update(outcome)
            w.current = None
        if died and not quiet and self.queue and not self.stopping and self.starts < len(self.runs) + self.jobs:
            self._start_worker()

    def _terminate(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after 30 s): their runs keep their last checkpoint."""
        for w in self.workers:
            if w.process.is_alive():
                with contextlib.suppress(OSError):
                    os.kill(w.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for w in self.workers:
            w.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
        self.workers.clear()


# ----------------------------------------------------------------------------- slurm through submitit


def require_submitit() -> Any:
    """The ``submitit`` module.

    Raises:
        SslbenchError: one line saying how to install it, when it is missing.
    """
    try:
        import submitit
    except ImportError:
        raise SslbenchError("--executor slurm needs submitit: pip install 'sslbench[slurm]'") from None
    return submitit


def pack(runs: Sequence[Any], per_task: int) -> list[list[Any]]:
    """``runs`` in consecutive groups of ``per_task`` (the last one shorter), one group per array task."""
    per_task = max(1, per_task)
    return [list(runs[i:i + per_task]) for i in range(0, len(runs), per_task)]


class SweepTask:
    """One array task: ``fn(payload, runs)``, checkpointable for submitit.

    submitit calls :meth:`checkpoint` when the task is preempted or reaches its time
    limit, and requeues what it returns: the same task. That is all the state there
    is: the requeued task attempts its runs again, skipping finished ones and
    resuming the others from their per-epoch checkpoints.

    Args:
        fn: ``fn(payload, runs) -> list[Outcome]`` (module-level, so it pickles).
        payload: What ``fn`` gets besides the runs.
        runs: The runs packed into this task.
    """

    def __init__(self, fn: Callable[[Any, list[Any]], list[Outcome]], payload: Any, runs: list[Any]) -> None:
        self.fn, self.payload, self.runs = fn, payload, runs

    def __call__(self) -> list[Outcome]:
        return self.fn(self.payload, self.runs)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue this same task (submitit's contract for a checkpointable callable)."""
        submitit = require_submitit()
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def slurm_executor(folder: Path, opts: SlurmOptions) -> Any:
    """A submitit executor for ``opts`` (Slurm, or submitit's local executor), its job files in ``folder``."""
    submitit = require_submitit()
    ex = submitit.AutoExecutor(folder=folder, cluster=opts.cluster)
    params: dict[str, Any] = {"name": "sslbench", "timeout_min": opts.time_min, "nodes": 1, "tasks_per_node": 1,
                              "cpus_per_task": opts.cpus_per_task, "gpus_per_node": opts.gpus_per_task,
                              "mem_gb": opts.mem_gb, "slurm_array_parallelism": opts.array_parallelism,
                              "slurm_partition": opts.partition}
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def submit(runs: Sequence[Any], fn: Callable[[Any, list[Any]], list[Outcome]], payload: Any, folder: Path,
           opts: SlurmOptions) -> list[Any]:
    """Submit ``runs`` as one job array of :class:`SweepTask` (``opts.runs_per_task`` runs each).

    Returns:
        The submitit jobs, one per task.
    """
    ex = slurm_executor(folder, opts)
    tasks = [SweepTask(fn, payload, group) for group in pack(runs, opts.runs_per_task)]
    return ex.submit_array(tasks)


def wait_for(jobs: Sequence[Any], progress: Progress, poll_s: float = 2.0) -> list[Outcome]:
    """Wait for every job; log each run's outcome as its task ends.

    A task that ended in an error (killed, out of time with no requeue left) is
    logged with submitit's reason; its runs are left as they are, for a resubmission.

    Returns:
        The outcomes of the runs of the tasks that finished.
    """
    submitit = require_submitit()
    outcomes: list[Outcome] = []
    for job in submitit.helpers.as_completed(list(jobs), poll_frequency=poll_s):
        try:
            result = job.result()
        except Exception as e:  # noqa: BLE001 - submitit re-raises the task's failure, whatever it was
            lines = [ln for ln in str(e).splitlines() if ln.strip()]
            progress.log(f"task {job.job_id} ended without finishing: {lines[-1] if lines else type(e).__name__}; "
                         "resubmit the same command to resume its runs")
            continue
        for outcome in result or []:
            outcomes.append(outcome)
            progress.update(outcome)
    return outcomes


def first_output_error(outcomes: Sequence[Outcome]) -> OutputError | None:
    """The output error that stopped the runs (``stopped``), as the error to raise, if any."""
    stopped = next((o for o in outcomes if o.status == "stopped"), None)
    return OutputError(stopped.message) if stopped else None


def log(msg: str) -> None:
    """A progress line on stderr."""
    print(msg, file=sys.stderr, flush=True)
