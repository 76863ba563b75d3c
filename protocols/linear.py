"""Linear probe: multinomial logistic regression on frozen, standardised features.

The standard linear evaluation of self-supervised representations (e.g. SimCLR,
Chen et al. 2020, Sec. B.5; Kolesnikov et al. 2019, "Revisiting Self-Supervised
Visual Representation Learning"): standardise with train statistics, fit an
L2-regularised softmax regression, choose the weight decay on a held-out part
of train, refit on all of train and report test top-1. Solved by full-batch
L-BFGS in torch on cached features, which is exact and far faster than
scikit-learn on a CPU.

Features of real encoders are strongly correlated, which makes plain L-BFGS
crawl (hundreds of iterations at small weight decay). The solver therefore
runs in whitened coordinates ``W = U diag(s) V`` from the damped
eigendecomposition of ``x^T x / N`` (:class:`Rotated`): the same objective and
minimiser, reached in far fewer iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from sslbench.errors import SslbenchError
from sslbench.protocol import Protocol, check_features
from sslbench.types import Direction, FeatureSet

STD_FLOOR = 1e-6
#: Damping of the preconditioner, relative to the mean eigenvalue of the
#: feature second-moment matrix (1 for standardised features).
PRECOND_DAMPING = 1e-2


def standardize(fit_x: np.ndarray, *others: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Standardise arrays with the mean and std of ``fit_x`` (std clamped at 1e-6).

    Args:
        fit_x: ``(N, D)`` features that define the statistics.
        *others: Further ``(M, D)`` arrays transformed with the same statistics.

    Returns:
        float32 tensors, ``fit_x`` first, then ``others`` in order (statistics in float64).
    """
    x64 = np.asarray(fit_x, dtype=np.float64)
    mean = x64.mean(axis=0)
    std = np.maximum(x64.std(axis=0), STD_FLOOR)
    del x64
    return tuple(
        torch.from_numpy(((np.asarray(a, dtype=np.float64) - mean) / std).astype(np.float32))
        for a in (fit_x, *others)
    )


@dataclass
class Rotated:
    """Features in the eigenbasis of their second-moment matrix, for preconditioning.

    With ``x^T x / N = U diag(lam) U^T``, the solver uses weights ``W = U diag(s) V``
    with ``s = (lam + delta)^(-1/2)``, so that L-BFGS sees the whitened features
    ``(x U) diag(s)``. This is a change of variables, not of the objective.

    Attributes:
        x: ``(N, D)`` float32 ``x @ U``.
        basis: ``(D, D)`` float64 ``U``.
        eig: ``(D,)`` float64 ``lam``.
    """

    x: torch.Tensor
    basis: torch.Tensor
    eig: torch.Tensor

    def scale(self, wd: float) -> torch.Tensor:
        """``s = (lam + delta)^(-1/2)``, ``delta = max(PRECOND_DAMPING * mean(lam), wd)``, float64."""
        delta = max(PRECOND_DAMPING * float(self.eig.mean()), wd, 1e-12)
        return (self.eig + delta).rsqrt()


def rotate(x: torch.Tensor) -> Rotated:
    """Eigendecompose ``x^T x / N`` and rotate ``x`` into that basis.

    The basis only preconditions the solver (any orthogonal ``U`` gives the same
    minimiser), so the Gram matrix and the rotation run in float32; the
    eigendecomposition runs in float64 so that ``U`` is orthogonal to float64
    precision, which the penalty ``||W||^2 = sum_i s_i^2 ||V_i||^2`` relies on.

    Args:
        x: ``(N, D)`` features (standardised).

    Returns:
        The :class:`Rotated` features.
    """
    x = x.to(torch.float32)
    lam, u = torch.linalg.eigh((x.T @ x).to(torch.float64) / x.shape[0])
    return Rotated(x=x @ u.to(torch.float32), basis=u, eig=lam.clamp_min(0.0))


def fit_rotated(
    rot: Rotated,
    y: torch.Tensor,
    num_classes: int,
    wd: float,
    max_iter: int = 100,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-batch L-BFGS (strong Wolfe) for softmax regression in rotated coordinates.

    Minimises ``mean_i CE(x_i W + b, y_i) + wd / 2 * ||W||_F^2`` (no penalty on
    the bias) over ``W = U diag(s) V`` and ``b``, in float32, with the gradient in
    closed form (``(softmax - onehot) / N`` back through one matmul).

    Args:
        rot: Rotated features ``(N, D)``.
        y: ``(N,)`` int64 labels in ``[0, C)``.
        num_classes: C.
        wd: Weight decay (L2 coefficient on W).
        max_iter: Maximum L-BFGS iterations.
        init: Optional warm start ``(A, b)`` with ``A = U^T W`` ``(D, C)``; zeros otherwise.

    Returns:
        ``(A, b)`` with ``A = U^T W``, detached; see :func:`weights`.
    """
    s64 = rot.scale(wd)
    s = s64.to(torch.float32)
    xs = rot.x * s  # whitened features (N, D)
    n, d = xs.shape
    if init is None:
        v = torch.zeros(d, num_classes)
        b = torch.zeros(num_classes)
    else:
        v = (init[0].to(torch.float64) / s64[:, None]).to(torch.float32)
        b = init[1].detach().clone()
    penalty = (s * s)[:, None]  # ||W||^2 = sum_i s_i^2 ||V_i||^2 (U orthogonal)
    onehot = F.one_hot(y, num_classes).to(torch.float32)
    v.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS(
        [v, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        with torch.no_grad():
            logp = torch.log_softmax(xs @ v + b, dim=1)
            pv = penalty * v
            loss = -(logp * onehot).sum() / n + 0.5 * wd * (pv * v).sum()
            g = (logp.exp() - onehot) / n  # dCE/dlogits, (N, C)
            v.grad = (g.T @ xs).T.contiguous() + wd * pv  # g^T x: the fast matmul order
            b.grad = g.sum(dim=0)
        return loss

    opt.step(closure)
    return (v.detach().to(torch.float64) * s64[:, None]), b.detach()


def weights(rot: Rotated, a: torch.Tensor) -> torch.Tensor:
    """Map rotated weights ``A = U^T W`` back to ``W = U A`` (float32, ``(D, C)``)."""
    return (rot.basis @ a.to(torch.float64)).to(torch.float32)


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    wd: float,
    max_iter: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression ``mean CE + wd/2 ||W||^2`` by preconditioned L-BFGS.

    Args:
        x: ``(N, D)`` features (standardise them first).
        y: ``(N,)`` int64 labels in ``[0, C)``.
        num_classes: C.
        wd: Weight decay (L2 coefficient on W, none on the bias).
        max_iter: Maximum L-BFGS iterations.

    Returns:
        ``(W, b)``: ``(D, C)`` and ``(C,)`` float32.
    """
    rot = rotate(x)
    a, b = fit_rotated(rot, y, num_classes, wd, max_iter)
    return weights(rot, a), b


def top1(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> float:
    """Top-1 accuracy (fraction) of the linear classifier ``argmax(x W + b)``."""
    with torch.no_grad():
        logits = x.to(torch.float32) @ w + b
        return float((logits.argmax(dim=1) == y).double().mean())


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

    def evaluate(self, features: FeatureSet, seed: int) -> dict[str, float]:
        """Test top-1 of the probe with the weight decay selected on held-out train."""
        check_features(features)
        if features.train_y.min() < 0 or features.test_y.min() < 0:
            raise SslbenchError(f"linear: labels must be >= 0 (run {features.run or '?'})")
        return select_and_fit(
            features.train_x,
            features.train_y,
            features.test_x,
            features.test_y,
            self.wd_grid,
            self.val_fraction,
            self.max_iter,
            seed,
            features.num_classes,
        )
