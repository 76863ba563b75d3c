"""The model shape VICReg, Barlow Twins and SimCLR share: backbone -> projector -> loss(z_a, z_b)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sslbench.method import StepOutput

#: ``(z_a, z_b) -> (loss, named terms)``, both ``(N, D)``.
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class JointEmbedding(nn.Module):
    """Both views through one backbone and projector, then a symmetric objective.

    Args:
        backbone: Module with ``out_dim``.
        projector: ``(N, out_dim) -> (N, D)``.
        objective: The method's loss on the two projections.
    """

    def __init__(self, backbone: nn.Module, projector: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.objective = objective

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> StepOutput:
        """Two ``(N, C, H, W)`` views -> loss, detached named terms and ``z_a`` ``(N, D)``.

        Under a process group the objective sees what it gathers (global batch
        statistics or negatives); ``z_a`` stays this rank's rows.
        """
        za, zb = self.projector(self.backbone(torch.cat([v1, v2]))).chunk(2)
        loss, terms = self.objective(za, zb)
        return StepOutput(loss, {k: v.detach() for k, v in terms.items()}, za.detach())
