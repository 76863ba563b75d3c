"""Helpers shared by the dataset loaders: fingerprints, channel statistics, paths.

Every loader returns an :class:`~sslbench.types.ImageData` built by
:func:`make_image_data`, so all datasets get the same checks, the same
statistics and the same fingerprint definition.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from sslbench.errors import SslbenchError
from sslbench.types import ImageData

DATA_ENV = "SSLBENCH_DATA"
"""Environment variable naming the data root when ``--data-root`` is not given."""

NO_DOWNLOAD_ENV = "SSLBENCH_NO_DOWNLOAD"
"""Set to ``1`` to forbid every download (tests, offline clusters)."""

_STATS_CHUNK = 8192  # images per chunk in channel_stats


def _as_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().contiguous().numpy()
    return np.ascontiguousarray(array)


def fingerprint(*arrays: torch.Tensor | np.ndarray) -> str:
    """sha256 over decoded arrays: dtype, shape and bytes of each, in order.

    The fingerprint identifies the *content* a result was computed on, not the
    files it came from (recompressed ``.gz`` files give the same fingerprint).

    Args:
        *arrays: Torch tensors or numpy arrays (any shape and dtype).

    Returns:
        A 64-character hex digest.
    """
    digest = hashlib.sha256()
    for array in arrays:
        a = _as_numpy(array)
        digest.update(f"{a.dtype.str}|{tuple(a.shape)}\n".encode())
        digest.update(a.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def channel_stats(
    images_uint8: torch.Tensor | np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images in ``[0, 1]`` scale.

    Computed exactly from per-channel value histograms (``bincount`` over chunks
    of images), then in float64, so 60000 x 28 x 28 takes a fraction of a second
    and needs no float copy of the data.

    Args:
        images_uint8: ``(N, C, H, W)`` uint8 images.

    Returns:
        ``(mean, std)``, each a tuple of ``C`` floats.
    """
    a = _as_numpy(images_uint8)
    if a.dtype != np.uint8 or a.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) uint8 images, got {a.dtype} {a.shape}")
    n, c = a.shape[:2]
    counts = np.zeros((c, 256), dtype=np.int64)
    for start in range(0, n, _STATS_CHUNK):
        chunk = a[start : start + _STATS_CHUNK]
        for ch in range(c):
            counts[ch] += np.bincount(chunk[:, ch].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    totals = counts.sum(axis=1).astype(np.float64)
    totals[totals == 0] = 1.0
    mean = counts @ values / totals
    var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / totals
    return tuple(float(m) for m in mean), tuple(float(s) for s in np.sqrt(var))


def one_line(error: BaseException) -> str:
    """``"Type: message"`` of an exception on one line, for error summaries."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def cache_dir() -> Path:
    """Download cache: ``$XDG_CACHE_HOME/sslbench`` or ``~/.cache/sslbench``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "sslbench"


def data_root_from(data_root: str | os.PathLike[str] | None) -> tuple[Path | None, str]:
    """The data root to search and where it came from.

    Args:
        data_root: The ``--data-root`` value, or ``None``.

    Returns:
        ``(path, origin)`` with origin ``"--data-root"`` or ``"$SSLBENCH_DATA"``;
        ``(None, "")`` when neither is set.
    """
    if data_root:
        return Path(data_root).expanduser(), "--data-root"
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser(), f"${DATA_ENV}"
    return None, ""


def downloads_enabled() -> bool:
    """False when ``SSLBENCH_NO_DOWNLOAD`` is set to anything but ``""``/``0``."""
    return os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")


def make_image_data(
    name: str,
    train_images: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_images: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    num_classes: int,
    source: str,
) -> ImageData:
    """Check the arrays and wrap them in an ImageData with stats and fingerprint.

    Args:
        name: Dataset name as looked up (e.g. ``"fashion-mnist"``).
        train_images: ``(N_train, C, H, W)`` uint8.
        train_labels: ``(N_train,)`` integer labels in ``[0, num_classes)``.
        test_images: ``(N_test, C, H, W)`` uint8.
        test_labels: ``(N_test,)`` integer labels.
        num_classes: Number of classes.
        source: Where the data was read from.

    Returns:
        The ImageData; ``mean``/``std`` come from the train images, the
        fingerprint covers train images, train labels, test images, test labels.

    Raises:
        SslbenchError: when shapes, dtypes or label ranges are inconsistent.
    """
    tensors = []
    for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        images = torch.as_tensor(images)
        labels = torch.as_tensor(labels).to(torch.int64)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise SslbenchError(
                f"dataset {name!r} ({source}): {split} images must be (N, C, H, W) uint8, "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise SslbenchError(
                f"dataset {name!r} ({source}): {images.shape[0]} {split} images but "
                f"labels of shape {tuple(labels.shape)}"
            )
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise SslbenchError(
                f"dataset {name!r} ({source}): {split} labels outside [0, {num_classes})"
            )
        tensors += [images.contiguous(), labels.contiguous()]
    if tensors[0].shape[1:] != tensors[2].shape[1:]:
        raise SslbenchError(
            f"dataset {name!r} ({source}): train images {tuple(tensors[0].shape[1:])} and "
            f"test images {tuple(tensors[2].shape[1:])} differ in shape"
        )
    mean, std = channel_stats(tensors[0])
    return ImageData(
        name=name,
        train_images=tensors[0],
        train_labels=tensors[1],
        test_images=tensors[2],
        test_labels=tensors[3],
        num_classes=int(num_classes),
        mean=mean,
        std=std,
        fingerprint=fingerprint(*tensors),
        source=str(source),
    )
