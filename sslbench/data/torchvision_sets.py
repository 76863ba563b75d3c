"""CIFAR-10, CIFAR-100 (Krizhevsky 2009) and STL-10 (Coates et al. 2011) via torchvision.

The data live under ``root = data_root or $SSLBENCH_DATA or the cache dir``
(``$XDG_CACHE_HOME/sslbench``, else ``~/.cache/sslbench``) in torchvision's own
layout (``root/cifar-10-batches-py``, ``root/cifar-100-python``,
``root/stl10_binary``). Loading tries ``download=False`` first, then
``download=True`` unless ``SSLBENCH_NO_DOWNLOAD=1``. STL-10 uses its labelled
splits only (5000 train / 8000 test, 96 px); the 100k unlabelled images are not
loaded. CIFAR-100 uses the 100 fine labels.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslbench.data.common import (
    DATA_ENV,
    NO_DOWNLOAD_ENV,
    cache_dir,
    data_root_from,
    downloads_enabled,
    make_image_data,
    one_line,
)
from sslbench.errors import SslbenchError
from sslbench.types import ImageData

DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TorchvisionSpec:
    """How to build one torchvision dataset.

    Attributes:
        name: Registry name.
        title: Human name for messages.
        cls: Class name in ``torchvision.datasets``.
        folder: Folder torchvision expects under the root.
        archive: What to unpack there (for the error message).
        size: Download size, for the error message.
        num_classes: Number of classes.
        train_kwargs: Keyword arguments selecting the train split.
        test_kwargs: Keyword arguments selecting the test split.
    """

    name: str
    title: str
    cls: str
    folder: str
    archive: str
    size: str
    num_classes: int
    train_kwargs: tuple[tuple[str, Any], ...]
    test_kwargs: tuple[tuple[str, Any], ...]


CIFAR10 = TorchvisionSpec(
    "cifar10", "CIFAR-10", "CIFAR10", "cifar-10-batches-py",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "170 MB", 10,
    (("train", True),), (("train", False),),
)
CIFAR100 = TorchvisionSpec(
    "cifar100", "CIFAR-100", "CIFAR100", "cifar-100-python",
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "170 MB", 100,
    (("train", True),), (("train", False),),
)
STL10 = TorchvisionSpec(
    "stl10", "STL-10", "STL10", "stl10_binary",
    "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "2.6 GB", 10,
    (("split", "train"),), (("split", "test"),),
)


def _build(spec: TorchvisionSpec, root: Path, kwargs: dict[str, Any], download: bool) -> Any:
    from torchvision import datasets

    cls = getattr(datasets, spec.cls)
    if not download:
        return cls(str(root), download=False, **kwargs)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return cls(str(root), download=True, **kwargs)
    finally:
        socket.setdefaulttimeout(old)


def _to_tensors(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 3, H, W)`` uint8 images and ``(N,)`` int64 labels of a torchvision dataset."""
    data = np.asarray(ds.data)
    labels = np.asarray(ds.targets if hasattr(ds, "targets") else ds.labels, dtype=np.int64)
    if data.ndim == 4 and data.shape[-1] == 3 and data.shape[1] != 3:
        data = data.transpose(0, 3, 1, 2)  # CIFAR stores NHWC; STL-10 is already NCHW
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.uint8)), torch.from_numpy(labels)


def load_torchvision(spec: TorchvisionSpec, data_root: str | None = None) -> ImageData:
    """Load the train and test split of a torchvision dataset as uint8 tensors.

    Args:
        spec: Which dataset.
        data_root: Root directory; ``$SSLBENCH_DATA`` or the cache dir when ``None``.

    Returns:
        ImageData with ``(N, 3, H, W)`` uint8 images and int64 labels;
        ``source`` is the root used.

    Raises:
        SslbenchError: saying how to get the data when it is missing and cannot
            be downloaded.
    """
    root, origin = data_root_from(data_root)
    if root is None:
        root, origin = cache_dir(), "cache dir"
    attempts = []
    splits = []
    for kwargs in (dict(spec.train_kwargs), dict(spec.test_kwargs)):
        try:
            ds = _build(spec, root, kwargs, download=False)
        except Exception as e:  # noqa: BLE001 - torchvision raises RuntimeError, OSError, ...
            attempts.append(f"{origin} {root}: {one_line(e)}")
            if not downloads_enabled():
                attempts.append(f"download disabled by ${NO_DOWNLOAD_ENV}")
                break
            try:
                ds = _build(spec, root, kwargs, download=True)
            except Exception as e2:  # noqa: BLE001 - any network failure
                attempts.append(f"download into {root} failed: {one_line(e2)}")
                break
        splits.append(_to_tensors(ds))
    if len(splits) < 2:
        raise SslbenchError(
            f"{spec.title} not found. Get it one of two ways: "
            f"(1) --data-root DIR or {DATA_ENV}=DIR where DIR/{spec.folder} is the unpacked "
            f"{spec.archive}; (2) let torchvision download it ({spec.size}, needs internet; "
            f"unset {NO_DOWNLOAD_ENV}) into {root}. Tried: " + "; ".join(attempts) + "."
        )
    (train_x, train_y), (test_x, test_y) = splits
    return make_image_data(
        spec.name, train_x, train_y, test_x, test_y, num_classes=spec.num_classes, source=str(root)
    )


def load_cifar10(data_root: str | None = None) -> ImageData:
    """CIFAR-10: train ``(50000, 3, 32, 32)``, test ``(10000, 3, 32, 32)`` uint8, 10 classes."""
    return load_torchvision(CIFAR10, data_root)


def load_cifar100(data_root: str | None = None) -> ImageData:
    """CIFAR-100 (fine labels): train ``(50000, 3, 32, 32)``, test ``(10000, 3, 32, 32)``, 100 classes."""
    return load_torchvision(CIFAR100, data_root)


def load_stl10(data_root: str | None = None) -> ImageData:
    """STL-10 labelled splits: train ``(5000, 3, 96, 96)``, test ``(8000, 3, 96, 96)``, 10 classes."""
    return load_torchvision(STL10, data_root)
