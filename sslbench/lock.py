"""Locks under ``--out``: the output directory's ``<out>/.sslbench.lock`` and one per run directory.

Each lock is an ``fcntl.flock`` on a lock file, so the kernel releases it when
its holder dies, however it dies (SIGKILL included); the file's content (pid,
host, start time, command) is for people. A lock file that no process holds was
left by a process that died: it is reported and replaced. A clean exit removes
the file.

- ``sslbench run`` holds the output directory's lock **shared** (``shared=True``):
  any number of invocations and workers may share one ``--out``. One that finds
  itself alone (it could take the lock exclusively, :attr:`RunLock.alone`) may
  clear the temp files of writes a kill cut short before it shares the lock.
  ``sslbench eval`` holds it exclusively, and refuses while any run shares it.
- Each run directory ``<out>/<method>/seed<k>`` has its own exclusive lock
  (:data:`RUN_LOCK_NAME`): a worker claims a run by taking it without waiting
  (:meth:`RunLock.try_acquire`) and moves on when another holds it, so no run is
  trained twice at once.
- :func:`locked_file` is a short critical section (the manifest's
  read-modify-write) shared by every process on ``--out``.

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

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from sslbench.errors import SslbenchError
from sslbench.io import output_error

LOCK_NAME = ".sslbench.lock"
#: The lock file of one run directory (not :data:`LOCK_NAME`: :func:`live_locks` looks for output
#: directories, and a run directory is not one).
RUN_LOCK_NAME = ".run.lock"
#: Tries (``_BUSY_WAIT_S`` apart) before a lock is called busy: :func:`holder_of` holds a probe
#: lock on a file for a few microseconds while it looks, which must not read as a holder.
_BUSY_TRIES = 5
_BUSY_WAIT_S = 0.02
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
#: Longest wait of a shared holder for another shared holder that is alone for a moment
#: (clearing stale temp files before it shares the lock).
_SHARED_WAIT_S = 300.0


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
    except (OSError, ValueError, RecursionError):
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


def _flock(fd: int, path: Path, mode: int = fcntl.LOCK_EX, tries: int = _BUSY_TRIES) -> bool:
    """Take ``fd``'s flock in ``mode`` without waiting: ``True``, or ``False`` when another process
    holds it (``tries`` attempts, :data:`_BUSY_WAIT_S` apart)."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno not in _BUSY:
                os.close(fd)
                raise output_error(path, e, "lock") from e
        if attempt + 1 < tries:
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
    """The record of a process holding the lock file ``path``; ``None`` when no process holds it.

    Probes with a non-blocking exclusive flock (released at once), so a shared
    holder counts too; it is held only when :data:`_BUSY_TRIES` probes fail, since
    another prober may hold the probe lock for a few microseconds. A missing path,
    a symlink or anything but a regular file reads as not held.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        for attempt in range(_BUSY_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in _BUSY:
                    return None
                if attempt + 1 < _BUSY_TRIES:
                    time.sleep(_BUSY_WAIT_S)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_info(fd)
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
    """A lock of an output directory (or, with ``name=RUN_LOCK_NAME``, of one run directory).

    Use as a context manager; :meth:`acquire` creates the directory.

    Args:
        out: The directory to lock.
        command: What to record as the holder's command (default: ``sys.argv``).
        refuse_nested: Also refuse when a live lock sits in an ancestor or a
            descendant of ``out`` (:func:`live_locks`).
        name: The lock file's name in ``out``.
        shared: Share the lock with other shared holders (``sslbench run``); an
            exclusive holder (``sslbench eval``) keeps them out and they keep it out.
        tries: Attempts (:data:`_BUSY_WAIT_S` apart) before the lock is called busy.

    Attributes:
        path: ``<out>/<name>``.
        taken_over: When the lock file was left by a dead process, a sentence saying
            whose it was (``None`` otherwise).
        alone: Whether this holder had the lock exclusively when it took it (always,
            unless ``shared``): no other holder was alive then.
    """

    def __init__(self, out: str | Path, command: str | None = None, refuse_nested: bool = True, *,
                 name: str = LOCK_NAME, shared: bool = False, tries: int = _BUSY_TRIES) -> None:
        self.out = Path(out)
        self.path = self.out / name
        self.command = command if command is not None else shlex.join(["sslbench", *sys.argv[1:]])
        self.refuse_nested = refuse_nested
        self.shared = shared
        self.tries = tries
        self.taken_over: str | None = None
        self.alone = False
        self.holder: dict[str, Any] = {}
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
        if not self.try_acquire():
            raise SslbenchError(
                f"{self.out} is in use by another sslbench run ({describe(self.holder)}); wait for it to "
                f"finish or use another --out (if no such run is alive, delete {self.path})"
            )
        return self

    def try_acquire(self) -> bool:
        """Take the lock if no other process keeps it out: ``True``; ``False`` when one does
        (its record, when readable, is then in ``holder``).

        Raises:
            SslbenchError: when the lock path is a symlink or not a regular file, or when
                ``out`` nests with a directory another live run holds.
            OutputError: when the directory cannot be created or written.
        """
        self.holder = {}
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(self.out, e, "create output directory") from e
        fd = self._lock_fresh_file()
        if fd is None:
            return False
        self._fd = fd
        if self.refuse_nested:  # after locking: of two nesting runs starting at once, at least one sees the other
            held = live_locks(self.out, (self.path.name,))
            if held:
                self.release()
                raise _nesting_error(self.out, held[0])
        return True

    def _write_record(self, fd: int) -> None:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": self.command,
                  "shared": self.shared}
        try:
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)  # a file this process just created
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise output_error(self.path, e) from e

    def _lock_fresh_file(self) -> int | None:
        """Lock the lock file (creating it with ``O_EXCL``; a stale one is reported and unlinked first).

        Returns:
            The locked descriptor; ``None`` when another process holds the lock.
        """
        for _ in range(10):
            opened = _open_lock(self.path)
            if opened is None:
                continue
            fd, created = opened
            if not _flock(fd, self.path, fcntl.LOCK_EX, self.tries):
                if self.shared and self._share(fd):
                    if _same_file(fd, self.path):
                        return fd  # shared with live holders: their record stays
                    os.close(fd)
                    continue
                self.holder = _read_info(fd)
                os.close(fd)
                return None
            if not _same_file(fd, self.path):  # the holder before us removed it between our open and flock
                os.close(fd)
                continue
            if created:
                self.alone = True
                self._write_record(fd)
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

    def _share(self, fd: int) -> bool:
        """Take ``fd``'s shared flock; wait while the exclusive holder is a shared holder alone for a moment
        (its record says ``shared``), not while it is an exclusive one (``sslbench eval``)."""
        deadline = time.monotonic() + _SHARED_WAIT_S
        while True:
            if _flock(fd, self.path, fcntl.LOCK_SH, self.tries):
                return True
            if not _read_info(fd).get("shared") or time.monotonic() > deadline:
                return False

    def share(self) -> None:
        """Turn an exclusive hold of a ``shared`` lock into a shared one (after the work that needed
        to be alone, such as clearing stale temp files); a no-op otherwise."""
        if self._fd is not None and self.shared:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def _note_taken_over(self, old: dict[str, Any]) -> None:
        if not old:
            return
        pid, host = old.get("pid"), old.get("host")
        gone = ("is no longer running" if host != socket.gethostname() or not isinstance(pid, int)
                or not pid_alive(pid) else "no longer holds it")
        self.taken_over = (f"took over the lock {self.path} of an earlier run that died ({describe(old)}): "
                           f"that process {gone}")

    def release(self) -> None:
        """Release the lock, removing the lock file when no other holder shares it (a no-op when not held)."""
        if self._fd is None:
            return
        try:
            last = not self.shared or _flock(self._fd, self.path, fcntl.LOCK_EX, 1)
            if last and _same_file(self._fd, self.path):
                self.path.unlink()
        except (OSError, SslbenchError):
            pass  # the kernel drops the flock with the descriptor all the same
        finally:
            if self._fd is not None:
                try:
                    os.close(self._fd)
                except OSError:
                    pass
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


@contextlib.contextmanager
def locked_file(path: Path, timeout_s: float = 60.0) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if absent, never removed) for a short critical section.

    Every process that reads, changes and rewrites a shared file (``manifest.json``)
    does it inside this section, so no update is lost. The file is never unlinked:
    two processes must always lock the same inode.

    Raises:
        SslbenchError: when the path is a symlink or not a regular file, or the lock
            is not free within ``timeout_s`` seconds.
        OutputError: when it cannot be created.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse_kind(path, None) from None
        raise output_error(path, e, "create lock file") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refuse_kind(path, mode)
        deadline = time.monotonic() + timeout_s
        while not _flock(fd, path, fcntl.LOCK_EX, 1):
            if time.monotonic() > deadline:
                raise SslbenchError(f"{path} stayed locked for {timeout_s:.0f}s; is another sslbench process stuck?")
            time.sleep(_BUSY_WAIT_S)
        yield
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
