"""The atlas as markdown tables (``atlas.md``) and as typed JSON (``atlas.json``, ``schema_version`` 1).

``atlas.json`` holds every dataclass of :class:`~sslbench.atlas.build.Atlas` as an
object of its fields: coordinates as ``{axis: value}`` objects, a slice's cells by
their coordinates (the cells themselves are in ``cells``), NaN as ``null``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from sslbench.atlas.build import Atlas
from sslbench.atlas.cells import CellStats, Estimate, Proportion
from sslbench.atlas.early import TARGET_FRACTION, TARGET_PRECISION
from sslbench.atlas.slices import Grid, Slice

SCHEMA_VERSION = 1
#: Fields holding ``((axis, value), ...)``, written as objects.
_COORDINATE_FIELDS = frozenset({"coordinates", "fixed"})


# ---------------------------------------------------------------- json


def _plain(value: Any, name: str = "") -> Any:
    """A JSON value of a dataclass tree (module docstring)."""
    if isinstance(value, Slice):
        doc = {f.name: _plain(getattr(value, f.name), f.name) for f in dataclasses.fields(value) if f.name != "cells"}
        return {**doc, "cells": [_plain(c.coordinates, "coordinates") for c in value.cells]}
    if isinstance(value, Grid):
        return {"name": value.name, "base": value.base, "axes": list(value.axes), "n_cells": len(value.cells),
                "origins": [{"coordinates": _plain(k, "coordinates"), "sweeps": list(v)}
                            for k, v in value.origins.items()]}
    if dataclasses.is_dataclass(value):
        doc = {f.name: _plain(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
        return {**doc, "p": value.p} if isinstance(value, Proportion) else doc
    if name in _COORDINATE_FIELDS:
        return {a: _plain(v) for a, v in value}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(atlas: Atlas) -> dict[str, Any]:
    """``atlas.json``."""
    return {"schema_version": SCHEMA_VERSION, **_plain(atlas)}


# ---------------------------------------------------------------- markdown


def _num(v: float | None, fmt: str = ".3f") -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _est(e: Estimate | None) -> str:
    if e is None:
        return ""
    return f"{e.mean:.4f}" + ("" if math.isnan(e.ci95) else f" ± {e.ci95:.4f}")


def _prop(p: Proportion | None) -> str:
    return "" if p is None else f"{p.k}/{p.n} [{p.lo:.2f}, {p.hi:.2f}]"


def _table(head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "(none)\n"
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def coords_text(c: tuple[tuple[str, Any], ...]) -> str:
    """``a=1, b=2`` (``-`` for none)."""
    return ", ".join(f"{a}={v}" for a, v in c) or "-"


def cell_row(c: CellStats, metrics: tuple[str, ...]) -> list[str]:
    """One cell as table text: coordinates, seeds, metrics, P(complete/dimensional/collapse), onset, settle."""
    onset = "" if c.onset.fraction is None else (
        f"{c.onset.fraction:.2f}" + ("" if c.onset.epoch is None else f" (ep {c.onset.epoch:.2f})"))
    settle = "" if c.settle.fraction is None else f"{c.settle.fraction:.2f}"
    return [coords_text(c.coordinates), str(len(c.seeds)), *(_est(c.metrics.get(m)) for m in metrics),
            _prop(c.complete), _prop(c.dimensional), _prop(c.collapse),
            f"{onset} ({c.onset.n_onset}/{c.onset.n_monitored})", f"{settle} ({c.settle.n_settled}/{c.settle.n})"]


def cells_md(atlas: Atlas) -> str:
    """One table per sweep: each cell's metrics, collapse probabilities, onset and settle fraction."""
    head = ["cell", "seeds", *(f"{m} (95% CI)" for m in atlas.metrics), "P(complete) [CP 95%]",
            "P(dimensional) [CP 95%]", "P(collapse) [CP 95%]", "onset (n/monitored)", "settle (n/n)"]
    parts = []
    for g in atlas.grids:
        parts.append(f"### {g.name} ({g.base}; axes {', '.join(g.axes)})\n\n"
                     + _table(head, [cell_row(c, atlas.metrics) for c in g.cells]))
    return "\n".join(parts)


def slices_md(atlas: Atlas) -> str:
    """One row per 1-D slice: knob values, each metric's trend, the collapse boundary."""
    rows = []
    for s in atlas.slices:
        trends = {t.metric: t.verdict for t in s.trends}
        rows.append([s.where, ", ".join(str(v) for v in s.values), *(trends.get(m, "") for m in atlas.metrics),
                     s.boundary.summary])
    return _table(["slice", "values", *(f"{m} trend" for m in atlas.metrics), "collapse boundary (P = 1/2)"], rows)


def effects_md(atlas: Atlas) -> str:
    """One row per effect: its value under each recipe and the verdict."""
    rows = [[e.grid, f"{e.knob} {e.lo} -> {e.hi}", e.metric, e.by, coords_text(e.fixed),
             "; ".join(f"{a.recipe}: {a.delta:+.4f}" + ("" if math.isnan(a.ci95) else f" ± {a.ci95:.4f}")
                       for a in e.at), e.verdict] for e in atlas.effects]
    return _table(["grid", "effect", "metric", "under each", "fixed", "delta ± 95% Welch", "verdict"], rows)


def scalings_md(atlas: Atlas) -> str:
    """Per scaling: each quantity's mismatch against the knob and the product, and the boundaries."""
    parts = []
    for s in atlas.scalings:
        rows = [[f.quantity, _num(f.mismatch_knob, ".4f"), _num(f.mismatch_product, ".4f"), f.verdict] for f in s.fits]
        bounds = [[str(v), ", ".join(f"{x:.3g}" for x in k) or "none", ", ".join(f"{x:.3g}" for x in p) or "none"]
                  for v, k, p in s.boundaries]
        parts.append(f"### {s.grid}: {s.knob} x {s.scale}" + (f" at {coords_text(s.fixed)}" if s.fixed else "") + "\n\n"
                     + _table(["quantity", f"mismatch vs {s.knob}", f"mismatch vs {s.knob} x {s.scale}", "verdict"], rows)
                     + "\n" + _table([s.scale, f"boundary in {s.knob}", f"boundary in {s.knob} x {s.scale}"], bounds))
    return "\n".join(parts) or "(no grid crosses a knob with its scale axis)\n"


def agreement_md(atlas: Atlas) -> str:
    """One row per (family, reading, metric): Kendall tau, its bootstrap interval, and the flag."""
    rows = [[a.family, a.reading, a.metric, f"{_num(a.tau)} [{_num(a.lo)}, {_num(a.hi)}]", str(a.n_cells),
             f"FLAG: optimised by the {a.optimised_by}" if a.optimised_by else ""] for a in atlas.agreements]
    return _table(["family", "reading", "metric", "Kendall tau [95% bootstrap]", "cells", "no independent witness"], rows)


def early_md(atlas: Atlas) -> str:
    """The rules' scores and whether the target is met."""
    rows = [[("**default** " if r.default else "") + r.rule, str(r.n_runs), f"{r.tp}/{r.fp}/{r.fn}/{r.tn}",
             "" if r.precision is None else f"{r.precision:.2f} [{r.precision_lo:.2f}, {r.precision_hi:.2f}]",
             _num(r.recall, ".2f"), _num(r.median_call_fraction, ".2f"), f"{r.saved_fraction:.2f}", r.target]
            for r in atlas.rules]
    met = [r.rule for r in atlas.rules if r.target != "not met"]
    goal = f"call within the first {TARGET_FRACTION:.0%} of steps at >= {TARGET_PRECISION:.0%} precision"
    if not atlas.rules:
        line = f"Target ({goal}): not evaluated, no run has both monitor readings and a final status."
    elif met:
        line = f"Target ({goal}): met by {len(met)} rule(s): {'; '.join(met)}."
    else:
        line = f"Target ({goal}): **not met** by any rule."
    return line + "\n\n" + _table(["rule", "runs", "TP/FP/FN/TN", "precision [CP 95%]", "recall",
                                   "median call fraction", "compute saved", "target"], rows)


def to_markdown(atlas: Atlas) -> str:
    """``atlas.md``."""
    notes = "".join(f"- {m}\n" for m in atlas.messages)
    return (
        "# Collapse atlas\n\n"
        f"{atlas.n_runs} sweep runs in {len(atlas.cells)} cells from {', '.join(atlas.dirs)} (split {atlas.split}); "
        "metrics are each labelled protocol's main metric. Definitions and interval rules: docs/atlas/README.md.\n\n"
        + (f"## Notes\n\n{notes}\n" if notes else "")
        + "## Cells (mean ± 95% t-interval over seeds; P over seeds with exact Clopper-Pearson intervals)\n\n"
        + cells_md(atlas)
        + "\n## 1-D slices: dose-response trend and collapse boundary\n\n" + slices_md(atlas)
        + "\n## Interaction: one knob's effect under each value of another axis\n\n" + effects_md(atlas)
        + "\n## Scaling: does knob x scale line the curves up\n\n" + scalings_md(atlas)
        + "\n## Label-free readings vs accuracy (Kendall tau-b across a family's cells)\n\n" + agreement_md(atlas)
        + "\n## Early call (monitor series replayed against the final status)\n\n" + early_md(atlas)
    )
