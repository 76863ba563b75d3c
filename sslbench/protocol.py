"""The protocol contract: how any evaluation protocol plugs into sslbench.

A protocol is one small class, registered by name (built-ins in
:mod:`sslbench.builtins`, third parties through the entry-point group
``sslbench.protocols``). Its parameters are dataclass fields, so they are
recorded in every result and can be set from a config file. Estimators are
built inside ``evaluate``, never shared between calls. Heavy maths lives in pure
functions next to the protocol class.

Example::

    @dataclass
    class Centroid(Protocol):
        name: ClassVar[str] = "centroid"
        version: ClassVar[str] = "1"
        requires: ClassVar[frozenset[str]] = frozenset({"labels"})
        metrics: ClassVar[dict[str, Direction]] = {"top1": "higher"}
        main_metric: ClassVar[str] = "top1"

        def evaluate(self, features: FeatureSet, seed: int) -> dict[str, float | str]:
            ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sslbench.errors import SslbenchError
from sslbench.types import Direction, FeatureSet

#: What a protocol may require of its inputs.
REQUIREMENTS = frozenset({"labels", "transfer", "encoder"})


@dataclass
class Protocol:
    """Base of every evaluation protocol (attributes only, no machinery).

    Class attributes:
        name: Registry name; metric columns are ``<name>.<metric>``.
        version: Bumped whenever a change alters the numbers it reports.
        requires: Subset of :data:`REQUIREMENTS`.
        metrics: Metric name -> direction (``"higher"`` or ``"lower"`` is better).
        main_metric: The metric used for ranking.
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    requires: ClassVar[frozenset[str]] = frozenset()
    metrics: ClassVar[dict[str, Direction]] = {}
    main_metric: ClassVar[str] = ""

    def params(self) -> dict[str, Any]:
        """The protocol's parameters (its dataclass fields) for the result record."""
        return dataclasses.asdict(self)

    def artifacts(self) -> dict[str, np.ndarray]:
        """Arrays of the last ``evaluate`` call worth saving with its result (e.g. a
        seeded episode list or per-episode scores); none by default."""
        return {}

    def evaluate(self, features: FeatureSet, seed: int) -> dict[str, float | str]:
        """Compute the metrics on frozen features.

        Args:
            features: Train/test features and labels of one encoder.
            seed: Seed for every random choice the protocol makes.

        Returns:
            Flat ``{metric: value}``: the main metric and every directed metric the
            inputs allow (e.g. projector readings only when there is a projector);
            extra keys (floats, or short strings such as a status) are recorded too.
        """
        raise NotImplementedError


def build_protocol(cls: type[Protocol], params: dict[str, Any] | None = None) -> Protocol:
    """Instantiate a protocol class with parameters from a config, checking names.

    Raises:
        SslbenchError: for a parameter the protocol does not have.
    """
    params = dict(params or {})
    known = {f.name for f in dataclasses.fields(cls)}
    for key in params:
        if key not in known:
            from sslbench.errors import did_you_mean

            raise did_you_mean(key, known, f"parameter of protocol {cls.name!r}")
    return cls(**params)


def select_protocols(
    names: list[str],
    available: set[str],
    params: dict[str, dict[str, Any]] | None = None,
    why: dict[str, str] | None = None,
) -> tuple[list[Protocol], list[str]]:
    """Build the named protocols whose requirements ``available`` meets.

    Args:
        names: Registered protocol names, in order.
        available: What the inputs provide (``labels``, ``transfer``, ``encoder``).
        params: Per-protocol parameters (``[protocols.NAME]``).
        why: Per requirement, the reason shown when it is lacking.

    Returns:
        ``(protocols, skipped)``: the built protocols and one message per skipped one.
    """
    from sslbench.registry import registry

    chosen, skipped = [], []
    for n in names:
        cls = registry("protocols").get(n)
        lacking = sorted(set(cls.requires) - available)
        if lacking:
            reasons = "; ".join((why or {}).get(r, f"it requires {r!r}") for r in lacking)
            skipped.append(f"skipped protocol {n!r}: {reasons}")
            continue
        chosen.append(build_protocol(cls, (params or {}).get(n)))
    return chosen, skipped


def check_features(features: FeatureSet) -> None:
    """Refuse features that no protocol can use, naming the array and the run.

    Raises:
        SslbenchError: on wrong shapes, non-finite values or label mismatches.
    """
    where = f" (run {features.run})" if features.run else ""
    for split in ("train", "test"):
        x = getattr(features, f"{split}_x")
        y = getattr(features, f"{split}_y")
        if x.ndim != 2:
            raise SslbenchError(f"{split}_x must be 2-D (N, D), got shape {x.shape}{where}")
        if y.ndim != 1 or len(y) != len(x):
            raise SslbenchError(
                f"{split}_y must be 1-D with {len(x)} labels to match {split}_x, "
                f"got shape {y.shape}{where}"
            )
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).any(axis=1).sum())
            raise SslbenchError(f"{split}_x has NaN or Inf in {bad} rows{where}")
    for name, arr in features.extra.items():
        prefix, _, kind = name.rpartition("_")
        if kind == "y":  # the label vector of an extra split, e.g. transfer_y
            x = features.extra.get(f"{prefix}_x")
            n = len(x) if x is not None else len(arr)
            if arr.ndim != 1 or len(arr) != n:
                raise SslbenchError(
                    f"{name} must be 1-D with {n} labels to match {prefix}_x, got shape {arr.shape}{where}"
                )
            continue
        split = name.split("_")[0]
        n = len(getattr(features, f"{split}_x")) if split in ("train", "test") else len(arr)
        if arr.ndim != 2 or len(arr) != n:
            raise SslbenchError(f"{name} must be 2-D with {n} rows, got shape {arr.shape}{where}")
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).any(axis=1).sum())
            raise SslbenchError(f"{name} has NaN or Inf in {bad} rows{where}")
    if features.train_x.shape[1] != features.test_x.shape[1]:
        raise SslbenchError(
            f"train_x has {features.train_x.shape[1]} dims but test_x has "
            f"{features.test_x.shape[1]}{where}"
        )
