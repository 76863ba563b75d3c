"""``sslbench report DIR``: one self-contained HTML page of a sweep.

The page holds, in order: the compact leaderboard (rank, seeds, each protocol's
main metric with its 95% CI, label badges, training outcome; every column, the
floor deltas and the notes fold out below it), a bar chart per protocol main
metric, badges per method (every ordered label a protocol records, such as
``collapse.status``, and the training outcome, with the readings behind them),
the spectra per method (the artifacts a protocol declares as ``"spectrum"``
plots, such as the collapse suite's ``spectrum_backbone`` and
``spectrum_projector``: covariance eigenvalues, each divided by its largest)
the training curves per method from the training log (loss, its named
terms, the std of the l2-normalised embeddings against ``1/sqrt(D)``, probe
RankMe) and, when the results carry sweep coordinates, the collapse atlas
(:mod:`sslbench.atlas`: per-cell collapse odds, boundaries, dose-response and
P(collapse) figures).

The charts are meant to be read, not only drawn: bars start at 0 (a bar's
length is its value), each carries its value, whiskers are 95% CIs over seeds
and a chart of one seed says ``n = 1`` instead; floors are grey with a dashed
line at their value. Charts sit in a grid that fills the page's width.

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
from sslbench.embedding_stats import SPECTRUM_DEAD_FRACTION
from sslbench.errors import SslbenchError
from sslbench.io import atomic_write_text
from sslbench.layout import RunLayout, RunPaths
from sslbench.leaderboard import TRAIN_LABEL, Leaderboard
from sslbench.leaderboard_render import (
    badge,
    compact_html,
    html_fragment,
    page,
    row_name,
)
from sslbench.records import MetricMeta, ResultRecord
from sslbench.store import load_records
from sslbench.training_log import read_log

#: Training-log columns that are not loss terms.
NOT_TERMS = frozenset({"epoch", "step", "lr", "world_size", "loss", "std_l2", "std_l2_ref", "images_per_s",
                       "data_share", "epoch_s"})
METHOD_COLOR = "#1f77b4"
FLOOR_COLOR = "#9e9e9e"
#: Smallest value a log-scale spectrum draws (an exact zero would be off the axis).
SPECTRUM_FLOOR = 1e-12
#: The report's own layout: charts in a grid as wide as the page.
REPORT_CSS = """
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:0.5em 1.5em;align-items:start}
.charts.wide-cells{grid-template-columns:repeat(auto-fill,minmax(560px,1fr))}
.charts img{width:100%;margin:0}
.wide img{width:100%;max-width:1400px}
details{margin:0.5em 0 1.5em}summary{cursor:pointer;color:#1f4e9e}
p.legend{color:#555;font-size:13px;margin:0.2em 0 1em}
"""


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


def _seeds_caption(n_seeds: list[int]) -> str:
    """What the whiskers of a chart of rows with these seed counts are."""
    lo, hi = min(n_seeds), max(n_seeds)
    if hi <= 1:
        return "n = 1 seed per row: no interval"
    if lo == hi:
        return f"whiskers: 95% CI over n = {hi} seeds"
    return f"whiskers: 95% CI over seeds (n = {lo}-{hi}; none where n = 1)"


def bar_ylim(values: np.ndarray, ci: np.ndarray) -> tuple[float, float]:
    """The y range of a bar chart: from 0 (a bar's length is its value; a negative bar goes below 0)
    to past the highest whisker, with room for the value labels.

    Args:
        values: ``(R,)`` bar heights.
        ci: ``(R,)`` whisker half-widths (0 where there is none).
    """
    lo, hi = float(np.min(values - ci)), float(np.max(values + ci))
    pad = 0.12 * (max(hi, 0.0) - min(lo, 0.0) or 1.0)
    return min(lo, 0.0) - (pad if lo < 0 else 0.0), max(hi, 0.0) + pad


def bar_chart(table: pd.DataFrame, metric: str, direction: str) -> str:
    """Bars of ``metric`` per row from 0, each with its value and its 95% CI whisker (when it has more
    than one seed); floors grey, with a dashed line at their value.

    Returns:
        The PNG as a data URI.
    """
    rows = table[pd.to_numeric(table.get(metric), errors="coerce").notna()] if metric in table else table.iloc[:0]
    fig, axes = _figure(width=5.2, height=3.6)
    ax = axes[0, 0]
    values = rows[metric].astype(float).to_numpy()
    ci = pd.to_numeric(rows.get(f"{metric}_ci95", pd.Series(np.nan, index=rows.index)), errors="coerce").to_numpy()
    n_seeds = [int(n) for n in rows["n_seeds"]] if "n_seeds" in rows else [1] * len(rows)
    colors = [FLOOR_COLOR if floor else METHOD_COLOR for floor in rows["floor"]]
    x = np.arange(len(rows))
    ax.bar(x, values, color=colors, width=0.7)
    has_ci = np.isfinite(ci)  # one seed: no interval, so no whisker (not a whisker of 0)
    if has_ci.any():
        ax.errorbar(x[has_ci], values[has_ci], yerr=ci[has_ci], fmt="none", ecolor="#333", capsize=3, linewidth=1)
    for xi, v, reach in zip(x, values, np.where(has_ci, ci, 0.0), strict=True):  # each value past its whisker
        ax.annotate(f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}", (xi, v + reach if v >= 0 else v - reach),
                    xytext=(0, 2 if v >= 0 else -2), textcoords="offset points", ha="center",
                    va="bottom" if v >= 0 else "top", fontsize=8)
    for _, floor in rows[rows["floor"]].iterrows():
        ax.axhline(floor[metric], color=FLOOR_COLOR, linestyle="--", linewidth=0.8, zorder=0)
    names = [m if len(set(n_seeds)) == 1 else f"{m}\nn = {n}" for m, n in zip(rows["method"], n_seeds, strict=True)]
    ax.set_xticks(x, names, rotation=30, ha="right", rotation_mode="anchor", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(f"{metric}\n", fontsize=11, loc="left")
    ax.text(0, 1.03, f"{direction} is better; {_seeds_caption(n_seeds or [1])}", transform=ax.transAxes, fontsize=8.5,
            color="#555", va="bottom")
    if len(values):
        ax.set_ylim(*bar_ylim(values, np.where(has_ci, ci, 0.0)))
    ax.spines[["top", "right"]].set_visible(False)
    return png_data_uri(fig)


def _layer(name: str) -> str:
    """``spectrum_backbone`` -> ``backbone``: the layer a spectrum artifact was read from."""
    return name.removeprefix("spectrum_") or name


def spectrum_chart(spectra: dict[str, dict[str, np.ndarray]], key: str) -> str:
    """Covariance eigenvalues of every method's artifact ``key``, each divided by its largest, log scale,
    with the line below which a dimension counts as collapsed (:data:`SPECTRUM_DEAD_FRACTION`)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    fig, axes = _figure(width=6.4, height=4.2)
    ax = axes[0, 0]
    for i, (method, arrays) in enumerate(spectra.items()):
        s = arrays.get(key)
        if s is None or not len(s) or not np.isfinite(s).all() or s.max() <= 0:
            continue
        s = np.sort(s)[::-1] / s.max()
        style = ("-", "--", ":")[(i // 20) % 3]  # tab20 has 20 colours; then the line style changes
        ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s, SPECTRUM_FLOOR), style, label=method, linewidth=1.2,
                    color=cmap(i % 20))
    ax.axhline(SPECTRUM_DEAD_FRACTION, color="#c62828", linestyle=":", linewidth=1.2,
               label=f"collapsed dimension: below {SPECTRUM_DEAD_FRACTION:g}")
    ax.set_title(f"{_layer(key)}: eigenvalues of the feature covariance\n", fontsize=11, loc="left")
    ax.text(0, 1.03, "each divided by its largest; first seed of each method", transform=ax.transAxes, fontsize=8.5,
            color="#555", va="bottom")
    ax.set_xlabel("rank k", fontsize=9)
    ax.set_ylabel(r"$\lambda_k\,/\,\lambda_1$", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, ncol=2, loc="lower left")
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
    """One bar chart per protocol main metric, in a grid."""
    parts = [_img(bar_chart(board.table, m, board.directions.get(m, "higher")), f"bar chart of {m}")
             for m in board.main if m in board.table]
    if not parts:
        return "<p>no main metrics</p>"
    legend = ('<p class="legend">Blue: methods; grey: floors, with a dashed line at each floor\'s value. '
              "Bars start at 0.</p>")
    return legend + '<div class="charts">' + "".join(parts) + "</div>"


def spectrum_section(runs: dict[str, list[RunPaths]], methods: list[str], plots: dict[str, list[str]]) -> str:
    """The spectrum charts (first seed of each method), one per declared artifact, and the methods
    that recorded none."""
    names = [n for ns in plots.values() for n in ns]
    spectra = {m: read_spectra(runs[m][0], plots) for m in methods if m in runs}
    spectra = {m: s for m, s in spectra.items() if s}
    missing = [m for m in methods if m not in spectra]
    parts = []
    if spectra:
        charts = [_img(spectrum_chart(spectra, n), f"covariance eigenvalues, {_layer(n)}") for n in names
                  if any(n in s for s in spectra.values())]
        parts.append('<p class="legend">Eigenvalues of the covariance of the l2-normalised features, largest first, '
                     "each divided by the largest (the spectrum of Jing et al. 2022, ICLR); a cliff marks collapsed "
                     f"dimensions. Dotted red: {SPECTRUM_DEAD_FRACTION:g} of the largest, below which a dimension "
                     f"counts as collapsed. Exact zeros are drawn at {SPECTRUM_FLOOR:g}.</p>")
        parts.append('<div class="charts wide-cells">' + "".join(charts) + "</div>")
    if missing:
        parts.append(f"<p>no spectrum recorded for: {html.escape(', '.join(missing))}</p>")
    return "".join(parts)


def curves_section(runs: dict[str, list[RunPaths]], methods: list[str]) -> str:
    """Training curves for each method with a ``metrics.jsonl``."""
    parts, none = [], []
    for m in methods:
        curves = [(p.dir.name, df) for p in runs.get(m, []) if not (df := read_curves(p)).empty]
        if curves:
            parts.append(f"<h3>{html.escape(m)}</h3><div class=\"wide\">"
                         + _img(curves_chart(m, curves), f"training curves of {m}") + "</div>")
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
        "<h2>Leaderboard</h2>", compact_html(board),
        "<details><summary>Every column, the differences from the floors and the notes</summary>",
        html_fragment(board), "</details>",
        "<h2>Main metrics</h2>", bars_section(board),
        "<h2>Collapse and training outcome</h2>", badges_section(board, metas),
        "<h2>Spectrum</h2>", spectrum_section(runs, methods, spectrum_plots(records)),
        "<h2>Training curves</h2>", curves_section(runs, methods),
    ]
    if any(r.run.sweep is not None for r in records):
        from sslbench.atlas.build import build_atlas
        from sslbench.atlas.report_section import atlas_section

        body += ["<h2>Collapse atlas</h2>", atlas_section(build_atlas(dirs))]
    return page(title, "\n".join(body), REPORT_CSS)


def write_report(dirs: list[str | Path], out: str | Path | None = None, group_by: list[str] | None = None,
                 sort_by: str | None = None) -> Path:
    """Write the report to ``out`` (default ``<first dir>/report.html``) and return its path."""
    if not dirs:
        raise SslbenchError("report: give at least one run directory")
    path = Path(out) if out else RunLayout(dirs[0]).report
    atomic_write_text(path, build_report(dirs, group_by=group_by, sort_by=sort_by))
    return path
