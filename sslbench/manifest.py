"""``<out>/manifest.json``: the history of every ``sslbench run`` on an output directory.

Each invocation appends one entry (never overwrites the earlier ones) and
updates it as it goes: command line, working directory, pid and host, versions
(python, torch, torchvision, faiss, numpy, sslbench), git hash, the resolved
config with its seeds, methods and protocol versions, the data fingerprint,
start and end time, and the status:

- ``running`` while it runs; an entry still ``running`` when the next run takes
  the lock belongs to a process that was killed, and becomes ``killed``;
- ``finished``, ``failed`` (some runs failed; ``failures`` counts them),
  ``error`` (stopped by an input or output error; ``message`` says which),
  ``interrupted`` (Ctrl-C) or ``crashed`` (a bug; ``message`` names it).

The file is written atomically. Write it only while holding the run lock
(:mod:`sslbench.lock`), which is what keeps two runs from losing each other's entries.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sslbench.errors import SslbenchError
from sslbench.interrupts import describe
from sslbench.io import atomic_write_json
from sslbench.layout import RunLayout

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
    except (OSError, ValueError) as e:
        raise SslbenchError(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("invocations"), list):
        raise SslbenchError(f"{path} is not an sslbench manifest (no 'invocations' list)")
    return doc


class Manifest:
    """The manifest entry of this invocation; a context manager that records how it ended.

    Args:
        out: The output directory (already locked by this process).
        cfg: The resolved run configuration.
        versions: Versions and git hash (default: :func:`sslbench.store.versions`).

    Attributes:
        entry: This invocation's entry (a dict, written on every update).
        failures: Set by the caller: runs that failed with a reported error.
    """

    def __init__(self, out: str | Path, cfg: RunConfig, versions: dict[str, str] | None = None) -> None:
        self.out = Path(out)
        self.path = RunLayout(out).manifest
        self.cfg = cfg
        self._versions = versions
        self.failures = 0
        self.entry: dict[str, Any] = {}
        self._doc: dict[str, Any] = {}
        self._t0 = 0.0

    def start(self) -> Manifest:
        """Append this invocation's entry as ``running`` (marking killed earlier ones) and write."""
        if self._versions is None:
            from sslbench.store import versions

            self._versions = versions()
        try:
            self._doc = read_manifest(self.out)
        except SslbenchError as e:
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
            os.replace(self.path, aside)
            print(f"sslbench: warning: {e}; moved it to {aside} and started a new manifest",
                  file=sys.stderr, flush=True)
            self._doc = {"schema_version": SCHEMA_VERSION, "invocations": []}
        for old in self._doc["invocations"]:
            if isinstance(old, dict) and old.get("status") == "running":  # we hold the lock: it died
                old["status"] = "killed"
                old["message"] = "the process ended without recording an end (killed or lost power)"
        cfg = self.cfg
        self._t0 = time.time()
        self.entry = {
            "command": shlex.join(["sslbench", *sys.argv[1:]]),
            "argv": list(sys.argv),
            "cwd": os.getcwd(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "versions": {k: self._versions.get(k, "unknown") for k in VERSION_KEYS},
            "git": self._versions.get("git", "unknown"),
            "methods": list(cfg.methods),
            "floors": list(cfg.floors),
            "seeds": list(cfg.seeds),
            "preset": cfg.preset,
            "dataset": cfg.dataset,
            "device": cfg.device,
            "protocols": {name: None for name in cfg.protocols},
            "config": cfg.to_dict(),
            "data": None,
            "started": _now(),
            "ended": None,
            "duration_s": None,
            "status": "running",
        }
        self._doc["invocations"].append(self.entry)
        self.write()
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
        """Write the whole manifest atomically."""
        atomic_write_json(self.path, self._doc)

    def __enter__(self) -> Manifest:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.finish("failed" if self.failures else "finished")
            return
        if isinstance(exc, SslbenchError):
            status, message = "error", str(exc)
        elif isinstance(exc, KeyboardInterrupt):
            status, message = "interrupted", describe(exc)[0]
        else:
            status, message = "crashed", f"{type(exc).__name__}: {exc}"
        try:
            self.finish(status, message)
        except SslbenchError:
            pass  # e.g. the disk is full: the error already on its way says so
