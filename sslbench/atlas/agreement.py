"""Label-free readings against accuracy, within each method family, across its cells.

For every family (base method) and every label-free reading of the collapse
protocol the cells carry (RankMe, uniformity, effective dims, stable rank, W2
uniformity, LiDAR, alpha-ReQ, the std of the l2-normalised embeddings; each on the
backbone and, ``z_``, on the projector), Kendall's tau-b between the cells' mean
reading and their mean labelled metric (Kendall 1945, ties corrected), with a
95% percentile bootstrap interval over cells (:data:`BOOTSTRAP_DRAWS` resamples
of the cells with replacement, seeded).

A reading the family's own loss optimises on the same embedding is flagged: it is
no independent witness there, as its agreement with accuracy is partly built in.
VICReg's variance term pushes the per-dimension std of the projector output z
(Bardes et al. 2022, ICLR), and its covariance term, like Barlow Twins'
redundancy term (Zbontar et al. 2021, ICML), decorrelates z's dimensions, which
flattens z's covariance spectrum (what RankMe, effective dims, stable rank and
alpha-ReQ on z read).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sslbench.atlas.cells import CellStats

#: Bootstrap resamples of the cells.
BOOTSTRAP_DRAWS = 2000
#: The bootstrap's seed (the interval is reproducible).
BOOTSTRAP_SEED = 0
#: Fewest cells for a correlation.
MIN_CELLS = 4
_SPECTRUM_Z = ("z_rankme", "z_effective_dims", "z_stable_rank", "z_alpha_req", "z_alpha_req_authors")
#: Family -> reading -> the loss term that optimises it.
LOSS_OPTIMISED: dict[str, dict[str, str]] = {
    "vicreg": {**{k: "variance term (per-dimension std of z)" for k in ("z_std_l2", "z_var_hinge", "z_dead_frac")},
               **{k: "covariance term (decorrelates z)" for k in _SPECTRUM_Z}},
    "barlow_twins": {k: "redundancy term (decorrelates standardised z)" for k in _SPECTRUM_Z},
}


@dataclass(frozen=True)
class Agreement:
    """Kendall tau between one label-free reading and one labelled metric across a family's cells.

    Attributes:
        family: The base method.
        reading: The label-free reading.
        metric: The labelled protocol.
        tau: Kendall's tau-b (NaN when either side is constant).
        lo: Lower bound of the 95% bootstrap interval.
        hi: Upper bound.
        n_cells: Cells with both.
        optimised_by: The loss term that optimises the reading in this family (``""``: none).
    """

    family: str
    reading: str
    metric: str
    tau: float
    lo: float
    hi: float
    n_cells: int
    optimised_by: str


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b of two ``(n,)`` samples: ``(C - D) / sqrt((P - T_x)(P - T_y))`` over the
    ``P = n(n-1)/2`` pairs, with ``T_x``, ``T_y`` the pairs tied in x, in y; NaN when either is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), k=1)
    sx, sy = sx[iu], sy[iu]
    pairs = len(sx)
    denom = math.sqrt(float(pairs - np.sum(sx == 0)) * float(pairs - np.sum(sy == 0)))
    return float(np.sum(sx * sy) / denom) if denom > 0 else float("nan")


def bootstrap_ci(x: np.ndarray, y: np.ndarray, draws: int = BOOTSTRAP_DRAWS,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile interval of Kendall's tau-b over ``draws`` resamples of the ``(n,)`` pairs
    (NaN draws, where a resample is constant on one side, dropped).

    Vectorised over draws: the ``(n, n)`` sign matrices are indexed by each resample, a pair
    drawn twice being a tie on both sides, as :func:`kendall_tau` counts it.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(x)
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
    idx = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    bx, by = sx[idx[:, :, None], idx[:, None, :]], sy[idx[:, :, None], idx[:, None, :]]
    pairs = n * (n - 1) / 2  # every matrix is antisymmetric: halve the off-diagonal sums
    tx, ty = (np.sum(bx == 0, axis=(1, 2)) - n) / 2, (np.sum(by == 0, axis=(1, 2)) - n) / 2
    denom = np.sqrt((pairs - tx) * (pairs - ty))
    with np.errstate(invalid="ignore", divide="ignore"):
        taus = np.sum(bx * by, axis=(1, 2)) / 2 / denom
    taus = taus[np.isfinite(taus)]
    if not len(taus):
        return float("nan"), float("nan")
    lo, hi = np.percentile(taus, [2.5, 97.5])
    return float(lo), float(hi)


def agreements(family: str, cells: Sequence[CellStats]) -> list[Agreement]:
    """Every (reading, metric) agreement of one family's cells with at least :data:`MIN_CELLS` cells."""
    out = []
    readings = sorted({k for c in cells for k in c.readings})
    metrics = sorted({m for c in cells for m in c.metrics})
    for reading in readings:
        for metric in metrics:
            both = [c for c in cells if reading in c.readings and metric in c.metrics]
            if len(both) < MIN_CELLS:
                continue
            x = np.array([c.readings[reading] for c in both])
            y = np.array([c.metrics[metric].mean for c in both])
            lo, hi = bootstrap_ci(x, y)
            out.append(Agreement(family, reading, metric, kendall_tau(x, y), lo, hi, len(both),
                                 LOSS_OPTIMISED.get(family, {}).get(reading, "")))
    return out
