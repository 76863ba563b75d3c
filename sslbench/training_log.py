"""``metrics.jsonl``: the per-epoch training log, with one reader and one writer.

One JSON object per line and epoch: ``epoch``, ``step``, ``lr``, ``loss`` and its
named terms, the std of the l2-normalised embeddings (``std_l2``, and
``std_l2_ref = 1/sqrt(D)``), the training-time monitor's readings (``probe_*``,
:func:`sslbench.train.probe`), ``images_per_s``, ``data_share`` and ``epoch_s``.

Lines are appended atomically (:func:`sslbench.io.atomic_append_line`), but a
file written by an older version or damaged by hand may hold a cut line, bytes
that are not UTF-8 or a line that is not an object: the reader skips those, and
a resume rewrites the file to the checkpointed epochs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslbench.io import atomic_append_line, atomic_write_text


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
        numbers = {k: float(v) for k, v in doc.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        step = doc.get("step", 0)
        status = doc.get("probe_status")
        return cls(epoch, int(step) if isinstance(step, int | float) and math.isfinite(step) else 0,
                   numbers.get("epoch_s", 0.0), status if isinstance(status, str) else None, numbers)


def read_log(path: Path) -> list[EpochRow]:
    """The rows of a training log, in file order; ``[]`` when it is absent or unreadable.

    Cut lines, non-UTF-8 bytes and lines that are not objects with an ``epoch`` are skipped.
    """
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        row = EpochRow.from_json(doc) if isinstance(doc, dict) else None
        if row is not None:
            rows.append(row)
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one epoch's row (a flat JSON object) atomically."""
    atomic_append_line(path, json.dumps(row))


def truncate_log(path: Path, upto_epoch: int) -> None:
    """Keep only the lines of epochs ``<= upto_epoch`` (the checkpointed ones), so a resume
    appends no duplicates; unreadable lines are dropped."""
    if not path.exists():
        return
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return
    keep = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        row = EpochRow.from_json(doc) if isinstance(doc, dict) else None
        if row is not None and row.epoch <= upto_epoch:
            keep.append(line)
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def train_seconds(path: Path) -> float:
    """Seconds of pretraining recorded in a training log (the sum of ``epoch_s``)."""
    return sum(row.epoch_s for row in read_log(path))
