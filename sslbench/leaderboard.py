"""Leaderboard: one row per method, mean and 95% CI over seeds, a Borda rank, floor deltas.

Columns are ``<protocol>.<metric>`` (accuracies as fractions), each with a
``<protocol>.<metric>_ci95`` half-width (Student-t over seeds; empty for one
seed) and ``n_seeds``. A metric its protocol declares an interval itself
(:attr:`sslbench.records.MetricMeta.intervals`, such as few-shot's
``acc_5shot_centroid_episode_ci95`` over episodes) is averaged over seeds like
any other but gets no ``_ci95`` column of its own. Label-valued metrics (such as ``collapse.status``) and
the training outcome (``train.status``: finished, collapsed, diverged, or
not_trained for floors) are joined with ``/`` when seeds disagree.

Rank (Borda count, as MTEB ranks models across tasks): for each labelled
protocol's main metric, rows are ranked in the metric's declared direction and
a row earns one point per row it beats and half a point per tie; rows without
the metric (a diverged run has no metrics) earn nothing and count as beaten.
``borda`` is the sum over main metrics and ``rank`` the competition rank
(1 = most points). **Floors are ranked too**: they are the yardstick, so a
method's points say how many rows, floors included, it beats; its rank among
trained methods is unchanged by including them.

Floor deltas: for each floor row present (``random_init``, ``raw_pixels``) and
each main metric, ``<protocol>.<metric>_vs_<floor>`` is ``row - floor`` (a
plain difference: positive is better for a ``higher`` metric).

Sweeps: rows of sweep cells carry a ``sweep`` column and one column per grid
axis (``loss.var_coeff``, ...), from the ``sweep`` block of their records.
``group_by`` (``--group-by loss.var_coeff`` or the field name alone) makes one
row per sweep and value of those axes, pooling its runs (every cell of that
value, times its seeds: ``n_runs``); means and CIs are then over those runs.
Other rows stay one per method. ``sort_by`` orders rows by an axis (ascending)
or a metric column (best first) instead of the rank.

This module aggregates; :mod:`sslbench.leaderboard_render` writes the result as
md, csv, json and html. Everything it knows about a protocol comes from the
metric metadata recorded with the results, so a plugin protocol with an ordered
label gets the same treatment as the built-in collapse suite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sslbench.errors import SslbenchError, did_you_mean
from sslbench.records import NOT_APPLICABLE, TRAIN_STATUSES, UNTRAINED_STATUSES, ResultRecord, is_number
from sslbench.stats import t_ci95

FLOORS = ("random_init", "raw_pixels")
#: The label metric of the training outcome and its severity order (best first).
TRAIN_LABEL = "train.status"
TRAIN_ORDER = TRAIN_STATUSES


@dataclass
class Leaderboard:
    """The aggregated leaderboard.

    Attributes:
        table: One row per method: ``method``, ``floor``, ``n_seeds``, ``train.status``,
            ``train.minutes``, every metric column with its ``_ci95``, ``borda``,
            ``rank`` and the floor deltas; trained methods first in rank order, floors last.
        notes: Protocol settings, the rank rule and warnings (mixed data fingerprints
            or protocol versions, duplicated runs).
        shown: Directed metric columns in display order.
        main: Main metric columns.
        directions: Column -> ``"higher"``/``"lower"``.
        settings: Protocol name -> ``{"version", "params"}``.
        floors: Floor rows present.
        deltas: Floor-delta columns.
        fingerprints: Data fingerprints of the results.
        labels: Label column -> its values in severity order, best first (with
            :data:`TRAIN_LABEL`).
        tolerances: Column pattern -> default compare tolerance.
        measured: ``(method, column)`` pairs some result reported a number for, NaN
            included: a NaN cell is a reading that failed, not a metric never measured.
        axes: Sweep axis columns present (``loss.var_coeff``, ...), in first-seen order.
        group_by: The axes rows are grouped by (``[]``: one row per method).
    """

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    main: list[str] = field(default_factory=list)
    directions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    floors: list[str] = field(default_factory=list)
    deltas: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tolerances: dict[str, str] = field(default_factory=dict)
    measured: set[tuple[str, str]] = field(default_factory=set)
    axes: list[str] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Whether it has no rows."""
        return self.table.empty

    def label_columns(self) -> list[str]:
        """Protocol label columns present in the table (``train.status`` excluded)."""
        return [c for c in self.labels if c != TRAIN_LABEL and c in self.table]

    def severity(self, column: str, label: str) -> int | None:
        """:func:`label_severity` of a label of ``column``."""
        return label_severity(self.labels.get(column), label)


def label_severity(order: tuple[str, ...] | None, label: str) -> int | None:
    """Worst severity among the ``/``-joined values of ``label`` in ``order`` (best first).

    ``n/a`` and the statuses of encoders not trained here rank with the best value.

    Returns:
        The position of the worst value; ``None`` without an order or for a value outside it.
    """
    if order is None:
        return None
    levels = {v: i for i, v in enumerate(order)} | {v: 0 for v in (NOT_APPLICABLE, *UNTRAINED_STATUSES)}
    parts = label.split("/")
    if not all(p in levels for p in parts):
        return None
    return max(levels[p] for p in parts)


class _Collected:
    """What :func:`build` gathers from the result records before aggregating."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, dict[tuple[str, int], float]]] = {}  # row -> column -> run -> value
        self.labels: dict[str, dict[str, set[str]]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, set[str]] = {}
        self.directions: dict[str, str] = {}
        self.main: dict[str, None] = {}
        self.labelled: set[str] = set()  # protocols that need labels: their main metrics rank
        self.shown: dict[str, None] = {}
        self.orders: dict[str, tuple[str, ...]] = {TRAIN_LABEL: TRAIN_ORDER}
        self.tolerances: dict[str, str] = {}
        self.intervals: set[str] = set()  # columns that are per-run intervals: no CI over seeds
        self.fingerprints: set[str] = set()
        self.seen: set[tuple[str, int, str]] = set()
        self.duplicates: set[tuple[str, int, str]] = set()
        self.coords: dict[str, dict[str, Any]] = {}  # row -> sweep and axis columns
        self.axes: dict[str, None] = {}

    def add(self, r: ResultRecord, row: str, coords: dict[str, Any]) -> None:
        """Gather one record into ``row`` (its method, or its group) with that row's sweep columns."""
        m, seed, p = row, r.run.seed, r.protocol
        run = (r.run.method, seed)
        key = (r.run.method, seed, p.name)
        (self.duplicates if key in self.seen else self.seen).add(key)
        self.settings[p.name] = p.params
        self.versions.setdefault(p.name, set()).add(str(p.version))
        self.fingerprints.add(r.run.dataset.fingerprint)
        meta = p.meta
        self.directions.update({f"{p.name}.{k}": d for k, d in meta.directions.items()})
        self.orders.update({f"{p.name}.{k}": tuple(v) for k, v in meta.labels.items()})
        self.tolerances.update({f"{p.name}.{k}": v for k, v in meta.tolerances.items()})
        self.intervals.update(f"{p.name}.{k}" for k in meta.intervals)
        if meta.main:
            self.main[f"{p.name}.{meta.main}"] = None
        if p.labelled:
            self.labelled.add(p.name)
        for k in [meta.main, *meta.directions]:
            if k in r.metrics:
                self.shown[f"{p.name}.{k}"] = None
        cols = self.values.setdefault(m, {})
        for k, v in r.metrics.items():
            if is_number(v):
                cols.setdefault(f"{p.name}.{k}", {})[run] = float(v)
            else:
                self.labels.setdefault(m, {}).setdefault(f"{p.name}.{k}", set()).add(str(v))
        i = self.info.setdefault(m, {"seeds": set(), "runs": set(), "status": set(), "train_s": {}})
        i["seeds"].add(seed)
        i["runs"].add(run)
        i["status"].add(r.run.train.status)
        i["train_s"][run] = r.timings.train_s
        i["floor"] = r.run.is_floor
        if coords:
            self.coords[m] = coords
            self.axes.update(dict.fromkeys(k for k in coords if k != "sweep"))


def _rows(c: _Collected, grouped: bool) -> list[dict[str, Any]]:
    rows = []
    for m, cols in c.values.items():
        i = c.info[m]
        row: dict[str, Any] = {"method": m, "floor": i["floor"], "n_seeds": len(i["seeds"])}
        if grouped:
            row["n_runs"] = len(i["runs"])
        row.update(c.coords.get(m, {}))
        row[TRAIN_LABEL] = "/".join(sorted(i["status"]))
        row["train.minutes"] = round(float(np.mean(list(i["train_s"].values()))) / 60, 2)
        for col, by_seed in sorted(cols.items()):
            vals = list(by_seed.values())
            row[col] = float(np.mean(vals))
            if col not in c.intervals:
                row[f"{col}_ci95"] = t_ci95(vals)
        for col, values in c.labels.get(m, {}).items():
            row[col] = "/".join(sorted(values))
        rows.append(row)
    return rows


def borda_points(values: pd.Series, direction: str) -> pd.Series:
    """Borda points of each row on one metric.

    Args:
        values: One value per row; NaN where the row has no value.
        direction: ``"higher"`` or ``"lower"`` is better.

    Returns:
        Points per row: the number of rows it beats (rows without a value
        included) plus half the number it ties with; 0 for a row without a value.
    """
    v = pd.to_numeric(values, errors="coerce").astype(float)
    present = v.notna()
    signed = v if direction == "higher" else -v
    ranks = signed[present].rank(method="average")  # 1 = worst among rows with a value
    points = pd.Series(0.0, index=values.index)
    points[present] = ranks - 1 + (~present).sum()
    return points


def add_rank(table: pd.DataFrame, main: list[str], directions: dict[str, str]) -> pd.DataFrame:
    """Add ``borda`` (summed points over ``main`` metrics) and ``rank`` (1 = most points)."""
    total = pd.Series(0.0, index=table.index)
    for col in main:
        if col in table and directions.get(col) in ("higher", "lower"):
            total += borda_points(table[col], directions[col])
    table["borda"] = total
    table["rank"] = total.rank(method="min", ascending=False).astype(int)
    return table


def add_floor_deltas(table: pd.DataFrame, main: list[str], floors: list[str]) -> list[str]:
    """Add ``<metric>_vs_<floor>`` = row - floor for each main metric and floor row.

    Returns:
        The names of the added columns.
    """
    added = []
    for col in main:
        for floor in floors:
            ref = table.loc[table["method"] == floor].iloc[0]
            if col not in table or not isinstance(ref.get(col), float) or math.isnan(ref[col]):
                continue
            name = f"{col}_vs_{floor}"
            delta = pd.to_numeric(table[col], errors="coerce") - ref[col]
            delta[table["method"] == floor] = float("nan")
            table[name] = delta
            added.append(name)
    return added


def _notes(c: _Collected, main: list[str]) -> list[str]:
    notes = []
    for proto, params in sorted(c.settings.items()):
        notes.append(f"{proto} (v{'/'.join(sorted(c.versions[proto]))}): " + ", ".join(f"{k}={v}" for k, v in params.items()))
    notes.append("rank: Borda count over the main metrics " + ", ".join(main)
                 + " (labelled protocols only: label-free collapse readings describe, they do not rank; "
                 "floors ranked too; a row earns 1 point per row it beats, 1/2 per tie)")
    for proto, vs in c.versions.items():
        if len(vs) > 1:
            notes.append(f"WARNING: {proto} results come from different protocol versions {sorted(vs)}")
    if len(c.fingerprints) > 1:
        notes.append(f"WARNING: results come from {len(c.fingerprints)} different data fingerprints")
    for m, seed, proto in sorted(c.duplicates):
        notes.append(f"WARNING: {m}/seed{seed} has several {proto} results (merged directories?); the last one read is used")
    return notes


def sweep_axes(records: list[ResultRecord]) -> list[str]:
    """Every sweep axis the records' coordinates name, in first-seen order."""
    return list(dict.fromkeys(k for r in records if r.run.sweep is not None for k in r.run.sweep.coordinates))


def resolve_axis(name: str, known: list[str]) -> str:
    """The axis ``name`` means: an exact axis (``loss.var_coeff``) or the one axis of that field name (``var_coeff``).

    Raises:
        SslbenchError: when no record belongs to a sweep, the name is ambiguous, or no axis has it.
    """
    if not known:
        raise SslbenchError(f"no result belongs to a sweep, so there is no axis {name!r} to group or sort by "
                            "(a sweep cell's records carry its coordinates)")
    if name in known:
        return name
    matches = [a for a in known if a.partition(".")[2] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise SslbenchError(f"axis {name!r} is ambiguous: it may be {' or '.join(map(repr, matches))}; give one of them")
    raise did_you_mean(name, known, "sweep axis")


def _value_text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list | tuple):
        return "+".join(map(_value_text, v))
    return str(v)


def _row_of(r: ResultRecord, group_by: list[str]) -> tuple[str, dict[str, Any]]:
    """The row of a record (its method, or its sweep's group of ``group_by`` values) and that row's sweep columns."""
    sw = r.run.sweep
    if sw is None:
        return r.run.method, {}
    picked = {a: sw.coordinates[a] for a in group_by if a in sw.coordinates}
    if not picked:
        return r.run.method, {"sweep": sw.name, **sw.coordinates}
    label = f"{sw.name}[" + ", ".join(f"{a.partition('.')[2]}={_value_text(v)}" for a, v in picked.items()) + "]"
    return label, {"sweep": sw.name, **picked}


def _sort_key(v: Any) -> tuple[int, Any]:
    """Missing values last; numbers, strings and pairs each in their own order."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (3, 0)
    if isinstance(v, list | tuple):
        return (1, tuple(v))
    return (0, v) if is_number(v) else (2, str(v))


def _order(table: pd.DataFrame, keys: list[tuple[str, bool]]) -> pd.DataFrame:
    """``table`` sorted on ``(column, descending)`` keys, floors last, missing values last."""
    def key(i: int) -> tuple:
        row = table.iloc[i]
        out: list[Any] = [bool(row["floor"])]
        for col, desc in keys:
            kind, v = _sort_key(row.get(col))
            out.append((kind, -v if desc and kind == 0 else v))
        return tuple(out)

    return table.iloc[sorted(range(len(table)), key=key)].reset_index(drop=True)


def _sorted(table: pd.DataFrame, c: _Collected, group_by: list[str], sort_by: str | None) -> pd.DataFrame:
    """The table in rank order, or by the group's axes, or by ``sort_by`` (an axis or a metric column)."""
    if sort_by is None and not group_by:
        return table.sort_values(["floor", "rank", "method"], kind="stable").reset_index(drop=True)
    if sort_by is None:
        return _order(table, [("sweep", False), *((a, False) for a in group_by), ("rank", False), ("method", False)])
    if sort_by in table.columns and sort_by not in c.axes:
        return _order(table, [(sort_by, c.directions.get(sort_by) == "higher"), ("method", False)])
    axis = resolve_axis(sort_by, list(c.axes))
    return _order(table, [(axis, False), ("rank", False), ("method", False)])


def build(records: list[ResultRecord], group_by: list[str] | None = None, sort_by: str | None = None) -> Leaderboard:
    """Aggregate result records into the leaderboard.

    Args:
        records: Result records, from one or several run directories.
        group_by: Sweep axes to group sweep rows by (module docstring); field names alone
            are accepted where they are unambiguous.
        sort_by: A sweep axis or a metric column to order the rows by.

    Returns:
        The :class:`Leaderboard`: one row per method (or group), trained methods first in
        rank order (or in the order asked), floors last, with its notes and column metadata.

    Raises:
        SslbenchError: for an axis no record has, or a ``sort_by`` that is neither an axis
            nor a column.
    """
    known = sweep_axes(records)
    axes = [resolve_axis(a, known) for a in group_by or []]
    c = _Collected()
    for r in records:
        c.add(r, *_row_of(r, axes))
    table = pd.DataFrame(_rows(c, bool(axes)))
    first_seen = {col: i for i, col in enumerate(c.shown)}
    # labelled protocols first, label-free readings last; each keeps its main metric first
    order = sorted(first_seen, key=lambda col: (col.split(".")[0] not in c.labelled, col.split(".")[0], first_seen[col]))
    main = [m for m in order if m in c.main and m in table]
    floors = [f for f in FLOORS if not table.empty and f in set(table["method"])]
    deltas: list[str] = []
    ranked = [m for m in main if m.split(".")[0] in c.labelled]
    if not table.empty:
        table = add_rank(table, ranked, c.directions)
        deltas = add_floor_deltas(table, main, floors)
        table = _sorted(table, c, axes, sort_by)
    notes = _notes(c, ranked)
    if axes:
        notes.insert(0, f"grouped by {', '.join(axes)}: a sweep row pools every cell with those values and its seeds "
                        "(n_runs); means and 95% CIs are over those runs")
    return Leaderboard(
        table=table, notes=notes, shown=[col for col in order if col in table], main=main,
        directions=dict(sorted(c.directions.items())),
        settings={p: {"version": "/".join(sorted(c.versions[p])), "params": c.settings[p]} for p in sorted(c.settings)},
        floors=floors, deltas=deltas, fingerprints=sorted(c.fingerprints), labels=c.orders, tolerances=c.tolerances,
        measured={(m, col) for m, cols in c.values.items() for col in cols}, axes=list(c.axes), group_by=axes,
    )


def _run_rows(records: list[ResultRecord], axes: list[str]) -> tuple[dict[tuple[str, int], dict[str, Any]], _Collected]:
    """One row per sweep run that has some of ``axes``: its group, coordinates, metrics and labels."""
    c, runs = _Collected(), {}
    for r in records:
        row, coords = _row_of(r, axes)
        if r.run.sweep is None or not any(a in r.run.sweep.coordinates for a in axes):
            continue
        c.add(r, row, coords)
        run = runs.setdefault((r.run.method, r.run.seed), {"group": row, **coords, "labels": {TRAIN_LABEL: r.run.train.status},
                                                              "metrics": {}})
        for k, v in r.metrics.items():
            (run["metrics"] if is_number(v) else run["labels"])[f"{r.protocol.name}.{k}"] = v
    return runs, c


def _collapsed(labels: dict[str, Any], orders: dict[str, tuple[str, ...]]) -> bool:
    """Whether a run's training or any ordered label reads worse than the best value (collapse, divergence)."""
    for col, value in labels.items():
        order = orders.get(col)
        if order and str(value) in order and order.index(str(value)) > 0:
            return True
    return False


def coordinate_table(records: list[ResultRecord], group_by: list[str], sort_by: str | None = None) -> pd.DataFrame:
    """Per sweep and value of ``group_by``: runs pooled, each labelled main metric's mean and 95% CI over
    those runs, the count of each ordered label (``collapse.status``, ``train.status``) and the share of
    runs that collapsed or diverged (any ordered label worse than its best value).

    Args:
        records: Result records.
        group_by: Sweep axes (field names alone where unambiguous).
        sort_by: An axis or a metric column to order rows by (default: the group's axes).

    Raises:
        SslbenchError: for an axis no record has.
    """
    known = sweep_axes(records)
    axes = [resolve_axis(a, known) for a in group_by]
    runs, c = _run_rows(records, axes)
    mains = [m for m in c.main if m.split(".")[0] in c.labelled]
    rows = []
    for group in dict.fromkeys(run["group"] for run in runs.values()):
        members = [run for run in runs.values() if run["group"] == group]
        row: dict[str, Any] = {"group": group, "sweep": members[0]["sweep"],
                               **{a: members[0].get(a) for a in axes}, "n_runs": len(members)}
        for m in mains:
            vals = [run["metrics"][m] for run in members if m in run["metrics"]]
            row[m] = float(np.mean(vals)) if vals else float("nan")
            row[f"{m}_ci95"] = t_ci95(vals) if vals else float("nan")
        for col in [col for col in c.orders if any(col in run["labels"] for run in members)]:
            counts = pd.Series([str(run["labels"][col]) for run in members if col in run["labels"]]).value_counts()
            row[col] = ", ".join(f"{k} {v}" for k, v in counts.items())
        k = sum(_collapsed(run["labels"], c.orders) for run in members)
        row["collapsed"], row["collapsed_share"] = f"{k}/{len(members)}", k / len(members)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["floor"] = False
    if sort_by is not None and sort_by in table.columns and sort_by not in axes:
        table = _order(table, [(sort_by, c.directions.get(sort_by) == "higher"), ("group", False)])
    else:
        first = [resolve_axis(sort_by, list(c.axes))] if sort_by is not None else []
        table = _order(table, [("sweep", False), *((a, False) for a in first + axes), ("group", False)])
    return table.drop(columns="floor")
