"""Calling collapse before training ends, from the training monitor's label-free readings alone.

The monitor (:func:`sslbench.train.probe`) reads the projector outputs of a fixed
batch of train images in eval mode and labels them with the collapse protocol's
rule (:func:`sslbench.embedding_stats.collapse_status`). An :class:`EarlyCallRule`
turns that sequence of readings into a decision: *call* collapse at the first
reading where the last ``consecutive`` readings, all past ``after_fraction`` of
training, carry one of the ``statuses``. The same rule object is what training
applies to stop a run early (``TrainConfig.early_call_every``; recorded as
``train.status = "stopped_early"`` with the step, the share of training done, the
reading and the rule in its message, never silently) and what the atlas scores for precision,
recall and compute saved against each run's final status.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sslbench.errors import SslbenchError

STATUSES = ("healthy", "dimensional", "complete")


@dataclass(frozen=True)
class MonitorReading:
    """One reading of the training monitor.

    Attributes:
        step: Optimiser steps done when it was read.
        fraction: ``step`` over the run's total steps, in ``[0, 1]``.
        status: ``healthy``, ``dimensional`` or ``complete``.
        spread: ``tr S`` of the l2-normalised projector outputs.
        effective_dims: Their participation ratio.
        uniformity: Their uniformity (t = 2).
    """

    step: int
    fraction: float
    status: str
    spread: float
    effective_dims: float
    uniformity: float

    @classmethod
    def from_row(cls, row: dict[str, Any], total_steps: int) -> MonitorReading | None:
        """A reading from a monitor or training-log row (``step`` and ``probe_*`` keys); ``None`` if it has none."""
        status, step = row.get("probe_status"), row.get("step")
        if status not in STATUSES or not isinstance(step, int | float) or total_steps <= 0:
            return None
        numbers = [row.get(f"probe_{k}") for k in ("spread", "effective_dims", "uniformity")]
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers):
            return None
        return cls(int(step), min(1.0, int(step) / total_steps), str(status), *(float(v) for v in numbers))


@dataclass(frozen=True)
class EarlyCallRule:
    """Call collapse after ``consecutive`` readings in ``statuses``, all read past ``after_fraction`` of training.

    Attributes:
        statuses: The monitor statuses that count as collapse for this rule
            (``("complete",)``, or ``("complete", "dimensional")``).
        consecutive: How many readings in a row must carry one of them.
        after_fraction: Readings before this share of the run's steps are ignored
            (batch norm's running statistics and the first updates can read collapsed).
        stalled: When set, a collapse reading counts only if its spread and effective
            dimensions are at most ``stalled`` times the previous reading's: the outputs
            stopped spreading out. A randomly initialised network's outputs read
            collapsed and then spread out as a healthy run trains; a collapsing run's
            do not. ``None`` counts every collapse reading.
    """

    statuses: tuple[str, ...] = ("complete",)
    consecutive: int = 2
    after_fraction: float = 0.02
    stalled: float | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.statuses if s not in STATUSES or s == "healthy"]
        if not self.statuses or unknown:
            raise SslbenchError(f"early call: statuses must be 'complete' and/or 'dimensional', got {self.statuses}")
        if self.consecutive < 1:
            raise SslbenchError(f"early call: consecutive must be >= 1, got {self.consecutive}")
        if not 0.0 <= self.after_fraction < 1.0:
            raise SslbenchError(f"early call: after_fraction must be in [0, 1), got {self.after_fraction}")
        if self.stalled is not None and not (math.isfinite(self.stalled) and self.stalled >= 1.0):
            raise SslbenchError(f"early call: stalled must be a finite number >= 1, got {self.stalled}")

    def call(self, readings: Sequence[MonitorReading]) -> MonitorReading | None:
        """The reading at which the rule calls collapse, or ``None`` if it never does.

        Args:
            readings: The monitor's readings in step order.
        """
        run, previous = 0, None
        for r in readings:
            counts = r.status in self.statuses and self._stalled_since(previous, r)
            previous = r
            if r.fraction < self.after_fraction:
                continue
            run = run + 1 if counts else 0
            if run >= self.consecutive:
                return r
        return None

    def _stalled_since(self, previous: MonitorReading | None, r: MonitorReading) -> bool:
        """Whether ``r`` passes the :attr:`stalled` condition against the reading before it."""
        if self.stalled is None:
            return True
        if previous is None:
            return False
        return r.spread <= self.stalled * previous.spread and r.effective_dims <= self.stalled * previous.effective_dims

    def describe(self) -> str:
        """One line for logs and the training status message."""
        stalled = "" if self.stalled is None else f", not spreading out (x{self.stalled:g} at most)"
        return (f"{self.consecutive} consecutive monitor readings {'/'.join(self.statuses)}{stalled} "
                f"after {100 * self.after_fraction:g}% of training")


def settle_fraction(readings: Sequence[MonitorReading], final: str) -> float | None:
    """The share of training after which the monitor agrees with ``final`` and stays there.

    Args:
        readings: The monitor's readings in step order.
        final: The run's final status (the collapse protocol's, on the final encoder).

    Returns:
        The ``fraction`` of the first reading from which every later reading equals
        ``final``; ``None`` when the last reading disagrees (or there are none).
    """
    settled: float | None = None
    for r in readings:
        if r.status == final:
            settled = r.fraction if settled is None else settled
        else:
            settled = None
    return settled
