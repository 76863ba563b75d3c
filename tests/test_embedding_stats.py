"""Label-free readings against constructed spectra, hand formulas and the reference libraries' values.

RankMe, the std of l2-normalised rows, the participation ratio and stable rank,
alpha-ReQ with the authors' window, LiDAR and the Wasserstein-2 uniformity.
"""

import numpy as np
import pytest
import scipy.linalg
import torch

from sslbench.embedding_stats import (
    alpha_req,
    alpha_req_authors,
    covariance_spectrum,
    lidar,
    participation_ratio,
    rankme,
    stable_rank,
    std_of_l2_normalized,
    wasserstein_uniformity,
)


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


# --- participation ratio and stable rank -------------------------------------------------


@pytest.mark.parametrize("spectrum,pr,sr", [
    ([2.0, 2.0, 2.0, 0.0, 0.0], 3.0, 3.0),          # k equal eigenvalues: both read k
    ([4.0, 1.0, 1.0], 36.0 / 18.0, 6.0 / 4.0),      # (sum)^2 / sum of squares; sum / max
    ([1.0], 1.0, 1.0),
    ([0.0, 0.0], 0.0, 0.0),
])
def test_participation_ratio_and_stable_rank_by_hand(spectrum, pr, sr):
    assert participation_ratio(np.array(spectrum)) == pytest.approx(pr)
    assert stable_rank(np.array(spectrum)) == pytest.approx(sr)


def test_participation_ratio_is_trace_squared_over_frobenius_of_the_covariance():
    rng = np.random.default_rng(6)
    z = rng.standard_normal((500, 20)) * rng.uniform(0.1, 3, size=20)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = np.cov(zn, rowvar=False, bias=True)
    spectrum = covariance_spectrum(z)
    assert participation_ratio(spectrum) == pytest.approx(np.trace(s) ** 2 / np.sum(s * s), rel=1e-9)
    assert stable_rank(spectrum) == pytest.approx(np.trace(s) / np.linalg.eigvalsh(s).max(), rel=1e-9)
    assert stable_rank(spectrum) <= participation_ratio(spectrum)


def test_participation_ratio_ignores_a_tail_that_entropy_ranks_count():
    """Three unit eigenvalues plus 2045 at 1e-6: the participation ratio stays near 3."""
    spectrum = np.concatenate([np.ones(3), np.full(2045, 1e-6)])
    assert participation_ratio(spectrum) == pytest.approx((3 + 2045e-6) ** 2 / (3 + 2045e-12), rel=1e-12)
    assert participation_ratio(spectrum) < 3.02


# --- alpha-ReQ: the authors' window and weights ------------------------------------------


def _with_covariance_spectrum(lam: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A centred ``(n, D)`` matrix whose (n - 1) covariance has exactly the eigenvalues ``lam``."""
    rng = np.random.default_rng(seed)
    d = len(lam)
    u = np.linalg.qr(rng.standard_normal((n, d)))[0]
    u = np.linalg.qr(u - u.mean(axis=0))[0]
    v = np.linalg.qr(rng.standard_normal((d, d)))[0]
    return np.sqrt(n - 1) * (u * np.sqrt(lam)) @ v.T


def test_alpha_req_authors_matches_the_reference_libraries_own_test():
    """reptrix tests/test_alpha.py: torch.randn(1000, 1024) after torch.manual_seed(0) reads 0.148936."""
    torch.manual_seed(0)
    alpha, r2 = alpha_req_authors(torch.randn(1000, 1024))
    assert alpha == pytest.approx(0.148936, abs=2e-6)
    assert 0 < r2 <= 1


def test_alpha_req_authors_is_the_weighted_fit_by_hand():
    rng = np.random.default_rng(7)
    z = rng.standard_normal((400, 150)) * np.arange(1, 151.0) ** -0.6
    lam = np.sort(np.linalg.eigvalsh(np.cov(z, rowvar=False)))[::-1]
    k = np.arange(11, 101)
    x, y, w = np.log(k), np.log(lam[k - 1]), 1.0 / k
    # Weighted least squares slope of y on x, from the weighted means.
    xm, ym = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    slope = (w * (x - xm) * (y - ym)).sum() / (w * (x - xm) ** 2).sum()
    assert alpha_req_authors(z)[0] == pytest.approx(-slope, rel=1e-9)


def test_alpha_req_cliff_past_the_window_moves_only_the_floor_fit():
    """The issue's case: lambda_k = 1/k with a x1e-4 cliff at rank 150 (D = 256)."""
    k = np.arange(1, 257.0)
    lam = 1.0 / k
    lam[150:] *= 1e-4
    z = _with_covariance_spectrum(lam, 2000)
    assert alpha_req_authors(z)[0] == pytest.approx(1.0, abs=1e-6)
    assert alpha_req_authors(z)[1] == pytest.approx(1.0, abs=1e-9)
    assert alpha_req(z)[0] == pytest.approx(4.30, abs=0.01)


def test_alpha_req_finite_sample_power_law_reads_near_its_exponent_only_in_the_window():
    """The issue's case: a Gaussian with eigenvalues 1/k, N = 2000, D = 1024: 0.97 against 1.32."""
    z = np.random.default_rng(0).standard_normal((2000, 1024)) * np.arange(1, 1025.0) ** -0.5
    assert alpha_req_authors(z)[0] == pytest.approx(0.97, abs=0.02)
    assert alpha_req(z)[0] == pytest.approx(1.32, abs=0.02)


def test_alpha_req_authors_window_is_cut_at_the_width():
    z = np.random.default_rng(8).standard_normal((3000, 64)) * np.arange(1, 65.0) ** -1.0
    alpha, _ = alpha_req_authors(z)  # ranks 11 to 64 only
    assert alpha == pytest.approx(2.0, abs=0.15)
    assert np.isnan(alpha_req_authors(np.ones((50, 12)))[0])


# --- LiDAR -----------------------------------------------------------------------------


def _lda_eigenvalues_generalised(views: np.ndarray, delta: float) -> np.ndarray:
    """Independent route: generalised eigenvalues of (S_b, S_w + delta I), loops over images."""
    n, q, d = views.shape
    means = views.mean(axis=1)
    grand = means.mean(axis=0)
    s_b = sum(np.outer(m - grand, m - grand) for m in means) / (n - 1)
    s_w = sum(np.outer(e - means[i], e - means[i]) for i in range(n) for e in views[i]) / (n * (q - 1))
    return np.maximum(scipy.linalg.eigh(s_b, s_w + delta * np.eye(d), eigvals_only=True), 0.0)


def _effective_rank(lam: np.ndarray, eps: float = 1e-7) -> float:
    p = lam / lam.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def test_lidar_matches_generalised_eigenvalues():
    rng = np.random.default_rng(9)
    views = rng.standard_normal((60, 4, 12)) @ rng.standard_normal((12, 12)) + rng.standard_normal((60, 1, 12))
    expected = _effective_rank(_lda_eigenvalues_generalised(views, 1e-4))
    assert lidar(views) == pytest.approx(expected, rel=1e-8)
    assert lidar(torch.from_numpy(views)) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_lidar_of_image_means_spanning_k_dims_with_isotropic_views_is_k(k):
    """Exact design: S_b has k equal eigenvalues, S_w = sigma^2 I, so S_lidar has k equal ones."""
    d, sigma = 16, 0.5
    rng = np.random.default_rng(k)
    coords = np.linalg.qr(rng.standard_normal((40, k)))[0]
    coords = np.linalg.qr(coords - coords.mean(axis=0))[0] * np.sqrt(39)  # centred, cov exactly I_k
    means = 3.0 * coords @ np.linalg.qr(rng.standard_normal((d, k)))[0].T
    # 2d views per image: +- a scaled axis, so each image's within scatter is exactly (q - 1) sigma^2 I.
    q = 2 * d
    offsets = np.concatenate([np.eye(d), -np.eye(d)]) * sigma * np.sqrt((q - 1) / 2)
    views = means[:, None, :] + offsets[None]
    lam = np.concatenate([np.full(k, 9.0 / (sigma**2 + 1e-4)), np.zeros(d - k)])
    assert lidar(views) == pytest.approx(_effective_rank(lam), rel=1e-6)
    assert lidar(views) == pytest.approx(k, rel=1e-4)


def test_lidar_is_invariant_to_an_invertible_linear_map():
    rng = np.random.default_rng(10)
    views = rng.standard_normal((200, 5, 1)) * rng.standard_normal((1, 1, 10)) + rng.standard_normal((200, 5, 10))
    a = rng.standard_normal((10, 10)) + 3 * np.eye(10)
    assert lidar(views @ a, delta=1e-12) == pytest.approx(lidar(views, delta=1e-12), rel=1e-6)


def test_lidar_needs_several_views():
    with pytest.raises(ValueError):
        lidar(np.ones((10, 1, 4)))
    with pytest.raises(ValueError):
        lidar(np.ones((10, 4)))


# --- Wasserstein-2 to the isotropic Gaussian -----------------------------------------------


def _w2_direct(z: np.ndarray) -> float:
    """Gaussian W2 by the general formula, with a matrix square root, against N(0, I/D)."""
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    mu, s = zn.mean(axis=0), np.cov(zn, rowvar=False, bias=True)
    d = z.shape[1]
    target = np.eye(d) / d
    root_t = scipy.linalg.sqrtm(target)
    cross = scipy.linalg.sqrtm(root_t @ s @ root_t).real
    return float(np.sqrt(mu @ mu + np.trace(s + target - 2 * cross)))


@pytest.mark.parametrize("seed", [0, 1])
def test_w2_matches_the_general_gaussian_formula(seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((700, 24)) @ rng.standard_normal((24, 24)) + rng.standard_normal(24)
    assert wasserstein_uniformity(z) == pytest.approx(_w2_direct(z), rel=1e-7)


@pytest.mark.parametrize("k,d", [(1, 64), (4, 64), (16, 128)])
def test_w2_of_a_centred_k_dim_spread(k, d):
    """Normalised rows of a k-dim isotropic Gaussian have covariance I_k / k: W2 = sqrt(2 - 2 sqrt(k/D))."""
    rng = np.random.default_rng(k)
    z = rng.standard_normal((20000, k)) @ np.linalg.qr(rng.standard_normal((d, k)))[0].T
    assert wasserstein_uniformity(z) == pytest.approx(np.sqrt(2 - 2 * np.sqrt(k / d)), abs=0.01)


def test_w2_isotropic_is_near_zero_and_collapse_is_sqrt2():
    rng = np.random.default_rng(11)
    assert wasserstein_uniformity(rng.standard_normal((20000, 32))) < 0.05
    z = np.ones((100, 32)) + 1e-9 * rng.standard_normal((100, 32))
    assert wasserstein_uniformity(z) == pytest.approx(np.sqrt(2), abs=1e-6)
