"""SIGKILL `sslbench run` at each stage, rerun it, and get exactly the uninterrupted run's outputs.

One tiny run (smoke preset on digits, one method, knn + collapse) is killed by
``SSLBENCH_FAULT`` (see :mod:`sslbench.faults`) in training, in feature
extraction, after a protocol computed its metrics and between the temp-file
write and the rename of a result; the rerun of the same command must leave the
same files with the same numbers, no temp file, no lock and nothing twice.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

ARGS = ["run", "--preset", "smoke", "--methods", "vicreg_mod", "--floors", "", "--protocols", "knn,collapse"]
RUN = Path("vicreg_mod/seed0")
TIMING_KEYS = {"epoch_s", "images_per_s", "data_share"}  # the only per-epoch fields allowed to differ


def sslbench(cli, out: Path, fault: str = ""):
    """The run of this module in a new process, killed at ``fault`` when one is named."""
    return cli(*ARGS, "--out", str(out), env={"OMP_NUM_THREADS": "1", "SSLBENCH_FAULT": fault}, subprocess_=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cli_session) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = sslbench(cli_session, out)
    assert proc.rc == 0, proc.err
    return out


def _files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def _close(a, b, path: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-6, nan_ok=True), path
    else:
        assert a == b, path


def assert_same_outputs(ref: Path, out: Path) -> None:
    """Same files, same metrics, bitwise-equal training, no temp file, no lock, nothing twice."""
    assert _files(out) == _files(ref)
    assert not [p for p in out.rglob("*.tmp")] and not (out / ".sslbench.lock").exists()
    for path in sorted((ref / RUN / "results").glob("*.json")):
        a, b = json.loads(path.read_text()), json.loads((out / RUN / "results" / path.name).read_text())
        _close(a["metrics"], b["metrics"], path.name)
        assert a["encoder_hash"] == b["encoder_hash"] and a["train"] == b["train"]
    for path in sorted((ref / RUN / "results").glob("*.npz")):
        with np.load(path) as x, np.load(out / RUN / "results" / path.name) as y:
            assert x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)
    rows = [[json.loads(ln) for ln in (d / RUN / "metrics.jsonl").read_text().splitlines()] for d in (ref, out)]
    assert [r["epoch"] for r in rows[1]] == [1, 2, 3]  # one line per epoch, none twice
    for a, b in zip(*rows):
        assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == {k: v for k, v in b.items() if k not in TIMING_KEYS}
    ca, cb = (torch.load(d / RUN / "checkpoint.pt", weights_only=True) for d in (ref, out))
    assert ca["model"].keys() == cb["model"].keys()
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])  # bitwise, RNG restored
    assert torch.equal(ca["generator"], cb["generator"]) and torch.equal(ca["torch_rng"], cb["torch_rng"])
    for npy in sorted((ref / "cache").rglob("*.npy")):
        assert np.array_equal(np.load(npy), np.load(out / npy.relative_to(ref)))
    board = [[{k: v for k, v in row.items() if k != "train.minutes"}
              for row in json.loads((d / "leaderboard.json").read_text())["rows"]] for d in (ref, out)]
    _close({"rows": dict(enumerate(board[0]))}, {"rows": dict(enumerate(board[1]))}, "leaderboard")


# (fault point, what the killed run must have left behind)
KILLS = {
    "after_step:17": "training: mid-epoch 2, epoch 1 checkpointed",
    "during_features": "feature extraction, after the train split",
    "before_result:knn": "knn metrics computed, nothing written",
    "before_rename:collapse.json": "collapse.json temp file written and fsynced, not renamed",
}


@pytest.mark.parametrize("point", list(KILLS))
def test_sigkill_then_rerun_equals_the_uninterrupted_run(reference, tmp_path, cli, point):
    out = tmp_path / "out"
    killed = sslbench(cli, out, point)
    assert killed.rc == -9, killed.err[-2000:]
    results = out / RUN / "results"
    epochs = [json.loads(ln)["epoch"] for ln in (out / RUN / "metrics.jsonl").read_text().splitlines()]
    if point.startswith("after_step"):
        assert epochs == [1] and not results.exists()
    else:
        assert epochs == [1, 2, 3] and not (results / "collapse.json").exists()
    if point.startswith("before_rename"):
        assert (results / "knn.json").exists() and list(results.glob(".collapse.json.*.tmp"))
    assert (out / ".sslbench.lock").exists()  # left by the dead process

    resumed = sslbench(cli, out)
    assert resumed.rc == 0, resumed.err[-2000:]
    assert "took over the lock" in resumed.err  # the dead run's lock, reported
    assert ("resuming from epoch 1/3" in resumed.err) == point.startswith("after_step")
    assert_same_outputs(reference, out)
    history = json.loads((out / "manifest.json").read_text())["invocations"]
    assert [h["status"] for h in history] == ["killed", "finished"]


@pytest.mark.parametrize("signame, point", [("SIGTERM", "after_step:17"), ("SIGINT", "after_step:17"),
                                            ("SIGTERM", "during_features")])
def test_sigterm_or_ctrl_c_stops_cleanly_and_the_rerun_resumes(reference, tmp_path, cli, signame, point):
    """Training finishes its step and checkpoints mid-epoch; elsewhere the command stops at once."""
    out = tmp_path / "out"
    stopped = sslbench(cli, out, f"{signame}:{point}")
    assert stopped.rc == {"SIGTERM": 143, "SIGINT": 130}[signame], stopped.err[-2000:]
    word = {"SIGTERM": "terminated (SIGTERM)", "SIGINT": "interrupted (Ctrl-C)"}[signame]
    assert stopped.err.strip().splitlines()[-1] == f"sslbench: {word}; rerun the same command to resume"
    assert not (out / ".sslbench.lock").exists() and not list(out.rglob("*.tmp"))
    assert json.loads((out / "manifest.json").read_text())["invocations"][-1]["message"] == word
    if point.startswith("after_step"):
        state = torch.load(out / RUN / "checkpoint.pt", weights_only=True)
        assert state["epoch"] == 1 and state["partial"]["step"] == 17 - 11  # 11 steps per epoch
    resumed = sslbench(cli, out)
    assert resumed.rc == 0, resumed.err[-2000:]
    if point.startswith("after_step"):
        assert "resuming from epoch 1/3, step 6/11 of epoch 2" in resumed.err
    assert_same_outputs(reference, out)
