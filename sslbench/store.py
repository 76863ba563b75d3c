"""Result records on disk: write one, read one, find all of a run directory, and decide what is current.

The JSON layout of a record is :class:`sslbench.records.ResultRecord`; where it
lives is :class:`sslbench.layout.RunLayout`. A record is written after its
artifacts, atomically, so a result that exists always has them.
"""

from __future__ import annotations

import io
import json
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sslbench.errors import SslbenchError
from sslbench.io import atomic_write_bytes, atomic_write_json, read_json_object
from sslbench.layout import RunLayout, RunPaths
from sslbench.records import SCHEMA_VERSION, ResultRecord


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of python and the libraries that change numbers, plus git hash and host."""
    import faiss
    import numpy
    import torch
    import torchvision

    import sslbench

    try:
        git = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        git = ""
    return {
        "sslbench": sslbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "faiss": getattr(faiss, "__version__", "unknown"),
        "numpy": numpy.__version__,
        "git": git or "unknown",
        "host": socket.gethostname(),
        "command": " ".join(sys.argv),
    }


def read_record(path: Path) -> ResultRecord:
    """Read one result record.

    Raises:
        SslbenchError: one line naming the file, for an unreadable file (a FIFO, a
            huge or non-UTF-8 file included), an unknown schema version or a document
            that is not a result record.
    """
    return ResultRecord.from_json(read_json_object(path, "result"), str(path))


def find_records(out: str | Path, split: str = "test") -> list[ResultRecord]:
    """Every result record of ``split`` under one output directory, in path order."""
    return [read_record(p) for p in RunLayout(out).result_files(split)]


def load_records(dirs: Iterable[str | Path], split: str = "test") -> list[ResultRecord]:
    """Result records of one or several run directories (``--out`` of earlier runs), merged.

    Raises:
        SslbenchError: for a path that is not a directory or holds no results of ``split``.
    """
    records: list[ResultRecord] = []
    for d in dirs:
        path = Path(d)
        if not path.is_dir():
            raise SslbenchError(f"{d} is not a directory")
        found = find_records(path, split)
        if not found:
            where = "results/*.json" if split == "test" else f"results/{split}/*.json"
            raise SslbenchError(f"no {split} results under {d} (expected <method>/seed<k>/{where})")
        records += found
    return records


def write_record(paths: RunPaths, record: ResultRecord, artifacts: dict[str, np.ndarray]) -> None:
    """Write a record atomically, with its artifacts beside it (artifacts first)."""
    name, split = record.protocol.name, record.split
    if artifacts:
        buf = io.BytesIO()
        np.savez_compressed(buf, **artifacts)
        atomic_write_bytes(paths.artifacts(name, split), buf.getvalue())
        record = _with_artifacts(record, paths.artifacts(name, split).name)
    atomic_write_json(paths.result(name, split), record.to_json())


def _with_artifacts(record: ResultRecord, name: str) -> ResultRecord:
    from dataclasses import replace

    return replace(record, artifacts=name)


def identity_diff(old: Any, new: dict[str, Any], volatile: frozenset[str] = frozenset()) -> list[str]:
    """The top-level keys in which two run identities differ, ignoring ``volatile`` ones.

    Args:
        old: A recorded identity (any JSON value: a damaged file may hold anything).
        new: The requested identity.
        volatile: Keys that may differ (file paths of the same encoder).

    Returns:
        The differing keys, sorted (``[]`` when they match); ``["<not an object>"]``
        when ``old`` is not a JSON object.
    """
    if not isinstance(old, dict):
        return ["<not an object>"]
    new = json.loads(json.dumps(new))
    return sorted(k for k in set(old) | set(new)
                  if k not in volatile and json.dumps(old.get(k), sort_keys=True) != json.dumps(new.get(k), sort_keys=True))


def is_current(path: Path, info: dict[str, Any], identity: dict[str, Any],
               encoder_hash: str | None = None, volatile: frozenset[str] = frozenset()) -> bool:
    """Whether ``path`` holds a result of this protocol and this run.

    Current means: readable, the same schema, the same protocol version and
    parameters, the same run identity as recorded in the result itself (so a
    deleted or edited ``config.json`` cannot make a stale result look current) and,
    when given, the same encoder.

    Args:
        path: A result record's path.
        info: The protocol's ``name``, ``version`` and ``params`` as JSON values.
        identity: The run's identity (its ``config.json``).
        encoder_hash: The encoder's hash, when known.
        volatile: Identity keys that may differ.
    """
    try:
        doc = read_json_object(path, "result")
    except SslbenchError:
        return False  # unreadable: recomputed and rewritten
    if not isinstance(doc.get("protocol"), dict):
        return False
    p = doc["protocol"]
    return (
        doc.get("schema_version") == SCHEMA_VERSION
        and p.get("version") == info["version"]
        and p.get("params") == info["params"]
        and not identity_diff(doc.get("config"), identity, volatile)
        and (encoder_hash is None or doc.get("encoder_hash") == encoder_hash)
    )


def check_run_dir(paths: RunPaths, identity: dict[str, Any], volatile: frozenset[str] = frozenset()) -> bool:
    """Refuse a run directory that holds another run; say whether ``config.json`` must be (re)written.

    A directory whose ``config.json`` records another identity (or is unreadable) and
    that holds computed state (a checkpoint or results) is refused. The same rule
    serves ``sslbench run`` and ``sslbench eval``.

    Returns:
        Whether ``config.json`` is absent or records another identity.

    Raises:
        SslbenchError: naming the differing keys, for a directory of another run.
    """
    if not paths.config.exists() and not paths.config.is_symlink():
        return True
    try:
        old: Any = read_json_object(paths.config, "run config")
    except SslbenchError:
        old = "<unreadable>"  # garbage, [1, 2], a FIFO: not this run's identity
    diff = identity_diff(old, identity, volatile)
    if diff and paths.holds_state():
        raise SslbenchError(
            f"{paths.dir} holds a different run or evaluation (differs in: {', '.join(diff)}); "
            "use another --out (or --name for eval), or delete that directory"
        )
    return bool(diff)


def claim_run_dir(paths: RunPaths, identity: dict[str, Any], volatile: frozenset[str] = frozenset()) -> None:
    """:func:`check_run_dir`, then write ``identity`` as the directory's ``config.json`` where needed.

    Raises:
        SslbenchError: for a directory of another run.
    """
    if check_run_dir(paths, identity, volatile):
        atomic_write_json(paths.config, json.loads(json.dumps(identity)))
