"""Atomic file writes (temp file, fsync, rename, fsync of the directory) and safe checkpoint loading.

A reader never sees a half-written file: a kill during a write leaves the old
file (or none) in place, plus at most a stray ``.<name>.<random>.sslbench.tmp``
file that :func:`remove_stale_temp_files` clears on the next run. A write that fails (a
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
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any

from sslbench.errors import SslbenchError
from sslbench.faults import disk_full, enospc_error, maybe_fault

#: Suffix of every temp file and directory sslbench makes (``tempfile.mkstemp``/``mkdtemp`` with
#: ``prefix=f".{name}."``): the ``sslbench`` in it is what lets the start-up sweep tell them from a
#: user's own ``.notes.tmp``.
TMP_SUFFIX = ".sslbench.tmp"
#: The whole name of such a temp file: ``.<name>.<random>.sslbench.tmp``, ``<random>`` being the
#: 8 characters of ``tempfile``'s name sequence. Nothing else is ever swept.
TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(TMP_SUFFIX))
#: Run directories under ``--out`` (``<method>/seed<k>``), where results, checkpoints and logs are written.
_SEED_DIR = re.compile(r"seed[0-9]+")
#: Largest JSON or TOML file :func:`read_small_file` reads (a run's own files are kilobytes).
MAX_SMALL_FILE_BYTES = 64 * 2**20


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


def _sweep_dir(directory: Path, recursive: bool, removed: list[Path]) -> None:
    """Delete the sslbench temp files and directories (:data:`TEMP_NAME`) in ``directory``."""
    if directory.is_symlink() or not directory.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(directory):  # symlinked directories are not entered
        for name in [*dirnames, *filenames]:
            if not TEMP_NAME.fullmatch(name):
                continue
            p = Path(dirpath) / name
            if name in dirnames and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
        dirnames[:] = sorted(d for d in dirnames if recursive and not TEMP_NAME.fullmatch(d))


def remove_stale_temp_files(root: str | Path) -> list[Path]:
    """Delete what killed atomic writes left in an output directory ``root``.

    Only names of the form :data:`TEMP_NAME` (``.<name>.<random>.sslbench.tmp``, files
    or directories such as a feature-cache entry's) are deleted, and only where
    sslbench writes: directly in ``root`` (leaderboard, manifest), anywhere under
    ``root/cache`` and under the run directories ``root/<method>/seed<k>``. Other
    directories, a user's own ``.notes.tmp`` and the ``.<name>.<random>.tmp`` files
    of sslbench versions before the marker are left alone.

    Call it only while holding ``root``'s run lock (:mod:`sslbench.lock`), which also
    refuses an output directory nested with another live run's: a temp file of a
    live writer would otherwise be taken from under it.

    Returns:
        The paths removed.
    """
    root = Path(root)
    removed: list[Path] = []
    _sweep_dir(root, False, removed)
    _sweep_dir(root / "cache", True, removed)
    try:
        methods = sorted(d for d in root.iterdir() if d.is_dir() and not d.is_symlink() and d.name != "cache")
    except OSError:
        methods = []
    for method in methods:
        for run in sorted(method.iterdir()):
            if _SEED_DIR.fullmatch(run.name):
                _sweep_dir(run, True, removed)
    return sorted(removed)


def remove_stale_temp_files_in(directory: str | Path) -> list[Path]:
    """Delete the temp files (:data:`TEMP_NAME`) of killed writes in one run directory and below it.

    Call it only while holding that run directory's lock (:data:`sslbench.lock.RUN_LOCK_NAME`):
    nobody else writes there then, while other workers write elsewhere under ``--out``.

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    _sweep_dir(Path(directory), True, removed)
    return sorted(removed)


def read_small_file(path: str | Path, what: str, limit: int = MAX_SMALL_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, with one-line errors.

    Opened non-blocking and checked with ``fstat`` before reading, so a FIFO,
    ``/dev/zero`` or a directory is refused instead of hanging or filling memory.

    Args:
        path: The file.
        what: What it is, for messages (``config file``, ``leaderboard``).
        limit: Size limit in bytes.

    Raises:
        SslbenchError: for a missing file, a directory, a FIFO/device/socket, a file
            over ``limit`` or a read error.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SslbenchError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise SslbenchError(f"{what} {path} is a directory; give a file") from None
    except OSError as e:
        raise SslbenchError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise SslbenchError(f"{what} {path} is a directory; give a file")
        if not stat.S_ISREG(st.st_mode):
            raise SslbenchError(f"{what} {path} is not a regular file (a FIFO, device or socket); give a file")
        if st.st_size > limit:
            raise SslbenchError(f"{what} {path} is {st.st_size} bytes, more than the {limit}-byte limit; "
                                "is it the right file?")
        chunks, size = [], 0
        while size <= limit:  # the file may have grown since fstat
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as e:
        raise SslbenchError(f"cannot read {what} {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise SslbenchError(f"{what} {path} is more than the {limit}-byte limit; is it the right file?")
    return data


def read_json_object(path: str | Path, what: str, limit: int = MAX_SMALL_FILE_BYTES) -> dict[str, Any]:
    """A JSON file that must hold an object (``config.json``, a result, a leaderboard).

    Raises:
        SslbenchError: as :func:`read_small_file`, and for text that is not UTF-8 JSON
            or a document that is not an object.
    """
    raw = read_small_file(path, what, limit)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SslbenchError(f"{what} {path} is not UTF-8 text (byte {e.start}); is it the right file?") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise SslbenchError(f"{what} {path} is not valid JSON ({e}); is it the right file?") from None
    if not isinstance(doc, dict):
        raise SslbenchError(f"{what} {path} holds a JSON {type(doc).__name__}, not an object; is it the right file?")
    return doc


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
