"""Atomic file writes (temp file, fsync, rename) and safe checkpoint loading.

A reader never sees a half-written file: a kill during a write leaves the old
file (or none) in place, plus at most a stray ``.tmp`` file that is ignored.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from sslbench.errors import SslbenchError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (same-directory temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode())


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` atomically; it must hold only tensors and plain values."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _unpickling_reason(message: str) -> str:
    """The useful part of torch's long weights-only error (e.g. ``Unsupported global: GLOBAL os.system``)."""
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)
    _, found, rest = message.partition("WeightsUnpickler error:")
    text = " ".join((rest if found else message).split())
    return re.split(r" was not an allowed global| Please | Check the documentation", text)[0][:200]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without unpickling code (``weights_only=True``).

    Raises:
        SslbenchError: for a truncated or corrupt file, or one that carries code.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise SslbenchError(
            f"refusing to load {path}: it is not a plain weights file "
            f"(it would need to unpickle code): {_unpickling_reason(str(e))}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise SslbenchError(f"checkpoint {path} is truncated or corrupt: {str(e).splitlines()[0]}") from None
