"""The atlas of one or more output directories: every table, computed once into one typed :class:`Atlas`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sslbench.atlas.agreement import Agreement, agreements
from sslbench.atlas.cells import CellStats, all_cells, metric_names
from sslbench.atlas.early import RuleScore, score_rules
from sslbench.atlas.interaction import Effect, Scaling, effects, pooled_grids, scalings
from sslbench.atlas.runs import AtlasInput, read_runs
from sslbench.atlas.slices import Grid, Slice, slices


@dataclass(frozen=True)
class Atlas:
    """Everything the atlas reports.

    Attributes:
        dirs: The output directories read.
        split: The split of the result records.
        n_runs: Sweep runs read.
        metrics: The labelled protocols measured (``knn``, ``linear``).
        grids: One per sweep.
        pooled: Per family with 2+ sweeps, its sweeps pooled (:func:`~sslbench.atlas.interaction.pooled_grids`).
        cells: Every sweep cell.
        slices: The 1-D slices of the sweeps, then those of the pooled grids that span two sweeps.
        effects: Each knob's effect between two values under each value of another axis.
        scalings: Whether knob x scale lines the curves up.
        agreements: Label-free readings against accuracy, per family.
        rules: The early-call rules replayed (the default first).
        messages: What was left out and why (runs without coordinates, slices of one cell, ...).
    """

    dirs: tuple[str, ...]
    split: str
    n_runs: int
    metrics: tuple[str, ...]
    grids: tuple[Grid, ...]
    pooled: tuple[Grid, ...]
    cells: tuple[CellStats, ...]
    slices: tuple[Slice, ...]
    effects: tuple[Effect, ...]
    scalings: tuple[Scaling, ...]
    agreements: tuple[Agreement, ...]
    rules: tuple[RuleScore, ...]
    messages: tuple[str, ...]


def sweep_grids(cells: Iterable[CellStats]) -> list[Grid]:
    """One grid per sweep, its axes in the sweep's order."""
    by_sweep: dict[str, list[CellStats]] = {}
    for c in cells:
        by_sweep.setdefault(c.sweep, []).append(c)
    return [Grid(name, cs[0].base, tuple(a for a, _ in cs[0].coordinates), tuple(cs)) for name, cs in by_sweep.items()]


def _input_messages(inp: AtlasInput) -> list[str]:
    out = []
    if inp.not_swept:
        out.append(f"{len(inp.not_swept)} runs without sweep coordinates left out: {', '.join(inp.not_swept[:8])}"
                   + (" ..." if len(inp.not_swept) > 8 else ""))
    no_status = [r.label for r in inp.runs if r.status is None]
    if no_status:
        out.append(f"{len(no_status)} runs have no collapse result (no final status; left out of P(collapse) "
                   f"and the early call): {', '.join(no_status[:8])}" + (" ..." if len(no_status) > 8 else ""))
    no_monitor = [r.label for r in inp.runs if not r.monitor]
    if no_monitor:
        out.append(f"{len(no_monitor)} runs have no monitor readings: {', '.join(no_monitor[:8])}"
                   + (" ..." if len(no_monitor) > 8 else ""))
    return out


def build_atlas(dirs: Iterable[str | Path], split: str = "test") -> Atlas:
    """The atlas of the sweep runs under ``dirs``.

    Raises:
        SslbenchError: for no results, or results without sweep coordinates (:func:`read_runs`).
    """
    inp = read_runs(dirs, split)
    cells = all_cells(inp.runs)
    grids, pooled = sweep_grids(cells), pooled_grids(inp.runs)
    messages = _input_messages(inp)
    sliced: list[Slice] = []
    for g in grids:
        found, notes = slices(g)
        sliced += found
        messages += notes
    pooled_slices = {g.name: [s for s in slices(g)[0] if g.spans_sweeps(s.cells)] for g in pooled}
    pooled_families = {g.base for g in pooled}
    effect_grids = [*pooled, *(g for g in grids if g.base not in pooled_families)]
    found_effects = [e for g in effect_grids for e in effects(g)]
    found_scalings = [s for g in grids for s in scalings(g, [x for x in sliced if x.grid == g.name])]
    families: dict[str, list[CellStats]] = {}
    for g in [*pooled, *(g for g in grids if g.base not in pooled_families)]:
        families.setdefault(g.base, []).extend(g.cells)
    found_agreements = [a for fam, cs in sorted(families.items()) for a in agreements(fam, cs)]
    return Atlas(inp.dirs, split, len(inp.runs), tuple(metric_names(inp.runs)), tuple(grids), tuple(pooled),
                 tuple(cells), tuple(sliced + [s for ss in pooled_slices.values() for s in ss]),
                 tuple(found_effects), tuple(found_scalings), tuple(found_agreements),
                 tuple(score_rules(inp.runs)), tuple(messages))
