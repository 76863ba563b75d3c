"""Boundary searches of ``sslbench run``: a ``bisect`` sweep's probes, round by round, and their brackets.

A sweep with a ``bisect`` table (:class:`sslbench.bisection.Bisect`) runs one
:class:`Search` per point of its grid and seed. Each search is a chain: its next
probe depends on the collapse class of the ones before (:func:`sslbench.bisection.walk`),
so the searches advance in rounds: every search still searching contributes its
next probe(s) (both ends in the first round, one midpoint per round after), the
round runs as an ordinary plan (``--jobs N`` runs the searches' probes side by
side, each run under its lock), and the readings decide the next round.

Every probe is an ordinary sweep cell: named from its coordinates
(:func:`sslbench.sweep.probe_cell`), recorded with ``"sweep": {"name",
"coordinates"}``, listed in ``plan.json`` and read by the leaderboard and the
analysis like any other. A probe's reading is its current ``collapse`` result, so
a rerun of the same command replays each search from its finished probes and
runs only what is missing. A probe attempted in this invocation that still has
no reading (it failed, or another process holds it) stops its search with one
line; the rerun tries it again.

At the end each search's bracket ``[last healthy, first collapsed]`` and, per
grid point, the bracket that holds every seed's, go to ``<out>/bisect/<sweep>.json``
(:meth:`sslbench.layout.RunLayout.bisect`) and one line each to stdout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sslbench.bisection import COLLAPSED, HEALTHY, PROBE_DIGITS, Bisect, Number, SearchState, classify, walk
from sslbench.config import RunConfig, Sweep
from sslbench.errors import SslbenchError
from sslbench.io import atomic_write_json, read_json_object
from sslbench.layout import RunLayout
from sslbench.lock import describe, holder_of
from sslbench.manifest import PlanEntry
from sslbench.store import is_current, read_record
from sslbench.sweep import Cell, Plan, PlannedRun, format_value, grid_points, plan_of, probe_cell

#: A run's plan entry (its identity and the protocol versions its results must have).
EntryOf = Callable[[PlannedRun], PlanEntry]
#: Runs a plan and returns the runs that failed (the runner's executor of this invocation).
Execute = Callable[[Plan], int]


@dataclass(frozen=True)
class Search:
    """One boundary search: a bisect sweep at one point of its grid, for one seed.

    Attributes:
        sweep: The sweep (its ``bisect`` set).
        fixed: The grid point: its other axes' values (empty without a grid).
        seed: The seed.
    """

    sweep: Sweep
    fixed: dict[str, Any]
    seed: int

    @property
    def bisect(self) -> Bisect:
        """The sweep's search."""
        assert self.sweep.bisect is not None
        return self.sweep.bisect

    def cell(self, value: Number) -> Cell:
        """The probe cell at ``value`` (for this seed)."""
        return probe_cell(self.sweep, self.fixed, value, (self.seed,))

    def run(self, value: Number) -> PlannedRun:
        """The probe run at ``value``."""
        return PlannedRun(self.cell(value), self.seed)

    @property
    def point(self) -> str:
        """The sweep and grid point, as lines name it: ``vicreg_mu`` or ``vicreg_mu [batch_size=128]``."""
        fixed = ", ".join(f"{k.partition('.')[2]}={format_value(v)}" for k, v in self.fixed.items())
        return f"{self.sweep.name} [{fixed}]" if fixed else self.sweep.name

    @property
    def label(self) -> str:
        """``<point> seed<k>``."""
        return f"{self.point} seed{self.seed}"


def searches_of(cfg: RunConfig) -> list[Search]:
    """Every search of ``cfg``'s bisect sweeps: per sweep, per grid point, per seed."""
    out = []
    for sweep in cfg.sweeps.values():
        if sweep.bisect is not None:
            seeds = sweep.seeds if sweep.seeds is not None else tuple(cfg.seeds)
            out += [Search(sweep, point, seed) for point in grid_points(sweep) for seed in seeds]
    return out


def probe_plan(cfg: RunConfig, probes: list[tuple[Search, Number]]) -> Plan:
    """One round's plan: a cell per probe value, with the seeds that probe it (both ends are shared)."""
    cells: dict[str, Cell] = {}
    for search, value in probes:
        cell = search.cell(value)
        known = cells.get(cell.name)
        cells[cell.name] = cell if known is None else dataclasses.replace(known, seeds=known.seeds + cell.seeds)
    return plan_of(cfg, list(cells.values()))


def check_searches(cfg: RunConfig) -> None:
    """Check, before anything runs, that every search's two ends make valid cells (names, recipes).

    Raises:
        SslbenchError: as :func:`sslbench.sweep.plan_of`.
    """
    searches = searches_of(cfg)
    probe_plan(cfg, [(s, v) for s in searches for v in (s.bisect.low, s.bisect.high)])


class ProbeReader:
    """The collapse class of a probe from its current ``collapse`` result (nothing here writes).

    Args:
        cfg: The resolved config.
        layout: The output directory.
        entry_of: A run's plan entry (what makes its results current).
    """

    def __init__(self, cfg: RunConfig, layout: RunLayout, entry_of: EntryOf) -> None:
        self.cfg, self.layout, self.entry_of = cfg, layout, entry_of

    def read(self, search: Search, value: Number) -> str | None:
        """``healthy``, ``collapsed``, ``None`` (no current result yet) or why it gave no class."""
        run = search.run(value)
        entry = self.entry_of(run)
        path = self.layout.run(run.cell.name, run.seed).result("collapse", self.cfg.split)
        if not is_current(path, entry.protocols["collapse"], entry.identity):
            return None
        try:
            record = read_record(path)
        except SslbenchError:
            return None
        if record.run.train.status == "diverged":
            return "diverged in training (no collapse reading)"
        status = record.metrics.get("status")
        return classify(status) or f"read no collapse status ({status!r})"

    def state(self, search: Search) -> SearchState:
        """Where ``search`` stands on disk."""
        return walk(search.bisect, lambda v: self.read(search, v))

    def why_missing(self, search: Search, value: Number) -> str:
        """Why a probe attempted in this invocation has no reading: its failure, or who holds it."""
        paths = self.layout.run(search.cell(value).name, search.seed)
        holder = holder_of(paths.lock)
        if holder is not None:
            return f"held by another process ({describe(holder)})"
        if paths.failure.exists():
            try:
                return f"failed: {read_json_object(paths.failure, 'failure record').get('message')}"
            except SslbenchError as e:
                return f"failed: {e}"
        return "no current collapse result"


def run_searches(cfg: RunConfig, layout: RunLayout, entry_of: EntryOf, execute: Execute
                 ) -> tuple[list[SearchResult], int]:
    """Run every search of ``cfg`` round by round until each has its bracket (or stopped).

    Args:
        cfg: The resolved config.
        layout: The output directory.
        entry_of: A run's plan entry.
        execute: Runs one round's plan; returns its failed runs.

    Returns:
        ``(each search's result, runs that failed)``.
    """
    searches, reader = searches_of(cfg), ProbeReader(cfg, layout, entry_of)
    attempted: set[str] = set()
    stopped: dict[int, str] = {}
    failures = 0
    while True:
        states = [reader.state(s) for s in searches]
        todo: list[tuple[Search, Number]] = []
        for i, (search, state) in enumerate(zip(searches, states)):
            if i in stopped or state.outcome != "searching":
                continue
            again = [v for v in state.pending if search.run(v).label in attempted]
            if again:  # attempted here and still no reading: retrying now would loop
                stopped[i] = (f"the probe at {format_value(again[0])} has no collapse reading "
                              f"({reader.why_missing(search, again[0])}); rerun the same command to retry it")
            else:
                todo += [(search, v) for v in state.pending]
        if not todo:
            break
        attempted |= {s.run(v).label for s, v in todo}
        failures += execute(probe_plan(cfg, todo))
    results = [SearchResult(s, dataclasses.replace(st, outcome="stopped", pending=(), message=stopped[i])
                            if i in stopped else st) for i, (s, st) in enumerate(zip(searches, states))]
    return results, failures


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SearchResult:
    """A search and where it ended.

    Attributes:
        search: The search.
        state: Its final state (``searching`` only in a dry run).
    """

    search: Search
    state: SearchState

    def line(self) -> str:
        """One line: the bracket, why there is none, or (dry run) what runs next."""
        s, b = self.state, self.search.bisect
        head, n = f"bisect {self.search.label}", len(s.probes)
        if s.outcome in ("bracketed", "unsplittable"):
            line = (f"{head}: last healthy {b.axis}={format_value(s.healthy)}, first collapsed "
                    f"{format_value(s.collapsed)} ({n} probes)")
            return line + (f"; the bracket cannot be split at {PROBE_DIGITS} significant digits"
                           if s.outcome == "unsplittable" else "")
        if s.outcome == "same_class":
            return (f"{head}: both ends read {s.probes[0][1]} ({b.axis}={format_value(b.low)} and "
                    f"{format_value(b.high)}): no boundary in range, no midpoint run; widen low/high")
        if s.outcome == "stopped":
            return f"{head}: stopped after {n} probe(s): {s.message}"
        known = ", ".join(f"{format_value(v)} {c}" for v, c in s.probes) or "no probe read yet"
        after = b.max_probes - n - len(s.pending)
        return (f"{head}: {known}; next {', '.join(map(format_value, s.pending))}"
                + (f", then at most {after} more" if after > 0 else ""))

    def to_json(self) -> dict[str, Any]:
        """The search's entry in ``<out>/bisect/<sweep>.json``."""
        s = self.state
        return {"seed": self.search.seed, "fixed": dict(self.search.fixed), "outcome": s.outcome, "line": self.line(),
                "healthy": s.healthy, "collapsed": s.collapsed, "message": s.message,
                "probes": [{"value": v, "class": c, "run": self.search.run(v).label} for v, c in s.probes]}


@dataclass(frozen=True)
class Overall:
    """The bracket that holds every bracketed seed's boundary at one grid point.

    With collapse below the boundary (seed ``i`` collapsed at ``c_i``, healthy at ``h_i > c_i``),
    every seed is healthy at ``max h_i`` and collapsed at ``min c_i``; mirrored when collapse
    lies above.

    Attributes:
        point: The sweep and grid point (``Search.point``).
        fixed: The grid point's values.
        healthy: The value every bracketed seed reads healthy at (``None``: no common bracket).
        collapsed: The value every bracketed seed reads collapsed at.
        seeds: Seeds whose search ended in a bracket.
        of: Seeds searched.
        message: Why there is no common bracket.
    """

    point: str
    fixed: dict[str, Any]
    healthy: Number | None
    collapsed: Number | None
    seeds: tuple[int, ...]
    of: int
    message: str = ""

    def line(self, axis: str) -> str:
        """One line for stdout."""
        head = f"bisect {self.point} overall"
        if self.healthy is None:
            return f"{head}: {self.message}"
        return (f"{head}: last healthy {axis}={format_value(self.healthy)}, first collapsed "
                f"{format_value(self.collapsed)} for every seed ({len(self.seeds)} of {self.of} seeds bracketed)")

    def to_json(self) -> dict[str, Any]:
        """The grid point's entry under ``overall``."""
        return {"fixed": dict(self.fixed), "healthy": self.healthy, "collapsed": self.collapsed,
                "seeds": list(self.seeds), "of": self.of, "message": self.message}


def overall(results: list[SearchResult]) -> Overall:
    """The common bracket of the searches of one grid point (:class:`Overall`)."""
    first = results[0].search
    done = [r for r in results if r.state.outcome in ("bracketed", "unsplittable")]
    seeds = tuple(r.search.seed for r in done)
    if not done:
        return Overall(first.point, first.fixed, None, None, (), len(results), "no seed's search bracketed a boundary")
    below = {r.state.collapsed < r.state.healthy for r in done}  # type: ignore[operator]
    if len(below) > 1:
        return Overall(first.point, first.fixed, None, None, seeds, len(results),
                       "the seeds disagree on which end collapses; no common bracket")
    healthy = [r.state.healthy for r in done]
    collapsed = [r.state.collapsed for r in done]
    if below.pop():
        return Overall(first.point, first.fixed, max(healthy), min(collapsed), seeds, len(results))  # type: ignore[type-var]
    return Overall(first.point, first.fixed, min(healthy), max(collapsed), seeds, len(results))  # type: ignore[type-var]


def by_point(results: list[SearchResult]) -> dict[tuple[str, str], list[SearchResult]]:
    """Results grouped by ``(sweep, grid point)``, in search order."""
    groups: dict[tuple[str, str], list[SearchResult]] = {}
    for r in results:
        groups.setdefault((r.search.sweep.name, r.search.point), []).append(r)
    return groups


def report_lines(results: list[SearchResult], with_overall: bool = True) -> list[str]:
    """A line per search, then per grid point its overall bracket."""
    lines = []
    for group in by_point(results).values():
        lines += [r.line() for r in group]
        if with_overall:
            lines.append(overall(group).line(group[0].search.bisect.axis))
    return lines


def write_reports(layout: RunLayout, results: list[SearchResult]) -> list[str]:
    """Write ``<out>/bisect/<sweep>.json`` for each searched sweep; return the paths written."""
    written = []
    for name in dict.fromkeys(r.search.sweep.name for r in results):
        mine = [r for r in results if r.search.sweep.name == name]
        b = mine[0].search.bisect
        doc = {"sweep": name, "base": mine[0].search.sweep.base, "axis": b.axis, "low": b.low, "high": b.high,
               "scale": b.scale, "steps": b.steps, "floor": b.floor, "resolution": b.resolution,
               "classes": {HEALTHY: ["healthy"], COLLAPSED: ["dimensional", "complete"]},
               "searches": [r.to_json() for r in mine],
               "overall": [overall(group).to_json() for group in by_point(mine).values()]}
        path = layout.bisect(name)
        atomic_write_json(path, doc)
        written.append(str(path))
    return written


def plan_lines(cfg: RunConfig, layout: RunLayout, entry_of: EntryOf) -> list[str]:
    """``--dry-run``: per bisect sweep its budget, and per search what is read and what runs next."""
    reader, lines = ProbeReader(cfg, layout, entry_of), []
    searches = searches_of(cfg)
    for sweep in cfg.sweeps.values():
        b = sweep.bisect
        if b is None:
            continue
        mine = [s for s in searches if s.sweep is sweep]
        floor = f", midpoints from {format_value(b.floor)}" if b.floor is not None else ""
        lines.append(f"bisect {sweep.name}: {b.axis} from {format_value(b.low)} to {format_value(b.high)} "
                     f"({b.scale}{floor}, {b.steps} midpoints): {len(mine)} search(es), at most "
                     f"{len(mine) * b.max_probes} runs")
        lines += ["  " + SearchResult(s, reader.state(s)).line().removeprefix("bisect ") for s in mine]
    return lines
