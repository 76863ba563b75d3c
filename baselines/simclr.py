"""SimCLR (Chen et al., ICML 2020): backbone -> 2-layer projector -> NT-Xent.

Loss in :mod:`baselines.losses.nt_xent`; the temperature is a loss field.
Recipe: LARS, base lr 0.4, wd 1e-5, tau 0.2 (CIFAR), warmup then cosine. The ``cifar10``
preset is solo-learn's CIFAR recipe (wd 1e-4, a 256-d projection, jitter 0.8, blur
0.5): docs/reference/recipes.md.
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.joint_embedding import JointEmbedding
from baselines.losses.nt_xent import SimCLRConfig, nt_xent_loss
from sslbench.heads import mlp
from sslbench.method import Method, TrainConfig


def build_simclr(backbone: nn.Module, heads: dict[str, int], loss: SimCLRConfig) -> JointEmbedding:
    """Backbone and 2-layer projector (``proj_hidden``, ``proj_dim``) under NT-Xent.

    Negatives come from all ranks on 1 or N processes; the loss is that of this
    rank's anchors (:mod:`baselines.losses.nt_xent`).
    """

    def objective(za: torch.Tensor, zb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        value = nt_xent_loss(za, zb, loss.temperature, gather=True)
        return value, {"nt_xent": value}

    return JointEmbedding(backbone, mlp([backbone.out_dim, heads["proj_hidden"], heads["proj_dim"]]), objective)


SIMCLR = Method(
    name="simclr",
    summary="SimCLR: NT-Xent contrastive loss, configurable temperature",
    paper="Chen et al., ICML 2020",
    build=build_simclr,
    loss=SimCLRConfig(),
    heads={"proj_hidden": 2048, "proj_dim": 128},
    train=TrainConfig(optimizer="lars", lr=0.4, weight_decay=1e-5, warmup_epochs=1),
    presets={
        "smoke": {"train": {"batch_size": 128, "warmup_epochs": 0}, "heads": {"proj_hidden": 128, "proj_dim": 64}},
        # quick: batch 128 for more steps, peak lr 0.4 (0.8 * 128 / 256): 0.47x the paper's square-root rule
        # 0.075 * sqrt(128) = 0.85 (appendix B.1); docs/results/quick/tuning.md
        "quick": {"train": {"batch_size": 128, "lr": 0.8, "warmup_epochs": 0.5}, "heads": {"proj_hidden": 1024, "proj_dim": 128}},
        "standard": {"train": {"batch_size": 256, "warmup_epochs": 2}},
        # cifar10: solo-learn scripts/pretrain/cifar/simclr.yaml and augmentations/symmetric.yaml;
        # docs/reference/recipes.md
        "cifar10": {
            "train": {"optimizer": "lars", "batch_size": 256, "lr": 0.4, "weight_decay": 1e-4, "momentum": 0.9,
                      "lars_eta": 0.02, "lars_clip_lr": True, "warmup_epochs": 10, "per_view_forward": True},
            "heads": {"proj_hidden": 2048, "proj_dim": 256},
            "views": {"brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "blur_p": 0.5},
        },
    },
)
