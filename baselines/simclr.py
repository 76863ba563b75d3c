"""SimCLR (Chen et al., ICML 2020): backbone -> 2-layer projector -> NT-Xent.

Loss in :mod:`baselines.losses.nt_xent`; the temperature is a loss field.
Recipe: LARS, base lr 0.4 (solo-learn CIFAR), wd 1e-5, tau 0.2 (CIFAR), warmup then cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from baselines.losses.nt_xent import nt_xent_loss
from sslbench.heads import mlp
from sslbench.method import Method, StepOutput, TrainConfig


@dataclass(frozen=True)
class SimCLRConfig:
    """Attributes:
    temperature: NT-Xent tau (0.5 is lightly's default; 0.1-0.2 typical for CIFAR).
    """

    temperature: float = 0.2


class SimCLRModel(nn.Module):
    """Backbone and projector; ``forward(v1, v2) -> StepOutput``.

    Args:
        backbone: Module with ``out_dim``.
        heads: ``proj_hidden``, ``proj_dim``.
        loss: :class:`SimCLRConfig`.
    """

    def __init__(self, backbone: nn.Module, heads: dict[str, int], loss: SimCLRConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = mlp([backbone.out_dim, heads["proj_hidden"], heads["proj_dim"]])
        self.loss_config = loss

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> StepOutput:
        """Two ``(N, C, H, W)`` views -> loss and ``z_a`` ``(N, proj_dim)``.

        Under a process group the negatives are global and the loss is that of
        this rank's anchors (:mod:`baselines.losses.nt_xent`); ``z_a`` stays local.
        """
        za, zb = self.projector(self.backbone(torch.cat([v1, v2]))).chunk(2)
        # negatives from all ranks on 1 or N processes (identity without a process group)
        loss = nt_xent_loss(za, zb, self.loss_config.temperature, gather=True)
        return StepOutput(loss, {"nt_xent": loss.detach()}, za.detach())


SIMCLR = Method(
    name="simclr",
    summary="SimCLR: NT-Xent contrastive loss, configurable temperature",
    paper="Chen et al., ICML 2020",
    build=SimCLRModel,
    loss=SimCLRConfig(),
    heads={"proj_hidden": 2048, "proj_dim": 128},
    train=TrainConfig(optimizer="lars", lr=0.4, weight_decay=1e-5, warmup_epochs=1),
    presets={
        "smoke": {"train": {"batch_size": 128, "warmup_epochs": 0}, "heads": {"proj_hidden": 128, "proj_dim": 64}},
        "quick": {"train": {"batch_size": 256, "warmup_epochs": 0.5}, "heads": {"proj_hidden": 1024, "proj_dim": 128}},
        "standard": {"train": {"batch_size": 256, "warmup_epochs": 2}},
        "cifar10": {"train": {"batch_size": 256, "warmup_epochs": 10}},
    },
)
