"""Collapse protocol: healthy, completely collapsed and dimensionally collapsed features."""

import numpy as np
import pytest

from protocols.collapse import Collapse
from sslbench.errors import SslbenchError
from sslbench.protocol import check_features
from sslbench.types import FeatureSet

D = 64


def _features(test_x: np.ndarray) -> FeatureSet:
    n = len(test_x)
    return FeatureSet.of(test_x[:10].copy(), np.zeros(10, int), test_x.astype(np.float32), np.zeros(n, int))


def test_healthy_gaussian_features():
    z = np.random.default_rng(0).standard_normal((3000, D))
    out = Collapse().evaluate(_features(z), seed=0).metrics
    assert {"rankme", "std_l2", "std_l2_ref", "dim"} <= set(out)
    assert out["dim"] == D and out["std_l2_ref"] == pytest.approx(1 / np.sqrt(D))
    assert out["rankme"] > 0.95 * D
    assert out["std_l2"] == pytest.approx(out["std_l2_ref"], rel=0.05)


def test_completely_collapsed_features():
    rng = np.random.default_rng(1)
    z = rng.standard_normal(D)[None, :] + 1e-4 * rng.standard_normal((3000, D))
    out = Collapse().evaluate(_features(z), seed=0).metrics
    assert out["rankme"] < 1.1
    assert out["std_l2"] < 1e-3 * out["std_l2_ref"]


def test_dimensional_collapse_is_seen_by_rankme_only():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((3000, 8)) @ rng.standard_normal((8, D))  # rank 8 of 64
    out = Collapse().evaluate(_features(z), seed=0).metrics
    assert out["rankme"] < 8.5
    assert out["std_l2"] > 0.7 * out["std_l2_ref"]  # looks healthy: the blind spot


def test_subsample_is_seeded():
    z = np.random.default_rng(3).standard_normal((3000, D))
    protocol = Collapse(max_samples=500)
    a = protocol.evaluate(_features(z), seed=0).metrics
    assert protocol.evaluate(_features(z), seed=0).metrics == a
    assert protocol.evaluate(_features(z), seed=1).metrics["rankme"] != a["rankme"]
    assert Collapse(max_samples=3000).evaluate(_features(z), seed=0).metrics == Collapse().evaluate(
        _features(z), seed=5
    ).metrics


def test_nan_features_are_refused_naming_the_array():
    z = np.random.default_rng(4).standard_normal((100, D))
    z[50, 0] = np.nan  # outside the 10 rows reused as train_x
    with pytest.raises(SslbenchError, match="test_x"):
        check_features(_features(z))  # the scoring loop checks once, before any protocol
