"""Synthetic feature sets with known structure, for protocol tests and plugin authors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sslbench.types import FeatureSet, PositivePairs, Split


def make_features(
    seed: int = 0,
    *,
    num_classes: int = 10,
    n_train: int = 600,
    n_test: int = 300,
    dim: int = 32,
    z_dim: int = 16,
    noise: float = 0.3,
    transfer: bool = False,
) -> FeatureSet:
    """Small synthetic features with known structure: one Gaussian blob per class.

    Class means are orthogonal with norm 6 and each sample adds isotropic noise
    of std ``noise`` per dimension, so with the default noise the classes are
    far apart (every sensible classifier is exact, on any subsample). Classes
    are balanced (``n_train // num_classes`` rows each, 60 by default: enough
    for 50-shot draws) and rows are in random order. Both splits carry projector
    outputs ``z`` (a fixed random linear map of the features plus noise) and,
    with ``transfer``, a transfer split of 200 rows of 5 further classes.

    Args:
        seed: Seed of every random draw.
        num_classes: Number of classes C (at most ``dim``, or ``dim - 5`` with ``transfer``).
        n_train: Train rows.
        n_test: Test rows.
        dim: Feature dimension D.
        z_dim: Projector output dimension.
        noise: Per-dimension noise std.
        transfer: Add a transfer split of 5 unseen classes.

    Returns:
        The :class:`~sslbench.types.FeatureSet` (run ``"synthetic-<seed>"``).
    """
    n_cls_total = num_classes + (5 if transfer else 0)
    if n_cls_total > dim:
        raise ValueError(f"make_features: {n_cls_total} orthogonal class means need dim >= {n_cls_total}, got {dim}")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    means = 6.0 * q.T[:n_cls_total]
    proj = rng.standard_normal((dim, z_dim)) / math.sqrt(dim)

    def draw(n: int, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.resize(classes, n)).astype(np.int64)
        x = means[y] + noise * rng.standard_normal((n, dim))
        return x.astype(np.float32), y

    def project(x: np.ndarray) -> np.ndarray:
        return (x @ proj + 0.05 * rng.standard_normal((len(x), z_dim))).astype(np.float32)

    train_x, train_y = draw(n_train, np.arange(num_classes))
    test_x, test_y = draw(n_test, np.arange(num_classes))
    train = Split(train_x, train_y, project(train_x))
    test = Split(test_x, test_y, project(test_x))
    transfer_split = Split(*draw(200, np.arange(num_classes, n_cls_total))) if transfer else None
    return FeatureSet(train, test, transfer_split, run=f"synthetic-{seed}")


def _permute(split: Split, perm: np.ndarray) -> Split:
    return Split(split.x[perm], split.y[perm], None if split.z is None else split.z[perm])


def permute_rows(features: FeatureSet, seed: int) -> FeatureSet:
    """The same features with the rows of each split in a new (seeded) order.

    A split's features, labels and projector outputs move together, and so do the
    four arrays of the positive pairs.
    """
    rng = np.random.default_rng(seed)
    transfer = features.transfer
    pairs = features.pairs
    if pairs is not None:
        perm = rng.permutation(len(pairs.xa))
        pairs = PositivePairs(*(None if a is None else a[perm] for a in (pairs.xa, pairs.xb, pairs.za, pairs.zb)))
    return dataclasses.replace(
        features,
        train=_permute(features.train, rng.permutation(len(features.train.x))),
        test=_permute(features.test, rng.permutation(len(features.test.x))),
        transfer=None if transfer is None else _permute(transfer, rng.permutation(len(transfer.x))),
        pairs=pairs,
    )


def shuffle_labels(features: FeatureSet, seed: int) -> FeatureSet:
    """The same features with the labels of each split shuffled (rows unchanged)."""
    rng = np.random.default_rng(seed)

    def shuffled(split: Split | None) -> Split | None:
        return None if split is None else dataclasses.replace(split, y=rng.permutation(split.y))

    return dataclasses.replace(features, train=shuffled(features.train), test=shuffled(features.test),
                               transfer=shuffled(features.transfer))
