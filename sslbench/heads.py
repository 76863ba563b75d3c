"""Projector / predictor MLPs shared by the methods."""

from __future__ import annotations

from torch import nn


def mlp(dims: list[int], last_bn: bool = False, last_bn_affine: bool = True) -> nn.Sequential:
    """Linear-BN-ReLU blocks between ``dims``; the last layer is linear (optionally BN).

    Args:
        dims: ``[in, hidden..., out]``.
        last_bn: Batch-norm the output (SimSiam's projector does).
        last_bn_affine: Whether that last BN has a learnable affine.

    Returns:
        ``(N, dims[0])`` -> ``(N, dims[-1])``.
    """
    layers: list[nn.Module] = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1], bias=False), nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=last_bn_affine))
    return nn.Sequential(*layers)
