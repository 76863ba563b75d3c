"""Contract checks for evaluation protocols, to run on your own protocol class.

In the spirit of scikit-learn's ``check_estimator``: sslbench runs these checks
on every registered protocol, and a plugin author can run them on theirs::

    from sslbench.testing import check_protocol

    def test_my_protocol_keeps_the_contract():
        check_protocol(MyProtocol)

Each check raises ``AssertionError`` with a message naming the protocol and
what is wrong. :func:`check_protocol` runs them all on the synthetic features
of :func:`~sslbench.testing.make_features` (or on features you pass) with the
protocol's default parameters.

What the contract asks of a protocol class (see :mod:`sslbench.protocol`):

- class attributes: a ``name`` (no ``.``), a ``version``, ``requires`` a subset
  of :data:`sslbench.protocol.REQUIREMENTS`, ``metrics`` mapping names to
  ``"higher"``/``"lower"`` and ``main_metric`` among them; the instance's
  :meth:`~sslbench.protocol.Protocol.meta` (where parameters may rename metrics)
  is well-formed too: its label orders are non-empty tuples of strings, its
  tolerances parse, its plots are of a known kind;
- parameters are dataclass fields with defaults, JSON-serialisable, and a
  config round trip (``params()`` -> JSON -> :func:`~sslbench.protocol.build_protocol`)
  gives the same parameters back;
- ``evaluate`` returns an :class:`~sslbench.protocol.Evaluation` whose metrics are
  ``{str: float | str}``, JSON-serialisable, with the main metric; every declared
  metric it returns is a finite float and every label metric a value of its order
  (or ``n/a``); its artifacts are ``{str: np.ndarray}``;
- it is deterministic for a seed (the same instance twice gives identical
  metrics and artifacts) and does not modify its input arrays;
- it is invariant to the order of the samples: permuting the rows of each split
  (features, labels and projector outputs together) leaves every float within
  ``atol`` (relative to ``max(1, |value|)``) and every string equal. A protocol
  that draws a seeded subsample by row position (few-shot episodes, a held-out
  part of train, low-shot draws) sees a different subsample after the
  permutation; on :func:`~sslbench.testing.make_features`, whose classes lie far
  apart, every such subsample gives the same answer, so the check stays exact
  there. With features of your own on which that is not so, check such a
  protocol on ``make_features``, or loosen ``atol``;
- a protocol that does not require ``"labels"`` does not read them: shuffling
  the labels (within each split) leaves the result unchanged within ``atol``.

Protocols that require ``"transfer"`` get a transfer split. Protocols that
require ``"encoder"`` are checked for attributes and parameters only: a
:class:`~sslbench.types.FeatureSet` cannot carry an encoder.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sslbench.protocol import REQUIREMENTS, Evaluation, Protocol, build_protocol
from sslbench.records import NOT_APPLICABLE, MetricMeta
from sslbench.testing.synthetic import make_features, permute_rows, shuffle_labels
from sslbench.types import FeatureSet

DIRECTIONS = frozenset({"higher", "lower"})
#: Tolerance of the order- and label-invariance checks, relative to ``max(1, |value|)``.
ATOL = 1e-6
_CLASS_ATTRS = ("name", "version", "requires", "metrics", "main_metric", "labels", "tolerances", "readings", "plots")
#: How a report can draw an artifact.
PLOT_KINDS = frozenset({"spectrum"})


def check_class_attributes(cls: type[Protocol]) -> None:
    """``name``, ``version``, ``requires``, ``metrics`` and ``main_metric`` are present and well-formed."""
    assert isinstance(cls, type) and issubclass(cls, Protocol), f"{cls!r} is not a subclass of sslbench.protocol.Protocol"
    _check_attributes(cls, f"protocol class {cls.__name__}")


def _check_attributes(obj: Any, who: str) -> None:
    name = getattr(obj, "name", None)
    assert isinstance(name, str) and name and "." not in name, f"{who}: name must be a non-empty string without '.', got {name!r}"
    version = getattr(obj, "version", None)
    assert isinstance(version, str) and version, f"{who}: version must be a non-empty string, got {version!r}"
    requires = getattr(obj, "requires", None)
    assert isinstance(requires, (set, frozenset)), f"{who}: requires must be a frozenset, got {requires!r}"
    assert requires <= REQUIREMENTS, f"{who}: requires {sorted(requires - REQUIREMENTS)} not in {sorted(REQUIREMENTS)}"
    _check_directions(getattr(obj, "metrics", None), getattr(obj, "main_metric", None), who)


def _check_directions(metrics: Any, main: Any, who: str) -> None:
    assert isinstance(metrics, Mapping) and metrics, f"{who}: metrics must be a non-empty dict, got {metrics!r}"
    for m, d in metrics.items():
        assert isinstance(m, str) and m and "." not in m, f"{who}: metric name {m!r} must be a non-empty string without '.'"
        assert d in DIRECTIONS, f"{who}: metric {m!r} has direction {d!r}, not one of {sorted(DIRECTIONS)}"
    assert main in metrics, f"{who}: main_metric {main!r} is not among its metrics {sorted(metrics)}"


def check_meta(protocol: Protocol) -> None:
    """The instance's metric metadata (:meth:`~sslbench.protocol.Protocol.meta`) is well-formed."""
    who = f"protocol {protocol.name!r} (instance with default parameters)"
    meta = protocol.meta()
    assert isinstance(meta, MetricMeta), f"{who}: meta() must return an sslbench.records.MetricMeta"
    _check_directions(meta.directions, meta.main, who)
    for label, order in meta.labels.items():
        assert isinstance(order, tuple) and order and all(isinstance(v, str) and v for v in order), (
            f"{who}: labels[{label!r}] must be a non-empty tuple of strings, best first; got {order!r}")
        assert label not in meta.directions, f"{who}: {label!r} is both a directed metric and a label"
    for pattern, value in meta.tolerances.items():
        try:
            assert float(str(value).removesuffix("%")) >= 0
        except (ValueError, AssertionError):
            raise AssertionError(f"{who}: tolerance {pattern!r} = {value!r} must be a number >= 0, "
                                 "optionally ending in '%'") from None
    assert all(isinstance(r, str) for r in meta.readings), f"{who}: readings must be metric names"
    for art, kind in meta.plots.items():
        assert kind in PLOT_KINDS, f"{who}: plot of {art!r} has kind {kind!r}, not one of {sorted(PLOT_KINDS)}"


def check_params(cls: type[Protocol]) -> Protocol:
    """Parameters are dataclass fields with defaults and survive a JSON config round trip.

    Returns:
        The protocol built with its default parameters.
    """
    who = f"protocol {getattr(cls, 'name', cls.__name__)!r}"
    assert dataclasses.is_dataclass(cls), f"{who}: {cls.__name__} must be a @dataclass (its parameters are its fields)"
    fields = dataclasses.fields(cls)
    clash = sorted({f.name for f in fields} & set(_CLASS_ATTRS))
    assert not clash, f"{who}: {clash} must be ClassVar class attributes, not dataclass fields"
    missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    assert not missing, f"{who}: parameters {missing} need defaults (a protocol must run with none given)"
    protocol = cls()
    check_meta(protocol)
    params = protocol.params()
    assert set(params) == {f.name for f in fields}, f"{who}: params() keys {sorted(params)} are not its fields"
    try:
        as_json = json.loads(json.dumps(params, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise AssertionError(f"{who}: params() must be JSON-serialisable for the result record: {e}") from None
    rebuilt = build_protocol(cls, as_json)
    again = json.loads(json.dumps(rebuilt.params()))
    assert again == as_json, (
        f"{who}: params from a config file (JSON lists for tuples) do not round-trip: {as_json} -> {again}"
    )
    return protocol


def check_result(protocol: Protocol, result: Any) -> None:
    """``evaluate``'s output: an :class:`~sslbench.protocol.Evaluation` with flat JSON-able metrics,
    the main metric, finite declared metrics, label values of their order, and array artifacts."""
    who = f"protocol {protocol.name!r}"
    assert isinstance(result, Evaluation), f"{who}: evaluate must return an Evaluation, got {type(result).__name__}"
    metrics, meta = result.metrics, protocol.meta()
    assert isinstance(metrics, dict), f"{who}: Evaluation.metrics must be a dict, got {type(metrics).__name__}"
    for k, v in metrics.items():
        assert isinstance(k, str), f"{who}: metric key {k!r} is not a string"
        assert isinstance(v, (float, str)) and not isinstance(v, bool), (
            f"{who}: metric {k!r} is {type(v).__name__} {v!r}; values must be float or str"
        )
    assert meta.main in metrics, f"{who}: evaluate did not return its main metric {meta.main!r} (got {sorted(metrics)})"
    for k in meta.directions:
        if k in metrics:
            v = metrics[k]
            assert isinstance(v, float) and math.isfinite(v), f"{who}: declared metric {k!r} = {v!r} is not a finite float"
    for k, order in meta.labels.items():
        if k in metrics:
            assert metrics[k] in (*order, NOT_APPLICABLE), f"{who}: label {k!r} = {metrics[k]!r} is not one of {order}"
    try:
        json.dumps(metrics)
    except (TypeError, ValueError) as e:
        raise AssertionError(f"{who}: the metrics are not JSON-serialisable: {e}") from None
    assert isinstance(result.artifacts, dict) and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in result.artifacts.items()
    ), f"{who}: Evaluation.artifacts must be dict[str, np.ndarray]"


def _same(a: dict[str, Any], b: dict[str, Any], atol: float, who: str, what: str) -> None:
    assert set(a) == set(b), f"{who}: {what} changed the metric keys: {sorted(set(a) ^ set(b))}"
    bad = []
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and isinstance(y, float):
            if math.isnan(x) and math.isnan(y):
                continue
            if not abs(x - y) <= atol * max(1.0, abs(x), abs(y)):
                bad.append(f"{k}: {x!r} vs {y!r}")
        elif x != y:
            bad.append(f"{k}: {x!r} vs {y!r}")
    assert not bad, f"{who}: {what} changed the result (atol {atol}): " + "; ".join(bad)


def _arrays(features: FeatureSet) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in ("train", "test", "transfer"):
        split = getattr(features, name)
        if split is not None:
            out.update({f"{name}.{k}": v for k, v in (("x", split.x), ("y", split.y), ("z", split.z)) if v is not None})
    if features.pairs is not None:
        p = features.pairs
        out.update({f"pairs.{k}": v for k, v in (("xa", p.xa), ("xb", p.xb), ("za", p.za), ("zb", p.zb)) if v is not None})
    return out


def check_deterministic(protocol: Protocol, features: FeatureSet, seed: int = 0) -> Evaluation:
    """Same instance, same seed, twice: identical metrics and artifacts; the inputs stay unmodified.

    Returns:
        The (checked) evaluation of the first call.
    """
    who = f"protocol {protocol.name!r}"
    before = {k: v.copy() for k, v in _arrays(features).items()}
    first = protocol.evaluate(features, seed)
    check_result(protocol, first)
    art1 = copy.deepcopy(first.artifacts)
    for k, v in _arrays(features).items():
        assert np.array_equal(v, before[k], equal_nan=v.dtype.kind == "f"), f"{who}: evaluate modified its input {k}"
    second = protocol.evaluate(features, seed)
    _same(first.metrics, second.metrics, 0.0, who, f"a second evaluate with seed {seed}")
    art2 = second.artifacts
    assert set(art1) == set(art2) and all(np.array_equal(art1[k], art2[k]) for k in art1), (
        f"{who}: artifacts differ between two calls with seed {seed}"
    )
    return first


def check_order_invariance(
    protocol: Protocol, features: FeatureSet, seed: int = 0, atol: float = ATOL, base: Evaluation | None = None
) -> None:
    """Permuting the rows of every split (:func:`~sslbench.testing.permute_rows`) leaves the result
    unchanged within ``atol``. ``base``, when given, is the evaluation of ``features`` with ``seed``."""
    base = protocol.evaluate(features, seed) if base is None else base
    permuted = protocol.evaluate(permute_rows(features, seed + 1), seed)
    _same(base.metrics, permuted.metrics, atol, f"protocol {protocol.name!r}", "permuting the rows of each split")


def check_label_independence(
    protocol: Protocol, features: FeatureSet, seed: int = 0, atol: float = ATOL, base: Evaluation | None = None
) -> None:
    """For a protocol that does not require labels: shuffling them leaves the result unchanged.
    ``base``, when given, is the evaluation of ``features`` with ``seed``."""
    assert "labels" not in protocol.requires, f"protocol {protocol.name!r} requires labels; nothing to check"
    base = protocol.evaluate(features, seed) if base is None else base
    shuffled = protocol.evaluate(shuffle_labels(features, seed + 2), seed)
    _same(base.metrics, shuffled.metrics, atol, f"protocol {protocol.name!r} (requires no labels)", "shuffling the labels")


def check_protocol(
    cls: type[Protocol], features: FeatureSet | None = None, *, seed: int = 0, atol: float = ATOL
) -> list[str]:
    """Run every contract check on a protocol class with its default parameters.

    Args:
        cls: The protocol class (a :class:`~sslbench.protocol.Protocol` dataclass).
        features: Features to evaluate on; :func:`make_features` (with a
            transfer split when the protocol requires one) when omitted.
        seed: Seed passed to ``evaluate`` (and of the permutations).
        atol: Tolerance of the order- and label-invariance checks.

    Returns:
        Names of the checks that ran, in order.

    Raises:
        AssertionError: naming the protocol and the broken rule.
    """
    ran = ["class_attributes", "params"]
    check_class_attributes(cls)
    protocol = check_params(cls)
    if "encoder" in cls.requires:
        return ran
    if features is None:
        features = make_features(seed, transfer="transfer" in cls.requires)
    base = check_deterministic(protocol, features, seed)
    ran.append("deterministic")
    check_order_invariance(protocol, features, seed, atol, base)
    ran.append("order_invariance")
    if "labels" not in cls.requires:
        check_label_independence(protocol, features, seed, atol, base)
        ran.append("label_independence")
    return ran
