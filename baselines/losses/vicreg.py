"""VICReg loss and its named terms (Bardes, Ponce & LeCun, ICLR 2022).

``L = inv_coeff * inv(za, zb) + var_coeff * var(za, zb) + cov_coeff * cov(za, zb)``
with the official code's conventions (facebookresearch/vicreg):

- ``inv = mse(za, zb)``, the mean over ``N * D`` entries;
- ``var = 0.5 * (v(za) + v(zb))``, ``v(x) = mean_j relu(1 - sqrt(Var_j(x) + eps))``
  with the unbiased variance. The paper's equation has no 0.5; the official
  code has it; solo-learn omits it (2x);
- ``cov = c(za) + c(zb)``, ``c(x) = sum_{i != j} C_ij^2 / D``,
  ``C = xc^T xc / (N - 1)`` on centred ``x``.

Distributed contract: ``var`` and ``cov`` (and ``cov_mode="correlation"``) are
batch statistics and must be computed on the global batch; ``inv`` is
per-sample. With ``gather=True`` the entry points (:func:`vicreg_terms`,
:func:`vicreg_loss`) gather both branches from all ranks and compute every term
on the global batch, the same value on every rank (the gradient convention is
in :mod:`sslbench.distributed`). ``gather=False`` (the default) or no process
group: the pure local loss. The term functions themselves never communicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from sslbench.distributed import gather_pair_with_grad


@dataclass(frozen=True)
class VICRegConfig:
    """Coefficients and conventions of the VICReg loss.

    Attributes:
        inv_coeff: Weight of the invariance term (lambda, 25).
        var_coeff: Weight of the variance term (mu, 25).
        cov_coeff: Weight of the covariance term (nu, 1).
        eps: Added to the variance before the square root.
        cov_mode: ``"covariance"`` (VICReg) or ``"correlation"`` (``vicreg_mod``:
            the off-diagonal penalty on each branch's correlation matrix).
    """

    inv_coeff: float = 25.0
    var_coeff: float = 25.0
    cov_coeff: float = 1.0
    eps: float = 1e-4
    cov_mode: Literal["covariance", "correlation"] = "covariance"


def invariance_term(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the two branches; ``(N, D), (N, D)`` -> scalar."""
    return F.mse_loss(za, zb)


def _std(x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt(x.var(dim=0) + eps)


def variance_term(za: torch.Tensor, zb: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Hinge on the per-dimension std, averaged over both branches.

    Args:
        za: ``(N, D)`` embeddings of view a.
        zb: ``(N, D)`` embeddings of view b.
        eps: Added to the (unbiased) variance before the square root.

    Returns:
        ``0.5 * (mean_j relu(1 - std_j(za)) + mean_j relu(1 - std_j(zb)))``.
    """
    return 0.5 * (F.relu(1 - _std(za, eps)).mean() + F.relu(1 - _std(zb, eps)).mean())


def _off_diagonal_sq_sum(m: torch.Tensor) -> torch.Tensor:
    return m.pow(2).sum() - torch.diagonal(m).pow(2).sum()


def covariance_term(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """Sum over branches of ``sum_{i != j} Cov_ij^2 / D``; ``(N, D), (N, D)`` -> scalar."""
    total = za.new_zeros(())
    for x in (za, zb):
        n, d = x.shape
        xc = x - x.mean(dim=0)
        total = total + _off_diagonal_sq_sum(xc.T @ xc / (n - 1)) / d
    return total


def correlation_term(za: torch.Tensor, zb: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Sum over branches of ``sum_{i != j} Corr_ij^2 / D``.

    ``Corr = xs^T xs / (N - 1)`` with ``xs = (x - mean) / sqrt(Var + eps)``: each
    dimension standardised by its batch std (the same std as the variance term).

    Args:
        za: ``(N, D)``.
        zb: ``(N, D)``.
        eps: Added to the variance before the square root.

    Returns:
        Scalar.
    """
    total = za.new_zeros(())
    for x in (za, zb):
        n, d = x.shape
        xs = (x - x.mean(dim=0)) / _std(x, eps)
        total = total + _off_diagonal_sq_sum(xs.T @ xs / (n - 1)) / d
    return total


def vicreg_terms(
    za: torch.Tensor, zb: torch.Tensor, cfg: VICRegConfig = VICRegConfig(), gather: bool = False
) -> dict[str, torch.Tensor]:
    """The unweighted named terms: ``invariance``, ``variance``, ``covariance``.

    With ``cfg.cov_mode == "correlation"`` the ``covariance`` entry holds
    :func:`correlation_term`.

    Args:
        za: ``(N, D)`` expander outputs of view a (this rank's rows).
        zb: ``(N, D)`` expander outputs of view b.
        cfg: Coefficients and conventions (only ``eps`` and ``cov_mode`` matter here).
        gather: Compute on the global batch gathered from all ranks (a
            collective when distributed; no-op otherwise).

    Returns:
        Three scalars, global-batch values when gathered.
    """
    if gather:
        za, zb = gather_pair_with_grad(za, zb)
    cov = correlation_term(za, zb, cfg.eps) if cfg.cov_mode == "correlation" else covariance_term(za, zb)
    return {"invariance": invariance_term(za, zb), "variance": variance_term(za, zb, cfg.eps), "covariance": cov}


def combine(terms: dict[str, torch.Tensor], cfg: VICRegConfig) -> torch.Tensor:
    """Weighted sum of the named terms with ``cfg``'s coefficients."""
    return cfg.inv_coeff * terms["invariance"] + cfg.var_coeff * terms["variance"] + cfg.cov_coeff * terms["covariance"]


def vicreg_loss(
    za: torch.Tensor,
    zb: torch.Tensor,
    inv_coeff: float = 25.0,
    var_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
    gather: bool = False,
) -> torch.Tensor:
    """VICReg loss with the official defaults (25/25/1) and conventions.

    Args:
        za: ``(N, D)`` expander outputs of view a.
        zb: ``(N, D)`` expander outputs of view b.
        inv_coeff: Invariance weight.
        var_coeff: Variance weight.
        cov_coeff: Covariance weight.
        eps: Variance epsilon.
        gather: Compute on the global batch gathered from all ranks (see the
            module's distributed contract).

    Returns:
        Scalar loss.
    """
    cfg = VICRegConfig(inv_coeff, var_coeff, cov_coeff, eps)
    return combine(vicreg_terms(za, zb, cfg, gather), cfg)
