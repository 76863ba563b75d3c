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

import json
import platform
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from sslbench.errors import SslbenchError

SCHEMA_VERSION = 1


def run_dir(out: Path, method: str, seed: int) -> Path:
    """Directory of one (method, seed) run."""
    return out / method / f"seed{seed}"


def result_path(out: Path, method: str, seed: int, protocol: str) -> Path:
    """Path of the result JSON of one run x protocol."""
    return run_dir(out, method, seed) / "results" / f"{protocol}.json"


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
