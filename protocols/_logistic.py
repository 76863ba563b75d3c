"""Shared solvers of the probing protocols: standardisation and preconditioned softmax regression.

The linear probe, the low-shot probe and the few-shot logistic regression all fit
``mean CE + wd/2 ||W||^2`` by full-batch L-BFGS in torch. Features of real encoders
are strongly correlated, which makes plain L-BFGS crawl (hundreds of iterations at
small weight decay), so the solvers run in whitened coordinates ``W = U diag(s) V``
from the damped eigendecomposition of ``x^T x / N``: the same objective and
minimiser, reached in far fewer iterations.

Two solvers share that idea. :func:`fit_rotated` (low-shot; small problems) rotates
the features and runs ``torch.optim.LBFGS``. :func:`fit_softmax` (the full-data
linear probe) keeps the change of variables in the weights, so the (N, D) matrix is
never copied, and runs its own L-BFGS whose line search works on the logits alone.

Private to ``protocols/``: protocols share these through this module, not through
each other.
"""

from __future__ import annotations

import math
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


# ----------------------------------------------------------------------------- the linear probe's solver
#
# The full-data linear probe (``protocols.linear``) fits one (N, D) matrix at
# several weight decays. Its solver never forms a rotated, whitened or float64
# copy of that matrix: the change of variables lives in the (D, C) weights, so an
# L-BFGS iteration reads the matrix twice (the search direction's logits, then the
# gradient) and every line-search trial works on the (C, N) logits alone.

#: Stop when the largest gradient entry (whitened coordinates) is below this.
GTOL = 1e-5
#: ... or when an iteration lowers the objective by less than this, relatively.
FTOL = 1e-9
#: Curvature pairs kept by L-BFGS.
HISTORY = 10


def logits_product(x: torch.Tensor, wt: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``wt @ x^T + bias``: ``(C, D) @ (D, N) -> (C, N)`` float32 logits, samples along the rows.

    The two skinny products (C = 10 columns) are most of the solver's time; of
    the forms tried on the project's machine (torch and numpy, either operand
    order) ``x @ wt^T`` was the fastest forward one, about 13 ms for
    48k x 512 on one core, where ``x @ w`` with ``w`` contiguous took 26 ms.
    """
    return torch.addmm(bias, x, wt.T).T.contiguous()


def gradient_product(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``(g @ x)^T``: ``(C, N) @ (N, D) -> (D, C)``, the fast order of the gradient's product (12 ms above)."""
    return (g @ x).T


@dataclass
class Design:
    """The rows one fit sees: feature ``j`` of row ``i`` is ``x[i, j] * scale[j] + shift[j]``.

    ``scale`` and ``shift`` re-standardise rows that were standardised with other
    statistics (the held-out selection's fit part) without copying them: the
    solver folds them into the weights.

    Attributes:
        x: ``(N, D)`` float32 rows (a view; never copied).
        y: ``(N,)`` int64 labels in ``[0, C)``.
        scale: ``(D,)`` float32 column scale, or None for 1.
        shift: ``(D,)`` float32 column shift, or None for 0.
    """

    x: torch.Tensor
    y: torch.Tensor
    scale: torch.Tensor | None = None
    shift: torch.Tensor | None = None

    def linear_map(self, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights on the stored ``x`` equivalent to ``(w, b)`` on the design's features."""
        wx = w if self.scale is None else w * self.scale[:, None]
        bx = b if self.shift is None else b + self.shift @ w
        return wx, bx

    def top1(self, w: torch.Tensor, b: torch.Tensor) -> float:
        """Top-1 accuracy (fraction) of ``argmax(features W + b)`` on these rows."""
        wx, bx = self.linear_map(w, b)
        logits = logits_product(self.x, wx.T.contiguous(), bx)
        return float((logits.argmax(dim=0) == self.y).double().mean())


@dataclass
class Whitener:
    """Preconditioner ``W = U diag(s) V`` from ``x^T x / N = U diag(lam) U^T`` (see :class:`Rotated`).

    Attributes:
        basis: ``(D, D)`` float32 orthogonal ``U``.
        eig: ``(D,)`` float64 ``lam``.
    """

    basis: torch.Tensor
    eig: torch.Tensor

    @classmethod
    def from_gram(cls, gram: torch.Tensor) -> Whitener:
        """Eigendecompose a ``(D, D)`` second-moment matrix (in float64: ``U`` orthogonal to float32 precision)."""
        lam, u = torch.linalg.eigh(gram.to(torch.float64))
        return cls(basis=u.to(torch.float32), eig=lam.clamp_min(0.0))

    def scale(self, wd: float) -> torch.Tensor:
        """``s = (lam + delta)^(-1/2)``, float32, with ``delta`` as in :meth:`Rotated.scale`."""
        delta = max(PRECOND_DAMPING * float(self.eig.mean()), wd, 1e-12)
        return (self.eig + delta).rsqrt().to(torch.float32)


@dataclass
class Curvature:
    """L-BFGS curvature pairs carried from one fit to the next on the same rows.

    The pairs hold steps and changes of the cross-entropy gradient in the whitened
    coordinates of ``s``; the penalty's exact curvature ``wd s^2`` is added for
    whichever weight decay uses them, so a pair stays valid along the grid.

    Attributes:
        s: ``(D,)`` whitening scale the pairs are expressed in.
        steps: ``(D + 1, C)`` parameter steps, oldest first.
        ce_changes: ``(D + 1, C)`` changes of the cross-entropy gradient.
    """

    s: torch.Tensor
    steps: list[torch.Tensor]
    ce_changes: list[torch.Tensor]

    def rescaled(self, s: torch.Tensor) -> Curvature:
        """The same pairs in the coordinates of scale ``s``: ``V' = V s_old / s``, gradients the inverse."""
        ratio = torch.cat([self.s / s, torch.ones(1)])[:, None]
        return Curvature(s=s, steps=[p * ratio for p in self.steps], ce_changes=[c / ratio for c in self.ce_changes])

    def pairs(self, wd: float) -> list[tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]]:
        """``(step, gradient change, 1 / (step . change), CE change)`` for weight decay ``wd``, oldest first."""
        out = []
        for step, change in zip(self.steps, self.ce_changes, strict=True):
            y = change.clone()
            y[:-1] += wd * (self.s * self.s)[:, None] * step[:-1]
            sy = _dot(step, y)
            if sy > 1e-10:  # a pair whose curvature came from a larger penalty may have none left
                out.append((step, y, 1.0 / sy, change))
        return out


@dataclass
class SoftmaxFit:
    """One fit of :func:`fit_softmax`.

    Attributes:
        w: ``(D, C)`` float32 weights on the design's features.
        b: ``(C,)`` float32 bias.
        loss: Objective ``mean CE + wd/2 ||W||^2`` at ``(w, b)`` (float64 sums of float32 terms).
        iterations: L-BFGS iterations run.
        forwards: ``(N, D) @ (D, C)`` products (logits of a point or a direction).
        gradients: ``(C, N) @ (N, D)`` products.
        stop: Why it stopped: ``"gtol"``, ``"ftol"``, ``"line search"`` or ``"max_iter"``.
        curvature: The last curvature pairs, to warm-start a fit on the same rows.
    """

    w: torch.Tensor
    b: torch.Tensor
    loss: float
    iterations: int
    forwards: int
    gradients: int
    stop: str
    curvature: Curvature


class _Objective:
    """``mean CE + wd/2 ||W||^2`` of a design in whitened coordinates ``theta = [V; b]``, ``(D + 1, C)``.

    ``W = U diag(s) V`` (:class:`Whitener`), so ``||W||^2 = sum_i s_i^2 ||V_i||^2``.
    Logits are kept as ``(C, N)``: the softmax then runs over C contiguous rows.
    """

    def __init__(self, design: Design, whitener: Whitener, num_classes: int, wd: float):
        self.design, self.wd, self.n = design, wd, design.x.shape[0]
        self.u = whitener.basis
        self.s = whitener.scale(wd)
        self.pen = (self.s * self.s)[:, None]
        self.onehot = F.one_hot(design.y, num_classes).T.to(torch.float32).contiguous()
        self.forwards = self.gradients = 0

    def theta(self, init: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Whitened parameters of weights ``(W, b)`` on the design's features (zeros for None)."""
        if init is None:
            return torch.zeros(self.u.shape[1] + 1, self.onehot.shape[0])
        w, b = init
        return torch.cat([(self.u.T @ w) / self.s[:, None], b[None]])

    def weights(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W, b)`` on the design's features, ``(D, C)`` and ``(C,)``."""
        return self.u @ (self.s[:, None] * theta[:-1]), theta[-1].clone()

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        """``(C, N)`` logits of ``theta`` (linear in it: also the logits of a direction). One product."""
        wx, bx = self.design.linear_map(*self.weights(theta))
        self.forwards += 1
        return logits_product(self.design.x, wx.T.contiguous(), bx)

    def penalty(self, theta: torch.Tensor) -> float:
        """``wd/2 ||W||^2``."""
        return 0.5 * self.wd * float((self.pen * theta[:-1] * theta[:-1]).sum(dtype=torch.float64))

    def gradient(self, probs: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Gradient in ``theta`` from the ``(C, N)`` softmax probabilities at ``theta``. One product."""
        dlogits = torch.sub(probs, self.onehot).div_(self.n)  # dCE/dlogits, (C, N)
        gw = gradient_product(self.design.x, dlogits)  # (D, C)
        self.gradients += 1
        gb = dlogits.sum(dim=1)
        if self.design.scale is not None:
            gw = gw * self.design.scale[:, None]
        if self.design.shift is not None:
            gw = gw + self.design.shift[:, None] * gb
        gv = self.s[:, None] * (self.u.T @ gw) + self.wd * self.pen * theta[:-1]
        return torch.cat([gv, gb[None]])


def _softmax_loss(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
    """``(mean CE, softmax)`` of ``(C, N)`` logits (the CE summed in float64)."""
    label = float(logits.gather(0, y[None]).sum(dtype=torch.float64))
    return (_lse_sum(logits) - label) / logits.shape[1], torch.softmax(logits, dim=0)


class _Line:
    """The objective along ``theta + t d`` from the logits alone: a trial costs no product with the rows.

    Logits are linear in ``theta`` and the penalty is a quadratic in ``t``. The
    change of a sample's loss is computed relative to its label,
    ``log1p(sum_c p_c expm1(t u_c))`` with ``u_c = dlogit_c - dlogit_label``,
    so it keeps float32's relative precision however small it is: near the
    minimum the decrease of an iteration is far below float32's resolution of
    the loss itself, and a line search comparing losses would stall there.
    """

    def __init__(self, obj: _Objective, logits: torch.Tensor, probs: torch.Tensor, dlogits: torch.Tensor,
                 theta: torch.Tensor, d: torch.Tensor):
        self.n, self.logits, self.p0, self.dlogits, self.y = obj.n, logits, probs, dlogits, obj.design.y
        self.u = dlogits - dlogits.gather(0, self.y[None])  # (C, N), 0 on the label
        self.u_max = float(self.u.max())
        pd = obj.pen * d[:-1]
        self.q1 = obj.wd * float((pd * theta[:-1]).sum(dtype=torch.float64))
        self.q2 = 0.5 * obj.wd * float((pd * d[:-1]).sum(dtype=torch.float64))
        self._lse0: float | None = None

    def __call__(self, t: float) -> tuple[float, float]:
        """``(f(t) - f(0), f'(t))``."""
        if t * self.u_max < 60.0:  # expm1 stays finite
            # numpy's expm1 and log1p are vectorised; torch's CPU ones took 40x longer here.
            e = self.u * t
            np.expm1(e.numpy(), out=e.numpy())
            total = (self.p0 * e).sum(dim=0)
            if float(total.min()) > -0.5:  # else some loss falls by log 2 or more: log1p(total) loses digits
                dloss = float(np.log1p(total.numpy()).sum(dtype=np.float64)) / self.n
                return self._result(t, dloss, e.add_(1.0).mul_(self.p0).div_(total.add_(1.0)))
        return self._result(t, *self._plain(t))

    def _plain(self, t: float) -> tuple[float, torch.Tensor]:
        """Loss change and softmax at ``t`` by the plain log-sum-exp (for long steps)."""
        if self._lse0 is None:
            self._lse0 = _lse_sum(self.logits)
        z = torch.add(self.logits, self.dlogits, alpha=t)
        label = float(self.dlogits.gather(0, self.y[None]).sum(dtype=torch.float64))
        return (_lse_sum(z) - self._lse0 - t * label) / self.n, torch.softmax(z, dim=0)

    def _result(self, t: float, dloss: float, probs: torch.Tensor) -> tuple[float, float]:
        slope = float(torch.dot(probs.view(-1), self.u.view(-1))) / self.n
        return dloss + t * self.q1 + t * t * self.q2, slope + self.q1 + 2.0 * t * self.q2


def _lse_sum(logits: torch.Tensor) -> float:
    """``sum_i logsumexp_c logits[c, i]`` (float64 sum) of ``(C, N)`` logits."""
    top = logits.amax(dim=0)
    return float((logits - top).exp_().sum(dim=0).log_().add_(top).sum(dtype=torch.float64))


def _cubic_step(a: tuple[float, float, float], b: tuple[float, float, float], lo: float, hi: float) -> float:
    """Minimiser of the cubic through two ``(t, f, f')`` points, clamped to ``[lo, hi]`` (midpoint if none).

    Nocedal & Wright, *Numerical Optimization* (2006), eq. 3.59.
    """
    (t0, f0, g0), (t1, f1, g1) = a, b
    d1 = g0 + g1 - 3.0 * (f0 - f1) / (t0 - t1)
    disc = d1 * d1 - g0 * g1
    if disc < 0 or t0 == t1:
        return 0.5 * (lo + hi)
    d2 = math.copysign(math.sqrt(disc), t1 - t0)
    denom = g1 - g0 + 2.0 * d2
    t = t1 - (t1 - t0) * (g1 + d2 - d1) / denom if denom != 0 else 0.5 * (lo + hi)
    return min(max(t, lo), hi) if math.isfinite(t) else 0.5 * (lo + hi)


def _wolfe_search(phi: _Line, f0: float, g0: float, t: float, c1: float = 1e-4, c2: float = 0.9,
                  max_evals: int = 25) -> tuple[float, float]:
    """Step satisfying the strong Wolfe conditions (Nocedal & Wright, Alg. 3.5 and 3.6).

    Returns:
        ``(t, f(t))``; ``t = 0`` when no trial lowered ``f`` (the float32 floor).
        ``phi`` may return ``f(t) - f(0)`` with ``f0 = 0``.
    """
    prev = (0.0, f0, g0)
    for i in range(max_evals):
        f, g = phi(t)
        cur = (t, f, g)
        if f > f0 + c1 * t * g0 or (i > 0 and f >= prev[1]):
            return _zoom(phi, f0, g0, prev, cur, c1, c2, max_evals - i - 1)
        if abs(g) <= -c2 * g0:
            return t, f
        if g >= 0:
            return _zoom(phi, f0, g0, cur, prev, c1, c2, max_evals - i - 1)
        prev, t = cur, _cubic_step(prev, cur, 1.1 * t, 10.0 * t)
    return prev[0], prev[1]


def _zoom(phi: _Line, f0: float, g0: float, lo: tuple[float, float, float], hi: tuple[float, float, float],
          c1: float, c2: float, evals: int) -> tuple[float, float]:
    """Shrink ``[lo, hi]`` (``lo``: the lower, sufficient-decrease end) to a strong Wolfe step."""
    for _ in range(evals):
        a, b = sorted((lo[0], hi[0]))
        if b - a <= 1e-7 * b:
            break
        t = _cubic_step(lo, hi, a + 0.1 * (b - a), b - 0.1 * (b - a))
        f, g = phi(t)
        if f > f0 + c1 * t * g0 or f >= lo[1]:
            hi = (t, f, g)
            continue
        if abs(g) <= -c2 * g0:
            return t, f
        if g * (hi[0] - lo[0]) >= 0:
            hi = lo
        lo = (t, f, g)
    return lo[0], lo[1]


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.view(-1), b.view(-1)))


def _two_loop(g: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]]) -> torch.Tensor:
    """L-BFGS direction ``-H g`` from ``(step, y, 1 / step.y, _)`` pairs, oldest first (Nocedal & Wright, Alg. 7.4)."""
    q = g.clone()
    alphas = []
    for s, y, rho, _ in reversed(pairs):
        a = rho * _dot(s, q)
        q.add_(y, alpha=-a)
        alphas.append(a)
    if pairs:
        _, y, rho, _ = pairs[-1]
        q.mul_(1.0 / (rho * _dot(y, y)))  # H0 = (s.y / y.y) I
    for (s, y, rho, _), a in zip(pairs, reversed(alphas), strict=True):
        q.add_(s, alpha=a - rho * _dot(y, q))
    return q.neg_()


def fit_softmax(
    design: Design,
    whitener: Whitener,
    num_classes: int,
    wd: float,
    max_iter: int = 100,
    gtol: float = GTOL,
    ftol: float = FTOL,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    curvature: Curvature | None = None,
) -> SoftmaxFit:
    """Minimise ``mean_i CE(f_i W + b, y_i) + wd/2 ||W||_F^2`` by preconditioned L-BFGS in float32.

    ``f_i`` are the design's features (no penalty on the bias). The search runs
    in the whitened coordinates of ``whitener`` with a strong Wolfe line search
    on the logits (:class:`_Line`); the gradient is in closed form,
    ``(softmax - onehot) / N`` back through one product. It stops when the
    largest whitened gradient entry is at most ``gtol``, when an iteration
    lowers the objective by less than ``ftol`` relatively, when the line search
    finds no lower value (the float32 floor), or after ``max_iter`` iterations.

    Args:
        design: ``N`` rows of ``D`` features with their labels.
        whitener: Preconditioner (any orthogonal basis gives the same minimiser).
        num_classes: C.
        wd: Weight decay.
        max_iter: Maximum L-BFGS iterations.
        gtol: Gradient tolerance (max-abs, whitened coordinates).
        ftol: Relative objective-change tolerance.
        init: Warm start ``(W (D, C), b (C,))`` on the design's features; zeros otherwise.
        curvature: Pairs of an earlier fit on the same rows (any weight decay).

    Returns:
        The :class:`SoftmaxFit`.
    """
    # One thread: the skinny products gain little from a second core, a second thread waiting for a
    # busy core of a shared machine made every op 2-3x slower, and MKL splits the gradient's long
    # reduction across threads, so the numbers would depend on the thread count.
    with single_thread():
        obj = _Objective(design, whitener, num_classes, wd)
        memory = curvature.rescaled(obj.s) if curvature is not None else Curvature(obj.s, [], [])
        theta, f, iterations, stop, memory = _lbfgs(obj, obj.theta(init), memory, max_iter, gtol, ftol)
        w, b = obj.weights(theta)
    return SoftmaxFit(w=w, b=b, loss=f, iterations=iterations, forwards=obj.forwards, gradients=obj.gradients,
                      stop=stop, curvature=memory)


def _lbfgs(obj: _Objective, theta: torch.Tensor, memory: Curvature, max_iter: int, gtol: float,
           ftol: float) -> tuple[torch.Tensor, float, int, str, Curvature]:
    """The L-BFGS loop of :func:`fit_softmax`: ``(theta, objective, iterations, stop reason, pairs)``."""
    pairs = memory.pairs(obj.wd)
    logits = obj.logits(theta)
    f, probs = _softmax_loss(logits, obj.design.y)
    f += obj.penalty(theta)
    g = obj.gradient(probs, theta)
    stop, it = "max_iter", 0
    while it < max_iter:
        if float(g.abs().max()) <= gtol:
            stop = "gtol"
            break
        d = _two_loop(g, pairs)
        gtd = _dot(g, d)
        if not gtd < 0:  # not a descent direction: drop the memory
            pairs, d = [], -g
            gtd = -_dot(g, g)
        dlogits = obj.logits(d)
        t, change = _wolfe_search(_Line(obj, logits, probs, dlogits, theta, d), 0.0, gtd, 1.0)
        if t == 0.0:
            stop = "line search"
            break
        it += 1
        step = d.mul_(t)
        theta = theta + step
        probs = torch.softmax(logits.add_(dlogits, alpha=t), dim=0)
        g_new = obj.gradient(probs, theta)
        y = g_new - g
        sy = _dot(step, y)
        if sy > 1e-10:
            ce = y.clone()
            ce[:-1] -= obj.wd * obj.pen * step[:-1]  # the penalty's part is exact: keep the CE part only
            pairs = (pairs + [(step, y, 1.0 / sy, ce)])[-HISTORY:]
        f, g = f + change, g_new
        if -change <= ftol * max(abs(f), 1.0):
            stop = "ftol"
            break
    return theta, f, it, stop, Curvature(obj.s, [p[0] for p in pairs], [p[3] for p in pairs])
