"""The one scoring loop of ``sslbench run`` and ``sslbench eval``.

For each protocol of a run: skip it when its result is current, evaluate it,
time it, write the record and its artifacts, and log the main metric. A
protocol that fails with an input error is reported and the others go on; one
whose requirements the inputs do not meet (:class:`sslbench.errors.NotApplicable`)
is skipped with its reason.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace

from sslbench import distributed as dist
from sslbench.errors import NotApplicable, SslbenchError
from sslbench.faults import maybe_fault
from sslbench.layout import RunPaths
from sslbench.protocol import Evaluation, Protocol
from sslbench.records import ResultRecord, RunHeader, Timings, is_number
from sslbench.splits import for_split
from sslbench.store import is_current, write_record
from sslbench.types import FeatureSet


def log(msg: str) -> None:
    """One progress line on stderr (rank 0 only under torchrun)."""
    if dist.is_main():
        print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ScoringJob:
    """What the records of one run share, and where they go.

    Attributes:
        paths: The run directory.
        identity: The run's identity (its ``config.json``; every record's ``config``).
        volatile: Identity keys that may differ between a result and this run (an
            external encoder's file path).
        split: What the protocols score on (``test`` or ``val``, :mod:`sslbench.splits`).
    """

    paths: RunPaths
    identity: dict
    volatile: frozenset[str] = frozenset()
    split: str = "test"

    def is_current(self, protocol: Protocol, encoder_hash: str | None = None) -> bool:
        """Whether ``protocol``'s result for this run is present and current."""
        info = protocol.info()
        return is_current(self.paths.result(protocol.name, self.split), {"version": info.version, "params": info.params},
                          self.identity, encoder_hash, self.volatile)

    def pending(self, protocols: list[Protocol], encoder_hash: str | None = None) -> list[Protocol]:
        """The protocols whose result is missing or stale."""
        return [p for p in protocols if not self.is_current(p, encoder_hash)]


def _checked(result: object, protocol: Protocol) -> Evaluation:
    if not isinstance(result, Evaluation):
        raise SslbenchError(f"protocol {protocol.name!r}: evaluate returned {type(result).__name__}, not an "
                            "sslbench.protocol.Evaluation (the contract: sslbench.testing.check_protocol)")
    return result


def write_empty(job: ScoringJob, header: RunHeader, protocols: list[Protocol], timings: Timings) -> None:
    """Records without metrics for every protocol (a run whose training diverged)."""
    for p in protocols:
        write_record(job.paths, ResultRecord(header, p.info(), {}, None, timings, split=job.split), {})


def score(job: ScoringJob, header: RunHeader, protocols: list[Protocol], features: FeatureSet,
          encoder_hash: str | None, timings: Timings) -> int:
    """Evaluate every protocol whose result is not current and write its record.

    Args:
        job: The run.
        header: The header of every record (its ``config`` is ``job.identity``).
        protocols: Protocols to evaluate (current ones are skipped).
        features: The run's features, checked; a ``val`` job scores them on the
            held-out part of train (:func:`sslbench.splits.for_split`).
        encoder_hash: The encoder's identity, recorded and part of "current".
        timings: Training and feature timings, recorded with each protocol's own.

    Returns:
        The number of protocols that failed with an input error.
    """
    failures = 0
    features = for_split(features, job.split)  # type: ignore[arg-type]
    for p in protocols:
        if job.is_current(p, encoder_hash):
            continue
        t0 = time.perf_counter()
        try:
            evaluation = _checked(p.evaluate(features, header.seed), p)
        except NotApplicable as e:
            log(f"{job.paths.label}: skipped protocol {p.name!r}: {e}")
            continue
        except SslbenchError as e:  # one protocol's failure does not cost the others
            failures += 1
            log(f"ERROR {job.paths.label}: protocol {p.name!r}: {e} (the other protocols go on)")
            continue
        dt = time.perf_counter() - t0
        maybe_fault(f"before_result:{p.name}")
        record = ResultRecord(header, p.info(), evaluation.metrics, encoder_hash, replace(timings, protocol_s=dt),
                              split=job.split)
        write_record(job.paths, record, evaluation.artifacts)
        main = evaluation.metrics.get(record.protocol.meta.main)
        shown = f"{main:.4f}" if is_number(main) else str(main)
        on = "" if job.split == "test" else f" on {job.split}"
        log(f"{job.paths.label}: {p.name}.{record.protocol.meta.main} = {shown}{on} ({dt:.1f}s)")
        maybe_fault(f"after_protocol:{p.name}")
    return failures
