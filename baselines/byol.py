"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020).

online: backbone -> projector -> predictor; target: an EMA copy of backbone and
projector, updated after every step (:mod:`baselines.targets`, the method's
``target`` config). Loss: :func:`baselines.losses.negative_cosine.byol_loss`.
Recipe: LARS, base lr 1.0, wd 1e-5, warmup then cosine; the ``cifar10`` preset is
solo-learn's CIFAR recipe (LARS eta 0.02 with clip_lr, no blur, each view forwarded
on its own): docs/reference/recipes.md.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from baselines.joint_embedding import encode_pair
from baselines.losses.negative_cosine import BYOLConfig, byol_loss
from baselines.targets import EMAConfig, ema_tau, ema_update
from sslbench.method import ViewConfig
from sslbench.heads import mlp
from sslbench.method import Method, StepOutput, TrainConfig


class BYOLModel(nn.Module):
    """Online and target networks; ``forward(v1, v2) -> StepOutput``, ``after_step`` does the EMA.

    Args:
        backbone: Module with ``out_dim``.
        heads: ``proj_hidden``, ``proj_dim``, ``pred_hidden``.
        loss: :class:`~baselines.losses.negative_cosine.BYOLConfig`.
        target: :class:`~baselines.targets.EMAConfig`, the target's EMA rates.
    """

    def __init__(self, backbone: nn.Module, heads: dict[str, int], loss: BYOLConfig,
                 target: EMAConfig = EMAConfig()) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = mlp([backbone.out_dim, heads["proj_hidden"], heads["proj_dim"]])
        self.predictor = mlp([heads["proj_dim"], heads["pred_hidden"], heads["proj_dim"]])
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.loss_config = loss
        self.target_config = target
        self.per_view = False  # each view through the network on its own (TrainConfig.per_view_forward)

    def param_groups(self) -> list[dict]:
        """Only the online network is optimised."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> StepOutput:
        """Two ``(N, C, H, W)`` views -> loss and online ``z1`` ``(N, proj_dim)``."""
        z1, z2 = encode_pair(lambda v: self.projector(self.backbone(v)), v1, v2, self.per_view)
        p1, p2 = encode_pair(self.predictor, z1, z2, self.per_view)
        with torch.no_grad():
            t1, t2 = encode_pair(lambda v: self.target_projector(self.target_backbone(v)), v1, v2, self.per_view)
        loss = byol_loss(p1, p2, t1, t2)
        return StepOutput(loss, {"regression": loss.detach()}, z1.detach())

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA update of the target: ``target = tau * target + (1 - tau) * online``."""
        tau = ema_tau(progress, self.target_config)
        ema_update(self.backbone, self.target_backbone, tau)
        ema_update(self.projector, self.target_projector, tau)


BYOL = Method(
    name="byol",
    summary="BYOL: EMA target network + predictor, 2 - 2cos regression",
    paper="Grill et al., NeurIPS 2020",
    build=BYOLModel,
    loss=BYOLConfig(),
    target=EMAConfig(),
    heads={"proj_hidden": 4096, "proj_dim": 256, "pred_hidden": 4096},
    train=TrainConfig(optimizer="lars", lr=1.0, weight_decay=1e-5, warmup_epochs=1),
    views=(ViewConfig(blur_p=1.0), ViewConfig(blur_p=0.1, solarize_p=0.2)),
    has_predictor=True,
    presets={
        "smoke": {"train": {"batch_size": 128, "warmup_epochs": 0}, "heads": {"proj_hidden": 128, "proj_dim": 64, "pred_hidden": 128}},
        # quick: batch 64 for 3 epochs, more steps in less time (docs/results/quick/tuning.md)
        "quick": {"train": {"batch_size": 64, "epochs": 3, "warmup_epochs": 0.5}, "heads": {"proj_hidden": 1024, "proj_dim": 256, "pred_hidden": 1024}},
        "standard": {"train": {"batch_size": 256, "warmup_epochs": 2}},
        # cifar10: solo-learn scripts/pretrain/cifar/byol.yaml and augmentations/asymmetric.yaml (no blur
        # at 32 px; solarisation on view 2 only, from the method's views); docs/reference/recipes.md
        "cifar10": {
            "train": {"optimizer": "lars", "batch_size": 256, "lr": 1.0, "weight_decay": 1e-5, "momentum": 0.9,
                      "lars_eta": 0.02, "lars_clip_lr": True, "warmup_epochs": 10, "per_view_forward": True},
            "heads": {"proj_hidden": 4096, "proj_dim": 256, "pred_hidden": 4096},
            "views": {"blur_p": 0.0, "saturation": 0.2},
        },
    },
)
