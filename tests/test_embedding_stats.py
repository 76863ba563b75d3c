"""RankMe and std of l2-normalised embeddings against constructed spectra and hand formulas."""

import numpy as np
import pytest
import torch

from sslbench.embedding_stats import rankme, std_of_l2_normalized


def _orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return q


@pytest.mark.parametrize("k,d", [(1, 64), (4, 96), (16, 128)])
def test_rankme_equal_singular_values_gives_rank(k, d):
    rng = np.random.default_rng(k)
    n = 2000
    # Z = A B with orthonormal A (N, k) and B (k, D): k equal singular values (3.0), rest 0.
    z = 3.0 * _orthonormal(rng, n, k) @ _orthonormal(rng, d, k).T
    assert abs(rankme(z) - k) < 1e-3 * k


def test_rankme_complete_collapse_is_near_one():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(128)[None, :] + 1e-4 * rng.standard_normal((2000, 128))
    assert 1.0 <= rankme(z) < 1.1


def test_rankme_isotropic_gaussian_is_near_dim():
    d = 128
    z = np.random.default_rng(1).standard_normal((2000, d))
    assert 0.97 * d < rankme(z) <= d


def test_rankme_matches_hand_computation_from_svd():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((300, 40)) @ np.diag(np.linspace(0.01, 5, 40)) + 0.3
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum() + 1e-7
    expected = np.exp(-np.sum(p * np.log(p)))
    assert rankme(z) == pytest.approx(expected, rel=1e-10)
    assert rankme(torch.from_numpy(z).float()) == pytest.approx(expected, rel=1e-5)


def test_rankme_rank_deficient_gaussian_below_rank():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2000, 16)) @ rng.standard_normal((16, 128))
    assert 10 < rankme(z) < 16


def test_std_l2_isotropic_gaussian_is_one_over_sqrt_dim():
    d = 128
    z = torch.from_numpy(np.random.default_rng(4).standard_normal((4000, d)))
    value = std_of_l2_normalized(z)
    assert value.dtype == torch.float64 and value.ndim == 0
    assert float(value) == pytest.approx(1 / np.sqrt(d), rel=0.02)


def test_std_l2_constant_rows_is_zero():
    z = torch.tensor([[1.0, -2.0, 0.5, 3.0]]).repeat(100, 1)
    assert float(std_of_l2_normalized(z)) < 1e-7


def test_std_l2_matches_numpy_formula():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((257, 33)) * rng.uniform(0.1, 4, size=33) + 0.7
    zn = z / np.sqrt((z**2).sum(axis=1, keepdims=True))
    expected = np.std(zn, axis=0, ddof=1).mean()
    got = std_of_l2_normalized(torch.from_numpy(z).float().requires_grad_(True))
    assert not got.requires_grad
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_input_shape_errors():
    with pytest.raises(ValueError):
        std_of_l2_normalized(torch.ones(1, 8))
    with pytest.raises(ValueError):
        rankme(np.ones(8))
