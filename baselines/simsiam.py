"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021).

backbone -> projector (2-layer MLP, BN on the output, as in the paper's CIFAR
setting) -> predictor (bottleneck MLP, fixed learning rate); loss
``0.5 * (D(p1, sg(z2)) + D(p2, sg(z1)))`` with ``D`` the negative cosine.
Recipe: SGD, lr 0.05 * B / 256, momentum 0.9, wd 1e-4, cosine schedule, no warmup
(the paper's CIFAR setting: lr 0.03, wd 5e-4, B = 512, 800 epochs). The ``cifar10``
preset runs solo-learn's CIFAR recipe instead (SGD lr 0.5, wd 1e-5 on every
parameter, 10 warmup epochs, 1000 epochs, each view forwarded on its own):
docs/reference/recipes.md.
"""

from __future__ import annotations

import torch
from torch import nn

from baselines.joint_embedding import encode_pair
from baselines.losses.negative_cosine import SimSiamConfig, symmetric_negative_cosine
from sslbench.heads import mlp
from sslbench.method import Method, StepOutput, TrainConfig


class SimSiamModel(nn.Module):
    """Backbone, projector and predictor; ``forward(v1, v2) -> StepOutput``.

    Args:
        backbone: Module with ``out_dim``.
        heads: ``proj_hidden``, ``proj_dim``, ``pred_hidden``.
        loss: :class:`~baselines.losses.negative_cosine.SimSiamConfig`.
    """

    def __init__(self, backbone: nn.Module, heads: dict[str, int], loss: SimSiamConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = mlp([backbone.out_dim, heads["proj_hidden"], heads["proj_dim"]], last_bn=True, last_bn_affine=False)
        self.predictor = mlp([heads["proj_dim"], heads["pred_hidden"], heads["proj_dim"]])
        self.loss_config = loss
        self.per_view = False  # each view through the network on its own (TrainConfig.per_view_forward)

    def param_groups(self) -> list[dict]:
        """Backbone and projector follow the schedule; the predictor keeps a fixed lr (paper, sec. 4.2)."""
        return [
            {"params": list(self.backbone.parameters()) + list(self.projector.parameters())},
            {"params": list(self.predictor.parameters()), "fixed_lr": True},
        ]

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> StepOutput:
        """Two ``(N, C, H, W)`` views -> loss, terms and ``z1`` ``(N, proj_dim)``."""
        z1, z2 = encode_pair(lambda v: self.projector(self.backbone(v)), v1, v2, self.per_view)
        p1, p2 = encode_pair(self.predictor, z1, z2, self.per_view)
        cfg = self.loss_config
        loss = symmetric_negative_cosine(p1, p2, z1, z2, cfg.stop_gradient, cfg.alpha)
        return StepOutput(loss, {"negative_cosine": loss.detach()}, z1.detach())


SIMSIAM = Method(
    name="simsiam",
    summary="SimSiam: predictor + stop-gradient, negative cosine",
    paper="Chen & He, CVPR 2021",
    build=SimSiamModel,
    loss=SimSiamConfig(),
    heads={"proj_hidden": 2048, "proj_dim": 2048, "pred_hidden": 512},
    train=TrainConfig(optimizer="sgd", lr=0.05, weight_decay=1e-4, momentum=0.9),
    has_predictor=True,
    presets={
        "smoke": {"train": {"batch_size": 128, "lr": 0.1}, "heads": {"proj_hidden": 128, "proj_dim": 128, "pred_hidden": 32}},
        # quick: batch 32 at a per-step lr of 0.1, for more steps (docs/results/quick/tuning.md)
        "quick": {"train": {"batch_size": 32, "lr": 0.8, "weight_decay": 5e-4}, "heads": {"proj_hidden": 1024, "proj_dim": 1024, "pred_hidden": 256}},
        "standard": {"train": {"batch_size": 256, "lr": 0.06, "weight_decay": 5e-4}},
        # cifar10: solo-learn scripts/pretrain/cifar/simsiam.yaml and augmentations/symmetric_weak.yaml (SGD
        # decays every parameter there, as the official code); docs/reference/recipes.md
        "cifar10": {
            "train": {"optimizer": "sgd", "batch_size": 256, "lr": 0.5, "weight_decay": 1e-5, "momentum": 0.9,
                      "warmup_epochs": 10, "decay_norm_and_bias": True, "per_view_forward": True},
            "heads": {"proj_hidden": 2048, "proj_dim": 2048, "pred_hidden": 512},
            "views": {"blur_p": 0.5},
        },
    },
)
