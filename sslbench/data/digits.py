"""scikit-learn's handwritten digits: 1797 8x8 grey images, 10 classes, for smoke runs.

The data ship with scikit-learn (``sklearn.datasets.load_digits``, the UCI
"Optical Recognition of Handwritten Digits" test set), so no download is ever
needed. Pixel counts ``0..16`` become uint8 ``round(v * 255 / 16)`` (``8 -> 128``).

There is no official split: a stratified 80/20 split with
``train_test_split(..., test_size=0.2, stratify=y, random_state=0)`` gives 1437
train and 360 test images, the same on every machine and run.
"""

from __future__ import annotations

import numpy as np
import torch

from sslbench.data.common import make_image_data
from sslbench.types import ImageData

NAME = "digits"
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digits(data_root: str | None = None) -> ImageData:
    """Load the digits with the fixed stratified 80/20 split (seed 0).

    Args:
        data_root: Ignored (the data come with scikit-learn); accepted so that
            every dataset loader has the same signature.

    Returns:
        ImageData with train ``(1437, 1, 8, 8)`` and test ``(360, 1, 8, 8)`` uint8
        images, int64 labels in ``0..9`` and ``source="sklearn"``.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=TEST_FRACTION,
        stratify=labels,
        random_state=SPLIT_SEED,
    )
    return make_image_data(
        NAME,
        torch.from_numpy(np.ascontiguousarray(images[train_idx])),
        torch.from_numpy(labels[train_idx]),
        torch.from_numpy(np.ascontiguousarray(images[test_idx])),
        torch.from_numpy(labels[test_idx]),
        num_classes=10,
        source="sklearn",
    )
