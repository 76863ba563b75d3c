"""Adaptive boundary search: bisect one knob between a healthy and a collapsed value, per seed.

A dense grid spends most of its runs far from where training turns from healthy
to collapsed. Bisection spends them at the boundary: run both ends of a range,
and if they read different collapse classes, probe the midpoint, keep the half
whose ends still differ, and repeat. After ``steps`` midpoints the boundary lies
in a bracket ``2**steps`` times narrower than the range (linear scale; on a log
scale, in ratio), for ``2 + steps`` runs, where a grid of that resolution costs
``2**steps + 1``. It assumes one boundary in the range (a monotone response); a
non-monotone one still ends in a bracket whose ends differ, around one of its changes.

The collapse class of a probe is the ``collapse`` protocol's ``status``
(``protocols/collapse.py``, :data:`sslbench.embedding_stats.COLLAPSE_STATUSES`): ``complete`` and ``dimensional`` read
``collapsed``, ``healthy`` reads ``healthy``.

Probes are derived from earlier readings alone (:func:`walk`), so a rerun of the
same search names the same probes and reuses every finished one. Midpoints are
rounded to :data:`PROBE_DIGITS` significant digits so that run names stay short;
a bracket that cannot be split at that precision (or, on an integer field, has no
integer inside) ends its search early, ``unsplittable``.

This module is pure (no runs, no files); :mod:`sslbench.bisect_sweep` runs the probes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Scale = Literal["linear", "log"]
SCALES: tuple[Scale, ...] = ("linear", "log")
HEALTHY, COLLAPSED = "healthy", "collapsed"
#: The collapse protocol's status -> the class a probe reads as.
CLASS_OF_STATUS = {"healthy": HEALTHY, "dimensional": COLLAPSED, "complete": COLLAPSED}
#: Significant digits of a midpoint: ``0.7906``, not ``0.7905694150420949``, in run names.
PROBE_DIGITS = 4
#: A log-scale search from 0 takes its midpoints between ``high * LOG_FLOOR_FRACTION`` and
#: ``high`` (three decades), since the geometric mean of 0 and anything is 0.
LOG_FLOOR_FRACTION = 1e-3
#: Most midpoints one search may ask for: past this, 4 significant digits cannot split a bracket anyway.
MAX_STEPS = 30

Outcome = Literal["searching", "bracketed", "same_class", "unsplittable", "stopped"]
Number = int | float


@dataclass(frozen=True)
class Bisect:
    """A declared boundary search (``bisect = {...}`` in a ``[sweeps.<name>]`` table).

    Attributes:
        axis: ``<section>.<field>`` of a numeric field (:data:`sslbench.config.AXIS_SECTIONS`).
        low: The low end of the range (run as is).
        high: The high end (run as is).
        scale: ``linear`` (arithmetic midpoints) or ``log`` (geometric midpoints).
        steps: Midpoint probes after the two ends: the run budget of a search is ``2 + steps``.
        floor: On a log scale from ``low = 0``, the positive value the midpoints take as the
            low end (default ``high * LOG_FLOOR_FRACTION``); ``None`` otherwise.
        integer: Whether the field is an integer (midpoints rounded to integers).
        resolution: The bracket width that set ``steps``, when it was given instead of
            ``steps`` (linear: ``high - low`` per bracket; log: the ratio of its ends).
    """

    axis: str
    low: Number
    high: Number
    scale: Scale = "linear"
    steps: int = 5
    floor: Number | None = None
    integer: bool = False
    resolution: float | None = None

    @property
    def max_probes(self) -> int:
        """Runs of one search at most: both ends and ``steps`` midpoints."""
        return 2 + self.steps

    def midpoint(self, a: Number, b: Number) -> Number | None:
        """The probe between ``a < b``: arithmetic (linear) or geometric (log, ``0`` read as ``floor``),
        rounded; ``None`` when no rounded value lies strictly between them."""
        if self.scale == "log":
            m = math.sqrt((a if a > 0 else self.floor or 0.0) * b)
        else:
            m = (a + b) / 2
        rounded: Number = round(m) if self.integer else float(f"{m:.{PROBE_DIGITS}g}")
        return rounded if a < rounded < b else None


def steps_for(resolution: float, low: float, high: float, scale: Scale, floor: float | None) -> int:
    """Midpoints that narrow ``[low, high]`` to ``resolution``: ``ceil(log2(range / resolution))``, at least 1.

    Linear: ``range = high - low`` and ``resolution`` a width. Log: the range and
    ``resolution`` are ratios (``high / low``, or ``high / floor`` from 0), halved in
    log space per step, so ``steps = ceil(log2(ln(high / low) / ln(resolution)))``.
    """
    if scale == "log":
        ratio = math.log(high / (low if low > 0 else floor or 1.0)) / math.log(resolution)
    else:
        ratio = (high - low) / resolution
    return max(1, math.ceil(math.log2(ratio) - 1e-12)) if ratio > 1 else 1


def classify(status: object) -> str | None:
    """The class a collapse ``status`` reads as (``healthy`` / ``collapsed``), or ``None`` for another value."""
    return CLASS_OF_STATUS.get(status) if isinstance(status, str) else None


@dataclass(frozen=True)
class SearchState:
    """Where one search stands, given the readings so far.

    Attributes:
        outcome: ``searching`` (``pending`` says what to run next), ``bracketed`` (the budget
            is spent), ``same_class`` (both ends read one class: no boundary in range),
            ``unsplittable`` (the bracket cannot be split at :data:`PROBE_DIGITS`) or
            ``stopped`` (a probe gave no class; ``message`` says why).
        probes: ``(value, class)`` of every probe read, in the order the walk read them.
        pending: The probes to run next (both ends first, then one midpoint at a time).
        healthy: The healthy end of the bracket (the last healthy value).
        collapsed: Its collapsed end (the first collapsed value).
        message: Why a ``stopped`` search stopped.
    """

    outcome: Outcome
    probes: tuple[tuple[Number, str], ...] = ()
    pending: tuple[Number, ...] = ()
    healthy: Number | None = None
    collapsed: Number | None = None
    message: str = ""


def walk(b: Bisect, read: Callable[[Number], str | None]) -> SearchState:
    """Replay a search from its readings: the probes it has read and what it runs next.

    Args:
        b: The search.
        read: A probe's reading: ``healthy``, ``collapsed``, ``None`` when it has not run,
            or any other text saying why it gave no class (it stops the search).

    Returns:
        The state; the same readings always give the same state (and the same next probes).
    """
    lo, hi = b.low, b.high
    ends = (read(lo), read(hi))
    pending = tuple(v for v, r in zip((lo, hi), ends) if r is None)
    if pending:
        known = tuple((v, r) for v, r in zip((lo, hi), ends) if r is not None)
        return _state_or_stop("searching", known, pending)
    probes = ((lo, ends[0]), (hi, ends[1]))
    if any(r not in (HEALTHY, COLLAPSED) for _, r in probes):
        return _state_or_stop("searching", probes, ())
    if ends[0] == ends[1]:
        return SearchState("same_class", probes)
    for _ in range(b.steps):
        m = b.midpoint(lo, hi)
        if m is None:
            return _bracket("unsplittable", probes, lo, hi, ends[0])
        r = read(m)
        if r is None:
            return SearchState("searching", probes, (m,))
        probes += ((m, r),)
        if r not in (HEALTHY, COLLAPSED):
            return _state_or_stop("searching", probes, ())
        lo, hi = (m, hi) if r == ends[0] else (lo, m)
    return _bracket("bracketed", probes, lo, hi, ends[0])


def _state_or_stop(outcome: Outcome, probes: tuple[tuple[Number, str], ...], pending: tuple[Number, ...]) -> SearchState:
    """``outcome``, unless a probe gave no class: then ``stopped``, naming it and why (``probes`` keeps the classes)."""
    bad = next(((v, r) for v, r in probes if r not in (HEALTHY, COLLAPSED)), None)
    if bad is None:
        return SearchState(outcome, probes, pending)
    read = tuple((v, r) for v, r in probes if r in (HEALTHY, COLLAPSED))
    return SearchState("stopped", read, (), message=f"the probe at {bad[0]!r} {bad[1]}")


def _bracket(outcome: Outcome, probes: tuple[tuple[Number, str], ...], lo: Number, hi: Number, low_class: str) -> SearchState:
    healthy, collapsed = (lo, hi) if low_class == HEALTHY else (hi, lo)
    return SearchState(outcome, probes, (), healthy, collapsed)
