"""The atlas's figures: dose-response curves with their bands, and P(collapse) heatmaps of 2-D grids.

``dose-<sweep>-<axis>.png``: one panel per labelled metric (cell means, band: the
95% t-interval over seeds where there are 2+) and one of P(collapse) (band: the
Clopper-Pearson interval), one line per 1-D slice of that axis (the other axes
fixed). ``phase-<sweep>-<A>-<B>.png``: P(collapse) of a two-axis sweep, ``k/n``
written in each cell. Every figure is drawn on matplotlib's Agg canvas (no
display, no pyplot state).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sslbench.atlas.build import Atlas
from sslbench.atlas.slices import Grid, Slice, sort_key


@dataclass(frozen=True)
class Figure:
    """One atlas figure.

    Attributes:
        name: Its file name (``dose-vicreg_mu-loss.var_coeff.png``).
        title: What it shows, for alt text and captions.
        figure: The matplotlib Figure.
    """

    name: str
    title: str
    figure: Any


def _canvas(ncols: int, width: float, height: float) -> tuple[Any, Any]:
    """A Figure on an Agg canvas and its row of axes."""
    os.environ.setdefault("MPLCONFIGDIR", str(Path.home() / ".cache" / "matplotlib"))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def file_name(*parts: str) -> str:
    """``dose-<sweep>-<axis>.png`` with any character but letters, digits, ``.``, ``_``, ``+``, ``-`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "-".join(parts)) + ".png"


def _positions(values: list[Any]) -> tuple[np.ndarray, str]:
    """x positions of knob values and the scale: ``log`` (all positive, spanning 10x), ``symlog``
    (the same with a 0), ``linear``, or ``category`` (not all numbers)."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        order = sorted(set(values), key=sort_key)
        return np.array([order.index(v) for v in values], dtype=float), "category"
    x = np.array(values, dtype=float)
    pos = x[x > 0]
    if len(pos) and (x >= 0).all() and pos.max() / pos.min() >= 10:
        return x, "log" if len(pos) == len(x) else "symlog"
    return x, "linear"


def _set_scale(ax: Any, scale: str, values: list[Any]) -> None:
    if scale == "log":
        ax.set_xscale("log")
    elif scale == "symlog":
        ax.set_xscale("symlog", linthresh=min(v for v in values if v > 0))
    elif scale == "category":
        order = sorted(set(values), key=sort_key)
        ax.set_xticks(range(len(order)), [str(v) for v in order])


def _panel(ax: Any, s: Slice, quantity: str, color: str, scale: str) -> None:
    """One slice's line and band of ``quantity`` (a metric, or ``P(collapse)``)."""
    cells = [c for c in s.cells if (c.collapse if quantity == "P(collapse)" else c.metrics.get(quantity)) is not None]
    if not cells:
        return
    x, _ = _positions([c.value(s.axis) for c in s.cells])
    x = x[[s.cells.index(c) for c in cells]]
    if quantity == "P(collapse)":
        y = np.array([c.collapse.p for c in cells])
        lo, hi = np.array([c.collapse.lo for c in cells]), np.array([c.collapse.hi for c in cells])
    else:
        est = [c.metrics[quantity] for c in cells]
        y, ci = np.array([e.mean for e in est]), np.array([e.ci95 for e in est])
        lo, hi = y - ci, y + ci  # NaN where one seed: no band there
    label = ", ".join(f"{a.rpartition('.')[2]}={v}" for a, v in s.fixed) or s.axis
    ax.plot(x, y, "o-", color=color, label=label, linewidth=1.4, markersize=4)
    ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)


def dose_figure(atlas: Atlas, grid: Grid, axis: str) -> Figure | None:
    """The dose-response figure of one sweep axis (``None`` when it has no slice)."""
    sl = [s for s in atlas.slices if s.grid == grid.name and s.axis == axis]
    if not sl:
        return None
    quantities = [*atlas.metrics, "P(collapse)"]
    fig, axes = _canvas(len(quantities), 4.2 * len(quantities), 3.4)
    values = sorted({v for s in sl for v in s.values}, key=sort_key)
    _, scale = _positions(values)
    for ax, q in zip(axes, quantities):
        for i, s in enumerate(sl):
            _panel(ax, s, q, f"C{i % 10}", scale)
        _set_scale(ax, scale, values)
        if q == "P(collapse)":
            ax.axhline(0.5, color="#c62828", linestyle=":", linewidth=1)
            ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(axis, fontsize=9)
        ax.set_title(f"{grid.name}: {q}" + ("" if q == "P(collapse)" else " (main metric)"), fontsize=10, loc="left")
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    axes[-1].legend(fontsize=7, loc="best")
    bands = "bands: 95% t-interval over seeds (none at one seed); P(collapse): Clopper-Pearson 95%"
    fig.suptitle(bands, fontsize=8, color="#555")
    return Figure(file_name("dose", grid.name, axis), f"dose-response of {grid.name} along {axis}", fig)


def phase_figure(grid: Grid) -> Figure | None:
    """P(collapse) over a two-axis sweep (``None`` for any other grid or without statuses)."""
    if len(grid.axes) != 2 or not any(c.collapse for c in grid.cells):
        return None
    a, b = grid.axes
    xs = sorted({c.value(a) for c in grid.cells}, key=sort_key)
    ys = sorted({c.value(b) for c in grid.cells}, key=sort_key)
    p = np.full((len(ys), len(xs)), np.nan)
    fig, axes = _canvas(1, 1.1 * len(xs) + 2.6, 0.7 * len(ys) + 1.8)
    ax = axes[0]
    for c in grid.cells:
        if c.collapse is None:
            continue
        i, j = ys.index(c.value(b)), xs.index(c.value(a))
        p[i, j] = c.collapse.p
        ax.text(j, i, f"{c.collapse.k}/{c.collapse.n}", ha="center", va="center", fontsize=8,
                color="white" if c.collapse.p > 0.6 else "black")
    image = ax.imshow(np.ma.masked_invalid(p), cmap="Reds", vmin=0, vmax=1, origin="lower", aspect="auto")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs], fontsize=8)
    ax.set_yticks(range(len(ys)), [str(v) for v in ys], fontsize=8)
    ax.set_xlabel(a, fontsize=9)
    ax.set_ylabel(b, fontsize=9)
    ax.set_title(f"{grid.name}: P(collapse), complete or dimensional", fontsize=10, loc="left")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return Figure(file_name("phase", grid.name, a, b), f"P(collapse) of {grid.name} over {a} x {b}", fig)


def figures(atlas: Atlas) -> list[Figure]:
    """Every figure: a dose-response per sweep axis with slices, a heatmap per two-axis sweep."""
    out = []
    for g in atlas.grids:
        out += [f for axis in g.axes if (f := dose_figure(atlas, g, axis)) is not None]
        if (f := phase_figure(g)) is not None:
            out.append(f)
    return out
