"""NT-Xent, the SimCLR loss (Chen et al., "A Simple Framework for Contrastive Learning
of Visual Representations", ICML 2020).

The 2N l2-normalised embeddings form N positive pairs; for each anchor the
other 2N - 2 embeddings are negatives; cross-entropy over ``sim / tau``,
averaged over all 2N anchors. tau = 0.5 by default (lightly), 0.1-0.2 typical
for CIFAR.

Distributed contract: negatives are global: gather embeddings from all ranks
(gradients summed across ranks in backward) and offset the positive labels by
``rank * N``; the offset is only right when negatives are gathered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent_loss(za: torch.Tensor, zb: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent loss.

    Args:
        za: ``(N, D)`` projector outputs of view a.
        zb: ``(N, D)`` projector outputs of view b (row i is the positive of ``za[i]``).
        temperature: tau.

    Returns:
        Scalar loss.
    """
    n = za.shape[0]
    z = F.normalize(torch.cat([za, zb]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)
