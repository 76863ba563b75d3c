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

#: Complete collapse: std of l2-normalised embeddings below this fraction of the
#: healthy ``1/sqrt(D)``. Shared by the training-time monitor and the collapse protocol.
COMPLETE_COLLAPSE_STD_FRACTION = 0.1


def is_completely_collapsed(std_l2: float, dim: int) -> bool:
    """Whether ``std_l2`` (:func:`std_of_l2_normalized`) of ``dim``-d embeddings reads complete collapse."""
    return std_l2 < COMPLETE_COLLAPSE_STD_FRACTION / float(np.sqrt(dim))


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
