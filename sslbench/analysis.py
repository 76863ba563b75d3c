"""``sslbench analyze``: what the point changes to a loss did, from a finished sweep.

Three answers, each computed from the result JSONs and training logs of one or
more run directories (nothing is re-run):

1. **Variant effects.** For every variant with a base method, the difference of
   each protocol's main metric (variant - base) with a 95% Welch t-interval over
   seeds; the verdict is ``better`` or ``worse`` only when that interval excludes 0,
   else ``within noise``.
2. **Collapse.** Per run: the training outcome, the epoch from which the
   training-time monitor (``probe_status`` in ``metrics.jsonl``) read
   ``dimensional`` or ``complete`` to the end, its last and worst reading (and the
   first epoch of the worst), and the collapse protocol's status on the final encoder.
3. **Label-free vs labelled.** Spearman rank correlation, across all trained runs,
   of each label-free reading (RankMe, alpha-ReQ, uniformity, ...) with each
   labelled main metric (linear, kNN top-1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from sslbench.io import atomic_write_json, atomic_write_text
from sslbench.stats import welch_ci95
from sslbench.store import find_results
from sslbench.train import PROBE_WARMUP_STEPS

#: Label-free readings correlated with the labelled metrics (``collapse.`` prefix).
LABEL_FREE = ("rankme", "z_rankme", "alpha_req", "z_alpha_req", "uniformity", "z_uniformity", "z_alignment")
#: Labelled metrics they are compared with.
LABELLED = ("linear.top1", "knn.top1")
#: Columns printed as integers.
INTEGER_COLUMNS = frozenset({"seed", "n_seeds", "n_runs", "monitor_onset_epoch", "monitor_worst_epoch"})


def _runs(results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (method, seed): every numeric metric as ``<protocol>.<metric>``, plus run facts."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for r in results:
        row = rows.setdefault((r["method"], r["seed"]), {
            "method": r["method"], "seed": r["seed"], "base": r.get("base"),
            "trained": r.get("encoder_kind") == "trained", "train_status": r.get("train", {}).get("status"),
        })
        for k, v in r["metrics"].items():
            row[f"{r['protocol']['name']}.{k}"] = v
        row.setdefault("main", {})[r["protocol"]["name"]] = r["protocol"].get("main_metric")
        row.setdefault("directions", {}).update(
            {f"{r['protocol']['name']}.{k}": d for k, d in r["protocol"].get("directions", {}).items()}
        )
    return pd.DataFrame(list(rows.values()))


def variant_effects(runs: pd.DataFrame) -> pd.DataFrame:
    """Variant - base difference of each main metric, its 95% Welch half-width and a verdict."""
    out = []
    mains = sorted({f"{p}.{m}" for d in runs["main"] for p, m in d.items() if m and not p.startswith("collapse")})
    directions: dict[str, str] = {}
    for d in runs["directions"]:
        directions.update(d)
    for variant in sorted(runs.loc[runs["base"].notna(), "method"].unique()):
        base = runs.loc[runs["method"] == variant, "base"].iloc[0]
        if base not in set(runs["method"]):
            continue
        for metric in mains:
            if metric not in runs:
                continue
            a = runs.loc[runs["method"] == variant, metric].dropna().to_numpy(dtype=float)
            b = runs.loc[runs["method"] == base, metric].dropna().to_numpy(dtype=float)
            if not len(a) or not len(b):
                continue
            delta, ci = float(a.mean() - b.mean()), welch_ci95(a, b)
            sign = 1 if directions.get(metric, "higher") == "higher" else -1
            verdict = "needs 2+ seeds" if math.isnan(ci) else "within noise"
            if not math.isnan(ci) and abs(delta) > ci:
                verdict = "better" if sign * delta > 0 else "worse"
            out.append({"variant": variant, "base": base, "metric": metric, "base_mean": float(b.mean()),
                        "variant_mean": float(a.mean()), "delta": delta, "ci95": ci, "n_seeds": min(len(a), len(b)),
                        "verdict": verdict})
    return pd.DataFrame(out)


def _monitor(run_dir: Path) -> tuple[int | None, str, str, int | None]:
    """The training-time monitor's reading: ``(onset, final, worst, worst_epoch)``.

    ``onset`` is the epoch from which ``probe_status`` stayed ``dimensional`` or
    ``complete`` to the end (``None`` when the last reading is healthy), ``final`` the
    last status, ``worst`` the worst one and ``worst_epoch`` the first epoch that read
    it (``None`` when the worst is healthy). Readings before
    :data:`~sslbench.train.PROBE_WARMUP_STEPS` optimiser steps are skipped: eval-mode
    batch norm has not warmed up there.
    """
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None, "n/a", "n/a", None
    order = {"healthy": 0, "dimensional": 1, "complete": 2}
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    rows = [r for r in rows if "probe_status" in r and r.get("step", 0) >= PROBE_WARMUP_STEPS]
    if not rows:
        return None, "n/a", "n/a", None
    onset = None
    for r in rows:
        if r["probe_status"] == "healthy":
            onset = None
        elif onset is None:
            onset = int(r["epoch"])
    worst = max((r["probe_status"] for r in rows), key=lambda st: order.get(st, 0))
    worst_epoch = next(int(r["epoch"]) for r in rows if r["probe_status"] == worst) if worst != "healthy" else None
    return onset, rows[-1]["probe_status"], worst, worst_epoch


def collapse_table(runs: pd.DataFrame, dirs: list[Path]) -> pd.DataFrame:
    """Per trained run: training outcome, monitor's first collapsed epoch and kind, protocol status."""
    out = []
    for _, r in runs[runs["trained"]].sort_values(["method", "seed"]).iterrows():
        rdir = next((d / r["method"] / f"seed{r['seed']}" for d in dirs
                     if (d / r["method"] / f"seed{r['seed']}").is_dir()), None)
        onset, final, worst, worst_epoch = _monitor(rdir) if rdir else (None, "n/a", "n/a", None)
        out.append({"method": r["method"], "seed": int(r["seed"]), "train_status": r["train_status"],
                    "monitor_onset_epoch": onset, "monitor_final": final, "monitor_worst": worst,
                    "monitor_worst_epoch": worst_epoch, "protocol_status": r.get("collapse.status", "n/a")})
    return pd.DataFrame(out)


def label_free_agreement(runs: pd.DataFrame) -> pd.DataFrame:
    """Spearman rho (and p-value, n) of each label-free reading with each labelled metric over trained runs."""
    trained = runs[runs["trained"]]
    out = []
    for lf in LABEL_FREE:
        col = f"collapse.{lf}"
        if col not in trained:
            continue
        for lab in LABELLED:
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


def analyze(dirs: list[Path]) -> dict[str, pd.DataFrame]:
    """The three analyses over every result under ``dirs``.

    Returns:
        ``{"effects", "collapse", "agreement"}`` tables.
    """
    results = [r for d in dirs for r in find_results(d)]
    runs = _runs(results)
    return {"effects": variant_effects(runs), "collapse": collapse_table(runs, dirs),
            "agreement": label_free_agreement(runs)}


def to_markdown(tables: dict[str, pd.DataFrame]) -> str:
    """The analysis as one markdown document."""
    return (
        "## Variant effects (variant - base, 95% Welch interval over seeds)\n\n"
        + _md(tables["effects"])
        + "\n## Collapse (training-time monitor and final protocol status)\n\n"
        + _md(tables["collapse"])
        + "\n## Label-free vs labelled metrics (Spearman over trained runs)\n\n"
        + _md(tables["agreement"], ".3f")
    )


def write(tables: dict[str, pd.DataFrame], out: Path) -> str:
    """Write ``analysis.md`` and ``analysis.json`` into ``out``; return the markdown."""
    md = to_markdown(tables)
    atomic_write_text(out / "analysis.md", md)
    atomic_write_json(out / "analysis.json", {k: json.loads(v.to_json(orient="records")) for k, v in tables.items()})
    return md
