"""Leaderboard: one row per method, mean and 95% CI over seeds, written as md/csv/json.

Columns are ``<protocol>.<metric>`` (accuracies as fractions), each with a
``<protocol>.<metric>_ci95`` half-width (Student-t over seeds; empty for one
seed) and ``n_seeds``. Reference rows (floors) are marked and listed last.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from sslbench.io import atomic_write_json, atomic_write_text

REFERENCE_ENCODERS = ("random_init", "raw_pixels")


def ci95(values: list[float]) -> float:
    """Half-width of the 95% Student-t interval of the mean; NaN for fewer than 2 values."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def build(results: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[str]]:
    """Aggregate result records into the leaderboard table.

    Args:
        results: Result dicts (schema 1).

    Returns:
        ``(table, notes)``: one row per method; notes list protocol settings and
        warnings (mixed data fingerprints or protocol versions).
    """
    per_method: dict[str, dict[str, dict[int, float]]] = {}
    labels: dict[str, dict[str, set[str]]] = {}
    info: dict[str, dict[str, Any]] = {}
    settings: dict[str, dict[str, Any]] = {}
    versions: dict[str, set[str]] = {}
    fingerprints: set[str] = set()
    shown: dict[str, None] = {}  # directed metric columns, main metric of each protocol first
    for r in results:
        m, seed, proto = r["method"], r["seed"], r["protocol"]["name"]
        settings[proto] = r["protocol"]["params"]
        versions.setdefault(proto, set()).add(str(r["protocol"]["version"]))
        fingerprints.add(r["dataset"]["fingerprint"])
        cols = per_method.setdefault(m, {})
        directions = r["protocol"].get("directions", {})
        main = r["protocol"].get("main_metric")
        for k in [main, *directions]:
            if k in r["metrics"]:
                shown[f"{proto}.{k}"] = None
        for k, v in r["metrics"].items():
            if isinstance(v, int | float):
                cols.setdefault(f"{proto}.{k}", {})[seed] = float(v)
            else:
                labels.setdefault(m, {}).setdefault(f"{proto}.{k}", set()).add(str(v))
        i = info.setdefault(m, {"seeds": set(), "status": set(), "train_s": {}})
        i["seeds"].add(seed)
        i["status"].add(r.get("train", {}).get("status", "finished"))
        i["train_s"][seed] = r.get("timings", {}).get("train_s", 0.0)
        i["reference"] = r.get("encoder_kind", "trained") not in ("trained", "external")  # external: `sslbench eval`
    rows = []
    for m, cols in per_method.items():
        i = info[m]
        row: dict[str, Any] = {"method": m, "reference": i["reference"], "n_seeds": len(i["seeds"])}
        row["train.status"] = "/".join(sorted(i["status"]))
        row["train.minutes"] = round(float(np.mean(list(i["train_s"].values()))) / 60, 2)
        for col, by_seed in sorted(cols.items()):
            vals = list(by_seed.values())
            row[col] = float(np.mean(vals))
            row[f"{col}_ci95"] = ci95(vals)
        for col, values in labels.get(m, {}).items():
            row[col] = "/".join(sorted(values))
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        key = "linear.top1" if "linear.top1" in table else table.columns[-1]
        table = table.sort_values(["reference", key], ascending=[True, False], kind="stable").reset_index(drop=True)
    notes = []
    for proto, params in sorted(settings.items()):
        notes.append(f"{proto} (v{'/'.join(sorted(versions[proto]))}): " + ", ".join(f"{k}={v}" for k, v in params.items()))
    for proto, vs in versions.items():
        if len(vs) > 1:
            notes.append(f"WARNING: {proto} results come from different protocol versions {sorted(vs)}")
    if len(fingerprints) > 1:
        notes.append(f"WARNING: results come from {len(fingerprints)} different data fingerprints")
    first_seen = {c: i for i, c in enumerate(shown)}
    # labelled protocols first, label-free collapse readings last; each keeps its main metric first
    order = sorted(first_seen, key=lambda c: (c.startswith("collapse."), c.split(".")[0], first_seen[c]))
    table.attrs["shown"] = [c for c in order if c in table]
    return table, notes


def _fmt(v: Any, col: str) -> str:
    if isinstance(v, float) and math.isnan(v):
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def to_markdown(table: pd.DataFrame, notes: list[str], metrics: list[str] | None = None) -> str:
    """Markdown table: ``mean ± ci95`` per metric column, then the notes.

    Args:
        table: From :func:`build`.
        notes: From :func:`build`.
        metrics: Metric columns to show (default: the directed metrics, each
            protocol's main metric first, then any ``.status`` column).
    """
    if table.empty:
        return "(no results)\n"
    if metrics is None:
        metrics = table.attrs.get("shown") or [
            c for c in table.columns if "." in c and not c.endswith("_ci95") and not c.startswith("train.")
        ]
        metrics += [c for c in table.columns if c.endswith(".status") and c != "train.status"]
    head = ["method", "n_seeds", *metrics, "train.status", "train.minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells = [row["method"] + (" (floor)" if row["reference"] else ""), str(row["n_seeds"])]
        for m in metrics:
            v, ci = row.get(m, float("nan")), row.get(f"{m}_ci95", float("nan"))
            cell = _fmt(v, m)
            if cell and isinstance(ci, float) and not math.isnan(ci):
                cell += f" ± {ci:.4f}"
            cells.append(cell)
        cells += [str(row["train.status"]) if not row["reference"] else "-", _fmt(row["train.minutes"], "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + "".join(f"- {n}\n" for n in notes)


def write(table: pd.DataFrame, notes: list[str], out: Path) -> str:
    """Write ``leaderboard.{md,csv,json}`` into ``out``; return the markdown."""
    md = to_markdown(table, notes)
    atomic_write_text(out / "leaderboard.md", md)
    atomic_write_text(out / "leaderboard.csv", table.to_csv(index=False))
    records = json.loads(table.to_json(orient="records"))
    atomic_write_json(out / "leaderboard.json", {"schema_version": 1, "rows": records, "notes": notes})
    return md
