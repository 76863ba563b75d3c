"""``sslbench status OUT`` and ``sslbench run --dry-run``: where every planned run stands, and how long the rest takes.

A run of ``<out>/plan.json`` (:class:`sslbench.manifest.PlanEntry`) is

- ``done`` when every planned protocol's result is current
  (:func:`sslbench.store.is_current`: same identity, protocol version and parameters);
- ``running`` while a process holds its run lock (:data:`sslbench.lock.RUN_LOCK_NAME`),
  with the last epoch its training log records;
- ``failed`` when its last attempt recorded a reason in its ``failure.json``;
- ``pending`` otherwise (with the epoch it will resume from, if it started).

The ETA comes from measured runs: the seconds per epoch of pretraining (summed
``train_s`` over summed epochs) and the mean feature and protocol seconds of the
done runs, applied to the epochs left, divided by the runs going at once.
Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sslbench.errors import SslbenchError
from sslbench.executors import format_duration
from sslbench.io import read_json_object
from sslbench.layout import RunLayout, RunPaths
from sslbench.lock import describe, holder_of
from sslbench.manifest import PlanEntry, read_plan
from sslbench.store import is_current, read_record
from sslbench.sweep import format_value
from sslbench.training_log import read_log

State = Literal["done", "running", "failed", "pending"]
STATES: tuple[State, ...] = ("running", "failed", "pending", "done")


@dataclass(frozen=True)
class RunState:
    """Where one planned run stands.

    Attributes:
        entry: The plan entry.
        state: ``done``, ``running``, ``failed`` or ``pending``.
        epoch: Epochs its training log records (``None`` when it has none).
        detail: Who runs it (running) or why it failed (failed).
        train_s: Measured pretraining seconds (done runs).
        eval_s: Measured feature and protocol seconds (done runs).
    """

    entry: PlanEntry
    state: State
    epoch: int | None = None
    detail: str = ""
    train_s: float = 0.0
    eval_s: float = 0.0

    @property
    def epochs_left(self) -> int:
        """Pretraining epochs still to run (0 for floors and done runs)."""
        if self.state == "done" or not self.entry.epochs:
            return 0
        return max(0, self.entry.epochs - (self.epoch or 0))


def _done(paths: RunPaths, entry: PlanEntry) -> bool:
    return all(is_current(paths.result(name), info, entry.identity) for name, info in entry.protocols.items())


def _measured(paths: RunPaths) -> tuple[float, float]:
    """``(train_s, features_s + protocol seconds)`` of a done run, from its result records."""
    train = features = protocols = 0.0
    for path in paths.result_files():
        try:
            t = read_record(path).timings
        except SslbenchError:
            continue
        train, features, protocols = max(train, t.train_s), max(features, t.features_s), protocols + t.protocol_s
    return train, features + protocols


def _failure(paths: RunPaths) -> str | None:
    if not paths.failure.exists():
        return None
    try:
        message = read_json_object(paths.failure, "failure record").get("message")
    except SslbenchError as e:
        return str(e)
    return message if isinstance(message, str) else "(no reason recorded)"


def run_state(layout: RunLayout, entry: PlanEntry) -> RunState:
    """Where ``entry``'s run stands in ``layout``."""
    paths = layout.run(entry.method, entry.seed)
    rows = read_log(paths.metrics_log)
    epoch = rows[-1].epoch if rows else None
    holder = holder_of(paths.lock)
    if holder is not None:
        return RunState(entry, "running", epoch, describe(holder))
    if _done(paths, entry):
        return RunState(entry, "done", epoch, "", *_measured(paths))
    failure = _failure(paths)
    if failure is not None:
        return RunState(entry, "failed", epoch, failure)
    return RunState(entry, "pending", epoch)


@dataclass(frozen=True)
class Estimate:
    """Measured cost per run and what is left.

    Attributes:
        s_per_epoch: Pretraining seconds per epoch (``None`` before any measured run).
        eval_s: Mean feature and protocol seconds per run.
        measured: Done runs measured.
        left_s: Compute seconds left (``None`` before any measured run).
    """

    s_per_epoch: float | None
    eval_s: float
    measured: int
    left_s: float | None

    def wall_s(self, parallel: int) -> float | None:
        """Wall seconds left with ``parallel`` runs at once."""
        return None if self.left_s is None else self.left_s / max(1, parallel)


def estimate(states: list[RunState]) -> Estimate:
    """The cost per run measured on the done runs, applied to the runs left."""
    done = [s for s in states if s.state == "done" and (s.train_s or s.eval_s)]
    epochs = sum(s.entry.epochs or 0 for s in done if s.train_s)
    per_epoch = sum(s.train_s for s in done) / epochs if epochs else None
    eval_s = sum(s.eval_s for s in done) / len(done) if done else 0.0
    left = [s for s in states if s.state != "done"]
    if per_epoch is None and not done:
        return Estimate(None, 0.0, 0, None)
    left_s = sum(s.epochs_left * (per_epoch or 0.0) + eval_s for s in left)
    return Estimate(per_epoch, eval_s, len(done), left_s)


def _coords(entry: PlanEntry) -> str:
    if entry.sweep is None:
        return ""
    return f"  [{entry.sweep.name}: " + ", ".join(f"{k}={format_value(v)}" for k, v in entry.sweep.coordinates.items()) + "]"


def _line(s: RunState) -> str:
    epochs = f"epoch {s.epoch or 0}/{s.entry.epochs}" if s.entry.epochs else "not trained"
    what = {"running": f"{epochs}, {s.detail}", "failed": s.detail, "done": epochs,
            "pending": epochs if s.epoch else (f"{s.entry.epochs} epochs" if s.entry.epochs else "not trained")}[s.state]
    return f"  {s.state:<8} {s.entry.label}: {what}{_coords(s.entry)}"


def _counts(states: list[RunState]) -> str:
    return ", ".join(f"{sum(s.state == k for s in states)} {k}" for k in ("done", "running", "failed", "pending"))


def _eta_line(est: Estimate, parallel: int, what: str) -> str:
    if est.left_s is None:
        return f"{what}: no measured run yet to estimate from"
    per = f"{est.s_per_epoch:.2f}s per epoch, " if est.s_per_epoch is not None else ""
    return (f"{what}: {format_duration(est.left_s)} of compute left ({per}{est.eval_s:.1f}s to score a run, measured on "
            f"{est.measured} run(s)); {format_duration(est.wall_s(parallel) or 0.0)} at {parallel} run(s) at once")


def states_of(layout: RunLayout, entries: list[PlanEntry]) -> list[RunState]:
    """:func:`run_state` of every entry."""
    return [run_state(layout, e) for e in entries]


def status_report(out: str) -> str:
    """The text of ``sslbench status OUT``.

    Raises:
        SslbenchError: for a directory with no plan (no ``sslbench run`` wrote one there).
    """
    layout = RunLayout(out)
    if not layout.out.is_dir():
        raise SslbenchError(f"{out} is not a directory")
    entries = read_plan(out)
    if not entries:
        raise SslbenchError(f"{out} has no plan.json: no `sslbench run` has planned runs there yet")
    states = states_of(layout, entries)
    running = sum(s.state == "running" for s in states)
    lines = [f"{out}: {len(states)} runs planned: {_counts(states)}"]
    lines += [_line(s) for k in STATES for s in states if s.state == k]
    lines.append(_eta_line(estimate(states), max(1, running), "ETA"))
    return "\n".join(lines) + "\n"


def plan_report(layout: RunLayout, entries: list[PlanEntry], jobs: int) -> str:
    """The text of ``sslbench run --dry-run``: every run of the plan, what is already done, and the cost."""
    states = states_of(layout, entries)
    epochs = sum(s.epochs_left for s in states)
    lines = [f"plan: {len(states)} runs ({_counts(states)}) into {layout.out}"]
    lines += [_line(s) for s in states]
    lines.append(f"left: {sum(s.state != 'done' for s in states)} runs, {epochs} pretraining epochs")
    lines.append(_eta_line(estimate(states), jobs, f"estimate at --jobs {jobs}"))
    return "\n".join(lines) + "\n"
