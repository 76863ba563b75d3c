"""Leaderboard: one row per method, mean and 95% CI over seeds, a Borda rank, floor deltas.

Columns are ``<protocol>.<metric>`` (accuracies as fractions), each with a
``<protocol>.<metric>_ci95`` half-width (Student-t over seeds; empty for one
seed) and ``n_seeds``. Label-valued metrics (``collapse.status``) and the
training outcome (``train.status``: finished, collapsed, diverged, or
not_trained for floors) are joined with ``/`` when seeds disagree.

Rank (Borda count, as MTEB ranks models across tasks): for each protocol's
main metric, rows are ranked in the metric's declared direction and a row
earns one point per row it beats and half a point per tie; rows without the
metric (a diverged run has no metrics) earn nothing and count as beaten.
``borda`` is the sum over main metrics and ``rank`` the competition rank
(1 = most points). **Floors are ranked too**: they are the yardstick, so a
method's points say how many rows, floors included, it beats; its rank among
trained methods is unchanged by including them.

Floor deltas: for each floor row present (``random_init``, ``raw_pixels``) and
each main metric, ``<protocol>.<metric>_vs_<floor>`` is ``row - floor`` (a
plain difference: positive is better for a ``higher`` metric).

Reference rows (floors) are marked and listed last. Written as md, csv, json
(schema 2: rows plus directions, main metrics, protocol settings and floors,
which :mod:`sslbench.compare` reads) and a self-contained html page.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sslbench.errors import SslbenchError, did_you_mean
from sslbench.io import atomic_write_json, atomic_write_text
from sslbench.registry import registry
from sslbench.stats import t_ci95

REFERENCE_ENCODERS = ("random_init", "raw_pixels")
#: ``schema_version`` of leaderboard.json. 1: rows and notes; 2: adds directions,
#: main_metrics, settings, floors, fingerprints.
SCHEMA_VERSION = 2
FORMATS = ("md", "csv", "json", "html")
#: Label columns shown as badges, worst last.
SEVERITY = {
    "collapse.status": {"n/a": 0, "healthy": 0, "dimensional": 1, "complete": 2},
    "train.status": {"not_trained": 0, "finished": 0, "collapsed": 1, "diverged": 2},
}


class _Collected:
    """What :func:`build` gathers from the result records before aggregating."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, dict[int, float]]] = {}  # method -> column -> seed -> value
        self.labels: dict[str, dict[str, set[str]]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, set[str]] = {}
        self.directions: dict[str, str] = {}
        self.main: dict[str, None] = {}
        self.labelled: set[str] = set()  # protocols that need labels: their main metrics rank
        self.shown: dict[str, None] = {}
        self.fingerprints: set[str] = set()
        self.seen: set[tuple[str, int, str]] = set()
        self.duplicates: set[tuple[str, int, str]] = set()


def _requires(info: dict[str, Any]) -> set[str]:
    """A result's protocol requirements: recorded since they were, else the registered class's."""
    if "requires" in info:
        return set(info["requires"])
    try:
        return set(registry("protocols").get(info["name"]).requires)
    except SslbenchError:  # a plugin no longer installed: rank it, as a labelled protocol
        return {"labels"}


def _collect(results: list[dict[str, Any]]) -> _Collected:
    c = _Collected()
    for r in results:
        m, seed, proto = r["method"], r["seed"], r["protocol"]["name"]
        key = (m, seed, proto)
        (c.duplicates if key in c.seen else c.seen).add(key)
        c.settings[proto] = r["protocol"]["params"]
        c.versions.setdefault(proto, set()).add(str(r["protocol"]["version"]))
        c.fingerprints.add(r["dataset"]["fingerprint"])
        cols = c.values.setdefault(m, {})
        directions = r["protocol"].get("directions", {})
        main = r["protocol"].get("main_metric")
        for k, d in directions.items():
            c.directions[f"{proto}.{k}"] = d
        if main is not None:
            c.main[f"{proto}.{main}"] = None
        if "labels" in _requires(r["protocol"]):
            c.labelled.add(proto)
        for k in [main, *directions]:
            if k in r["metrics"]:
                c.shown[f"{proto}.{k}"] = None
        for k, v in r["metrics"].items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                cols.setdefault(f"{proto}.{k}", {})[seed] = float(v)
            else:
                c.labels.setdefault(m, {}).setdefault(f"{proto}.{k}", set()).add(str(v))
        i = c.info.setdefault(m, {"seeds": set(), "status": set(), "train_s": {}})
        i["seeds"].add(seed)
        i["status"].add(r.get("train", {}).get("status", "finished"))
        i["train_s"][seed] = r.get("timings", {}).get("train_s", 0.0)
        i["reference"] = r.get("encoder_kind", "trained") not in ("trained", "external")  # external: `sslbench eval`
    return c


def _rows(c: _Collected) -> list[dict[str, Any]]:
    rows = []
    for m, cols in c.values.items():
        i = c.info[m]
        row: dict[str, Any] = {"method": m, "reference": i["reference"], "n_seeds": len(i["seeds"])}
        row["train.status"] = "/".join(sorted(i["status"]))
        row["train.minutes"] = round(float(np.mean(list(i["train_s"].values()))) / 60, 2)
        for col, by_seed in sorted(cols.items()):
            vals = list(by_seed.values())
            row[col] = float(np.mean(vals))
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


def build(results: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[str]]:
    """Aggregate result records into the leaderboard table.

    Args:
        results: Result dicts (schema 1), from one or several run directories.

    Returns:
        ``(table, notes)``: one row per method, trained methods first in rank
        order, floors last; notes list protocol settings and warnings (mixed
        data fingerprints or protocol versions, duplicated runs).
        ``table.attrs`` holds ``shown`` (directed metric columns in display
        order), ``main`` (main metric columns), ``directions``, ``settings``
        (protocol name -> version and params), ``floors`` and ``deltas``.
    """
    c = _collect(results)
    table = pd.DataFrame(_rows(c))
    first_seen = {col: i for i, col in enumerate(c.shown)}
    # labelled protocols first, label-free collapse readings last; each keeps its main metric first
    order = sorted(first_seen, key=lambda col: (col.startswith("collapse."), col.split(".")[0], first_seen[col]))
    main = [m for m in order if m in c.main and m in table]
    floors = [f for f in REFERENCE_ENCODERS if not table.empty and f in set(table["method"])]
    deltas: list[str] = []
    ranked = [m for m in main if m.split(".")[0] in c.labelled]
    if not table.empty:
        table = add_rank(table, ranked, c.directions)
        deltas = add_floor_deltas(table, main, floors)
        table = table.sort_values(["reference", "rank", "method"], kind="stable").reset_index(drop=True)
    table.attrs.update(
        shown=[col for col in order if col in table],
        main=main,
        directions=dict(sorted(c.directions.items())),
        settings={p: {"version": "/".join(sorted(c.versions[p])), "params": c.settings[p]} for p in sorted(c.settings)},
        floors=floors,
        deltas=deltas,
        fingerprints=sorted(c.fingerprints),
    )
    return table, _notes(c, ranked)


def _fmt(v: Any, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:+.4f}" if signed else f"{v:.4f}"
    return str(v)


def _label_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.endswith(".status") and c != "train.status"]


def _metric_columns(table: pd.DataFrame, metrics: list[str] | None) -> list[str]:
    if metrics is not None:
        return metrics
    shown = list(table.attrs.get("shown") or [
        c for c in table.columns if "." in c and not c.endswith("_ci95") and not c.startswith("train.")
    ])
    return shown + _label_columns(table)


def _cell(row: pd.Series, col: str) -> str:
    v, ci = row.get(col, float("nan")), row.get(f"{col}_ci95", float("nan"))
    cell = _fmt(v)
    if cell and isinstance(ci, float) and not math.isnan(ci):
        cell += f" ± {ci:.4f}"
    return cell


def _name(row: pd.Series) -> str:
    return row["method"] + (" (floor)" if row["reference"] else "")


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in body)]


def to_markdown(table: pd.DataFrame, notes: list[str], metrics: list[str] | None = None) -> str:
    """Markdown: the leaderboard (``mean ± ci95`` per metric), the floor deltas, then the notes.

    Args:
        table: From :func:`build`.
        notes: From :func:`build`.
        metrics: Metric columns to show (default: the directed metrics, each
            protocol's main metric first, then any ``.status`` column).
    """
    if table.empty:
        return "(no results)\n"
    metrics = _metric_columns(table, metrics)
    head = ["method", "rank", "borda", "n_seeds", *metrics, "train.status", "train.minutes"]
    body = []
    for _, row in table.iterrows():
        cells = [_name(row), str(row.get("rank", "")), f"{row.get('borda', 0.0):g}", str(row["n_seeds"])]
        cells += [_cell(row, m) for m in metrics]
        cells += [str(row["train.status"]) if not row["reference"] else "-", _fmt(row["train.minutes"])]
        body.append(cells)
    lines = _md_table(head, body)
    deltas = table.attrs.get("deltas") or []
    if deltas:
        lines += ["", "Difference from the floors (row - floor, main metrics):", ""]
        body = [[_name(row), *(_fmt(row.get(d), signed=True) for d in deltas)] for _, row in table.iterrows()]
        lines += _md_table(["method", *[d.replace("_vs_", " vs ") for d in deltas]], body)
    return "\n".join(lines) + "\n\n" + "".join(f"- {n}\n" for n in notes)


def to_json(table: pd.DataFrame, notes: list[str]) -> dict[str, Any]:
    """The leaderboard.json document (``schema_version`` :data:`SCHEMA_VERSION`)."""
    records = json.loads(table.to_json(orient="records")) if not table.empty else []
    keys = ("main", "directions", "settings", "floors", "shown", "fingerprints")
    meta = {k: table.attrs.get(k, [] if k in ("main", "floors", "shown", "fingerprints") else {}) for k in keys}
    return {"schema_version": SCHEMA_VERSION, "rows": records, "notes": notes, **{
        ("main_metrics" if k == "main" else k): v for k, v in meta.items()}}


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f0f0f0;position:sticky;top:0}
td:first-child,th:first-child{text-align:left}
tr.floor td{background:#f7f7f7;font-style:italic}
.ci{color:#888;font-size:11px}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;color:#fff;font-size:12px;font-style:normal}
.b0{background:#2e7d32}.b1{background:#ef6c00}.b2{background:#c62828}.bna{background:#9e9e9e}
.scroll{overflow-x:auto}
img{max-width:100%;display:block;margin:0.5em 0 1em}
ul.badges{list-style:none;padding:0}ul.badges li{margin:2px 0}
"""


def badge(col: str, value: Any) -> str:
    """An html badge for a label column (green: healthy/finished, orange, red: worst, grey: n/a)."""
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    levels = SEVERITY.get(col, {})
    parts = text.split("/") if text else []
    known = [levels[p] for p in parts if p in levels]
    cls = "bna" if not known or parts in (["n/a"], ["not_trained"]) else f"b{max(known)}"
    return f'<span class="badge {cls}">{html.escape(text or "-")}</span>'


def _html_row(row: pd.Series, metrics: list[str], labels: list[str]) -> str:
    cells = [f"<td>{html.escape(_name(row))}</td>", f"<td>{row.get('rank', '')}</td>",
             f"<td>{row.get('borda', 0.0):g}</td>", f"<td>{row['n_seeds']}</td>"]
    for m in metrics:
        v, ci = _fmt(row.get(m)), row.get(f"{m}_ci95", float("nan"))
        ci_text = f' <span class="ci">± {ci:.4f}</span>' if v and isinstance(ci, float) and not math.isnan(ci) else ""
        cells.append(f"<td>{html.escape(v)}{ci_text}</td>")
    for col in labels:
        cells.append(f"<td>{badge(col, row.get(col))}</td>")
    cells.append(f"<td>{badge('train.status', row['train.status'])}</td><td>{_fmt(row['train.minutes'])}</td>")
    return f'<tr class="{"floor" if row["reference"] else "method"}">' + "".join(cells) + "</tr>"


def html_fragment(table: pd.DataFrame, notes: list[str], metrics: list[str] | None = None) -> str:
    """The leaderboard, floor-delta table and notes as html (no ``<html>`` wrapper), for embedding."""
    if table.empty:
        return "<p>(no results)</p>"
    metrics = [m for m in _metric_columns(table, metrics) if m not in _label_columns(table)]
    labels = _label_columns(table)
    head = ["method", "rank", "borda", "n_seeds", *metrics, *labels, "train.status", "train.minutes"]
    parts = ['<div class="scroll"><table class="leaderboard"><thead><tr>',
             "".join(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    parts += [_html_row(row, metrics, labels) for _, row in table.iterrows()]
    parts.append("</tbody></table></div>")
    deltas = table.attrs.get("deltas") or []
    if deltas:
        parts.append('<p>Difference from the floors (row - floor, main metrics):</p><div class="scroll"><table class="deltas"><tr>')
        parts.append("".join(f"<th>{html.escape(h.replace('_vs_', ' vs '))}</th>" for h in ["method", *deltas]) + "</tr>")
        for _, row in table.iterrows():
            cells = "".join(f"<td>{_fmt(row.get(d), signed=True)}</td>" for d in deltas)
            parts.append(f"<tr><td>{html.escape(_name(row))}</td>{cells}</tr>")
        parts.append("</table></div>")
    parts.append("<ul class=\"notes\">" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return "".join(parts)


def page(title: str, body: str) -> str:
    """A complete self-contained html document (inline CSS, no external resources)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def to_html(table: pd.DataFrame, notes: list[str], title: str = "sslbench leaderboard") -> str:
    """The leaderboard as one self-contained html page."""
    return page(title, f"<h1>{html.escape(title)}</h1>\n" + html_fragment(table, notes))


def render(table: pd.DataFrame, notes: list[str], fmt: str = "md") -> str:
    """The leaderboard in one of :data:`FORMATS`.

    Raises:
        SslbenchError: for an unknown format.
    """
    if fmt == "md":
        return to_markdown(table, notes)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return json.dumps(to_json(table, notes), indent=2) + "\n"
    if fmt == "html":
        return to_html(table, notes)
    raise did_you_mean(fmt, FORMATS, "leaderboard format")


def write(table: pd.DataFrame, notes: list[str], out: Path) -> str:
    """Write ``leaderboard.{md,csv,json,html}`` into ``out``; return the markdown."""
    md = to_markdown(table, notes)
    atomic_write_text(out / "leaderboard.md", md)
    atomic_write_text(out / "leaderboard.csv", table.to_csv(index=False))
    atomic_write_json(out / "leaderboard.json", to_json(table, notes))
    atomic_write_text(out / "leaderboard.html", to_html(table, notes))
    return md


def load_results(dirs: list[str | Path]) -> list[dict[str, Any]]:
    """Result records of one or several run directories (``--out`` of earlier runs), merged.

    Raises:
        SslbenchError: for a path that is not a directory or holds no results.
    """
    from sslbench.store import find_results

    results: list[dict[str, Any]] = []
    for d in dirs:
        path = Path(d)
        if not path.is_dir():
            raise SslbenchError(f"{d} is not a directory")
        found = find_results(path)
        if not found:
            raise SslbenchError(f"no results under {d} (expected <method>/seed<k>/results/*.json)")
        results += found
    return results
