"""The atlas's input: every sweep run of the given output directories as one typed :class:`AtlasRun`.

A run is one ``(cell, seed)`` directory: its result records (one per protocol) are
read into the labelled protocols' main metrics (``knn``, ``linear``: the metric is
named by its protocol), the collapse protocol's final status and label-free
readings, and the training-time monitor's series (:func:`sslbench.training_log.run_readings`).
Runs without sweep coordinates (plain methods, floors) are left out and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslbench.early_call import STATUSES, MonitorReading
from sslbench.errors import SslbenchError
from sslbench.layout import RunLayout
from sslbench.method import TrainConfig, ViewConfig
from sslbench.records import ResultRecord, finite
from sslbench.registry import registry
from sslbench.store import load_records
from sslbench.training_log import run_readings

#: The protocol whose ``status`` label is a run's final collapse status.
COLLAPSE_PROTOCOL = "collapse"
#: Std-based readings the collapse protocol records but does not declare as readings; the atlas
#: reads them too, because they are the readings a variance term optimises (:mod:`sslbench.atlas.agreement`).
EXTRA_READINGS = ("std_l2", "z_std_l2")
#: Config keys that name a run rather than its recipe.
NOT_RECIPE = ("method", "seed", "sweep")

Coordinates = tuple[tuple[str, Any], ...]


def hashable(value: Any) -> Any:
    """A JSON value as a hashable one (lists become tuples), so coordinates can key cells."""
    if isinstance(value, list | tuple):
        return tuple(hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, hashable(v)) for k, v in value.items()))
    return value


@dataclass(frozen=True)
class AtlasRun:
    """One sweep run, as the atlas reads it.

    Attributes:
        label: ``<cell>/seed<k>``.
        sweep: The sweep's name.
        base: The method family (the sweep's base method).
        coordinates: ``((axis, value), ...)`` in the sweep's axis order.
        seed: The seed.
        config: The run's identity (its resolved recipe, ``config.json``).
        metrics: Labelled protocol -> its main metric (``{"knn": 0.72, "linear": 0.78}``).
        status: The collapse protocol's status of the final encoder (``None`` without that result).
        readings: Label-free reading -> value, from the collapse protocol.
        train_status: ``finished``, ``collapsed`` or ``diverged``.
        epochs: Planned epochs (``train.epochs`` of the identity).
        total_steps: Planned optimiser steps (from the monitor), if known.
        steps_done: Steps trained (the stopping step of a run stopped early, else ``total_steps``).
        monitor: The monitor's readings in step order.
    """

    label: str
    sweep: str
    base: str
    coordinates: Coordinates
    seed: int
    config: dict[str, Any] = field(compare=False, hash=False)
    metrics: dict[str, float] = field(compare=False, hash=False)
    status: str | None = None
    readings: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    train_status: str = "finished"
    epochs: int | None = None
    total_steps: int | None = None
    steps_done: int | None = None
    monitor: tuple[MonitorReading, ...] = ()

    @property
    def cell(self) -> tuple[str, Coordinates]:
        """The key of its cell: ``(sweep, coordinates)``."""
        return self.sweep, self.coordinates

    def value(self, axis: str) -> Any:
        """The run's value of ``<section>.<field>``, read from its resolved recipe (hashable).

        A ``views`` field reads the same value from every view (a tuple when the views differ).
        """
        section, _, name = axis.partition(".")
        block = self.config.get(section)
        if isinstance(block, list):
            values = [hashable(v.get(name, self._default(section, name))) if isinstance(v, dict) else None
                      for v in block]
            return values[0] if len(set(values)) == 1 else tuple(values)
        return hashable(block.get(name, self._default(section, name))) if isinstance(block, dict) else None

    def _default(self, section: str, name: str) -> Any:
        """The default of a field a run's identity leaves out (a field added after runs were
        recorded stays out of the identity at its default), so that it reads as its value."""
        try:
            cfg = {"train": TrainConfig, "views": ViewConfig}.get(section)
            cfg = cfg() if cfg is not None else getattr(registry("methods").get(self.base), section, None)
        except SslbenchError:  # a base that is no longer registered: the value stays unknown
            return None
        return getattr(cfg, name, None)

    def recipe_without(self, axes: Iterable[str]) -> str:
        """Its recipe with ``axes`` and the run's names taken out, as canonical JSON: two runs of one
        family whose recipes differ only on ``axes`` give the same text."""
        doc = {k: v for k, v in self.config.items() if k not in NOT_RECIPE}
        doc = json.loads(json.dumps(doc))
        for axis in axes:
            section, _, name = axis.partition(".")
            block = doc.get(section)
            for b in block if isinstance(block, list) else [block]:
                if isinstance(b, dict):
                    b.pop(name, None)
        return json.dumps(doc, sort_keys=True)


@dataclass(frozen=True)
class AtlasInput:
    """What was read: the sweep runs and what was left out.

    Attributes:
        runs: Every sweep run, sorted by sweep, coordinates and seed.
        not_swept: Labels of runs without sweep coordinates (left out).
        dirs: The output directories read.
        split: The split of the result records.
    """

    runs: tuple[AtlasRun, ...]
    not_swept: tuple[str, ...]
    dirs: tuple[str, ...]
    split: str


def _status(records: list[ResultRecord]) -> tuple[str | None, dict[str, float]]:
    """The collapse protocol's final status and label-free readings among one run's records."""
    for r in records:
        if r.protocol.name == COLLAPSE_PROTOCOL:
            status = r.metrics.get("status")
            names = [*r.protocol.meta.readings, *EXTRA_READINGS]
            readings = {k: float(r.metrics[k]) for k in dict.fromkeys(names) if finite(r.metrics.get(k))}
            return (status if status in STATUSES else None), readings
    return None, {}


def _run(records: list[ResultRecord], layout: RunLayout) -> AtlasRun:
    """The run of one directory's records (all of one method and seed, the first carrying the header)."""
    head = records[0].run
    metrics = {r.protocol.name: float(r.metrics[r.protocol.meta.main]) for r in records
               if r.protocol.labelled and finite(r.metrics.get(r.protocol.meta.main))}
    status, readings = _status(records)
    paths = layout.run(head.method, head.seed)
    monitor = tuple(run_readings(paths)) if paths.dir.is_dir() else ()
    total = _total_steps(paths.monitor_log) or None
    epochs = (head.config.get("train") or {}).get("epochs")
    if total is None and monitor:  # read from metrics.jsonl: each reading's fraction gives the total
        last = monitor[-1]
        total = round(last.step / last.fraction) if last.fraction > 0 else None
    done = head.train.step if head.train.step is not None and head.train.status != "finished" else total
    sweep = head.sweep
    assert sweep is not None
    return AtlasRun(f"{head.method}/seed{head.seed}", sweep.name, head.base or head.method,
                    tuple((a, hashable(v)) for a, v in sweep.coordinates.items()), head.seed, head.config, metrics,
                    status, readings, head.train.status, epochs if isinstance(epochs, int) else None, total, done,
                    monitor)


def _total_steps(path: Path) -> int | None:
    """``total_steps`` of a ``monitor.jsonl``'s first reading (every reading records it)."""
    try:
        with path.open("rb") as f:
            first = json.loads(f.readline().decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        return None
    total = first.get("total_steps") if isinstance(first, dict) else None
    return total if isinstance(total, int) and total > 0 else None


def _sort_key(run: AtlasRun) -> tuple[Any, ...]:
    return run.sweep, tuple((a, str(type(v)), v if isinstance(v, int | float) else str(v)) for a, v in run.coordinates), run.seed


def read_runs(dirs: Iterable[str | Path], split: str = "test") -> AtlasInput:
    """Every sweep run under ``dirs``.

    Raises:
        SslbenchError: for a path that is not a directory, no results of ``split`` at all, or
            results none of which carries sweep coordinates.
    """
    dirs = [str(d) for d in dirs]
    if not dirs:
        raise SslbenchError("atlas: give at least one output directory")
    runs, not_swept = [], []
    for d in dirs:
        by_run: dict[tuple[str, int], list[ResultRecord]] = {}
        for r in load_records([d], split):
            by_run.setdefault((r.run.method, r.run.seed), []).append(r)
        layout = RunLayout(d)
        for (method, seed), recs in by_run.items():
            if recs[0].run.sweep is None:
                not_swept.append(f"{method}/seed{seed}")
            else:
                runs.append(_run(recs, layout))
    if not runs:
        raise SslbenchError(f"atlas: none of the {len(not_swept)} runs under {', '.join(dirs)} carries sweep "
                            "coordinates (the atlas reads the cells of a [sweeps] config; run one with "
                            "`sslbench run --config FILE`)")
    return AtlasInput(tuple(sorted(runs, key=_sort_key)), tuple(not_swept), tuple(dirs), split)
