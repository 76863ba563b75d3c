"""Interaction: a knob's effect at each value of a second axis, the same effect under several
recipes, and whether a product of two knobs (Barlow Twins' lambda times D) lines the curves up.

**Pooled grids.** A family's sweeps (one base method) are pooled into one grid on
the union of their axes, each run placed by its own resolved recipe (so
``vicreg_mu``'s cells sit at ``train.batch_size = 256`` beside
``vicreg_mu_batch``'s 128 and 512) when the recipes are otherwise equal; a point
two sweeps share keeps the first sweep's runs only (the same seeds would count twice).

**Effect under several recipes.** For knob A and a second axis B (the others
fixed), the A values present at two or more values of B give effects ``A = hi``
minus ``A = lo`` (neighbouring such values, and the extremes) of each labelled
metric, each with a 95% Welch interval (:func:`sslbench.stats.welch_ci95`) at
every value of B that has both cells (two or more of them). Verdict: ``robust`` when every interval excludes 0 with one
sign; ``within noise`` when none excludes 0; otherwise ``recipe-dependent``;
``needs 2+ seeds`` when an interval is missing.

**Scaling.** For a knob and a scale axis (``loss.lambd`` and ``heads.proj_dim``),
each scale value's curve (cell means, or P(collapse)) is drawn against log10 of
the knob and against log10 of knob x scale; the mismatch is the mean absolute
difference between every two curves over their common x range (linear
interpolation, 50 points). ``collapses`` when the product's mismatch is under
half the knob's, ``partly`` when under it, else ``does not``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sslbench.atlas.cells import CellStats, all_cells
from sslbench.atlas.runs import AtlasRun, Coordinates
from sslbench.atlas.slices import Grid, Slice, sort_key, step

#: (knob, scale axis) pairs whose product is tested for lining the curves up.
SCALINGS = (("loss.lambd", "heads.proj_dim"),)
#: Points of the common x range where two curves are compared.
MISMATCH_POINTS = 50


@dataclass(frozen=True)
class EffectAt:
    """One effect under one recipe.

    Attributes:
        recipe: The second axis's value.
        delta: ``mean(knob = hi) - mean(knob = lo)``.
        ci95: Its Welch half-width (NaN with one seed on a side).
    """

    recipe: Any
    delta: float
    ci95: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval excludes 0."""
        return not math.isnan(self.ci95) and abs(self.delta) > self.ci95


@dataclass(frozen=True)
class Effect:
    """The effect of moving a knob from ``lo`` to ``hi`` on a metric, measured under several recipes.

    Attributes:
        grid: The grid.
        knob: The knob moved.
        lo: Its first value.
        hi: Its second value.
        metric: The labelled protocol.
        by: The axis whose values are the recipes.
        fixed: The other axes' values.
        at: The effect under each recipe.
        verdict: ``robust``, ``recipe-dependent``, ``within noise`` or ``needs 2+ seeds``.
    """

    grid: str
    knob: str
    lo: Any
    hi: Any
    metric: str
    by: str
    fixed: Coordinates
    at: tuple[EffectAt, ...]
    verdict: str


@dataclass(frozen=True)
class CurveFit:
    """How well one quantity's curves line up against the knob and against knob x scale.

    Attributes:
        quantity: A labelled metric, or ``P(collapse)``.
        mismatch_knob: Mean absolute mismatch against log10(knob).
        mismatch_product: The same against log10(knob x scale) (``None``: no common range).
        verdict: ``collapses``, ``partly``, ``does not`` or ``no overlap``.
    """

    quantity: str
    mismatch_knob: float | None
    mismatch_product: float | None
    verdict: str


@dataclass(frozen=True)
class Scaling:
    """Whether knob x scale lines a family of curves up (Barlow Twins' lambda x D).

    Attributes:
        grid: The grid.
        knob: The knob (``loss.lambd``).
        scale: The scale axis (``heads.proj_dim``).
        fixed: The other axes' values.
        boundaries: Per scale value, the interpolated knob values of the collapse boundary's
            crossings (none: no crossing) and the same times the scale.
        fits: One per quantity.
    """

    grid: str
    knob: str
    scale: str
    fixed: Coordinates
    boundaries: tuple[tuple[Any, tuple[float, ...], tuple[float, ...]], ...]
    fits: tuple[CurveFit, ...]


def verdict(at: Sequence[EffectAt]) -> str:
    """The verdict of one effect under several recipes (module docstring)."""
    if any(math.isnan(e.ci95) for e in at):
        return "needs 2+ seeds"
    if all(e.excludes_zero for e in at) and len({e.delta > 0 for e in at}) == 1:
        return "robust"
    if not any(e.excludes_zero for e in at):
        return "within noise"
    return "recipe-dependent"


def pooled_grids(runs: Sequence[AtlasRun]) -> list[Grid]:
    """Per family with two or more sweeps: its sweeps pooled on the union of their axes (module docstring)."""
    out = []
    for base in sorted({r.base for r in runs}):
        family = [r for r in runs if r.base == base]
        if len({r.sweep for r in family}) < 2:
            continue
        axes = tuple(dict.fromkeys(a for r in family for a, _ in r.coordinates))
        groups: dict[str, dict[tuple[Any, ...], AtlasRun]] = {}
        for r in family:
            point = tuple((a, r.value(a)) for a in axes)
            groups.setdefault(r.recipe_without(axes), {}).setdefault((point, r.seed), r)
        for i, group in enumerate(groups.values()):
            name = f"{base}:pooled" + (f"#{i + 1}" if len(groups) > 1 else "")
            moved = [dataclasses.replace(r, sweep=name, coordinates=point) for (point, _), r in group.items()]
            origins: dict[Coordinates, set[str]] = {}
            for (point, _), r in group.items():
                origins.setdefault(point, set()).add(r.sweep)
            if len({s for ss in origins.values() for s in ss}) > 1:
                out.append(Grid(name, base, axes, tuple(all_cells(moved)),
                                {p: tuple(sorted(s)) for p, s in origins.items()}))
    return out


def _groups(grid: Grid, knob: str, by: str) -> dict[Coordinates, dict[Any, dict[Any, CellStats]]]:
    """Cells by (the other axes' values) -> by-value -> knob value."""
    out: dict[Coordinates, dict[Any, dict[Any, CellStats]]] = {}
    for c in grid.cells:
        fixed = tuple((a, v) for a, v in c.coordinates if a not in (knob, by))
        out.setdefault(fixed, {}).setdefault(c.value(by), {})[c.value(knob)] = c
    return out


def _pairs(values: list[Any]) -> list[tuple[Any, Any]]:
    pairs = list(itertools.pairwise(values))
    return pairs + ([(values[0], values[-1])] if len(values) > 2 else [])


def effects(grid: Grid) -> list[Effect]:
    """Every effect of one knob between two of its values, under each value of another axis."""
    out = []
    metrics = sorted({m for c in grid.cells for m in c.metrics})
    for knob, by in itertools.permutations(grid.axes, 2):
        for fixed, by_recipe in _groups(grid, knob, by).items():
            if len(by_recipe) < 2:
                continue
            counts: dict[Any, int] = {}
            for cells in by_recipe.values():
                for v in cells:
                    counts[v] = counts.get(v, 0) + 1
            values = sorted((v for v, k in counts.items() if k >= 2), key=sort_key)
            for (lo, hi), m in itertools.product(_pairs(values), metrics):
                at = []
                for b in sorted(by_recipe, key=sort_key):
                    if lo not in by_recipe[b] or hi not in by_recipe[b]:
                        continue
                    s = step(by_recipe[b][lo], by_recipe[b][hi], m, knob)
                    if s is not None:
                        at.append(EffectAt(b, s.delta, s.ci95))
                if len(at) >= 2:
                    out.append(Effect(grid.name, knob, lo, hi, m, by, fixed, tuple(at), verdict(at)))
    return out


def _curve_mismatch(curves: list[tuple[np.ndarray, np.ndarray]]) -> float | None:
    """Mean absolute difference of every two curves ``(log10 x, y)`` over their common range."""
    diffs = []
    for (xa, ya), (xb, yb) in itertools.combinations(curves, 2):
        lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
        if hi <= lo:
            continue
        x = np.linspace(lo, hi, MISMATCH_POINTS)
        diffs.append(float(np.mean(np.abs(np.interp(x, xa, ya) - np.interp(x, xb, yb)))))
    return float(np.mean(diffs)) if diffs else None


def _fit(quantity: str, curves: dict[Any, list[tuple[float, float]]]) -> CurveFit:
    knob = [(np.log10([x for x, _ in pts]), np.array([y for _, y in pts])) for s, pts in curves.items()]
    product = [(np.log10([x * s for x, _ in pts]), np.array([y for _, y in pts])) for s, pts in curves.items()]
    mk, mp = _curve_mismatch(knob), _curve_mismatch(product)
    if mk is None or mp is None:
        return CurveFit(quantity, mk, mp, "no overlap")
    word = "collapses" if mp < 0.5 * mk else "partly" if mp < mk else "does not"
    return CurveFit(quantity, mk, mp, word)


def scalings(grid: Grid, sliced: Sequence[Slice]) -> list[Scaling]:
    """Whether knob x scale lines the curves up, for each :data:`SCALINGS` pair the grid has."""
    out = []
    for knob, scale in SCALINGS:
        if knob not in grid.axes or scale not in grid.axes:
            continue
        for fixed, by_scale in _groups(grid, knob, scale).items():
            usable = {s: cells for s, cells in by_scale.items() if len(cells) >= 2 and isinstance(s, int | float)
                      and all(isinstance(k, int | float) and k > 0 for k in cells)}
            if len(usable) < 2:
                continue
            quantities = sorted({m for cells in usable.values() for c in cells.values() for m in c.metrics})
            fits = []
            for q in [*quantities, "P(collapse)"]:
                curves = {s: [(k, _y(c, q)) for k, c in sorted(cells.items()) if _y(c, q) is not None]
                          for s, cells in usable.items()}
                curves = {s: pts for s, pts in curves.items() if len(pts) >= 2}
                if len(curves) >= 2:
                    fits.append(_fit(q, curves))
            out.append(Scaling(grid.name, knob, scale, fixed, _boundaries(sliced, knob, scale, fixed, usable),
                               tuple(fits)))
    return out


def _y(cell: CellStats, quantity: str) -> float | None:
    if quantity == "P(collapse)":
        return cell.collapse.p if cell.collapse is not None else None
    est = cell.metrics.get(quantity)
    return est.mean if est is not None else None


def _boundaries(sliced: Sequence[Slice], knob: str, scale: str, fixed: Coordinates,
                usable: dict[Any, Any]) -> tuple[tuple[Any, tuple[float, ...], tuple[float, ...]], ...]:
    out = []
    for s in sorted(usable, key=sort_key):
        want = tuple(sorted((*fixed, (scale, s))))
        sl = next((x for x in sliced if x.axis == knob and tuple(sorted(x.fixed)) == want), None)
        found = tuple(c.estimate for c in sl.boundary.crossings if c.estimate is not None) if sl is not None else ()
        out.append((s, found, tuple(e * s for e in found)))
    return tuple(out)
