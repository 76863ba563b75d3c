"""``<out>/manifest.json``, the history of every ``sslbench run`` on an output directory, and ``<out>/plan.json``.

Each invocation (and each submitit task of a cluster sweep) appends one entry,
identified by a random ``id``, and updates it as it goes: command line,
working directory, pid and host, versions (python, torch, torchvision, faiss,
numpy, sslbench), git hash, the resolved config with its seeds, methods and
protocol versions, how it executes (executor, jobs, threads per run), the data
fingerprint, start and end time, and the status:

- ``running`` while it runs; an entry still ``running`` whose process is gone
  becomes ``killed`` (known when the next invocation finds itself alone on the
  directory, or finds the entry's pid dead on its own host);
- ``finished``, ``failed`` (some runs failed; ``failures`` counts them),
  ``error`` (stopped by an input or output error; ``message`` says which),
  ``interrupted`` (Ctrl-C, SIGTERM, a cluster's preemption) or ``crashed`` (a bug;
  ``message`` names it); ``submitted`` (a cluster sweep handed to its scheduler).

Any number of processes share an output directory, so every update reads the
file, changes its own entry and writes it atomically inside one short critical
section (:func:`sslbench.lock.locked_file` on ``<out>/.manifest.lock``): no
entry is ever lost. ``plan.json`` lists every run planned on the directory
(:class:`PlanEntry`: what makes its results current), updated the same way;
``sslbench status`` reads it.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sslbench.errors import SslbenchError
from sslbench.interrupts import describe
from sslbench.io import atomic_write_json, read_json_object
from sslbench.layout import RunLayout
from sslbench.lock import locked_file, pid_alive
from sslbench.records import SweepInfo

if TYPE_CHECKING:
    from sslbench.config import RunConfig
    from sslbench.protocol import Protocol
    from sslbench.types import ImageData

SCHEMA_VERSION = 1
VERSION_KEYS = ("python", "torch", "torchvision", "faiss", "numpy", "sslbench")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest of ``out`` (``{"schema_version": 1, "invocations": []}`` when there is none).

    Raises:
        SslbenchError: for a file that is not a manifest.
    """
    path = RunLayout(out).manifest
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {"schema_version": SCHEMA_VERSION, "invocations": []}
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: JSON nested past the parser's depth
        raise SslbenchError(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("invocations"), list):
        raise SslbenchError(f"{path} is not an sslbench manifest (no 'invocations' list)")
    return doc


def _dead(entry: dict[str, Any], alone: bool) -> bool:
    """Whether a ``running`` entry belongs to a process that is gone: every one when the caller is
    alone on the directory, else one of this host whose pid no longer exists."""
    if alone:
        return True
    pid = entry.get("pid")
    return entry.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid)


class Manifest:
    """The manifest entry of this invocation; a context manager that records how it ended.

    Args:
        out: The output directory (whose lock this process shares).
        cfg: The resolved run configuration.
        versions: Versions and git hash (default: :func:`sslbench.store.versions`).
        execution: How it executes (``executor``, ``jobs``, ``threads``, a task's job id), recorded.
        alone: Whether this process found no other live process on ``out`` (for :meth:`start`
            as a context manager).

    Attributes:
        entry: This invocation's entry (a dict, written on every update).
        failures: Set by the caller: runs that failed with a reported error.
    """

    def __init__(self, out: str | Path, cfg: RunConfig, versions: dict[str, str] | None = None,
                 execution: dict[str, Any] | None = None, alone: bool = True) -> None:
        self.out = Path(out)
        self.alone = alone
        self.layout = RunLayout(out)
        self.path = self.layout.manifest
        self.cfg = cfg
        self._versions = versions
        self.execution = dict(execution or {})
        self.failures = 0
        self.status_on_success = "finished"
        self.entry: dict[str, Any] = {}
        self._t0 = 0.0

    def start(self, alone: bool = True) -> Manifest:
        """Append this invocation's entry as ``running`` (marking the entries of dead ones ``killed``).

        Args:
            alone: Whether this process found no other live process on the directory (its
                lock was free): then every ``running`` entry is a dead one's.
        """
        if self._versions is None:
            from sslbench.store import versions

            self._versions = versions()
        cfg = self.cfg
        self._t0 = time.time()
        self.entry = {
            "id": uuid.uuid4().hex,
            "command": shlex.join(["sslbench", *sys.argv[1:]]),
            "argv": list(sys.argv),
            "cwd": os.getcwd(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "versions": {k: self._versions.get(k, "unknown") for k in VERSION_KEYS},
            "git": self._versions.get("git", "unknown"),
            "methods": list(cfg.methods),
            "floors": list(cfg.floors),
            "sweeps": list(cfg.sweeps),
            "seeds": list(cfg.seeds),
            "preset": cfg.preset,
            "dataset": cfg.dataset,
            "device": cfg.device,
            "execution": self.execution,
            "protocols": {name: None for name in cfg.protocols},
            "config": cfg.to_dict(),
            "data": None,
            "started": _now(),
            "ended": None,
            "duration_s": None,
            "status": "running",
        }
        self._update(mark_dead=True, alone=alone)
        return self

    def record_data(self, data: ImageData, protocols: list[Protocol]) -> None:
        """Record the dataset (name, fingerprint, source, sizes) and the protocol versions."""
        self.entry["data"] = {
            "name": data.name,
            "fingerprint": data.fingerprint,
            "source": data.source,
            "n_train": int(data.train_images.shape[0]),
            "n_test": int(data.test_images.shape[0]),
        }
        self.entry["protocols"] = {p.name: p.version for p in protocols}
        self.write()

    def finish(self, status: str, message: str | None = None) -> None:
        """Record the end time and ``status`` (and ``failures``, ``message``) and write."""
        self.entry.update(
            ended=_now(), duration_s=round(time.time() - self._t0, 3), status=status, failures=self.failures
        )
        if message:
            self.entry["message"] = message
        self.write()

    def write(self) -> None:
        """Write this invocation's entry into the manifest (read fresh inside the critical section)."""
        self._update()

    def _update(self, mark_dead: bool = False, alone: bool = False) -> None:
        with locked_file(self.layout.manifest_lock):
            doc = self._read_or_set_aside()
            entries = [e for e in doc["invocations"] if not (isinstance(e, dict) and e.get("id") == self.entry["id"])]
            if mark_dead:
                for old in entries:
                    if isinstance(old, dict) and old.get("status") == "running" and _dead(old, alone):
                        old["status"] = "killed"
                        old["message"] = "the process ended without recording an end (killed or lost power)"
            position = next((i for i, e in enumerate(doc["invocations"])
                             if isinstance(e, dict) and e.get("id") == self.entry["id"]), len(entries))
            entries.insert(position, self.entry)
            doc["invocations"] = entries
            atomic_write_json(self.path, doc)

    def _read_or_set_aside(self) -> dict[str, Any]:
        """The manifest; an unreadable one is moved aside (and said so) and a new one started."""
        try:
            return read_manifest(self.out)
        except SslbenchError as e:
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
            os.replace(self.path, aside)
            print(f"sslbench: warning: {e}; moved it to {aside} and started a new manifest",
                  file=sys.stderr, flush=True)
            return {"schema_version": SCHEMA_VERSION, "invocations": []}

    def __enter__(self) -> Manifest:
        return self.start(self.alone)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.finish("failed" if self.failures else self.status_on_success)
            return
        if isinstance(exc, SslbenchError):
            status, message = "error", str(exc)
        elif isinstance(exc, KeyboardInterrupt):
            status, message = "interrupted", describe(exc)[0]
        elif isinstance(exc, SystemExit):
            status, message = "interrupted", f"exited with status {exc.code} (a cluster's preemption or time limit)"
        else:
            status, message = "crashed", f"{type(exc).__name__}: {exc}"
        try:
            self.finish(status, message)
        except SslbenchError:
            pass  # e.g. the disk is full: the error already on its way says so


# ----------------------------------------------------------------------------- plan.json

PLAN_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PlanEntry:
    """One run planned on an output directory: what makes it current, for ``sslbench status``.

    Attributes:
        method: The row name (a method or a sweep cell).
        seed: The seed.
        identity: The run's identity (its ``config.json``).
        protocols: Protocol name -> ``{"version", "params"}`` its results must have.
        epochs: Pretraining epochs (``None`` for a floor).
        sweep: Its sweep and coordinates, if it is a sweep cell.
    """

    method: str
    seed: int
    identity: dict[str, Any]
    protocols: dict[str, dict[str, Any]]
    epochs: int | None = None
    sweep: SweepInfo | None = None

    @property
    def label(self) -> str:
        """``<method>/seed<k>``."""
        return f"{self.method}/seed{self.seed}"

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {"method": self.method, "seed": self.seed, "identity": self.identity, "protocols": self.protocols,
                "epochs": self.epochs, "sweep": self.sweep.to_json() if self.sweep else None}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> PlanEntry:
        """Read one entry.

        Raises:
            SslbenchError: for an entry of the wrong shape.
        """
        if not isinstance(doc, dict) or not isinstance(doc.get("method"), str) or not isinstance(doc.get("seed"), int):
            raise SslbenchError(f"{where}: a plan entry must have a 'method' string and a 'seed' integer")
        identity, protocols = doc.get("identity"), doc.get("protocols")
        if not isinstance(identity, dict) or not isinstance(protocols, dict):
            raise SslbenchError(f"{where}: plan entry {doc['method']}/seed{doc['seed']} lacks 'identity' or 'protocols'")
        epochs = doc.get("epochs")
        return cls(doc["method"], doc["seed"], identity, protocols, epochs if isinstance(epochs, int) else None,
                   SweepInfo.from_json(doc["sweep"], where) if doc.get("sweep") is not None else None)


def read_plan(out: str | Path) -> list[PlanEntry]:
    """Every run planned on ``out``, in the order first planned (``[]`` when none was).

    Raises:
        SslbenchError: for a ``plan.json`` that is not a plan.
    """
    path = RunLayout(out).plan
    if not path.exists():
        return []
    doc = read_json_object(path, "plan")
    runs = doc.get("runs")
    if doc.get("schema_version") != PLAN_SCHEMA_VERSION or not isinstance(runs, list):
        raise SslbenchError(f"{path} is not an sslbench plan (schema_version {PLAN_SCHEMA_VERSION} with a 'runs' list); "
                            "rerun `sslbench run` on it to rewrite it")
    return [PlanEntry.from_json(r, str(path)) for r in runs]


def record_plan(out: str | Path, entries: Iterable[PlanEntry]) -> None:
    """Add ``entries`` to ``out``'s plan (a run planned again replaces its entry, keeping its place)."""
    layout = RunLayout(out)
    with locked_file(layout.manifest_lock):
        try:
            known = {e.label: e for e in read_plan(out)}
        except SslbenchError as e:
            print(f"sslbench: warning: {e}; writing a new plan", file=sys.stderr, flush=True)
            known = {}
        for entry in entries:
            known[entry.label] = entry
        atomic_write_json(layout.plan, {"schema_version": PLAN_SCHEMA_VERSION,
                                        "runs": [e.to_json() for e in known.values()]})
