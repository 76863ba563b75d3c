"""One ``sslbench run`` per output directory: ``<out>/.sslbench.lock``.

The lock is an ``fcntl.flock`` on the lock file, so the kernel releases it when
its holder dies, however it dies (SIGKILL included); the file's content (pid,
host, start time, command) is for people. A second run on the same directory
refuses, naming the holder. A lock file that no process holds was left by a run
that died: it is reported and taken over. A clean exit removes the file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from sslbench.errors import SslbenchError
from sslbench.io import output_error

LOCK_NAME = ".sslbench.lock"


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


class RunLock:
    """Exclusive lock of an output directory for the lifetime of one ``sslbench run``.

    Use as a context manager; :meth:`acquire` creates the directory.

    Args:
        out: The output directory.
        command: What to record as the holder's command (default: ``sys.argv``).

    Attributes:
        path: ``<out>/.sslbench.lock``.
        taken_over: When the lock file was left by a dead run, a sentence saying
            whose it was (``None`` otherwise).
    """

    def __init__(self, out: str | Path, command: str | None = None) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.command = command if command is not None else shlex.join(["sslbench", *sys.argv[1:]])
        self.taken_over: str | None = None
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock.

        Returns:
            ``self``.

        Raises:
            SslbenchError: when another live process holds it (naming its pid, host and command).
            OutputError: when the directory cannot be created or written.
        """
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(self.out, e, "create output directory") from e
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise output_error(self.path, e, "create lock file") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                info = _read_info(fd)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise output_error(self.path, e, "lock") from e
                raise SslbenchError(
                    f"{self.out} is in use by another sslbench run ({describe(info)}); wait for it to "
                    f"finish or use another --out (if no such run is alive, delete {self.path})"
                ) from None
            try:  # the holder before us may have removed the file between our open and flock
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise SslbenchError(f"could not lock {self.path}: it keeps being replaced; is another run starting?")
        old = _read_info(fd)
        if old:
            pid, host = old.get("pid"), old.get("host")
            gone = ("is no longer running" if host != socket.gethostname() or not isinstance(pid, int)
                    or not pid_alive(pid) else "no longer holds it")
            self.taken_over = (f"took over the lock {self.path} of an earlier run that died ({describe(old)}): "
                               f"that process {gone}")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": self.command}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise output_error(self.path, e) from e
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (a no-op when not held)."""
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path)):
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
