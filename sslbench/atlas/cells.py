"""Per-cell statistics: a sweep's point pooled over its seeds.

For each cell: the mean and 95% Student-t interval of every labelled main metric
(:func:`sslbench.stats.t_ci95`); the probabilities of complete, of dimensional and of
any collapse (complete or dimensional) over the seeds that have a final collapse
status, each with its exact Clopper-Pearson 95% interval
(:func:`sslbench.stats.clopper_pearson`); the monitor's collapse onset and the
share of training after which it settles on the final status.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sslbench.atlas.runs import AtlasRun, Coordinates
from sslbench.early_call import EarlyCallRule, MonitorReading, settle_fraction
from sslbench.stats import clopper_pearson, t_ci95

#: Monitor statuses that count as collapse (of either kind).
COLLAPSED = ("dimensional", "complete")
#: Readings before this share of training are the monitor's warm-up (the rule's default):
#: eval-mode batch norm reads collapsed in the first steps of healthy runs too.
WARMUP_FRACTION = EarlyCallRule().after_fraction


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds and its 95% t half-width (NaN for one seed).

    Attributes:
        mean: The mean.
        ci95: The half-width.
        n: The number of seeds.
    """

    mean: float
    ci95: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Estimate:
        """The estimate of ``(n,)`` values, ``n >= 1``."""
        return cls(float(np.mean(values)), t_ci95(values), len(values))


@dataclass(frozen=True)
class Proportion:
    """A proportion over seeds with its exact Clopper-Pearson 95% interval.

    Attributes:
        k: Seeds with the outcome.
        n: Seeds with a final status.
        lo: Lower bound.
        hi: Upper bound.
    """

    k: int
    n: int
    lo: float
    hi: float

    @property
    def p(self) -> float:
        """``k / n``."""
        return self.k / self.n

    @classmethod
    def of(cls, k: int, n: int) -> Proportion:
        """``k`` of ``n`` with its interval."""
        lo, hi = clopper_pearson(k, n)
        return cls(k, n, lo, hi)


@dataclass(frozen=True)
class Onset:
    """When the monitor started reading collapse for good, over a cell's seeds.

    A run's onset is the first reading past the warm-up from which every later reading
    is ``dimensional`` or ``complete``; a run whose last reading is healthy has none.

    Attributes:
        n_monitored: Seeds with monitor readings.
        n_onset: Of those, seeds with an onset.
        fraction: Median onset as a share of training (``None`` without any).
        epoch: The same in epochs (``fraction`` times the planned epochs).
    """

    n_monitored: int
    n_onset: int
    fraction: float | None
    epoch: float | None


@dataclass(frozen=True)
class Settle:
    """When the monitor settled on the final status (:func:`sslbench.early_call.settle_fraction`).

    Attributes:
        n: Seeds with readings and a final status.
        n_settled: Of those, seeds whose last reading agrees with the final status.
        fraction: Median settle fraction over the settled seeds (``None`` without any).
    """

    n: int
    n_settled: int
    fraction: float | None


@dataclass(frozen=True)
class CellStats:
    """One cell: a sweep's point pooled over seeds.

    Attributes:
        sweep: The sweep.
        base: The method family.
        coordinates: ``((axis, value), ...)``.
        seeds: Its seeds.
        metrics: Labelled protocol -> its main metric's estimate.
        samples: Labelled protocol -> its main metric per seed (for Welch differences).
        readings: Label-free reading -> its mean over the seeds that have it.
        complete: P(complete collapse), ``None`` without final statuses.
        dimensional: P(dimensional collapse).
        collapse: P(complete or dimensional).
        onset: The monitor's collapse onset.
        settle: When the monitor settled on the final status.
    """

    sweep: str
    base: str
    coordinates: Coordinates
    seeds: tuple[int, ...]
    metrics: dict[str, Estimate]
    samples: dict[str, tuple[float, ...]]
    readings: dict[str, float]
    complete: Proportion | None
    dimensional: Proportion | None
    collapse: Proportion | None
    onset: Onset
    settle: Settle

    @property
    def name(self) -> str:
        """``sweep(axis=value, ...)`` for tables."""
        return f"{self.sweep}(" + ", ".join(f"{a}={v}" for a, v in self.coordinates) + ")"

    def value(self, axis: str) -> object:
        """Its coordinate on ``axis``."""
        return dict(self.coordinates)[axis]


def onset_fraction(readings: Sequence[MonitorReading], warmup: float = WARMUP_FRACTION) -> float | None:
    """The fraction of the first reading past ``warmup`` from which every reading is a collapse one."""
    onset = None
    for r in readings:
        if r.fraction < warmup:
            continue
        if r.status in COLLAPSED:
            onset = r.fraction if onset is None else onset
        else:
            onset = None
    return onset


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _onset(runs: list[AtlasRun]) -> Onset:
    monitored = [r for r in runs if r.monitor]
    onsets = [(f, r.epochs) for r in monitored if (f := onset_fraction(r.monitor)) is not None]
    fraction = _median([f for f, _ in onsets])
    epochs = [f * e for f, e in onsets if e is not None]
    return Onset(len(monitored), len(onsets), fraction, _median(epochs) if len(epochs) == len(onsets) else None)


def _settle(runs: list[AtlasRun]) -> Settle:
    both = [r for r in runs if r.monitor and r.status is not None]
    settled = [f for r in both if (f := settle_fraction(r.monitor, r.status)) is not None]
    return Settle(len(both), len(settled), _median(settled))


def _reading_means(runs: list[AtlasRun]) -> dict[str, float]:
    names = dict.fromkeys(k for r in runs for k in r.readings)
    return {k: float(np.mean([r.readings[k] for r in runs if k in r.readings])) for k in names}


def cell_stats(runs: list[AtlasRun], metrics: Iterable[str]) -> CellStats:
    """The statistics of one cell's runs (all of one sweep and point)."""
    first = runs[0]
    values = {m: [r.metrics[m] for r in runs if m in r.metrics] for m in metrics}
    statuses = [r.status for r in runs if r.status is not None]
    n = len(statuses)

    def share(kinds: tuple[str, ...]) -> Proportion | None:
        return Proportion.of(sum(s in kinds for s in statuses), n) if n else None

    return CellStats(first.sweep, first.base, first.coordinates, tuple(r.seed for r in runs),
                     {m: Estimate.of(v) for m, v in values.items() if v},
                     {m: tuple(v) for m, v in values.items() if v}, _reading_means(runs), share(("complete",)),
                     share(("dimensional",)), share(COLLAPSED), _onset(runs), _settle(runs))


def metric_names(runs: Iterable[AtlasRun]) -> list[str]:
    """The labelled protocols any run measured, sorted."""
    return sorted({m for r in runs for m in r.metrics})


def all_cells(runs: Sequence[AtlasRun]) -> list[CellStats]:
    """Every cell of ``runs``, in run order."""
    by_cell: dict[tuple[str, Coordinates], list[AtlasRun]] = {}
    for r in runs:
        by_cell.setdefault(r.cell, []).append(r)
    names = metric_names(runs)
    return [cell_stats(rs, names) for rs in by_cell.values()]


def is_nan(x: float) -> bool:
    """Whether ``x`` is NaN (an interval of one seed)."""
    return isinstance(x, float) and math.isnan(x)
