"""``sslbench analyze``: what the point changes to a loss did, from a finished sweep.

Three answers, each computed from the result records and training logs of one
or more run directories (nothing is re-run):

1. **Variant effects.** For every variant with a base method, the difference of
   each labelled protocol's main metric (variant - base) with a 95% Welch
   t-interval over seeds; the verdict is ``better`` or ``worse`` only when that
   interval excludes 0, else ``within noise``.
2. **Collapse.** Per run: the training outcome, the epoch from which the
   training-time monitor (``probe_status`` in ``metrics.jsonl``) read
   ``dimensional`` or ``complete`` to the end, its last and worst reading (and the
   first epoch of the worst), and every ordered label a protocol recorded on the
   final encoder (``collapse.status``).
3. **Label-free vs labelled.** Spearman rank correlation, across all trained runs,
   of each label-free reading a protocol declares (RankMe, alpha-ReQ, uniformity,
   ...) with each labelled protocol's main metric.
4. **By coordinate** (with ``group_by``, sweeps only): per sweep and value of the
   given axes, the runs pooled, each labelled main metric with its 95% CI, the
   ordered labels' counts and the share of runs that collapsed
   (:func:`sslbench.leaderboard.coordinate_table`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from sslbench.embedding_stats import COLLAPSE_STATUSES, PROBE_WARMUP_STEPS
from sslbench.io import atomic_write_json, atomic_write_text
from sslbench.leaderboard import coordinate_table
from sslbench.layout import RunLayout, RunPaths
from sslbench.records import ResultRecord
from sslbench.stats import welch_ci95
from sslbench.store import find_records
from sslbench.training_log import read_log

#: Columns printed as integers.
INTEGER_COLUMNS = frozenset({"seed", "n_seeds", "n_runs", "monitor_onset_epoch", "monitor_worst_epoch"})


class _Meta:
    """What the records say about their metrics, gathered over all of them."""

    def __init__(self, records: list[ResultRecord]) -> None:
        self.directions: dict[str, str] = {}
        self.labelled_main: dict[str, None] = {}
        self.readings: dict[str, None] = {}
        self.labels: dict[str, None] = {}
        for r in records:
            p, meta = r.protocol, r.protocol.meta
            self.directions.update({f"{p.name}.{k}": d for k, d in meta.directions.items()})
            if p.labelled and meta.main:
                self.labelled_main[f"{p.name}.{meta.main}"] = None
            if not p.labelled:
                self.readings.update({f"{p.name}.{k}": None for k in meta.readings})
            self.labels.update({f"{p.name}.{k}": None for k in meta.labels})


def _runs(records: list[ResultRecord]) -> pd.DataFrame:
    """One row per (method, seed): every metric as ``<protocol>.<metric>``, plus run facts."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        row = rows.setdefault((r.run.method, r.run.seed), {
            "method": r.run.method, "seed": r.run.seed, "base": r.run.base,
            "trained": r.run.encoder_kind == "trained", "train_status": r.run.train.status,
        })
        for k, v in r.metrics.items():
            row[f"{r.protocol.name}.{k}"] = v
    return pd.DataFrame(list(rows.values()))


def variant_effects(runs: pd.DataFrame, meta: _Meta) -> pd.DataFrame:
    """Variant - base difference of each labelled main metric, its 95% Welch half-width and a verdict."""
    out = []
    for variant in sorted(runs.loc[runs["base"].notna(), "method"].unique()):
        base = runs.loc[runs["method"] == variant, "base"].iloc[0]
        if base not in set(runs["method"]):
            continue
        for metric in sorted(meta.labelled_main):
            if metric not in runs:
                continue
            a = pd.to_numeric(runs.loc[runs["method"] == variant, metric], errors="coerce").dropna().to_numpy(float)
            b = pd.to_numeric(runs.loc[runs["method"] == base, metric], errors="coerce").dropna().to_numpy(float)
            if not len(a) or not len(b):
                continue
            delta, ci = float(a.mean() - b.mean()), welch_ci95(a, b)
            sign = 1 if meta.directions.get(metric, "higher") == "higher" else -1
            verdict = "needs 2+ seeds" if math.isnan(ci) else "within noise"
            if not math.isnan(ci) and abs(delta) > ci:
                verdict = "better" if sign * delta > 0 else "worse"
            out.append({"variant": variant, "base": base, "metric": metric, "base_mean": float(b.mean()),
                        "variant_mean": float(a.mean()), "delta": delta, "ci95": ci, "n_seeds": min(len(a), len(b)),
                        "verdict": verdict})
    return pd.DataFrame(out)


def monitor_reading(paths: RunPaths) -> tuple[int | None, str, str, int | None]:
    """The training-time monitor's reading: ``(onset, final, worst, worst_epoch)``.

    ``onset`` is the epoch from which ``probe_status`` stayed ``dimensional`` or
    ``complete`` to the end (``None`` when the last reading is healthy), ``final`` the
    last status, ``worst`` the worst one and ``worst_epoch`` the first epoch that read
    it (``None`` when the worst is healthy). Readings before
    :data:`~sslbench.embedding_stats.PROBE_WARMUP_STEPS` optimiser steps are skipped:
    eval-mode batch norm has not warmed up there.
    """
    order = {s: i for i, s in enumerate(COLLAPSE_STATUSES)}
    rows = [r for r in read_log(paths.metrics_log)
            if r.probe_status is not None and r.step >= PROBE_WARMUP_STEPS]
    if not rows:
        return None, "n/a", "n/a", None
    onset = None
    for r in rows:
        if r.probe_status == COLLAPSE_STATUSES[0]:
            onset = None
        elif onset is None:
            onset = r.epoch
    worst = max((r.probe_status for r in rows), key=lambda st: order.get(st, 0))
    worst_epoch = next(r.epoch for r in rows if r.probe_status == worst) if worst != COLLAPSE_STATUSES[0] else None
    return onset, rows[-1].probe_status, worst, worst_epoch


def collapse_table(runs: pd.DataFrame, dirs: list[Path], meta: _Meta) -> pd.DataFrame:
    """Per trained run: training outcome, monitor's first collapsed epoch and kind, the protocols' labels."""
    out = []
    layouts = [RunLayout(d) for d in dirs]
    for _, r in runs[runs["trained"]].sort_values(["method", "seed"]).iterrows():
        paths = next((p for p in (lay.run(r["method"], int(r["seed"])) for lay in layouts) if p.dir.is_dir()), None)
        onset, final, worst, worst_epoch = monitor_reading(paths) if paths else (None, "n/a", "n/a", None)
        row = {"method": r["method"], "seed": int(r["seed"]), "train_status": r["train_status"],
               "monitor_onset_epoch": onset, "monitor_final": final, "monitor_worst": worst,
               "monitor_worst_epoch": worst_epoch}
        row.update({col: r.get(col, "n/a") if isinstance(r.get(col), str) else "n/a" for col in meta.labels})
        out.append(row)
    return pd.DataFrame(out)


def label_free_agreement(runs: pd.DataFrame, meta: _Meta) -> pd.DataFrame:
    """Spearman rho (and p-value, n) of each label-free reading with each labelled main metric over trained runs."""
    trained = runs[runs["trained"]]
    out = []
    for col in meta.readings:
        if col not in trained:
            continue
        for lab in meta.labelled_main:
            if lab not in trained:
                continue
            pair = trained[[col, lab]].apply(pd.to_numeric, errors="coerce").dropna()
            if len(pair) < 3:
                continue
            rho, p = stats.spearmanr(pair[col], pair[lab])
            out.append({"label_free": col, "labelled": lab, "spearman_rho": float(rho), "p_value": float(p),
                        "n_runs": len(pair)})
    return pd.DataFrame(out)


def _md(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    if df.empty:
        return "(none)\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float) and c in INTEGER_COLUMNS:
                cells.append("" if math.isnan(v) else str(int(v)))  # pandas stores int columns with gaps as float
            elif isinstance(v, float):
                cells.append("" if math.isnan(v) else format(v, floatfmt))
            else:
                cells.append("" if v is None else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def analyze(dirs: list[Path], group_by: list[str] | None = None, sort_by: str | None = None) -> dict[str, pd.DataFrame]:
    """The analyses over every result under ``dirs``.

    Args:
        dirs: Run directories.
        group_by: Sweep axes for the by-coordinate table (none: no such table).
        sort_by: An axis or a metric column to order that table by.

    Returns:
        ``{"effects", "collapse", "agreement"}`` tables, and ``"by_coordinate"`` with ``group_by``.
    """
    records = [r for d in dirs for r in find_records(d)]
    runs, meta = _runs(records), _Meta(records)
    tables = {"effects": variant_effects(runs, meta), "collapse": collapse_table(runs, dirs, meta),
              "agreement": label_free_agreement(runs, meta)}
    if group_by:
        tables["by_coordinate"] = coordinate_table(records, group_by, sort_by)
    return tables


def to_markdown(tables: dict[str, pd.DataFrame]) -> str:
    """The analysis as one markdown document."""
    return (
        "## Variant effects (variant - base, 95% Welch interval over seeds)\n\n"
        + _md(tables["effects"])
        + "\n## Collapse (training-time monitor and final protocol status)\n\n"
        + _md(tables["collapse"])
        + "\n## Label-free vs labelled metrics (Spearman over trained runs)\n\n"
        + _md(tables["agreement"], ".3f")
        + ("\n## By sweep coordinate (runs pooled per value; 95% t-interval over those runs)\n\n"
           + _md(tables["by_coordinate"]) if "by_coordinate" in tables else "")
    )


def write(tables: dict[str, pd.DataFrame], out: Path) -> str:
    """Write ``analysis.md`` and ``analysis.json`` into ``out``; return the markdown."""
    md = to_markdown(tables)
    layout = RunLayout(out)
    atomic_write_text(layout.analysis("md"), md)
    atomic_write_json(layout.analysis("json"), {k: json.loads(v.to_json(orient="records")) for k, v in tables.items()})
    return md
