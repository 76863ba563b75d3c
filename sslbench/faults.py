"""Fault injection for crash-safety tests: ``SSLBENCH_FAULT=<point>`` SIGKILLs the process there.

Points: ``after_epoch:<k>`` (after the checkpoint of epoch k is written),
``after_features``, ``after_protocol:<name>``. Unset in normal use.
"""

from __future__ import annotations

import os
import signal


def maybe_fault(point: str) -> None:
    """Kill this process with SIGKILL if ``SSLBENCH_FAULT`` names ``point``."""
    if os.environ.get("SSLBENCH_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
