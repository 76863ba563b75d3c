"""Linear probe: multinomial logistic regression on frozen, standardised features.

The standard linear evaluation of self-supervised representations (e.g. SimCLR,
Chen et al. 2020, Sec. B.5; Kolesnikov et al. 2019, "Revisiting Self-Supervised
Visual Representation Learning"): standardise with train statistics, fit an
L2-regularised softmax regression, choose the weight decay on a held-out part
of train, refit on all of train and report test top-1. Solved by full-batch
L-BFGS in torch on cached features, which is exact and far faster than
scikit-learn on a CPU; the preconditioned solver is in :mod:`protocols._logistic`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from protocols._logistic import (
    fit_logistic,
    fit_rotated,
    rotate,
    standardize,
    top1,
    weights,
)
from sslbench.errors import SslbenchError
from sslbench.protocol import Evaluation, Protocol
from sslbench.types import Direction, FeatureSet


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of indices into (fit, held-out).

    Each class gives ``round(fraction * n_c)`` samples to the held-out part, but
    always keeps at least one for fitting.

    Args:
        y: ``(N,)`` int labels.
        fraction: Share of each class held out, in ``(0, 1)``.
        seed: Seed of the permutation.

    Returns:
        ``(fit_idx, val_idx)``, sorted int64 index arrays.
    """
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n_val = min(int(round(fraction * len(idx))), len(idx) - 1)
        val.append(rng.permutation(idx)[:n_val])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask).astype(np.int64), val_idx


def select_and_fit(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    wd_grid: tuple[float, ...],
    val_fraction: float,
    max_iter: int,
    seed: int,
    num_classes: int | None = None,
) -> dict[str, float]:
    """Choose the weight decay on held-out train, refit on all train, score test.

    The grid is walked from the largest to the smallest weight decay with warm
    starts; the best held-out top-1 wins, ties going to the larger weight decay.

    Args:
        train_x: ``(N_train, D)`` features.
        train_y: ``(N_train,)`` int labels in ``[0, C)``.
        test_x: ``(N_test, D)`` features.
        test_y: ``(N_test,)`` int labels.
        wd_grid: Candidate weight decays.
        val_fraction: Share of train held out for the selection.
        max_iter: L-BFGS iterations per fit.
        seed: Seed of the held-out split.
        num_classes: C; defaults to ``max label + 1``.

    Returns:
        ``{"top1", "val_top1", "best_wd"}``; accuracies as fractions.
    """
    train_y = np.asarray(train_y, dtype=np.int64)
    test_y = np.asarray(test_y, dtype=np.int64)
    if num_classes is None:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    fit_idx, val_idx = stratified_split(train_y, val_fraction, seed)
    if len(val_idx) == 0:
        raise SslbenchError(
            f"linear: val_fraction={val_fraction} leaves no held-out samples "
            f"from {len(train_y)} train samples"
        )
    xf, xv = standardize(train_x[fit_idx], train_x[val_idx])
    yf, yv = torch.from_numpy(train_y[fit_idx]), torch.from_numpy(train_y[val_idx])

    rot = rotate(xf)
    best_wd, best_val, params = None, -1.0, None
    for wd in sorted(wd_grid, reverse=True):
        params = fit_rotated(rot, yf, num_classes, wd, max_iter, init=params)
        acc = top1(xv, yv, weights(rot, params[0]), params[1])
        if acc > best_val:
            best_wd, best_val = wd, acc
    del rot, xf, xv

    xtr, xte = standardize(train_x, test_x)
    w, b = fit_logistic(xtr, torch.from_numpy(train_y), num_classes, best_wd, max_iter)
    return {
        "top1": top1(xte, torch.from_numpy(test_y), w, b),
        "val_top1": best_val,
        "best_wd": float(best_wd),
    }


@dataclass
class Linear(Protocol):
    """Linear probe: standardised features, softmax regression, wd chosen on held-out train.

    Reports ``top1`` (test, after refitting on all train with the chosen weight
    decay), ``val_top1`` (held-out accuracy at the chosen weight decay) and the
    undirected ``best_wd``.

    Attributes:
        wd_grid: Candidate weight decays (L2 on the weights, not the bias).
        val_fraction: Share of train held out (stratified, seeded) for selection.
        max_iter: Maximum L-BFGS iterations per fit.
    """

    name: ClassVar[str] = "linear"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"labels"})
    metrics: ClassVar[dict[str, Direction]] = {"top1": "higher", "val_top1": "higher"}
    main_metric: ClassVar[str] = "top1"

    wd_grid: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    val_fraction: float = 0.2
    max_iter: int = 100

    def __post_init__(self) -> None:
        self.wd_grid = tuple(float(w) for w in self.wd_grid)
        if not self.wd_grid or any(not w >= 0 for w in self.wd_grid):
            raise SslbenchError(f"linear: wd_grid must be non-empty and >= 0, got {self.wd_grid}")
        if not 0 < self.val_fraction < 1:
            raise SslbenchError(f"linear: val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.max_iter < 1:
            raise SslbenchError(f"linear: max_iter must be >= 1, got {self.max_iter}")

    def evaluate(self, features: FeatureSet, seed: int) -> Evaluation:
        """Test top-1 of the probe with the weight decay selected on held-out train."""
        return Evaluation(select_and_fit(
            features.train.x,
            features.train.y,
            features.test.x,
            features.test.y,
            self.wd_grid,
            self.val_fraction,
            self.max_iter,
            seed,
            features.num_classes,
        ))
