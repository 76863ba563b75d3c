"""Sweeps: a declared grid (:class:`sslbench.config.Sweep`) expanded into cells, and the plan of a run.

A **cell** is one row of the leaderboard: a plain method (or variant, or floor)
or one point of a sweep's grid. A sweep cell is its base method with the
point's loss and target fields changed (a variant, :func:`sslbench.method.derive_variant`)
and its train, heads and views fields changed on top of the resolved recipe
(:class:`sslbench.config.RecipeChanges`, which win over every other source).
A **run** is a cell and a seed; the plan lists every run of one ``sslbench run``.

Expansion is deterministic: the cartesian product of the axes in declaration
order, the last axis varying fastest. A cell's name is derived from its
coordinates alone, so the same point has the same name (and run directory) in
every invocation::

    vicreg_var-var_coeff_5-proj_dim_256

``<sweep>``, then ``-<axis>_<value>`` per axis, where ``<axis>`` is the field
name (``<section>.<field>`` when two axes share a field name). Floats are
written shortest-first (``5``, ``0.5``, ``1e-05``), ``[lo, hi]`` pairs as
``lo+hi``. A name that would not be a safe path component
(:func:`sslbench.layout.check_path_name`: longer than 128 characters, or a string
value with other characters) becomes ``<sweep>-<10 hex digits>``, a hash of the
coordinates.

A sweep with a ``bisect`` table (a boundary search, :mod:`sslbench.bisect_sweep`) has
no fixed cells: its probes are cells of the same kind (:func:`probe_cell`), named
the same way with the searched axis first (``vicreg_mu-var_coeff_0.7906``), chosen
round by round from the readings of the earlier ones, so :func:`build_plan` leaves
them out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sslbench.config import MAX_RUNS, RecipeChanges, RunConfig, Sweep
from sslbench.errors import SslbenchError
from sslbench.layout import RESERVED_NAMES, SAFE_NAME, check_path_name
from sslbench.method import Method, derive_variant
from sslbench.records import SweepInfo
from sslbench.registry import registry

#: Where a method registered by code or a config file (not built in, not an entry point) is
#: re-registered in a worker process that did not read that file.
_WORKER_SOURCE = "the parent process"


@dataclass(frozen=True)
class Cell:
    """One row of a run: a method, or one point of a sweep.

    Attributes:
        name: The row name and run directory (``<out>/<name>/seed<k>``).
        method: The method to build (a sweep cell's loss and target changes applied).
        changes: Recipe changes on top of the resolved recipe (a sweep cell's train,
            heads and views coordinates).
        seeds: Its seeds.
        sweep: Its sweep and coordinates (``None`` for a plain method).
    """

    name: str
    method: Method
    changes: RecipeChanges | None
    seeds: tuple[int, ...]
    sweep: SweepInfo | None = None

    @classmethod
    def of_method(cls, method: Method, seeds: tuple[int, ...]) -> Cell:
        """The cell of a plain method (or variant, or floor)."""
        return cls(method.name, method, None, seeds)


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: a cell and a seed.

    Attributes:
        cell: The cell.
        seed: The seed.
    """

    cell: Cell
    seed: int

    @property
    def label(self) -> str:
        """``<cell>/seed<k>``, as :attr:`sslbench.layout.RunPaths.label` writes it."""
        return f"{self.cell.name}/seed{self.seed}"


@dataclass(frozen=True)
class Plan:
    """Every run of one ``sslbench run``, in the order workers take them.

    Attributes:
        runs: The runs, seed-major: every cell's first seed before any cell's second,
            so a sweep cut short has every cell on its first seeds.
        cells: The cells, in plan order.
    """

    runs: tuple[PlannedRun, ...]
    cells: tuple[Cell, ...]

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Iterator[PlannedRun]:
        return iter(self.runs)

    def worker_methods(self) -> dict[str, Method]:
        """Methods a worker process must register before it runs these cells: the bases of the
        cells that a config file or code registered (built-ins and entry points load themselves)."""
        methods = registry("methods")
        out: dict[str, Method] = {}
        for cell in self.cells:
            for name in (cell.method.name, cell.method.base):
                if name and name in methods and _registered_here(name):
                    out[name] = methods.get(name)
        return out


def _registered_here(name: str) -> bool:
    source = registry("methods").source(name)
    return source != "builtin" and not source.startswith("entry point")


def register_worker_methods(methods: dict[str, Method]) -> None:
    """Register, in a worker process, the methods :meth:`Plan.worker_methods` listed (once)."""
    reg = registry("methods")
    for name, method in methods.items():
        if name not in reg:
            reg.register(name, method, source=_WORKER_SOURCE)


def format_value(value: Any) -> str:
    """A coordinate value as a cell name writes it: ``5``, ``0.5``, ``1e-05``, ``true``, ``0.2+1``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    if isinstance(value, list | tuple):
        return "+".join(format_value(v) for v in value)
    return str(value)


def _short_axes(axes: tuple[str, ...]) -> list[str]:
    """Each axis by its field name, or ``<section>.<field>`` where two axes share a field name."""
    fields = [a.partition(".")[2] for a in axes]
    return [f if fields.count(f) == 1 else a for a, f in zip(axes, fields)]


def cell_name(sweep: str, coordinates: dict[str, Any]) -> str:
    """The stable name of the cell of ``sweep`` at ``coordinates`` (module docstring)."""
    parts = [f"{short}_{format_value(v)}" for short, v in zip(_short_axes(tuple(coordinates)), coordinates.values())]
    name = "-".join([sweep, *parts])
    if SAFE_NAME.fullmatch(name) and name not in RESERVED_NAMES:
        return name
    digest = hashlib.sha256(json.dumps(coordinates, sort_keys=False, default=list).encode()).hexdigest()[:10]
    return f"{sweep[:116]}-{digest}"


def _cell(sweep: Sweep, base: Method, coordinates: dict[str, Any], seeds: tuple[int, ...]) -> Cell:
    """The cell of ``sweep`` at ``coordinates``."""
    name = check_path_name(cell_name(sweep.name, coordinates), f"{sweep.source or sweep.name}: cell name")
    by_section: dict[str, dict[str, Any]] = {s: {} for s in ("loss", "target", "train", "heads", "views")}
    for axis, value in coordinates.items():
        section, _, field = axis.partition(".")
        by_section[section][field] = value
    summary = f"{sweep.name}: " + ", ".join(f"{k}={format_value(v)}" for k, v in coordinates.items())
    if by_section["loss"] or by_section["target"]:
        method = derive_variant(base, name, summary, loss=by_section["loss"], target=by_section["target"])
    else:  # only the recipe changes: the base's loss, under the cell's name
        method = dataclasses.replace(base, name=name, summary=summary, base=base.name)
    changes = RecipeChanges(by_section["train"], by_section["heads"], by_section["views"])
    return Cell(name, method, changes, seeds, SweepInfo(sweep.name, dict(coordinates)))


def probe_cell(sweep: Sweep, fixed: dict[str, Any], value: Any, seeds: tuple[int, ...]) -> Cell:
    """The cell of a boundary search's probe at ``value`` of its axis, the grid's other axes at ``fixed``."""
    assert sweep.bisect is not None
    base = registry("methods").get(sweep.base)
    return _cell(sweep, base, {sweep.bisect.axis: value, **fixed}, seeds)


def grid_points(sweep: Sweep) -> list[dict[str, Any]]:
    """The points of ``sweep``'s grid, in grid order (one empty point for a search without a grid)."""
    return [dict(zip(sweep.axes, point)) for point in itertools.product(*sweep.values)]


def expand(sweep: Sweep, default_seeds: tuple[int, ...]) -> list[Cell]:
    """The cells of ``sweep`` in grid order (the last axis varying fastest).

    Args:
        sweep: A checked sweep (:func:`sslbench.config.check_sweep`).
        default_seeds: The seeds of a sweep that names none.
    """
    base = registry("methods").get(sweep.base)
    seeds = sweep.seeds if sweep.seeds is not None else tuple(default_seeds)
    return [_cell(sweep, base, point, seeds) for point in grid_points(sweep)]


def _check_size(cfg: RunConfig, plain: int, max_runs: int) -> None:
    """Refuse a plan of more than ``max_runs`` runs before expanding any grid."""
    sizes = {name: s.size * len(s.seeds if s.seeds is not None else cfg.seeds) for name, s in cfg.sweeps.items()}
    total = plain + sum(sizes.values())
    if total > max_runs:
        parts = ", ".join(f"sweep {n!r}: {k}" for n, k in sizes.items())
        raise SslbenchError(f"the plan has {total} runs ({parts}; methods and floors: {plain}), more than "
                            f"--max-runs {max_runs}; shrink the grid or its seeds, or raise --max-runs")


def _check_names(cells: list[Cell]) -> None:
    """Refuse a sweep cell named like a registered method, or two cells of one name."""
    methods, seen = registry("methods"), {}
    for cell in cells:
        if cell.sweep is not None and cell.name in methods:
            raise SslbenchError(
                f"sweep {cell.sweep.name!r}: its cell {cell.name!r} has the name of the method or variant "
                f"{cell.name!r} ({methods.source(cell.name)}); rename the sweep or that variant")
        if cell.name in seen:
            raise SslbenchError(f"two cells of this run are named {cell.name!r} ({seen[cell.name]} and "
                                f"{cell.sweep.name if cell.sweep else 'a method'}); rename one of them")
        seen[cell.name] = cell.sweep.name if cell.sweep else "a method"


def build_plan(cfg: RunConfig, max_runs: int = MAX_RUNS) -> Plan:
    """The plan of a resolved config: its methods, its sweeps' cells and its floors, times their seeds.

    Args:
        cfg: A resolved config (:meth:`sslbench.config.RunConfig.resolved`).
        max_runs: Most runs allowed (``--max-runs``).

    Raises:
        SslbenchError: for more than ``max_runs`` runs, a cell named like a registered method
            or variant, two cells of one name, or a cell whose recipe is out of range.
    """
    methods = registry("methods")
    seeds = tuple(cfg.seeds)
    names = list(dict.fromkeys(cfg.methods))
    floors = [f for f in dict.fromkeys(cfg.floors) if f not in names]
    _check_size(cfg, (len(names) + len(floors)) * len(seeds), max_runs)
    cells = [Cell.of_method(methods.get(n), seeds) for n in names]
    for sweep in cfg.sweeps.values():
        cells += expand(sweep, seeds) if sweep.bisect is None else []  # a search's probes come round by round
    cells += [Cell.of_method(methods.get(n), seeds) for n in floors]
    return plan_of(cfg, cells)


def plan_of(cfg: RunConfig, cells: list[Cell]) -> Plan:
    """The plan of ``cells`` times their seeds, seed-major, after checking their names and recipes.

    Raises:
        SslbenchError: for a cell named like a registered method or variant, two cells of
            one name, or a cell whose recipe is out of range.
    """
    _check_names(cells)
    for cell in cells:
        if cell.changes is not None:
            cfg.check_recipe(cell.method, cell.changes)
    order = list(dict.fromkeys(s for c in cells for s in c.seeds))
    runs = tuple(PlannedRun(c, s) for s in order for c in cells if s in c.seeds)
    return Plan(runs, tuple(cells))
