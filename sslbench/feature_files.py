"""Feature files for ``sslbench eval --features``: a checked ``.npz`` of plain arrays.

The file holds ``train_x (N, D)``, ``train_y (N,)``, ``test_x (M, D)``, ``test_y (M,)``
and optionally ``transfer_x``/``transfer_y`` (a transfer split) and
``train_z``/``test_z`` (projector outputs). It is read with ``allow_pickle=False``
and every array is checked before any protocol sees it: a bad file is one line
naming the file and the array.

Before any array is decompressed, the ``.npy`` header of every member is read
and what it declares (dtype, shape, size) is checked: the shapes must fit
together, each array must fit in the bytes the archive holds for it, and all of
them together in :data:`MAX_FEATURE_BYTES` (``SSLBENCH_MAX_FEATURE_BYTES`` raises
it). So a tiny file declaring 10^12 elements, or a zip bomb, is refused before
it takes memory.

Class labels are remapped to ``0..C-1`` (the sorted distinct labels of train and
test together; the transfer split's on their own), so a label of ``2**31 - 1``
or ``10**6`` costs no more than a label of 1; labels already ``0..C-1`` are
unchanged.

Two fingerprints come out of a file (:class:`LoadedFeatures`). The *data*
fingerprint (the result's ``dataset.fingerprint``) is of what the features
describe: the split sizes and the labels as the file holds them, not the
features, so the features of two encoders on the same data share it and
``compare``/the leaderboard see one dataset. The *features* fingerprint is of
every checked array; it is the evaluation's identity, so changed features under
the same ``--name`` are refused rather than mixed with earlier results.
"""

from __future__ import annotations

import math
import os
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslbench.data import fingerprint
from sslbench.errors import SslbenchError
from sslbench.protocol import check_features
from sslbench.types import FeatureSet, Split

REQUIRED_ARRAYS = ("train_x", "train_y", "test_x", "test_y")
OPTIONAL_ARRAYS = ("transfer_x", "transfer_y", "train_z", "test_z")
#: Most bytes the arrays of one features file may declare together (16 GiB: ImageNet's 1.28M
#: train images at 2048 float32 dims are 10.5 GB); the environment variable of the same name raises it.
MAX_FEATURE_BYTES = 16 * 2**30
LIMIT_ENV = "SSLBENCH_MAX_FEATURE_BYTES"
_ZIP_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)


@dataclass(frozen=True)
class LoadedFeatures:
    """A checked features file.

    Attributes:
        features: float32 features, int64 labels remapped to ``0..C-1``.
        data_fingerprint: sha256 of the split sizes ``(n_train, n_test, n_transfer or -1)``
            and the labels of every split as the file holds them: what the features are of.
        features_fingerprint: sha256 of every checked array (features, labels as the file
            holds them, projector outputs): the file's content.
    """

    features: FeatureSet
    data_fingerprint: str
    features_fingerprint: str


@dataclass(frozen=True)
class Declared:
    """What a member's ``.npy`` header declares.

    Attributes:
        dtype: The array's dtype.
        shape: The array's shape.
        nbytes: ``prod(shape) * itemsize``.
    """

    dtype: np.dtype
    shape: tuple[int, ...]
    nbytes: int


def max_feature_bytes() -> int:
    """The limit on declared bytes: ``SSLBENCH_MAX_FEATURE_BYTES`` when set, else :data:`MAX_FEATURE_BYTES`.

    Raises:
        SslbenchError: when the variable is set to something other than a positive integer.
    """
    raw = os.environ.get(LIMIT_ENV)
    if raw is None:
        return MAX_FEATURE_BYTES
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise SslbenchError(f"{LIMIT_ENV} must be a positive number of bytes, got {raw!r}")
    return limit


def _first_line(e: BaseException) -> str:
    """The first line of an error's message, or its type's name: zipfile raises a bare ``EOFError()``."""
    return (str(e).splitlines() or [type(e).__name__])[0]


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**26 else f"{n} bytes"


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, path: Path) -> Declared:
    """The declared dtype, shape and size of one member, reading only its header."""
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            data_bytes = info.file_size - f.tell()
    except ValueError as e:
        raise SslbenchError(f"cannot read array {name} from {path}: {_first_line(e)}") from None
    except _ZIP_ERRORS as e:
        raise SslbenchError(f"cannot read array {name} from {path}: {_first_line(e)}") from None
    if dtype.hasobject:
        raise SslbenchError(f"refusing to load array {name} from {path}: it is an object array "
                            "(pickled Python objects); save numeric arrays")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > data_bytes:
        raise SslbenchError(f"array {name} in {path} declares shape {tuple(shape)} ({_gib(nbytes)}) but the file holds "
                            f"{_gib(max(data_bytes, 0))} for it: it is truncated or crafted")
    return Declared(dtype, tuple(shape), nbytes)


def read_declared(path: Path) -> dict[str, Declared]:
    """The declared arrays of an ``.npz`` (name without ``.npy`` -> :class:`Declared`), decompressing
    nothing but the headers, and checked against :func:`max_feature_bytes`.

    Raises:
        SslbenchError: for an unreadable archive, missing or unknown array names, a member
            that is not an ``.npy`` or is an object array, an array larger than the bytes the archive holds for it, or a
            total over the limit.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {info.filename.removesuffix(".npy"): info for info in zf.infolist()}
            _check_names(list(infos), path)
            out = {name: _read_header(zf, info, name, path) for name, info in infos.items()}
    except _ZIP_ERRORS as e:
        raise SslbenchError(f"cannot read features file {path}: {_first_line(e)}") from None
    total, limit = sum(d.nbytes for d in out.values()), max_feature_bytes()
    if total > limit:
        raise SslbenchError(f"{path} declares {_gib(total)} of arrays, more than the limit of {_gib(limit)}; "
                            f"if the features really are that large, set {LIMIT_ENV} to more bytes")
    return out


def _check_feature_shape(name: str, dtype: np.dtype, shape: tuple[int, ...], path: Path) -> None:
    if dtype.kind not in "fiu":
        raise SslbenchError(f"{name} in {path} must be a numeric array, got dtype {dtype}")
    if len(shape) != 2:
        raise SslbenchError(f"{name} in {path} must be 2-D (N, D), got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise SslbenchError(f"{name} in {path} is empty (shape {shape})")


def _check_label_shape(name: str, dtype: np.dtype, shape: tuple[int, ...], rows: int, x_name: str, path: Path) -> None:
    if len(shape) != 1:
        raise SslbenchError(f"{name} in {path} must be 1-D (N,) class labels, got shape {shape}")
    if shape[0] != rows:
        raise SslbenchError(f"{name} in {path} has {shape[0]} labels but {x_name} has {rows} rows")
    if dtype.kind not in "iuf":
        raise SslbenchError(f"{name} in {path} must hold integer class labels, got dtype {dtype}")


def _check_names(names: list[str], path: Path) -> None:
    missing = [n for n in REQUIRED_ARRAYS if n not in names]
    if missing:
        raise SslbenchError(f"{path} lacks array(s) {', '.join(missing)} (has: {', '.join(names) or 'none'})")
    unknown = [n for n in names if n not in REQUIRED_ARRAYS + OPTIONAL_ARRAYS]
    if unknown:
        raise SslbenchError(f"{path} has unknown array(s) {', '.join(unknown)}; expected "
                            f"{', '.join(REQUIRED_ARRAYS)} and optionally {', '.join(OPTIONAL_ARRAYS)}")
    if ("transfer_x" in names) != ("transfer_y" in names):
        raise SslbenchError(f"{path} has only one of transfer_x/transfer_y; give both or neither")
    if ("train_z" in names) != ("test_z" in names):
        raise SslbenchError(f"{path} has only one of train_z/test_z; give both or neither")


def _check_declared(declared: dict[str, Declared], path: Path) -> None:
    """The checks a header allows: dtypes, shapes and matching row counts."""
    for split in ("train", "test", "transfer"):
        if f"{split}_x" in declared:
            x, y = declared[f"{split}_x"], declared[f"{split}_y"]
            _check_feature_shape(f"{split}_x", x.dtype, x.shape, path)
            _check_label_shape(f"{split}_y", y.dtype, y.shape, x.shape[0], f"{split}_x", path)
    for n in ("train_z", "test_z"):
        if n in declared:
            _check_feature_shape(n, declared[n].dtype, declared[n].shape, path)


def _feature_array(name: str, a: np.ndarray, path: Path) -> np.ndarray:
    _check_feature_shape(name, a.dtype, a.shape, path)
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.ascontiguousarray(a, dtype=np.float32)
    if a.dtype.kind == "f" and a.dtype.itemsize > 4 and np.isinf(x).sum() > np.isinf(a).sum():
        raise SslbenchError(f"{name} in {path} has values beyond the float32 range (|x| > 3.4e38); "
                            "rescale the features")
    return x


def _label_array(name: str, y: np.ndarray, rows: int, x_name: str, path: Path) -> np.ndarray:
    _check_label_shape(name, y.dtype, y.shape, rows, x_name, path)
    whole = y.dtype.kind == "f" and bool(np.isfinite(y).all()) and bool((y == np.round(y)).all())
    if y.dtype.kind not in "iu" and not whole:
        raise SslbenchError(f"{name} in {path} must hold integer class labels, got dtype {y.dtype}"
                            + (" with non-integer values" if y.dtype.kind == "f" else ""))
    if y.size and float(y.max()) >= 2**31:
        raise SslbenchError(f"{name} in {path} has labels up to {y.max()}; class labels must be below 2**31")
    if y.size and float(y.min()) < 0:  # before the cast: a huge negative float would overflow it
        raise SslbenchError(f"{name} in {path} has negative labels (min {y.min()}); use 0..C-1")
    return y.astype(np.int64)


def contiguous_labels(*labels: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Labels remapped to ``0..C-1`` over all of ``labels`` together, order kept.

    Args:
        labels: int64 label vectors sharing one class space (e.g. train and test).

    Returns:
        ``(remapped, classes)``: the vectors with each label replaced by its index in
        ``classes``, the sorted distinct original labels (``(C,)`` int64). Vectors that
        are already ``0..C-1`` come back equal.
    """
    classes = np.unique(np.concatenate(labels))
    if len(classes) and classes[0] == 0 and classes[-1] == len(classes) - 1:
        return list(labels), classes
    return [np.searchsorted(classes, y).astype(np.int64) for y in labels], classes


def _warn(msg: str) -> None:
    print(f"sslbench: warning: {msg}", file=sys.stderr, flush=True)


def _open_checked(path: Path) -> None:
    """Refuse what is not a regular ``.npz`` file before opening it (a FIFO would hang the open)."""
    if path.is_dir():
        raise SslbenchError(f"features file {path} is a directory; give the .npz file (numpy.savez)")
    if not path.exists():
        raise SslbenchError(f"features file {path} does not exist")
    if not path.is_file():
        raise SslbenchError(f"features file {path} is not a regular file (a FIFO, device or socket)")
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):  # refused before np.load reads a single array of any declared size
        raise SslbenchError(f"{path} holds a single array; sslbench needs an .npz (numpy.savez) with "
                            f"{', '.join(REQUIRED_ARRAYS)}")
    if not head.startswith(b"PK"):  # np.load would take it for a pickle
        if head[:1] == b"\x80":
            raise SslbenchError(f"refusing to load {path}: it is a pickle, not an .npz of plain arrays "
                                "(save features with numpy.savez)")
        raise SslbenchError(f"cannot read features file {path}: it is not an .npz archive (numpy.savez)")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the (header-checked) ``.npz`` at ``path``."""
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, *_ZIP_ERRORS) as e:
        raise SslbenchError(f"cannot read features file {path}: {_first_line(e)}") from None
    raw: dict[str, np.ndarray] = {}
    with z:
        for n in z.files:
            try:
                raw[n] = z[n]
            except ValueError as e:
                why = ("it is an object array (pickled Python objects); save numeric arrays"
                       if "pickle" in str(e) or "Object arrays" in str(e) else _first_line(e))
                raise SslbenchError(f"refusing to load array {n} from {path}: {why}") from None
            except _ZIP_ERRORS as e:
                raise SslbenchError(f"cannot read array {n} from {path}: {_first_line(e)}") from None
    return raw


def data_fingerprint(train_y: np.ndarray, test_y: np.ndarray, transfer_y: np.ndarray | None = None) -> str:
    """The data fingerprint of a features file: sha256 of the split sizes and the labels.

    Args:
        train_y: ``(N,)`` int64 train labels as the file holds them.
        test_y: ``(M,)`` int64 test labels.
        transfer_y: ``(T,)`` int64 transfer labels, when the file has a transfer split.
    """
    sizes = np.array([len(train_y), len(test_y), -1 if transfer_y is None else len(transfer_y)], dtype=np.int64)
    return fingerprint(sizes, train_y, test_y, *([] if transfer_y is None else [transfer_y]))


def load_features(path: str | Path) -> LoadedFeatures:
    """Read and check a features ``.npz`` (``allow_pickle=False``).

    Args:
        path: File with ``train_x (N, D)``, ``train_y (N,)``, ``test_x (M, D)``,
            ``test_y (M,)`` and optionally ``transfer_x (T, D)``/``transfer_y (T,)``
            and projector outputs ``train_z (N, Dz)``/``test_z (M, Dz)``.

    Returns:
        The :class:`LoadedFeatures`: float32 features and int64 labels remapped to
        ``0..C-1`` (:func:`contiguous_labels`), the data fingerprint
        (:func:`data_fingerprint`) and the sha256 of every checked array. A file with
        a single class in train_y gets a warning line on stderr.

    Raises:
        SslbenchError: naming the file and the array, for a missing or unreadable
            file, a directory, a pickle or object array, a missing or unknown array, a
            wrong shape or dtype, arrays declaring more bytes than the file holds or
            than :func:`max_feature_bytes`, labels that do not match, NaN/Inf.
    """
    path = Path(path)
    _open_checked(path)
    _check_declared(read_declared(path), path)
    raw = _read_arrays(path)
    _check_names(list(raw), path)
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test", "transfer"):
        if f"{split}_x" in raw:
            x = arrays[f"{split}_x"] = _feature_array(f"{split}_x", raw[f"{split}_x"], path)
            arrays[f"{split}_y"] = _label_array(f"{split}_y", raw[f"{split}_y"], len(x), f"{split}_x", path)
    for n in ("train_z", "test_z"):
        if n in raw:
            arrays[n] = _feature_array(n, raw[n], path)
    if "transfer_x" in arrays and arrays["transfer_x"].shape[1] != arrays["train_x"].shape[1]:
        raise SslbenchError(f"transfer_x in {path} has {arrays['transfer_x'].shape[1]} dims but train_x has "
                            f"{arrays['train_x'].shape[1]}")
    content = fingerprint(*(arrays[n] for n in REQUIRED_ARRAYS + OPTIONAL_ARRAYS if n in arrays))
    data = data_fingerprint(arrays["train_y"], arrays["test_y"], arrays.get("transfer_y"))
    (train_y, test_y), classes = contiguous_labels(arrays["train_y"], arrays["test_y"])
    transfer = None
    if "transfer_x" in arrays:
        transfer = Split(arrays["transfer_x"], contiguous_labels(arrays["transfer_y"])[0][0])
    fs = FeatureSet(Split(arrays["train_x"], train_y, arrays.get("train_z")),
                    Split(arrays["test_x"], test_y, arrays.get("test_z")), transfer, run=path.name)
    check_features(fs)
    if len(np.unique(arrays["train_y"])) == 1:
        label = int(arrays["train_y"][0])
        rest = ("so is test_y: every accuracy is 1.0 by construction" if len(classes) == 1
                else "a classifier trained on it can only predict that class")
        _warn(f"{path}: train_y holds a single class ({label}); {rest}")
    return LoadedFeatures(fs, data, content)
