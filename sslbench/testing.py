"""Contract checks for evaluation protocols, to run on your own protocol class.

In the spirit of scikit-learn's ``check_estimator``: sslbench runs these checks
on every registered protocol, and a plugin author can run them on theirs::

    from sslbench.testing import check_protocol

    def test_my_protocol_keeps_the_contract():
        check_protocol(MyProtocol)

Each check raises ``AssertionError`` with a message naming the protocol and
what is wrong. :func:`check_protocol` runs them all on the synthetic features
of :func:`make_features` (or on features you pass) with the protocol's default
parameters.

What the contract asks of a protocol class (see :mod:`sslbench.protocol`):

- class attributes: a ``name`` (no ``.``), a ``version``, ``requires`` a subset
  of :data:`sslbench.protocol.REQUIREMENTS`, ``metrics`` mapping names to
  ``"higher"``/``"lower"``, and ``main_metric`` among them (also on the
  instance, where parameters may rename metrics);
- parameters are dataclass fields with defaults, JSON-serialisable, and a
  config round trip (``params()`` -> JSON -> :func:`~sslbench.protocol.build_protocol`)
  gives the same parameters back;
- ``evaluate`` returns ``{str: float | str}``, JSON-serialisable, with the main
  metric, and every declared metric it returns is a finite float;
- it is deterministic for a seed (the same instance twice gives an identical
  dict, and identical :meth:`~sslbench.protocol.Protocol.artifacts`) and does
  not modify its input arrays;
- it is invariant to the order of the samples: permuting the rows of each split
  (features, labels and that split's ``extra`` arrays together) leaves every
  float within ``atol`` (relative to ``max(1, |value|)``) and every string equal.
  A protocol that draws a seeded subsample by row position (few-shot episodes,
  a held-out part of train, low-shot draws) sees a different subsample after
  the permutation; on :func:`make_features`, whose classes lie far apart, every
  such subsample gives the same answer, so the check stays exact there. With
  features of your own on which that is not so, check such a protocol on
  :func:`make_features`, or loosen ``atol``;
- a protocol that does not require ``"labels"`` does not read them: shuffling
  the labels (within each split) leaves the result unchanged within ``atol``.

Protocols that require ``"transfer"`` get ``extra["transfer_x"]``/``["transfer_y"]``.
Protocols that require ``"encoder"`` are checked for attributes and parameters
only: a :class:`~sslbench.types.FeatureSet` cannot carry an encoder.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from typing import Any

import numpy as np

from sslbench.protocol import REQUIREMENTS, Protocol, build_protocol
from sslbench.types import FeatureSet

DIRECTIONS = frozenset({"higher", "lower"})
#: Tolerance of the order- and label-invariance checks, relative to ``max(1, |value|)``.
ATOL = 1e-6
_CLASS_ATTRS = ("name", "version", "requires", "metrics", "main_metric")


def make_features(
    seed: int = 0,
    *,
    num_classes: int = 10,
    n_train: int = 600,
    n_test: int = 300,
    dim: int = 32,
    z_dim: int = 16,
    noise: float = 0.3,
    transfer: bool = False,
) -> FeatureSet:
    """Small synthetic features with known structure: one Gaussian blob per class.

    Class means are orthogonal with norm 6 and each sample adds isotropic noise
    of std ``noise`` per dimension, so with the default noise the classes are
    far apart (every sensible classifier is exact, on any subsample). Classes
    are balanced (``n_train // num_classes`` rows each, 60 by default: enough
    for 50-shot draws) and rows are in random order. ``extra`` holds projector
    outputs ``train_z``/``test_z`` (a fixed random linear map of the features
    plus noise) and, with ``transfer``, ``transfer_x``/``transfer_y``: 200 rows of
    5 further classes.

    Args:
        seed: Seed of every random draw.
        num_classes: Number of classes C (at most ``dim``, or ``dim - 5`` with ``transfer``).
        n_train: Train rows.
        n_test: Test rows.
        dim: Feature dimension D.
        z_dim: Projector output dimension.
        noise: Per-dimension noise std.
        transfer: Add a transfer split of 5 unseen classes.

    Returns:
        The :class:`~sslbench.types.FeatureSet` (run ``"synthetic-<seed>"``).
    """
    n_cls_total = num_classes + (5 if transfer else 0)
    if n_cls_total > dim:
        raise ValueError(f"make_features: {n_cls_total} orthogonal class means need dim >= {n_cls_total}, got {dim}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    means = 6.0 * q.T[:n_cls_total]
    proj = rng.standard_normal((dim, z_dim)) / math.sqrt(dim)

    def draw(n: int, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.resize(classes, n)).astype(np.int64)
        x = means[y] + noise * rng.standard_normal((n, dim))
        return x.astype(np.float32), y

    train_x, train_y = draw(n_train, np.arange(num_classes))
    test_x, test_y = draw(n_test, np.arange(num_classes))
    extra = {
        f"{s}_z": (x @ proj + 0.05 * rng.standard_normal((len(x), z_dim))).astype(np.float32)
        for s, x in (("train", train_x), ("test", test_x))
    }
    if transfer:
        tx, ty = draw(200, np.arange(num_classes, n_cls_total))
        extra["transfer_x"], extra["transfer_y"] = tx, ty
    return FeatureSet(train_x, train_y, test_x, test_y, run=f"synthetic-{seed}", extra=extra)


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
    metrics = getattr(obj, "metrics", None)
    assert isinstance(metrics, dict) and metrics, f"{who}: metrics must be a non-empty dict, got {metrics!r}"
    for m, d in metrics.items():
        assert isinstance(m, str) and m and "." not in m, f"{who}: metric name {m!r} must be a non-empty string without '.'"
        assert d in DIRECTIONS, f"{who}: metric {m!r} has direction {d!r}, not one of {sorted(DIRECTIONS)}"
    main = getattr(obj, "main_metric", None)
    assert main in metrics, f"{who}: main_metric {main!r} is not among its metrics {sorted(metrics)}"


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
    _check_attributes(protocol, f"{who} (instance with default parameters)")
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
    """``evaluate``'s output: flat ``{str: float | str}``, JSON-able, main and declared metrics finite floats."""
    who = f"protocol {protocol.name!r}"
    assert isinstance(result, dict), f"{who}: evaluate must return a dict, got {type(result).__name__}"
    for k, v in result.items():
        assert isinstance(k, str), f"{who}: metric key {k!r} is not a string"
        assert isinstance(v, (float, str)) and not isinstance(v, bool), (
            f"{who}: metric {k!r} is {type(v).__name__} {v!r}; values must be float or str"
        )
    assert protocol.main_metric in result, (
        f"{who}: evaluate did not return its main metric {protocol.main_metric!r} (got {sorted(result)})"
    )
    for k in protocol.metrics:
        if k in result:
            v = result[k]
            assert isinstance(v, float) and math.isfinite(v), f"{who}: declared metric {k!r} = {v!r} is not a finite float"
    try:
        json.dumps(result)
    except (TypeError, ValueError) as e:
        raise AssertionError(f"{who}: the result is not JSON-serialisable: {e}") from None


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
    out = {n: getattr(features, n) for n in ("train_x", "train_y", "test_x", "test_y")}
    out.update({f"extra[{k!r}]": v for k, v in features.extra.items()})
    return out


def check_deterministic(protocol: Protocol, features: FeatureSet, seed: int = 0) -> dict[str, float | str]:
    """Same instance, same seed, twice: identical results and artifacts; the inputs stay unmodified.

    Returns:
        The (checked) result of the first call.
    """
    who = f"protocol {protocol.name!r}"
    before = {k: v.copy() for k, v in _arrays(features).items()}
    first = protocol.evaluate(features, seed)
    check_result(protocol, first)
    art1 = protocol.artifacts()
    assert isinstance(art1, dict) and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in art1.items()
    ), f"{who}: artifacts() must return dict[str, np.ndarray]"
    art1 = copy.deepcopy(art1)
    for k, v in _arrays(features).items():
        assert np.array_equal(v, before[k], equal_nan=v.dtype.kind == "f"), f"{who}: evaluate modified its input {k}"
    second = protocol.evaluate(features, seed)
    _same(first, second, 0.0, who, f"a second evaluate with seed {seed}")
    art2 = protocol.artifacts()
    assert set(art1) == set(art2) and all(np.array_equal(art1[k], art2[k]) for k in art1), (
        f"{who}: artifacts() differ between two calls with seed {seed}"
    )
    return first


def permute_rows(features: FeatureSet, seed: int) -> FeatureSet:
    """The same features with the rows of each split in a new (seeded) order.

    Rows of ``train_x``, ``train_y`` and every ``extra["train_*"]`` move
    together; likewise for ``test`` and any other prefix (e.g. ``transfer_*``).
    """
    rng = np.random.default_rng(seed)
    perms: dict[str, np.ndarray] = {}

    def perm(prefix: str, n: int) -> np.ndarray:
        if prefix not in perms or len(perms[prefix]) != n:
            perms[prefix] = rng.permutation(n)
        return perms[prefix]

    out = {}
    for name in ("train_x", "train_y", "test_x", "test_y"):
        arr = getattr(features, name)
        out[name] = arr[perm(name.split("_")[0], len(arr))]
    extra = {k: v[perm(k.split("_")[0], len(v))] for k, v in features.extra.items()}
    return FeatureSet(**out, run=features.run, extra=extra)


def check_order_invariance(
    protocol: Protocol, features: FeatureSet, seed: int = 0, atol: float = ATOL, base: dict | None = None
) -> None:
    """Permuting the rows of every split (:func:`permute_rows`) leaves the result unchanged within ``atol``.

    ``base``, when given, is the result on ``features`` with ``seed`` (saves one call).
    """
    base = protocol.evaluate(features, seed) if base is None else base
    permuted = protocol.evaluate(permute_rows(features, seed + 1), seed)
    _same(base, permuted, atol, f"protocol {protocol.name!r}", "permuting the rows of each split")


def check_label_independence(
    protocol: Protocol, features: FeatureSet, seed: int = 0, atol: float = ATOL, base: dict | None = None
) -> None:
    """For a protocol that does not require labels: shuffling them leaves the result unchanged.

    ``base``, when given, is the result on ``features`` with ``seed`` (saves one call).
    """
    assert "labels" not in protocol.requires, f"protocol {protocol.name!r} requires labels; nothing to check"
    rng = np.random.default_rng(seed + 2)
    extra = {k: (rng.permutation(v) if k.endswith("_y") else v) for k, v in features.extra.items()}
    shuffled = dataclasses.replace(
        features, train_y=rng.permutation(features.train_y), test_y=rng.permutation(features.test_y), extra=extra
    )
    base = protocol.evaluate(features, seed) if base is None else base
    _same(base, protocol.evaluate(shuffled, seed), atol, f"protocol {protocol.name!r} (requires no labels)",
          "shuffling the labels")


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


def assert_no_regression(
    baseline: Any,
    current: Any,
    *,
    abs_tol: float | None = None,
    ci_mult: float | None = None,
    tolerances: dict[str, str] | None = None,
    metrics: list[str] | None = None,
) -> Any:
    """``sslbench compare`` inside pytest: fail when ``current`` is worse than ``baseline``.

    Both sides are what ``sslbench compare`` reads: a run directory, a directory
    with a ``leaderboard.json``, a ``leaderboard.json`` or result JSON path, or
    such a document already loaded as a dict. The rule, defaults and verdicts
    are those of :mod:`sslbench.compare`::

        def test_my_encoder_did_not_get_worse(tmp_path):
            evaluate(EvalConfig(encoder="encoder.ts", dataset="digits", out=str(tmp_path)))
            assert_no_regression("tests/baseline/leaderboard.json", tmp_path, abs_tol=0.02)

    Args:
        baseline: The reference side.
        current: The side under test.
        abs_tol: Default allowed drop (default :data:`sslbench.compare.ABS_TOL`).
        ci_mult: Allowed drop in combined-CI units (default :data:`sslbench.compare.CI_MULT`).
        tolerances: Per-metric rules ``{pattern: "0.05" or "10%"}``.
        metrics: Restrict the comparison (names, protocols, patterns or ``"main"``).

    Returns:
        The :class:`sslbench.compare.Comparison` when it passes.

    Raises:
        AssertionError: with the REGRESSION and missing rows and the summary line.
        SslbenchError: for unusable input.
    """
    from sslbench import compare

    result = compare.compare(
        compare.load(baseline),
        compare.load(current),
        abs_tol=compare.ABS_TOL if abs_tol is None else abs_tol,
        ci_mult=compare.CI_MULT if ci_mult is None else ci_mult,
        tolerances=tolerances,
        metrics=metrics,
    )
    if not result.passed:
        raise AssertionError(
            f"embedding quality regressed ({result.baseline} -> {result.current}):\n"
            + result.format_table(only_failures=True)
        )
    return result
