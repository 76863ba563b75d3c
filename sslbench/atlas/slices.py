"""1-D slices of a grid: one axis varying, the others fixed; the dose-response, its monotonicity
and the collapse boundary.

**Monotone.** Along a slice (cells sorted by the varying knob) each step between
neighbouring cells is *up* or *down* when the 95% Welch interval of the
difference of their means (:func:`sslbench.stats.welch_ci95`) excludes 0, else
*flat*. The curve is ``increasing`` (no step down, at least one up),
``decreasing`` (the reverse), ``flat`` (every step flat) or ``non-monotone``
(steps both up and down); ``needs 2+ seeds`` when some step has no interval.

**Boundary.** Where P(collapse) (complete or dimensional, over seeds) crosses
1/2: between two cells whose point estimates lie on opposite sides of 1/2
(cells at exactly 1/2 are skipped, so the bracket spans them). The crossing's
knob value is interpolated linearly in P, on a log axis when every knob value of
the slice is positive and they span a factor of 10 or more. A crossing is
``resolved`` when the Clopper-Pearson intervals of both bracketing cells exclude
1/2. No crossing: no boundary, and the slice says on which side it lies.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sslbench.atlas.cells import CellStats
from sslbench.atlas.runs import Coordinates
from sslbench.stats import welch_ci95


@dataclass(frozen=True)
class Grid:
    """Cells that share axes: one sweep, or a family's sweeps pooled (:mod:`sslbench.atlas.interaction`).

    Attributes:
        name: The sweep, or ``<base>:pooled``.
        base: The method family.
        axes: Its axes; every cell has a value on each.
        cells: The cells.
        origins: For a pooled grid, each cell's coordinates -> the sweeps its runs came from.
    """

    name: str
    base: str
    axes: tuple[str, ...]
    cells: tuple[CellStats, ...]
    origins: dict[Coordinates, tuple[str, ...]] = field(default_factory=dict, compare=False, hash=False)

    def spans_sweeps(self, cells: Sequence[CellStats]) -> bool:
        """Whether ``cells`` (of this pooled grid) came from two or more sweeps."""
        return len({s for c in cells for s in self.origins.get(c.coordinates, ())}) > 1


@dataclass(frozen=True)
class Step:
    """The difference of one metric between neighbouring cells of a slice.

    Attributes:
        lo: The smaller knob value.
        hi: The larger one.
        delta: ``mean(hi) - mean(lo)``.
        ci95: Its Welch half-width (NaN with one seed on a side).
        direction: ``up``, ``down``, ``flat`` or ``n/a`` (no interval).
    """

    lo: Any
    hi: Any
    delta: float
    ci95: float
    direction: str


@dataclass(frozen=True)
class Trend:
    """Whether one metric's dose-response along a slice is monotone.

    Attributes:
        metric: The labelled protocol.
        verdict: ``increasing``, ``decreasing``, ``flat``, ``non-monotone`` or ``needs 2+ seeds``.
        steps: The steps between neighbouring cells.
    """

    metric: str
    verdict: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Crossing:
    """Where P(collapse) crosses 1/2, bracketed by two cells.

    Attributes:
        below: Knob value of the bracketing cell with the smaller value.
        above: Knob value of the one with the larger value.
        p_below: P(collapse) at ``below``.
        p_above: P(collapse) at ``above``.
        estimate: The interpolated knob value at P = 1/2.
        direction: ``rising`` (collapse grows with the knob) or ``falling``.
        resolved: Whether both cells' Clopper-Pearson intervals exclude 1/2.
    """

    below: Any
    above: Any
    p_below: float
    p_above: float
    estimate: float | None
    direction: str
    resolved: bool


@dataclass(frozen=True)
class Boundary:
    """The collapse boundary of a slice.

    Attributes:
        crossings: Every crossing of 1/2, in knob order (none: no boundary).
        summary: One line: the bracket, or why there is none.
    """

    crossings: tuple[Crossing, ...]
    summary: str


@dataclass(frozen=True)
class Slice:
    """One axis of a grid varying, the others fixed.

    Attributes:
        grid: The grid's name.
        base: The method family.
        axis: The varying axis.
        fixed: ``((axis, value), ...)`` of the other axes.
        cells: Its cells in knob order (two or more).
        trends: Per labelled metric, its monotonicity.
        boundary: Where P(collapse) crosses 1/2.
    """

    grid: str
    base: str
    axis: str
    fixed: Coordinates
    cells: tuple[CellStats, ...]
    trends: tuple[Trend, ...]
    boundary: Boundary

    @property
    def values(self) -> list[Any]:
        """The knob values in order."""
        return [c.value(self.axis) for c in self.cells]

    @property
    def where(self) -> str:
        """``grid: axis at a=1, b=2`` for tables and messages."""
        at = ", ".join(f"{a}={v}" for a, v in self.fixed)
        return f"{self.grid}: {self.axis}" + (f" at {at}" if at else "")


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order, anything else after them as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 0, value
    return 1, str(value)


def step(a: CellStats, b: CellStats, metric: str, axis: str) -> Step | None:
    """The difference of ``metric`` from cell ``a`` to cell ``b``, ``None`` when one lacks it."""
    if metric not in a.samples or metric not in b.samples:
        return None
    x, y = a.samples[metric], b.samples[metric]
    delta, ci = sum(y) / len(y) - sum(x) / len(x), welch_ci95(y, x)
    direction = "n/a" if math.isnan(ci) else "flat" if abs(delta) <= ci else ("up" if delta > 0 else "down")
    return Step(a.value(axis), b.value(axis), delta, ci, direction)


def monotone(steps: Sequence[Step]) -> str:
    """The verdict of a sequence of steps (module docstring)."""
    kinds = {s.direction for s in steps}
    if "up" in kinds and "down" in kinds:
        return "non-monotone"  # significant steps both ways: no missing interval can undo that
    if "n/a" in kinds or not steps:
        return "needs 2+ seeds"
    if kinds == {"flat"}:
        return "flat"
    return "increasing" if "up" in kinds else "decreasing"


def _interpolate(x1: Any, x2: Any, p1: float, p2: float, log: bool) -> float | None:
    if not all(isinstance(v, int | float) for v in (x1, x2)):
        return None
    t = (0.5 - p1) / (p2 - p1)
    if log:
        return float(10 ** (math.log10(x1) + t * (math.log10(x2) - math.log10(x1))))
    return float(x1 + t * (x2 - x1))


def _log_axis(values: list[Any]) -> bool:
    nums = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return len(nums) == len(values) and min(nums) > 0 and max(nums) / min(nums) >= 10


def boundary(cells: Sequence[CellStats], axis: str) -> Boundary:
    """Where P(collapse) crosses 1/2 along ``cells`` (in knob order; module docstring)."""
    known = [c for c in cells if c.collapse is not None]
    if len(known) < 2:
        return Boundary((), "no boundary: fewer than 2 cells with a final collapse status")
    sided = [c for c in known if c.collapse.p != 0.5]
    log = _log_axis([c.value(axis) for c in cells])
    crossings = []
    for a, b in itertools.pairwise(sided):
        pa, pb = a.collapse.p, b.collapse.p
        if (pa < 0.5) != (pb < 0.5):
            resolved = (a.collapse.hi < 0.5 < b.collapse.lo) if pa < pb else (b.collapse.hi < 0.5 < a.collapse.lo)
            crossings.append(Crossing(a.value(axis), b.value(axis), pa, pb,
                                      _interpolate(a.value(axis), b.value(axis), pa, pb, log),
                                      "rising" if pb > pa else "falling", resolved))
    if crossings:
        parts = [f"between {c.below} (P={c.p_below:.2f}) and {c.above} (P={c.p_above:.2f})"
                 + (f", ~{c.estimate:.3g}" if c.estimate is not None else "")
                 + ("" if c.resolved else ", unresolved") for c in crossings]
        return Boundary(tuple(crossings), "; ".join(parts))
    if not sided:
        return Boundary((), "no boundary: P(collapse) = 1/2 in every cell")
    side = "above" if sided[0].collapse.p > 0.5 else "below"
    return Boundary((), f"no crossing: P(collapse) stays {side} 1/2 over the slice")


def slices(grid: Grid) -> tuple[list[Slice], list[str]]:
    """Every 1-D slice of ``grid`` with 2+ cells, and one message per slice with fewer.

    Returns:
        ``(slices, messages)``; the messages name the slices left out.
    """
    out, messages = [], []
    metrics = sorted({m for c in grid.cells for m in c.metrics})
    for axis in grid.axes:
        groups: dict[Coordinates, list[CellStats]] = {}
        for c in grid.cells:
            fixed = tuple((a, v) for a, v in c.coordinates if a != axis)
            groups.setdefault(fixed, []).append(c)
        for fixed, cells in groups.items():
            cells = sorted(cells, key=lambda c: sort_key(c.value(axis)))
            if len(cells) < 2:
                at = ", ".join(f"{a}={v}" for a, v in fixed)
                messages.append(f"{grid.name}: {axis}{' at ' + at if at else ''} has {len(cells)} cell "
                                f"({axis}={cells[0].value(axis)}): no curve, no boundary")
                continue
            trends = []
            for m in metrics:
                steps = [s for a, b in itertools.pairwise(cells) if (s := step(a, b, m, axis)) is not None]
                if steps:
                    trends.append(Trend(m, monotone(steps), tuple(steps)))
            out.append(Slice(grid.name, grid.base, axis, fixed, tuple(cells), tuple(trends), boundary(cells, axis)))
    return out, messages
