"""The leaderboard as md, csv, json and one self-contained html page, and the reader of its json.

Two markdown views: :func:`to_markdown`, every column with the floor deltas and
the notes (``leaderboard.md``, ``sslbench leaderboard --all``), and
:func:`to_compact`, what a terminal shows (``sslbench leaderboard``, and ``run``
and ``eval`` when they finish): rank, seeds, each protocol's main metric with
its 95% CI over seeds, the label columns and the training outcome, aligned.

``leaderboard.json`` (``schema_version`` 3) holds the rows plus the column
metadata :mod:`sslbench.compare` needs: directions, main metrics, protocol
settings, floors, data fingerprints, label orders and default tolerances.
Version 2 files (no label orders or tolerances, floors marked ``reference``)
are still read; what they lack comes from the registered protocols.
"""

from __future__ import annotations

import html
import json
import math
import sys
from typing import Any

import pandas as pd

from sslbench.errors import SslbenchError, did_you_mean
from sslbench.io import atomic_write_json, atomic_write_text
from sslbench.layout import RunLayout
from sslbench.leaderboard import TRAIN_LABEL, TRAIN_ORDER, Leaderboard

#: ``schema_version`` of leaderboard.json. 1: rows and notes; 2: adds directions,
#: main_metrics, settings, floors, fingerprints; 3: adds labels and tolerances, and
#: rows mark floors with ``floor`` (``reference`` before).
SCHEMA_VERSION = 3
READABLE_VERSIONS = (2, 3)
FORMATS = ("md", "csv", "json", "html")


def _fmt(v: Any, signed: bool = False, decimals: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:+.{decimals}f}" if signed else f"{v:.{decimals}f}"
    return str(v)


def _metric_columns(board: Leaderboard, metrics: list[str] | None) -> list[str]:
    if metrics is not None:
        return metrics
    return list(board.shown) + board.label_columns()


def _cell(row: pd.Series, col: str, decimals: int = 4) -> str:
    v, ci = row.get(col, float("nan")), row.get(f"{col}_ci95", float("nan"))
    cell = _fmt(v, decimals=decimals)
    if cell and isinstance(ci, float) and not math.isnan(ci):
        cell += f" ± {ci:.{decimals}f}"
    return cell


def row_name(row: pd.Series) -> str:
    """The row's method, marked ``(floor)`` for floors."""
    return row["method"] + (" (floor)" if row["floor"] else "")


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in body)]


def to_markdown(board: Leaderboard, metrics: list[str] | None = None) -> str:
    """Markdown: the leaderboard (``mean ± ci95`` per metric), the floor deltas, then the notes.

    Args:
        board: From :func:`sslbench.leaderboard.build`.
        metrics: Metric columns to show (default: the directed metrics, each
            protocol's main metric first, then the label columns).
    """
    if board.empty:
        return "(no results)\n"
    metrics = _metric_columns(board, metrics)
    head = ["method", "rank", "borda", "n_seeds", *metrics, TRAIN_LABEL, "train.minutes"]
    body = []
    for _, row in board.table.iterrows():
        cells = [row_name(row), str(row.get("rank", "")), f"{row.get('borda', 0.0):g}", str(row["n_seeds"])]
        cells += [_cell(row, m) for m in metrics]
        cells += [str(row[TRAIN_LABEL]) if not row["floor"] else "-", _fmt(row["train.minutes"])]
        body.append(cells)
    lines = _md_table(head, body)
    if board.deltas:
        lines += ["", "Difference from the floors (row - floor, main metrics):", ""]
        body = [[row_name(row), *(_fmt(row.get(d), signed=True) for d in board.deltas)] for _, row in board.table.iterrows()]
        lines += _md_table(["method", *[d.replace("_vs_", " vs ") for d in board.deltas]], body)
    return "\n".join(lines) + "\n\n" + "".join(f"- {n}\n" for n in board.notes)


def _aligned_table(head: list[str], body: list[list[str]], numeric: set[int]) -> list[str]:
    """A markdown table padded to line up in a terminal; columns in ``numeric`` right-aligned."""
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in numeric else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return [line(head), rule, *map(line, body)]


def to_compact(board: Leaderboard, more: str = "") -> str:
    """The terminal view: one aligned markdown table, rows in rank order (trained methods, then floors).

    Columns: ``method``, ``rank`` (Borda, floors included), ``seeds``, each protocol's
    main metric as ``mean ± ci95`` over seeds (3 decimals; headed by the protocol's
    name, a legend line names the metric), each label column and ``training`` (the
    training outcome; ``-`` for floors). Warnings are not repeated here: the command
    line prints them on stderr.

    Args:
        board: From :func:`sslbench.leaderboard.build`.
        more: A last line saying where every column is (``leaderboard.md``, ``--all``).
    """
    if board.empty:
        return "(no results)\n"
    mains = [m for m in board.main if m in board.table]
    labels = board.label_columns()
    head = ["method", "rank", "seeds", *(m.split(".", 1)[0] for m in mains), *labels, "training"]
    body = [[row_name(row), str(row.get("rank", "")), str(row["n_seeds"]), *(_cell(row, m, 3) for m in mains),
             *(_fmt(row.get(c)) for c in labels), "-" if row["floor"] else str(row[TRAIN_LABEL])]
            for _, row in board.table.iterrows()]
    lines = _aligned_table(head, body, numeric=set(range(1, 3 + len(mains))))
    lines += ["", "main metrics: " + ", ".join(f"{m.split('.', 1)[0]} = {m}" for m in mains),
              "± 95% CI over seeds (none for one seed); rank: Borda count over the labelled protocols' main metrics"]
    return "\n".join(lines + ([more] if more else [])) + "\n"


def to_json(board: Leaderboard) -> dict[str, Any]:
    """The leaderboard.json document (``schema_version`` :data:`SCHEMA_VERSION`).

    A metric not measured for a row is ``null``; one measured as NaN stays ``NaN``,
    so ``compare`` reads it as a failed reading rather than an absent one.
    """
    records = json.loads(board.table.to_json(orient="records")) if not board.empty else []
    for row in records:
        for col, v in row.items():
            if v is None and (row["method"], col) in board.measured:
                row[col] = float("nan")
    return {"schema_version": SCHEMA_VERSION, "rows": records, "notes": board.notes, "main_metrics": board.main,
            "directions": board.directions, "settings": board.settings, "floors": board.floors, "shown": board.shown,
            "fingerprints": board.fingerprints, "labels": {k: list(v) for k, v in board.labels.items()},
            "tolerances": board.tolerances}


def from_json(doc: dict[str, Any], source: str) -> Leaderboard:
    """A :class:`Leaderboard` of a leaderboard.json document (schema 2 or 3).

    Raises:
        SslbenchError: for another schema version or parts of the wrong type.
    """
    version = doc.get("schema_version")
    if version not in READABLE_VERSIONS:
        hint = " (it has no metric directions; rebuild it with `sslbench leaderboard DIR --write DIR`)" if version == 1 else ""
        raise SslbenchError(f"{source}: leaderboard schema_version {version!r} is not one of "
                            f"{', '.join(map(str, READABLE_VERSIONS))}{hint}")
    rows = _rows(doc, source)
    directions = doc.get("directions", {})
    if not isinstance(directions, dict) or not all(d in ("higher", "lower") for d in directions.values()):
        raise _malformed(source, "'directions' must map metrics to 'higher' or 'lower'")
    settings = _object(doc.get("settings", {}), source, "settings")
    if not all(isinstance(v, dict) and isinstance(v.get("params", {}), dict) for v in settings.values()):
        raise _malformed(source, "each of 'settings' must be an object, its 'params' an object")
    labels, tolerances = _legacy_meta(settings) if version == 2 else ({}, {})
    labels.update({k: tuple(v) for k, v in _strings_of(doc, "labels", source, lists=True).items()})
    tolerances.update(_strings_of(doc, "tolerances", source))
    measured = {(r["method"], col) for r in rows for col in directions if isinstance(r.get(col), int | float)}
    return Leaderboard(
        table=pd.DataFrame([{**r, "floor": bool(r.get("floor", r.get("reference", False)))} for r in rows]),
        notes=_list(doc, "notes", source), shown=_list(doc, "shown", source), main=_list(doc, "main_metrics", source),
        directions=directions, settings=settings, floors=_list(doc, "floors", source),
        fingerprints=_list(doc, "fingerprints", source), labels={TRAIN_LABEL: TRAIN_ORDER, **labels},
        tolerances=tolerances, measured=measured,
    )


def _malformed(source: str, what: str) -> SslbenchError:
    return SslbenchError(f"{source}: malformed leaderboard: {what}; regenerate it (`sslbench leaderboard DIR --write DIR`)")


def _rows(doc: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """The rows, each an object with a method name and a whole ``n_seeds``."""
    rows = doc.get("rows", [])
    if not isinstance(rows, list):
        raise _malformed(source, f"'rows' must be a list, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _malformed(source, f"row {i} is a {type(row).__name__}, not an object")
        if not isinstance(row.get("method"), str) or not row["method"]:
            raise _malformed(source, f"row {i} has no 'method' name")
        n = row.get("n_seeds")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int | float) or n < 0
                              or (isinstance(n, float) and not n.is_integer())):  # float(n) of a huge int overflows
            raise _malformed(source, f"row {i} ({row['method']}): 'n_seeds' must be a count, got {n!r}")
        big = [k for k, v in row.items() if isinstance(v, int) and not isinstance(v, bool) and abs(v) > sys.float_info.max]
        if big:  # JSON integers have no size limit; every reader takes a cell as a float
            raise _malformed(source, f"row {i} ({row['method']}): {big[0]!r} is a number past float range")
    return rows


def _list(doc: dict[str, Any], key: str, source: str) -> list[str]:
    v = doc.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _malformed(source, f"{key!r} must be a list of strings, got {str(v)[:80]}")
    return v


def _strings_of(doc: dict[str, Any], key: str, source: str, lists: bool = False) -> dict[str, Any]:
    """``doc[key]``: an object whose values are strings, or lists of strings with ``lists``."""
    v = _object(doc.get(key, {}), source, key)
    for x in v.values():
        if not (isinstance(x, list) and all(isinstance(s, str) for s in x) if lists else isinstance(x, str)):
            raise _malformed(source, f"{key!r} must map columns to {'lists of strings' if lists else 'strings'}, "
                                     f"got {str(x)[:80]}")
    return v


def _object(v: Any, source: str, key: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _malformed(source, f"{key!r} must be a JSON object, got {type(v).__name__}")
    return v


def _legacy_meta(settings: dict[str, Any]) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Label orders and tolerances of a schema-2 leaderboard: those of the registered protocols it names."""
    from sslbench.records import _registered_meta

    labels: dict[str, tuple[str, ...]] = {}
    tolerances: dict[str, str] = {}
    for proto in settings:
        meta = _registered_meta(proto)
        if meta is not None:
            labels.update({f"{proto}.{k}": tuple(v) for k, v in meta.labels.items()})
            tolerances.update({f"{proto}.{k}": v for k, v in meta.tolerances.items()})
    return labels, tolerances


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap;background:#fff}
th{background:#f0f0f0;position:sticky;top:0;vertical-align:bottom}
td:first-child,th:first-child{text-align:left;position:sticky;left:0;z-index:1}
th:first-child{z-index:2}
tr.floor td{background:#f7f7f7;font-style:italic}
th .metric{font-weight:normal;font-size:11px;color:#555}
.ci{color:#888;font-size:11px}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;color:#fff;font-size:12px;font-style:normal}
.b0{background:#2e7d32}.b1{background:#ef6c00}.b2{background:#c62828}.bna{background:#9e9e9e}
.scroll{overflow-x:auto}
img{max-width:100%;display:block;margin:0.5em 0 1em}
ul.badges{list-style:none;padding:0}ul.badges li{margin:2px 0}
"""


#: Labels shown as grey badges: nothing to judge.
_GREY = frozenset({"n/a", "not_trained", "external"})


def badge(board: Leaderboard, col: str, value: Any) -> str:
    """An html badge for a label column: green for the best value, orange, red for the worst,
    grey for ``n/a``, encoders not trained here and values of no known order."""
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    order = board.labels.get(col, ())
    known = [order.index(p) for p in (text.split("/") if text else []) if p in order]
    if not known or text in _GREY:
        cls = "bna"
    else:
        cls = f"b{min(2, round(2 * max(known) / max(1, len(order) - 1)))}"
    return f'<span class="badge {cls}">{html.escape(text or "-")}</span>'


def _html_metric(row: pd.Series, col: str, decimals: int = 4) -> str:
    """A metric cell: the mean and, in grey, its 95% CI over seeds when there is one."""
    v, ci = _fmt(row.get(col), decimals=decimals), row.get(f"{col}_ci95", float("nan"))
    ci_text = f' <span class="ci">± {ci:.{decimals}f}</span>' if v and isinstance(ci, float) and not math.isnan(ci) else ""
    return f"<td>{html.escape(v)}{ci_text}</td>"


def _html_row(board: Leaderboard, row: pd.Series, metrics: list[str], labels: list[str]) -> str:
    cells = [f"<td>{html.escape(row_name(row))}</td>", f"<td>{row.get('rank', '')}</td>",
             f"<td>{row.get('borda', 0.0):g}</td>", f"<td>{row['n_seeds']}</td>"]
    cells += [_html_metric(row, m) for m in metrics]
    for col in labels:
        cells.append(f"<td>{badge(board, col, row.get(col))}</td>")
    cells.append(f"<td>{badge(board, TRAIN_LABEL, row[TRAIN_LABEL])}</td><td>{_fmt(row['train.minutes'])}</td>")
    return f'<tr class="{"floor" if row["floor"] else "method"}">' + "".join(cells) + "</tr>"


def html_fragment(board: Leaderboard, metrics: list[str] | None = None) -> str:
    """The leaderboard, floor-delta table and notes as html (no ``<html>`` wrapper), for embedding."""
    if board.empty:
        return "<p>(no results)</p>"
    labels = board.label_columns()
    metrics = [m for m in _metric_columns(board, metrics) if m not in labels]
    head = ["method", "rank", "borda", "n_seeds", *metrics, *labels, TRAIN_LABEL, "train.minutes"]
    parts = ['<div class="scroll"><table class="leaderboard"><thead><tr>',
             "".join(f"<th>{html.escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    parts += [_html_row(board, row, metrics, labels) for _, row in board.table.iterrows()]
    parts.append("</tbody></table></div>")
    if board.deltas:
        parts.append('<p>Difference from the floors (row - floor, main metrics):</p><div class="scroll"><table class="deltas"><tr>')
        parts.append("".join(f"<th>{html.escape(h.replace('_vs_', ' vs '))}</th>" for h in ["method", *board.deltas]) + "</tr>")
        for _, row in board.table.iterrows():
            cells = "".join(f"<td>{_fmt(row.get(d), signed=True)}</td>" for d in board.deltas)
            parts.append(f"<tr><td>{html.escape(row_name(row))}</td>{cells}</tr>")
        parts.append("</table></div>")
    parts.append("<ul class=\"notes\">" + "".join(f"<li>{html.escape(n)}</li>" for n in board.notes) + "</ul>")
    return "".join(parts)


def compact_html(board: Leaderboard) -> str:
    """The compact view (:func:`to_compact`) as an html table: rank, seeds, each protocol's main
    metric (headed by protocol and metric) with its CI, the label badges and the training outcome."""
    if board.empty:
        return "<p>(no results)</p>"
    mains = [m for m in board.main if m in board.table]
    labels = board.label_columns()
    head = ["<th>method</th><th>rank</th><th>seeds</th>"]
    head += [f'<th>{html.escape(m.split(".", 1)[0])}<br><span class="metric">{html.escape(m.split(".", 1)[1])}</span></th>'
             for m in mains]
    head += [f"<th>{html.escape(c)}</th>" for c in labels] + ["<th>training</th>"]
    rows = []
    for _, row in board.table.iterrows():
        cells = [f"<td>{html.escape(row_name(row))}</td><td>{row.get('rank', '')}</td><td>{row['n_seeds']}</td>"]
        cells += [_html_metric(row, m, 3) for m in mains]
        cells += [f"<td>{badge(board, c, row.get(c))}</td>" for c in labels]
        cells.append(f"<td>{badge(board, TRAIN_LABEL, row[TRAIN_LABEL])}</td>")
        rows.append(f'<tr class="{"floor" if row["floor"] else "method"}">' + "".join(cells) + "</tr>")
    return ('<div class="scroll"><table class="compact"><thead><tr>' + "".join(head) + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


def page(title: str, body: str, css: str = "") -> str:
    """A complete self-contained html document (inline CSS, plus ``css``; no external resources)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}{css}</style></head><body>\n{body}\n</body></html>\n")


def to_html(board: Leaderboard, title: str = "sslbench leaderboard") -> str:
    """The leaderboard as one self-contained html page."""
    return page(title, f"<h1>{html.escape(title)}</h1>\n" + html_fragment(board))


def render(board: Leaderboard, fmt: str = "md") -> str:
    """The leaderboard in one of :data:`FORMATS`.

    Raises:
        SslbenchError: for an unknown format.
    """
    if fmt == "md":
        return to_markdown(board)
    if fmt == "csv":
        return board.table.to_csv(index=False)
    if fmt == "json":
        return json.dumps(to_json(board), indent=2) + "\n"
    if fmt == "html":
        return to_html(board)
    raise did_you_mean(fmt, FORMATS, "leaderboard format")


def write(board: Leaderboard, layout: RunLayout, split: str = "test") -> str:
    """Write ``leaderboard.{md,csv,json,html}`` (``leaderboard.val.*`` for ``split`` val) into
    ``layout``'s directory; return the markdown."""
    md = to_markdown(board)
    atomic_write_text(layout.leaderboard("md", split), md)
    atomic_write_text(layout.leaderboard("csv", split), board.table.to_csv(index=False))
    atomic_write_json(layout.leaderboard("json", split), to_json(board))
    atomic_write_text(layout.leaderboard("html", split), to_html(board))
    return md
