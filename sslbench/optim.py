"""Optimisers (SGD, LARS, AdamW) and the warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sslbench.errors import SslbenchError
from sslbench.method import TrainConfig


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman & Ginsburg 2017, arXiv:1708.03888), SGD-momentum based.

    For each adapted tensor ``p`` with gradient ``g``: ``d = g + wd * p``, trust
    ratio ``q = eta * ||p|| / ||d||`` (1 when either norm is 0), momentum buffer
    ``m = mu * m + q * d`` and ``p -= lr * m``. With ``clip_lr`` the trust ratio
    becomes ``min(q / lr, 1)``, as solo-learn's LARS does (``solo/utils/lars.py``,
    ``clip_lr``): the per-tensor step size is then ``min(eta ||p|| / ||d||, lr)``
    rather than ``lr * eta ||p|| / ||d||``, i.e. ``1/lr`` times larger wherever
    the trust ratio is below the learning rate. Parameter groups flagged
    ``lars_exclude`` (biases, norms) skip both the trust ratio and the weight
    decay, as in BYOL/VICReg/Barlow Twins (solo-learn's ``exclude_bias_n_norm``).
    Unlike solo-learn, whose denominator is ``||g|| + wd ||p|| + 1e-8`` (You et
    al., Eq. 6), this one is ``||g + wd p||``, as in the official VICReg and Barlow
    Twins LARS; see docs/reference/optimisers.md.

    Args:
        params: Parameters or groups.
        lr: Learning rate.
        momentum: Momentum.
        weight_decay: L2 weight decay, added to the gradient before the trust ratio.
        eta: Trust coefficient.
        clip_lr: Cap the trust ratio at ``lr`` (solo-learn's ``clip_lr``).
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
        clip_lr: bool = False,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "clip_lr": clip_lr}
        super().__init__(params, {**defaults, "lars_exclude": False})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: D102
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if not g["lars_exclude"]:
                    d = d.add(p, alpha=g["weight_decay"])
                    pn, dn = torch.norm(p), torch.norm(d)
                    trust = g["eta"] * pn / dn
                    if g["clip_lr"]:
                        trust = torch.clamp(trust / g["lr"], max=1.0)
                    q = torch.where((pn > 0) & (dn > 0), trust, torch.ones_like(pn))
                    d = d.mul(q)
                buf = self.state[p].get("mu")
                if buf is None:
                    buf = self.state[p]["mu"] = torch.clone(d).detach()
                else:
                    buf.mul_(g["momentum"]).add_(d)
                p.add_(buf, alpha=-g["lr"])


def _param_groups(model: nn.Module, pred_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """The model's parameter groups; with ``pred_lr_scale != 1`` its predictor's parameters split off
    into groups of their own with ``lr_scale`` (at 1 the groups are exactly the model's)."""
    groups = model.param_groups() if hasattr(model, "param_groups") else [
        {"params": [p for p in model.parameters() if p.requires_grad]}]
    if pred_lr_scale == 1:
        return groups
    predictor = getattr(model, "predictor", None)
    if not isinstance(predictor, nn.Module):
        raise SslbenchError(f"pred_lr_scale = {pred_lr_scale:g} scales a predictor's learning rate, and this "
                            "model has no predictor; leave it at 1")
    ids = {id(p) for p in predictor.parameters()}
    out = []
    for group in groups:
        rest = [p for p in group["params"] if id(p) not in ids]
        pred = [p for p in group["params"] if id(p) in ids]
        out += [{**group, "params": rest}] if rest else []
        out += [{**group, "params": pred, "lr_scale": pred_lr_scale}] if pred else []
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Build the optimiser; the peak lr is ``cfg.lr * batch_size / 256``.

    Biases and 1-D (norm) parameters get no weight decay (unless
    ``cfg.decay_norm_and_bias``) and, for LARS, no adaptation. Groups with
    ``fixed_lr`` keep the peak lr (SimSiam's predictor). With ``cfg.pred_lr_scale``
    the predictor's groups run at that multiple of the lr their group would have.
    LARS takes its trust coefficient and clipping from ``cfg.lars_eta`` and
    ``cfg.lars_clip_lr``.
    """
    peak = cfg.lr * cfg.batch_size / 256
    groups = []
    for group in _param_groups(model, cfg.pred_lr_scale):
        params, scale = group["params"], group.get("lr_scale")
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        for ps, is_decay in ((decay, True), (no_decay, False)):
            if ps:
                groups.append(
                    {
                        "params": ps,
                        "weight_decay": cfg.weight_decay if is_decay or cfg.decay_norm_and_bias else 0.0,
                        "lars_exclude": not is_decay,
                        "fixed_lr": bool(group.get("fixed_lr", False)),
                        "lr": peak,
                        **({"lr_scale": scale, "lr": peak * scale} if scale is not None else {}),
                    }
                )
    if cfg.optimizer == "sgd":
        return _sgd(groups, peak, cfg.momentum)
    if cfg.optimizer == "lars":
        return LARS(groups, lr=peak, momentum=cfg.momentum, eta=cfg.lars_eta, clip_lr=cfg.lars_clip_lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=peak)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def _sgd(groups: list[dict[str, Any]], lr: float, momentum: float) -> torch.optim.SGD:
    """SGD with the fused kernel where this torch has one for the parameters' device.

    The fused update is bitwise identical to the per-tensor loop (tests/test_optim.py)
    and 2-5% faster per SimSiam ``quick`` step (batch 32) on 2 CPU cores. A torch build
    without a fused SGD for the device (older CPU builds) gets the per-tensor loop.
    """
    try:
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, final_ratio: float = 0.0) -> float:
    """Linear warmup from 0 over ``warmup_steps``, then cosine decay to ``peak * final_ratio``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    final = peak * final_ratio
    return final + (peak - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float, peak: float) -> None:
    """Apply the scheduled ``lr`` to every group except ``fixed_lr`` ones (kept at ``peak``), times a
    group's ``lr_scale`` where it has one (``TrainConfig.pred_lr_scale``)."""
    for g in optimizer.param_groups:
        base = peak if g.get("fixed_lr") else lr
        g["lr"] = base * g["lr_scale"] if "lr_scale" in g else base
