"""alpha-ReQ, VICReg variance, covariance spectrum, alignment, uniformity and the status rule,
against constructed embeddings with known answers and loop formulas."""

import dataclasses
import itertools
import math

import numpy as np
import pytest

from protocols.collapse import Collapse
from sslbench.embedding_stats import (
    alignment,
    alpha_req,
    collapsed_dimension_count,
    covariance_spectrum,
    status_readings,
    uniformity,
    variance_hinge,
)
from sslbench.types import FeatureSet, MultiViews, PositivePairs, Split

D = 64


def _power_law(alpha: float, n: int = 20000, d: int = D, seed: int = 0) -> np.ndarray:
    """Gaussian rows whose covariance eigenvalues are k^-alpha, in a random rotation."""
    rng = np.random.default_rng(seed)
    scales = np.arange(1, d + 1, dtype=np.float64) ** (-alpha / 2)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (rng.standard_normal((n, d)) * scales) @ q.T


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_recovers_the_power_law_exponent(alpha):
    a, r2 = alpha_req(_power_law(alpha))
    assert a == pytest.approx(alpha, abs=0.08) and r2 > 0.98


def test_alpha_req_isotropic_is_flat_and_nan_when_too_few_eigenvalues():
    a, _ = alpha_req(np.random.default_rng(1).standard_normal((20000, D)))
    assert a < 0.15  # only the sampling spread of equal eigenvalues
    a, r2 = alpha_req(np.ones((50, 3)))
    assert math.isnan(a) and math.isnan(r2)


def test_variance_hinge_matches_the_vicreg_formula():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((500, 8)) * np.array([2.0, 1.0, 0.5, 0.1, 0.0, 3.0, 0.25, 1.5])
    hinge, dead = variance_hinge(z)
    std = np.sqrt(z.var(axis=0, ddof=1) + 1e-4)
    assert hinge == pytest.approx(np.mean([max(0.0, 1.0 - s) for s in std]))
    assert dead == pytest.approx(1 / 8)  # the all-zero dimension
    assert variance_hinge(np.zeros((10, 4)) + 5.0) == (pytest.approx(1 - math.sqrt(1e-4)), 1.0)


def test_covariance_spectrum_is_the_eigenvalues_of_the_normalised_covariance():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((300, 12))
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    expected = np.sort(np.linalg.eigvalsh(np.cov(zn, rowvar=False, bias=True)))[::-1]
    np.testing.assert_allclose(covariance_spectrum(z), np.maximum(expected, 0), atol=1e-12)


def test_spectrum_counts_the_collapsed_dimensions_of_a_rank_k_embedding():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((2000, 10)) @ rng.standard_normal((10, D))
    # l2 normalisation is not linear, but rows of a rank-10 Z stay in a 10-d subspace
    assert collapsed_dimension_count(covariance_spectrum(z)) == D - 10
    assert collapsed_dimension_count(covariance_spectrum(rng.standard_normal((2000, D)))) == 0


def test_alignment_and_uniformity_match_loop_formulas():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((40, 6)), rng.standard_normal((40, 6))
    na = a / np.linalg.norm(a, axis=1, keepdims=True)
    nb = b / np.linalg.norm(b, axis=1, keepdims=True)
    assert alignment(a, b) == pytest.approx(np.mean([np.sum((x - y) ** 2) for x, y in zip(na, nb)]))
    pairs = [math.exp(-2 * np.sum((na[i] - na[j]) ** 2)) for i, j in itertools.combinations(range(40), 2)]
    assert uniformity(a) == pytest.approx(math.log(np.mean(pairs)))


def test_uniformity_known_values():
    rng = np.random.default_rng(6)
    assert uniformity(np.tile(rng.standard_normal(D), (100, 1))) == pytest.approx(0.0, abs=1e-12)
    # two antipodal points, 50 rows each: 2450 pairs at distance 0, 2500 at squared distance 4
    v = rng.standard_normal(D)
    two = np.vstack([np.tile(v, (50, 1)), np.tile(-v, (50, 1))])
    assert uniformity(two) == pytest.approx(math.log((2450 + 2500 * math.exp(-8)) / 4950))
    assert uniformity(rng.standard_normal((2000, 512))) == pytest.approx(-4.0, abs=0.05)


def test_status_rule_on_constructed_cases():
    rng = np.random.default_rng(7)
    cases = {
        "healthy": rng.standard_normal((2000, D)),
        "complete": rng.standard_normal(D)[None, :] + 1e-4 * rng.standard_normal((2000, D)),
        # two clusters: std of the normalised rows stays high, the spread is one direction
        "dimensional": np.sign(rng.standard_normal((2000, 1))) * rng.standard_normal(D) + 0.05 * rng.standard_normal((2000, D)),
    }
    for expected, z in cases.items():
        assert status_readings(z, uniformity_samples=1000)["status"] == expected


def _features(test_x: np.ndarray, test_z: np.ndarray | None = None, pairs: PositivePairs | None = None) -> FeatureSet:
    n = len(test_x)
    train_z = None if test_z is None else test_z[:10]
    return FeatureSet(Split(test_x[:10].copy(), np.zeros(10, int), train_z),
                      Split(test_x.astype(np.float32), np.zeros(n, int), test_z), pairs=pairs)


def test_protocol_reports_the_full_suite_for_both_layers_with_spectra():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1500, 32)).astype(np.float32)
    z = _power_law(1.0, n=1500, d=D, seed=9).astype(np.float32)
    pa = rng.standard_normal((200, 32)).astype(np.float32)
    protocol = Collapse(uniformity_samples=500)
    ev = protocol.evaluate(_features(x, z, PositivePairs(pa, pa + 0.01, z[:200], z[:200])), seed=0)
    out, art = ev.metrics, ev.artifacts
    for prefix in ("", "z_"):
        for k in ("rankme", "std_l2", "alpha_req", "alpha_req_r2", "alpha_req_authors", "var_hinge", "dead_frac",
                  "spectrum_collapsed_dims", "spread", "effective_dims", "stable_rank", "uniformity",
                  "w2_uniformity", "alignment"):
            assert math.isfinite(out[prefix + k]), prefix + k
    assert out["z_alignment"] == 0.0 and 0 < out["alignment"] < 1e-3
    assert out["status"] == "healthy" and "status_code" not in out  # the status says it; no numeric copy
    assert art["spectrum_backbone"].shape == (32,) and art["spectrum_projector"].shape == (D,)
    assert np.all(np.diff(art["spectrum_projector"]) <= 0)


def test_protocol_without_projector_or_pairs_reports_backbone_only():
    out = Collapse().evaluate(_features(np.random.default_rng(10).standard_normal((500, 16))), seed=0).metrics
    assert out["status"] == "n/a" and "z_rankme" not in out and "alignment" not in out
    assert "alpha_req" in out and "uniformity" in out


def test_lidar_reads_the_views_of_each_layer_when_the_features_carry_them():
    """Image means spanning 4 orthogonal directions with small isotropic view noise: LiDAR about 4."""
    rng = np.random.default_rng(11)
    means = np.zeros((200, 32))
    means[:, :4] = rng.standard_normal((200, 4))
    views = means[:, None, :] + 0.05 * rng.standard_normal((200, 6, 32))
    x = rng.standard_normal((300, 32)).astype(np.float32)
    feats = dataclasses.replace(_features(x, x.copy()), views=MultiViews(views, views.copy()))
    out = Collapse().evaluate(feats, seed=0).metrics
    assert out["lidar"] == pytest.approx(4.0, rel=0.1) and out["z_lidar"] == pytest.approx(out["lidar"])
    assert "lidar" not in Collapse().evaluate(_features(x, x.copy()), seed=0).metrics  # no views, no reading
