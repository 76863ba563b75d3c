"""Which split a protocol scores on: the test split, or a seeded held-out part of train.

Selecting a recipe, a threshold or a hyperparameter must never look at the test
split. ``--split val`` scores every protocol on a stratified, seeded 20% of the
train split held out from everything the protocol fits (:func:`validation_view`),
and the result records say which split produced them. The test split is then
scored once, with what was chosen.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from sslbench.types import FeatureSet, Split

SplitName = Literal["test", "val"]
SPLITS: tuple[SplitName, ...] = ("test", "val")
#: Share of each train class held out as the validation split.
VAL_FRACTION = 0.2
#: Seed of that draw: fixed, so every run and recipe is validated on the same images.
VAL_SEED = 0


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


def _rows(split: Split, idx: np.ndarray) -> Split:
    return Split(split.x[idx], split.y[idx], None if split.z is None else split.z[idx])


def validation_view(features: FeatureSet, fraction: float = VAL_FRACTION, seed: int = VAL_SEED) -> FeatureSet:
    """The features a ``--split val`` evaluation sees: train without the held-out part, which becomes the test split.

    The positive pairs and multi-view readings, made from test images, are dropped;
    the transfer split (another dataset) is kept.

    Args:
        features: The run's features.
        fraction: Share of each train class held out.
        seed: Seed of the held-out draw.

    Returns:
        A feature set with ``train`` = the fit part and ``test`` = the held-out part.
    """
    fit, held = stratified_split(features.train.y, fraction, seed)
    return dataclasses.replace(features, train=_rows(features.train, fit), test=_rows(features.train, held),
                               pairs=None, views=None)


def for_split(features: FeatureSet, split: SplitName) -> FeatureSet:
    """``features`` as the protocols of a ``split`` evaluation see them."""
    if split == "test":
        return features
    if split == "val":
        return validation_view(features)
    raise ValueError(f"unknown split {split!r}; one of {SPLITS}")
