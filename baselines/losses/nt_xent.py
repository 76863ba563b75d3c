"""NT-Xent, the SimCLR loss (Chen et al., "A Simple Framework for Contrastive Learning
of Visual Representations", ICML 2020).

The 2N l2-normalised embeddings form N positive pairs; for each anchor the
other 2N - 2 embeddings are negatives; cross-entropy over ``sim / tau``,
averaged over all 2N anchors. tau = 0.5 by default (lightly), 0.1-0.2 typical
for CIFAR.

Distributed contract: negatives are global. With ``gather=True`` both views are
gathered from all ranks and each rank scores only its own ``2 n_r`` anchors
against all ``2 M`` candidates (``M = sum_r n_r``), with the positive and self
indices offset by this rank's first global row (the offset is only right when
negatives are gathered). Rank ``r``'s loss is the sum of its anchors'
cross-entropies divided by ``2 M / world_size``, so the mean over ranks of the
rank losses is the 1-process loss on the global batch (the gradient convention
is in :mod:`sslbench.distributed`); unlike the gathered VICReg / Barlow Twins
losses, the value differs per rank. ``gather=False`` (the default) or no process
group: the pure local loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslbench.distributed import all_gather_sizes, gather_pair_with_grad, rank, world_size


@dataclass(frozen=True)
class SimCLRConfig:
    """Loss config of SimCLR.

    Attributes:
        temperature: NT-Xent tau (0.5 is lightly's default; 0.1-0.2 typical for CIFAR).
    """

    temperature: float = 0.2


def nt_xent_loss(za: torch.Tensor, zb: torch.Tensor, temperature: float = 0.5, gather: bool = False) -> torch.Tensor:
    """NT-Xent loss.

    Args:
        za: ``(N, D)`` projector outputs of view a (this rank's rows).
        zb: ``(N, D)`` projector outputs of view b (row i is the positive of ``za[i]``).
        temperature: tau.
        gather: Use the negatives of all ranks (a collective when distributed;
            no-op otherwise); see the module's distributed contract for what a
            rank's value means.

    Returns:
        Scalar loss.
    """
    n = za.shape[0]
    if gather and world_size() > 1:
        sizes = all_gather_sizes(n, za.device)
        ca, cb = gather_pair_with_grad(za, zb, sizes)
        offset, m, scale = sum(sizes[: rank()]), sum(sizes), 2 * sum(sizes) / world_size()
    else:
        ca, cb, offset, m, scale = za, zb, 0, n, 2 * n
    anchors = F.normalize(torch.cat([za, zb]), dim=1)  # (2n, D)
    candidates = F.normalize(torch.cat([ca, cb]), dim=1)  # (2m, D): [all view a; all view b]
    sim = anchors @ candidates.T / temperature  # (2n, 2m)
    rows = torch.arange(n, device=za.device) + offset  # global row of each local pair
    self_idx = torch.cat([rows, rows + m])
    pos_idx = torch.cat([rows + m, rows])
    is_self = torch.zeros_like(sim, dtype=torch.bool)
    is_self[torch.arange(2 * n, device=za.device), self_idx] = True
    sim = sim.masked_fill(is_self, float("-inf"))
    return F.cross_entropy(sim, pos_idx, reduction="sum") / scale
