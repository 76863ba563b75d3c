"""Fuzz: encoder checkpoints given to ``eval --encoder``, and the numbers of every numeric flag.

Each call must exit 0, 1 or 2 without a traceback and write nothing outside ``--out``
(:meth:`conftest.Sandbox.call`); a few cases run as a real process, where a traceback
could escape ``main`` (the interpreter's own start and exit).
"""

import io
import string

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

UNIT = settings.default.max_examples
EVAL = ["eval", "--encoder", "enc.pt", "--arch", "convnet", "--width", "8", "--dataset", "digits", "--protocols", "knn",
        "--out", "out"]

tensors = hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.float16]),
                     hnp.array_shapes(min_dims=0, max_dims=4, max_side=3)).map(torch.from_numpy)
values = tensors | st.sampled_from([None, 0, 1.5, "x", [], {}, (1, 2), float("nan")])


@pytest.fixture(scope="module")
def state_dict():
    from sslbench.backbones import build_backbone

    return build_backbone("convnet", 1, 8).state_dict()


@st.composite
def checkpoints(draw, state: dict) -> bytes:
    """A convnet state dict with up to three entries changed, renamed or removed, in one of the layouts
    people save, or its bytes cut and flipped."""
    state = dict(state)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(state)))
        how = draw(st.sampled_from(["value", "drop", "rename", "shape"]))
        if how == "value":
            state[key] = draw(values)
        elif how == "drop":
            del state[key]
        elif how == "rename":
            state[draw(st.sampled_from(["module." + key, "x" + key, "", "state_dict", "model"]))] = state.pop(key)
        elif torch.is_tensor(state[key]):
            state[key] = torch.zeros(*state[key].shape, 2)
    layout = draw(st.sampled_from(["flat", "state_dict", "model", "module", "nested", "list"]))
    obj = {"flat": state, "state_dict": {"state_dict": state, "epoch": 3}, "model": {"model": state},
           "module": {f"module.{k}": v for k, v in state.items()}, "nested": {"a": {"b": {"encoder": state}}},
           "list": [state]}[layout]
    buf = io.BytesIO()
    torch.save(obj, buf)
    raw = buf.getvalue()
    if draw(st.integers(0, 4)) == 0:
        raw = bytearray(raw[: draw(st.integers(1, len(raw)))])
        raw[draw(st.integers(0, len(raw) - 1))] ^= 0xFF
    return bytes(raw)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=2 * UNIT)
@given(data=st.data(), prefix=st.none() | st.sampled_from(["module.", "state_dict.", "encoder.", "x", "."]))
def test_any_encoder_checkpoint_is_evaluated_or_refused(sandboxes, state_dict, data, prefix):
    box = sandboxes()
    (box.root / "enc.pt").write_bytes(data.draw(checkpoints(state_dict)))
    box.call(*EVAL, *(["--key-prefix", prefix] if prefix else []), out="out", keep=(box.root / "enc.pt",))


# ----------------------------------------------------------------------------- numbers on the command line

RUN_FLAGS = ["--epochs", "--seeds", "--jobs", "--threads-per-job", "--max-runs", "--monitor-every", "--time",
             "--cpus-per-task", "--gpus-per-task", "--mem-gb", "--array-parallelism", "--runs-per-task"]
numbers = st.one_of(
    st.integers(-3, 5).map(str), st.integers().map(str), st.floats().map(str),
    st.sampled_from(["0", "-0", "1e20", "1e-3", "1.5", "nan", "inf", "-inf", "0x10", "1_000", " 3 ", "", "1,2", "0,-1",
                     "4294967296", "4294967295", "100001", "١٢", "1e400", "9" * 400]),
    st.text(alphabet=string.digits + ".,-+e_ x", max_size=10))


@settings(max_examples=4 * UNIT)
@given(flags=st.dictionaries(st.sampled_from(RUN_FLAGS), numbers, min_size=1, max_size=3))
def test_any_number_of_run_is_refused_or_planned(sandboxes, flags):
    box = sandboxes()
    argv = ["run", "--preset", "smoke", "--methods", "vicreg_mod", "--floors", "", "--protocols", "knn", "--dry-run",
            "--out", "out"]
    res = box.call(*argv, *(f"{k}={v}" for k, v in flags.items()), out="out")
    if not any(ch.isdigit() for v in flags.values() for ch in v):
        assert res.rc == 2  # no number at all


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=2 * UNIT)
@given(flags=st.dictionaries(st.sampled_from(["--width", "--seed", "--image-size", "--resize"]), numbers,
                             min_size=1, max_size=2),
       normalize=st.none() | st.sampled_from(["dataset", "none", "imagenet", "0.5,0.5", "nan,1", "0.5,0", "1,2,3", "x",
                                              "0.5,-1", "1e400,1"]))
def test_any_number_of_eval_is_refused_or_used(sandboxes, state_dict, flags, normalize):
    box = sandboxes()
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    (box.root / "enc.pt").write_bytes(buf.getvalue())
    extra = [f"{k}={v}" for k, v in flags.items()] + ([f"--normalize={normalize}"] if normalize else [])
    box.call(*EVAL, *extra, out="out", keep=(box.root / "enc.pt",))


@pytest.mark.parametrize("argv", [
    ["run", "--preset", "smoke", "--epochs", "9" * 5000, "--dry-run", "--out", "out"],  # int() of a 5000-digit text
    ["run", "--config", "\udcff.toml", "--dry-run", "--out", "out"],  # a file name that is not UTF-8
    ["leaderboard", "\udcff"],
    ["compare", "a", "b", "--abs-tol", "1e400"],
])
def test_odd_arguments_in_a_real_process_give_one_line(tmp_path, cli, argv):
    res = cli(*argv, subprocess_=True, cwd=tmp_path, env={"PYTHONIOENCODING": "utf-8:surrogateescape"})
    assert res.rc == 2 and "Traceback" not in res.err, res.err
    assert res.err.strip().splitlines()[-1].startswith("sslbench: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
