"""``metrics.jsonl`` and ``monitor.jsonl``: the training logs, each with one reader and one writer.

One JSON object per line and epoch: ``epoch``, ``step``, ``lr``, ``loss`` and its
named terms, the std of the l2-normalised embeddings (``std_l2``, and
``std_l2_ref = 1/sqrt(D)``), the training-time monitor's readings (``probe_*``,
:func:`sslbench.train.probe`), ``images_per_s``, ``data_share`` and ``epoch_s``.

Lines are appended atomically (:func:`sslbench.io.atomic_append_line`), but a
file written by an older version or damaged by hand may hold a cut line, bytes
that are not UTF-8 or a line that is not an object: the reader skips those, and
a resume rewrites the file to the checkpointed epochs.

``monitor.jsonl`` holds the collapse monitor read every ``monitor_every``
optimiser steps (``sslbench run --monitor-every``): one object per reading with
``step``, ``epoch`` (epochs done, a float), ``total_steps`` and the ``probe_*``
readings. It follows the same rules (atomic appends, a resume keeps only the
readings up to the checkpointed step), and :func:`run_readings` reads it, or the
per-epoch rows of ``metrics.jsonl`` for a run without it.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sslbench.early_call import MonitorReading
from sslbench.io import atomic_append_line, atomic_write_text
from sslbench.layout import RunPaths


@dataclass(frozen=True)
class EpochRow:
    """One epoch of the training log.

    Attributes:
        epoch: 1-based epoch.
        step: Optimiser steps done at its end.
        epoch_s: Wall-clock seconds of the epoch.
        probe_status: The monitor's collapse status (``healthy``, ``dimensional``,
            ``complete``), or ``None`` when the row has none.
        numbers: Every numeric column by name (loss, terms, lr, probe readings, ...).
    """

    epoch: int
    step: int
    epoch_s: float = 0.0
    probe_status: str | None = None
    numbers: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> EpochRow | None:
        """A row from one parsed line; ``None`` when it lacks an integer ``epoch``."""
        epoch = doc.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            return None
        numbers = {k: float(v) for k, v in doc.items() if isinstance(v, int | float) and not isinstance(v, bool)
                   and not (isinstance(v, int) and abs(v) > sys.float_info.max)}  # past float range: no reading
        step = doc.get("step", 0)
        status = doc.get("probe_status")
        return cls(epoch, int(step) if isinstance(step, int | float) and math.isfinite(step) else 0,
                   numbers.get("epoch_s", 0.0), status if isinstance(status, str) else None, numbers)


def _objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(line, parsed object)`` of every line of ``path`` that is a JSON object; nothing when unreadable."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):  # a cut line, or one nested past the parser's depth
            continue
        if isinstance(doc, dict):
            yield line, doc


def _keep_lines(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite ``path`` (atomically) with only its object lines that ``keep`` accepts."""
    if path.exists():
        lines = [line for line, doc in _objects(path) if keep(doc)]
        atomic_write_text(path, "".join(ln + "\n" for ln in lines))


def read_log(path: Path) -> list[EpochRow]:
    """The rows of a training log, in file order; ``[]`` when it is absent or unreadable.

    Cut lines, non-UTF-8 bytes and lines that are not objects with an ``epoch`` are skipped.
    """
    rows = (EpochRow.from_json(doc) for _, doc in _objects(path))
    return [row for row in rows if row is not None]


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row (a flat JSON object: an epoch's, or a monitor reading) atomically."""
    atomic_append_line(path, json.dumps(row))


def truncate_log(path: Path, upto_epoch: int) -> None:
    """Keep only the lines of epochs ``<= upto_epoch`` (the checkpointed ones), so a resume
    appends no duplicates; unreadable lines are dropped."""

    def keep(doc: dict[str, Any]) -> bool:
        row = EpochRow.from_json(doc)
        return row is not None and row.epoch <= upto_epoch

    _keep_lines(path, keep)


def _step_of(doc: dict[str, Any]) -> int | None:
    step = doc.get("step")
    return int(step) if isinstance(step, int) and not isinstance(step, bool) else None


def truncate_monitor(path: Path, upto_step: int) -> None:
    """Keep only the monitor readings of steps ``<= upto_step`` (the checkpointed ones), so a
    resumed run's ``monitor.jsonl`` equals the uninterrupted run's; unreadable lines are dropped."""

    def keep(doc: dict[str, Any]) -> bool:
        step = _step_of(doc)
        return step is not None and step <= upto_step

    _keep_lines(path, keep)


def read_monitor(path: Path) -> list[MonitorReading]:
    """The readings of a ``monitor.jsonl``, in file order; ``[]`` when it is absent or unreadable.

    Cut lines, non-UTF-8 bytes and lines without a step, a positive ``total_steps`` and
    finite ``probe_*`` readings are skipped.
    """
    out = []
    for _, doc in _objects(path):
        total = doc.get("total_steps")
        reading = MonitorReading.from_row(doc, total) if isinstance(total, int) and total > 0 else None
        if reading is not None:
            out.append(reading)
    return out


def run_readings(run: RunPaths, total_steps: int | None = None) -> list[MonitorReading]:
    """The collapse monitor's readings of a run: ``monitor.jsonl``, else the per-epoch rows of ``metrics.jsonl``.

    Args:
        run: The run directory.
        total_steps: The run's optimiser steps, for the per-epoch rows (which do not
            record it); by default ``train.epochs`` of its ``config.json`` times the
            steps per epoch its rows show.

    Returns:
        The readings in step order; ``[]`` when the run has neither log (or no total is known).
    """
    if run.monitor_log.exists():
        return read_monitor(run.monitor_log)
    docs = [doc for _, doc in _objects(run.metrics_log) if EpochRow.from_json(doc) is not None]
    total = total_steps or _total_steps(run, docs)
    readings = (MonitorReading.from_row(doc, total) for doc in docs) if total else ()
    return [r for r in readings if r is not None]


def _total_steps(run: RunPaths, docs: list[dict[str, Any]]) -> int | None:
    """``train.epochs`` of the run's identity times the steps per epoch of its first row, if both are known."""
    try:
        epochs = json.loads(run.config.read_text())["train"]["epochs"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    first = next((d for d in docs if _step_of(d) and d.get("epoch")), None)
    if first is None or not isinstance(epochs, int):
        return None
    return epochs * (_step_of(first) // int(first["epoch"]))


def train_seconds(path: Path) -> float:
    """Seconds of pretraining recorded in a training log (the sum of ``epoch_s``)."""
    return sum(row.epoch_s for row in read_log(path))
