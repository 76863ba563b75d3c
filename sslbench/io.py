"""Atomic file writes (temp file, fsync, rename, fsync of the directory) and safe checkpoint loading.

A reader never sees a half-written file: a kill during a write leaves the old
file (or none) in place, plus at most a stray ``.<name>.<random>.tmp`` file that
:func:`remove_stale_temp_files` clears on the next run. A write that fails (a
full disk, a read-only directory) raises :class:`OutputError`, which stops a
sweep with one line saying what to do, and leaves no temp file behind.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from sslbench.errors import SslbenchError
from sslbench.faults import disk_full, enospc_error, maybe_fault

TMP_SUFFIX = ".tmp"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give; mkstemp alone gives 0600


class OutputError(SslbenchError):
    """Output cannot be written (full disk, read-only or non-directory path).

    Unlike other input errors, it stops a whole sweep: the next run would fail the same way.
    """


def output_error(path: str | Path, e: OSError, what: str = "write") -> OutputError:
    """An :class:`OutputError` for ``e`` raised while writing ``path``, saying how to fix it.

    Args:
        path: The file or directory that could not be written.
        e: The error the OS raised.
        what: ``write`` or ``create directory``, for the message.
    """
    why = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = ("free some space (or pass another --out) and rerun the same command: results already "
                "written are kept and the run resumes where it stopped")
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make the output directory writable, or pass another --out"
    elif e.errno in (errno.ENOTDIR, errno.EEXIST):
        hint = "a file stands where a directory is needed on that path; pass another --out"
    else:
        hint = "check the output directory, or pass another --out"
    return OutputError(f"cannot {what} {path}: {why}; {hint}")


def _fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename in it survives a power cut (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: same-directory temp file, fsync, rename, fsync the directory.

    Raises:
        OutputError: when the directory cannot be created or the disk is full; the
            temp file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _FILE_MODE)
            if disk_full(path.name):  # fault injection: the disk fills up halfway through
                f.write(data[: len(data) // 2])
                f.flush()
                raise enospc_error(str(path))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        maybe_fault(f"before_rename:{path.name}")
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        raise output_error(path, e) from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode())


def atomic_append_line(path: str | Path, line: str) -> None:
    """Append one line to a small log file by rewriting it atomically.

    A kill leaves the file with or without the line, never with half of it.
    The cost is a rewrite per line, which is nothing for per-epoch logs.
    """
    path = Path(path)
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    atomic_write_bytes(path, old + line.rstrip("\n").encode() + b"\n")


def remove_stale_temp_files(root: str | Path) -> list[Path]:
    """Delete what killed atomic writes left under ``root``: ``.<name>.<random>.tmp`` files
    (and temp directories of the same form, e.g. of a feature-cache entry).

    Call it only while holding ``root``'s run lock (:mod:`sslbench.lock`): a temp
    file of a live writer would otherwise be taken from under it.

    Returns:
        The paths removed.
    """
    removed = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked directories are not entered
        for name in [*dirnames, *filenames]:
            if not (name.startswith(".") and name.endswith(TMP_SUFFIX) and name.count(".") >= 3):
                continue  # not of the form .<name>.<random>.tmp
            p = Path(dirpath) / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                dirnames.remove(name)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return sorted(removed)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` atomically; it must hold only tensors and plain values."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _unpickling_reason(message: str) -> str:
    """The useful part of torch's long weights-only error (e.g. ``Unsupported global: GLOBAL os.system``)."""
    message = re.sub(r"\x1b\[[0-9;]*m", "", message)
    _, found, rest = message.partition("WeightsUnpickler error:")
    if not found:
        _, found, rest = message.partition("trusted source.")
    text = " ".join((rest if found else message).split())
    return re.split(r" was not an allowed global| Please | Check the documentation", text)[0][:200]


def _first_sentence(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if len(text) < 24:  # KeyError: 101, list index out of range, ...: name the error too
        return f"{type(e).__name__}: {text}" if text else type(e).__name__
    return re.split(r"(?<=[.:]) ", text)[0][:200]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without unpickling code (``weights_only=True``).

    Raises:
        SslbenchError: for a missing, truncated or corrupt file, or one that carries code
            (nothing of it is run).
    """
    import torch

    corrupt = (f"checkpoint {path} is truncated or corrupt ({{}}); save it again, or delete it "
               "(`sslbench run` then retrains that run from scratch)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol 4": we refuse it anyway
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise SslbenchError(
            f"refusing to load {path}: it is not a plain weights file ({_unpickling_reason(str(e))}); "
            "nothing in it was run (sslbench never unpickles code). Use a checkpoint you trust, or delete it"
        ) from None
    except FileNotFoundError:
        raise SslbenchError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - the unpickler raises KeyError, IndexError, ... on garbage bytes
        raise SslbenchError(corrupt.format(_first_sentence(e))) from None
