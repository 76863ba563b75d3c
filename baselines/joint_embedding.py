"""The model shape VICReg, Barlow Twins and SimCLR share: backbone -> projector -> loss(z_a, z_b)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sslbench.method import StepOutput

#: ``(z_a, z_b) -> (loss, named terms)``, both ``(N, D)``.
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def encode_pair(net: Callable[[torch.Tensor], torch.Tensor], v1: torch.Tensor, v2: torch.Tensor,
                per_view: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``net`` of both views: as one batch (batch norm sees both views' statistics), or each on its own.

    The official VICReg, Barlow Twins and SimSiam code forward each view separately
    (``per_view``); one concatenated batch is faster on a CPU.

    Args:
        net: The network, ``(B, ...) -> (B, D)``.
        v1: ``(N, C, H, W)`` first views.
        v2: ``(N, C, H, W)`` second views.
        per_view: Forward the views separately.

    Returns:
        ``(net(v1), net(v2))``, both ``(N, D)``.
    """
    if per_view:
        return net(v1), net(v2)
    a, b = net(torch.cat([v1, v2])).chunk(2)
    return a, b


class JointEmbedding(nn.Module):
    """Both views through one backbone and projector, then a symmetric objective.

    Args:
        backbone: Module with ``out_dim``.
        projector: ``(N, out_dim) -> (N, D)``.
        objective: The method's loss on the two projections.

    Attributes:
        per_view: Forward each view on its own (:func:`encode_pair`).
    """

    def __init__(self, backbone: nn.Module, projector: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.objective = objective
        self.per_view = False

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> StepOutput:
        """Two ``(N, C, H, W)`` views -> loss, detached named terms and ``z_a`` ``(N, D)``.

        Under a process group the objective sees what it gathers (global batch
        statistics or negatives); ``z_a`` stays this rank's rows.
        """
        za, zb = encode_pair(lambda v: self.projector(self.backbone(v)), v1, v2, self.per_view)
        loss, terms = self.objective(za, zb)
        return StepOutput(loss, {k: v.detach() for k, v in terms.items()}, za.detach())
