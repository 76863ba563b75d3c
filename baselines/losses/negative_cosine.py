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

from sslbench.config import Bound
from sslbench.errors import SslbenchError
from sslbench.method import added_field


@dataclass(frozen=True)
class SimSiamConfig:
    """Loss config of SimSiam.

    Attributes:
        stop_gradient: Detach the projector outputs used as targets. Without it
            SimSiam collapses (Chen & He 2021, fig. 2).
        alpha: Strength of the gradient through the targets, in ``[0, 1]``: the target
            is ``sg(z) + alpha * (z - sg(z))``, whose value is ``z`` and whose gradient
            is ``alpha`` times the full one. 0 is SimSiam's stop-gradient, 1 is none
            (``simsiam_nosg``); between them the collapse atlas's axis. It needs
            ``stop_gradient`` (without it the gradient is already full).
    """

    stop_gradient: bool = True
    alpha: float = added_field(0.0, rule=Bound(0.0, 1.0))

    def __post_init__(self) -> None:
        if self.alpha != 0 and not self.stop_gradient:
            raise SslbenchError(f"SimSiam loss: alpha = {self.alpha:g} scales the stop-gradient, but stop_gradient "
                                "is false (the full gradient already flows: alpha = 1); set one of them")


@dataclass(frozen=True)
class BYOLConfig:
    """Loss config of BYOL's regression ``2 - 2 cos`` (Grill et al. 2020, eq. 2).

    The loss has no free parameter: BYOL's knobs are its target update
    (:class:`baselines.targets.EMAConfig`) and its recipe. The class exists so the
    loss is recorded by name like every other.
    """


def scale_gradient(z: torch.Tensor, alpha: float) -> torch.Tensor:
    """``sg(z) + alpha * (z - sg(z))``: the value of ``z`` (bitwise, as ``z - sg(z)`` is 0), ``alpha`` times its gradient.

    Args:
        z: ``(N, D)`` any tensor.
        alpha: Gradient scale; 0 is ``z.detach()`` itself.
    """
    if alpha == 0:
        return z.detach()
    zd = z.detach()
    return zd + alpha * (z - zd)


def negative_cosine(p: torch.Tensor, z: torch.Tensor, stop_gradient: bool = True, alpha: float = 0.0) -> torch.Tensor:
    """``D(p, z) = -mean_i cos(p_i, z_i)``, with the stop-gradient on ``z``.

    Args:
        p: ``(N, D)`` predictor outputs.
        z: ``(N, D)`` projector outputs of the other view (the target).
        stop_gradient: Detach ``z`` (SimSiam's key ingredient). Public
            implementations differ on where the stop-gradient lives (solo-learn in
            the loss, lightly in the model); here it is in the loss, so a variant
            without it is one config change.
        alpha: With ``stop_gradient``, the share of ``z``'s gradient let through
            (:func:`scale_gradient`); 0 detaches it.

    Returns:
        Scalar in ``[-1, 1]``; -1 when every pair is aligned.

    Distributed contract: per-sample, no gather (see the module docstring).
    """
    if stop_gradient:
        z = scale_gradient(z, alpha)
    return -F.cosine_similarity(p, z, dim=-1).mean()


def symmetric_negative_cosine(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, stop_gradient: bool = True,
    alpha: float = 0.0,
) -> torch.Tensor:
    """SimSiam's symmetrised loss ``0.5 * (D(p1, sg(z2)) + D(p2, sg(z1)))``.

    Args:
        p1: ``(N, D)`` predictor output of view 1.
        p2: ``(N, D)`` predictor output of view 2.
        z1: ``(N, D)`` projector output of view 1.
        z2: ``(N, D)`` projector output of view 2.
        stop_gradient: Detach the targets ``z``.
        alpha: With ``stop_gradient``, the share of the targets' gradient let through.

    Returns:
        Scalar loss.
    """
    return 0.5 * (negative_cosine(p1, z2, stop_gradient, alpha) + negative_cosine(p2, z1, stop_gradient, alpha))


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """``(2 - 2cos(p1, t2)) + (2 - 2cos(p2, t1))``, batch means; all inputs ``(N, D)``; targets detached.

    The paper's scale: each direction is ``2 - 2 cos`` and the two are summed
    (implementations that average the two directions are 1x). Per-sample, nothing
    gathered.
    """
    return (2 + 2 * negative_cosine(p1, t2)) + (2 + 2 * negative_cosine(p2, t1))
