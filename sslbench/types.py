"""Plain data types shared across layers: images in memory and extracted features."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

Direction = Literal["higher", "lower"]


@dataclass
class ImageData:
    """A labelled image dataset held in memory as uint8 tensors.

    Attributes:
        name: Registry name, e.g. ``"fashion-mnist"``.
        train_images: ``(N_train, C, H, W)`` uint8.
        train_labels: ``(N_train,)`` int64 in ``[0, num_classes)``.
        test_images: ``(N_test, C, H, W)`` uint8.
        test_labels: ``(N_test,)`` int64.
        num_classes: Number of classes.
        mean: Per-channel mean of the train images in ``[0, 1]`` scale.
        std: Per-channel std of the train images in ``[0, 1]`` scale.
        fingerprint: sha256 hex of the decoded arrays and labels (not of files).
        source: Where the data was read from (a path, or ``"sklearn"``).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fingerprint: str
    source: str

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])


@dataclass
class FeatureSet:
    """Frozen features of one encoder on the splits of one dataset.

    Attributes:
        train_x: ``(N_train, D)`` float32 backbone features.
        train_y: ``(N_train,)`` int64 labels.
        test_x: ``(N_test, D)`` float32.
        test_y: ``(N_test,)`` int64.
        run: Identifier of the run the features belong to, for messages.
        extra: Optional further arrays by name (e.g. ``"test_z"``: projector
            outputs ``(N_test, D_z)``) for protocols that use them.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    run: str = ""
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1
