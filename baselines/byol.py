"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020).

online: backbone -> projector -> predictor; target: an EMA copy of backbone and
projector, updated after every step with ``tau`` rising from ``tau_base`` to
``tau_final`` on a cosine schedule: ``tau = 1 - (1 - tau_base) * (cos(pi * t) + 1) / 2``.
Loss: ``2 - 2 cos(p, sg(z_target))`` per direction, summed over both directions
(the paper's scale; implementations that average the two are 1x).
Recipe: LARS, base lr 1.0 (CIFAR: solo-learn), wd 1e-5, warmup then cosine.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from baselines.losses.negative_cosine import negative_cosine
from sslbench.augment import ViewConfig
from sslbench.heads import mlp
from sslbench.method import Method, StepOutput, TrainConfig


@dataclass(frozen=True)
class BYOLConfig:
    """Attributes:
    tau_base: EMA coefficient at the start (0.99; 0 makes the target the online network).
    tau_final: EMA coefficient at the end (1.0).
    """

    tau_base: float = 0.99
    tau_final: float = 1.0


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """``(2 - 2cos(p1, t2)) + (2 - 2cos(p2, t1))``, batch means; all inputs ``(N, D)``; targets detached.

    Distributed contract: per-sample, nothing gathered; a rank's loss is the
    mean over its own rows (:mod:`baselines.losses.negative_cosine`).
    """
    return (2 + 2 * negative_cosine(p1, t2)) + (2 + 2 * negative_cosine(p2, t1))


def ema_tau(progress: float, cfg: BYOLConfig) -> float:
    """Cosine schedule of the EMA coefficient; ``progress`` in ``[0, 1]``."""
    return cfg.tau_final - (cfg.tau_final - cfg.tau_base) * (math.cos(math.pi * progress) + 1) / 2


class BYOLModel(nn.Module):
    """Online and target networks; ``forward(v1, v2) -> StepOutput``, ``after_step`` does the EMA.

    Args:
        backbone: Module with ``out_dim``.
        heads: ``proj_hidden``, ``proj_dim``, ``pred_hidden``.
        loss: :class:`BYOLConfig`.
    """

    def __init__(self, backbone: nn.Module, heads: dict[str, int], loss: BYOLConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = mlp([backbone.out_dim, heads["proj_hidden"], heads["proj_dim"]])
        self.predictor = mlp([heads["proj_dim"], heads["pred_hidden"], heads["proj_dim"]])
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.loss_config = loss

    def param_groups(self) -> list[dict]:
        """Only the online network is optimised."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> StepOutput:
        """Two ``(N, C, H, W)`` views -> loss and online ``z1`` ``(N, proj_dim)``."""
        z = self.projector(self.backbone(torch.cat([v1, v2])))
        p1, p2 = self.predictor(z).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_projector(self.target_backbone(torch.cat([v1, v2]))).chunk(2)
        loss = byol_loss(p1, p2, t1, t2)
        return StepOutput(loss, {"regression": loss.detach()}, z.chunk(2)[0].detach())

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA update of the target: ``target = tau * target + (1 - tau) * online``."""
        tau = ema_tau(progress, self.loss_config)
        for online, target in ((self.backbone, self.target_backbone), (self.projector, self.target_projector)):
            for po, pt in zip(online.parameters(), target.parameters()):
                pt.mul_(tau).add_(po.detach(), alpha=1 - tau)
            for bo, bt in zip(online.buffers(), target.buffers()):
                bt.copy_(bo)


BYOL = Method(
    name="byol",
    summary="BYOL: EMA target network + predictor, 2 - 2cos regression",
    paper="Grill et al., NeurIPS 2020",
    build=BYOLModel,
    loss=BYOLConfig(),
    heads={"proj_hidden": 4096, "proj_dim": 256, "pred_hidden": 4096},
    train=TrainConfig(optimizer="lars", lr=1.0, weight_decay=1e-5, warmup_epochs=1),
    views=(ViewConfig(blur_p=1.0), ViewConfig(blur_p=0.1, solarize_p=0.2)),
    presets={
        "smoke": {"train": {"batch_size": 128, "warmup_epochs": 0}, "heads": {"proj_hidden": 128, "proj_dim": 64, "pred_hidden": 128}},
        # quick: batch 64 for 3 epochs, 1.5x the steps of batch 128 x 4 epochs on 3/4 of the images: kNN 86.84
        # mean over seeds 0-2 against 86.66, in 3.8 min against 5.7 (docs/results/quick/tuning.md)
        "quick": {"train": {"batch_size": 64, "epochs": 3, "warmup_epochs": 0.5}, "heads": {"proj_hidden": 1024, "proj_dim": 256, "pred_hidden": 1024}},
        "standard": {"train": {"batch_size": 256, "warmup_epochs": 2}},
        "cifar10": {"train": {"batch_size": 256, "lr": 1.0, "weight_decay": 1e-5, "warmup_epochs": 10}},
    },
)
