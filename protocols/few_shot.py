"""Few-shot transfer: N-way K-shot episodes on frozen, l2-normalised features.

The episodic evaluation of few-shot learning (Vinyals et al. 2016, "Matching
Networks for One Shot Learning"), as used to compare frozen representations
(Tian et al. 2020, "Rethinking Few-Shot Image Classification: a Good Embedding
Is All You Need"): each episode draws ``ways`` classes and, per class, ``K``
labelled support and ``queries`` query samples; a classifier fitted on the
support set labels the queries. Two classifiers:

- nearest centroid: cosine similarity to the mean of each class's normalised
  support features (Snell et al. 2017, "Prototypical Networks", with cosine);
- per-episode multinomial logistic regression with a fixed weight decay.

Mean accuracy over the episodes with the 95% interval ``1.96 sd / sqrt(E)``
(``sd`` with ``ddof=1``). One episode list serves every K: the K-shot support
set is the first K of the ``max(shots)`` support samples drawn per class, and
the queries are the same, so differences between K are not sampling noise.

Every episode is a tiny problem (``n = ways * K`` samples in ``D`` dims), so
the logistic regressions are fitted together: each support set is expressed in
an orthonormal basis of its own span (``n`` coordinates, exact because the L2
penalty keeps the weights in that span), whitened as in
:mod:`protocols.linear`, and for each K one full-batch L-BFGS minimises the
sum of the independent episode objectives. All ops are small, so they run on
one intra-op thread (:func:`single_thread`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from protocols._logistic import PRECOND_DAMPING, single_thread
from sslbench.errors import NotApplicable, SslbenchError
from sslbench.protocol import Evaluation, Protocol
from sslbench.records import MetricMeta
from sslbench.stats import normal_ci95
from sslbench.types import Direction, FeatureSet

#: Eigenvalues of a support Gram matrix below this fraction of its largest are
#: treated as zero (duplicate or collapsed support samples).
RANK_TOL = 1e-9
#: Episodes gathered together (bounds memory at about ``CHUNK * ways * queries * D`` floats).
CHUNK = 100


@dataclass
class Episodes:
    """A seeded list of N-way episodes (row indices into one split).

    Attributes:
        classes: ``(E, ways)`` int64 original class ids; column ``w`` is episode label ``w``.
        support: ``(E, ways, K_max)`` int64 rows; the K-shot support set is ``[..., :K]``.
        query: ``(E, ways, queries)`` int64 rows.
    """

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray


def sample_episodes(
    y: np.ndarray, ways: int, shots: int, queries: int, episodes: int, seed: int
) -> Episodes:
    """Draw ``episodes`` N-way episodes with ``shots + queries`` distinct rows per class.

    Only classes with at least ``shots + queries`` samples take part. Classes
    are drawn without replacement per episode, rows without replacement per class.

    Args:
        y: ``(N,)`` int labels of the split the episodes come from.
        ways: Classes per episode.
        shots: Support samples per class (the largest K).
        queries: Query samples per class.
        episodes: Number of episodes E.
        seed: Seed of the draw.

    Returns:
        The :class:`Episodes`.

    Raises:
        NotApplicable: when fewer than ``ways`` classes have enough samples.
    """
    y = np.asarray(y)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    need = shots + queries
    eligible = np.flatnonzero(counts >= need)
    if len(eligible) < ways:
        raise NotApplicable(
            f"few_shot: {ways}-way episodes with {shots} shots + {queries} queries need "
            f"{ways} classes with >= {need} samples; only {len(eligible)} of {len(classes)} have them"
        )
    by_class = np.argsort(inverse, kind="stable")  # rows grouped by class, in row order
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rng = np.random.default_rng(seed)
    ep_classes = np.empty((episodes, ways), dtype=np.int64)
    rows = np.empty((episodes, ways, need), dtype=np.int64)
    for e in range(episodes):
        chosen = rng.choice(eligible, ways, replace=False)
        ep_classes[e] = chosen
        for w, c in enumerate(chosen):
            rows[e, w] = by_class[starts[c] + rng.choice(counts[c], need, replace=False)]
    return Episodes(classes[ep_classes].astype(np.int64), rows[..., :shots], rows[..., shots:])


def centroid_accuracy(support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """Per-episode accuracy of the cosine nearest-centroid rule.

    Args:
        support: ``(E, W, K, D)`` l2-normalised support features, class ``w`` in row ``w``.
        query: ``(E, W, Q, D)`` l2-normalised query features of class ``w`` in row ``w``.

    Returns:
        ``(E,)`` float64 fraction of queries whose most cosine-similar class
        mean is their own (ties go to the lower episode label).
    """
    e, w, q, d = query.shape
    protos = F.normalize(support.mean(dim=2), dim=-1)  # (E, W, D)
    sims = torch.bmm(query.reshape(e, w * q, d), protos.transpose(1, 2))  # (E, W*Q, W)
    truth = torch.arange(w).repeat_interleave(q)
    return (sims.argmax(dim=2) == truth).double().mean(dim=1)


def span_coordinates(
    support: torch.Tensor, query: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact coordinates of support and query rows in an orthonormal basis of each support span.

    With the support Gram matrix ``X X^T = U diag(lam) U^T`` the basis is
    ``V = X^T U diag(lam)^(-1/2)``, so the support rows become ``U diag(lam)^(1/2)``
    and the queries ``Q X^T U diag(lam)^(-1/2)``. A linear model with an L2
    penalty only ever uses this span, so nothing is lost. Directions with
    ``lam <= RANK_TOL * max(lam)`` get coordinate 0. The Gram matrix and its
    eigendecomposition are float64; ``Q X^T`` is formed in the inputs' dtype.

    Args:
        support: ``(B, n, D)`` support features.
        query: ``(B, m, D)`` query features.

    Returns:
        ``(zs, zq)``: ``(B, n, n)`` and ``(B, m, n)`` float64; the columns of
        ``zs`` are orthogonal.
    """
    sup = support.to(torch.float64)
    lam, u = torch.linalg.eigh(torch.bmm(sup, sup.transpose(1, 2)))
    keep = lam > RANK_TOL * lam[:, -1:].clamp_min(1e-300)
    root = torch.where(keep, lam.clamp_min(0.0).sqrt(), torch.zeros_like(lam))
    inv_root = torch.where(keep, 1.0 / root.clamp_min(1e-300), torch.zeros_like(lam))
    qs = torch.bmm(query, support.transpose(1, 2)).to(torch.float64)
    return u * root[:, None, :], torch.bmm(qs, u) * inv_root[:, None, :]


def fit_logistic_batched(
    z: torch.Tensor, y: torch.Tensor, num_classes: int, wd: float, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent softmax regressions ``mean CE + wd/2 ||W||^2``, one per batch entry.

    One full-batch L-BFGS (strong Wolfe) minimises the sum of the B separate
    objectives, whose minimiser is every entry's own minimiser. Features whose
    columns are orthogonal (:func:`span_coordinates`) are whitened by
    ``s = (lam + delta)^(-1/2)``, ``delta = max(PRECOND_DAMPING * mean(lam), wd)``
    as in :class:`protocols.linear.Rotated`: a change of variables, not of the
    objective. No penalty on the bias.

    Args:
        z: ``(B, n, r)`` float64 features with orthogonal columns.
        y: ``(B, n)`` int64 labels in ``[0, C)``.
        num_classes: C.
        wd: Weight decay (L2 coefficient on W).
        max_iter: Maximum L-BFGS iterations.

    Returns:
        ``(W, b)``: ``(B, r, C)`` and ``(B, C)`` float64.
    """
    bsz, n, r = z.shape
    lam = (z * z).sum(dim=1) / n  # (B, r): diagonal second moments
    delta = torch.clamp((PRECOND_DAMPING * lam.mean(dim=1, keepdim=True)).clamp_min(wd), min=1e-12)
    s = (lam + delta).rsqrt()  # (B, r)
    xs = z * s[:, None, :]
    penalty = (s * s)[:, :, None]  # ||W||^2 = sum_i s_i^2 ||V_i||^2
    onehot = F.one_hot(y, num_classes).to(torch.float64)
    v = torch.zeros(bsz, r, num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(bsz, num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [v, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        with torch.no_grad():
            logp = torch.log_softmax(torch.bmm(xs, v) + b[:, None, :], dim=2)
            pv = penalty * v
            loss = -(logp * onehot).sum() / n + 0.5 * wd * (pv * v).sum()
            g = (logp.exp() - onehot) / n  # (B, n, C)
            v.grad = torch.bmm(xs.transpose(1, 2), g) + wd * pv
            b.grad = g.sum(dim=1)
        return loss

    opt.step(closure)
    return v.detach() * s[:, :, None], b.detach()


def episode_coordinates(support: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`span_coordinates` of episodes ``(E, W, K, D)`` and ``(E, W, Q, D)``.

    Returns:
        ``(zs, zq)``: ``(E, W*K, W*K)`` and ``(E, W*Q, W*K)`` float64, rows in class order.
    """
    e, w, k, d = support.shape
    return span_coordinates(support.reshape(e, w * k, d), query.reshape(e, -1, d))


def logreg_from_coordinates(
    zs: torch.Tensor, zq: torch.Tensor, ways: int, wd: float, max_iter: int = 100
) -> torch.Tensor:
    """Per-episode accuracy of softmax regressions fitted in span coordinates.

    Args:
        zs: ``(E, W*K, r)`` support coordinates, ``K`` rows per class in class order.
        zq: ``(E, W*Q, r)`` query coordinates, ``Q`` rows per class in class order.
        ways: W.
        wd: Weight decay of ``mean CE + wd/2 ||W||^2``.
        max_iter: Maximum L-BFGS iterations.

    Returns:
        ``(E,)`` float64 fraction of correctly labelled queries.
    """
    e, n, _ = zs.shape
    ys = torch.arange(ways).repeat_interleave(n // ways).expand(e, -1)
    with single_thread():
        weights, bias = fit_logistic_batched(zs, ys, ways, wd, max_iter)
        pred = (torch.bmm(zq, weights) + bias[:, None, :]).argmax(dim=2)
    return (pred == torch.arange(ways).repeat_interleave(zq.shape[1] // ways)).double().mean(dim=1)


def logreg_accuracy(
    support: torch.Tensor, query: torch.Tensor, wd: float, max_iter: int = 100
) -> torch.Tensor:
    """Per-episode accuracy of a softmax regression fitted on each episode's support set.

    Args:
        support: ``(E, W, K, D)`` features (l2-normalised by the caller).
        query: ``(E, W, Q, D)`` features.
        wd: Weight decay of ``mean CE + wd/2 ||W||^2``.
        max_iter: Maximum L-BFGS iterations.

    Returns:
        ``(E,)`` float64 fraction of correctly labelled queries.
    """
    zs, zq = episode_coordinates(support, query)
    return logreg_from_coordinates(zs, zq, support.shape[1], wd, max_iter)


#: Suffix of the per-run 95% half-widths. Not ``_ci95``: the leaderboard already
#: writes ``<protocol>.<metric>_ci95`` (over seeds) and would overwrite it.
CI_SUFFIX = "_episode_ci95"


@dataclass
class FewShot(Protocol):
    """N-way K-shot episodes: nearest cosine centroid and per-episode logistic regression.

    Episodes come from ``split``: ``test`` (the default: in-domain, held out
    from any probe fitting), ``train``, or ``transfer`` (``features.transfer``,
    another dataset; see :class:`FewShotTransfer`); the string ``source`` in the
    result says which. For each K in ``shots``: ``acc_<K>shot_centroid`` and
    ``acc_<K>shot_logreg`` (mean fractions over episodes) and their 95%
    half-widths ``acc_<K>shot_<clf>_episode_ci95``. The main metric is
    ``acc_5shot_centroid`` (or the largest K's when 5 is not in ``shots``).
    The artifacts are the episode list and the per-episode accuracies.

    Attributes:
        ways: Classes per episode (N).
        shots: Support samples per class (each K).
        queries: Query samples per class.
        episodes: Episodes (E), shared by every K.
        wd: Weight decay of the logistic regression, in ``mean CE + wd/2 ||W||^2``
            on unit-norm features (sklearn's ``C = 1 / (wd * ways * K)``).
        max_iter: Maximum L-BFGS iterations (one batched solve per K).
        split: ``"test"``, ``"train"`` or ``"transfer"``: where episodes come from.
    """

    name: ClassVar[str] = "few_shot"
    version: ClassVar[str] = "3"
    requires: ClassVar[frozenset[str]] = frozenset({"labels"})
    metrics: ClassVar[dict[str, Direction]] = {
        "acc_1shot_centroid": "higher",
        "acc_1shot_logreg": "higher",
        "acc_5shot_centroid": "higher",
        "acc_5shot_logreg": "higher",
    }
    main_metric: ClassVar[str] = "acc_5shot_centroid"

    ways: int = 5
    shots: tuple[int, ...] = (1, 5)
    queries: int = 15
    episodes: int = 600
    wd: float = 1e-2
    max_iter: int = 100
    split: str = "test"

    def __post_init__(self) -> None:
        self.shots = tuple(sorted({int(k) for k in self.shots}))
        if not self.shots or self.shots[0] < 1:
            raise SslbenchError(f"few_shot: shots must be non-empty and >= 1, got {self.shots}")
        if self.ways < 2 or self.queries < 1 or self.episodes < 2:
            raise SslbenchError(
                f"few_shot: need ways >= 2, queries >= 1, episodes >= 2; got ways={self.ways}, "
                f"queries={self.queries}, episodes={self.episodes}"
            )
        if not self.wd > 0 or self.max_iter < 1:
            raise SslbenchError(f"few_shot: need wd > 0 and max_iter >= 1, got wd={self.wd}, max_iter={self.max_iter}")
        if self.split not in ("train", "test", "transfer"):
            raise SslbenchError(f"{self.name}: split must be 'train', 'test' or 'transfer', got {self.split!r}")

    def meta(self) -> MetricMeta:
        """The metric names follow ``shots``; the main metric is the 5-shot centroid (else the largest K);
        each ``*_episode_ci95`` is the interval (over episodes) of its accuracy."""
        accs = [f"acc_{k}shot_{c}" for k in self.shots for c in ("centroid", "logreg")]
        return MetricMeta({a: "higher" for a in accs}, f"acc_{5 if 5 in self.shots else self.shots[-1]}shot_centroid",
                          intervals={f"{a}{CI_SUFFIX}": a for a in accs})

    def _source(self, features: FeatureSet) -> tuple[np.ndarray, np.ndarray, str]:
        """The l2-normalised rows, labels and name of the split the episodes come from."""
        if self.split != "transfer":
            split = features.train if self.split == "train" else features.test
            return split.unit(), split.y, self.split
        if features.transfer is None:
            raise NotApplicable(
                f"{self.name}: split='transfer' but run {features.run or '?'} has no transfer split "
                "(set a transfer dataset: `transfer = \"digits\"` under [run])"
            )
        return features.transfer.unit(), features.transfer.y, "transfer"

    def evaluate(self, features: FeatureSet, seed: int) -> Evaluation:
        """Mean episode accuracies (fractions) and their 95% half-widths; see the class docstring."""
        x, y, source = self._source(features)
        eps = sample_episodes(y, self.ways, self.shots[-1], self.queries, self.episodes, seed)
        with single_thread():  # every op is small (at most CHUNK episodes)
            acc = self._accuracies(torch.from_numpy(x), eps)
        out: dict[str, float | str] = {}
        for key, a in acc.items():
            out[f"acc_{key}"], out[f"acc_{key}{CI_SUFFIX}"] = normal_ci95(a)
        out["source"] = source
        artifacts = {
            "episode_classes": eps.classes,
            "episode_support": eps.support,
            "episode_query": eps.query,
            **{f"episode_acc_{key}": a for key, a in acc.items()},
        }
        return Evaluation(out, artifacts)

    def _accuracies(self, xn: torch.Tensor, eps: Episodes) -> dict[str, np.ndarray]:
        """Per-episode accuracies ``{"<K>shot_<clf>": (E,)}`` on normalised features ``xn``."""
        acc = {f"{k}shot_{c}": np.empty(self.episodes) for k in self.shots for c in ("centroid", "logreg")}
        coords: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {k: [] for k in self.shots}
        for lo in range(0, self.episodes, CHUNK):  # gathers of (CHUNK, W, Q, D) bound the memory
            sl = slice(lo, lo + CHUNK)
            sup = xn[torch.from_numpy(eps.support[sl])]  # (B, W, K_max, D)
            qry = xn[torch.from_numpy(eps.query[sl])]  # (B, W, Q, D)
            for k in self.shots:
                acc[f"{k}shot_centroid"][sl] = centroid_accuracy(sup[:, :, :k], qry).numpy()
                coords[k].append(episode_coordinates(sup[:, :, :k], qry))
        for k in self.shots:  # one batched solve over all episodes
            zs, zq = (torch.cat(parts) for parts in zip(*coords.pop(k)))
            acc[f"{k}shot_logreg"] = logreg_from_coordinates(zs, zq, self.ways, self.wd, self.max_iter).numpy()
        return acc


@dataclass
class FewShotTransfer(FewShot):
    """:class:`FewShot` on a transfer set: episodes from another dataset's classes.

    ``sslbench run`` extracts the transfer set named by the run's ``transfer``
    (``digits`` for the Fashion-MNIST presets, resized to 28x28; offline) and
    ``sslbench eval --features`` takes ``transfer_x``/``transfer_y``. Same metrics
    and parameters as ``few_shot``.
    """

    name: ClassVar[str] = "few_shot_transfer"
    version: ClassVar[str] = "2"
    requires: ClassVar[frozenset[str]] = frozenset({"labels", "transfer"})

    split: str = "transfer"
