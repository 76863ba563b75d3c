"""SimSiam / BYOL negative cosine similarity (Chen & He 2021, eq. 1-2; Grill et al. 2020).

Distributed contract: purely per-sample; nothing is gathered. A rank's loss is
the mean over its own ``N`` pairs. With the same ``N`` on every rank the mean
over ranks of these losses is the 1-process loss on the global batch, and rank
``r``'s gradient on its inputs is ``world_size`` times the global loss's
gradient on those rows, so DistributedDataParallel's gradient average is the
1-process gradient (``tests/test_distributed.py``). Unequal local batches (a
last partial batch) weight the ranks slightly unequally: drop the last batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
