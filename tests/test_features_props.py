"""Property-based: any features file gives checked features or an SslbenchError, never another exception."""

import io
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sslbench.errors import SslbenchError
from sslbench.feature_files import OPTIONAL_ARRAYS, REQUIRED_ARRAYS, load_features

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.uint64, np.bool_, np.complex64]
NAMES = list(REQUIRED_ARRAYS + OPTIONAL_ARRAYS) + ["X_train"]
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # an overflowing cast is a bug too
SETTINGS = settings(max_examples=12 * settings.default.max_examples)  # the profile's unit: 120 in ci


def _array(dtype, shape) -> st.SearchStrategy:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=min(64, dtype.itemsize * 8))
    elif dtype.kind == "c":
        elements = st.complex_numbers(allow_nan=True, allow_infinity=True, width=64)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max)) | st.integers(max(-2, int(info.min)), 5)
    else:
        elements = None
    return hnp.arrays(dtype, shape, elements=elements)


@st.composite
def consistent(draw) -> dict[str, np.ndarray]:
    """A mostly well-formed set of arrays (so the checks past the first one are reached too)."""
    n, m, d = draw(st.integers(0, 6)), draw(st.integers(0, 6)), draw(st.integers(0, 4))
    fdt = draw(st.sampled_from(DTYPES))
    ldt = draw(st.sampled_from(DTYPES))
    arrays = {
        "train_x": draw(_array(fdt, (n, d))),
        "train_y": draw(_array(ldt, (n,))),
        "test_x": draw(_array(fdt, (m, d))),
        "test_y": draw(_array(ldt, (m,))),
    }
    if draw(st.booleans()):
        t = draw(st.integers(0, 4))
        arrays["transfer_x"] = draw(_array(fdt, (t, draw(st.sampled_from([d, d + 1])))))
        arrays["transfer_y"] = draw(_array(ldt, (draw(st.sampled_from([t, t + 1])),)))
    if draw(st.booleans()):
        z = draw(st.integers(0, 3))
        arrays["train_z"] = draw(_array(fdt, (n, z)))
        arrays["test_z"] = draw(_array(fdt, (draw(st.sampled_from([m, 0])), z)))
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=2)):  # drop or reshape one
        if draw(st.booleans()):
            arrays.pop(name, None)
        else:
            arrays[name] = draw(_array(draw(st.sampled_from(DTYPES)), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
    return arrays


def _check_valid(fs, arrays=None) -> None:
    for split in (fs.train, fs.test):
        x, y = split.x, split.y
        assert x.dtype == np.float32 and x.ndim == 2 and np.isfinite(x).all() and len(x) > 0
        assert y.dtype == np.int64 and y.shape == (len(x),) and (y >= 0).all()
    assert fs.train.x.shape[1] == fs.test.x.shape[1]
    labels = np.concatenate([fs.train.y, fs.test.y])
    assert sorted(set(labels.tolist())) == list(range(fs.num_classes))  # classes 0..C-1, none skipped
    if arrays is not None:  # the same classes as the file's, in the same order
        given = np.concatenate([arrays["train_y"], arrays["test_y"]]).astype(np.float64)
        assert (np.sign(labels[:, None] - labels[None, :]) == np.sign(given[:, None] - given[None, :])).all()


@SETTINGS
@given(arrays=consistent(), compressed=st.booleans())
def test_any_arrays_give_features_or_an_sslbench_error(tmp_path, arrays, compressed):
    path = tmp_path / "f.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    try:
        loaded = load_features(path)
    except SslbenchError as e:
        assert str(e)
        return
    _check_valid(loaded.features, arrays)
    assert len(loaded.data_fingerprint) == 64 and len(loaded.features_fingerprint) == 64


@SETTINGS
@given(cut=st.floats(0, 1), flip=st.integers(0, 10_000), compressed=st.booleans())
def test_damaged_files_give_an_sslbench_error(tmp_path, cut, flip, compressed):
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    (np.savez_compressed if compressed else np.savez)(
        buf, train_x=rng.normal(size=(30, 3)).astype(np.float32), train_y=np.arange(30) % 3,
        test_x=rng.normal(size=(9, 3)).astype(np.float32), test_y=np.arange(9) % 3)
    data = bytearray(buf.getvalue()[: max(1, int(len(buf.getvalue()) * cut))])
    data[flip % len(data)] ^= 0xFF
    path = tmp_path / "f.npz"
    path.write_bytes(bytes(data))
    try:
        fs = load_features(path).features
    except SslbenchError as e:
        assert str(e)
        return
    _check_valid(fs)  # a flipped byte in padding or a CRC-less field may still load: then it is valid


def test_a_zip_without_npy_members_is_an_sslbench_error(tmp_path):
    path = tmp_path / "f.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train_x.npy", b"not an npy")
    try:
        load_features(path)
    except SslbenchError as e:
        assert "train_x" in str(e) or str(path) in str(e)


def test_huge_negative_float_labels_are_refused_without_an_overflowing_cast(tmp_path):
    # found by the property test above: the int64 cast of -9.2e18 came before the sign check
    path = tmp_path / "f.npz"
    np.savez(path, train_x=np.zeros((1, 1), np.float32), train_y=np.array([-9.223373e18], np.float32),
             test_x=np.zeros((1, 1), np.float32), test_y=np.zeros(1, np.float32))
    with pytest.raises(SslbenchError, match="negative labels"):
        load_features(path)


# ----------------------------------------------------------------------------- the same files through the CLI


@settings(max_examples=2 * settings.default.max_examples)
@given(arrays=consistent(), compressed=st.booleans())
def test_any_features_file_through_eval_is_exit_2_or_scored(sandboxes, arrays, compressed):
    """``eval --features``: exit 2 exactly when the file is refused, 0 (or 1) otherwise; nothing written outside --out."""
    box = sandboxes()
    (np.savez_compressed if compressed else np.savez)(box.root / "f.npz", **arrays)
    try:
        load_features(box.root / "f.npz")
        refused = False
    except SslbenchError:
        refused = True
    res = box.call("eval", "--features", "f.npz", "--protocols", "knn,collapse", "--out", "out", out="out",
                   keep=(box.root / "f.npz",), malformed=refused)
    assert refused or res.rc in (0, 1), res


def test_a_member_cut_inside_its_header_is_an_sslbench_error(tmp_path):
    # found by the long fuzz profile: zipfile raised a bare EOFError(), and its empty message's
    # first line was an IndexError
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez_compressed(buf, train_x=rng.normal(size=(30, 3)).astype(np.float32), train_y=np.arange(30) % 3,
                        test_x=rng.normal(size=(9, 3)).astype(np.float32), test_y=np.arange(9) % 3)
    data = bytearray(buf.getvalue())
    data[682] ^= 0xFF
    (tmp_path / "f.npz").write_bytes(bytes(data))
    with pytest.raises(SslbenchError, match="cannot read array"):
        load_features(tmp_path / "f.npz")
