"""Fault injection for crash-safety tests, driven by ``SSLBENCH_FAULT``; unset in normal use.

``SSLBENCH_FAULT=<point>`` SIGKILLs the process when it reaches ``<point>``:

- ``after_step:<k>``: training, after optimiser step ``k`` (1-based, counted over
  the whole run), i.e. in the middle of an epoch whose checkpoint is not written;
- ``after_epoch:<k>``: after the checkpoint of epoch ``k`` is written;
- ``during_features``: feature extraction, after its first batch;
- ``after_features``: features extracted (and cached), no protocol run yet;
- ``before_result:<protocol>``: the protocol's metrics are computed, nothing written;
- ``after_protocol:<protocol>``: its result JSON is written;
- ``before_rename:<file name>``: an atomic write of ``<file name>`` has written and
  fsynced its temp file but not renamed it over the target.

``SSLBENCH_FAULT=SIGTERM:<point>`` (or ``SIGINT:<point>``) sends that signal instead,
as ``docker stop``, Slurm's preemption or Ctrl-C do.

``SSLBENCH_FAULT=enospc:<file name>`` (or plain ``enospc`` for every file) makes the
atomic write of that file fail halfway with ``OSError(ENOSPC)``, as a disk that
fills up while writing does.

Either form may end in ``@<method>/seed<k>`` (``after_step:5@vicreg/seed1``): it then
fires only while that run is the one being worked on (:func:`in_run`), so a test
can kill one worker of a sweep, or fill the disk under one run, and no other.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Iterator

ENV = "SSLBENCH_FAULT"
_current_run: str | None = None


@contextlib.contextmanager
def in_run(label: str) -> Iterator[None]:
    """Mark ``label`` (``<method>/seed<k>``) as the run being worked on, for faults scoped to it."""
    global _current_run
    before, _current_run = _current_run, label
    try:
        yield
    finally:
        _current_run = before


def _fault() -> str | None:
    """The fault named by ``SSLBENCH_FAULT`` that applies now (its run scope removed), if any."""
    fault = os.environ.get(ENV)
    if fault is None or "@" not in fault:
        return fault
    point, _, run = fault.rpartition("@")
    return point if run == _current_run else None


def maybe_fault(point: str) -> None:
    """Send this process SIGKILL (or the signal named) if ``SSLBENCH_FAULT`` names ``point``.

    Args:
        point: The point reached, e.g. ``"after_epoch:2"``.
    """
    fault = _fault()
    if fault == point:
        os.kill(os.getpid(), signal.SIGKILL)
    for sig in (signal.SIGTERM, signal.SIGINT):
        if fault == f"{sig.name}:{point}":
            os.kill(os.getpid(), sig)


def disk_full(file_name: str) -> bool:
    """Whether the write of ``file_name`` should fail with ENOSPC (``enospc`` or ``enospc:<file_name>``)."""
    fault = _fault()
    return fault == "enospc" or fault == f"enospc:{file_name}"


def enospc_error(path: str) -> OSError:
    """The ``OSError`` a full disk raises when writing ``path``."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
