"""Barlow Twins (Zbontar et al., ICML 2021): backbone -> 3-layer projector -> redundancy reduction.

Loss in :mod:`baselines.losses.barlow_twins` (lambda 0.0051, views normalised
separately). Recipe: LARS, base lr 0.3 (solo-learn CIFAR), wd 1e-4 (CIFAR; 1.5e-6 ImageNet), warmup then cosine.
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.losses.barlow_twins import BarlowTwinsConfig, barlow_twins_terms
from sslbench.augment import ViewConfig
from sslbench.heads import mlp
from sslbench.method import Method, StepOutput, TrainConfig


class BarlowTwinsModel(nn.Module):
    """Backbone and projector; ``forward(v1, v2) -> StepOutput``.

    Args:
        backbone: Module with ``out_dim``.
        heads: ``proj_hidden``, ``proj_dim``.
        loss: :class:`BarlowTwinsConfig`.
    """

    def __init__(self, backbone: nn.Module, heads: dict[str, int], loss: BarlowTwinsConfig) -> None:
        super().__init__()
        self.backbone = backbone
        h = heads["proj_hidden"]
        self.projector = mlp([backbone.out_dim, h, h, heads["proj_dim"]])
        self.loss_config = loss

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> StepOutput:
        """Two ``(N, C, H, W)`` views -> loss, named terms and ``z_a`` ``(N, proj_dim)``.

        Under a process group the loss and terms are those of the global batch
        (same on every rank); ``z_a`` stays this rank's rows.
        """
        za, zb = self.projector(self.backbone(torch.cat([v1, v2]))).chunk(2)
        # global batch statistics on 1 or N processes (identity without a process group)
        terms = barlow_twins_terms(za, zb, self.loss_config, gather=True)
        loss = terms["on_diagonal"] + self.loss_config.lambd * terms["off_diagonal"]
        return StepOutput(loss, {k: v.detach() for k, v in terms.items()}, za.detach())


BARLOW_TWINS = Method(
    name="barlow_twins",
    summary="Barlow Twins: cross-correlation to identity, lambda 0.0051",
    paper="Zbontar et al., ICML 2021",
    build=BarlowTwinsModel,
    loss=BarlowTwinsConfig(),
    heads={"proj_hidden": 2048, "proj_dim": 2048},
    train=TrainConfig(optimizer="lars", lr=0.3, weight_decay=1e-4, warmup_epochs=1),
    views=(ViewConfig(blur_p=1.0), ViewConfig(blur_p=0.1, solarize_p=0.2)),
    presets={
        "smoke": {"train": {"batch_size": 128, "warmup_epochs": 0}, "heads": {"proj_hidden": 128, "proj_dim": 128}},
        "quick": {"train": {"batch_size": 256, "warmup_epochs": 0.5}, "heads": {"proj_hidden": 1024, "proj_dim": 1024}},
        "standard": {"train": {"batch_size": 256, "warmup_epochs": 2}},
        "cifar10": {"train": {"batch_size": 256, "warmup_epochs": 10}},
    },
)
