"""Low-shot linear probe: softmax regression on k labelled train samples per class.

The low-shot evaluation of Goyal et al. 2019 ("Scaling and Benchmarking
Self-Supervised Visual Representation Learning", as packaged in VISSL): fit a
linear classifier on only k labelled samples per class, for several k and
several seeded draws, and score it on the full test split.

Choices (fixed, so that numbers compare across encoders):

- Features are l2-normalised row by row, not standardised: statistics of a
  10-sample subset (k = 1) are noise, and a unit whose std is about zero on
  the subset but not on the test split would blow up after division. Unit norm
  also gives the fixed weight decay one scale for every encoder.
- The objective is ``mean CE + wd/2 ||W||^2`` with a small fixed ``wd = 1e-4``
  (no penalty on the bias): close to the max-margin solution of the SVMs used
  by Goyal et al., with a finite minimiser. Chosen on the validation split
  (``--split val``: a seeded 20% of Fashion-MNIST train, never the test split)
  with raw pixels: 10-shot 0.716 / 0.718 / 0.716 / 0.685 at ``wd`` = 1e-5 /
  1e-4 / 1e-3 / 1e-2 (50-shot 0.783 / 0.789 / 0.765 / 0.714; 1-shot 0.517-0.518
  at every value). The same ``wd`` serves every encoder: a per-run choice would
  need held-out labelled data that the protocol's premise, k labels per class, excludes.
  Solved by the preconditioned L-BFGS of :mod:`protocols.linear`;
  with fewer samples than dims the problem is first expressed in an
  orthonormal basis of the samples' span (exact: the penalty keeps W there).
- Draws are nested: draw ``d`` permutes each class once and the k-shot set is
  its first k rows, so a larger k adds samples to a smaller k's set.
- The 95% interval over draws is Student-t (``t_{0.975, draws-1} * sd / sqrt(draws)``,
  ``sd`` with ``ddof=1``): with 5 draws 1.96 would be too narrow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from protocols._logistic import fit_rotated, rotate_span, single_thread, top1, weights
from sslbench.errors import NotApplicable, SslbenchError
from sslbench.protocol import Evaluation, Protocol
from sslbench.records import MetricMeta
from sslbench.stats import t_ci95
from sslbench.types import Direction, FeatureSet

#: Suffix of the per-run 95% half-widths over draws. Not ``_ci95``: the
#: leaderboard writes ``<protocol>.<metric>_ci95`` (over seeds) itself.
CI_SUFFIX = "_draw_ci95"


def draw_rows(y: np.ndarray, k: int, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded nested draws of ``k`` rows per class.

    Args:
        y: ``(N,)`` int labels.
        k: Rows per class kept from each permutation (the largest k wanted);
            every class must have at least ``k`` rows.
        draws: Number of draws.
        seed: Seed; draw ``d`` permutes each class's rows in turn.

    Returns:
        ``(classes, rows)``: ``(C,)`` sorted class ids and ``(draws, C, k)`` int64
        row indices; the j-shot set of a draw is ``rows[d, :, :j]``.
    """
    classes, inverse, counts = np.unique(np.asarray(y), return_inverse=True, return_counts=True)
    by_class = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rng = np.random.default_rng(seed)
    rows = np.empty((draws, len(classes), k), dtype=np.int64)
    for d in range(draws):
        for c in range(len(classes)):
            rows[d, c] = by_class[starts[c] + rng.permutation(counts[c])[:k]]
    return classes, rows


@dataclass
class LowShot(Protocol):
    """Linear probe trained on k labelled train samples per class, scored on all of test.

    For each k in ``shots``: ``top1_<k>shot`` (mean test top-1 over ``draws``
    seeded draws, a fraction) and ``top1_<k>shot_draw_ci95`` (Student-t 95%
    half-width over the draws). A k larger than the smallest train class is
    left out and named in the string ``skipped_shots``. The main metric is
    ``top1_10shot`` (the largest k when 10 is not in ``shots``). The artifacts
    are the drawn rows and the per-draw accuracies.

    Attributes:
        shots: Labelled samples per class (each k).
        draws: Seeded draws per k (>= 2, for the interval).
        wd: Weight decay of ``mean CE + wd/2 ||W||^2`` on l2-normalised features.
        max_iter: Maximum L-BFGS iterations per fit.
    """

    name: ClassVar[str] = "low_shot"
    version: ClassVar[str] = "2"
    requires: ClassVar[frozenset[str]] = frozenset({"labels"})
    metrics: ClassVar[dict[str, Direction]] = {
        f"top1_{k}shot": "higher" for k in (1, 2, 5, 10, 50)
    }
    main_metric: ClassVar[str] = "top1_10shot"

    shots: tuple[int, ...] = (1, 2, 5, 10, 50)
    draws: int = 5
    wd: float = 1e-4
    max_iter: int = 100

    def __post_init__(self) -> None:
        self.shots = tuple(sorted({int(k) for k in self.shots}))
        if not self.shots or self.shots[0] < 1:
            raise SslbenchError(f"low_shot: shots must be non-empty and >= 1, got {self.shots}")
        if self.draws < 2:
            raise SslbenchError(f"low_shot: draws must be >= 2 (for the interval), got {self.draws}")
        if not self.wd > 0 or self.max_iter < 1:
            raise SslbenchError(f"low_shot: need wd > 0 and max_iter >= 1, got wd={self.wd}, max_iter={self.max_iter}")

    def meta(self) -> MetricMeta:
        """The metric names follow ``shots``; the main metric is 10-shot (else the largest k); each
        ``*_draw_ci95`` is the interval (over draws) of its accuracy."""
        return MetricMeta({f"top1_{k}shot": "higher" for k in self.shots},
                          f"top1_{10 if 10 in self.shots else self.shots[-1]}shot",
                          intervals={f"top1_{k}shot{CI_SUFFIX}": f"top1_{k}shot" for k in self.shots})

    def evaluate(self, features: FeatureSet, seed: int) -> Evaluation:
        """Mean test top-1 over draws and its 95% half-width for each k; see the class docstring."""
        train_y, test_y_raw = features.train.y, features.test.y
        classes, counts = np.unique(train_y, return_counts=True)
        main_k = int(self.meta().main.split("_")[1].removesuffix("shot"))
        if counts.min() < main_k:
            raise NotApplicable(
                f"low_shot: the main metric needs {main_k} train samples per class; class "
                f"{classes[counts.argmin()]} has {counts.min()} (run {features.run or '?'})"
            )
        ks = [k for k in self.shots if k <= counts.min()]
        classes, rows = draw_rows(train_y, ks[-1], self.draws, seed)
        n_cls = len(classes)
        pos = np.minimum(np.searchsorted(classes, test_y_raw), n_cls - 1)
        test_y = torch.from_numpy(np.where(classes[pos] == test_y_raw, pos, -1).astype(np.int64))
        acc = self._accuracies(features, rows, ks, n_cls, test_y)
        out: dict[str, float | str] = {}
        for j, k in enumerate(ks):
            out[f"top1_{k}shot"] = float(acc[:, j].mean())
            out[f"top1_{k}shot{CI_SUFFIX}"] = t_ci95(acc[:, j])
        skipped = [k for k in self.shots if k not in ks]
        if skipped:
            out["skipped_shots"] = ",".join(map(str, skipped))
        artifacts = {
            "draw_classes": classes.astype(np.int64),
            "draw_rows": rows,
            "shots": np.asarray(ks, dtype=np.int64),
            "draw_top1": acc,
        }
        return Evaluation(out, artifacts)

    def _accuracies(self, features: FeatureSet, rows: np.ndarray, ks: list[int], n_cls: int,
                    test_y: torch.Tensor) -> np.ndarray:
        """Test top-1 ``(draws, len(ks))`` of a probe fitted on each draw's k-shot rows."""
        acc = np.empty((self.draws, len(ks)))
        with single_thread():  # small problems: threads would only add synchronisation
            test_x, train_unit = torch.from_numpy(features.test.unit()), features.train.unit()
            for d in range(self.draws):
                for j, k in enumerate(ks):
                    idx = rows[d, :, :k].ravel()
                    x = torch.from_numpy(train_unit[idx])
                    rot = rotate_span(x)
                    a, b = fit_rotated(rot, torch.arange(n_cls).repeat_interleave(k), n_cls, self.wd, self.max_iter)
                    acc[d, j] = top1(test_x, test_y, weights(rot, a), b)
        return acc
