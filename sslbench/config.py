"""Run configuration: preset < TOML file < CLI flags, validated; an unknown key is an error.

TOML layout::

    [run]                      # any field of RunConfig below
    methods = ["vicreg", "my_variant"]
    preset = "quick"
    seeds = [0, 1, 2]

    [train]                    # TrainConfig fields, applied to every method
    epochs = 4
    [train.simsiam]            # ... or to one method (and its variants)
    lr = 0.1

    [views]                    # ViewConfig fields, changed in both views of every method
    crop_scale = [0.3, 1.0]

    [heads]                    # head sizes, for every method that has that head
    proj_dim = 512
    [heads.vicreg]             # ... or for one method (and its variants)
    proj_hidden = 2048

    [protocols.knn]            # parameters of one protocol
    k = 20

    [variants.my_variant]      # a variant: a base method plus changed loss (or target) fields
    base = "vicreg"
    summary = "VICReg with twice the covariance weight"
    loss = { cov_coeff = 2.0 }   # BYOL's EMA rates: target = { tau_base = 0.9 }

    [sweeps.vicreg_var]        # a grid: every combination of the axes' values, each a run per seed
    base = "vicreg"
    grid = { "loss.var_coeff" = [0, 1, 5, 25], "heads.proj_dim" = [64, 256, 1024] }
    seeds = [0, 1, 2, 3, 4]    # default: [run] seeds

    [sweeps.vicreg_mu_boundary]   # a boundary search: bisect one axis between two ends, per seed
    base = "vicreg"
    bisect = { axis = "loss.var_coeff", low = 0.0, high = 25.0, scale = "log", steps = 5 }
    grid = { "train.batch_size" = [128] }   # optional: other axes, one search per grid point

A grid axis is ``<section>.<field>``: a loss field (``loss.``), a target-update
field (``target.``, BYOL's EMA rates), a :class:`~sslbench.method.TrainConfig`
field (``train.``), a head size of the base (``heads.``) or a
:class:`~sslbench.method.ViewConfig` field changed in both views (``views.``).
A file with ``[sweeps]`` runs its sweeps, and ``[run] methods`` (none by
default then) beside them; :mod:`sslbench.sweep` expands them into runs. A
``bisect`` table (:class:`sslbench.bisection.Bisect`: ``axis``, ``low``, ``high``,
``scale``, and ``steps`` or ``resolution``, and on a log scale from 0 an optional
``floor``) makes the sweep a boundary search, run by :mod:`sslbench.bisect_sweep`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from sslbench.bisection import LOG_FLOOR_FRACTION, MAX_STEPS, SCALES, Bisect, steps_for
from sslbench.errors import SslbenchError, did_you_mean
from sslbench.io import read_small_file
from sslbench.layout import check_path_name
from sslbench.method import Method, TrainConfig, ViewConfig, derive_variant
from sslbench.presets import Preset
from sslbench.registry import registry

#: Most pretraining epochs a run may ask for: 125x the longest published recipe (800), so
#: a typo such as ``1e20`` is an error, not a run that never ends.
MAX_EPOCHS = 100_000
#: Seeds are non-negative and fit in 32 bits: every RNG sslbench seeds (torch, numpy's
#: ``default_rng``, faiss) takes them, and so do ``seed<k>`` directory names.
MAX_SEED = 2**32 - 1
#: Widest backbone (channels of the first stage); ResNet-50's is 64.
MAX_WIDTH = 4096
#: Largest batch and probe batch, and head size: beyond these one step would not fit in memory.
MAX_BATCH = 2**20
MAX_HEAD = 2**16
#: Largest config file read (a config is a few hundred bytes).
MAX_CONFIG_BYTES = 2**20


@dataclass(frozen=True)
class Bound:
    """The allowed range of a number in a config: ``lo..hi``, each end open or closed; always finite.

    Attributes:
        lo: Smallest value (excluded when ``lo_open``).
        hi: Largest value (excluded when ``hi_open``); ``math.inf`` for none.
        integer: Whether it must be an int.
        lo_open: Whether ``lo`` itself is excluded.
        hi_open: Whether ``hi`` itself is excluded.
    """

    lo: float
    hi: float = math.inf
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        """``an integer in 1..100000``, ``a number in (0, 1]``, ``a finite number > 0``."""
        if self.integer:
            lo, hi = int(self.lo), self.hi
            return f"an integer in {lo}..{int(hi)}" if math.isfinite(hi) else f"an integer >= {lo}"
        if not math.isfinite(self.hi):
            return f"a finite number {'>' if self.lo_open else '>='} {self.lo:g}"
        return f"a number in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"

    def problem(self, v: Any) -> str | None:
        """Why ``v`` is out of range (``must be ..., got ...``), or ``None`` when it is fine."""
        number = isinstance(v, int | float) and not isinstance(v, bool)
        ok = (number and (isinstance(v, int) or (not self.integer and math.isfinite(v)))
              and (v > self.lo if self.lo_open else v >= self.lo) and (v < self.hi if self.hi_open else v <= self.hi))
        return None if ok else f"must be {self.describe()}, got {v!r}"


@dataclass(frozen=True)
class Pair:
    """A ``[lo, hi]`` range whose two ends are each within ``each`` and ``lo <= hi``."""

    each: Bound

    def problem(self, v: Any) -> str | None:
        """Why ``v`` is not such a pair, or ``None``."""
        want = f"must be [lo, hi] with lo <= hi, each {self.each.describe()}, got {v!r}"
        if not isinstance(v, list | tuple) or len(v) != 2:
            return want
        if any(self.each.problem(x) for x in v) or v[0] > v[1]:
            return want
        return None


@dataclass(frozen=True)
class Each:
    """A list whose every item is within ``each``."""

    each: Bound

    def problem(self, v: Any) -> str | None:
        """Why an item of ``v`` is out of range, or ``None``."""
        if not isinstance(v, list | tuple):
            return f"must be a list, each {self.each.describe()}, got {v!r}"
        return next((f"must each be {self.each.describe()}, got {x!r}" for x in v if self.each.problem(x)), None)


Rule = Bound | Pair | Each
EPOCHS = Bound(1, MAX_EPOCHS, integer=True)
SEED = Bound(0, MAX_SEED, integer=True)
PROBABILITY = Bound(0.0, 1.0)
HEAD = Bound(1, MAX_HEAD, integer=True)
#: Bounds of every numeric :class:`RunConfig` field.
#: Most torch threads per run (``--threads-per-job``, ``[run] threads``).
MAX_THREADS = 4096
RUN_RULES: dict[str, Rule] = {"epochs": EPOCHS, "width": Bound(1, MAX_WIDTH, integer=True), "seeds": Each(SEED),
                              "threads": Bound(1, MAX_THREADS, integer=True),
                              "monitor_every": Bound(0, 10**9, integer=True)}
#: Bounds of every numeric :class:`~sslbench.method.TrainConfig` field. A batch (and the probe
#: batch) needs two images: batch norm and the variance terms are undefined on one.
TRAIN_RULES: dict[str, Rule] = {
    "epochs": EPOCHS,
    "batch_size": Bound(2, MAX_BATCH, integer=True),
    "lr": Bound(0.0, lo_open=True),
    "weight_decay": Bound(0.0),
    "momentum": Bound(0.0, 1.0, hi_open=True),
    "warmup_epochs": Bound(0.0, MAX_EPOCHS),
    "final_lr_ratio": Bound(0.0, 1.0),
    "probe_images": Bound(2, MAX_BATCH, integer=True),
    "pred_lr_scale": Bound(0.0, lo_open=True),
    "early_call_every": Bound(0, 10**9, integer=True),
    "early_call_consecutive": Bound(1, 10**6, integer=True),
    "early_call_after": Bound(0.0, 1.0, hi_open=True),
    "early_call_stalled": Bound(1.0),
}
#: Bounds of every numeric :class:`~sslbench.augment.ViewConfig` field. Jitter strengths stop at
#: 1: the factors are drawn from ``1 +- s`` without clipping at 0.
VIEW_RULES: dict[str, Rule] = {
    "crop_scale": Pair(Bound(0.0, 1.0, lo_open=True)),
    "crop_ratio": Pair(Bound(0.0, lo_open=True)),
    "flip_p": PROBABILITY,
    "jitter_p": PROBABILITY,
    "brightness": PROBABILITY,
    "contrast": PROBABILITY,
    "saturation": PROBABILITY,
    "grayscale_p": PROBABILITY,
    "blur_p": PROBABILITY,
    "blur_sigma": Pair(Bound(0.0, lo_open=True)),
    "solarize_p": PROBABILITY,
}
#: Most runs one ``sslbench run`` plans by default (``--max-runs``): a grid typo such as a
#: 100-value axis stops before it submits thousands of runs.
MAX_RUNS = 1000
#: Bounds of the numbers the command line takes (``sslbench run --epochs``, ``eval --width --seed``).
FLAG_RULES: dict[str, Rule] = {**RUN_RULES, "seed": SEED, "jobs": Bound(1, MAX_THREADS, integer=True),
                               "max_runs": Bound(1, 10**7, integer=True), "count": Bound(1, 10**6, integer=True),
                               "gpus": Bound(0, 1024, integer=True)}


def field_rules(cls: type) -> dict[str, Rule]:
    """The allowed values a loss or target config declares per field (``added_field(..., rule=...)``)."""
    return {f.name: f.metadata["rule"] for f in dataclasses.fields(cls) if "rule" in f.metadata}


def check_values(rules: dict[str, Rule], values: dict[str, Any], where: str) -> None:
    """Check the numbers in ``values`` against ``rules`` (keys without a rule, and ``None``,
    an optional field left unset, pass).

    Raises:
        SslbenchError: ``<where>: '<key>' must be ..., got ...`` for the first value out of range.
    """
    for key, value in values.items():
        why = rules[key].problem(value) if key in rules and value is not None else None
        if why:
            raise SslbenchError(f"{where}: {key!r} {why}")


def value_problem(key: str, value: Any) -> str | None:
    """Why ``value`` is out of range for the command-line number ``key`` (:data:`FLAG_RULES`), or ``None``."""
    return FLAG_RULES[key].problem(value)


def parse_number(text: str, kind: type = int) -> int | float:
    """A number as typed on the command line: ``12``, ``-1``, ``1e6`` (a whole number given as a float is
    an int when ``kind`` is int), ``0.5``.

    Raises:
        ValueError: for text that is no number, or not a whole number when ``kind`` is int.
    """
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"expected a number, got {text!r}") from None
    if kind is float or not d.is_finite():
        return float(d)
    if d != d.to_integral_value():
        raise ValueError(f"expected a whole number, got {text!r}")
    return int(d) if d.adjusted() < 40 else float(d)  # 1e999999999: no billion-digit int


def _check_out(out: Any, where: str) -> None:
    if isinstance(out, str) and not out.strip():
        raise SslbenchError(f"{where}: 'out' must not be empty (that would be the current directory); give a directory")


#: Sections a grid axis may change, and what each names: the loss config, the target update
#: (BYOL's EMA), the training recipe, a head size, or both views.
AXIS_SECTIONS = ("loss", "target", "train", "heads", "views")


@dataclass(frozen=True)
class RecipeChanges:
    """Changes to a method's resolved recipe that win over every other source (a sweep cell's coordinates).

    Attributes:
        train: :class:`~sslbench.method.TrainConfig` fields.
        heads: Head sizes.
        views: :class:`~sslbench.method.ViewConfig` fields, changed in both views.
    """

    train: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)
    views: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sweep:
    """A declared grid (``[sweeps.<name>]``): a base method and the values of each axis.

    Attributes:
        name: The sweep's name; its cells' names start with it.
        base: The method (or variant) every cell changes.
        axes: ``<section>.<field>`` per axis (:data:`AXIS_SECTIONS`), in declaration order.
        values: The values of each axis, checked and converted (floats for float fields,
            tuples for ``[lo, hi]`` view fields), in declaration order.
        seeds: The seeds of every cell (``None``: the run's seeds).
        summary: One line for listings.
        source: Where it was declared (``<file> [sweeps.<name>]``), for messages.
        bisect: A boundary search along one more axis (``None``: a plain grid); each grid
            point and seed then runs one search (:mod:`sslbench.bisect_sweep`).
    """

    name: str
    base: str
    axes: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    seeds: tuple[int, ...] | None = None
    summary: str = ""
    source: str = ""
    bisect: Bisect | None = None

    @property
    def size(self) -> int:
        """The number of cells (the product of the axes' lengths), at most (times a search's
        ``2 + steps`` probes) for a boundary search."""
        return math.prod(len(v) for v in self.values) * (self.bisect.max_probes if self.bisect else 1)


@dataclass
class RunConfig:
    """Everything ``sslbench run`` needs; ``None`` fields come from the preset.

    Attributes:
        methods: Methods or variants to pretrain.
        floors: Floors (reference encoders: ``random_init``, ``raw_pixels``) evaluated
            beside the methods; ``references`` is accepted as the old name in a TOML file.
        preset: Preset name.
        dataset: Dataset name (default: the preset's).
        data_root: Where to look for data first (also ``SSLBENCH_DATA``).
        backbone: Backbone name (default: the preset's).
        width: Backbone width (default: the preset's).
        epochs: Pretraining epochs for every method (default: the preset's, or a
            method's own for the preset where it sets one, e.g. BYOL at ``quick``).
        seeds: Seeds; each method runs once per seed.
        transfer: Dataset of the ``few_shot_transfer`` protocol (default: the
            preset's; ``""`` for none, and that protocol is skipped).
        protocols: Protocols to evaluate.
        out: Output directory.
        device: ``cpu`` or ``cuda``.
        train: TrainConfig overrides for every method (``[train]``); a sub-table named
            for a method applies to it and its variants (``[train.simsiam]``).
        views: ViewConfig changes for both views of every method (``[views]``).
        heads: Head sizes for every method with that head (``[heads]``); a sub-table
            named for a method applies to it and its variants (``[heads.vicreg]``).
        protocol_params: Per-protocol parameters (``[protocols.NAME]``).
        split: What the protocols score on: ``test``, or ``val`` (a seeded held-out part
            of train, :mod:`sslbench.splits`) for choosing recipes without the test split.
        sweeps: Declared grids by name (``[sweeps.NAME]``); every one runs.
        threads: torch threads per run (default: torch's own; ``--jobs`` sets cores/jobs);
            recorded in every result's ``run_config``.
        monitor_every: Read the training-time collapse monitor every this many optimiser
            steps into each run's ``monitor.jsonl`` (0, the default: after every epoch
            only, in ``metrics.jsonl``). Not part of a run's identity: it changes nothing
            that is trained; recorded in every result's ``run_config``.
        protocol_set: A named protocol set (:mod:`sslbench.protocol_sets`, e.g. ``sweep``):
            replaces ``protocols`` and sets default parameters under ``protocol_params``;
            recorded in every result's ``run_config``.
    """

    methods: list[str] = field(default_factory=lambda: ["simsiam", "vicreg_mod"])
    floors: list[str] = field(default_factory=lambda: ["random_init", "raw_pixels"])
    preset: str = "quick"
    dataset: str | None = None
    data_root: str | None = None
    backbone: str | None = None
    width: int | None = None
    epochs: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    transfer: str | None = None
    protocols: list[str] = field(
        default_factory=lambda: ["knn", "linear", "few_shot", "few_shot_transfer", "low_shot", "collapse"]
    )
    out: str = "runs"
    device: str = "cpu"
    train: dict[str, Any] = field(default_factory=dict)
    views: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, int | dict[str, int]] = field(default_factory=dict)
    protocol_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    split: Literal["test", "val"] = "test"
    sweeps: dict[str, Sweep] = field(default_factory=dict)
    threads: int | None = None
    monitor_every: int = 0
    protocol_set: str | None = None

    def preset_obj(self) -> Preset:
        """The :class:`Preset` named by ``preset``."""
        return registry("presets").get(self.preset)

    def resolved(self) -> RunConfig:
        """A copy with the preset's dataset, backbone, width and transfer filled in and all
        names checked; ``epochs`` stays as the user set it (:meth:`recipe` resolves each
        method's epochs, since a method may set its own for the preset)."""
        self.validate()
        p = self.preset_obj()
        r = dataclasses.replace(
            self,
            dataset=self.dataset or p.dataset,
            backbone=self.backbone or p.backbone,
            width=p.width if self.width is None else self.width,
            transfer=p.transfer if self.transfer is None else self.transfer,
        )
        for name in r.methods + r.floors:
            registry("methods").get(name)
            check_path_name(name, "method name")
        if r.protocol_set is not None:
            pset = registry("protocol_sets").get(r.protocol_set)
            r.protocols = list(pset.protocols)
            r.protocol_params = pset.merged_params(r.protocol_params)
        for name in r.protocols:
            registry("protocols").get(name)
            check_path_name(name, "protocol name")
        for name in r.protocol_params:
            if name not in r.protocols:
                registry("protocols").get(name)
        registry("backbones").get(r.backbone)
        for name in (r.dataset, r.transfer):
            if name and not name.startswith("imagefolder:"):
                registry("datasets").get(name)
        if r.device not in ("cpu", "cuda") and not r.device.startswith("cuda:"):
            raise SslbenchError(f"device must be 'cpu' or 'cuda', got {r.device!r}")
        if not r.seeds:
            raise SslbenchError("at least one seed is needed")
        r.sweeps = {name: check_sweep(sweep) for name, sweep in r.sweeps.items()}
        searches = [s.name for s in r.sweeps.values() if s.bisect is not None]
        if searches and "collapse" not in r.protocols:
            raise SslbenchError(f"sweep {searches[0]!r} bisects for the collapse boundary, so it needs the 'collapse' "
                                "protocol; add it to [run] protocols (or --protocols)")
        bases = [s.base for s in r.sweeps.values()]
        trained = [m for m in map(registry("methods").get, r.methods + bases) if m.encoder == "trained"]
        head_names = {k for m in trained for k in m.resolve(r.preset)[1]}
        for key, value in r.train.items():
            if isinstance(value, dict):
                registry("methods").get(key)
        for key, value in r.heads.items():
            if isinstance(value, dict):
                method = registry("methods").get(key)
                own = method.resolve(r.preset)[1]
                for head in value:
                    if head not in own:
                        raise SslbenchError(str(did_you_mean(head, own, f"head of {key!r} in [heads.{key}]")))
            elif trained and key not in head_names:
                raise SslbenchError(str(did_you_mean(key, head_names, "head in [heads] (no method of this run has it)")))
        for method in trained:
            r.check_recipe(method)
        return r

    def validate(self) -> None:
        """Check every number this config sets (:data:`RUN_RULES`, :data:`TRAIN_RULES`,
        :data:`VIEW_RULES`, head sizes in :data:`HEAD`) and that ``out`` is not empty.

        :func:`load_toml` and the command line check their own values first, naming
        the file and table or the flag; this catches a config built in code.

        Raises:
            SslbenchError: naming the field and ``RunConfig``.
        """
        check_values(RUN_RULES, {f: getattr(self, f) for f in RUN_RULES if getattr(self, f) is not None}, "RunConfig")
        _check_out(self.out, "RunConfig")
        for key, value in self.train.items():
            if isinstance(value, dict):
                check_values(TRAIN_RULES, value, f"RunConfig.train[{key!r}]")
            else:
                check_values(TRAIN_RULES, {key: value}, "RunConfig.train")
        check_values(VIEW_RULES, self.views, "RunConfig.views")
        for key, value in self.heads.items():
            sizes = value if isinstance(value, dict) else {key: value}
            check_values(dict.fromkeys(sizes, HEAD), sizes, f"RunConfig.heads[{key!r}]" if isinstance(value, dict) else "RunConfig.heads")
        for sweep in self.sweeps.values():
            check_sweep(sweep)

    def check_recipe(self, method: Method, changes: RecipeChanges | None = None) -> None:
        """Check the numbers of ``method``'s resolved recipe (its own defaults, the preset's, the user's
        and ``changes``).

        Raises:
            SslbenchError: naming the method, the preset and the field.
        """
        train, heads, views = self.recipe(method, changes)
        where = f"{method.name!r} at preset {self.preset!r}"
        check_values(TRAIN_RULES, dataclasses.asdict(train), f"{where} [train]")
        if train.pred_lr_scale != 1 and not method.has_predictor:
            raise SslbenchError(f"{where} [train]: 'pred_lr_scale' scales a predictor's learning rate, and "
                                f"{method.name!r} has no predictor (SimSiam and BYOL have one); leave it at 1")
        for section, cfg in (("loss", method.loss), ("target", method.target)):
            if cfg is not None:
                check_values(field_rules(type(cfg)), dataclasses.asdict(cfg), f"{where} [{section}]")
        check_values(dict.fromkeys(heads, HEAD), heads, f"{where} [heads]")
        for i, view in enumerate(views, 1):
            check_values(VIEW_RULES, dataclasses.asdict(view), f"{where} view {i}")

    def recipe(self, method: Method, changes: RecipeChanges | None = None
               ) -> tuple[TrainConfig, dict[str, int], tuple[ViewConfig, ViewConfig]]:
        """``(train config, head sizes, views)`` of ``method`` in this run: the method's
        preset defaults with the preset's and this config's changes on top, then ``changes``
        (a sweep cell's coordinates) over everything."""
        train, heads = method.resolve(
            self.preset, self.train_overrides(method), _for_method(self.heads, method), self.preset_obj().epochs
        )
        views = method.resolve_views(self.preset, self.preset_obj().views, self.views)
        if changes is not None:
            train = dataclasses.replace(train, **changes.train)
            heads = {**heads, **{k: v for k, v in changes.heads.items() if k in heads}}
            views = (dataclasses.replace(views[0], **changes.views), dataclasses.replace(views[1], **changes.views))
        return train, heads, views

    def train_overrides(self, method: Method | None = None) -> dict[str, Any]:
        """TrainConfig fields to apply on top of ``method``'s preset defaults (the
        run-wide ``[train]`` keys and ``epochs``, then its base's and its own sub-table)."""
        run_wide = {"epochs": self.epochs} if self.epochs is not None else {}
        return _for_method({**self.train, **run_wide}, method)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the result records."""
        return dataclasses.asdict(self)


def _for_method(table: dict[str, Any], method: Method | None) -> dict[str, Any]:
    """The keys of a ``[train]`` or ``[heads]`` table that apply to ``method``: the
    run-wide ones, then its base method's sub-table, then its own."""
    out = {k: v for k, v in table.items() if not isinstance(v, dict)}
    for name in (method.base, method.name) if method else ():
        sub = table.get(name) if name else None
        out.update(sub if isinstance(sub, dict) else {})
    return out


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list or origin is tuple:
        (inner, *_) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list | tuple) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def type_name(annotation: Any) -> str:
    """A type annotation as a person reads it: ``float``, ``list[int]``, ``str or None``, ``'sgd' or 'lars'``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]" if args else origin.__name__
    return getattr(annotation, "__name__", str(annotation))


def _toml_key(name: str) -> str:
    """``name`` as written in a TOML table header (quoted unless it is a bare key)."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def check_fields(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check ``values`` against the dataclass ``cls``: known keys, right types.

    Raises:
        SslbenchError: naming the key and ``where`` (file and table).
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in names:
            err = did_you_mean(key, names, f"key in {where}")
            raise SslbenchError(str(err))
        if not _type_ok(value, hints[key]):
            raise SslbenchError(
                f"{where}: {key!r} must be {type_name(hints[key])}, got {value!r} ({type(value).__name__})"
            )
        out[key] = float(value) if hints[key] is float or (value is not None and hints[key] == float | None) else value
    return out


_RUN_KEYS = {f.name for f in dataclasses.fields(RunConfig)} - {"train", "views", "heads", "protocol_params", "sweeps"}
_TABLES = ["run", "train", "views", "heads", "protocols", "variants", "sweeps"]


def _table(value: Any, where: str) -> dict[str, Any]:
    """``value`` if it is a TOML table, else an error naming ``where``."""
    if not isinstance(value, dict):
        raise SslbenchError(f"{where} must be a table, got {value!r} ({type(value).__name__})")
    return value


def _changes(spec: dict[str, Any], key: str, cfg: Any, base_name: str, where: str) -> dict[str, Any]:
    """The checked ``loss`` or ``target`` table of a variant (``{}`` when absent)."""
    table = _table(spec.pop(key, {}), f"{where}: {key!r}")
    if table and cfg is None:
        raise SslbenchError(f"{where}: {base_name!r} has no {key} to change")
    if not table:
        return {}
    values = check_fields(type(cfg), table, f"{where}.{key}")
    check_values(field_rules(type(cfg)), values, f"{where}.{key}")
    return values


def _register_variant(name: str, spec: Any, where: str) -> None:
    check_path_name(name, f"{where}: variant name")
    spec = dict(_table(spec, where))
    base_name = spec.pop("base", None)
    if base_name is None:
        raise SslbenchError(f"{where}: a variant needs 'base' (the method it changes)")
    if not isinstance(base_name, str):
        raise SslbenchError(f"{where}: 'base' must be a method name (a string), got {base_name!r}")
    if base_name == name:
        raise SslbenchError(f"{where}: variant {name!r} is its own base; 'base' must name another method")
    summary = spec.pop("summary", f"{base_name} with changed loss terms")
    if not isinstance(summary, str):
        raise SslbenchError(f"{where}: 'summary' must be a string, got {summary!r}")
    base: Method = registry("methods").get(base_name)
    loss = _changes(spec, "loss", base.loss, base_name, where)
    target = _changes(spec, "target", base.target, base_name, where)
    if spec:
        raise SslbenchError(f"{where}: unknown key {next(iter(spec))!r} (a variant takes base, summary, loss, target)")
    variant = derive_variant(base, name, summary, loss=loss, target=target)
    methods = registry("methods")
    if name in methods:
        existing = methods.get(name)
        if existing.base == base_name and (existing.loss, existing.target) == (variant.loss, variant.target):
            return  # the same file loaded twice
        raise SslbenchError(f"{where}: variant name {name!r} is already a registered method")
    methods.register(name, variant, source=where)


def _axis_rules(base: Method, axis: str, where: str, kind: str = "grid") -> tuple[type | None, str, dict[str, Rule]]:
    """What a grid (or ``bisect``) axis names: ``(dataclass its field belongs to, field, bounds)``; heads have no dataclass.

    Raises:
        SslbenchError: for a malformed axis, a section the base has none of (``target`` on a method
            without a momentum target), or a field the base does not have.
    """
    section, dot, name = axis.partition(".")
    if not dot or not name or section not in AXIS_SECTIONS:
        raise SslbenchError(f"{where}: {kind} axis {axis!r} must be '<section>.<field>' with section one of "
                            f"{', '.join(AXIS_SECTIONS)} (e.g. 'loss.var_coeff', 'heads.proj_dim')")
    if section in ("loss", "target"):
        cfg = base.loss if section == "loss" else base.target
        if cfg is None:
            raise SslbenchError(f"{where}: {kind} axis {axis!r}: {base.name!r} has no {section} to change")
        known = {f.name for f in dataclasses.fields(cfg)}
        if name not in known:
            raise did_you_mean(name, known, f"{section} field of {base.name!r} in {where} {kind}")
        return type(cfg), name, field_rules(type(cfg))
    if section == "heads":
        known = set(base.heads) | {h for over in base.presets.values() for h in (over.get("heads") or {})}
        if name not in known:
            raise did_you_mean(name, known, f"head of {base.name!r} in {where} {kind}")
        return None, name, {name: HEAD}
    cls, rules = (TrainConfig, TRAIN_RULES) if section == "train" else (ViewConfig, VIEW_RULES)
    if name not in {f.name for f in dataclasses.fields(cls)}:
        raise did_you_mean(name, {f.name for f in dataclasses.fields(cls)}, f"{section} field in {where} {kind}")
    return cls, name, rules


def _axis_value(cls: type | None, name: str, rules: dict[str, Rule], value: Any, where: str) -> Any:
    """One value of a grid axis, type- and range-checked and converted (floats, ``(lo, hi)`` tuples)."""
    if cls is None:
        if not _type_ok(value, int):
            raise SslbenchError(f"{where}: {name!r} must be int, got {value!r} ({type(value).__name__})")
    else:
        value = check_fields(cls, {name: value}, where)[name]
    check_values(rules, {name: value}, where)
    return tuple(float(x) for x in value) if isinstance(value, list | tuple) else value


def check_sweep(sweep: Sweep) -> Sweep:
    """Check a declared sweep and return it with its values converted.

    Raises:
        SslbenchError: naming the sweep (and its file) for a bad name, a base that is not a
            trained method, an empty grid or axis, an axis the base does not have, a value
            of the wrong type or out of range, a value listed twice, or bad seeds.
    """
    where = sweep.source or f"sweep {sweep.name!r}"
    check_path_name(sweep.name, f"{where}: sweep name")
    base: Method = registry("methods").get(sweep.base)
    if base.encoder != "trained":
        raise SslbenchError(f"{where}: 'base' must be a trained method; {sweep.base!r} is a floor")
    if not sweep.axes and sweep.bisect is None:
        raise SslbenchError(f"{where}: 'grid' is empty; give at least one axis and its values, "
                            'e.g. grid = { "loss.var_coeff" = [0, 1, 5] }')
    if len(sweep.values) != len(sweep.axes):
        raise SslbenchError(f"{where}: {len(sweep.axes)} axes but {len(sweep.values)} value lists")
    values = []
    for axis, vals in zip(sweep.axes, sweep.values):
        cls, name, rules = _axis_rules(base, axis, where)
        if not isinstance(vals, list | tuple) or not vals:
            raise SslbenchError(f"{where}: grid axis {axis!r} must be a non-empty list of values, got {vals!r}")
        checked = tuple(_axis_value(cls, name, rules, v, f"{where} grid axis {axis!r}") for v in vals)
        dup = next((v for i, v in enumerate(checked) if v in checked[:i]), None)
        if dup is not None:
            raise SslbenchError(f"{where}: grid axis {axis!r} lists {dup!r} twice")
        values.append(checked)
    seeds = sweep.seeds
    if seeds is not None:
        if not isinstance(seeds, list | tuple) or not seeds:
            raise SslbenchError(f"{where}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
        check_values({"seeds": Each(SEED)}, {"seeds": list(seeds)}, where)
        if len(set(seeds)) != len(seeds):
            raise SslbenchError(f"{where}: 'seeds' lists a seed twice: {list(seeds)}")
        seeds = tuple(seeds)
    bisect = _check_bisect(base, sweep.bisect, tuple(sweep.axes), where) if sweep.bisect is not None else None
    return dataclasses.replace(sweep, axes=tuple(sweep.axes), values=tuple(values), seeds=seeds, bisect=bisect)


def _number_type(cls: type | None, name: str) -> type | None:
    """``int`` or ``float`` for a numeric field (heads are ints), else ``None`` (bools, strings, pairs)."""
    if cls is None:
        return int
    hint = typing.get_type_hints(cls)[name]
    options = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_args(hint) else [hint]
    return options[0] if len(options) == 1 and options[0] in (int, float) else None


def _check_bisect(base: Method, b: Bisect, grid_axes: tuple[str, ...], where: str) -> Bisect:
    """Check a boundary search and return it with its ends converted and ``steps`` resolved.

    Raises:
        SslbenchError: for an axis the base lacks or that is not a number, an axis that is
            also a grid axis, ends out of the field's range or ``low >= high``, an unknown
            scale, a log scale below 0, a misplaced or out-of-range ``floor``, or ``steps``
            (``resolution``) out of range.
    """
    w = f"{where}: bisect"
    cls, name, rules = _axis_rules(base, b.axis, where, kind="bisect")
    number = _number_type(cls, name)
    if number is None:
        hint = type_name(typing.get_type_hints(cls)[name]) if cls is not None else "?"
        raise SslbenchError(f"{w} axis {b.axis!r} is not a number ({hint}); bisect a numeric field, e.g. 'loss.var_coeff'")
    if b.axis in grid_axes:
        raise SslbenchError(f"{w} axis {b.axis!r} is also a grid axis; give it in one place (grid axes are "
                            "held fixed, one search per grid point)")
    low, high = (_axis_value(cls, name, rules, v, f"{w} {end!r}") for end, v in (("low", b.low), ("high", b.high)))
    if low >= high:
        raise SslbenchError(f"{w}: 'low' must be below 'high', got low = {low!r}, high = {high!r}")
    if b.scale not in SCALES:
        raise SslbenchError(f"{w}: 'scale' must be 'linear' or 'log', got {b.scale!r}")
    floor = _check_floor(b, low, high, w)
    if b.resolution is not None:
        rule = Bound(1.0, lo_open=True) if b.scale == "log" else Bound(0.0, lo_open=True)
        why = rule.problem(b.resolution)
        if why:
            raise SslbenchError(f"{w}: 'resolution' {why}" + (" (on a log scale, the ratio of a bracket's ends)"
                                                              if b.scale == "log" else ""))
        steps = min(steps_for(float(b.resolution), low, high, b.scale, floor), MAX_STEPS)
    else:
        why = Bound(1, MAX_STEPS, integer=True).problem(b.steps)
        if why:
            raise SslbenchError(f"{w}: 'steps' {why}")
        steps = b.steps
    return dataclasses.replace(b, low=low, high=high, steps=steps, floor=floor, integer=number is int)


def _check_floor(b: Bisect, low: Any, high: Any, w: str) -> Any:
    """The positive floor of a log-scale search from 0 (default ``high * LOG_FLOOR_FRACTION``), else ``None``."""
    if b.scale == "log" and low < 0:
        raise SslbenchError(f"{w}: a log scale needs low >= 0, got low = {low!r}")
    if b.scale != "log" or low > 0:
        if b.floor is not None:
            raise SslbenchError(f"{w}: 'floor' is where log-scale midpoints start when low = 0; "
                                f"it does not go with scale = {b.scale!r} and low = {low!r}")
        return None
    floor = high * LOG_FLOOR_FRACTION if b.floor is None else b.floor
    why = Bound(0.0, float(high), lo_open=True, hi_open=True).problem(floor)
    if why:
        raise SslbenchError(f"{w}: 'floor' {why}")
    return floor


def _flat_grid(grid: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"var_coeff": [...]}}`` (TOML's dotted keys) as ``{"loss.var_coeff": [...]}``."""
    out: dict[str, Any] = {}
    for key, value in grid.items():
        if isinstance(value, dict):
            out.update(_flat_grid(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


_SWEEP_KEYS = ("base", "summary", "grid", "seeds", "bisect")
_BISECT_KEYS = ("axis", "low", "high", "scale", "steps", "resolution", "floor")
_BISECT_EXAMPLE = 'bisect = { axis = "loss.var_coeff", low = 0.0, high = 25.0, scale = "log", steps = 5 }'


def _bisect_table(value: Any, where: str) -> Bisect:
    """The :class:`~sslbench.bisection.Bisect` of a sweep's ``bisect`` table (checked by :func:`check_sweep`)."""
    spec = dict(_table(value, f"{where}: 'bisect'"))
    unknown = next((k for k in spec if k not in _BISECT_KEYS), None)
    if unknown is not None:
        raise SslbenchError(str(did_you_mean(unknown, _BISECT_KEYS, f"key in {where} bisect")))
    missing = next((k for k in ("axis", "low", "high") if k not in spec), None)
    if missing is not None:
        raise SslbenchError(f"{where}: 'bisect' needs {missing!r}, e.g. {_BISECT_EXAMPLE}")
    if not isinstance(spec["axis"], str):
        raise SslbenchError(f"{where}: bisect 'axis' must be '<section>.<field>', got {spec['axis']!r}")
    if ("steps" in spec) == ("resolution" in spec):
        raise SslbenchError(f"{where}: 'bisect' needs one of 'steps' (midpoint probes after both ends) or "
                            "'resolution' (the bracket width to stop at)")
    return Bisect(spec["axis"], spec["low"], spec["high"], spec.get("scale", "linear"), spec.get("steps", 1),
                  spec.get("floor"), resolution=spec.get("resolution"))


def _sweep_table(name: str, spec: Any, where: str) -> Sweep:
    """The checked :class:`Sweep` of one ``[sweeps.<name>]`` table."""
    spec = dict(_table(spec, where))
    unknown = next((k for k in spec if k not in _SWEEP_KEYS), None)
    if unknown is not None:
        raise SslbenchError(str(did_you_mean(unknown, _SWEEP_KEYS, f"key in {where}")))
    base = spec.get("base")
    if not isinstance(base, str):
        raise SslbenchError(f"{where}: a sweep needs 'base' (the method its cells change), a method name")
    bisect = _bisect_table(spec["bisect"], where) if "bisect" in spec else None
    summary = spec.get("summary", f"{base}: the collapse boundary along {bisect.axis}" if bisect else f"{base} over a grid")
    if not isinstance(summary, str):
        raise SslbenchError(f"{where}: 'summary' must be a string, got {summary!r}")
    grid = _flat_grid(_table(spec.get("grid", {}), f"{where}: 'grid'"))
    seeds = spec.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not all(_type_ok(x, int) for x in seeds)):
        raise SslbenchError(f"{where}: 'seeds' must be a list of integers, got {seeds!r}")
    return check_sweep(Sweep(name, base, tuple(grid), tuple(grid.values()), None if seeds is None else tuple(seeds),
                             summary, where, bisect))


def _variant_order(variants: dict[str, Any], where: str) -> list[str]:
    """The variants of one file in an order where each comes after a base defined in the same file.

    Raises:
        SslbenchError: for a variant that is its own base, or variants whose bases form a cycle.
    """
    bases = {name: spec.get("base") if isinstance(spec, dict) else None for name, spec in variants.items()}
    order: list[str] = []
    for name in variants:
        chain = [name]
        while isinstance(bases.get(chain[-1]), str) and bases[chain[-1]] in variants and bases[chain[-1]] not in order:
            nxt = bases[chain[-1]]
            if nxt in chain:
                cycle = chain[chain.index(nxt):] + [nxt]
                if len(cycle) == 2:
                    raise SslbenchError(f"{where} [variants.{_toml_key(nxt)}]: variant {nxt!r} is its own base; "
                                        "'base' must name another method")
                raise SslbenchError(f"{where} [variants]: the bases of variants {' -> '.join(map(repr, cycle))} "
                                    "form a cycle; one of them must be based on a method")
            chain.append(nxt)
        order += [n for n in reversed(chain) if n not in order]
    return order


def _read_config(path: Path) -> dict[str, Any]:
    """The parsed TOML document at ``path`` (a regular file of at most :data:`MAX_CONFIG_BYTES`)."""
    raw = read_small_file(path, "config file", MAX_CONFIG_BYTES)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SslbenchError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise SslbenchError(f"{path}: TOML syntax error: {e}") from None
    except RecursionError:
        raise SslbenchError(f"{path}: TOML nested too deeply") from None


def _train_table(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """The checked ``[train]`` table: run-wide keys and ``[train.<method>]`` sub-tables."""
    train_doc = _table(doc.get("train", {}), f"{path} [train]")
    flat = {k: v for k, v in train_doc.items() if not isinstance(v, dict)}
    train = check_fields(TrainConfig, flat, f"{path} [train]")
    check_values(TRAIN_RULES, train, f"{path} [train]")
    for name, sub in train_doc.items():
        if isinstance(sub, dict):
            where = f"{path} [train.{_toml_key(name)}]"
            train[name] = check_fields(TrainConfig, sub, where)
            check_values(TRAIN_RULES, train[name], where)
    return train


def _heads_table(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """The checked ``[heads]`` table: head sizes, run-wide or in ``[heads.<method>]`` sub-tables."""
    heads = _table(doc.get("heads", {}), f"{path} [heads]")
    for key, value in heads.items():
        for head, size in (value.items() if isinstance(value, dict) else [(key, value)]):
            why = HEAD.problem(size)
            if why:
                where = f"[heads.{_toml_key(key)}]" if isinstance(value, dict) else "[heads]"
                raise SslbenchError(f"{path} {where}: {head!r} {why}")
    return heads


def load_toml(path: str | Path, cfg: RunConfig | None = None) -> RunConfig:
    """Apply a TOML config file on top of ``cfg`` (registering its variants).

    Raises:
        SslbenchError: for a missing file, one that is not a regular file or is larger
            than :data:`MAX_CONFIG_BYTES`, a syntax error, an unknown key, a wrong type,
            a number out of range (naming the table and key) or variants whose bases
            form a cycle.
    """
    path = Path(path)
    cfg = cfg or RunConfig()
    doc = _read_config(path)
    for table in doc:
        if table not in _TABLES:
            raise SslbenchError(str(did_you_mean(table, _TABLES, f"table in {path}")))
    variants = _table(doc.get("variants", {}), f"{path} [variants]")
    for name in _variant_order(variants, str(path)):
        _register_variant(name, variants[name], f"{path} [variants.{_toml_key(name)}]")
    run = dict(_table(doc.get("run", {}), f"{path} [run]"))
    if "references" in run:  # the old name of floors
        if "floors" in run:
            raise SslbenchError(f"{path} [run]: give 'floors' or its old name 'references', not both")
        run["floors"] = run.pop("references")
    if "protocols" in run and "protocol_set" in run:
        raise SslbenchError(f"{path} [run]: give 'protocols' or 'protocol_set', not both")
    for key in run:
        if key not in _RUN_KEYS:
            raise SslbenchError(str(did_you_mean(key, _RUN_KEYS, f"key in {path} [run]")))
    values = check_fields(RunConfig, run, f"{path} [run]")
    check_values(RUN_RULES, {k: v for k, v in values.items() if v is not None}, f"{path} [run]")
    _check_out(values.get("out"), f"{path} [run]")
    train = _train_table(doc, path)
    views = check_fields(ViewConfig, _table(doc.get("views", {}), f"{path} [views]"), f"{path} [views]")
    check_values(VIEW_RULES, views, f"{path} [views]")
    views = {k: tuple(float(x) for x in v) if isinstance(v, list | tuple) else v for k, v in views.items()}
    heads = _heads_table(doc, path)
    sweeps = {name: _sweep_table(name, spec, f"{path} [sweeps.{_toml_key(name)}]")
              for name, spec in _table(doc.get("sweeps", {}), f"{path} [sweeps]").items()}
    if sweeps and "methods" not in values:
        values["methods"] = []  # a file of sweeps runs its sweeps; [run] methods adds plain methods
    params = dict(cfg.protocol_params)
    for pname, pvalues in _table(doc.get("protocols", {}), f"{path} [protocols]").items():
        cls = registry("protocols").get(pname)
        where = f"{path} [protocols.{_toml_key(pname)}]"
        params[pname] = {**params.get(pname, {}), **check_fields(cls, _table(pvalues, where), where)}
    return dataclasses.replace(
        cfg, **values, train={**cfg.train, **train}, views={**cfg.views, **views}, heads={**cfg.heads, **heads},
        protocol_params=params, sweeps={**cfg.sweeps, **sweeps},
    )
