"""Shared solvers of the probing protocols: standardisation and preconditioned softmax regression.

The linear probe, the low-shot probe and the few-shot logistic regression all fit
``mean CE + wd/2 ||W||^2`` by full-batch L-BFGS in torch. Features of real encoders
are strongly correlated, which makes plain L-BFGS crawl (hundreds of iterations at
small weight decay), so the solver runs in whitened coordinates ``W = U diag(s) V``
from the damped eigendecomposition of ``x^T x / N`` (:class:`Rotated`): the same
objective and minimiser, reached in far fewer iterations.

Private to ``protocols/``: protocols share these through this module, not through
each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Eigenvalues of a Gram matrix below this fraction of the largest are dropped.
RANK_TOL = 1e-9
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


def rotate_span(x: torch.Tensor) -> Rotated:
    """Like :func:`protocols.linear.rotate`, but in the span of the rows when ``N < D``.

    With ``x x^T = U diag(lam) U^T`` the orthonormal basis of the row span is
    ``V = x^T U diag(lam)^(-1/2)`` (``D x r``) and the rows become
    ``x V = U diag(lam)^(1/2)``, whose second-moment matrix is ``diag(lam) / N``.
    :func:`protocols.linear.fit_rotated` and :func:`protocols.linear.weights`
    work unchanged with this non-square basis.

    Args:
        x: ``(N, D)`` features.

    Returns:
        :class:`protocols.linear.Rotated` with ``x`` ``(N, r)``, ``basis``
        ``(D, r)`` and ``eig`` ``(r,)``, ``r = rank(x) <= N``.
    """
    n, d = x.shape
    if n >= d:
        return rotate(x)
    x64 = x.to(torch.float64)
    lam, u = torch.linalg.eigh(x64 @ x64.T)
    keep = lam > RANK_TOL * lam[-1].clamp_min(1e-300)
    lam, u = lam[keep], u[:, keep]
    root = lam.sqrt()
    return Rotated(x=(u * root).to(torch.float32), basis=(x64.T @ u) / root, eig=lam / n)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block, restoring the setting after.

    The batched solvers issue thousands of tiny ops (a few thousand flops each):
    splitting them across threads only adds synchronisation, which on a busy
    machine costs far more than the op itself.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


