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
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslbench.method import ViewConfig
from sslbench.errors import SslbenchError, did_you_mean
from sslbench.method import Method, TrainConfig, derive_variant
from sslbench.presets import Preset
from sslbench.registry import registry
from sslbench.layout import check_path_name


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

    def preset_obj(self) -> Preset:
        """The :class:`Preset` named by ``preset``."""
        return registry("presets").get(self.preset)

    def resolved(self) -> RunConfig:
        """A copy with the preset's dataset, backbone, width and transfer filled in and all
        names checked; ``epochs`` stays as the user set it (:meth:`recipe` resolves each
        method's epochs, since a method may set its own for the preset)."""
        p = self.preset_obj()
        r = dataclasses.replace(
            self,
            dataset=self.dataset or p.dataset,
            backbone=self.backbone or p.backbone,
            width=self.width or p.width,
            transfer=p.transfer if self.transfer is None else self.transfer,
        )
        for name in r.methods + r.floors:
            registry("methods").get(name)
            check_path_name(name, "method name")
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
        trained = [m for m in map(registry("methods").get, r.methods) if m.encoder == "trained"]
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
        return r

    def recipe(self, method: Method) -> tuple[TrainConfig, dict[str, int], tuple[ViewConfig, ViewConfig]]:
        """``(train config, head sizes, views)`` of ``method`` in this run: the method's
        preset defaults with the preset's and this config's changes on top."""
        train, heads = method.resolve(
            self.preset, self.train_overrides(method), _for_method(self.heads, method), self.preset_obj().epochs
        )
        return train, heads, method.resolve_views(self.preset, self.preset_obj().views, self.views)

    def train_overrides(self, method: Method | None = None) -> dict[str, Any]:
        """TrainConfig fields to apply on top of ``method``'s preset defaults (the
        run-wide ``[train]`` keys and ``epochs``, then its base's and its own sub-table)."""
        run_wide = {"epochs": self.epochs} if self.epochs else {}
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
        out[key] = float(value) if hints[key] is float else value
    return out


_RUN_KEYS = {f.name for f in dataclasses.fields(RunConfig)} - {"train", "views", "heads", "protocol_params"}
_TABLES = ["run", "train", "views", "heads", "protocols", "variants"]


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
    return check_fields(type(cfg), table, f"{where}.{key}") if table else {}


def _register_variant(name: str, spec: Any, where: str) -> None:
    check_path_name(name, f"{where}: variant name")
    spec = dict(_table(spec, where))
    base_name = spec.pop("base", None)
    if base_name is None:
        raise SslbenchError(f"{where}: a variant needs 'base' (the method it changes)")
    if not isinstance(base_name, str):
        raise SslbenchError(f"{where}: 'base' must be a method name (a string), got {base_name!r}")
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


def load_toml(path: str | Path, cfg: RunConfig | None = None) -> RunConfig:
    """Apply a TOML config file on top of ``cfg`` (registering its variants).

    Raises:
        SslbenchError: for a missing file, a syntax error, an unknown key or a wrong type.
    """
    path = Path(path)
    cfg = cfg or RunConfig()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SslbenchError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise SslbenchError(f"config file {path} is a directory; give a .toml file") from None
    except OSError as e:
        raise SslbenchError(f"cannot read config file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise SslbenchError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise SslbenchError(f"{path}: TOML syntax error: {e}") from None
    for table in doc:
        if table not in _TABLES:
            raise SslbenchError(str(did_you_mean(table, _TABLES, f"table in {path}")))
    for name, spec in _table(doc.get("variants", {}), f"{path} [variants]").items():
        _register_variant(name, spec, f"{path} [variants.{_toml_key(name)}]")
    run = dict(_table(doc.get("run", {}), f"{path} [run]"))
    if "references" in run:  # the old name of floors
        if "floors" in run:
            raise SslbenchError(f"{path} [run]: give 'floors' or its old name 'references', not both")
        run["floors"] = run.pop("references")
    for key in run:
        if key not in _RUN_KEYS:
            raise SslbenchError(str(did_you_mean(key, _RUN_KEYS, f"key in {path} [run]")))
    values = check_fields(RunConfig, run, f"{path} [run]")
    train_doc = _table(doc.get("train", {}), f"{path} [train]")
    train = check_fields(TrainConfig, {k: v for k, v in train_doc.items() if not isinstance(v, dict)}, f"{path} [train]")
    for name, sub in train_doc.items():
        if isinstance(sub, dict):
            train[name] = check_fields(TrainConfig, sub, f"{path} [train.{_toml_key(name)}]")
    views = check_fields(ViewConfig, _table(doc.get("views", {}), f"{path} [views]"), f"{path} [views]")
    views = {k: tuple(float(x) for x in v) if isinstance(v, list | tuple) else v for k, v in views.items()}
    heads = _table(doc.get("heads", {}), f"{path} [heads]")
    for key, value in heads.items():
        for head, size in (value.items() if isinstance(value, dict) else [(key, value)]):
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                where = f"[heads.{_toml_key(key)}]" if isinstance(value, dict) else "[heads]"
                raise SslbenchError(f"{path} {where}: {head!r} must be a positive int, got {size!r}")
    params = dict(cfg.protocol_params)
    for pname, pvalues in _table(doc.get("protocols", {}), f"{path} [protocols]").items():
        cls = registry("protocols").get(pname)
        where = f"{path} [protocols.{_toml_key(pname)}]"
        params[pname] = {**params.get(pname, {}), **check_fields(cls, _table(pvalues, where), where)}
    return dataclasses.replace(
        cfg, **values, train={**cfg.train, **train}, views={**cfg.views, **views}, heads={**cfg.heads, **heads},
        protocol_params=params,
    )
