"""Reader and writer for the idx format of MNIST and Fashion-MNIST.

Format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 <type code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then
the values in C order, big-endian. Files may be gzip-compressed; compression
is detected from the content (gzip magic ``1f 8b``), not from the file name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from sslbench.errors import SslbenchError

# idx type code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SslbenchError(f"cannot read idx file {path}: {e.strerror or e}") from e
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise SslbenchError(
            f"idx file {path} is a corrupt or truncated gzip file ({e}); "
            "delete it and fetch it again"
        ) from e


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one idx file (raw or gzip) into a numpy array.

    Args:
        path: The file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        An array of the stored shape (e.g. ``(60000, 28, 28)`` uint8 for the
        Fashion-MNIST train images) in native byte order.

    Raises:
        SslbenchError: naming the file when it cannot be read, the magic number
            is wrong, or the data is shorter or longer than the header says.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise SslbenchError(
            f"{path} is not an idx file (magic number {data[:4].hex() or 'missing'}, "
            "expected 0000 followed by a type code and the number of dimensions)"
        )
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise SslbenchError(f"idx file {path} is truncated: header of {ndim} dimensions incomplete")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header says"
        raise SslbenchError(
            f"idx file {path} is {what}: shape {shape} needs {expected} bytes of data, "
            f"found {actual}; delete it and fetch it again"
        )
    # astype copies: the result is writable and in native byte order
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an idx file (the inverse of :func:`read_idx`).

    Args:
        path: Destination file.
        array: Array with a dtype listed in :data:`IDX_DTYPES` (after byte order).
        compress: gzip the file; by default when ``path`` ends with ``.gz``.

    Returns:
        The path written.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"idx cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    payload = header + body
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload, compresslevel=1) if compress else payload)
    return path
