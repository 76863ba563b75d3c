"""The protocol contract: how any evaluation protocol plugs into sslbench.

A protocol is one small class, registered by name (built-ins in
:mod:`sslbench.builtins`, third parties through the entry-point group
``sslbench.protocols``). Its parameters are dataclass fields, so they are
recorded in every result and can be set from a config file. Estimators are
built inside ``evaluate``, never shared between calls, and ``evaluate`` keeps no
state: it returns its metrics and artifacts together as an :class:`Evaluation`.
Heavy maths lives in pure functions next to the protocol class.

A protocol declares its metric metadata (:class:`~sslbench.records.MetricMeta`):
which metrics are directed and which way, its main metric, label-valued metrics
with their severity order, default compare tolerances, the label-free readings
an analysis may correlate with accuracy, and how a report draws its artifacts.
The metadata is recorded with every result, so the leaderboard, ``compare``, the
report and the analysis treat every protocol alike and never name one.

Example::

    @dataclass
    class Centroid(Protocol):
        name: ClassVar[str] = "centroid"
        version: ClassVar[str] = "1"
        requires: ClassVar[frozenset[str]] = frozenset({"labels"})
        metrics: ClassVar[dict[str, Direction]] = {"top1": "higher"}
        main_metric: ClassVar[str] = "top1"

        def evaluate(self, features: FeatureSet, seed: int) -> Evaluation:
            ...
            return Evaluation({"top1": acc})

A protocol whose metric names depend on its parameters overrides :meth:`Protocol.meta`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from sslbench.errors import SslbenchError, did_you_mean
from sslbench.records import Metric, MetricMeta, ProtocolInfo
from sslbench.types import Direction, FeatureSet, Split

#: What a protocol may require of its inputs.
REQUIREMENTS = frozenset({"labels", "transfer", "encoder"})


@dataclass(frozen=True)
class Evaluation:
    """What one ``evaluate`` call measured.

    Attributes:
        metrics: Flat ``{metric: value}``: the main metric and every directed metric
            the inputs allow; extra keys (floats, or short strings such as a status)
            are recorded too.
        artifacts: Arrays worth saving beside the result (a seeded episode list,
            per-episode scores, a spectrum); written to ``<protocol>.artifacts.npz``.
    """

    metrics: dict[str, Metric]
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Protocol:
    """Base of every evaluation protocol (attributes only, no machinery).

    Class attributes:
        name: Registry name; metric columns are ``<name>.<metric>``.
        version: Bumped whenever a change alters the numbers it reports.
        requires: Subset of :data:`REQUIREMENTS`.
        metrics: Metric name -> direction (``"higher"`` or ``"lower"`` is better)
            with the default parameters.
        main_metric: The metric used for ranking.
        labels: Label-valued metric -> its values in severity order, best first.
        tolerances: Default compare tolerances, metric pattern -> ``"0.02"`` or ``"5%"``.
        readings: Label-free readings an analysis may correlate with accuracy.
        plots: Artifact name -> how a report draws it (``"spectrum"``).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    requires: ClassVar[frozenset[str]] = frozenset()
    metrics: ClassVar[dict[str, Direction]] = {}
    main_metric: ClassVar[str] = ""
    labels: ClassVar[dict[str, tuple[str, ...]]] = {}
    tolerances: ClassVar[dict[str, str]] = {}
    readings: ClassVar[tuple[str, ...]] = ()
    plots: ClassVar[dict[str, str]] = {}

    def meta(self) -> MetricMeta:
        """The metric metadata of this instance (the class attributes unless overridden)."""
        return MetricMeta(dict(self.metrics), self.main_metric, dict(self.labels), dict(self.tolerances),
                          tuple(self.readings), dict(self.plots))

    def params(self) -> dict[str, Any]:
        """The protocol's parameters (its dataclass fields) for the result record."""
        return dataclasses.asdict(self)

    def info(self) -> ProtocolInfo:
        """The ``protocol`` block of this instance's results."""
        params = json.loads(json.dumps(self.params()))  # tuples -> lists, as a result file holds them
        return ProtocolInfo(self.name, self.version, params, tuple(sorted(self.requires)), self.meta())

    def evaluate(self, features: FeatureSet, seed: int) -> Evaluation:
        """Compute the metrics on frozen features.

        Args:
            features: Train/test features and labels of one encoder, already checked
                by :func:`check_features`.
            seed: Seed for every random choice the protocol makes.

        Returns:
            The metrics and artifacts.
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
    where = features.where()
    splits = {"train": features.train, "test": features.test}
    if features.transfer is not None:
        splits["transfer"] = features.transfer
    for name, split in splits.items():
        _check_split(name, split, where)
    if features.train.x.shape[1] != features.test.x.shape[1]:
        raise SslbenchError(f"train_x has {features.train.x.shape[1]} dims but test_x has "
                            f"{features.test.x.shape[1]}{where}")
    if features.transfer is not None and features.transfer.x.shape[1] != features.train.x.shape[1]:
        raise SslbenchError(f"transfer_x has {features.transfer.x.shape[1]} dims but train_x has "
                            f"{features.train.x.shape[1]}{where}")
    if (features.train.z is None) != (features.test.z is None):
        raise SslbenchError(f"only one of train_z/test_z is given; give both or neither{where}")
    if features.pairs is not None:
        p = features.pairs
        for name, arr in (("pair_xa", p.xa), ("pair_xb", p.xb), ("pair_za", p.za), ("pair_zb", p.zb)):
            if arr is not None:
                _check_rows(name, arr, _len(p.xa), where)
    if features.views is not None:
        v = features.views
        for name, arr in (("views_x", v.x), ("views_z", v.z)):
            if arr is not None and (arr.ndim != 3 or arr.shape[:2] != v.x.shape[:2] or arr.shape[1] < 2
                                    or not np.isfinite(arr).all()):
                raise SslbenchError(f"{name} must be finite (n images, q >= 2 views, D) matching views_x, "
                                    f"got shape {arr.shape}{where}")


def _len(arr: np.ndarray) -> int:
    """Rows of an array; a 0-d one (a damaged cache entry's, a features file's) has none."""
    return arr.shape[0] if arr.ndim else 0


def _check_split(name: str, split: Split, where: str) -> None:
    _check_rows(f"{name}_x", split.x, _len(split.x), where)
    if split.y.ndim != 1 or len(split.y) != len(split.x):
        raise SslbenchError(f"{name}_y must be 1-D with {len(split.x)} labels to match {name}_x, "
                            f"got shape {split.y.shape}{where}")
    if len(split.y) and split.y.min() < 0:
        raise SslbenchError(f"{name}_y has negative labels (min {split.y.min()}); labels must be 0..C-1{where}")
    if split.z is not None:
        _check_rows(f"{name}_z", split.z, len(split.x), where)


def _check_rows(name: str, arr: np.ndarray, n: int, where: str) -> None:
    if arr.ndim != 2 or _len(arr) != n:
        raise SslbenchError(f"{name} must be 2-D with {n} rows, got shape {arr.shape}{where}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise SslbenchError(f"{name} has NaN or Inf in {bad} rows{where}")
