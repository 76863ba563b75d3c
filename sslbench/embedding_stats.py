"""Label-free statistics of embeddings that reveal collapse.

Pure functions, computed in float64. The training loop logs
:func:`std_of_l2_normalized` on every batch as a collapse alarm; the
``collapse`` protocol reports both functions on test features. The two are
complementary: the std is scale-aware but blind to dimensional collapse (a
rank-16 embedding in 128 dims still reads ~1/sqrt(D)), RankMe sees the
spectrum.
"""

from __future__ import annotations

import numpy as np
import torch

#: The collapse statuses of :func:`collapse_status`, in severity order (best first).
COLLAPSE_STATUSES = ("healthy", "dimensional", "complete")
#: Optimiser steps before the training-time monitor's reading counts: eval-mode batch
#: norm reads its running statistics, which hold more than 1% of their initial values
#: before ~50 updates at momentum 0.1 (0.9^50 < 0.01); earlier readings can look
#: collapsed when they are not.
PROBE_WARMUP_STEPS = 50


def std_of_l2_normalized(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the per-dimension std of l2-normalised embeddings.

    ``mean_j std_i(z_ij / ||z_i||)`` with the unbiased (N - 1) std, as in the
    collapse plot of SimSiam (Chen & He 2021, "Exploring Simple Siamese
    Representation Learning", Sec. 4.1). It is 0 for complete collapse (all rows
    point the same way) and about ``1/sqrt(D)`` for embeddings spread uniformly
    over the sphere. Cheap enough to call on every training batch: one norm,
    one std, no graph (the result is detached).

    Args:
        z: ``(N, D)`` embeddings, any float dtype and device; ``N >= 2``.

    Returns:
        A float64 scalar tensor on ``z``'s device.

    Raises:
        ValueError: if ``z`` is not 2-D or has fewer than 2 rows.
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"expected (N, D) embeddings with N >= 2, got shape {tuple(z.shape)}")
    with torch.no_grad():
        z64 = z.detach().to(torch.float64)
        zn = z64 / z64.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return zn.std(dim=0, correction=1).mean()


def rankme(z: np.ndarray | torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe: the entropy-based effective rank of an embedding matrix.

    Garrido, Balestriero, Najman & LeCun 2023, "RankMe: Assessing the
    Downstream Performance of Pretrained Self-Supervised Representations by
    Their Rank" (ICML), Eq. 1: with ``s`` the singular values of the
    *uncentred* ``Z``, ``p_k = s_k / sum(s) + eps`` and
    ``RankMe = exp(-sum_k p_k log p_k)``. About 1 for complete collapse, about
    the number of used dimensions for dimensional collapse, close to
    ``min(N, D)`` for healthy embeddings. Singular values (sigma, not sigma^2)
    of the raw matrix, so a constant embedding plus tiny noise reads ~1.

    Args:
        z: ``(N, D)`` embeddings (numpy array or tensor); converted to float64.
        eps: Added to each normalised singular value, as in the paper.

    Returns:
        The effective rank, in ``[~1, min(N, D)]``; 1.0 for an all-zero matrix.

    Raises:
        ValueError: if ``z`` is not 2-D.
    """
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu().to(torch.float64).numpy()
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"expected (N, D) embeddings, got shape {z.shape}")
    s = np.linalg.svd(z, compute_uv=False)
    total = s.sum()
    if not total > 0:
        return 1.0
    p = s / total + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def _as_f64(z: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu().to(torch.float64).numpy()
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"expected (N, D) embeddings, got shape {z.shape}")
    return z


def l2_rows(z: np.ndarray) -> np.ndarray:
    """Rows of ``z`` scaled to unit l2 norm (zero rows stay zero), float64."""
    z = _as_f64(z)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


#: Norms below this (of non-zero rows) are recomputed in float64: their squares underflow in float32.
_TINY_NORM = 1e-12


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise l2 normalisation to contiguous float32, without overflow or underflow (zero rows stay zero).

    The norms are computed in float32, as every protocol did, except for rows whose
    squared norm overflows (entries of about 1e19 and more) or underflows in float32:
    those are normalised in float64, where a float32 input can neither overflow nor
    underflow. So rows of ordinary magnitude are bit for bit
    what a plain ``x / ||x||`` gives, and huge or tiny rows still come out of unit norm.

    Args:
        x: ``(N, D)`` features.

    Returns:
        ``(N, D)`` float32 rows of unit norm.
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        norms = np.linalg.norm(x, axis=1, keepdims=True)
    out = x / np.maximum(norms, np.float32(_TINY_NORM))
    bad = ~np.isfinite(norms[:, 0]) | ((norms[:, 0] < _TINY_NORM) & (np.abs(x).max(axis=1, initial=0) > 0))
    if bad.any():  # non-zero rows whose float64 norm is finite and positive
        rows = x[bad].astype(np.float64)
        out[bad] = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return np.ascontiguousarray(out)


def covariance_spectrum(z: np.ndarray | torch.Tensor) -> np.ndarray:
    """Eigenvalues of the covariance of the l2-normalised rows, sorted in decreasing order.

    The spectrum plot of Jing, Vincent, LeCun & Tian 2022, "Understanding
    Dimensional Collapse in Contrastive Self-supervised Learning" (ICLR), Fig. 2:
    a cliff where the values drop by many orders of magnitude marks collapsed
    dimensions. Centred covariance with the biased (1/N) estimator, float64.

    Args:
        z: ``(N, D)`` embeddings.

    Returns:
        ``(min(N, D),)`` float64 eigenvalues (clipped at 0), largest first.
    """
    zn = l2_rows(z)
    zc = zn - zn.mean(axis=0, keepdims=True)
    s = np.linalg.svd(zc, compute_uv=False)  # singular values of the centred matrix
    return np.maximum(s**2 / len(zn), 0.0)


#: A covariance eigenvalue below this fraction of the largest counts as a collapsed dimension.
SPECTRUM_DEAD_FRACTION = 1e-5


def collapsed_dimension_count(spectrum: np.ndarray) -> int:
    """Dimensions whose eigenvalue is below :data:`SPECTRUM_DEAD_FRACTION` of the top one (Jing et al. 2022)."""
    spectrum = np.asarray(spectrum, dtype=np.float64)
    if len(spectrum) == 0 or not spectrum[0] > 0:
        return len(spectrum)
    return int((spectrum < SPECTRUM_DEAD_FRACTION * spectrum[0]).sum())


#: alpha-ReQ fit window: skip this many leading eigenvalues (the head) ...
ALPHA_REQ_HEAD = 1
#: ... and every eigenvalue below this fraction of the largest (the numerical floor).
ALPHA_REQ_FLOOR = 1e-10


def alpha_req(z: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """alpha-ReQ: the power-law decay coefficient of the covariance eigenspectrum, and the fit's R^2.

    Agrawal, Mondal, Ghosh & Richards 2022, "alpha-ReQ: Assessing Representation
    Quality in Self-Supervised Learning by Measuring Eigenspectrum Decay"
    (NeurIPS): with ``lambda_k`` the eigenvalues of the centred covariance of
    ``Z`` sorted decreasingly, fit ``log lambda_k = c - alpha log k`` by least
    squares. Here the fit skips the first :data:`ALPHA_REQ_HEAD` eigenvalue(s)
    (the head, often a mean direction) and every eigenvalue below
    :data:`ALPHA_REQ_FLOOR` of the largest (numerically zero). ``alpha`` near 1
    is the regime the paper links to good downstream accuracy; ``alpha >> 1``
    means a few directions carry everything (collapse); ``alpha << 1`` a flat,
    noise-like spectrum. The R^2 says how well a power law describes the
    spectrum at all; a low R^2 makes ``alpha`` meaningless.

    Args:
        z: ``(N, D)`` embeddings (not normalised: the paper fits the raw covariance).

    Returns:
        ``(alpha, r2)``; ``(nan, nan)`` when fewer than 3 eigenvalues are usable.
    """
    z = _as_f64(z)
    zc = z - z.mean(axis=0, keepdims=True)
    lam = np.linalg.svd(zc, compute_uv=False) ** 2 / max(len(z) - 1, 1)
    if len(lam) == 0 or not lam[0] > 0:
        return float("nan"), float("nan")
    ranks = np.arange(1, len(lam) + 1, dtype=np.float64)
    keep = (ranks > ALPHA_REQ_HEAD) & (lam > ALPHA_REQ_FLOOR * lam[0])
    if keep.sum() < 3:
        return float("nan"), float("nan")
    x, y = np.log(ranks[keep]), np.log(lam[keep])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (resid**2).sum() / total if total > 0 else 1.0
    return float(-slope), float(r2)


#: A dimension whose std is below this fraction of the mean std over dimensions is dead.
DEAD_STD_FRACTION = 0.01


def variance_hinge(z: np.ndarray | torch.Tensor, eps: float = 1e-4) -> tuple[float, float]:
    """VICReg's variance term and the fraction of dead dimensions.

    Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance
    Regularization for Self-Supervised Learning" (ICLR), Eq. 1:
    ``v = mean_j relu(1 - sqrt(Var_j + eps))`` with the unbiased variance: 0
    when every dimension has std >= 1, 1 for complete collapse. It is read on
    the raw (unnormalised) scale, which VICReg's loss pins to std 1; for other
    methods only its change over training is comparable. A dimension is dead
    when its std is below :data:`DEAD_STD_FRACTION` of the mean std.

    Args:
        z: ``(N, D)`` embeddings, ``N >= 2``.
        eps: The epsilon inside the square root (VICReg's 1e-4).

    Returns:
        ``(hinge, dead_fraction)``, both in ``[0, 1]``.
    """
    var = _as_f64(z).var(axis=0, ddof=1)
    hinge = float(np.maximum(0.0, 1.0 - np.sqrt(var + eps)).mean())
    raw = np.sqrt(var)
    mean_std = raw.mean()
    dead = float((raw < DEAD_STD_FRACTION * mean_std).mean()) if mean_std > 0 else 1.0
    return hinge, dead


def alignment(za: np.ndarray | torch.Tensor, zb: np.ndarray | torch.Tensor) -> float:
    """Alignment of positive pairs: ``E ||f(x) - f(x+)||^2`` with ``f`` l2-normalised.

    Wang & Isola 2020, "Understanding Contrastive Representation Learning
    through Alignment and Uniformity on the Hypersphere" (ICML), Eq. 4 with
    alpha = 2. In ``[0, 4]``; 0 when both views map to the same point (which
    a collapsed encoder also achieves: read it with :func:`uniformity`).

    Args:
        za: ``(N, D)`` embeddings of the first views.
        zb: ``(N, D)`` embeddings of the second views, row-aligned with ``za``.
    """
    a, b = l2_rows(za), l2_rows(zb)
    if a.shape != b.shape:
        raise ValueError(f"alignment needs row-aligned pairs, got shapes {a.shape} and {b.shape}")
    return float(((a - b) ** 2).sum(axis=1).mean())


def uniformity(z: np.ndarray | torch.Tensor, t: float = 2.0) -> float:
    """Uniformity: ``log E_{i<j} exp(-t ||f(x_i) - f(x_j)||^2)`` over distinct pairs, ``f`` l2-normalised.

    Wang & Isola 2020 (ICML), Eq. 5, with t = 2. 0 for complete collapse (all
    points equal); about ``-2t = -4`` for points spread uniformly over a
    high-dimensional sphere. Computed with a log-sum-exp over all ``N(N-1)/2``
    pairs, so keep ``N`` to a few thousand.

    Args:
        z: ``(N, D)`` embeddings, ``N >= 2``.
        t: The temperature t.
    """
    zn = l2_rows(z)
    n = len(zn)
    if n < 2:
        raise ValueError(f"uniformity needs at least 2 rows, got {n}")
    gram = zn @ zn.T
    sq = np.maximum(2.0 - 2.0 * gram[np.triu_indices(n, k=1)], 0.0)  # ||a - b||^2 of unit rows
    e = -t * sq
    m = e.max()
    return float(m + np.log(np.exp(e - m).mean()))


#: Dimensional collapse: uniformity (t=2) of the l2-normalised outputs above this value.
#: Points spread over a circle (2 dims) read -1.58, two antipodal clusters (1 dim) -0.69 and
#: a healthy high-dimensional spread about -4.
DIMENSIONAL_UNIFORMITY = -1.0


def participation_ratio(spectrum: np.ndarray) -> float:
    """Participation ratio ``(sum_k lambda_k)^2 / sum_k lambda_k^2`` of a covariance spectrum.

    Equals ``(tr S)^2 / ||S||_F^2`` for the covariance ``S`` whose eigenvalues are
    ``spectrum``: the dimensionality measure of Gao et al. 2017 ("A theory of
    multineuronal dimensionality, dynamics and measurement", bioRxiv 214262).
    It is ``k`` for ``k`` equal non-zero
    eigenvalues whatever the width, and being a second moment it is carried by
    the largest eigenvalues: a long tail of tiny ones barely moves it, unlike
    the entropy-based :func:`rankme`. One direction carrying a fraction ``f`` of
    the variance caps it near ``1 / f^2``.

    Args:
        spectrum: ``(K,)`` non-negative eigenvalues, any order (e.g.
            :func:`covariance_spectrum`).

    Returns:
        The participation ratio, in ``[1, K]``; 0.0 for an all-zero spectrum.
    """
    lam = np.maximum(np.asarray(spectrum, dtype=np.float64), 0.0)
    total = lam.sum()
    if not total > 0:
        return 0.0
    return float(total**2 / (lam**2).sum())


def stable_rank(spectrum: np.ndarray) -> float:
    """Stable rank ``||A||_F^2 / ||A||_2^2 = sum_k lambda_k / max_k lambda_k`` of a data matrix.

    Rudelson & Vershynin 2007, "Sampling from large matrices: an approach
    through geometric functional analysis" (J. ACM): for the centred,
    ``1/sqrt(N)``-scaled data matrix ``A`` the squared singular values are the
    covariance eigenvalues, so the stable rank is ``tr S / lambda_max``. It is
    ``k`` for ``k`` equal eigenvalues and never exceeds :func:`participation_ratio`
    (``(tr S)^2 / ||S||_F^2``, sometimes also called a stable rank).

    Args:
        spectrum: ``(K,)`` non-negative covariance eigenvalues, any order.

    Returns:
        The stable rank, in ``[1, K]``; 0.0 for an all-zero spectrum.
    """
    lam = np.maximum(np.asarray(spectrum, dtype=np.float64), 0.0)
    if len(lam) == 0 or not lam.max() > 0:
        return 0.0
    return float(lam.sum() / lam.max())


#: Complete collapse (width-free rule): total variance ``tr S`` of the l2-normalised rows
#: below this. ``tr S = 1 - ||mean||^2`` is 1 for any centred spread on the sphere and 0 when
#: all rows point one way; 0.01 is a root-mean-square distance of 0.1 from the mean direction
#: (for an isotropic spread, a std of the normalised rows of 0.1/sqrt(D) per dimension).
COMPLETE_COLLAPSE_SPREAD = 0.01
#: Dimensional collapse (width-free rule): participation ratio of the covariance spectrum of
#: the l2-normalised rows below this, i.e. the variance sits in at most about three directions.
#: A k-dimensional spread reads just under k at every width, so a half-integer splits k <= 3
#: from k >= 4. It sits at 3.5, not higher, because trained encoders that are healthy by every
#: other measure read 4.0-5.4 at small scale (SimSiam and BYOL projectors on digits and on
#: fashion-mnist-10k, with kNN far above chance); the constructed spreads and the trained
#: runs behind it are in docs/reference/collapse_metrics.md.
DIMENSIONAL_MIN_EFFECTIVE_DIMS = 3.5


def collapse_status(spread: float, effective_dims: float, uniformity_value: float) -> str:
    """``complete``, ``dimensional`` or ``healthy`` from readings that do not scale with the width.

    Neither threshold depends on ``D``: complete collapse is a total variance ``tr S`` of the l2-normalised rows below
    :data:`COMPLETE_COLLAPSE_SPREAD` (rotation-invariant, unlike the per-axis std,
    which reads ``sqrt(k)/D`` for a ``k``-dimensional spread along coordinate
    axes); dimensional collapse is a :func:`participation_ratio` of their
    covariance spectrum below :data:`DIMENSIONAL_MIN_EFFECTIVE_DIMS` (the variance
    sits in at most about three directions) or a :func:`uniformity` above
    :data:`DIMENSIONAL_UNIFORMITY` (the points crowd together on the sphere: one
    axis, or a narrow cone). A ``k``-dimensional spread gets the same label at
    every width. The thresholds and the constructed cases behind them are in
    docs/reference/collapse_metrics.md.

    All three readings come from one ``(N, D)`` matrix ``z`` of outputs:
    ``spectrum = covariance_spectrum(z)``, ``spread = spectrum.sum()``,
    ``effective_dims = participation_ratio(spectrum)``, ``uniformity(z)``.

    Args:
        spread: ``tr S`` of the l2-normalised rows, in ``[0, 1]``.
        effective_dims: :func:`participation_ratio` of the same covariance.
        uniformity_value: :func:`uniformity` (t=2) of the outputs.
    """
    if spread < COMPLETE_COLLAPSE_SPREAD:
        return "complete"
    if uniformity_value > DIMENSIONAL_UNIFORMITY or effective_dims < DIMENSIONAL_MIN_EFFECTIVE_DIMS:
        return "dimensional"
    return "healthy"


#: alpha-ReQ as its authors compute it (reptrix ``alpha.get_alpha``): fit ranks 11 to 100, 1-based.
ALPHA_REQ_AUTHORS_RANKS = (11, 100)


def alpha_req_authors(
    z: np.ndarray | torch.Tensor, ranks: tuple[int, int] = ALPHA_REQ_AUTHORS_RANKS
) -> tuple[float, float]:
    """alpha-ReQ fitted as the authors' library does: a fixed rank window, weights 1/k.

    Agrawal et al. 2022 (NeurIPS); the estimator of the authors' library
    (github.com/arnab39/reptrix, ``reptrix/alpha.py``, ``get_powerlaw``): the
    eigenvalues ``lambda_k`` of the centred covariance, sorted decreasingly;
    ``log lambda_k = c - alpha log k`` by least squares weighted by ``1/k`` over
    ranks ``k`` in ``ranks`` (11 to 100). A fixed window ignores both the head
    and the tail: a cliff past rank 100 (collapsed directions) does not move it,
    while :func:`alpha_req` (ranks 2 to the 1e-10 floor, unweighted) reads the
    cliff as steep decay. Windows reaching past ``min(N, D)`` are cut there,
    and non-positive eigenvalues are left out (their log is undefined).

    Args:
        z: ``(N, D)`` embeddings (not normalised, as in the paper).
        ranks: First and last 1-based rank of the fit window, inclusive.

    Returns:
        ``(alpha, r2)``: the decay and the unweighted R^2 of the fitted line on
        the window's log eigenvalues; ``(nan, nan)`` with fewer than 3 usable ranks.
    """
    z = _as_f64(z)
    zc = z - z.mean(axis=0, keepdims=True)
    lam = np.linalg.svd(zc, compute_uv=False) ** 2 / max(len(z) - 1, 1)
    k = np.arange(ranks[0], min(ranks[1], len(lam)) + 1)
    k = k[lam[k - 1] > 0]
    if len(k) < 3:
        return float("nan"), float("nan")
    y = np.log(lam[k - 1])
    x = np.stack([-np.log(k), np.ones(len(k))], axis=1)
    w = 1.0 / k
    alpha, intercept = np.linalg.solve(x.T @ (x * w[:, None]), (x * w[:, None]).T @ y)
    resid = y - x @ np.array([alpha, intercept])
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (resid**2).sum() / total if total > 0 else 1.0
    return float(alpha), float(r2)


def _entropy_rank(values: np.ndarray, eps: float) -> float:
    """``exp(-sum p log p)`` with ``p = values / sum(values) + eps`` (RankMe's form); 1.0 if all zero."""
    total = values.sum()
    if not total > 0:
        return 1.0
    p = values / total + eps
    return float(np.exp(-np.sum(p * np.log(p))))


#: LiDAR's regulariser delta, added to the within-class covariance (absolute, so on the
#: embeddings' own scale; reference implementations use 1e-6 to 1e-3, see
#: docs/reference/collapse_metrics.md).
LIDAR_DELTA = 1e-4


def lidar(views: np.ndarray | torch.Tensor, delta: float = LIDAR_DELTA, eps: float = 1e-7) -> float:
    """LiDAR: the effective rank of the LDA matrix whose classes are images and samples their views.

    Thilak et al. 2023, "LiDAR: Sensing Linear Probing Performance in Joint
    Embedding SSL Architectures" (arXiv:2312.04000, ICLR 2024): with ``mu_i`` the mean embedding of
    image ``i``'s views and ``mu`` the mean of the ``mu_i``,
    ``S_b = cov_i(mu_i)`` (between images), ``S_w = mean_i cov_j(e_ij) + delta I``
    (within an image's views), ``S_lidar = S_w^{-1/2} S_b S_w^{-1/2}`` and
    ``LiDAR = exp(-sum_k p_k log p_k)`` with ``p_k = lambda_k / sum(lambda) + eps``
    over its eigenvalues. Unbiased (``n - 1``, ``n (q - 1)``) estimates, float64.
    Invariant to any invertible linear map of the embeddings as ``delta -> 0``;
    at most ``min(n - 1, D)`` up to ``eps``.

    Args:
        views: ``(n, q, D)`` embeddings of ``q >= 2`` augmented views of each of
            ``n >= 2`` images.
        delta: Ridge added to ``S_w`` so it can be inverted.
        eps: Added to each normalised eigenvalue, as in RankMe.

    Returns:
        The effective rank, in ``[~1, min(n - 1, D)]``.

    Raises:
        ValueError: if ``views`` is not ``(n, q, D)`` with ``n, q >= 2``.
    """
    if isinstance(views, torch.Tensor):
        views = views.detach().cpu().to(torch.float64).numpy()
    v = np.asarray(views, dtype=np.float64)
    if v.ndim != 3 or v.shape[0] < 2 or v.shape[1] < 2:
        raise ValueError(f"expected (n images, q >= 2 views, D) embeddings with n >= 2, got shape {v.shape}")
    n, q, d = v.shape
    means = v.mean(axis=1)
    between = means - means.mean(axis=0)
    s_b = between.T @ between / (n - 1)
    within = (v - means[:, None, :]).reshape(n * q, d)
    s_w = within.T @ within / (n * (q - 1)) + delta * np.eye(d)
    w, u = np.linalg.eigh(s_w)
    inv_sqrt = (u / np.sqrt(w)) @ u.T
    lam = np.maximum(np.linalg.eigvalsh(inv_sqrt @ s_b @ inv_sqrt), 0.0)
    return _entropy_rank(lam, eps)


def wasserstein_uniformity(z: np.ndarray | torch.Tensor) -> float:
    """Wasserstein-2 distance from the l2-normalised rows, as a Gaussian, to ``N(0, I/D)``.

    Fang, Li, Sun & Wang, "Rethinking the Uniformity Metric in Self-Supervised
    Learning" (ICLR 2024, arXiv:2403.00642): model the normalised
    embeddings as ``N(mu, S)`` (sample mean, biased covariance) and compare
    with the isotropic Gaussian that a uniform spread on the sphere approaches,
    ``W2 = sqrt(||mu||^2 + 1 + tr S - (2 / sqrt(D)) tr S^{1/2})`` (the
    Gaussian W2 formula with the second covariance ``I/D``). The paper's
    uniformity metric is ``-W2``; this returns ``W2``: 0 for a uniform spread,
    ``sqrt(2)`` for complete collapse and ``sqrt(2 - 2 sqrt(k/D))`` for a
    centred ``k``-dimensional one, so unlike :func:`uniformity` it sees
    dimensional collapse relative to the width.

    Args:
        z: ``(N, D)`` embeddings, ``N >= 2``.

    Returns:
        ``W2``, in ``[0, sqrt(2)]`` for unit rows.
    """
    zn = l2_rows(z)
    mu = zn.mean(axis=0)
    lam = covariance_spectrum(zn)
    sq = float(mu @ mu) + 1.0 + lam.sum() - 2.0 / np.sqrt(zn.shape[1]) * np.sqrt(lam).sum()
    return float(np.sqrt(max(sq, 0.0)))


def status_readings(z: np.ndarray | torch.Tensor, uniformity_samples: int = 2000) -> dict[str, float | str]:
    """The three readings :func:`collapse_status` judges, and the status, of ``(N, D)`` outputs.

    Args:
        z: ``(N, D)`` outputs, ``N >= 2`` (the training monitor's probe batch, or the
            collapse protocol's subsample).
        uniformity_samples: Leading rows used for uniformity (all pairs among them).

    Returns:
        ``{"spread", "effective_dims", "uniformity", "status"}``.
    """
    spectrum = covariance_spectrum(z)
    spread, eff = float(spectrum.sum()), participation_ratio(spectrum)
    uni = uniformity(_as_f64(z)[:uniformity_samples])
    return {"spread": spread, "effective_dims": eff, "uniformity": uni, "status": collapse_status(spread, eff, uni)}
