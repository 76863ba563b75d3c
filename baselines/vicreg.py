"""VICReg (Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", ICLR 2022).

backbone -> expander (3-layer MLP) -> ``25 * inv + 25 * var + 1 * cov``
(:mod:`baselines.losses.vicreg`). Recipe: LARS, base lr 0.2 * B / 256 (0.3 here
for short runs), wd 1e-6, warmup then cosine. The ``cifar10`` preset is solo-learn's
CIFAR recipe (lr 0.3, wd 1e-4, LARS eta 0.02 with clip_lr, crops of 20-100%,
solarisation 0.1): docs/reference/recipes.md.
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.joint_embedding import JointEmbedding
from baselines.losses.vicreg import VICRegConfig, combine, vicreg_terms
from sslbench.heads import mlp
from sslbench.method import Method, TrainConfig


def build_vicreg(backbone: nn.Module, heads: dict[str, int], loss: VICRegConfig) -> JointEmbedding:
    """Backbone and 3-layer expander (``proj_hidden``, ``proj_dim``) under the VICReg loss.

    The variance and covariance terms are computed on the global batch on 1 or N
    processes (``gather=True`` is the identity without a process group).
    """
    h = heads["proj_hidden"]

    def objective(za: torch.Tensor, zb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = vicreg_terms(za, zb, loss, gather=True)
        return combine(terms, loss), terms

    return JointEmbedding(backbone, mlp([backbone.out_dim, h, h, heads["proj_dim"]]), objective)


VICREG = Method(
    name="vicreg",
    summary="VICReg: invariance + variance + covariance (25/25/1)",
    paper="Bardes, Ponce & LeCun, ICLR 2022",
    build=build_vicreg,
    loss=VICRegConfig(),
    heads={"proj_hidden": 2048, "proj_dim": 2048},
    train=TrainConfig(optimizer="lars", lr=0.3, weight_decay=1e-6, warmup_epochs=1),
    presets={
        "smoke": {"train": {"batch_size": 128, "warmup_epochs": 0}, "heads": {"proj_hidden": 128, "proj_dim": 128}},
        # quick: proj_dim <= batch, so the off-diagonal penalty can reach 0 (docs/results/quick/tuning.md)
        "quick": {"train": {"batch_size": 256, "warmup_epochs": 0.5}, "heads": {"proj_hidden": 1024, "proj_dim": 256}},
        "standard": {"train": {"batch_size": 256, "warmup_epochs": 2}},
        # cifar10: solo-learn scripts/pretrain/cifar/vicreg.yaml (its own augmentations: crops of 20-100%,
        # no blur, solarisation 0.1 on both views); docs/reference/recipes.md
        "cifar10": {
            "train": {"optimizer": "lars", "batch_size": 256, "lr": 0.3, "weight_decay": 1e-4, "momentum": 0.9,
                      "lars_eta": 0.02, "lars_clip_lr": True, "warmup_epochs": 10, "per_view_forward": True},
            "heads": {"proj_hidden": 2048, "proj_dim": 2048},
            "views": {"crop_scale": (0.2, 1.0), "saturation": 0.2, "blur_p": 0.0, "solarize_p": 0.1},
        },
    },
)
