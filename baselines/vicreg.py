"""VICReg (Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022).

backbone -> expander (3-layer MLP) -> ``25 * inv + 25 * var + 1 * cov``
(:mod:`baselines.losses.vicreg`). Recipe: LARS, base lr 0.2 * B / 256 (0.3 here
for short runs), wd 1e-6, warmup then cosine.
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.losses.vicreg import VICRegConfig, combine, vicreg_terms
from sslbench.heads import mlp
from sslbench.method import Method, StepOutput, TrainConfig


class VICRegModel(nn.Module):
    """Backbone and expander; ``forward(v1, v2) -> StepOutput``.

    Args:
        backbone: Module with ``out_dim``.
        heads: ``proj_hidden``, ``proj_dim`` of the expander.
        loss: :class:`VICRegConfig`.
    """

    def __init__(self, backbone: nn.Module, heads: dict[str, int], loss: VICRegConfig) -> None:
        super().__init__()
        self.backbone = backbone
        h = heads["proj_hidden"]
        self.projector = mlp([backbone.out_dim, h, h, heads["proj_dim"]])
        self.loss_config = loss

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> StepOutput:
        """Two ``(N, C, H, W)`` views -> weighted loss, named terms, ``z_a`` ``(N, proj_dim)``.

        Under a process group the loss and terms are those of the global batch
        (same on every rank); ``z_a`` stays this rank's rows.
        """
        za, zb = self.projector(self.backbone(torch.cat([v1, v2]))).chunk(2)
        # global batch statistics on 1 or N processes (identity without a process group)
        terms = vicreg_terms(za, zb, self.loss_config, gather=True)
        loss = combine(terms, self.loss_config)
        return StepOutput(loss, {k: v.detach() for k, v in terms.items()}, za.detach())


VICREG = Method(
    name="vicreg",
    summary="VICReg: invariance + variance + covariance (25/25/1)",
    paper="Bardes, Ponce & LeCun, ICLR 2022",
    build=VICRegModel,
    loss=VICRegConfig(),
    heads={"proj_hidden": 2048, "proj_dim": 2048},
    train=TrainConfig(optimizer="lars", lr=0.3, weight_decay=1e-6, warmup_epochs=1),
    presets={
        "smoke": {"train": {"batch_size": 128, "warmup_epochs": 0}, "heads": {"proj_hidden": 128, "proj_dim": 128}},
        "quick": {"train": {"batch_size": 256, "warmup_epochs": 0.5}, "heads": {"proj_hidden": 1024, "proj_dim": 1024}},
        "standard": {"train": {"batch_size": 256, "warmup_epochs": 2}},
        "cifar10": {"train": {"batch_size": 256, "lr": 0.3, "weight_decay": 1e-4, "warmup_epochs": 10}},
    },
)
