"""Result records: one versioned JSON per run x protocol, and the run layout on disk.

Layout under ``--out``::

    <out>/<method>/seed<k>/config.json          resolved config of the run
    <out>/<method>/seed<k>/checkpoint.pt        last epoch (atomic)
    <out>/<method>/seed<k>/metrics.jsonl        per-epoch training log
    <out>/<method>/seed<k>/results/<protocol>.json
    <out>/cache/features/<key>.npz              cached features
    <out>/leaderboard.{md,csv,json}

Readers dispatch on ``schema_version``.
"""

from __future__ import annotations

import io
import json
import platform
import re
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sslbench.errors import SslbenchError
from sslbench.io import atomic_write_bytes, atomic_write_json
from sslbench.protocol import Protocol

SCHEMA_VERSION = 1


#: A name that becomes one path component under ``--out``: no separators, no ``.``/``..``,
#: no hidden files.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
#: Names taken by sslbench's own entries under ``--out``.
RESERVED_NAMES = frozenset({"cache", "manifest.json", "report.html", "analysis.md", "analysis.json",
                            *(f"leaderboard.{ext}" for ext in ("md", "csv", "json", "html"))})


def check_path_name(name: object, what: str) -> str:
    """Check that ``name`` can be one path component under the output directory.

    Args:
        name: A method, variant or protocol name (from a config file or a plugin).
        what: What it names, for the message (e.g. ``"variant name"``).

    Returns:
        ``name``.

    Raises:
        SslbenchError: for anything but letters, digits, ``.``, ``_``, ``+``, ``-``
            starting with a letter or digit (so no ``/``, ``..`` or hidden files), or a
            reserved name.
    """
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise SslbenchError(
            f"{what} {name!r} cannot be used: it names a directory under --out, so it must be 1-128 "
            "letters, digits, '.', '_', '+' or '-', start with a letter or digit, and not be one of "
            "sslbench's own entries there (cache, manifest.json, leaderboard.*, report.html, analysis.*); rename it"
        )
    return name


def run_dir(out: Path, method: str, seed: int) -> Path:
    """Directory of one (method, seed) run.

    Raises:
        SslbenchError: when ``method`` is not a safe path component (see :func:`check_path_name`).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SslbenchError(f"seed must be an integer, got {seed!r}")
    return out / check_path_name(method, "method name") / f"seed{seed}"


def result_path(out: Path, method: str, seed: int, protocol: str) -> Path:
    """Path of the result JSON of one run x protocol."""
    return run_dir(out, method, seed) / "results" / f"{check_path_name(protocol, 'protocol name')}.json"


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


def read_result(path: Path) -> dict[str, Any]:
    """Read one result JSON, dispatching on its ``schema_version``.

    Raises:
        SslbenchError: for an unreadable file or an unknown schema version.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SslbenchError(f"cannot read result {path}: {e}") from None
    version = doc.get("schema_version")
    if version == 1:
        return doc
    raise SslbenchError(f"{path}: unknown result schema_version {version!r} (this sslbench reads 1)")


def find_results(directory: Path) -> list[dict[str, Any]]:
    """All result JSONs under ``directory`` (``*/seed*/results/*.json``), sorted by path."""
    paths = sorted(directory.glob("*/seed*/results/*.json"))
    return [read_result(p) for p in paths]


def protocol_info(p: Protocol) -> dict[str, Any]:
    """The ``protocol`` block of a result: name, version, parameters, main metric, directions, requirements."""
    return {"name": p.name, "version": p.version, "params": p.params(), "main_metric": p.main_metric,
            "directions": dict(p.metrics), "requires": sorted(p.requires)}


def result_is_current(path: Path, proto: Protocol, enc_hash: str | None) -> bool:
    """Whether ``path`` holds a result of this protocol version and parameters (and encoder, if given)."""
    if not path.exists():
        return False
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    p = doc.get("protocol", {})
    return (
        doc.get("schema_version") == SCHEMA_VERSION
        and p.get("version") == proto.version
        and p.get("params") == json.loads(json.dumps(proto.params()))
        and (enc_hash is None or doc.get("encoder_hash") == enc_hash)
    )


def write_result(path: Path, doc: dict[str, Any], artifacts: dict[str, np.ndarray]) -> None:
    """Write a result JSON atomically, with its artifacts (e.g. few-shot episodes) beside it.

    The artifacts go first, so a result that exists always has them.
    """
    if artifacts:
        buf = io.BytesIO()
        np.savez_compressed(buf, **artifacts)
        atomic_write_bytes(path.with_suffix(".artifacts.npz"), buf.getvalue())
        doc = {**doc, "artifacts": path.with_suffix(".artifacts.npz").name}
    atomic_write_json(path, doc)
