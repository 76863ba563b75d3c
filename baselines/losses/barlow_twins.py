"""Barlow Twins loss and its named terms (Zbontar et al., "Barlow Twins: Self-Supervised
Learning via Redundancy Reduction", ICML 2021).

Each view is batch-normalised separately (biased variance, eps 1e-5, no
affine); ``C = za_n^T zb_n / N``;
``L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2`` with lambda = 0.0051
(lightly uses 5e-3). Normalising both views together is a known bug of some
implementations.

``scale_loss`` multiplies the loss (solo-learn ``solo/losses/barlow.py``: default
0.024, 0.1 in its CIFAR config; the first release of facebookresearch/barlowtwins:
1/32). Under plain SGD that is a learning-rate change; under LARS it is not. Each
adapted (weight) tensor's step has norm ``eta * lr * ||p||`` whatever the gradient
scale, so with no weight decay the weight steps do not change at all; with weight
decay they turn towards ``-p``, since the scaled gradient shrinks against
``wd * p``; the steps of biases and norm parameters, which LARS leaves unadapted,
scale by ``scale_loss``. So it moves the balance between weight and bias/norm
updates and the direction of the weight updates (docs/reference/optimisers.md,
``tests/test_optim.py``); the official code later replaced it by a separate
bias learning rate (``--learning-rate-biases``). Default 1: no scaling.

Distributed contract: the per-dimension mean/var of the batch norm and ``C``
are global batch statistics. With ``gather=True`` the entry points
(:func:`barlow_twins_terms`, :func:`barlow_twins_loss`) gather both views from
all ranks and compute the 1-process loss on the global batch on every rank (the
gradient convention is in :mod:`sslbench.distributed`). ``gather=False`` (the
default) or no process group: the pure local loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sslbench.distributed import gather_pair_with_grad
from sslbench.method import added_field


@dataclass(frozen=True)
class BarlowTwinsConfig:
    """Attributes:
    lambd: Weight of the off-diagonal (redundancy reduction) term.
    eps: Batch-norm epsilon.
    scale_loss: Factor on the whole loss (solo-learn's CIFAR recipe: 0.1); not a
        learning-rate change under LARS (see the module docstring).
    """

    lambd: float = 0.0051
    eps: float = 1e-5
    scale_loss: float = added_field(1.0)


def _batch_norm(z: torch.Tensor, eps: float) -> torch.Tensor:
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def cross_correlation(za: torch.Tensor, zb: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(N, D), (N, D)`` -> ``(D, D)`` cross-correlation of the separately normalised views."""
    return _batch_norm(za, eps).T @ _batch_norm(zb, eps) / za.shape[0]


def barlow_twins_terms(
    za: torch.Tensor, zb: torch.Tensor, cfg: BarlowTwinsConfig = BarlowTwinsConfig(), gather: bool = False
) -> dict[str, torch.Tensor]:
    """Unweighted ``on_diagonal = sum_i (1 - C_ii)^2`` and ``off_diagonal = sum_{i!=j} C_ij^2``.

    Args:
        za: ``(N, D)`` projector outputs of view a (this rank's rows).
        zb: ``(N, D)`` projector outputs of view b.
        cfg: Loss config.
        gather: Compute on the global batch gathered from all ranks (a
            collective when distributed; no-op otherwise).

    Returns:
        Two scalars, global-batch values when gathered.
    """
    if gather:
        za, zb = gather_pair_with_grad(za, zb)
    c = cross_correlation(za, zb, cfg.eps)
    diag = torch.diagonal(c)
    return {"on_diagonal": (1 - diag).pow(2).sum(), "off_diagonal": c.pow(2).sum() - diag.pow(2).sum()}


def combine(terms: dict[str, torch.Tensor], cfg: BarlowTwinsConfig) -> torch.Tensor:
    """``scale_loss * (on_diagonal + lambd * off_diagonal)`` from the named terms."""
    return cfg.scale_loss * (terms["on_diagonal"] + cfg.lambd * terms["off_diagonal"])


def barlow_twins_loss(
    za: torch.Tensor, zb: torch.Tensor, lambd: float = 0.0051, eps: float = 1e-5, gather: bool = False,
    scale_loss: float = 1.0,
) -> torch.Tensor:
    """Barlow Twins loss.

    Args:
        za: ``(N, D)`` projector outputs of view a.
        zb: ``(N, D)`` projector outputs of view b.
        lambd: Off-diagonal weight (0.0051).
        eps: Batch-norm epsilon.
        gather: Compute on the global batch gathered from all ranks (see the
            module's distributed contract).
        scale_loss: Factor on the whole loss (1: none).

    Returns:
        Scalar loss.
    """
    cfg = BarlowTwinsConfig(lambd, eps, scale_loss)
    return combine(barlow_twins_terms(za, zb, cfg, gather), cfg)
