"""Interval estimates shared by the protocols, the leaderboard, the analysis and the atlas.

Every 95% interval in sslbench comes from here, so a table's ``± x`` means one thing:

- :func:`t_ci95`: Student-t half-width of a mean over a few values (seeds, draws);
- :func:`normal_ci95`: the normal-approximation half-width ``1.96 sd / sqrt(n)``
  used for many episodes (the few-shot convention of Tian et al. 2020);
- :func:`welch_ci95`: Welch's t half-width of a difference of two means with
  unequal variances (a variant against its base);
- :func:`clopper_pearson`: the exact binomial interval of a proportion (a collapse
  probability over seeds; Clopper & Pearson 1934).

Standard deviations use ``ddof=1`` throughout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

#: Two-sided 97.5% quantile of the standard normal.
Z975 = 1.96


def t_ci95(values: Sequence[float] | np.ndarray) -> float:
    """Half-width of the 95% Student-t interval of the mean.

    Args:
        values: ``(n,)`` observations.

    Returns:
        ``t_{0.975, n-1} * sd / sqrt(n)``; NaN for fewer than 2 values.
    """
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float("nan")
    return float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def normal_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and normal-approximation 95% half-width ``1.96 * sd / sqrt(n)``.

    Args:
        values: ``(n,)`` observations, ``n >= 2`` (e.g. per-episode accuracies).

    Returns:
        ``(mean, half_width)``.
    """
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(Z975 * v.std(ddof=1) / np.sqrt(len(v)))


def welch_ci95(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Half-width of the 95% Welch t-interval of ``mean(a) - mean(b)``.

    Welch-Satterthwaite degrees of freedom; 0 when both samples are constant.

    Args:
        a: ``(n_a,)`` observations.
        b: ``(n_b,)`` observations.

    Returns:
        The half-width; NaN with fewer than 2 values on either side.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(stats.t.ppf(0.975, dof) * se)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a binomial proportion ``k / n``.

    The bounds are Beta quantiles: ``lo = B(alpha/2; k, n-k+1)`` and
    ``hi = B(1-alpha/2; k+1, n-k)``, with ``lo = 0`` at ``k = 0`` and ``hi = 1`` at
    ``k = n`` (Clopper & Pearson 1934, Biometrika 26(4)).

    Args:
        k: Successes, ``0 <= k <= n``.
        n: Trials, ``n >= 1``.
        level: Confidence level.

    Returns:
        ``(lo, hi)`` in ``[0, 1]``.

    Raises:
        ValueError: for ``n < 1`` or ``k`` outside ``[0, n]``.
    """
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"clopper_pearson needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    alpha = 1.0 - level
    lo = 0.0 if k == 0 else float(stats.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi
