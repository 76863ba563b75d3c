"""Barlow Twins (Zbontar et al., ICML 2021): backbone -> 3-layer projector -> redundancy reduction.

Loss in :mod:`baselines.losses.barlow_twins` (lambda 0.0051, views normalised
separately). Recipe: LARS, base lr 0.3, wd 1e-4 (solo-learn CIFAR; the paper's ImageNet
wd is 1.5e-6), warmup then cosine. The ``cifar10`` preset is solo-learn's CIFAR recipe
except its ``scale_loss`` 0.1 (a loss field, which presets cannot set):
docs/reference/recipes.md.
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
        # cifar10: solo-learn scripts/pretrain/cifar/barlow.yaml and augmentations/asymmetric.yaml, but
        # scale_loss 1 (presets carry no loss fields; the CIFAR study adds solo-learn's 0.1 as a variant);
        # docs/reference/recipes.md
        "cifar10": {
            "train": {"optimizer": "lars", "batch_size": 256, "lr": 0.3, "weight_decay": 1e-4, "momentum": 0.9,
                      "lars_eta": 0.02, "lars_clip_lr": True, "warmup_epochs": 10, "per_view_forward": True},
            "heads": {"proj_hidden": 2048, "proj_dim": 2048},
            "views": {"blur_p": 0.0, "saturation": 0.2},
        },
    },
)
