"""Tests of sslbench.data: idx parsing, the Fashion-MNIST resolver, digits,
ImageFolder, fingerprints and channel statistics. No test touches the network."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sslbench.data import channel_stats, common, fashion_mnist, fingerprint, load_dataset, torchvision_sets
from sslbench.data.digits import load_digits
from sslbench.data.fashion_mnist import FILES, load_fashion_mnist
from sslbench.data.idx import read_idx, write_idx
from sslbench.data.imagefolder import _scan, load_imagefolder
from sslbench.errors import SslbenchError

ROOT = Path(__file__).resolve().parents[1]

REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No downloads, no stray data root, a private cache dir, for every test."""
    monkeypatch.setenv("SSLBENCH_NO_DOWNLOAD", "1")
    monkeypatch.delenv("SSLBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))

    def no_network(root):
        raise AssertionError("tests must not download")

    monkeypatch.setattr(fashion_mnist, "download_fashion_mnist", no_network)


def fake_fmnist(directory: Path, gz: bool = True, n_train: int = 20, n_test: int = 10, seed: int = 0):
    """Write four small idx files in Fashion-MNIST's format; return the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for role, array in arrays.items():
        write_idx(directory / (FILES[role] + (".gz" if gz else "")), array)
    return arrays


# ---- idx format ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 5).reshape(2, 3, 5) - 7).astype(dtype)
    back = read_idx(write_idx(tmp_path / name, array))
    assert back.dtype == array.dtype and back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")


def test_idx_header_is_big_endian(tmp_path):
    path = write_idx(tmp_path / "labels", np.array([3, 1, 2], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 2])


def test_idx_truncated_file_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(SslbenchError, match="train-images-idx3-ubyte is truncated"):
        read_idx(path)


def test_idx_truncated_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(1000, dtype=np.uint8) % 10)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(SslbenchError, match="t10k-labels-idx1-ubyte.gz is a corrupt or truncated gzip"):
        read_idx(path)


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"<html>not found</html>"))
    with pytest.raises(SslbenchError, match="train-labels-idx1-ubyte.gz is not an idx file"):
        read_idx(path)


# ---- Fashion-MNIST resolver ---------------------------------------------------


@pytest.mark.parametrize("sub", ["", "fashion-mnist", "FashionMNIST/raw"])
@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_data_root(tmp_path, sub, gz):
    arrays = fake_fmnist(tmp_path / "root" / sub, gz=gz)
    data = load_fashion_mnist(str(tmp_path / "root"))
    assert data.name == "fashion-mnist" and data.num_classes == 10
    assert data.train_images.shape == (20, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (10, 1, 28, 28)
    assert data.train_labels.dtype == torch.int64 and data.test_labels.dtype == torch.int64
    np.testing.assert_array_equal(data.train_images[:, 0].numpy(), arrays["train_images"])
    np.testing.assert_array_equal(data.test_labels.numpy(), arrays["test_labels"])
    assert Path(data.source) == tmp_path / "root" / sub
    assert data.fingerprint == fingerprint(
        data.train_images, data.train_labels, data.test_images, data.test_labels
    )


def test_fashion_mnist_from_env_var(tmp_path, monkeypatch):
    fake_fmnist(tmp_path / "envroot" / "fashion-mnist")
    monkeypatch.setenv("SSLBENCH_DATA", str(tmp_path / "envroot"))
    data = load_dataset("fashion-mnist")
    assert Path(data.source) == tmp_path / "envroot" / "fashion-mnist"
    assert len(data.train_labels) == 20


def test_fashion_mnist_fingerprint_ignores_compression(tmp_path):
    fake_fmnist(tmp_path / "a", gz=True)
    fake_fmnist(tmp_path / "b", gz=False)
    assert load_fashion_mnist(str(tmp_path / "a")).fingerprint == load_fashion_mnist(str(tmp_path / "b")).fingerprint


def test_fashion_mnist_falls_back_to_debian_dir(tmp_path, monkeypatch):
    fake_fmnist(tmp_path / "debian")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    (tmp_path / "empty").mkdir()
    data = load_fashion_mnist(str(tmp_path / "empty"))
    assert Path(data.source) == tmp_path / "debian"


def test_fashion_mnist_not_found_names_three_ways(tmp_path, monkeypatch):
    (tmp_path / "debian").mkdir()
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    partial = tmp_path / "root" / "fashion-mnist"
    partial.mkdir(parents=True)
    write_idx(partial / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(SslbenchError) as info:
        load_fashion_mnist(str(tmp_path / "root"))
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "SSLBENCH_DATA" in msg and "--data-root" in msg
    assert "download" in msg and "needs internet" in msg
    assert "t10k-images-idx3-ubyte" in msg
    assert "1 of 4 files" in msg  # what the data-root attempt found
    assert "downloads are disabled" in msg
    assert "\n" not in msg


def test_fashion_mnist_download_step(tmp_path, monkeypatch):
    (tmp_path / "debian").mkdir()
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.delenv("SSLBENCH_NO_DOWNLOAD")
    calls = []

    def fake_download(root):
        calls.append(root)
        fake_fmnist(root / "FashionMNIST" / "raw")
        return root / "FashionMNIST" / "raw"

    monkeypatch.setattr(fashion_mnist, "download_fashion_mnist", fake_download)
    first = load_fashion_mnist()
    assert calls == [tmp_path / "xdg-cache" / "sslbench"]
    assert Path(first.source) == tmp_path / "xdg-cache" / "sslbench" / "FashionMNIST" / "raw"
    second = load_fashion_mnist()  # now served from the cache, no second download
    assert len(calls) == 1 and second.fingerprint == first.fingerprint


def test_fashion_mnist_download_failure_is_reported(tmp_path, monkeypatch):
    (tmp_path / "debian").mkdir()
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.delenv("SSLBENCH_NO_DOWNLOAD")

    def offline_download(root):
        raise RuntimeError("Error downloading:\n<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(fashion_mnist, "download_fashion_mnist", offline_download)
    with pytest.raises(SslbenchError, match="failed: RuntimeError: Error downloading: <urlopen error"):
        load_fashion_mnist()


def test_fashion_mnist_corrupt_file_is_an_error_not_a_fallthrough(tmp_path):
    fake_fmnist(tmp_path)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(SslbenchError, match="t10k-images-idx3-ubyte.gz"):
        load_fashion_mnist(str(tmp_path))


def test_fashion_mnist_mismatched_labels(tmp_path):
    fake_fmnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(7, np.uint8))
    with pytest.raises(SslbenchError, match="train-labels-idx1-ubyte holds labels of shape"):
        load_fashion_mnist(str(tmp_path))


@pytest.mark.skipif(not REAL_FMNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist(monkeypatch):
    """The Debian package's files decode to the published shapes, balance and statistics (how fast they
    load is measured in benchmarks/bench_load.py, not asserted here)."""
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", REAL_FMNIST)
    data = load_dataset("fashion-mnist")
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert data.test_images.shape == (10000, 1, 28, 28)
    assert data.num_classes == 10
    assert torch.bincount(data.train_labels).tolist() == [6000] * 10
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    assert data.mean[0] == pytest.approx(0.2860, abs=1e-4)
    assert data.std[0] == pytest.approx(0.3530, abs=1e-4)


# ---- digits -------------------------------------------------------------------


def test_digits_shapes_split_and_stratification():
    data = load_digits()
    assert data.train_images.shape == (1437, 1, 8, 8) and data.test_images.shape == (360, 1, 8, 8)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert data.num_classes == 10 and data.source == "sklearn"
    assert int(data.train_images.max()) == 255 and int(data.train_images.min()) == 0
    all_labels = torch.cat([data.train_labels, data.test_labels])
    share = torch.bincount(data.test_labels, minlength=10) / torch.bincount(all_labels, minlength=10)
    assert torch.all((share - 0.2).abs() < 0.02)  # stratified: ~20% of every class in test


def test_digits_values_and_determinism():
    from sklearn.datasets import load_digits as sk_load_digits

    a, b = load_digits(), load_digits()
    assert a.fingerprint == b.fingerprint
    assert torch.equal(a.test_images, b.test_images)
    allowed = {round(v * 255 / 16) for v in range(17)}
    assert set(torch.unique(a.train_images).tolist()) <= allowed
    raw = sk_load_digits()
    assert sorted(torch.cat([a.train_labels, a.test_labels]).tolist()) == sorted(raw.target.tolist())


# ---- fingerprint and channel statistics ---------------------------------------


def test_fingerprint_changes_with_one_label():
    images = torch.zeros(5, 1, 4, 4, dtype=torch.uint8)
    labels = torch.arange(5)
    changed = labels.clone()
    changed[3] = 0
    assert fingerprint(images, labels) == fingerprint(images.clone(), labels.clone())
    assert fingerprint(images, labels) != fingerprint(images, changed)


def test_fingerprint_sees_shape_dtype_and_order():
    x = np.arange(12, dtype=np.uint8)
    assert fingerprint(x) != fingerprint(x.reshape(3, 4))
    assert fingerprint(x) != fingerprint(x.view(np.int8))
    assert fingerprint(x, x[:0]) != fingerprint(x[:0], x)
    assert fingerprint(torch.from_numpy(x)) == fingerprint(x)


def test_channel_stats_match_float64_reference(monkeypatch):
    monkeypatch.setattr(common, "_STATS_CHUNK", 7)  # several chunks
    images = torch.randint(0, 256, (50, 3, 5, 6), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.double() / 255
    np.testing.assert_allclose(mean, x.mean(dim=(0, 2, 3)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(dim=(0, 2, 3), unbiased=False).numpy(), rtol=1e-10)
    assert len(mean) == 3 and all(isinstance(m, float) for m in mean)


# ---- ImageFolder --------------------------------------------------------------


def write_pngs(directory: Path, classes: dict[str, int], mode: str = "RGB", size=(40, 30), seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls, count in classes.items():
        (directory / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(directory / cls / f"{i}.png")


def test_imagefolder_flat_layout_splits_80_20(tmp_path):
    write_pngs(tmp_path / "flat", {"cat": 10, "dog": 5, "eel": 5})
    data = load_dataset(f"imagefolder:{tmp_path / 'flat'}")
    assert data.name == f"imagefolder:{tmp_path / 'flat'}" and data.num_classes == 3
    assert data.train_images.shape == (16, 3, 32, 32) and data.test_images.shape == (4, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert torch.bincount(data.test_labels, minlength=3).tolist() == [2, 1, 1]
    assert load_imagefolder(str(tmp_path / "flat")).fingerprint == data.fingerprint  # deterministic


def test_imagefolder_split_layout_grey_and_size(tmp_path):
    write_pngs(tmp_path / "ds" / "train", {"a": 3, "b": 2}, mode="L")
    write_pngs(tmp_path / "ds" / "val", {"b": 2}, mode="L")
    data = load_imagefolder(str(tmp_path / "ds"), image_size=16)
    assert data.train_images.shape == (5, 1, 16, 16)  # all greyscale -> one channel
    assert data.test_images.shape == (2, 1, 16, 16)
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1] and data.test_labels.tolist() == [1, 1]
    assert data.num_classes == 2


def test_imagefolder_relative_to_data_root(tmp_path):
    write_pngs(tmp_path / "root" / "pets" / "train", {"a": 1, "b": 1})
    write_pngs(tmp_path / "root" / "pets" / "test", {"a": 1, "b": 1})
    data = load_dataset("imagefolder:pets", data_root=str(tmp_path / "root"))
    assert Path(data.source) == (tmp_path / "root" / "pets").resolve()


def test_imagefolder_errors(tmp_path):
    with pytest.raises(SslbenchError, match="is not a directory"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(SslbenchError, match="no images in"):
        load_imagefolder(str(tmp_path / "empty"))
    write_pngs(tmp_path / "tiny", {"a": 1, "b": 4})
    with pytest.raises(SslbenchError, match="cannot split"):
        load_imagefolder(str(tmp_path / "tiny"))
    write_pngs(tmp_path / "broken", {"a": 5, "b": 5})
    (tmp_path / "broken" / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(SslbenchError, match="bad.png"):
        load_imagefolder(str(tmp_path / "broken"))
    with pytest.raises(SslbenchError, match="imagefolder:PATH"):
        load_dataset("imagefolder")


# ---- names and torchvision sets -----------------------------------------------


def test_unknown_dataset_did_you_mean():
    with pytest.raises(SslbenchError, match="did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")
    with pytest.raises(SslbenchError, match="did you mean 'cifar10'"):
        load_dataset("cifr10")


def test_torchvision_set_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(SslbenchError) as info:
        load_dataset("cifar10", data_root=str(tmp_path))
    msg = str(info.value)
    assert "cifar-10-batches-py" in msg and "SSLBENCH_DATA" in msg
    assert "download" in msg and "SSLBENCH_NO_DOWNLOAD" in msg and "\n" not in msg


def test_torchvision_set_conversion(tmp_path, monkeypatch):
    import torchvision.datasets

    class FakeCIFAR:
        def __init__(self, root, train=True, download=False):
            assert download is False
            n = 6 if train else 4
            self.data = np.arange(n * 32 * 32 * 3, dtype=np.int64).astype(np.uint8).reshape(n, 32, 32, 3)
            self.targets = list(range(n))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR)
    data = torchvision_sets.load_cifar10(str(tmp_path))
    assert data.train_images.shape == (6, 3, 32, 32) and data.test_images.shape == (4, 3, 32, 32)
    expected = FakeCIFAR(None).data.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(data.train_images.numpy(), expected)
    assert data.train_labels.dtype == torch.int64 and data.source == str(tmp_path)


def _scan_in_child(path: Path) -> subprocess.CompletedProcess:
    """``_scan(path)`` in a child process with a timeout: a symlink loop used to hang it."""
    code = ("import sys; from pathlib import Path; from sslbench.data.imagefolder import _scan; "
            "files, labels, classes = _scan(Path(sys.argv[1])); "
            "print(classes, [labels.count(i) for i in range(len(classes))], len(set(map(str, files))))")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


@pytest.mark.parametrize("loops", [1, 2, 3])
def test_imagefolder_symlink_loops_count_each_image_once_and_do_not_hang(tmp_path, loops):
    write_pngs(tmp_path / "ds", {"a": 3, "b": 2}, size=(8, 8))
    (tmp_path / "ds" / "a" / "sub").mkdir()
    for i in range(loops):  # one loop counted class a 41 times; two hung the loader
        (tmp_path / "ds" / "a" / f"loop{i}").symlink_to(tmp_path / "ds" / "a")
    (tmp_path / "ds" / "a" / "sub" / "up").symlink_to(tmp_path / "ds" / "a")
    (tmp_path / "ds" / "b" / "root").symlink_to(tmp_path / "ds")  # the dataset folder: a loop through b too
    (tmp_path / "ds" / "b" / "other_class").symlink_to(tmp_path / "ds" / "a")
    proc = _scan_in_child(tmp_path / "ds")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["['a',", "'b']", "[3,", "2]", "5"]


def test_imagefolder_still_follows_a_symlinked_folder_that_is_no_loop(tmp_path):
    write_pngs(tmp_path / "ds", {"a": 5, "b": 5}, size=(8, 8))
    write_pngs(tmp_path / "elsewhere", {"more": 2}, size=(8, 8), seed=1)
    (tmp_path / "ds" / "a" / "more").symlink_to(tmp_path / "elsewhere" / "more")
    (tmp_path / "ds" / "a" / "again").symlink_to(tmp_path / "elsewhere" / "more")  # a second link: walked once
    files, labels, _ = _scan(tmp_path / "ds")
    assert labels.count(0) == 7 and labels.count(1) == 5
    assert sorted(p.name for p in files if p.parent.name in ("more", "again")) == ["0.png", "1.png"]
    data = load_imagefolder(str(tmp_path / "ds"), image_size=8)
    assert len(data.train_labels) + len(data.test_labels) == 12
