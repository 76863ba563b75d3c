"""Shape checks for JSON read from disk: each returns the value or raises one line naming where it was."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sslbench.errors import SslbenchError

Metric = float | str
"""A metric value: a number, or a short label."""


def as_object(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise SslbenchError(f"{what} must be a JSON object, got {type(v).__name__}")
    return v


def as_str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise SslbenchError(f"{what} must be a string, got {v!r}")
    return v


def as_int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SslbenchError(f"{what} must be an integer, got {v!r}")
    return v


def as_float(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SslbenchError(f"{what} must be a number, got {v!r}")
    return _to_float(v, what)


def _to_float(v: float, what: str) -> float:
    """``float(v)``; JSON integers have no size limit, and one past float's range is refused, not raised."""
    try:
        return float(v)
    except OverflowError:
        raise SslbenchError(f"{what} must be a number within float range, got an integer of {len(str(v))} digits") from None


def as_str_list(v: Any, what: str) -> list[str]:
    if not isinstance(v, list | tuple) or not all(isinstance(s, str) for s in v):
        raise SslbenchError(f"{what} must be a list of strings, got {v!r}"[:300])
    return list(v)


def as_str_map(v: Any, what: str) -> dict[str, str]:
    v = as_object(dict(v) if isinstance(v, Mapping) else v, what)
    return {str(k): str(x) for k, x in v.items()}


def as_label_map(v: Any, where: str) -> dict[str, list[str]]:
    v = as_object(dict(v) if isinstance(v, Mapping) else v, f"{where}: labels")
    if not all(isinstance(x, list | tuple) and all(isinstance(s, str) for s in x) for x in v.values()):
        raise SslbenchError(f"{where}: protocol 'labels' must map metrics to lists of strings")
    return {str(k): list(x) for k, x in v.items()}


def as_metrics(v: Any, where: str) -> dict[str, Metric]:
    v = as_object(v, f"{where}: 'metrics'")
    out: dict[str, Metric] = {}
    for k, x in v.items():
        if isinstance(x, bool) or not isinstance(x, int | float | str | None):
            raise SslbenchError(f"{where}: metric {k!r} must be a number or a string, got {type(x).__name__}")
        out[k] = float("nan") if x is None else (_to_float(x, f"{where}: metric {k!r}") if isinstance(x, int | float) else x)
    return out
