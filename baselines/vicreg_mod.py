"""``vicreg_mod``: VICReg with the covariance term on the correlation matrix.

The one point change: for each branch,

``c(x) = sum_{i != j} R_ij^2 / D``,  ``R = xs^T xs / (N - 1)``,
``xs_j = (x_j - mean(x_j)) / sqrt(Var(x_j) + eps)``

instead of the same sum over the covariance ``C = xc^T xc / (N - 1)``.
Everything else (expander, 25/25/1 weights, invariance and variance terms,
recipe) is VICReg's.

Why: ``C_ij = R_ij * s_i * s_j``, so VICReg's decorrelation pressure grows with
the square of the embedding scale and interacts with the variance hinge (which
only pushes stds up to 1). On the correlation matrix the penalty is
scale-free: it asks only that dimensions be decorrelated, whatever their
scale. Expected behaviour: similar quality to VICReg, decorrelation that does
not weaken when the variance term lets the scale shrink.

VIbCReg (Lee & Aune 2021, arXiv:2109.00783) penalises the same matrix (its
code centres each dimension and l2-normalises it over the batch, which gives
``R`` up to the eps) but scales it differently: ``200 * mean`` over all ``D^2``
entries with the diagonal zeroed, i.e. ``200 / D^2 * sum_{i != j} R_ij^2`` per
branch (ML4ITS/vibcreg ``vibcreg/losses/covariance_loss.py``, ``VIbCRegCovLoss``,
and ``nu_vibcreg=200``; solo-learn ``solo/losses/vibcreg.py``). This term, at
weight 1, is ``D / 200`` times VIbCReg's: 1.28x at D = 256, 10.24x at D = 2048
(checked numerically, ``tests/test_recipes.py``). VIbCReg also whitens the
projector output (IterNorm) and this variant does not.
"""

from baselines.vicreg import VICREG
from sslbench.method import derive_variant

VICREG_MOD = derive_variant(
    VICREG,
    "vicreg_mod",
    "VICReg with the covariance term on each branch's correlation matrix",
    loss={"cov_mode": "correlation"},
)
