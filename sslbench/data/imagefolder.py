"""Any folder of class-labelled images (torchvision ``ImageFolder`` layout).

Two layouts are accepted:

* split: ``PATH/train/<class>/*`` plus ``PATH/test/<class>/*`` (or ``PATH/val/``);
* flat: ``PATH/<class>/*``, split 80/20 stratified by class with
  ``train_test_split(..., test_size=0.2, stratify=y, random_state=0)``.

The split layout wins when ``PATH/train`` and ``PATH/test`` (or ``val``) exist.
Classes are the sorted sub-folder names of the train part (label = index);
image files are found recursively below each class folder and sorted, so the
result does not depend on the file system's listing order. Directory symlinks
are followed, but each directory is walked once: a link back to a directory
already walked (a loop), to the split folder above or to another class folder
is not entered, so a loop neither counts images twice nor hangs the loader. Each image is
resized on its shorter side and centre-cropped to ``image_size`` squared
(``PIL.ImageOps.fit``, bilinear), and kept as RGB, or as one grey channel when
every image in the folder is greyscale.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from sslbench.data.common import data_root_from, make_image_data
from sslbench.errors import SslbenchError
from sslbench.types import ImageData

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _resolve(path: str, data_root: str | None) -> Path:
    """``path`` as given, else relative to the data root; error when missing."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p
    root, _ = data_root_from(data_root)
    if root is not None and not p.is_absolute() and (root / p).is_dir():
        return root / p
    where = f" (nor under data root {root})" if root is not None and not p.is_absolute() else ""
    raise SslbenchError(f"imagefolder path {path!r} is not a directory{where}")


def _class_dirs(path: Path) -> list[Path]:
    return sorted((d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


DirId = tuple[int, int]


def _dir_id(path: str | Path) -> DirId | None:
    """``(device, inode)`` of the directory ``path`` resolves to; ``None`` when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _images_in(directory: Path, skip: frozenset[DirId] = frozenset()) -> list[Path]:
    """Image files below ``directory``, sorted, each directory walked once.

    Args:
        directory: A class folder.
        skip: Directories never to enter (the split folder and the other class folders).
    """
    seen = set(skip)
    files = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        here = _dir_id(dirpath)
        if here is None or here in seen:  # reached again through a symlink: a loop or a second link
            dirnames.clear()
            continue
        seen.add(here)
        dirnames[:] = sorted(d for d in dirnames if _dir_id(Path(dirpath) / d) not in seen)
        files += [Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return files


def _scan(path: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Image files and labels under ``path/<class>/``.

    Args:
        path: Folder of class folders.
        classes: Class names fixing the label order (the train part's); when
            ``None`` they are the sorted sub-folders of ``path``.
    """
    dirs = _class_dirs(path)
    if classes is None:
        classes = [d.name for d in dirs]
    else:
        unknown = sorted({d.name for d in dirs} - set(classes))
        if unknown:
            raise SslbenchError(f"{path} has classes {unknown} that the train folder lacks")
    index = {c: i for i, c in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    ids = {d: _dir_id(d) for d in dirs}
    for d in dirs:
        skip = frozenset(i for i in [_dir_id(path), *(ids[o] for o in dirs if o != d)] if i is not None)
        found = _images_in(d, skip - {ids[d]})
        files += found
        labels += [index[d.name]] * len(found)
    if not files:
        raise SslbenchError(
            f"no images in {path}: expected {path}/<class>/<image> files "
            f"with one of the extensions {', '.join(IMAGE_EXTENSIONS)}"
        )
    return files, labels, classes


def _load_images(files: list[Path], image_size: int, grey: bool) -> np.ndarray:
    """Decode, convert and resize ``files`` into ``(N, C, S, S)`` uint8."""
    from PIL import Image, ImageOps

    channels = 1 if grey else 3
    out = np.empty((len(files), channels, image_size, image_size), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                img = img.convert("L" if grey else "RGB")
                img = ImageOps.fit(img, (image_size, image_size), method=Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise SslbenchError(f"cannot read image {f}: {e}") from e
        out[i] = arr[None] if grey else arr.transpose(2, 0, 1)
    return out


def _all_grey(files: list[Path]) -> bool:
    from PIL import Image

    for f in files:
        try:
            with Image.open(f) as img:  # reads the header only
                if img.mode not in GREY_MODES:
                    return False
        except (OSError, ValueError) as e:
            raise SslbenchError(f"cannot read image {f}: {e}") from e
    return True


def load_imagefolder(path: str, data_root: str | None = None, image_size: int = 32) -> ImageData:
    """Load a folder of class-labelled images into memory.

    Args:
        path: The folder (see the module docstring for the layouts); a relative
            path that does not exist is also looked up under the data root.
        data_root: ``--data-root``; only used to resolve a relative ``path``.
        image_size: Side of the square images after resize and centre crop.

    Returns:
        ImageData named ``imagefolder:<path>`` with ``(N, C, image_size,
        image_size)`` uint8 images (``C`` = 1 if all images are greyscale, else
        3), int64 labels and ``source`` = the resolved folder.

    Raises:
        SslbenchError: for a missing or empty folder, an unreadable image, a
            class only in the test part, or a flat folder too small to split.
    """
    root = _resolve(path, data_root)
    train_dir = root / "train"
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if train_dir.is_dir() and test_dir is not None:
        train_files, train_y, classes = _scan(train_dir)
        test_files, test_y, _ = _scan(test_dir, classes)
    elif train_dir.is_dir():
        raise SslbenchError(f"{root} has a train/ folder but no test/ or val/ folder next to it")
    else:
        files, labels, classes = _scan(root)
        from sklearn.model_selection import train_test_split

        try:
            train_i, test_i = train_test_split(
                np.arange(len(files)), test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
            )
        except ValueError as e:
            raise SslbenchError(
                f"cannot split {root} 80/20 by class ({e}); add images or use the "
                f"{root}/train/<class> + {root}/test/<class> layout"
            ) from e
        train_files, train_y = [files[i] for i in train_i], [labels[i] for i in train_i]
        test_files, test_y = [files[i] for i in test_i], [labels[i] for i in test_i]
    grey = _all_grey(train_files + test_files)
    return make_image_data(
        f"imagefolder:{path}",
        torch.from_numpy(_load_images(train_files, image_size, grey)),
        torch.tensor(train_y, dtype=torch.int64),
        torch.from_numpy(_load_images(test_files, image_size, grey)),
        torch.tensor(test_y, dtype=torch.int64),
        num_classes=len(classes),
        source=str(root.resolve()),
    )
