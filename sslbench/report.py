"""``sslbench report DIR``: one self-contained HTML page of a sweep.

The page holds, in order: collapse badges per method (``collapse.status`` and
the training outcome), the leaderboard (:func:`sslbench.leaderboard.html_fragment`),
a bar chart with 95% CI whiskers per protocol main metric (floors grey, with a
dashed line at each floor's value), the singular-value spectrum per method
(from ``results/collapse.artifacts.npz``: ``spectrum_backbone`` and
``spectrum_projector``, each divided by its largest value) and the training
curves per method from ``metrics.jsonl`` (loss, its named terms, the std of
the l2-normalised embeddings against ``1/sqrt(D)``, probe RankMe).

Every figure is a PNG made with matplotlib's Agg canvas (no display, no
pyplot state) and embedded as a ``data:image/png;base64`` URI; the CSS is
inline. The file references nothing outside itself.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sslbench import leaderboard
from sslbench.errors import SslbenchError
from sslbench.io import atomic_write_text

#: metrics.jsonl keys that are not loss terms.
NOT_TERMS = frozenset({"epoch", "step", "lr", "world_size", "loss", "std_l2", "std_l2_ref", "images_per_s",
                       "data_share", "epoch_s"})
SPECTRUM_LAYERS = (("spectrum_backbone", "backbone"), ("spectrum_projector", "projector"))
METHOD_COLOR = "#1f77b4"
FLOOR_COLOR = "#9e9e9e"


def _figure(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 3.6) -> tuple[Any, Any]:
    """A matplotlib Figure on an Agg canvas (no pyplot, no global backend) and its axes array."""
    os.environ.setdefault("MPLCONFIGDIR", str(Path.home() / ".cache" / "matplotlib"))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def png_data_uri(fig: Any) -> str:
    """Render a Figure to PNG and return it as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


# ---------------------------------------------------------------- inputs


def run_dirs(dirs: Iterable[Path], results: list[dict[str, Any]]) -> dict[str, list[Path]]:
    """Method -> its run directories (``<dir>/<method>/seed<k>``) that hold results, sorted by seed."""
    out: dict[str, set[Path]] = {}
    for d in dirs:
        for r in results:
            rdir = Path(d) / r["method"] / f"seed{r['seed']}"
            if rdir.is_dir():
                out.setdefault(r["method"], set()).add(rdir)
    return {m: sorted(ps, key=lambda p: (int(p.name.removeprefix("seed")), str(p))) for m, ps in out.items()}


def read_curves(rdir: Path) -> pd.DataFrame:
    """The numeric columns of ``<rdir>/metrics.jsonl``, one row per epoch (empty when absent)."""
    path = rdir / "metrics.jsonl"
    if not path.exists():
        return pd.DataFrame()
    rows = []
    for ln in path.read_text().splitlines():
        try:
            row = json.loads(ln)
        except json.JSONDecodeError:
            continue  # a line cut by a kill; the resume rewrites it
        rows.append({k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    return pd.DataFrame(rows)


def read_spectra(rdir: Path) -> dict[str, np.ndarray]:
    """``spectrum_backbone``/``spectrum_projector`` of ``results/collapse.artifacts.npz`` (``{}`` when absent)."""
    path = rdir / "results" / "collapse.artifacts.npz"
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k], dtype=np.float64) for k, _ in SPECTRUM_LAYERS if k in npz}
    except (OSError, ValueError):
        return {}


# ---------------------------------------------------------------- figures


def bar_chart(table: pd.DataFrame, metric: str, direction: str) -> str:
    """Bars of ``metric`` per row with 95% CI whiskers; floors grey, with a dashed line at their value.

    Returns:
        The PNG as a data URI.
    """
    rows = table[pd.to_numeric(table.get(metric), errors="coerce").notna()] if metric in table else table.iloc[:0]
    fig, axes = _figure(width=max(4.0, 0.5 * len(rows) + 1.5), height=3.4)
    ax = axes[0, 0]
    values = rows[metric].astype(float).to_numpy()
    ci = pd.to_numeric(rows.get(f"{metric}_ci95", pd.Series(np.nan, index=rows.index)), errors="coerce").fillna(0.0).to_numpy()
    colors = [FLOOR_COLOR if ref else METHOD_COLOR for ref in rows["reference"]]
    x = np.arange(len(rows))
    ax.bar(x, values, yerr=ci if ci.any() else None, color=colors, capsize=3, ecolor="#333")
    for _, floor in rows[rows["reference"]].iterrows():
        ax.axhline(floor[metric], color=FLOOR_COLOR, linestyle="--", linewidth=0.8)
    ax.set_xticks(x, list(rows["method"]), rotation=45, ha="right", fontsize=8)
    ax.set_title(f"{metric} ({direction} is better; whiskers: 95% CI over seeds)", fontsize=9)
    if len(values):
        lo, hi = float(np.min(values - ci)), float(np.max(values + ci))
        pad = 0.1 * (hi - lo or abs(hi) or 1.0)
        ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
    return png_data_uri(fig)


def spectrum_chart(spectra: dict[str, dict[str, np.ndarray]]) -> str:
    """Normalised spectra (``s / s_max``, log scale) of every method, one panel per layer."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    fig, axes = _figure(ncols=len(SPECTRUM_LAYERS), width=10.0, height=3.8)
    for ax, (key, layer) in zip(axes[0], SPECTRUM_LAYERS, strict=True):
        for i, (method, arrays) in enumerate(spectra.items()):
            s = arrays.get(key)
            if s is None or not len(s) or not np.isfinite(s).all() or s.max() <= 0:
                continue
            s = np.sort(s)[::-1] / s.max()
            style = ("-", "--", ":")[(i // 20) % 3]  # tab20 has 20 colours; then the line style changes
            ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s, 1e-12), style, label=method, linewidth=1.2,
                        color=cmap(i % 20))
        ax.set_title(f"{layer}: sorted singular values / largest", fontsize=9)
        ax.set_xlabel("index", fontsize=8)
        ax.axhline(1e-5, color="#c62828", linestyle=":", linewidth=0.8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2)
    return png_data_uri(fig)


def _series(ax: Any, colors: dict[str, str], x: Any, y: Any, name: str, first: bool, style: str = "-") -> None:
    """One line of a per-seed series: the same colour for every seed, a legend entry for the first."""
    color = colors.setdefault(name, f"C{len(colors) % 10}")
    ax.plot(x, y, style, marker=".", color=color, alpha=0.9 if first else 0.45, label=name if first else None)


def curves_chart(method: str, curves: list[tuple[str, pd.DataFrame]]) -> str:
    """Training curves of one method (one line per seed, same colour): loss, terms, std_l2, probe RankMe."""
    from matplotlib.ticker import MaxNLocator

    fig, axes = _figure(ncols=4, width=14.0, height=3.0)
    ax_loss, ax_terms, ax_std, ax_rank = axes[0]
    c_loss: dict[str, str] = {}
    c_terms: dict[str, str] = {}
    c_std: dict[str, str] = {}
    c_rank: dict[str, str] = {}
    for i, (_, df) in enumerate(curves):
        first = i == 0
        x = df["epoch"] if "epoch" in df else np.arange(1, len(df) + 1)
        if "loss" in df:
            _series(ax_loss, c_loss, x, df["loss"], "loss", first)
        for term in [c for c in df.columns if c not in NOT_TERMS and not c.startswith("probe_")]:
            _series(ax_terms, c_terms, x, df[term], term, first)
        for col, style in (("std_l2", "-"), ("probe_std_l2", "--")):
            if col in df:
                _series(ax_std, c_std, x, df[col], col, first, style)
        if "std_l2_ref" in df and first:
            ax_std.axhline(float(df["std_l2_ref"].iloc[-1]), color="#2e7d32", linestyle=":", linewidth=1, label="1/sqrt(D)")
        if "probe_rankme" in df:
            _series(ax_rank, c_rank, x, df["probe_rankme"], "probe_rankme", first)
    seeds = ", ".join(label for label, _ in curves)
    titles = ("loss", "loss terms", "std of l2-normalised z", "probe RankMe")
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(f"{method}: {title}", fontsize=9)
        ax.set_xlabel(f"epoch ({seeds})", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    return png_data_uri(fig)


# ---------------------------------------------------------------- sections


def badges_section(table: pd.DataFrame) -> str:
    """One line per method: collapse status and training outcome as badges, with the collapse readings."""
    items = []
    for _, row in table.iterrows():
        readings = ", ".join(
            f"{c.split('.', 1)[1]} {row[c]:.4g}" for c in ("collapse.rankme", "collapse.z_rankme", "collapse.z_std_l2")
            if c in row and isinstance(row[c], float) and math.isfinite(row[c])
        )
        collapse = leaderboard.badge("collapse.status", row.get("collapse.status"))
        train = leaderboard.badge("train.status", row.get("train.status"))
        items.append(f"<li><b>{html.escape(leaderboard._name(row))}</b> collapse {collapse} training {train} "
                     f'<span class="ci">{html.escape(readings)}</span></li>')
    return '<ul class="badges">' + "".join(items) + "</ul>"


def bars_section(table: pd.DataFrame) -> str:
    """One bar chart per protocol main metric."""
    directions = table.attrs.get("directions", {})
    parts = [_img(bar_chart(table, m, directions.get(m, "higher")), f"bar chart of {m}")
             for m in table.attrs.get("main", []) if m in table]
    return "".join(parts) or "<p>no main metrics</p>"


def spectrum_section(runs: dict[str, list[Path]], methods: list[str]) -> str:
    """The spectrum chart (first seed of each method) and the methods that recorded none."""
    spectra = {m: read_spectra(runs[m][0]) for m in methods if m in runs}
    spectra = {m: s for m, s in spectra.items() if s}
    missing = [m for m in methods if m not in spectra]
    parts = [_img(spectrum_chart(spectra), "singular-value spectra")] if spectra else []
    if missing:
        parts.append(f"<p>no spectrum recorded for: {html.escape(', '.join(missing))}</p>")
    return "".join(parts)


def curves_section(runs: dict[str, list[Path]], methods: list[str]) -> str:
    """Training curves for each method with a ``metrics.jsonl``."""
    parts, none = [], []
    for m in methods:
        curves = [(p.name, df) for p in runs.get(m, []) if not (df := read_curves(p)).empty]
        if curves:
            parts.append(f"<h3>{html.escape(m)}</h3>" + _img(curves_chart(m, curves), f"training curves of {m}"))
        else:
            none.append(m)
    if none:
        parts.append(f"<p>no training curves (not trained or no metrics.jsonl): {html.escape(', '.join(none))}</p>")
    return "".join(parts)


def build_report(dirs: list[str | Path], title: str | None = None) -> str:
    """The report page of one or several run directories.

    Args:
        dirs: Run directories (``--out`` of ``sslbench run``/``eval``).
        title: Page title (default: ``sslbench report: <dirs>``).

    Returns:
        The self-contained HTML document.

    Raises:
        SslbenchError: for a path that is not a directory or holds no results.
    """
    results = leaderboard.load_results(dirs)
    table, notes = leaderboard.build(results)
    runs = run_dirs([Path(d) for d in dirs], results)
    methods = list(table["method"])
    title = title or "sslbench report: " + ", ".join(str(d) for d in dirs)
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Collapse and training outcome</h2>", badges_section(table),
        "<h2>Leaderboard</h2>", leaderboard.html_fragment(table, notes),
        "<h2>Main metrics</h2>", bars_section(table),
        "<h2>Singular-value spectrum</h2>", spectrum_section(runs, methods),
        "<h2>Training curves</h2>", curves_section(runs, methods),
    ]
    return leaderboard.page(title, "\n".join(body))


def write_report(dirs: list[str | Path], out: str | Path | None = None) -> Path:
    """Write the report to ``out`` (default ``<first dir>/report.html``) and return its path."""
    if not dirs:
        raise SslbenchError("report: give at least one run directory")
    path = Path(out) if out else Path(dirs[0]) / "report.html"
    atomic_write_text(path, build_report(dirs))
    return path
