"""User-facing errors: one line a person can act on, exit code 2 at the CLI."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SslbenchError(Exception):
    """An error caused by input (names, config, data, files), not by a bug.

    The CLI prints ``str(error)`` on one line and exits with code 2.
    """


def did_you_mean(name: str, choices: Iterable[str], kind: str) -> SslbenchError:
    """Build the error for an unknown name, with the closest known names.

    Args:
        name: The name the user gave.
        choices: The registered names.
        kind: What was looked up ("method", "protocol", ...), for the message.

    Returns:
        An ``SslbenchError`` saying ``unknown <kind> 'x'; did you mean 'y'?``.
    """
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    msg = f"unknown {kind} {name!r}"
    if close:
        msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    msg += f" (known: {', '.join(choices)})"
    return SslbenchError(msg)


class NotApplicable(SslbenchError):
    """A protocol's requirements are not met by these inputs (too few classes for its
    episodes, no transfer split): the protocol is skipped with this reason, which is
    not a failure of the command."""
