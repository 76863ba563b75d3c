"""``sslbench eval``: precomputed features and external encoders, and every way their input can be bad."""

import builtins
import io
import json
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sslbench.backbones import ConvNet, SmallResNet
from sslbench.data import fingerprint
from sslbench.features import encoder_hash
from sslbench.protocol import Evaluation, Protocol
from sslbench.registry import registry

ROOT = Path(__file__).resolve().parents[1]


def separable(n_train=80, n_test=40, dim=8, classes=4, seed=0):
    """Classes 10 apart with unit noise: every sensible classifier is exact."""
    rng = np.random.default_rng(seed)
    means = 10 * np.eye(dim, dtype=np.float32)[:classes]
    ytr, yte = np.arange(n_train) % classes, np.arange(n_test) % classes
    return {
        "train_x": means[ytr] + rng.standard_normal((n_train, dim), dtype=np.float32),
        "train_y": ytr.astype(np.int64),
        "test_x": means[yte] + rng.standard_normal((n_test, dim), dtype=np.float32),
        "test_y": yte.astype(np.int64),
    }


def result(out, name, proto):
    return json.loads((out / name / "seed0" / "results" / f"{proto}.json").read_text())


def test_features_round_trip(tmp_path, cli):
    arrays = separable()
    np.savez(tmp_path / "emb.npz", **arrays)
    rc, stdout, _ = cli("eval", "--features", str(tmp_path / "emb.npz"), "--protocols", "knn,linear",
                        "--out", str(tmp_path / "out"))
    assert rc == 0
    for proto in ("knn", "linear"):
        doc = result(tmp_path / "out", "emb", proto)
        assert doc["metrics"]["top1"] == 1.0
        assert doc["schema_version"] == 1 and doc["method"] == "emb" and doc["encoder_kind"] == "external"
        sizes = np.array([80, 40, -1], dtype=np.int64)  # train, test, no transfer split
        assert doc["dataset"]["fingerprint"] == fingerprint(sizes, arrays["train_y"], arrays["test_y"])
        assert doc["config"]["features_fingerprint"] == fingerprint(*arrays.values())
        assert doc["protocol"]["name"] == proto and doc["protocol"]["main_metric"] == "top1"
        assert doc["versions"]["torch"] and "protocol_s" in doc["timings"]
    table = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert list(table["method"]) == ["emb"] and not table["floor"][0]  # a contender, not a floor
    assert "| emb " in stdout


def test_two_encoders_features_of_the_same_data_compare_without_a_fingerprint_warning(tmp_path, cli):
    """The data fingerprint of a features file is of its labels and split sizes, not of the features."""
    a, b = separable(seed=0), separable(seed=1)  # other features, the same labels
    assert not np.array_equal(a["train_x"], b["train_x"])
    for name, arrays in (("a", a), ("b", b)):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        assert cli("eval", "--features", str(tmp_path / f"{name}.npz"), "--protocols", "knn",
                   "--out", str(tmp_path / name)).rc == 0
    assert result(tmp_path / "a", "a", "knn")["dataset"]["fingerprint"] == result(tmp_path / "b", "b", "knn")["dataset"]["fingerprint"]
    proc = cli("compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert "fingerprints differ" not in proc.out + proc.err
    np.savez(tmp_path / "c.npz", **{**a, "test_y": a["test_y"][::-1].copy()})  # other labels: other data
    assert cli("eval", "--features", str(tmp_path / "c.npz"), "--protocols", "knn", "--out", str(tmp_path / "c")).rc == 0
    proc = cli("compare", str(tmp_path / "a"), str(tmp_path / "c"))
    assert "the data fingerprints differ" in proc.out + proc.err


def test_changed_features_under_the_same_name_are_refused(tmp_path, cli):
    args = ["--protocols", "knn", "--out", str(tmp_path / "out"), "--name", "emb"]
    np.savez(tmp_path / "v1.npz", **separable(seed=0))
    assert cli("eval", "--features", str(tmp_path / "v1.npz"), *args).rc == 0
    np.savez(tmp_path / "v2.npz", **separable(seed=1))  # same labels and sizes, other features
    rc, _, err = cli("eval", "--features", str(tmp_path / "v2.npz"), *args)
    assert rc == 2 and "holds a different run or evaluation (differs in: features_fingerprint)" in err
    np.savez(tmp_path / "copy.npz", **separable(seed=0))  # the same arrays in another file: the same evaluation
    rc, _, err = cli("eval", "--features", str(tmp_path / "copy.npz"), *args)
    assert rc == 0 and "knn result present, skipped" in err


def test_name_seed_and_resume(tmp_path, cli):
    np.savez(tmp_path / "emb.npz", **separable())
    args = ["eval", "--features", str(tmp_path / "emb.npz"), "--protocols", "knn", "--out", str(tmp_path),
            "--name", "mine", "--seed", "3"]
    assert cli(*args)[0] == 0
    assert (tmp_path / "mine" / "seed3" / "results" / "knn.json").exists()
    rc, _, err = cli(*args)
    assert rc == 0 and "knn result present, skipped" in err
    np.savez(tmp_path / "emb.npz", **separable(seed=1))  # other features under the same name
    rc, _, err = cli(*args)
    assert rc == 2 and "different run or evaluation" in err and "--name" in err


class NeedsTransfer(Protocol):
    """Test protocol: counts the transfer rows it is given."""

    name = "needs_transfer"
    version = "1"
    requires = frozenset({"labels", "transfer"})
    metrics = {"n": "higher"}
    main_metric = "n"

    def evaluate(self, features, seed):
        return Evaluation({"n": float(len(features.transfer.x))})


class NeedsEncoder(NeedsTransfer):
    name = "needs_encoder"
    requires = frozenset({"encoder"})


@pytest.fixture
def extra_protocols(monkeypatch):
    reg = registry("protocols")
    reg.names()  # load plugins first, so the patch below is undone cleanly
    for cls in (NeedsTransfer, NeedsEncoder):
        monkeypatch.setitem(reg._entries, cls.name, cls)
        monkeypatch.setitem(reg._sources, cls.name, "test")


def test_requirements_select_protocols(tmp_path, cli, extra_protocols):
    arrays = separable()
    np.savez(tmp_path / "plain.npz", **arrays)
    rc, _, err = cli("eval", "--features", str(tmp_path / "plain.npz"), "--out", str(tmp_path / "a"),
                     "--protocols", "knn,needs_transfer,needs_encoder")
    assert rc == 0
    assert "skipped protocol 'needs_transfer': it requires a transfer split" in err
    assert "skipped protocol 'needs_encoder': it requires the encoder" in err
    assert sorted(p.name for p in (tmp_path / "a" / "plain" / "seed0" / "results").iterdir()) == ["knn.json"]
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "tr.npz", **arrays, transfer_x=rng.standard_normal((30, 8)), transfer_y=np.arange(30) % 3)
    rc, _, err = cli("eval", "--features", str(tmp_path / "tr.npz"), "--out", str(tmp_path / "b"),
                     "--protocols", "needs_transfer,knn")
    assert rc == 0 and "skipped" not in err
    assert result(tmp_path / "b", "tr", "needs_transfer")["metrics"] == {"n": 30.0}
    assert result(tmp_path / "b", "tr", "knn")["dataset"]["n_transfer"] == 30


def test_artifacts_saved_like_run(tmp_path, cli):
    np.savez(tmp_path / "e.npz", **separable(n_train=100, n_test=100, classes=5))
    rc, _, err = cli("eval", "--features", str(tmp_path / "e.npz"), "--protocols", "few_shot",
                     "--out", str(tmp_path))
    assert rc == 0, err
    doc = result(tmp_path, "e", "few_shot")
    assert doc["artifacts"] == "few_shot.artifacts.npz"
    with np.load(tmp_path / "e" / "seed0" / "results" / doc["artifacts"], allow_pickle=False) as z:
        assert z.files


def _with(**changes):
    arrays = separable()
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def _nan():
    x = separable()["train_x"]
    x[3, 2] = np.nan
    return x


BAD_FEATURES = {
    "train_x_1d": (_with(train_x=np.zeros(80, np.float32)), ("train_x in", "must be 2-D (N, D)")),
    "test_x_3d": (_with(test_x=np.zeros((40, 8, 1), np.float32)), ("test_x in", "must be 2-D (N, D)")),
    "train_x_nan": (_with(train_x=_nan()), "train_x has NaN or Inf in 1 rows"),
    "test_x_inf": (_with(test_x=np.full((40, 8), np.inf, np.float32)), "test_x has NaN or Inf"),
    "train_y_count": (_with(train_y=np.zeros(79, np.int64)), ("train_y in", "has 79 labels but train_x has 80")),
    "test_y_2d": (_with(test_y=np.zeros((40, 1), np.int64)), ("test_y in", "must be 1-D")),
    "train_y_float": (_with(train_y=np.full(80, 0.5)), ("train_y in", "integer class labels")),
    "test_y_negative": (_with(test_y=-np.ones(40, np.int64)), ("test_y in", "negative labels")),
    "dims_mismatch": (_with(test_x=np.zeros((40, 6), np.float32)), "train_x has 8 dims but test_x has 6"),
    "strings": (_with(train_x=np.array([["a"] * 8] * 80)), ("train_x in", "numeric array")),
    "missing_array": (_with(test_y=None), "lacks array(s) test_y"),
    "unknown_array": (_with(X_train=np.zeros(3)), "unknown array(s) X_train"),
    "transfer_half": (_with(transfer_x=np.zeros((5, 8))), "transfer_x/transfer_y"),
    "transfer_dims": (_with(transfer_x=np.zeros((5, 3)), transfer_y=np.zeros(5, int)), ("transfer_x in", "3 dims")),
    "object_array": (_with(train_y=np.array([1, "a"] * 40, dtype=object)), "refusing to load array train_y"),
}


@pytest.mark.parametrize("case", sorted(BAD_FEATURES))
def test_bad_features_exit_2_naming_the_array(tmp_path, cli, case):
    arrays, match = BAD_FEATURES[case]
    np.savez(tmp_path / "bad.npz", **arrays)
    rc, stdout, err = cli("eval", "--features", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "out"),
                          "--protocols", "knn")
    assert rc == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("sslbench: error: ")
    for m in (match,) if isinstance(match, str) else match:
        assert m in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content, match",
    [
        (None, "does not exist"),
        (pickle.dumps(separable()), "it is a pickle, not an .npz"),
        (b"not an npz", "cannot read features file"),
    ],
)
def test_unreadable_features_file(tmp_path, cli, content, match):
    path = tmp_path / "f.npz"
    if content is not None:
        path.write_bytes(content)
    rc, _, err = cli("eval", "--features", str(path), "--out", str(tmp_path / "out"))
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1


def test_feature_flags_conflict(tmp_path, cli):
    np.savez(tmp_path / "e.npz", **separable())
    rc, _, err = cli("eval", "--features", str(tmp_path / "e.npz"), "--arch", "convnet")
    assert rc == 2 and "--arch go(es) with --encoder" in err


def _header_only(shape, dtype, data_bytes):
    """An ``.npy`` member: a header declaring ``shape`` of ``dtype``, then ``data_bytes`` zero bytes."""
    buf = io.BytesIO()
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * data_bytes


def test_a_tiny_file_declaring_a_trillion_elements_is_refused_from_its_header(tmp_path, cli):
    path = tmp_path / "tiny.npz"
    with zipfile.ZipFile(path, "w") as zf:  # 1 KB on disk; np.load asked for 3.64 TiB
        zf.writestr("train_x.npy", _header_only((10**6, 10**6), "<f4", 64))
        zf.writestr("train_y.npy", _header_only((10**6,), "<i8", 64))
        zf.writestr("test_x.npy", _header_only((2, 2), "<f4", 16))
        zf.writestr("test_y.npy", _header_only((2,), "<i8", 16))
    rc, _, err = cli("eval", "--features", str(path), "--protocols", "knn", "--out", str(tmp_path / "out"))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "array train_x in" in err and "declares shape (1000000, 1000000)" in err and "holds 64 bytes" in err


BOMB = """
import sys
from sslbench.feature_files import load_features
from sslbench.errors import SslbenchError


def peak_kb():  # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's across exec)
    return int(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")))


before = peak_kb()
try:
    load_features(sys.argv[1])
    print("loaded")
except SslbenchError as e:
    print("refused:", e)
print("grew_kb", peak_kb() - before)
"""


def _bomb(path, rows, cols, label_rows):
    """An .npz whose train_x is ``rows x cols`` float32 zeros, deflated (~1000x) and written in chunks."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("train_x.npy", "w", force_zip64=True) as f:
            f.write(_header_only((rows, cols), "<f4", 0))
            chunk = b"\0" * (cols * 4 * 1000)
            for _ in range(rows // 1000):
                f.write(chunk)
        zf.writestr("train_y.npy", _header_only((label_rows,), "<i8", 8 * label_rows))
        zf.writestr("test_x.npy", _header_only((2, cols), "<f4", 8 * cols))
        zf.writestr("test_y.npy", _header_only((2,), "<i8", 16))


@pytest.mark.parametrize("case", ["over_the_limit", "labels_do_not_match"])
def test_a_zip_bomb_is_refused_before_it_is_decompressed(tmp_path, case):
    path = tmp_path / "bomb.npz"
    rows, cols = 50_000, 1000  # 200 MB of float32 zeros in a file of about 200 KB
    _bomb(path, rows, cols, rows if case == "over_the_limit" else 3)
    assert path.stat().st_size < 2_000_000
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if case == "over_the_limit":
        env["SSLBENCH_MAX_FEATURE_BYTES"] = str(100 * 2**20)
    proc = subprocess.run([sys.executable, "-c", BOMB, str(path)], capture_output=True, text=True, timeout=120,
                          env=env, check=False)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    if case == "over_the_limit":
        assert "declares 0.187 GiB of arrays, more than the limit of 0.0977 GiB" in out and "SSLBENCH_MAX_FEATURE_BYTES" in out
    else:
        assert "train_y in" in out and "has 3 labels but train_x has 50000 rows" in out
    grew_mb = int(out.split("grew_kb")[1]) / 1024
    assert grew_mb < 40, f"peak memory grew by {grew_mb:.0f} MB before the refusal"


def test_the_feature_size_limit_variable_must_be_a_positive_count(tmp_path, monkeypatch, cli):
    np.savez(tmp_path / "e.npz", **separable())
    monkeypatch.setenv("SSLBENCH_MAX_FEATURE_BYTES", "lots")
    rc, _, err = cli("eval", "--features", str(tmp_path / "e.npz"), "--out", str(tmp_path / "out"))
    assert rc == 2 and "SSLBENCH_MAX_FEATURE_BYTES must be a positive number of bytes, got 'lots'" in err


def test_a_directory_or_fifo_as_features_says_what_it_is(tmp_path, cli):
    (tmp_path / "dir.npz").mkdir()
    os.mkfifo(tmp_path / "fifo.npz")
    for name, what in (("dir.npz", "is a directory; give the .npz file"), ("fifo.npz", "is not a regular file")):
        rc, _, err = cli("eval", "--features", str(tmp_path / name), "--out", str(tmp_path / "out"))
        assert rc == 2 and what in err and "does not exist" not in err


@pytest.mark.parametrize("big", [10**6, 2**31 - 1])
def test_a_huge_label_costs_no_more_than_a_small_one(tmp_path, cli, big):
    """Labels {0, big} give the same kNN and linear results as {0, 1}: they are remapped to 0..C-1 (kNN asked
    for 1.56 TiB at 2**31 - 1; the linear probe ran past 300 s at 10**6)."""
    arrays = separable(classes=2)
    np.savez(tmp_path / "small.npz", **arrays)
    np.savez(tmp_path / "big.npz", **{**arrays, "train_y": arrays["train_y"] * big, "test_y": arrays["test_y"] * big})
    for name in ("small", "big"):
        rc, _, err = cli("eval", "--features", str(tmp_path / f"{name}.npz"), "--protocols", "knn,linear",
                         "--out", str(tmp_path / "out"), "--name", name)
        assert rc == 0, err
    for proto in ("knn", "linear"):
        small, big_doc = result(tmp_path / "out", "small", proto), result(tmp_path / "out", "big", proto)
        assert big_doc["metrics"] == small["metrics"] and small["metrics"]["top1"] == 1.0
    assert result(tmp_path / "out", "big", "knn")["dataset"]["fingerprint"] != result(tmp_path / "out", "small", "knn")["dataset"]["fingerprint"]


def test_labels_are_remapped_to_contiguous_classes_in_order():
    from sslbench.feature_files import contiguous_labels

    (a, b), classes = contiguous_labels(np.array([5, 9, 5, 40]), np.array([9, 12]))
    assert a.tolist() == [0, 1, 0, 3] and b.tolist() == [1, 2] and classes.tolist() == [5, 9, 12, 40]
    same = np.array([0, 2, 1, 2])
    (c,), classes = contiguous_labels(same)
    assert c is same and classes.tolist() == [0, 1, 2]


def test_a_single_class_file_is_warned_about(tmp_path, cli):
    arrays = separable()
    np.savez(tmp_path / "one.npz", **{**arrays, "train_y": np.full(80, 7), "test_y": np.full(40, 7)})
    rc, _, err = cli("eval", "--features", str(tmp_path / "one.npz"), "--protocols", "knn",
                     "--out", str(tmp_path / "out"))
    assert rc == 0 and result(tmp_path / "out", "one", "knn")["metrics"]["top1"] == 1.0
    line = next(ln for ln in err.splitlines() if "warning" in ln)
    assert line.startswith("sslbench: warning: ") and "train_y holds a single class (7)" in line
    assert "every accuracy is 1.0 by construction" in line


# ----------------------------------------------------------------------------- encoders


@pytest.fixture(scope="module")
def convnet4():
    torch.manual_seed(0)
    return ConvNet(1, 4).eval()


def _eval_encoder(cli, out, path, *extra):
    return cli("eval", "--encoder", str(path), "--dataset", "digits", "--protocols", "knn",
               "--out", str(out), *extra)


def test_state_dict_and_torchscript_encoders(tmp_path, cli, convnet4):
    torch.save(convnet4.state_dict(), tmp_path / "sd.pt")
    rc, _, err = _eval_encoder(cli, tmp_path, tmp_path / "sd.pt", "--arch", "convnet", "--width", "4")
    assert rc == 0, err
    sd = result(tmp_path, "sd", "knn")
    assert 0.3 < sd["metrics"]["top1"] <= 1.0
    assert sd["encoder_hash"] == encoder_hash(convnet4)
    assert sd["config"]["encoder_format"] == "state_dict" and sd["config"]["arch"] == "convnet"
    assert sd["dataset"]["name"] == "digits" and len(sd["dataset"]["fingerprint"]) == 64

    # sslbench's own checkpoint.pt: the backbone.* entries of "model"
    proj = {"projector.0.weight": torch.zeros(2, 32)}
    full = {"model": {**{f"backbone.{k}": v for k, v in convnet4.state_dict().items()}, **proj}, "epoch": 3}
    torch.save(full, tmp_path / "checkpoint.pt")
    rc, _, err = _eval_encoder(cli, tmp_path, tmp_path / "checkpoint.pt", "--arch", "convnet", "--width", "4")
    assert rc == 0, err
    assert result(tmp_path, "checkpoint", "knn")["metrics"] == sd["metrics"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in recent torch; still a supported input
        torch.jit.trace(convnet4, torch.zeros(2, 1, 8, 8)).save(str(tmp_path / "ts.pt"))
    rc, _, err = _eval_encoder(cli, tmp_path, tmp_path / "ts.pt")  # no --arch needed
    assert rc == 0, err
    ts = result(tmp_path, "ts", "knn")
    assert ts["config"]["encoder_format"] == "torchscript"
    assert ts["metrics"] == pytest.approx(sd["metrics"], abs=1e-6)


@pytest.mark.parametrize(
    "model, args, match",
    [
        (SmallResNet(1, 4), ["--arch", "convnet", "--width", "4"],
         "is not a state dict of backbone 'convnet': missing keys features.0.weight"),
        (ConvNet(1, 8), ["--arch", "convnet", "--width", "4"], "has shape (8, 1, 3, 3) in the file but (4, 1, 3, 3)"),
        (ConvNet(1, 4), [], "name its architecture with --arch"),
        (ConvNet(1, 4), ["--arch", "convnett"], "did you mean 'convnet'"),
    ],
)
def test_state_dict_for_another_arch(tmp_path, cli, model, args, match):
    torch.save(model.state_dict(), tmp_path / "enc.pt")
    rc, _, err = _eval_encoder(cli, tmp_path / "out", tmp_path / "enc.pt", *args)
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "enc").exists()


def test_wrong_arch_message_lists_unexpected_keys(tmp_path, cli):
    torch.save(SmallResNet(1, 4).state_dict(), tmp_path / "enc.pt")
    _, _, err = _eval_encoder(cli, tmp_path, tmp_path / "enc.pt", "--arch", "convnet", "--width", "4")
    assert "unexpected keys stem.0.weight" in err and "(+" in err and "check --arch" in err


class Evil:
    """Unpickling this object would run code that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle", "checkpoint"])
def test_malicious_encoder_pickle_is_refused(tmp_path, cli, how):
    marker, path = tmp_path / "PWNED", tmp_path / "evil.pt"
    evil = Evil(marker)
    if how == "torch.save":
        torch.save(evil, path)
    elif how == "pickle":
        path.write_bytes(pickle.dumps(evil))
    else:
        torch.save({"model": {"backbone.features.0.weight": torch.zeros(1)}, "hook": evil}, path)
    rc, _, err = _eval_encoder(cli, tmp_path / "out", path, "--arch", "convnet")
    assert rc == 2 and "refusing to load" in err and len(err.strip().splitlines()) == 1
    assert "Unsupported" in err and "\x1b" not in err  # torch's reason, without its paragraphs
    assert not marker.exists()


def test_malicious_features_are_refused(tmp_path, cli):
    marker = tmp_path / "PWNED"
    np.savez(tmp_path / "evil.npz", **_with(train_y=np.array([Evil(marker)] * 80, dtype=object)))
    (tmp_path / "evil2.npz").write_bytes(pickle.dumps(Evil(marker)))
    for name in ("evil.npz", "evil2.npz"):
        rc, _, err = cli("eval", "--features", str(tmp_path / name), "--out", str(tmp_path / "out"))
        assert rc == 2 and "refusing to load" in err
    assert not marker.exists()


def test_missing_encoder_file(tmp_path, cli):
    rc, _, err = _eval_encoder(cli, tmp_path, tmp_path / "nope.pt", "--arch", "convnet")
    assert rc == 2 and "encoder file" in err and "does not exist" in err


class _Crashes(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 16:
            raise RuntimeError("images must be at least 16 px")
        return x.flatten(1)


def test_encoder_that_fails_on_the_images(tmp_path, cli):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_Crashes()).save(str(tmp_path / "small.pt"))
        torch.jit.trace(ConvNet(2, 4).eval(), torch.zeros(1, 2, 8, 8)).save(str(tmp_path / "two.pt"))
    rc, _, err = _eval_encoder(cli, tmp_path, tmp_path / "small.pt")
    assert rc == 2 and "failed on digits images of shape (B, 1, 8, 8)" in err and "at least 16 px" in err
    assert not (tmp_path / "small").exists()  # nothing written: a fixed encoder can reuse the name
    rc, _, err = _eval_encoder(cli, tmp_path, tmp_path / "two.pt")
    assert rc == 2 and "2-channel images but digits has 1" in err


def test_an_rgb_encoder_on_grey_images_sees_them_replicated(tmp_path, cli):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(ConvNet(3, 4).eval(), torch.zeros(1, 3, 8, 8)).save(str(tmp_path / "rgb.pt"))
    rc, _, err = _eval_encoder(cli, tmp_path, tmp_path / "rgb.pt")
    assert rc == 0, err
    assert result(tmp_path, "rgb", "knn")["config"]["inputs"]["grey_to_rgb"] is True


def test_unknown_protocol_fails_before_loading(tmp_path, cli):
    rc, _, err = _eval_encoder(cli, tmp_path, tmp_path / "nope.pt", "--protocols", "knn,linaer")
    assert rc == 2 and "did you mean 'linear'" in err


def test_encoder_needs_dataset(tmp_path, cli, convnet4):
    torch.save(convnet4.state_dict(), tmp_path / "sd.pt")
    rc, _, err = cli("eval", "--encoder", str(tmp_path / "sd.pt"), "--arch", "convnet")
    assert rc == 2 and "--encoder needs --dataset" in err


def test_a_torchvision_checkpoint_in_a_peer_layout_evaluates_through_the_cli(tmp_path, cli):
    """A DINO-style checkpoint of a torchvision ResNet-18 on grey digits: grey replicated to RGB, ImageNet
    statistics, 32 px; what was loaded and how the inputs were matched is recorded."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "dino.pth")
    rc, _, err = cli("eval", "--encoder", str(tmp_path / "dino.pth"), "--arch", "torchvision:resnet18",
                     "--dataset", "digits", "--image-size", "32", "--normalize", "imagenet",
                     "--protocols", "knn", "--out", str(tmp_path / "out"))
    assert rc == 0, err
    assert "dino checkpoint" in err and "teacher.backbone." in err
    doc = result(tmp_path / "out", "dino", "knn")
    assert doc["config"]["encoder"]["format"] == "dino" and doc["config"]["encoder"]["n_missing"] == 0
    assert doc["config"]["inputs"]["image_size"] == 32 and doc["config"]["inputs"]["normalize"] == "imagenet"
    assert doc["config"]["inputs"]["grey_to_rgb"] is True and 0.0 < doc["metrics"]["top1"] <= 1.0
    rc, _, err = cli("eval", "--features", str(tmp_path / "f.npz"), "--image-size", "32")
    assert rc == 2 and "--image-size go(es) with --encoder" in err
