"""``sslbench report DIR``: one self-contained HTML page of a sweep.

The page holds, in order: badges per method (every ordered label a protocol
records, such as ``collapse.status``, and the training outcome), the leaderboard
(:func:`sslbench.leaderboard_render.html_fragment`), a bar chart with 95% CI
whiskers per protocol main metric (floors grey, with a dashed line at each
floor's value), the spectra per method (the artifacts a protocol declares as
``"spectrum"`` plots, such as the collapse suite's ``spectrum_backbone`` and
``spectrum_projector``, each divided by its largest value) and the training
curves per method from the training log (loss, its named terms, the std of the
l2-normalised embeddings against ``1/sqrt(D)``, probe RankMe).

Every figure is a PNG made with matplotlib's Agg canvas (no display, no
pyplot state) and embedded as a ``data:image/png;base64`` URI; the CSS is
inline. The file references nothing outside itself.
"""

from __future__ import annotations

import base64
import html
import io
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
from sslbench.layout import RunLayout, RunPaths
from sslbench.leaderboard import TRAIN_LABEL, Leaderboard
from sslbench.leaderboard_render import badge, html_fragment, page, row_name
from sslbench.records import MetricMeta, ResultRecord
from sslbench.store import load_records
from sslbench.training_log import read_log

#: Training-log columns that are not loss terms.
NOT_TERMS = frozenset({"epoch", "step", "lr", "world_size", "loss", "std_l2", "std_l2_ref", "images_per_s",
                       "data_share", "epoch_s"})
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


def run_dirs(dirs: Iterable[Path], records: list[ResultRecord]) -> dict[str, list[RunPaths]]:
    """Method -> its run directories that hold results, sorted by seed."""
    out: dict[str, dict[Path, RunPaths]] = {}
    for d in dirs:
        layout = RunLayout(d)
        for r in records:
            paths = layout.run(r.run.method, r.run.seed)
            if paths.dir.is_dir():
                out.setdefault(r.run.method, {})[paths.dir] = paths
    return {m: sorted(ps.values(), key=lambda p: (p.seed, str(p.dir))) for m, ps in out.items()}


def read_curves(paths: RunPaths) -> pd.DataFrame:
    """The numeric columns of a run's training log, one row per epoch (empty when absent)."""
    return pd.DataFrame([row.numbers for row in read_log(paths.metrics_log)])


def spectrum_plots(records: list[ResultRecord]) -> dict[str, list[str]]:
    """Protocol -> its artifacts drawn as spectra (declared ``"spectrum"`` plots)."""
    out: dict[str, list[str]] = {}
    for r in records:
        names = [k for k, kind in r.protocol.meta.plots.items() if kind == "spectrum"]
        if names:
            out[r.protocol.name] = names
    return out


def read_spectra(paths: RunPaths, plots: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """The declared spectra in a run's artifacts, by artifact name (``{}`` when absent)."""
    out: dict[str, np.ndarray] = {}
    for proto, names in plots.items():
        path = paths.artifacts(proto)
        if not path.exists():
            continue
        try:
            with np.load(path, allow_pickle=False) as npz:
                out.update({k: np.asarray(npz[k], dtype=np.float64) for k in names if k in npz})
        except (OSError, ValueError):
            continue
    return out


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
    colors = [FLOOR_COLOR if floor else METHOD_COLOR for floor in rows["floor"]]
    x = np.arange(len(rows))
    ax.bar(x, values, yerr=ci if ci.any() else None, color=colors, capsize=3, ecolor="#333")
    for _, floor in rows[rows["floor"]].iterrows():
        ax.axhline(floor[metric], color=FLOOR_COLOR, linestyle="--", linewidth=0.8)
    ax.set_xticks(x, list(rows["method"]), rotation=45, ha="right", fontsize=8)
    ax.set_title(f"{metric} ({direction} is better; whiskers: 95% CI over seeds)", fontsize=9)
    if len(values):
        lo, hi = float(np.min(values - ci)), float(np.max(values + ci))
        pad = 0.1 * (hi - lo or abs(hi) or 1.0)
        ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
    return png_data_uri(fig)


def spectrum_chart(spectra: dict[str, dict[str, np.ndarray]], names: list[str]) -> str:
    """Normalised spectra (``s / s_max``, log scale) of every method, one panel per artifact name."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    fig, axes = _figure(ncols=len(names), width=5.0 * len(names), height=3.8)
    for ax, key in zip(axes[0], names, strict=True):
        for i, (method, arrays) in enumerate(spectra.items()):
            s = arrays.get(key)
            if s is None or not len(s) or not np.isfinite(s).all() or s.max() <= 0:
                continue
            s = np.sort(s)[::-1] / s.max()
            style = ("-", "--", ":")[(i // 20) % 3]  # tab20 has 20 colours; then the line style changes
            ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s, 1e-12), style, label=method, linewidth=1.2,
                        color=cmap(i % 20))
        ax.set_title(f"{key}: sorted values / largest", fontsize=9)
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


def badges_section(board: Leaderboard, metas: dict[str, MetricMeta]) -> str:
    """One line per method: each ordered label and the training outcome as badges, with the readings
    (main metric and declared readings) of the protocols that give those labels."""
    items = []
    for _, row in board.table.iterrows():
        parts, readings = [], []
        for col in board.label_columns():
            proto = col.split(".")[0]
            parts.append(f"{html.escape(col.split('.', 1)[1])} {badge(board, col, row.get(col))}")
            meta = metas.get(proto)
            for name in dict.fromkeys([meta.main, *meta.readings][:3] if meta else []):
                v = row.get(f"{proto}.{name}")
                if isinstance(v, float) and math.isfinite(v):
                    readings.append(f"{name} {v:.4g}")
        parts.append(f"training {badge(board, TRAIN_LABEL, row.get(TRAIN_LABEL))}")
        items.append(f"<li><b>{html.escape(row_name(row))}</b> {' '.join(parts)} "
                     f'<span class="ci">{html.escape(", ".join(readings))}</span></li>')
    return '<ul class="badges">' + "".join(items) + "</ul>"


def bars_section(board: Leaderboard) -> str:
    """One bar chart per protocol main metric."""
    parts = [_img(bar_chart(board.table, m, board.directions.get(m, "higher")), f"bar chart of {m}")
             for m in board.main if m in board.table]
    return "".join(parts) or "<p>no main metrics</p>"


def spectrum_section(runs: dict[str, list[RunPaths]], methods: list[str], plots: dict[str, list[str]]) -> str:
    """The spectrum chart (first seed of each method) and the methods that recorded none."""
    names = [n for ns in plots.values() for n in ns]
    spectra = {m: read_spectra(runs[m][0], plots) for m in methods if m in runs}
    spectra = {m: s for m, s in spectra.items() if s}
    missing = [m for m in methods if m not in spectra]
    parts = [_img(spectrum_chart(spectra, names), "spectra")] if spectra else []
    if missing:
        parts.append(f"<p>no spectrum recorded for: {html.escape(', '.join(missing))}</p>")
    return "".join(parts)


def curves_section(runs: dict[str, list[RunPaths]], methods: list[str]) -> str:
    """Training curves for each method with a ``metrics.jsonl``."""
    parts, none = [], []
    for m in methods:
        curves = [(p.dir.name, df) for p in runs.get(m, []) if not (df := read_curves(p)).empty]
        if curves:
            parts.append(f"<h3>{html.escape(m)}</h3>" + _img(curves_chart(m, curves), f"training curves of {m}"))
        else:
            none.append(m)
    if none:
        parts.append(f"<p>no training curves (not trained or no metrics.jsonl): {html.escape(', '.join(none))}</p>")
    return "".join(parts)


def build_report(dirs: list[str | Path], title: str | None = None, group_by: list[str] | None = None,
                 sort_by: str | None = None) -> str:
    """The report page of one or several run directories.

    Args:
        dirs: Run directories (``--out`` of ``sslbench run``/``eval``).
        title: Page title (default: ``sslbench report: <dirs>``).
        group_by: Sweep axes to group the leaderboard's sweep rows by
            (:func:`sslbench.leaderboard.build`); the per-method sections stay per cell.
        sort_by: A sweep axis or a metric column to order the leaderboard by.

    Returns:
        The self-contained HTML document.

    Raises:
        SslbenchError: for a path that is not a directory or holds no results.
    """
    records = load_records(dirs)
    board = leaderboard.build(records, group_by, sort_by)
    runs = run_dirs([Path(d) for d in dirs], records)
    metas = {r.protocol.name: r.protocol.meta for r in records}
    methods = list(board.table["method"]) if not group_by else list(leaderboard.build(records, None, sort_by).table["method"])
    title = title or "sslbench report: " + ", ".join(str(d) for d in dirs)
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Collapse and training outcome</h2>", badges_section(board, metas),
        "<h2>Leaderboard</h2>", html_fragment(board),
        "<h2>Main metrics</h2>", bars_section(board),
        "<h2>Spectrum</h2>", spectrum_section(runs, methods, spectrum_plots(records)),
        "<h2>Training curves</h2>", curves_section(runs, methods),
    ]
    return page(title, "\n".join(body))


def write_report(dirs: list[str | Path], out: str | Path | None = None, group_by: list[str] | None = None,
                 sort_by: str | None = None) -> Path:
    """Write the report to ``out`` (default ``<first dir>/report.html``) and return its path."""
    if not dirs:
        raise SslbenchError("report: give at least one run directory")
    path = Path(out) if out else RunLayout(dirs[0]).report
    atomic_write_text(path, build_report(dirs, group_by=group_by, sort_by=sort_by))
    return path
