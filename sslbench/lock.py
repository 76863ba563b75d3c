"""One ``sslbench run`` per output directory: ``<out>/.sslbench.lock``.

The lock is an ``fcntl.flock`` on the lock file, so the kernel releases it when
its holder dies, however it dies (SIGKILL included); the file's content (pid,
host, start time, command) is for people. A second run on the same directory
refuses, naming the holder. A lock file that no process holds was left by a run
that died: it is reported and replaced. A clean exit removes the file.

The lock path is never followed and never written unless this process created
the file: it is opened with ``O_NOFOLLOW``, created with ``O_EXCL``, a symlink
or anything but a regular file there is refused, and a stale lock file is
unlinked and created afresh rather than truncated, so a planted link (symbolic
or hard) cannot turn the lock into a write to another file.

An output directory nested inside, or containing, one that a live run holds is
refused too (:func:`live_locks`): the outer run's start-up sweep would delete
the inner run's temp files, and its results would be read as the outer's.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from sslbench.errors import SslbenchError
from sslbench.io import output_error

LOCK_NAME = ".sslbench.lock"
#: Tries (``_BUSY_WAIT_S`` apart) before a lock is called busy: :func:`live_locks` holds a
#: shared lock on a file for a few microseconds while it looks, which must not read as a holder.
_BUSY_TRIES = 5
_BUSY_WAIT_S = 0.02
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _read_info(fd: int) -> dict[str, Any]:
    """The holder's record in the lock file (``{}`` when empty or unreadable)."""
    try:
        raw = os.pread(fd, 1 << 16, 0)
        info = json.loads(raw.decode("utf-8", "replace")) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe(info: dict[str, Any]) -> str:
    """``pid 123 on host h, started 2024-...: sslbench run ...`` (what is known of a holder)."""
    if not info:
        return "a process whose details are not written yet"
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, int | float) else "?"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {when}: {info.get('command', '?')}"


def _refuse_kind(path: Path, mode: int | None) -> SslbenchError:
    what = ("a symbolic link" if mode is None else "a directory" if stat.S_ISDIR(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket" if not stat.S_ISREG(mode) else "a file")
    return SslbenchError(f"refusing to use the lock file {path}: it is {what}, not a regular file sslbench wrote; "
                         "sslbench never writes through it. Remove it, or use another --out")


_OPEN_FLAGS = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK  # NONBLOCK: a planted FIFO must not hang


def _open_lock(path: Path) -> tuple[int, bool] | None:
    """``(fd, created)`` of the lock file at ``path``; ``None`` when it vanished before the open.

    Raises:
        SslbenchError: when ``path`` is a symlink or not a regular file.
        OutputError: when it cannot be created.
    """
    try:
        return os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o644), True  # EEXIST for any link too
    except FileExistsError:
        pass
    except OSError as e:
        raise output_error(path, e, "create lock file") from e
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse_kind(path, None) from None
        if e.errno == errno.EISDIR:
            raise _refuse_kind(path, stat.S_IFDIR) from None
        raise output_error(path, e, "open lock file") from e
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _refuse_kind(path, mode)
    return fd, False


def _flock(fd: int, path: Path) -> bool:
    """Take ``fd``'s exclusive flock: ``True``, or ``False`` when another process holds it."""
    for attempt in range(_BUSY_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno not in _BUSY:
                os.close(fd)
                raise output_error(path, e, "lock") from e
        if attempt + 1 < _BUSY_TRIES:
            time.sleep(_BUSY_WAIT_S)
    return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.lstat(path))
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class HeldLock:
    """A lock file some live process holds, found by :func:`live_locks`.

    Attributes:
        path: The lock file.
        info: The holder's record (pid, host, started, command); ``{}`` if unreadable.
        relation: ``"ancestor"`` (it locks a directory above the one asked about) or
            ``"descendant"`` (one below it).
    """

    path: Path
    info: dict[str, Any]
    relation: Literal["ancestor", "descendant"]


def holder_of(path: Path) -> dict[str, Any] | None:
    """The record of the process holding the lock file ``path``; ``None`` when no process holds it.

    Probes with a non-blocking shared flock (released at once); a missing path, a
    symlink or anything but a regular file reads as not held.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            return _read_info(fd) if e.errno in _BUSY else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def live_locks(directory: str | Path, names: tuple[str, ...] = (LOCK_NAME,)) -> list[HeldLock]:
    """Lock files that live processes hold in the ancestors and the descendants of ``directory``.

    Ancestors are those of the resolved path (so ``a/b`` and ``a`` are related
    however they are spelled); descendants are found by a walk that does not follow
    symlinks. ``directory``'s own lock files are not included. A lock file counts
    only while some process holds its flock (:func:`holder_of`): a dead run's file
    is no obstacle.

    Args:
        directory: The directory about to be locked.
        names: Lock file names to look for.

    Returns:
        The held locks, ancestors (nearest first) then descendants (in walk order).
    """
    root = Path(directory).resolve()
    found = []
    for parent in root.parents:
        for name in names:
            info = holder_of(parent / name)
            if info is not None:
                found.append(HeldLock(parent / name, info, "ancestor"))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if Path(dirpath) == root:
            continue
        for name in names:
            if name in filenames:
                info = holder_of(Path(dirpath) / name)
                if info is not None:
                    found.append(HeldLock(Path(dirpath) / name, info, "descendant"))
    return found


def _nesting_error(out: Path, held: HeldLock) -> SslbenchError:
    where = "inside" if held.relation == "ancestor" else "around"
    return SslbenchError(
        f"{out} is {where} {held.path.parent}, which another sslbench run holds ({describe(held.info)}); "
        "output directories must not nest: wait for it to finish or use a separate --out"
    )


class RunLock:
    """Exclusive lock of an output directory for the lifetime of one ``sslbench run``.

    Use as a context manager; :meth:`acquire` creates the directory.

    Args:
        out: The output directory.
        command: What to record as the holder's command (default: ``sys.argv``).
        refuse_nested: Also refuse when a live lock sits in an ancestor or a
            descendant of ``out`` (:func:`live_locks`).

    Attributes:
        path: ``<out>/.sslbench.lock``.
        taken_over: When the lock file was left by a dead run, a sentence saying
            whose it was (``None`` otherwise).
    """

    def __init__(self, out: str | Path, command: str | None = None, refuse_nested: bool = True) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.command = command if command is not None else shlex.join(["sslbench", *sys.argv[1:]])
        self.refuse_nested = refuse_nested
        self.taken_over: str | None = None
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock.

        Returns:
            ``self``.

        Raises:
            SslbenchError: when another live process holds it (naming its pid, host and
                command), when the lock path is a symlink or not a regular file, or when
                ``out`` nests with a directory another live run holds.
            OutputError: when the directory cannot be created or written.
        """
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(self.out, e, "create output directory") from e
        fd = self._lock_fresh_file()
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": self.command}
        try:
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)  # a file this process just created
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise output_error(self.path, e) from e
        self._fd = fd
        if self.refuse_nested:  # after locking: of two nesting runs starting at once, at least one sees the other
            held = live_locks(self.out)
            if held:
                self.release()
                raise _nesting_error(self.out, held[0])
        return self

    def _lock_fresh_file(self) -> int:
        """Create the lock file with ``O_EXCL`` and flock it; a stale one is reported and unlinked first."""
        for _ in range(10):
            opened = _open_lock(self.path)
            if opened is None:
                continue
            fd, created = opened
            if not _flock(fd, self.path):
                info = _read_info(fd)
                os.close(fd)
                raise SslbenchError(
                    f"{self.out} is in use by another sslbench run ({describe(info)}); wait for it to "
                    f"finish or use another --out (if no such run is alive, delete {self.path})"
                )
            if not _same_file(fd, self.path):  # the holder before us removed it between our open and flock
                os.close(fd)
                continue
            if created:
                return fd
            self._note_taken_over(_read_info(fd))
            try:  # replaced, not rewritten: what stands at the path may be a hard link to another file
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError as e:
                os.close(fd)
                raise output_error(self.path, e, "replace stale lock file") from e
            os.close(fd)
        raise SslbenchError(f"could not lock {self.path}: it keeps being replaced; is another run starting?")

    def _note_taken_over(self, old: dict[str, Any]) -> None:
        if not old:
            return
        pid, host = old.get("pid"), old.get("host")
        gone = ("is no longer running" if host != socket.gethostname() or not isinstance(pid, int)
                or not pid_alive(pid) else "no longer holds it")
        self.taken_over = (f"took over the lock {self.path} of an earlier run that died ({describe(old)}): "
                           f"that process {gone}")

    def release(self) -> None:
        """Remove the lock file and release the lock (a no-op when not held)."""
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink()
        except OSError:
            pass  # the kernel drops the flock with the descriptor all the same
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
