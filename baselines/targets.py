"""Target-network updates: the momentum (EMA) target of BYOL.

A method with a target declares its update as a frozen config (``Method.target``),
so a variant can change it like a loss field (``byol_noema`` sets both rates to 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sslbench.config import Bound
from sslbench.method import added_field


@dataclass(frozen=True)
class EMAConfig:
    """The EMA rate of a momentum target, rising on a cosine schedule (Grill et al. 2020, sec. 3.2).

    ``tau = tau_final - (tau_final - tau_base) * (cos(pi * t) + 1) / 2`` at training
    progress ``t`` in ``[0, 1]``; the target becomes ``tau * target + (1 - tau) * online``.

    Attributes:
        tau_base: EMA rate at the start (0.99; 0 makes the target the online network).
        tau_final: EMA rate at the end (1.0; 1 throughout is a frozen random target).
        tau: A constant EMA rate in ``[0, 1]`` in place of the schedule (``None``: the
            schedule). 0 copies the online network into the target after every step
            (``byol_noema``); 1 keeps the target's parameters at their random
            initialisation (Grill et al. 2020, table 5).
    """

    tau_base: float = 0.99
    tau_final: float = 1.0
    tau: float | None = added_field(None, rule=Bound(0.0, 1.0))


def ema_tau(progress: float, cfg: EMAConfig) -> float:
    """The EMA rate at ``progress`` in ``[0, 1]``: ``cfg.tau`` when set, else the cosine schedule
    from ``tau_base`` to ``tau_final``."""
    if cfg.tau is not None:
        return float(cfg.tau)
    return cfg.tau_final - (cfg.tau_final - cfg.tau_base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update(online: nn.Module, target: nn.Module, tau: float) -> None:
    """``target = tau * target + (1 - tau) * online`` for parameters; buffers are copied."""
    for po, pt in zip(online.parameters(), target.parameters(), strict=True):
        pt.mul_(tau).add_(po.detach(), alpha=1 - tau)
    for bo, bt in zip(online.buffers(), target.buffers(), strict=True):
        bt.copy_(bo)
