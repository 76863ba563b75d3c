"""Plain data types shared across layers: images in memory and extracted features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from sslbench.embedding_stats import l2_normalize

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


@dataclass(frozen=True)
class Split:
    """Frozen features of one split of a dataset.

    Attributes:
        x: ``(N, D)`` float32 backbone features.
        y: ``(N,)`` int64 labels in ``[0, C)``.
        z: ``(N, D_z)`` float32 projector outputs of the same rows, when the encoder
            has a projector (trained methods); ``None`` otherwise.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray | None = None

    def layer(self, name: str) -> np.ndarray | None:
        """The rows of one layer: ``"backbone"`` (``x``) or ``"projector"`` (``z``)."""
        if name not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {name!r}")
        return self.x if name == "backbone" else self.z

    def unit(self, name: str = "backbone") -> np.ndarray | None:
        """The rows of one layer, l2-normalised (float32, :func:`sslbench.embedding_stats.l2_normalize`).

        Computed once per split and layer and shared by every protocol that reads
        normalised rows (kNN, few-shot, low-shot).
        """
        cache = self.__dict__.setdefault("_unit", {})  # frozen: the cache lives beside the fields
        if name not in cache:
            rows = self.layer(name)
            cache[name] = None if rows is None else l2_normalize(rows)
        return cache[name]


#: The two layers a feature set can hold: backbone features and projector outputs.
LAYERS = ("backbone", "projector")


@dataclass(frozen=True)
class PositivePairs:
    """Two augmented views of the same images (made with the method's own augmentations).

    Attributes:
        xa: ``(P, D)`` backbone features of the first views.
        xb: ``(P, D)`` backbone features of the second views, row-aligned with ``xa``.
        za: ``(P, D_z)`` projector outputs of the first views, or ``None``.
        zb: ``(P, D_z)`` projector outputs of the second views, or ``None``.
    """

    xa: np.ndarray
    xb: np.ndarray
    za: np.ndarray | None = None
    zb: np.ndarray | None = None

    def layer(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(a, b)`` views of one layer (``"backbone"`` or ``"projector"``), or ``None``."""
        if name == "backbone":
            return self.xa, self.xb
        return (self.za, self.zb) if self.za is not None and self.zb is not None else None


@dataclass(frozen=True)
class MultiViews:
    """Several augmented views of each of a few images (the LiDAR reading's samples).

    Attributes:
        x: ``(n, q, D)`` backbone features of ``q`` views of each of ``n`` images.
        z: ``(n, q, D_z)`` projector outputs of the same views, or ``None``.
    """

    x: np.ndarray
    z: np.ndarray | None = None

    def layer(self, name: str) -> np.ndarray | None:
        """The views of one layer (``"backbone"`` or ``"projector"``), or ``None``."""
        return self.x if name == "backbone" else self.z


@dataclass(frozen=True)
class FeatureSet:
    """Frozen features of one encoder on the splits of one dataset.

    Protocols read typed fields; flat array names (``train_x``, ``pair_za``, ...)
    exist only where features are stored (the feature cache and ``.npz`` files).

    Attributes:
        train: The train split (protocols fit on it).
        test: The test split (protocols score on it).
        transfer: A split of another dataset, matched to the pretraining images
            (few-shot transfer), or ``None``.
        pairs: Positive pairs of test images (alignment), or ``None``.
        views: Several views of a few test images (LiDAR), or ``None``.
        run: Identifier of the run the features belong to, for messages.
    """

    train: Split
    test: Split
    transfer: Split | None = None
    pairs: PositivePairs | None = None
    views: MultiViews | None = None
    run: str = ""

    @classmethod
    def of(cls, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *,
           train_z: np.ndarray | None = None, test_z: np.ndarray | None = None, run: str = "") -> FeatureSet:
        """Features of the train and test splits from arrays (``(N, D)`` features, ``(N,)`` labels)."""
        return cls(Split(train_x, train_y, train_z), Split(test_x, test_y, test_z), run=run)

    @property
    def num_classes(self) -> int:
        """``1 + `` the largest train or test label."""
        return int(max(self.train.y.max(), self.test.y.max())) + 1

    @property
    def has_projector(self) -> bool:
        """Whether the train and test splits carry projector outputs."""
        return self.train.z is not None and self.test.z is not None

    def where(self) -> str:
        """`` (run NAME)`` for messages, or ``""``."""
        return f" (run {self.run})" if self.run else ""
