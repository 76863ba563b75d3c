"""Bad input gets one actionable line on stderr and exit code 2, never a traceback (unless --debug).

One table, one case per kind of bad input, through the CLI in this process.
"""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sslbench.data.fashion_mnist as fashion_mnist
from sslbench.backbones import build_backbone
from sslbench.errors import SslbenchError

SMOKE = ["run", "--preset", "smoke", "--methods", "vicreg_mod", "--references", "", "--protocols", "knn"]


def _features(tmp: Path, **change) -> list[str]:
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.normal(size=(40, 4)).astype(np.float32), "train_y": np.arange(40) % 4,
              "test_x": rng.normal(size=(12, 4)).astype(np.float32), "test_y": np.arange(12) % 4}
    arrays.update(change)
    np.savez(tmp / "f.npz", **arrays)
    return ["eval", "--features", str(tmp / "f.npz"), "--protocols", "knn"]


def _nan(shape, where, value):
    x = np.zeros(shape, np.float32)
    x[where] = value
    return x


def _checkpoint(tmp: Path, how: str) -> list[str]:
    buf = io.BytesIO()
    torch.save((build_backbone("resnet18", 1, 64) if how == "other_arch" else build_backbone("convnet", 1, 8)).state_dict(), buf)
    data = buf.getvalue()
    data = {"truncated": data[: len(data) // 2], "corrupt": b"PK\x03\x04" + bytes(range(256)) * 4}.get(how, data)
    (tmp / "enc.pt").write_bytes(data)
    return ["eval", "--encoder", str(tmp / "enc.pt"), "--arch", "convnet", "--width", "8", "--dataset", "digits"]


def _toml(tmp: Path, text: str) -> list[str]:
    (tmp / "c.toml").write_text(text)
    return [*SMOKE, "--config", str(tmp / "c.toml")]


def _missing_data(tmp: Path, monkeypatch) -> list[str]:
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp / "no-debian-package")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp / "empty-cache"))
    monkeypatch.setenv("SSLBENCH_NO_DOWNLOAD", "1")
    (tmp / "empty-root").mkdir()
    return [*SMOKE, "--dataset", "fashion-mnist", "--data-root", str(tmp / "empty-root")]


def _under_a_file(tmp: Path) -> list[str]:
    (tmp / "a-file").write_text("a regular file: nothing can be created under it, not even by root")
    return [*SMOKE, "--out", str(tmp / "a-file" / "out")]


# case -> (argv builder, substrings the one line must hold)
CASES = {
    "unknown_method": (lambda t, m: [*SMOKE[:3], "--methods", "vicreg_mdo"], ["unknown method 'vicreg_mdo'", "did you mean 'vicreg_mod'"]),
    "unknown_protocol": (lambda t, m: [*SMOKE[:-1], "knnn"], ["unknown protocol 'knnn'", "did you mean 'knn'"]),
    "unknown_dataset": (lambda t, m: [*SMOKE, "--dataset", "fashion_mnist"], ["did you mean 'fashion-mnist'"]),
    "unknown_preset": (lambda t, m: [*SMOKE, "--preset", "quik"], ["unknown preset 'quik'", "did you mean 'quick'"]),
    "toml_syntax": (lambda t, m: _toml(t, "[run\nseeds = [0]\n"), ["c.toml: TOML syntax error", "line 1"]),
    "toml_unknown_key": (lambda t, m: _toml(t, "[run]\nseed = [0]\n"), ["c.toml [run] 'seed'", "did you mean 'seeds'"]),
    "toml_wrong_type": (lambda t, m: _toml(t, "[train]\nlr = 'fast'\n"), ["c.toml [train]: 'lr' must be", "'fast' (str)"]),
    "toml_not_a_table": (lambda t, m: _toml(t, "run = 3\n"), ["c.toml [run] must be a table"]),
    "toml_not_utf8": (lambda t, m: (t / "c.toml").write_bytes(b"[run]\nout = '\xff'\n") and [*SMOKE, "--config", str(t / "c.toml")],
                      ["c.toml: not UTF-8", "save the config as UTF-8"]),
    "toml_escaping_variant": (lambda t, m: _toml(t, '[variants."../evil"]\nbase = "vicreg"\n'),
                              ["variant name '../evil' cannot be used", "rename it"]),
    "missing_data": (_missing_data, ["Fashion-MNIST not found. Get it one of three ways", "apt-get install"]),
    "truncated_checkpoint": (lambda t, m: _checkpoint(t, "truncated"), ["enc.pt is truncated or corrupt", "save it again"]),
    "corrupt_checkpoint": (lambda t, m: _checkpoint(t, "corrupt"), ["enc.pt is truncated or corrupt"]),
    "checkpoint_of_another_arch": (lambda t, m: _checkpoint(t, "other_arch"), ["not a state dict of backbone 'convnet'", "check --arch"]),
    "features_wrong_shape": (lambda t, m: _features(t, test_x=np.zeros((12, 4, 1), np.float32)), ["test_x in", "must be 2-D (N, D)"]),
    "features_nan": (lambda t, m: _features(t, train_x=_nan((40, 4), (3, 1), np.nan)), ["train_x has NaN or Inf in 1 rows"]),
    "features_inf": (lambda t, m: _features(t, test_x=_nan((12, 4), (0, 0), -np.inf)), ["test_x has NaN or Inf in 1 rows"]),
    "features_mismatched_labels": (lambda t, m: _features(t, train_y=np.arange(39) % 4), ["has 39 labels but train_x has 40"]),
    "out_not_writable": (lambda t, m: _under_a_file(t), ["cannot create output directory", "pass another --out"]),
    "toml_epochs_zero": (lambda t, m: _toml(t, "[train]\nepochs = 0\n"), ["c.toml [train]: 'epochs' must be an integer in 1..100000, got 0"]),
    "toml_width_zero": (lambda t, m: _toml(t, "[run]\nwidth = 0\n"), ["c.toml [run]: 'width' must be an integer in 1..4096, got 0"]),
    "toml_lr_nan": (lambda t, m: _toml(t, "[train.vicreg_mod]\nlr = nan\n"), ["c.toml [train.vicreg_mod]: 'lr' must be a finite number > 0"]),
    "toml_one_crop_scale": (lambda t, m: _toml(t, "[views]\ncrop_scale = [0.5]\n"), ["c.toml [views]: 'crop_scale' must be [lo, hi]"]),
    "toml_variant_own_base": (lambda t, m: _toml(t, '[variants.v1]\nbase = "v1"\nloss = {cov_coeff = 2.0}\n'),
                              ["variant 'v1' is its own base"]),
    "config_dev_zero": (lambda t, m: [*SMOKE, "--config", "/dev/zero"], ["config file /dev/zero is not a regular file"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, cli, case):
    build, expected = CASES[case]
    monkeypatch.chdir(tmp_path)  # default --out lands here
    argv = build(tmp_path, monkeypatch)
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    rc, _, err = cli(*argv)
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines[-1].startswith("sslbench: error: ") and "Traceback" not in err
    if case != "missing_data":  # the others fail before anything is logged
        assert len(lines) == 1, err
    for text in expected:
        assert text in lines[-1]


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--epochs", "0"], "argument --epochs: must be an integer in 1..100000, got 0"),  # trained the preset's epochs
        (["--epochs", "-3"], "argument --epochs: must be an integer in 1..100000, got -3"),  # 'finished' untrained
        (["--epochs", "1e20"], "argument --epochs: must be an integer in 1..100000, got 100000000000000000000"),
        (["--seeds", "0,-1"], "argument --seeds: must each be an integer in 0..4294967295, got -1"),  # crashed after training
        (["--seeds", "100000000000000000000"], "argument --seeds: must each be an integer in 0..4294967295"),
        (["--seeds", "1e20"], "argument --seeds: must each be an integer in 0..4294967295"),
        (["--out", ""], "argument --out: must not be empty"),
    ],
)
def test_numeric_flags_out_of_range_stop_before_any_work(tmp_path, monkeypatch, cli, flags, expected):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(*SMOKE, "--out", str(tmp_path / "out"), *flags)
    assert rc == 2 and err.startswith(f"sslbench: error: {expected}") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no --out, no data: nothing started


@pytest.mark.parametrize("flags, expected", [(["--width", "-8"], "argument --width: must be an integer in 1..4096, got -8"),
                                             (["--width", "0"], "argument --width: must be an integer in 1..4096, got 0"),
                                             (["--seed", "-1"], "argument --seed: must be an integer in 0..4294967295")])
def test_eval_numeric_flags_out_of_range(tmp_path, cli, flags, expected):
    (tmp_path / "enc.pt").write_bytes(b"never read")
    rc, _, err = cli("eval", "--encoder", str(tmp_path / "enc.pt"), "--arch", "convnet", "--dataset", "digits",
                     "--out", str(tmp_path / "out"), *flags)
    assert rc == 2 and err.startswith(f"sslbench: error: {expected}") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(cli):
    with pytest.raises(SslbenchError, match="did you mean 'vicreg_mod'"):
        cli("--debug", *SMOKE[:3], "--methods", "vicreg_mdo")


def test_disk_full_while_writing_stops_with_one_line_and_loses_nothing(tmp_path, monkeypatch, cli):
    out = tmp_path / "out"
    argv = ["run", "--preset", "smoke", "--methods", "", "--floors", "raw_pixels,random_init",
            "--protocols", "knn,collapse", "--out", str(out)]
    monkeypatch.setenv("SSLBENCH_FAULT", "enospc:collapse.json")  # the disk fills up halfway through this file
    rc, _, err = cli(*argv)
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("sslbench: error: cannot write ") and "collapse.json: No space left on device" in last
    assert "free some space" in last and "rerun the same command" in last and "Traceback" not in err
    assert "the sweep goes on" not in err and "random_init" not in err  # a full disk stops the sweep
    results = out / "raw_pixels" / "seed0" / "results"
    assert sorted(p.name for p in results.glob("*.json")) == ["knn.json"]  # kept; no half-written collapse.json
    assert not list(out.rglob("*.tmp")) and not (out / ".sslbench.lock").exists()
    entry = json.loads((out / "manifest.json").read_text())["invocations"][-1]
    assert entry["status"] == "error" and "No space left on device" in entry["message"]

    monkeypatch.delenv("SSLBENCH_FAULT")
    knn = (results / "knn.json").read_text()
    assert cli(*argv).rc == 0
    assert (results / "collapse.json").exists() and (results / "knn.json").read_text() == knn  # not recomputed
