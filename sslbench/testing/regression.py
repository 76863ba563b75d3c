"""``sslbench compare`` inside pytest."""

from __future__ import annotations

from typing import Any

def assert_no_regression(
    baseline: Any,
    current: Any,
    *,
    abs_tol: float | None = None,
    ci_mult: float | None = None,
    tolerances: dict[str, str] | None = None,
    metrics: list[str] | None = None,
) -> Any:
    """``sslbench compare`` inside pytest: fail when ``current`` is worse than ``baseline``.

    Both sides are what ``sslbench compare`` reads: a run directory, a directory
    with a ``leaderboard.json``, a ``leaderboard.json`` or result JSON path, or
    such a document already loaded as a dict. The rule, defaults and verdicts
    are those of :mod:`sslbench.compare`::

        def test_my_encoder_did_not_get_worse(tmp_path):
            evaluate(EvalConfig(encoder="encoder.ts", dataset="digits", out=str(tmp_path)))
            assert_no_regression("tests/baseline/leaderboard.json", tmp_path, abs_tol=0.02)

    Args:
        baseline: The reference side.
        current: The side under test.
        abs_tol: Default allowed drop (default :data:`sslbench.compare.ABS_TOL`).
        ci_mult: Allowed drop in combined-CI units (default :data:`sslbench.compare.CI_MULT`).
        tolerances: Per-metric rules ``{pattern: "0.05" or "10%"}``.
        metrics: Restrict the comparison (names, protocols, patterns or ``"main"``).

    Returns:
        The :class:`sslbench.compare.Comparison` when it passes.

    Raises:
        AssertionError: with the REGRESSION and missing rows and the summary line.
        SslbenchError: for unusable input.
    """
    from sslbench import compare

    result = compare.compare(
        compare.load(baseline),
        compare.load(current),
        abs_tol=compare.ABS_TOL if abs_tol is None else abs_tol,
        ci_mult=compare.CI_MULT if ci_mult is None else ci_mult,
        tolerances=tolerances,
        metrics=metrics,
    )
    if not result.passed:
        raise AssertionError(
            f"embedding quality regressed ({result.baseline} -> {result.current}):\n"
            + result.format_table(only_failures=True)
        )
    return result
