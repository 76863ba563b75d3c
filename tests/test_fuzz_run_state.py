"""Fuzz: what ``sslbench run`` reads back from its own ``--out`` on a rerun, damaged.

A finished trained run is copied and one of its files damaged: ``config.json``,
``train_status.json``, the training ``checkpoint.pt``, a feature-cache entry's
``complete.json`` or one of its arrays (with or without its digest updated to match).
The rerun must recompute what it can, refuse the rest with a per-run ``ERROR`` line,
never show a traceback, and write nothing outside ``--out`` nor touch the user's files
there (:meth:`conftest.Sandbox.call`).
"""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import damaged
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

UNIT = settings.default.max_examples
RUN = ["run", "--preset", "smoke", "--methods", "vicreg_mod", "--floors", "", "--protocols", "knn", "--out", "out"]
SEED_DIR = ("vicreg_mod", "seed0")
STATUS_KEYS = {"status": str, "epochs": int}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, cli_session):
    """A finished ``vicreg_mod`` x knn smoke run, and the same with a collapse recorded in ``train_status.json``."""
    base = tmp_path_factory.mktemp("trained") / "out"
    res = cli_session(*RUN[:-1], str(base))
    assert res.rc == 0, res.err
    return base


def _copy(trained_run, box):
    out = shutil.copytree(trained_run, box.root / "out")
    (out / "NOTES.md").write_text("mine")
    (out.joinpath(*SEED_DIR) / "notes.txt").write_text("mine")
    return out, (out / "NOTES.md", out.joinpath(*SEED_DIR) / "notes.txt")


def _rerun(box, out, keep, malformed=False):
    shutil.rmtree(out.joinpath(*SEED_DIR, "results"))  # so the run reads its state back instead of skipping
    return box.call(*RUN, out="out", keep=keep, malformed=malformed)


@settings(max_examples=2 * UNIT)
@given(data=st.data(), which=st.sampled_from(["config.json", "train_status.json"]))
def test_a_damaged_run_config_or_status_is_recomputed_or_refused(sandboxes, trained_run, data, which):
    box = sandboxes()
    out, keep = _copy(trained_run, box)
    path = out.joinpath(*SEED_DIR, which)
    doc = json.loads(path.read_text()) if path.exists() else {"status": "collapsed", "epochs": 3, "step": 30,
                                                                 "message": "complete collapse"}
    raw, breaks = data.draw(damaged(doc, {} if which == "config.json" else STATUS_KEYS))
    path.write_bytes(raw)
    # a damaged identity makes the directory another run's (refused); a damaged status is refused too
    changed = raw != json.dumps(doc).encode()
    _rerun(box, out, keep, malformed=breaks or (which == "config.json" and changed))


# ----------------------------------------------------------------------------- the training checkpoint

nasty_values = st.one_of(
    st.sampled_from([None, 0, -1, 2**63, 10**30, 3.5, float("nan"), "", "{", "[1, 2]", '{"a": 1}', "null", "garbage",
                     [], {}, {"a": 1}, b"\x00", True]),
    hnp.arrays(st.sampled_from([np.float32, np.int64, np.uint8, np.bool_]), hnp.array_shapes(min_dims=0, max_dims=2,
                                                                                        max_side=3)).map(torch.from_numpy),
)


@st.composite
def damaged_state(draw, state: dict) -> tuple[bytes, bool]:
    """``(bytes, whether it is damaged)``: the checkpoint with up to three entries replaced or removed, or cut/flipped."""
    buf = io.BytesIO()
    how = draw(st.sampled_from(["entries", "entries", "entries", "bytes"]))
    if how == "bytes":
        torch.save(state, buf)
        raw = bytearray(buf.getvalue()[: draw(st.integers(1, len(buf.getvalue())))])
        raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
        return bytes(raw), False  # a flipped byte in tensor data still loads: not necessarily damaged
    state = dict(state)
    keys = [*state, "identity", "stop", "stop", "epoch", "partial", "model.0", "optimizer.state"]
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys))
        if key.startswith("model."):
            model = dict(state["model"]) if isinstance(state.get("model"), dict) else {}
            name = draw(st.sampled_from(sorted(model) or ["x"]))
            model[name] = draw(nasty_values)
            state["model"] = model
        elif key == "optimizer.state":
            state["optimizer"] = {"state": draw(nasty_values), "param_groups": draw(nasty_values)}
        elif key == "partial":
            state["partial"] = draw(nasty_values | st.fixed_dictionaries(
                {k: nasty_values for k in ("epoch", "perm", "step", "sums", "dim", "t_data", "elapsed")}))
        elif key in ("identity", "stop") and draw(st.booleans()):  # JSON texts: damaged, or another shape
            state[key] = draw(st.sampled_from(["", "{", "[" * 100_000, "[1]", '{"status": "collapsed"}', "null",
                                               '{"status": "collapsed", "epochs": 1e400}', '"x"']))
        elif draw(st.booleans()):
            state.pop(key, None)
        else:
            state[key] = draw(nasty_values)
    torch.save(state, buf)
    return buf.getvalue(), False


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=2 * UNIT)
@given(data=st.data())
def test_a_damaged_training_checkpoint_is_refused_or_resumed(sandboxes, trained_run, data):
    box = sandboxes()
    out, keep = _copy(trained_run, box)
    ckpt = out.joinpath(*SEED_DIR, "checkpoint.pt")
    raw, _ = data.draw(damaged_state(torch.load(ckpt, weights_only=True)))
    ckpt.write_bytes(raw)
    _rerun(box, out, keep)


# ----------------------------------------------------------------------------- the feature cache

CACHE_KEYS = {"version": None, "arrays": dict}


def _entries(out):
    return sorted(p for p in (out / "cache" / "features").iterdir() if (p / "complete.json").exists())


@settings(max_examples=UNIT)
@given(data=st.data())
def test_a_damaged_cache_manifest_is_recomputed(sandboxes, trained_run, data):
    box = sandboxes()
    out, keep = _copy(trained_run, box)
    entry = data.draw(st.sampled_from(_entries(out)))
    doc = json.loads((entry / "complete.json").read_text())
    if data.draw(st.booleans()):  # drop arrays from the manifest, each digest still right
        kept = data.draw(st.lists(st.sampled_from(sorted(doc["arrays"])), unique=True))
        doc["arrays"] = {k: doc["arrays"][k] for k in kept}
        raw = json.dumps(doc).encode()
    else:
        raw, _ = data.draw(damaged(doc, CACHE_KEYS))
    (entry / "complete.json").write_bytes(raw)
    _rerun(box, out, keep)


@settings(max_examples=UNIT)
@given(data=st.data(), digest_too=st.booleans())
def test_a_damaged_cache_array_is_recomputed_or_refused(sandboxes, trained_run, data, digest_too):
    """A changed array is recomputed; one whose digest was changed to match it too is checked before use."""
    from sslbench.features import _digest

    box = sandboxes()
    out, keep = _copy(trained_run, box)
    entry = data.draw(st.sampled_from(_entries(out)))
    doc = json.loads((entry / "complete.json").read_text())
    name = data.draw(st.sampled_from(sorted(doc["arrays"])))
    old = np.load(entry / f"{name}.npy")
    shape = data.draw(st.sampled_from([old.shape, old.shape[:1], (old.shape[0] + 1, *old.shape[1:]), (0, *old.shape[1:]),
                                       (*old.shape[:-1], old.shape[-1] + 1), ()]))
    arr = data.draw(hnp.arrays(data.draw(st.sampled_from([old.dtype, np.float64, np.int64, np.float16, np.bool_])), shape,
                               elements=None))
    np.save(entry / f"{name}.npy", arr, allow_pickle=False)
    if digest_too:
        doc["arrays"][name] = _digest(np.load(entry / f"{name}.npy"))
        (entry / "complete.json").write_text(json.dumps(doc))
    _rerun(box, out, keep)
