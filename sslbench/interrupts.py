"""Ctrl-C and SIGTERM: stop at the next safe point while training, at once elsewhere.

Docker and Slurm stop a job with SIGTERM (then SIGKILL after a grace period); a
person presses Ctrl-C. Inside :func:`graceful_stop` both raise
:class:`StopRequested` where the process is, except inside :func:`deferred`
blocks (the training loop): there the first signal only sets a flag, and the
loop finishes its optimiser step, checkpoints exactly where it is (mid-epoch
included) and raises :class:`StopRequested` itself, so a rerun of the same
command resumes with no step lost. A second signal always stops at once.
Feature extraction and scoring need no such care: their outputs are written
atomically, and what they had not written is recomputed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_EXIT_CODES = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}
_WORDS = {"SIGINT": "interrupted (Ctrl-C)", "SIGTERM": "terminated (SIGTERM)"}


class StopRequested(KeyboardInterrupt):
    """The process was asked to stop (Ctrl-C or SIGTERM); whatever was checkpointed stays.

    A ``KeyboardInterrupt``, so everything that handles Ctrl-C handles it.

    Attributes:
        signame: ``SIGINT`` or ``SIGTERM``.
        exit_code: The shell's status for that signal (130 or 143).
    """

    def __init__(self, signame: str = "SIGINT") -> None:
        super().__init__(_WORDS.get(signame, signame))
        self.signame = signame
        self.exit_code = _EXIT_CODES.get(signame, 130)


def describe(exc: KeyboardInterrupt) -> tuple[str, int]:
    """``(message, exit status)`` of an interruption, a plain ``KeyboardInterrupt`` being Ctrl-C."""
    if isinstance(exc, StopRequested):
        return str(exc), exc.exit_code
    return _WORDS["SIGINT"], _EXIT_CODES["SIGINT"]


class _State:
    def __init__(self) -> None:
        self.signame: str | None = None
        self.deferring = 0


_STATE = _State()


def requested() -> str | None:
    """The signal that asked a :func:`deferred` block to stop (``SIGINT``, ``SIGTERM``), or ``None``."""
    return _STATE.signame


def check() -> None:
    """Raise :class:`StopRequested` if a stop was requested; the caller's state is safe to leave."""
    if _STATE.signame is not None:
        raise StopRequested(_STATE.signame)


@contextmanager
def deferred() -> Iterator[None]:
    """Inside, the first signal sets :func:`requested` instead of raising; the block polls it.

    A request the block did not act on is raised when it ends.
    """
    _STATE.deferring += 1
    try:
        yield
    finally:
        _STATE.deferring -= 1
    check()


def _handler(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _STATE.deferring and _STATE.signame is None:
        _STATE.signame = name
        return
    raise StopRequested(name)


@contextmanager
def graceful_stop() -> Iterator[None]:
    """Handle SIGINT and SIGTERM as above for the block (in the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _STATE.signame = None
