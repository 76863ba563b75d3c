"""The result record: one versioned JSON per run x protocol, and the types inside it.

Every reader (leaderboard, compare, analysis, report) takes :class:`ResultRecord`
objects, never raw dicts. The JSON layout (``schema_version`` 1)::

    {"schema_version": 1, "method", "base", "encoder_kind", "loss_changes", "seed",
     "config", "run_config", "dataset": {...}, "train": {...}, "versions": {...},
     "protocol": {...}, "metrics": {...}, "encoder_hash", "timings": {...},
     "artifacts": "<protocol>.artifacts.npz" (when there are artifacts),
     "sweep": {"name", "coordinates": {"<section>.<field>": value, ...}} (sweep cells only)}

``protocol`` carries the protocol's metric metadata (:class:`MetricMeta`): metric
directions, the main metric, ordered labels, default compare tolerances, the
label-free readings, the plots of its artifacts and the metrics that are
intervals of others. Records written before that
metadata was recorded get it from the registered protocol of the same name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sslbench import json_fields
from sslbench.early_call import MonitorReading
from sslbench.errors import SslbenchError
from sslbench.json_fields import Metric

SCHEMA_VERSION = 1
#: The label value of a metric that does not apply (a floor has no projector to read).
NOT_APPLICABLE = "n/a"
#: Outcomes of pretraining in severity order (best first), as ``train.status`` reads them.
TRAIN_STATUSES = ("finished", "stopped_early", "collapsed", "diverged")
#: Statuses of encoders that are not pretrained here; they rank with ``finished``.
UNTRAINED_STATUSES = ("not_trained", "external")



@dataclass(frozen=True)
class MetricMeta:
    """What a protocol declares about its metrics.

    Attributes:
        directions: Directed metric name -> ``"higher"`` or ``"lower"`` (is better).
        main: The metric used for ranking (one of ``directions``).
        labels: Label-valued metric -> its values in severity order, best first
            (e.g. ``("healthy", "dimensional", "complete")``). Readers show such
            labels as badges and ``compare`` fails a move to a worse one.
        tolerances: Default compare tolerances, metric pattern -> ``"0.02"`` or ``"5%"``.
        readings: Label-free readings worth correlating with labelled accuracy.
        plots: Artifact name -> how a report draws it (``"spectrum"``).
        intervals: Metric that is a 95% half-width measured within one run -> the
            metric it is the interval of (few-shot's ``acc_5shot_centroid_episode_ci95``
            over episodes -> ``acc_5shot_centroid``). Readers give such a metric no
            interval over seeds of its own.
    """

    directions: Mapping[str, str]
    main: str
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tolerances: Mapping[str, str] = field(default_factory=dict)
    readings: tuple[str, ...] = ()
    plots: Mapping[str, str] = field(default_factory=dict)
    intervals: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolInfo:
    """The ``protocol`` block of a result: identity, parameters and metric metadata.

    Attributes:
        name: Registry name.
        version: Version that produced the numbers.
        params: Parameters (JSON values).
        requires: What it required of its inputs (``labels``, ``transfer``, ``encoder``).
        meta: Its metric metadata.
    """

    name: str
    version: str
    params: dict[str, Any]
    requires: tuple[str, ...]
    meta: MetricMeta

    @property
    def labelled(self) -> bool:
        """Whether it scores against labels (its main metric then ranks rows)."""
        return "labels" in self.requires

    def to_json(self) -> dict[str, Any]:
        """The JSON block (metadata keys flat, as ``schema_version`` 1 has them)."""
        m = self.meta
        return {"name": self.name, "version": self.version, "params": self.params, "main_metric": m.main,
                "directions": dict(m.directions), "requires": list(self.requires),
                "labels": {k: list(v) for k, v in m.labels.items()}, "tolerances": dict(m.tolerances),
                "readings": list(m.readings), "plots": dict(m.plots), "intervals": dict(m.intervals)}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> ProtocolInfo:
        """Read a ``protocol`` block; metadata it lacks comes from the registered protocol.

        Raises:
            SslbenchError: naming ``where`` for a block of the wrong shape.
        """
        doc = json_fields.as_object(doc, f"{where}: 'protocol'")
        name = json_fields.as_str(doc.get("name"), f"{where}: protocol 'name'")
        fallback = _registered_meta(name)
        directions = json_fields.as_str_map(doc.get("directions", fallback.directions if fallback else {}), f"{where}: directions")
        main = doc.get("main_metric", fallback.main if fallback else None)
        meta = MetricMeta(
            directions=directions,
            main=json_fields.as_str(main, f"{where}: protocol 'main_metric'") if main is not None else "",
            labels={k: tuple(v) for k, v in json_fields.as_label_map(
                doc["labels"] if "labels" in doc else (fallback.labels if fallback else {}), where).items()},
            tolerances=json_fields.as_str_map(doc.get("tolerances", fallback.tolerances if fallback else {}), f"{where}: tolerances"),
            readings=tuple(json_fields.as_str_list(doc.get("readings", list(fallback.readings) if fallback else []),
                                                   f"{where}: protocol 'readings'")),
            plots=json_fields.as_str_map(doc.get("plots", fallback.plots if fallback else {}), f"{where}: plots"),
            intervals=json_fields.as_str_map(doc.get("intervals", fallback.intervals if fallback else {}),
                                             f"{where}: intervals"),
        )
        requires = doc.get("requires")
        if requires is None:  # records older than the requirement list: the registered class's
            requires = _registered_requires(name)
        requires = json_fields.as_str_list(requires, f"{where}: protocol 'requires'")
        params = doc.get("params", {})
        return cls(name, str(doc.get("version", "0")), json_fields.as_object(params, f"{where}: protocol 'params'"),
                   tuple(sorted(requires)), meta)


@dataclass(frozen=True)
class DatasetInfo:
    """What the features were computed on.

    Attributes:
        name: Dataset name (``features:<file>`` for a features file).
        fingerprint: sha256 of the decoded arrays (:func:`sslbench.data.fingerprint`).
        source: Where it was read from.
        n_train: Train rows.
        n_test: Test rows.
        n_transfer: Transfer rows, when a transfer split was evaluated.
    """

    name: str
    fingerprint: str
    source: str = ""
    n_train: int = 0
    n_test: int = 0
    n_transfer: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON block (``n_transfer`` only when set)."""
        doc = {"name": self.name, "fingerprint": self.fingerprint, "source": self.source,
               "n_train": self.n_train, "n_test": self.n_test}
        if self.n_transfer is not None:
            doc["n_transfer"] = self.n_transfer
        return doc

    @classmethod
    def from_json(cls, doc: Any, where: str) -> DatasetInfo:
        """Read a ``dataset`` block.

        Raises:
            SslbenchError: for a block of the wrong shape.
        """
        doc = json_fields.as_object(doc, f"{where}: 'dataset'")
        return cls(json_fields.as_str(doc.get("name", ""), f"{where}: dataset name"),
                   json_fields.as_str(doc.get("fingerprint", ""), f"{where}: dataset fingerprint"), str(doc.get("source", "")),
                   json_fields.as_int(doc.get("n_train", 0), f"{where}: n_train"), json_fields.as_int(doc.get("n_test", 0), f"{where}: n_test"),
                   json_fields.as_int(doc["n_transfer"], f"{where}: n_transfer") if doc.get("n_transfer") is not None else None)


@dataclass(frozen=True)
class TrainOutcome:
    """How the encoder's pretraining ended.

    Attributes:
        status: ``finished``, ``stopped_early`` (the early-call rule,
            ``TrainConfig.early_call_every``, called collapse and training stopped there),
            ``collapsed`` (the epoch-end monitor read complete collapse and training
            stopped there), ``diverged`` (NaN/Inf loss), or for encoders not pretrained
            here ``not_trained`` (floors) and ``external`` (``sslbench eval``).
        epochs: Epochs completed (``None`` when not trained here).
        step: Global step at which it diverged or stopped.
        message: Human-readable detail.
        fraction: For ``stopped_early``, the share of the run's steps done.
        reading: For ``stopped_early``, the monitor reading on which the rule called collapse.
    """

    status: str
    epochs: int | None = None
    step: int | None = None
    message: str = ""
    fraction: float | None = None
    reading: MonitorReading | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON block (only ``status`` for encoders not trained here; ``fraction`` and
        ``reading`` only for a run stopped early)."""
        if self.epochs is None and self.step is None and not self.message:
            return {"status": self.status}
        out = {"status": self.status, "epochs": self.epochs, "step": self.step, "message": self.message}
        if self.fraction is not None:
            out["fraction"] = self.fraction
        if self.reading is not None:
            out["reading"] = dataclasses.asdict(self.reading)
        return out

    @classmethod
    def from_json(cls, doc: Any, where: str) -> TrainOutcome:
        """Read a ``train`` block (a missing status reads ``finished``, as early records had none)."""
        doc = json_fields.as_object(doc, f"{where}: 'train'")
        epochs, step, fraction, reading = doc.get("epochs"), doc.get("step"), doc.get("fraction"), doc.get("reading")
        if reading is not None:
            try:
                reading = MonitorReading(**json_fields.as_object(reading, f"{where}: train reading"))
            except TypeError:
                raise SslbenchError(f"{where}: train reading {reading!r} is not a monitor reading") from None
        return cls(json_fields.as_str(doc.get("status", "finished"), f"{where}: train status"),
                   json_fields.as_int(epochs, f"{where}: train epochs") if epochs is not None else None,
                   json_fields.as_int(step, f"{where}: train step") if step is not None else None, str(doc.get("message", "")),
                   json_fields.as_float(fraction, f"{where}: train fraction") if fraction is not None else None, reading)


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds of a result.

    Attributes:
        train_s: Pretraining (sum of the epochs in the training log).
        features_s: Feature extraction (or loading).
        features_cache_hit: Whether the feature cache served the features.
        protocol_s: This protocol's evaluation.
    """

    train_s: float = 0.0
    features_s: float = 0.0
    features_cache_hit: bool = False
    protocol_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON block."""
        return {"train_s": self.train_s, "features_s": self.features_s,
                "features_cache_hit": self.features_cache_hit, "protocol_s": self.protocol_s}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Timings:
        """Read a ``timings`` block (absent fields read 0)."""
        doc = json_fields.as_object(doc, f"{where}: 'timings'")
        return cls(json_fields.as_float(doc.get("train_s", 0.0), f"{where}: train_s"),
                   json_fields.as_float(doc.get("features_s", 0.0), f"{where}: features_s"),
                   bool(doc.get("features_cache_hit", False)), json_fields.as_float(doc.get("protocol_s", 0.0), f"{where}: protocol_s"))


@dataclass(frozen=True)
class SweepInfo:
    """The sweep a run belongs to and its point on the grid.

    Attributes:
        name: The sweep's name (``[sweeps.<name>]``).
        coordinates: Axis -> value, in the sweep's axis order; axes are
            ``<section>.<field>`` (``loss.var_coeff``, ``heads.proj_dim``, ``target.tau_base``).
    """

    name: str
    coordinates: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The JSON block."""
        return {"name": self.name, "coordinates": dict(self.coordinates)}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> SweepInfo:
        """Read a ``sweep`` block.

        Raises:
            SslbenchError: for a block of the wrong shape.
        """
        doc = json_fields.as_object(doc, f"{where}: 'sweep'")
        return cls(json_fields.as_str(doc.get("name"), f"{where}: sweep 'name'"),
                   json_fields.as_object(doc.get("coordinates", {}), f"{where}: sweep 'coordinates'"))


@dataclass(frozen=True)
class RunHeader:
    """What every result of one run shares: the encoder, its config, the data and the training.

    Attributes:
        method: Row name (a method, variant, floor, or an ``eval --name``).
        base: For a variant, the method it changes.
        encoder_kind: ``trained``, ``random_init``, ``raw_pixels`` or ``external``.
        loss_changes: Loss fields a variant changes from its base.
        seed: The run's seed.
        config: The run's identity: its fully resolved recipe (what must match for a
            result to be current).
        run_config: What the command was asked (``RunConfig`` or ``EvalConfig`` fields).
        dataset: What the features were computed on.
        train: How pretraining ended.
        versions: Library versions, git hash, host and command.
        sweep: The sweep and grid point of a sweep cell (``None`` for other runs).
    """

    method: str
    base: str | None
    encoder_kind: str
    loss_changes: dict[str, Any]
    seed: int
    config: dict[str, Any]
    run_config: dict[str, Any]
    dataset: DatasetInfo
    train: TrainOutcome
    versions: dict[str, str]
    sweep: SweepInfo | None = None

    @property
    def is_floor(self) -> bool:
        """Whether this encoder is a floor (a reference encoder such as ``random_init``)."""
        return self.encoder_kind not in ("trained", "external")


@dataclass(frozen=True)
class ResultRecord:
    """One run x protocol: the run's header, the protocol and what it measured.

    Attributes:
        run: The header shared by the run's results.
        protocol: The protocol that measured.
        metrics: Metric name -> float, or a short string (a status).
        encoder_hash: Identity of the encoder's weights (``None`` for features files).
        timings: Wall-clock seconds.
        artifacts: File name of the artifacts ``.npz`` beside the JSON, if any.
        split: What the protocol scored on: ``test``, or ``val`` (a held-out part of
            train, :mod:`sslbench.splits`); records without it are ``test``.
    """

    run: RunHeader
    protocol: ProtocolInfo
    metrics: dict[str, Metric]
    encoder_hash: str | None = None
    timings: Timings = Timings()
    artifacts: str | None = None
    split: str = "test"

    def to_json(self) -> dict[str, Any]:
        """The JSON document (``schema_version`` :data:`SCHEMA_VERSION`)."""
        h = self.run
        doc = {
            "schema_version": SCHEMA_VERSION, "method": h.method, "base": h.base, "encoder_kind": h.encoder_kind,
            "loss_changes": h.loss_changes, "seed": h.seed, "config": h.config, "run_config": h.run_config,
            "dataset": h.dataset.to_json(), "train": h.train.to_json(), "versions": h.versions,
            "protocol": self.protocol.to_json(), "metrics": self.metrics, "encoder_hash": self.encoder_hash,
            "timings": self.timings.to_json(), "split": self.split,
        }
        if self.artifacts:
            doc["artifacts"] = self.artifacts
        if h.sweep is not None:
            doc["sweep"] = h.sweep.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: Any, where: str) -> ResultRecord:
        """Read a result document, dispatching on its ``schema_version``.

        Args:
            doc: The parsed JSON.
            where: The file (for messages).

        Raises:
            SslbenchError: one line naming ``where`` for an unknown schema version or
                a document of the wrong shape.
        """
        doc = json_fields.as_object(doc, f"{where}: a result")
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SslbenchError(f"{where}: unknown result schema_version {version!r} "
                                f"(this sslbench reads {SCHEMA_VERSION})")
        for key in ("method", "seed", "protocol", "metrics", "dataset"):
            if key not in doc:
                raise SslbenchError(f"{where}: not a result record (no {key!r})")
        run = RunHeader(
            method=json_fields.as_str(doc["method"], f"{where}: 'method'"), base=doc.get("base"),
            encoder_kind=json_fields.as_str(doc.get("encoder_kind", "trained"), f"{where}: 'encoder_kind'"),
            loss_changes=json_fields.as_object(doc.get("loss_changes") or {}, f"{where}: 'loss_changes'"),
            seed=_seed(doc["seed"], where), config=json_fields.as_object(doc.get("config") or {}, f"{where}: 'config'"),
            run_config=json_fields.as_object(doc.get("run_config") or {}, f"{where}: 'run_config'"),
            dataset=DatasetInfo.from_json(doc["dataset"], where), train=TrainOutcome.from_json(doc.get("train", {}), where),
            versions=json_fields.as_object(doc.get("versions") or {}, f"{where}: 'versions'"),
            sweep=SweepInfo.from_json(doc["sweep"], where) if doc.get("sweep") is not None else None,
        )
        return cls(run, ProtocolInfo.from_json(doc["protocol"], where), json_fields.as_metrics(doc["metrics"], where),
                   doc.get("encoder_hash"), Timings.from_json(doc.get("timings", {}), where), doc.get("artifacts"),
                   json_fields.as_str(doc.get("split", "test"), f"{where}: 'split'"))


def _seed(v: Any, where: str) -> int:
    """A record's seed: an integer in the range ``--seeds`` takes (a reader makes paths of it)."""
    seed = json_fields.as_int(v, f"{where}: 'seed'")
    if not 0 <= seed < 2**32:
        raise SslbenchError(f"{where}: 'seed' must be an integer in 0..{2**32 - 1}, got {str(seed)[:40]}")
    return seed


@lru_cache(maxsize=64)
def _registered_meta(name: str) -> MetricMeta | None:
    """The metric metadata of the registered protocol ``name`` with default parameters, if any."""
    from sslbench.registry import registry

    try:
        return registry("protocols").get(name)().meta()
    except Exception:  # noqa: BLE001 - a plugin no longer installed, or one that cannot be built bare
        return None


def _registered_requires(name: str) -> list[str]:
    """A record without a requirement list: the registered class's, else ``labels`` (it ranks)."""
    from sslbench.registry import registry

    try:
        return sorted(registry("protocols").get(name).requires)
    except Exception:  # noqa: BLE001 - a plugin no longer installed: rank it, as a labelled protocol
        return ["labels"]


def is_number(v: Any) -> bool:
    """Whether a metric value is a finite or non-finite number (not a label)."""
    return isinstance(v, int | float) and not isinstance(v, bool)


def finite(v: Any) -> bool:
    """Whether a metric value is a finite number."""
    return is_number(v) and math.isfinite(v)
