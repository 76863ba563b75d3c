"""Datasets as in-memory uint8 tensors: Fashion-MNIST, digits, CIFAR, STL-10, ImageFolder.

Loaders are registered under ``"datasets"`` in :mod:`sslbench.registry` and all
return :class:`~sslbench.types.ImageData`; use :func:`load_dataset` to get one by
name. Where each dataset comes from is documented in its module.
"""

from __future__ import annotations

from sslbench.data.common import cache_dir, channel_stats, fingerprint
from sslbench.errors import SslbenchError
from sslbench.registry import registry
from sslbench.types import ImageData

__all__ = ["load_dataset", "fingerprint", "channel_stats", "cache_dir", "PATH_DATASETS"]

PATH_DATASETS = frozenset({"imagefolder"})
"""Datasets named ``NAME:PATH``; their loader takes the path as first argument."""


def load_dataset(name: str, data_root: str | None = None) -> ImageData:
    """Load a registered dataset by name.

    Args:
        name: A registered name (``"fashion-mnist"``, ``"digits"``, ``"cifar10"``,
            ...) or ``"imagefolder:PATH"`` for a folder of class-labelled images.
        data_root: Where to look for the data files (``--data-root``); loaders
            fall back to ``$SSLBENCH_DATA`` and their own defaults.

    Returns:
        The dataset as uint8 image tensors with labels, statistics and fingerprint.

    Raises:
        SslbenchError: for an unknown name (with "did you mean"), a missing
            path argument, or missing data.
    """
    datasets = registry("datasets")
    base, sep, arg = name.partition(":")
    if base in PATH_DATASETS:
        if not arg:
            raise SslbenchError(f"dataset {base!r} needs a folder: use '{base}:PATH'")
        result = datasets.get(base)(arg, data_root=data_root)
    elif sep and name not in datasets:
        datasets.get(base)  # unknown base name -> did you mean
        raise SslbenchError(f"dataset {base!r} takes no ':' argument (got {name!r})")
    else:
        result = datasets.get(name)(data_root=data_root)
    if not isinstance(result, ImageData):
        raise SslbenchError(
            f"dataset {name!r} returned {type(result).__name__}, not sslbench.types.ImageData"
        )
    return result
