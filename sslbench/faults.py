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
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "SSLBENCH_FAULT"


def maybe_fault(point: str) -> None:
    """Send this process SIGKILL (or the signal named) if ``SSLBENCH_FAULT`` names ``point``.

    Args:
        point: The point reached, e.g. ``"after_epoch:2"``.
    """
    fault = os.environ.get(ENV)
    if fault == point:
        os.kill(os.getpid(), signal.SIGKILL)
    for sig in (signal.SIGTERM, signal.SIGINT):
        if fault == f"{sig.name}:{point}":
            os.kill(os.getpid(), sig)


def disk_full(file_name: str) -> bool:
    """Whether the write of ``file_name`` should fail with ENOSPC (``enospc`` or ``enospc:<file_name>``)."""
    fault = os.environ.get(ENV)
    return fault == "enospc" or fault == f"enospc:{file_name}"


def enospc_error(path: str) -> OSError:
    """The ``OSError`` a full disk raises when writing ``path``."""
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
