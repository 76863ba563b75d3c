"""The interval estimates of sslbench.stats against scipy's own implementations."""

import math

import numpy as np
import pytest
from scipy import stats

from sslbench.stats import clopper_pearson, normal_ci95, t_ci95, welch_ci95


def test_t_ci95_matches_scipy_t_interval():
    v = np.array([0.81, 0.84, 0.79, 0.86])
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert t_ci95(v) == pytest.approx((hi - lo) / 2, rel=1e-12)
    assert math.isnan(t_ci95([0.5]))


def test_normal_ci95_is_196_standard_errors():
    mean, half = normal_ci95([0.0, 1.0, 0.0, 1.0])
    assert mean == 0.5
    assert half == pytest.approx(1.96 * np.std([0, 1, 0, 1], ddof=1) / 2)


def test_welch_ci95_matches_scipy_welch_interval():
    a, b = np.array([0.80, 0.82, 0.85]), np.array([0.70, 0.75, 0.71, 0.69])
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert welch_ci95(a, b) == pytest.approx((ci.high - ci.low) / 2, rel=1e-10)
    assert welch_ci95([1.0, 1.0], [2.0, 2.0]) == 0.0


@pytest.mark.parametrize(("k", "n"), [(0, 5), (1, 5), (3, 5), (5, 5), (0, 1), (7, 20), (20, 20)])
def test_clopper_pearson_matches_scipy_exact_binomial_interval(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    lo, hi = clopper_pearson(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)


def test_clopper_pearson_refuses_impossible_counts():
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)
    with pytest.raises(ValueError):
        clopper_pearson(0, 0)
