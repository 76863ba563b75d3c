"""Linear probe: multinomial logistic regression on frozen, standardised features.

The standard linear evaluation of self-supervised representations (e.g. SimCLR,
Chen et al. 2020, Sec. B.5; Kolesnikov et al. 2019, "Revisiting Self-Supervised
Visual Representation Learning"): standardise with train statistics, fit an
L2-regularised softmax regression, choose the weight decay on a held-out part
of train, refit on all of train and report test top-1. Solved by full-batch
L-BFGS in torch on cached features, which is exact and far faster than
scikit-learn on a CPU; the preconditioned solver is in :mod:`protocols._logistic`
(:func:`~protocols._logistic.fit_softmax`).

How the work is kept near the products it cannot avoid:

- Train is copied and standardised once, in float32, fit rows first, so the
  selection's fit and held-out parts and the refit's all-train rows are views
  of one matrix. The selection still sees fit-part statistics: they enter as a
  per-column scale and shift folded into the weights (:class:`StandardizedSplit`).
- One Gram product of the fit part gives the variances and the preconditioner;
  its eigenbasis also preconditions the refit (any orthogonal basis gives the
  same minimiser, and all-train statistics differ from the fit part's by
  O(1/sqrt(N))).
- The grid is walked from the largest weight decay down, each fit starting from
  the previous weights and curvature pairs; the refit starts from the chosen
  fit's weights. Each fit stops at the gradient tolerance ``gtol`` (or
  ``max_iter``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from protocols._logistic import (
    GTOL,
    STD_FLOOR,
    Design,
    Whitener,
    fit_softmax,
    single_thread,
)
from sslbench.errors import SslbenchError
from sslbench.protocol import Evaluation, Protocol
from sslbench.splits import stratified_split
from sslbench.types import Direction, FeatureSet


@dataclass
class StandardizedSplit:
    """Train standardised once, fit rows first, with views for the selection's two parts.

    Train is standardised with all-train statistics, which the refit and the test
    score use (centred on the fit part's mean rather than all-train's: the bias
    absorbs any centre). The selection must see its fit part standardised with
    fit-part statistics instead, and the held-out rows with the same ones; that
    is the per-column affine map ``fit_scale``, ``fit_shift`` of the same rows
    (:class:`protocols._logistic.Design`), exact and without a second copy. Test
    is never looked at before the final score. A column whose fit-part spread is
    at most ``STD_FLOOR`` (constant on the fit part) gets scale and shift 0: it
    carries nothing a fit could use, and dropping it keeps rounding noise times
    ``1 / STD_FLOOR`` off the held-out rows (a standardisation of its own would
    clamp its spread to ``STD_FLOOR`` instead).

    Attributes:
        x: ``(N, D)`` float32 standardised train, rows ``order``.
        y: ``(N,)`` int64 labels of those rows.
        n_fit: Rows of the fit part (the first ones); the rest are held out.
        test_x: ``(M, D)`` float32 test, standardised with the train statistics.
        fit_scale: ``(D,)`` float32 scale re-standardising the fit part.
        fit_shift: ``(D,)`` float32 shift, likewise.
        fit_corr: ``(D, D)`` float64 second-moment matrix of the re-standardised fit part.
    """

    x: torch.Tensor
    y: torch.Tensor
    n_fit: int
    test_x: torch.Tensor
    fit_scale: torch.Tensor
    fit_shift: torch.Tensor
    fit_corr: torch.Tensor

    def fit_part(self) -> Design:
        return Design(self.x[: self.n_fit], self.y[: self.n_fit], self.fit_scale, self.fit_shift)

    def held_out(self) -> Design:
        return Design(self.x[self.n_fit :], self.y[self.n_fit :], self.fit_scale, self.fit_shift)

    def train(self) -> Design:
        return Design(self.x, self.y)


def standardize_split(
    train_x: np.ndarray, train_y: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray, test_x: np.ndarray
) -> StandardizedSplit:
    """Standardise train once (one float32 copy, fit rows first) and derive the selection's statistics.

    The fit part's second moments come from one product of its rows (the Gram
    matrix the preconditioner needs anyway); its diagonal also gives the
    variances, so no pass computes them separately.

    Args:
        train_x: ``(N, D)`` features (any float dtype; read once).
        train_y: ``(N,)`` int64 labels.
        fit_idx: Rows of the fit part.
        val_idx: Held-out rows.
        test_x: ``(M, D)`` test features.

    Returns:
        The :class:`StandardizedSplit`.
    """
    order = np.concatenate([fit_idx, val_idx])
    x = torch.from_numpy(np.asarray(np.asarray(train_x)[order], dtype=np.float32))
    n, nf = x.shape[0], len(fit_idx)
    # Centre on the fit part's mean: any centre gives the same fits (the bias absorbs it), and
    # this one makes the fit part's variances exact (a constant column becomes exactly 0).
    shift = torch.from_numpy(np.add.reduce(x[:nf].numpy(), axis=0, dtype=np.float64) / nf).to(torch.float32)
    x.sub_(shift)
    fit, held = x[:nf], x[nf:]
    gram = (fit.T @ fit).to(torch.float64).div_(nf)
    mean_f = fit.sum(dim=0).double() / nf  # rounding residue of the centring
    mean_all = (mean_f * nf + held.sum(dim=0).double()) / n
    sq_all = torch.diagonal(gram) * nf + (held * held).sum(dim=0).double()
    std = (sq_all / n - mean_all**2).clamp_min(0.0).sqrt().clamp_min(STD_FLOOR)
    inv = (1.0 / std).to(torch.float32)
    x.mul_(inv)
    test = torch.from_numpy(np.asarray(test_x, dtype=np.float32)).sub(shift).mul_(inv)
    # The fit part in these units: mean mu, covariance cov; re-standardised by scale and shift.
    mu = mean_f / std
    cov = gram / std[:, None] / std[None, :] - mu[:, None] * mu[None, :]
    fit_std = torch.diagonal(cov).clamp_min(0.0).sqrt()
    live = fit_std * std > STD_FLOOR
    scale = torch.where(live, 1.0 / fit_std.clamp_min(1e-300), torch.zeros((), dtype=torch.float64))
    return StandardizedSplit(
        x=x, y=torch.from_numpy(np.asarray(train_y, dtype=np.int64)[order]), n_fit=nf, test_x=test,
        fit_scale=scale.to(torch.float32), fit_shift=(-mu * scale).to(torch.float32),
        fit_corr=cov * scale[:, None] * scale[None, :],
    )


@dataclass
class FitRecord:
    """What one fit of the probe did (for benchmarks and reports).

    Attributes:
        wd: Weight decay.
        rows: Rows of the fitted design.
        iterations: L-BFGS iterations.
        forwards: ``(rows, D) @ (D, C)`` products (logits), held-out scoring not included.
        gradients: ``(C, rows) @ (rows, D)`` products.
        stop: Why the solver stopped.
        val_top1: Held-out top-1 (selection fits) or None (the refit).
    """

    wd: float
    rows: int
    iterations: int
    forwards: int
    gradients: int
    stop: str
    val_top1: float | None


@dataclass
class ProbeResult:
    """The probe's numbers and how it got them.

    Attributes:
        top1: Test top-1 after the refit (fraction).
        val_top1: Held-out top-1 at the chosen weight decay.
        best_wd: The chosen weight decay.
        fits: Every fit, grid order, the refit last.
        gram_rows: Rows of the one ``(rows, D) x (D, rows)`` Gram product.
        seconds: Wall time of each phase (standardise, precondition, select, refit, score).
    """

    top1: float
    val_top1: float
    best_wd: float
    fits: list[FitRecord]
    gram_rows: int
    seconds: dict[str, float]

    def metrics(self) -> dict[str, float]:
        return {"top1": self.top1, "val_top1": self.val_top1, "best_wd": self.best_wd}


def probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    wd_grid: tuple[float, ...],
    val_fraction: float,
    max_iter: int,
    seed: int,
    num_classes: int | None = None,
    gtol: float = GTOL,
) -> ProbeResult:
    """Choose the weight decay on held-out train, refit on all train, score test.

    The grid is walked from the largest to the smallest weight decay, each fit
    warm-started from the previous one's weights and curvature pairs; the best
    held-out top-1 wins, ties going to the larger weight decay. The refit starts
    from the chosen fit's weights (mapped to all-train statistics) and reuses its
    preconditioner: the fit part's basis is a valid one for all of train.

    Args:
        train_x: ``(N_train, D)`` features.
        train_y: ``(N_train,)`` int labels in ``[0, C)``.
        test_x: ``(N_test, D)`` features.
        test_y: ``(N_test,)`` int labels.
        wd_grid: Candidate weight decays.
        val_fraction: Share of train held out for the selection.
        max_iter: Maximum L-BFGS iterations per fit.
        seed: Seed of the held-out split.
        num_classes: C; defaults to ``max label + 1``.
        gtol: Gradient tolerance of the solver.

    Returns:
        The :class:`ProbeResult`.
    """
    with single_thread():  # see fit_softmax; the eigendecomposition took 40x longer on two threads of a busy machine
        return _probe(train_x, train_y, test_x, test_y, wd_grid, val_fraction, max_iter, seed, num_classes, gtol)


def _probe(train_x, train_y, test_x, test_y, wd_grid, val_fraction, max_iter, seed, num_classes,
           gtol) -> ProbeResult:
    """:func:`probe` on one thread."""
    clock = _Clock()
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
    split = standardize_split(train_x, train_y, fit_idx, val_idx, test_x)
    clock.lap("standardise")
    whitener = Whitener.from_gram(split.fit_corr)
    clock.lap("precondition")
    fit_rows, held = split.fit_part(), split.held_out()
    fits, best, prev = [], None, None
    for wd in sorted(wd_grid, reverse=True):
        res = fit_softmax(fit_rows, whitener, num_classes, wd, max_iter, gtol,
                          init=None if prev is None else (prev.w, prev.b),
                          curvature=None if prev is None else prev.curvature)
        acc = held.top1(res.w, res.b)
        fits.append(FitRecord(wd, split.n_fit, res.iterations, res.forwards, res.gradients, res.stop, acc))
        if best is None or acc > best[1]:
            best = (wd, acc, res)
        prev = res
    clock.lap("select")
    best_wd, best_val, chosen = best
    refit = fit_softmax(split.train(), whitener, num_classes, best_wd, max_iter, gtol,
                        init=fit_rows.linear_map(chosen.w, chosen.b))
    fits.append(FitRecord(best_wd, len(split.y), refit.iterations, refit.forwards, refit.gradients, refit.stop, None))
    clock.lap("refit")
    top1 = Design(split.test_x, torch.from_numpy(test_y)).top1(refit.w, refit.b)
    clock.lap("score")
    return ProbeResult(top1, best_val, float(best_wd), fits, split.n_fit, clock.seconds)


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
    gtol: float = GTOL,
) -> dict[str, float]:
    """:func:`probe`'s metrics: ``{"top1", "val_top1", "best_wd"}``, accuracies as fractions."""
    return probe(train_x, train_y, test_x, test_y, wd_grid, val_fraction, max_iter, seed, num_classes,
                 gtol).metrics()


class _Clock:
    """Wall time of consecutive phases."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = now - self._t
        self._t = now


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
        gtol: The solver stops once the largest gradient entry (whitened
            coordinates) is at most this (or on the other criteria of
            :func:`protocols._logistic.fit_softmax`).
    """

    name: ClassVar[str] = "linear"
    version: ClassVar[str] = "2"
    requires: ClassVar[frozenset[str]] = frozenset({"labels"})
    metrics: ClassVar[dict[str, Direction]] = {"top1": "higher", "val_top1": "higher"}
    main_metric: ClassVar[str] = "top1"

    wd_grid: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    val_fraction: float = 0.2
    max_iter: int = 100
    gtol: float = GTOL

    def __post_init__(self) -> None:
        self.wd_grid = tuple(float(w) for w in self.wd_grid)
        if not self.wd_grid or any(not w >= 0 for w in self.wd_grid):
            raise SslbenchError(f"linear: wd_grid must be non-empty and >= 0, got {self.wd_grid}")
        if not 0 < self.val_fraction < 1:
            raise SslbenchError(f"linear: val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.max_iter < 1:
            raise SslbenchError(f"linear: max_iter must be >= 1, got {self.max_iter}")
        if not self.gtol >= 0:
            raise SslbenchError(f"linear: gtol must be >= 0, got {self.gtol}")

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
            self.gtol,
        ))
