"""Feature files for ``sslbench eval --features``: a checked ``.npz`` of plain arrays.

The file holds ``train_x (N, D)``, ``train_y (N,)``, ``test_x (M, D)``, ``test_y (M,)``
and optionally ``transfer_x``/``transfer_y`` (a transfer split) and
``train_z``/``test_z`` (projector outputs). It is read with ``allow_pickle=False``
and every array is checked before any protocol sees it: a bad file is one line
naming the file and the array.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from sslbench.data import fingerprint
from sslbench.errors import SslbenchError
from sslbench.protocol import check_features
from sslbench.types import FeatureSet, Split

REQUIRED_ARRAYS = ("train_x", "train_y", "test_x", "test_y")
OPTIONAL_ARRAYS = ("transfer_x", "transfer_y", "train_z", "test_z")


def _feature_array(name: str, a: np.ndarray, path: Path) -> np.ndarray:
    if a.dtype.kind not in "fiu":
        raise SslbenchError(f"{name} in {path} must be a numeric array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise SslbenchError(f"{name} in {path} must be 2-D (N, D), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise SslbenchError(f"{name} in {path} is empty (shape {a.shape})")
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.ascontiguousarray(a, dtype=np.float32)
    if a.dtype.kind == "f" and a.dtype.itemsize > 4 and np.isinf(x).sum() > np.isinf(a).sum():
        raise SslbenchError(f"{name} in {path} has values beyond the float32 range (|x| > 3.4e38); "
                            "rescale the features")
    return x


def _label_array(name: str, y: np.ndarray, rows: int, x_name: str, path: Path) -> np.ndarray:
    if y.ndim != 1:
        raise SslbenchError(f"{name} in {path} must be 1-D (N,) class labels, got shape {y.shape}")
    if len(y) != rows:
        raise SslbenchError(f"{name} in {path} has {len(y)} labels but {x_name} has {rows} rows")
    whole = y.dtype.kind == "f" and bool(np.isfinite(y).all()) and bool((y == np.round(y)).all())
    if y.dtype.kind not in "iu" and not whole:
        raise SslbenchError(f"{name} in {path} must hold integer class labels, got dtype {y.dtype}"
                            + (" with non-integer values" if y.dtype.kind == "f" else ""))
    if y.size and float(y.max()) >= 2**31:
        raise SslbenchError(f"{name} in {path} has labels up to {y.max()}; class labels must be 0..C-1")
    if y.size and float(y.min()) < 0:  # before the cast: a huge negative float would overflow it
        raise SslbenchError(f"{name} in {path} has negative labels (min {y.min()}); use 0..C-1")
    return y.astype(np.int64)


def load_features(path: str | Path) -> tuple[FeatureSet, str]:
    """Read and check a features ``.npz`` (``allow_pickle=False``).

    Args:
        path: File with ``train_x (N, D)``, ``train_y (N,)``, ``test_x (M, D)``,
            ``test_y (M,)`` and optionally ``transfer_x (T, D)``/``transfer_y (T,)``
            and projector outputs ``train_z (N, Dz)``/``test_z (M, Dz)``.

    Returns:
        ``(features, fingerprint)``: float32 features and int64 labels (the
        optional arrays in ``extra``), and the sha256 of the checked arrays.

    Raises:
        SslbenchError: naming the file and the array, for a missing or unreadable
            file, a pickle or object array, a missing or unknown array, a wrong
            shape or dtype, labels that do not match, NaN/Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise SslbenchError(f"features file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(6)
    if not (head.startswith(b"PK") or head.startswith(b"\x93NUMPY")):  # np.load would take it for a pickle
        if head[:1] == b"\x80":
            raise SslbenchError(f"refusing to load {path}: it is a pickle, not an .npz of plain arrays "
                                "(save features with numpy.savez)")
        raise SslbenchError(f"cannot read features file {path}: it is not an .npz archive (numpy.savez)")
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise SslbenchError(f"cannot read features file {path}: {str(e).splitlines()[0]}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise SslbenchError(f"cannot read features file {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise SslbenchError(f"{path} holds a single array; sslbench needs an .npz (numpy.savez) with "
                            f"{', '.join(REQUIRED_ARRAYS)}")
    with z:
        names = list(z.files)
        missing = [n for n in REQUIRED_ARRAYS if n not in names]
        if missing:
            raise SslbenchError(f"{path} lacks array(s) {', '.join(missing)} (has: {', '.join(names) or 'none'})")
        unknown = [n for n in names if n not in REQUIRED_ARRAYS + OPTIONAL_ARRAYS]
        if unknown:
            raise SslbenchError(f"{path} has unknown array(s) {', '.join(unknown)}; expected "
                                f"{', '.join(REQUIRED_ARRAYS)} and optionally {', '.join(OPTIONAL_ARRAYS)}")
        raw: dict[str, np.ndarray] = {}
        for n in names:
            try:
                raw[n] = z[n]
            except ValueError as e:
                why = ("it is an object array (pickled Python objects); save numeric arrays"
                       if "pickle" in str(e) or "Object arrays" in str(e) else str(e).splitlines()[0])
                raise SslbenchError(f"refusing to load array {n} from {path}: {why}") from None
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                raise SslbenchError(f"cannot read array {n} from {path}: {str(e).splitlines()[0]}") from None
    if ("transfer_x" in raw) != ("transfer_y" in raw):
        raise SslbenchError(f"{path} has only one of transfer_x/transfer_y; give both or neither")
    if ("train_z" in raw) != ("test_z" in raw):
        raise SslbenchError(f"{path} has only one of train_z/test_z; give both or neither")
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
    transfer = Split(arrays["transfer_x"], arrays["transfer_y"]) if "transfer_x" in arrays else None
    fs = FeatureSet(Split(arrays["train_x"], arrays["train_y"], arrays.get("train_z")),
                    Split(arrays["test_x"], arrays["test_y"], arrays.get("test_z")), transfer, run=path.name)
    check_features(fs)
    fp = fingerprint(*(arrays[n] for n in REQUIRED_ARRAYS + OPTIONAL_ARRAYS if n in arrays))
    return fs, fp
