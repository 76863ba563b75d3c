"""Weighted cosine k-nearest-neighbour classification on frozen features.

The protocol of InstDisc (Wu et al. 2018, "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination") as used by DINO (Caron et al. 2021):
l2-normalised features, cosine similarity, and each of the top-k neighbours
votes for its class with weight ``exp(sim / T)``. One exact faiss
``IndexFlatIP`` search at the largest k serves every k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import faiss
import numpy as np

from sslbench.embedding_stats import l2_normalize
from sslbench.errors import SslbenchError
from sslbench.protocol import Evaluation, Protocol
from sslbench.records import MetricMeta
from sslbench.types import Direction, FeatureSet


def gpu_available() -> bool:
    """Whether this faiss build can search on a GPU (faiss-gpu installed and a GPU visible)."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _index(dim: int, metric: str, index: str, nlist: int, device: str) -> faiss.Index:
    """An empty faiss index: exact (``flat``) or inverted-file (``ivf``), on CPU or GPU."""
    flat = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
    if index == "ivf":
        kind = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        flat = faiss.IndexIVFFlat(flat, dim, nlist, kind)
    if device == "gpu" or (device == "auto" and gpu_available()):
        if not gpu_available():
            raise SslbenchError("knn: device='gpu' but this faiss has no GPU support or sees no GPU "
                                "(install faiss-gpu, or use device='auto' or 'cpu')")
        flat = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, flat)
    return flat


#: Queries per faiss search call: bounds the (chunk, k) result buffers for large query sets.
QUERY_CHUNK = 16384


def neighbors(
    train_x: np.ndarray,
    test_x: np.ndarray,
    k: int,
    metric: str = "cosine",
    index: str = "flat",
    nlist: int = 1024,
    nprobe: int = 16,
    device: str = "auto",
    seed: int = 0,
    normalized: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k neighbours of each test row among the train rows, as similarities (higher is closer).

    Args:
        train_x: ``(N_train, D)`` features.
        test_x: ``(N_test, D)`` features.
        k: Neighbours per query; clipped to ``N_train``.
        metric: ``cosine`` (rows l2-normalised, inner product) or ``l2`` (raw rows,
            similarity ``-||a - b||^2``).
        index: ``flat`` (exact) or ``ivf`` (approximate: ``nlist`` k-means cells trained on
            at most 256 rows per cell, ``nprobe`` cells searched per query).
        nlist: IVF cells (clipped to ``N_train // 39``, faiss' minimum training size).
        nprobe: IVF cells visited per query.
        device: ``auto`` (GPU when faiss-gpu sees one), ``cpu`` or ``gpu``.
        seed: Seed of the IVF training subsample.
        normalized: The rows are already l2-normalised (a feature set's shared
            :meth:`~sslbench.types.Split.unit` rows): cosine skips its normalisation.

    Returns:
        ``(sims, idx)``, both ``(N_test, min(k, N_train))``, sorted by decreasing
        similarity; ``idx`` indexes ``train_x``.
    """
    test_n = _prepare(test_x, metric, normalized)
    n, dim = train_x.shape
    k = min(int(k), n)
    if index == "flat" and n * dim * 4 > SHARD_BYTES:
        return _sharded_flat(train_x, test_n, k, metric, device, normalized)
    train_n = _prepare(train_x, metric, normalized)
    nlist = max(1, min(nlist, n // 39))
    idx_obj = _index(dim, metric, index, nlist, device)
    if index == "ivf":
        rng = np.random.default_rng(seed)
        n_fit = min(n, 256 * nlist)
        idx_obj.train(train_n[np.sort(rng.choice(n, n_fit, replace=False))])
        faiss.extract_index_ivf(idx_obj).nprobe = nprobe
    idx_obj.add(train_n)
    return _search(idx_obj, test_n, k, metric)


def _prepare(x: np.ndarray, metric: str, normalized: bool = False) -> np.ndarray:
    """Rows as faiss wants them: l2-normalised for cosine (unless they already are), else contiguous float32."""
    if metric == "cosine" and not normalized:
        return l2_normalize(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def _search(index: faiss.Index, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Search in query chunks; similarities are cosines, or minus squared distances for l2."""
    sims, idx = [], []
    for lo in range(0, len(queries), QUERY_CHUNK):
        s, i = index.search(queries[lo : lo + QUERY_CHUNK], k)
        sims.append(s if metric == "cosine" else -s)  # IndexFlatL2 returns squared distances
        idx.append(i)
    return np.concatenate(sims), np.concatenate(idx)


#: Train matrices larger than this (float32 bytes) are searched exactly in shards of this size,
#: so memory holds one shard rather than a normalised copy of the whole matrix plus faiss' copy.
SHARD_BYTES = 2**28


def _sharded_flat(
    train_x: np.ndarray, test_n: np.ndarray, k: int, metric: str, device: str, normalized: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over train shards merged with a faiss ``ResultHeap`` (ties at rank k may reorder)."""
    n, dim = train_x.shape
    rows = max(k, SHARD_BYTES // (4 * dim))
    heap = faiss.ResultHeap(len(test_n), k, keep_max=True)
    for lo in range(0, n, rows):
        shard = _prepare(train_x[lo : lo + rows], metric, normalized)
        index = _index(dim, metric, "flat", 1, device)
        index.add(shard)
        s, i = _search(index, test_n, min(k, len(shard)), metric)
        if s.shape[1] < k:  # a short last shard: pad with never-chosen entries
            pad = k - s.shape[1]
            s = np.hstack([s, np.full((len(s), pad), -np.inf, dtype=np.float32)])
            i = np.hstack([i, np.full((len(i), pad), -1, dtype=np.int64)])
        heap.add_result(np.ascontiguousarray(s, dtype=np.float32), np.ascontiguousarray(i + lo, dtype=np.int64))
    heap.finalize()
    return heap.D, heap.I


def cosine_neighbors(train_x: np.ndarray, test_x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k neighbours on the CPU: :func:`neighbors` with its defaults."""
    return neighbors(train_x, test_x, k, device="cpu")


def weighted_vote(
    sims: np.ndarray,
    neighbor_labels: np.ndarray,
    k: int,
    temperature: float,
    num_classes: int,
) -> np.ndarray:
    """Class predictions from the top-k neighbours, each voting ``exp(sim / T)``.

    Args:
        sims: ``(N_test, K)`` cosine similarities sorted in decreasing order,
            ``K >= k``.
        neighbor_labels: ``(N_test, K)`` int labels of those neighbours.
        k: How many of the leading columns vote.
        temperature: T in ``exp(sim / T)``.
        num_classes: C; labels are in ``[0, C)``.

    Returns:
        ``(N_test,)`` int64 predicted classes (ties go to the lowest class id).
    """
    s = sims[:, :k].astype(np.float64)
    lab = neighbor_labels[:, :k].astype(np.int64)
    # Subtracting each row's largest similarity leaves the argmax unchanged and
    # keeps exp() finite for any temperature.
    w = np.exp((s - s[:, :1]) / temperature)
    n = s.shape[0]
    flat = (np.arange(n, dtype=np.int64)[:, None] * num_classes + lab).ravel()
    votes = np.bincount(flat, weights=w.ravel(), minlength=n * num_classes)
    return votes.reshape(n, num_classes).argmax(axis=1)


def knn_predict(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    ks: Sequence[int],
    temperature: float,
    num_classes: int | None = None,
    **search: Any,
) -> dict[int, np.ndarray]:
    """Weighted cosine kNN predictions for several k from one search at ``max(ks)``.

    Args:
        train_x: ``(N_train, D)`` features.
        train_y: ``(N_train,)`` int labels in ``[0, C)``.
        test_x: ``(N_test, D)`` features.
        ks: Neighbour counts; each is clipped to ``N_train``.
        temperature: T in ``exp(sim / T)``.
        num_classes: C; defaults to ``max(train_y) + 1``.
        **search: Options of :func:`neighbors` (metric, index, nlist, nprobe, device, seed).

    Returns:
        ``{k: (N_test,) int64 predictions}`` keyed by the requested k.
    """
    train_y = np.asarray(train_y, dtype=np.int64)
    if num_classes is None:
        num_classes = int(train_y.max()) + 1
    sims, idx = neighbors(train_x, test_x, max(ks), **search)
    neighbor_labels = train_y[idx]
    return {
        k: weighted_vote(sims, neighbor_labels, min(k, idx.shape[1]), temperature, num_classes)
        for k in ks
    }


def knn_top1(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    ks: Sequence[int],
    temperature: float,
    num_classes: int | None = None,
    **search: Any,
) -> dict[int, float]:
    """Top-1 accuracy of the weighted cosine kNN classifier for several k.

    Args:
        train_x: ``(N_train, D)`` features.
        train_y: ``(N_train,)`` int labels in ``[0, C)``.
        test_x: ``(N_test, D)`` features.
        test_y: ``(N_test,)`` int labels.
        ks: Neighbour counts; each is clipped to ``N_train``.
        temperature: T in ``exp(sim / T)``.
        num_classes: C; defaults to ``max label + 1``.
        **search: Options of :func:`neighbors`.

    Returns:
        ``{k: accuracy}`` keyed by the requested k, accuracies in ``[0, 1]``.
    """
    test_y = np.asarray(test_y, dtype=np.int64)
    if num_classes is None:
        num_classes = int(max(np.max(train_y), test_y.max())) + 1
    preds = knn_predict(train_x, train_y, test_x, ks, temperature, num_classes, **search)
    return {k: float((p == test_y).mean()) for k, p in preds.items()}


@dataclass
class KNN(Protocol):
    """Weighted kNN (InstDisc/DINO): cosine on l2-normalised backbone features by default.

    ``top1`` is the main score at ``k``; ``top1_k<e>`` for each ``e`` in
    ``extra_k``. A k larger than the train set is clipped to its size. Every
    neighbour votes ``exp(sim / T)`` with ``sim`` the cosine, or ``-||a - b||^2``
    for ``metric="l2"`` (then T is on the scale of squared distances; a large T
    gives plain majority votes).

    Attributes:
        k: Neighbours for the main score.
        temperature: T in the vote weight ``exp(sim / T)``.
        extra_k: Further neighbour counts reported as ``top1_k<e>``.
        layer: ``backbone`` (the standard) or ``projector`` (the method's
            projector outputs, ``features.train.z``/``features.test.z``).
        metric: ``cosine`` or ``l2``.
        index: ``flat`` (exact, the default) or ``ivf`` (approximate; for millions of rows).
        nlist: IVF cells.
        nprobe: IVF cells searched per query.
        device: faiss device: ``auto`` (a GPU when faiss-gpu sees one), ``cpu`` or ``gpu``;
            exact results do not depend on it beyond float rounding.
    """

    name: ClassVar[str] = "knn"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"labels"})
    metrics: ClassVar[dict[str, Direction]] = {
        "top1": "higher",
        "top1_k1": "higher",
        "top1_k5": "higher",
        "top1_k200": "higher",
    }
    main_metric: ClassVar[str] = "top1"

    k: int = 20
    temperature: float = 0.07
    extra_k: tuple[int, ...] = (1, 5, 200)
    layer: str = "backbone"
    metric: str = "cosine"
    index: str = "flat"
    nlist: int = 1024
    nprobe: int = 16
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.layer not in ("backbone", "projector"):
            raise SslbenchError(f"knn: layer must be 'backbone' or 'projector', got {self.layer!r}")
        self.extra_k = tuple(int(e) for e in self.extra_k)
        for field, value, allowed in (("metric", self.metric, ("cosine", "l2")), ("index", self.index, ("flat", "ivf")),
                                      ("device", self.device, ("auto", "cpu", "gpu"))):
            if value not in allowed:
                raise SslbenchError(f"knn: {field} must be one of {', '.join(allowed)}, got {value!r}")
        if self.nlist < 1 or self.nprobe < 1:
            raise SslbenchError(f"knn: nlist and nprobe must be >= 1, got {self.nlist} and {self.nprobe}")
        if self.k < 1 or any(e < 1 for e in self.extra_k):
            raise SslbenchError(f"knn: k and extra_k must be >= 1, got k={self.k}, extra_k={self.extra_k}")
        if not self.temperature > 0:
            raise SslbenchError(f"knn: temperature must be > 0, got {self.temperature}")

    def meta(self) -> MetricMeta:
        """The metric names follow ``extra_k``; the class attribute lists the defaults."""
        return MetricMeta({"top1": "higher", **{f"top1_k{e}": "higher" for e in self.extra_k}}, "top1")

    def evaluate(self, features: FeatureSet, seed: int) -> Evaluation:
        """Top-1 accuracies (fractions) of the weighted kNN; ``seed`` only seeds the IVF training subsample."""
        ks = sorted({self.k, *self.extra_k})
        cosine = self.metric == "cosine"  # normalised rows are shared with the other protocols
        train_x = features.train.unit(self.layer) if cosine else features.train.layer(self.layer)
        test_x = features.test.unit(self.layer) if cosine else features.test.layer(self.layer)
        if train_x is None or test_x is None:
            raise SslbenchError(f"knn: layer='projector' but run {features.run or '?'} has no projector outputs")
        acc = knn_top1(
            train_x,
            features.train.y,
            test_x,
            features.test.y,
            ks,
            self.temperature,
            features.num_classes,
            metric=self.metric,
            index=self.index,
            nlist=self.nlist,
            nprobe=self.nprobe,
            device=self.device,
            seed=seed,
            normalized=cosine,
        )
        return Evaluation({"top1": acc[self.k], **{f"top1_k{e}": acc[e] for e in self.extra_k}})
