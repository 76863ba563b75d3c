"""Barlow Twins (Zbontar et al., ICML 2021): backbone -> 3-layer projector -> redundancy reduction.

Loss in :mod:`baselines.losses.barlow_twins` (lambda 0.0051, views normalised
separately). Recipe: LARS, base lr 0.3 (solo-learn CIFAR), wd 1e-4 (CIFAR; 1.5e-6 ImageNet), warmup then cosine.
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.joint_embedding import JointEmbedding
from baselines.losses.barlow_twins import BarlowTwinsConfig, barlow_twins_terms, combine
from sslbench.method import ViewConfig
from sslbench.heads import mlp
from sslbench.method import Method, TrainConfig


def build_barlow_twins(backbone: nn.Module, heads: dict[str, int], loss: BarlowTwinsConfig) -> JointEmbedding:
    """Backbone and 3-layer projector (``proj_hidden``, ``proj_dim``) under the Barlow Twins loss.

    The per-view batch norm and the cross-correlation use the global batch on 1 or
    N processes (``gather=True`` is the identity without a process group).
    """
    h = heads["proj_hidden"]

    def objective(za: torch.Tensor, zb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = barlow_twins_terms(za, zb, loss, gather=True)
        return combine(terms, loss), terms

    return JointEmbedding(backbone, mlp([backbone.out_dim, h, h, heads["proj_dim"]]), objective)


BARLOW_TWINS = Method(
    name="barlow_twins",
    summary="Barlow Twins: cross-correlation to identity, lambda 0.0051",
    paper="Zbontar et al., ICML 2021",
    build=build_barlow_twins,
    loss=BarlowTwinsConfig(),
    heads={"proj_hidden": 2048, "proj_dim": 2048},
    train=TrainConfig(optimizer="lars", lr=0.3, weight_decay=1e-4, warmup_epochs=1),
    views=(ViewConfig(blur_p=1.0), ViewConfig(blur_p=0.1, solarize_p=0.2)),
    presets={
        "smoke": {"train": {"batch_size": 128, "warmup_epochs": 0}, "heads": {"proj_hidden": 128, "proj_dim": 128}},
        # quick: a 256-d projector, the batch size (docs/results/quick/tuning.md)
        "quick": {"train": {"batch_size": 256, "warmup_epochs": 0.5}, "heads": {"proj_hidden": 1024, "proj_dim": 256}},
        "standard": {"train": {"batch_size": 256, "warmup_epochs": 2}},
        "cifar10": {"train": {"batch_size": 256, "warmup_epochs": 10}},
    },
)
