"""SimSiam / BYOL negative cosine similarity (Chen & He 2021, eq. 1-2; Grill et al. 2020, eq. 2).

Distributed contract: purely per-sample; nothing is gathered. A rank's loss is
the mean over its own ``N`` pairs; with equal local batches the mean over ranks
is the 1-process loss on the global batch (the gradient convention is in
:mod:`sslbench.distributed`). Unequal local batches weight the ranks slightly
unequally: drop the last batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SimSiamConfig:
    """Loss config of SimSiam.

    Attributes:
        stop_gradient: Detach the projector outputs used as targets. Without it
            SimSiam collapses (Chen & He 2021, fig. 2).
    """

    stop_gradient: bool = True


@dataclass(frozen=True)
class BYOLConfig:
    """Loss config of BYOL's regression ``2 - 2 cos`` (Grill et al. 2020, eq. 2).

    The loss has no free parameter: BYOL's knobs are its target update
    (:class:`baselines.targets.EMAConfig`) and its recipe. The class exists so the
    loss is recorded by name like every other.
    """


def negative_cosine(p: torch.Tensor, z: torch.Tensor, stop_gradient: bool = True) -> torch.Tensor:
    """``D(p, z) = -mean_i cos(p_i, z_i)``, with the stop-gradient on ``z``.

    Args:
        p: ``(N, D)`` predictor outputs.
        z: ``(N, D)`` projector outputs of the other view (the target).
        stop_gradient: Detach ``z`` (SimSiam's key ingredient). Public
            implementations differ on where the stop-gradient lives (solo-learn in
            the loss, lightly in the model); here it is in the loss, so a variant
            without it is one config change.

    Returns:
        Scalar in ``[-1, 1]``; -1 when every pair is aligned.

    Distributed contract: per-sample, no gather (see the module docstring).
    """
    if stop_gradient:
        z = z.detach()
    return -F.cosine_similarity(p, z, dim=-1).mean()


def symmetric_negative_cosine(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, stop_gradient: bool = True
) -> torch.Tensor:
    """SimSiam's symmetrised loss ``0.5 * (D(p1, sg(z2)) + D(p2, sg(z1)))``.

    Args:
        p1: ``(N, D)`` predictor output of view 1.
        p2: ``(N, D)`` predictor output of view 2.
        z1: ``(N, D)`` projector output of view 1.
        z2: ``(N, D)`` projector output of view 2.
        stop_gradient: Detach the targets ``z``.

    Returns:
        Scalar loss.
    """
    return 0.5 * (negative_cosine(p1, z2, stop_gradient) + negative_cosine(p2, z1, stop_gradient))


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """``(2 - 2cos(p1, t2)) + (2 - 2cos(p2, t1))``, batch means; all inputs ``(N, D)``; targets detached.

    The paper's scale: each direction is ``2 - 2 cos`` and the two are summed
    (implementations that average the two directions are 1x). Per-sample, nothing
    gathered.
    """
    return (2 + 2 * negative_cosine(p1, t2)) + (2 + 2 * negative_cosine(p2, t1))
