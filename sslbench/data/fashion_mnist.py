"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747): 70k 28x28 grey images.

Ten clothing classes; 60000 train and 10000 test images. The four idx files are
parsed directly with numpy (:mod:`sslbench.data.idx`), which works with any copy
of them, raw or gzip, including the Debian package's recompressed ``.gz`` files
whose checksums torchvision rejects.

Where the files are looked for, in order:

1. ``data_root`` (``--data-root``) or else ``$SSLBENCH_DATA``: the files directly
   in it, in ``<root>/fashion-mnist/`` or in torchvision's ``<root>/FashionMNIST/raw/``.
2. The Debian package ``dataset-fashion-mnist``: :data:`DEBIAN_DIR`.
3. The download cache (``$XDG_CACHE_HOME/sslbench`` or ``~/.cache/sslbench``):
   files already there, else a torchvision download into it (needs internet;
   skipped when ``SSLBENCH_NO_DOWNLOAD=1``).

When all three fail, one :class:`SslbenchError` lists the three ways to get the
data and what each attempt found.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

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
from sslbench.data.idx import read_idx
from sslbench.errors import SslbenchError
from sslbench.types import ImageData

log = logging.getLogger(__name__)

NAME = "fashion-mnist"
NUM_CLASSES = 10
IMAGE_SIZE = 28
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where ``apt-get install dataset-fashion-mnist`` puts the files (tests monkeypatch it)."""

FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The four idx files by role; each may also be stored with a ``.gz`` suffix."""

DOWNLOAD_TIMEOUT_S = 60.0


def candidate_dirs(root: Path) -> list[Path]:
    """Directories under ``root`` that may hold the idx files, in search order."""
    return [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]


def _files_in(directory: Path) -> dict[str, Path]:
    """The idx files present in ``directory`` by role (uncompressed preferred)."""
    found = {}
    for role, stem in FILES.items():
        for name in (stem, stem + ".gz"):
            if (directory / name).is_file():
                found[role] = directory / name
                break
    return found


def _search(root: Path) -> tuple[dict[str, Path] | None, str]:
    """Look for all four files under ``root``.

    Returns:
        ``(files, note)``: the files when one directory has all four, else
        ``None`` and a note saying what was found, for the error message.
    """
    if not root.is_dir():
        return None, f"{root} does not exist"
    partial = []
    for directory in candidate_dirs(root):
        if not directory.is_dir():
            continue
        found = _files_in(directory)
        if len(found) == len(FILES):
            return found, ""
        if found:
            missing = ", ".join(FILES[r] for r in FILES if r not in found)
            partial.append(f"{directory} has {len(found)} of 4 files (missing {missing})")
    if partial:
        return None, "; ".join(partial)
    dirs = ", ".join(str(d) for d in candidate_dirs(root))
    return None, f"no idx files in {dirs}"


def _load_files(files: dict[str, Path]) -> dict[str, torch.Tensor]:
    """Parse and check the four idx files.

    Returns:
        ``train_images``/``test_images`` as ``(N, 1, 28, 28)`` uint8 and
        ``train_labels``/``test_labels`` as ``(N,)`` int64 tensors.
    """
    arrays = {role: read_idx(path) for role, path in files.items()}
    out = {}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        img_path, lab_path = files[f"{split}_images"], files[f"{split}_labels"]
        if images.dtype.name != "uint8" or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise SslbenchError(
                f"{img_path} holds {images.dtype} {images.shape}, expected uint8 (N, 28, 28) images"
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise SslbenchError(
                f"{lab_path} holds labels of shape {labels.shape} for {images.shape[0]} images in {img_path}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise SslbenchError(f"{lab_path} has labels outside 0..9; is it a Fashion-MNIST file?")
        out[f"{split}_images"] = torch.from_numpy(images).unsqueeze(1)
        out[f"{split}_labels"] = torch.from_numpy(labels.astype("int64"))
    return out


def download_fashion_mnist(root: Path) -> Path:
    """Download Fashion-MNIST with torchvision into ``root/FashionMNIST/raw``.

    Tests replace this function (or set ``SSLBENCH_NO_DOWNLOAD=1``); it is the
    only place this module touches the network.

    Args:
        root: The cache directory.

    Returns:
        The directory holding the idx files.
    """
    from torchvision import datasets

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        datasets.FashionMNIST(str(root), train=True, download=True)
    finally:
        socket.setdefaulttimeout(old)
    return root / "FashionMNIST" / "raw"


def _expected_files() -> str:
    return ", ".join(FILES.values())


def load_fashion_mnist(data_root: str | None = None) -> ImageData:
    """Load Fashion-MNIST from a local root, the Debian package, or a download.

    See the module docstring for the search order.

    Args:
        data_root: Directory holding the idx files (``--data-root``); when
            ``None``, ``$SSLBENCH_DATA`` is used if set.

    Returns:
        ImageData with train ``(60000, 1, 28, 28)`` and test ``(10000, 1, 28, 28)``
        uint8 images, int64 labels in ``0..9``, ``source`` = the directory read
        and the fingerprint over train images, train labels, test images, test
        labels.

    Raises:
        SslbenchError: when no copy is found (naming the three ways to get one)
            or a file is corrupt (naming the file).
    """
    attempts: list[str] = []
    root, origin = data_root_from(data_root)
    if root is None:
        attempts.append(f"--data-root/${DATA_ENV}: not set")
    else:
        files, note = _search(root)
        if files:
            return _image_data(files)
        attempts.append(f"{origin} {root}: {note}")

    def use(files: dict[str, Path]) -> ImageData:
        if root is not None:  # the user pointed elsewhere: say that another copy was used
            log.warning("Fashion-MNIST not found under %s %s; using %s", origin, root, next(iter(files.values())).parent)
        return _image_data(files)

    files, note = _search(DEBIAN_DIR)
    if files:
        return use(files)
    if not DEBIAN_DIR.is_dir():
        note = f"{DEBIAN_DIR} does not exist (package not installed)"
    attempts.append(f"Debian package: {note}")

    cache = cache_dir()
    files, note = _search(cache)
    if files:
        return use(files)
    if not downloads_enabled():
        attempts.append(f"download: cache {cache} is empty and downloads are disabled by ${NO_DOWNLOAD_ENV}")
    else:
        try:
            raw = download_fashion_mnist(cache)
            found = _files_in(raw)
            if len(found) == len(FILES):
                return _image_data(found)  # downloaded because nothing else was found
            attempts.append(f"download: torchvision finished but {raw} lacks the idx files")
        except Exception as e:  # noqa: BLE001 - any network or mirror failure falls through
            attempts.append(f"download into {cache} failed: {one_line(e)}")

    raise SslbenchError(
        "Fashion-MNIST not found. Get it one of three ways: "
        f"(1) --data-root DIR or {DATA_ENV}=DIR with the idx files {_expected_files()} "
        "(raw or .gz) in DIR, DIR/fashion-mnist or DIR/FashionMNIST/raw; "
        f"(2) sudo apt-get install dataset-fashion-mnist (installs {DEBIAN_DIR}); "
        f"(3) let torchvision download it into {cache} (needs internet; "
        f"unset {NO_DOWNLOAD_ENV}). Tried: " + "; ".join(attempts) + "."
    )


def _image_data(files: dict[str, Path]) -> ImageData:
    tensors = _load_files(files)
    source = files["train_images"].parent
    return make_image_data(
        NAME,
        tensors["train_images"],
        tensors["train_labels"],
        tensors["test_images"],
        tensors["test_labels"],
        num_classes=NUM_CLASSES,
        source=str(source),
    )


#: Train images kept by :func:`load_fashion_mnist_10k` (1000 per class).
SUBSET_TRAIN = 10_000


def load_fashion_mnist_10k(data_root: str | None = None) -> ImageData:
    """Fashion-MNIST with a fixed stratified 10k-image train subset (1000 per class) and the full test split.

    Sized for sweeps of hundreds of short CPU runs (the collapse atlas): six times
    fewer images per epoch than ``fashion-mnist``, while every run still takes
    hundreds of optimiser steps. The subset is the same on every machine (the
    stratified split of :mod:`sslbench.splits` with seed 0 over the train labels).

    Args:
        data_root: As :func:`load_fashion_mnist`.

    Returns:
        ImageData with train ``(10000, 1, 28, 28)`` and test ``(10000, 1, 28, 28)``.
    """
    from sslbench.data.common import make_image_data
    from sslbench.splits import stratified_split

    full = load_fashion_mnist(data_root)
    labels = full.train_labels.numpy()
    _, keep = stratified_split(labels, SUBSET_TRAIN / len(labels), seed=0)
    idx = torch.from_numpy(keep)
    return make_image_data(f"{NAME}-10k", full.train_images[idx], full.train_labels[idx], full.test_images,
                           full.test_labels, NUM_CLASSES, full.source)
