"""Training resumed from a checkpoint is bitwise the uninterrupted run, for every base method.

In-process and fast: the kill is a raised exception at the ``after_step`` fault
point (the subprocess SIGKILL tests are in ``test_reliability_crash.py``). What
must survive a restart is in the checkpoint: weights (target networks included),
optimiser state, the data-order/augmentation generator and torch's global RNG.
"""

import json
from functools import lru_cache

import pytest
import torch

import sslbench.train as train_mod
from sslbench.augment import TwoViews
from sslbench.backbones import build_backbone
from sslbench.data import load_dataset
from sslbench.errors import SslbenchError
from sslbench.io import save_checkpoint
from sslbench.records import TrainOutcome
from sslbench.registry import registry
from sslbench.layout import RunPaths
from sslbench.train import pretrain

TIMING_KEYS = {"epoch_s", "images_per_s", "data_share"}


class _Killed(Exception):
    pass


@lru_cache(maxsize=1)
def _digits():
    return load_dataset("digits")


def _train(name: str, rdir, width: int = 8, epochs: int = 2) -> tuple[torch.nn.Module, TrainOutcome]:
    data = _digits()
    method = registry("methods").get(name)
    cfg, heads = method.resolve("smoke", {"epochs": epochs})
    torch.manual_seed(0)  # as the runner does before building the model
    model = method.build_model(build_backbone("convnet", data.channels, width), heads)
    views = TwoViews(*method.views, mean=data.mean, std=data.std)
    outcome = pretrain(model, data, views, cfg, RunPaths(rdir, name, 0), seed=0)
    return model, outcome


@pytest.mark.parametrize("name", ["simsiam", "byol", "barlow_twins", "vicreg", "simclr"])
def test_resume_mid_epoch_is_bitwise_identical(tmp_path, monkeypatch, name):
    full, _ = _train(name, tmp_path / "full")

    def kill(point: str) -> None:
        if point == "after_step:15":  # epoch 2 of 2 (11 steps per epoch): epoch 1 is checkpointed
            raise _Killed(point)

    monkeypatch.setattr(train_mod, "maybe_fault", kill)
    with pytest.raises(_Killed):
        _train(name, tmp_path / "killed")
    monkeypatch.undo()
    torch.manual_seed(1234)  # a new process: the global RNG starts elsewhere
    resumed, _ = _train(name, tmp_path / "killed")

    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    rows = [[json.loads(ln) for ln in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("full", "killed")]
    assert [r["epoch"] for r in rows[1]] == [1, 2]
    for x, y in zip(*rows):
        assert {k: v for k, v in x.items() if k not in TIMING_KEYS} == {k: v for k, v in y.items() if k not in TIMING_KEYS}


def test_checkpoint_of_another_architecture_is_refused_with_advice(tmp_path):
    _train("vicreg", tmp_path, width=8)
    with pytest.raises(SslbenchError, match=r"does not fit this run .*delete it to retrain, or use another --out"):
        _train("vicreg", tmp_path, width=4)


def test_checkpoint_missing_an_entry_is_refused(tmp_path):
    _train("vicreg", tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["generator"]
    save_checkpoint(tmp_path / "checkpoint.pt", {**state, "epoch": 1})
    with pytest.raises(SslbenchError, match=r"does not fit this run \(no 'generator' entry\)"):
        _train("vicreg", tmp_path)


def test_kill_between_the_log_line_and_the_checkpoint_rename(tmp_path, monkeypatch):
    """Epoch 2's log line is written, its checkpoint is not: the resume drops the line and redoes the epoch."""
    import sslbench.io as io_mod

    full, _ = _train("vicreg", tmp_path / "full")
    writes = []

    def kill(point: str) -> None:
        if point == "before_rename:checkpoint.pt":
            writes.append(point)
            if len(writes) == 2:
                raise _Killed(point)

    monkeypatch.setattr(io_mod, "maybe_fault", kill)
    with pytest.raises(_Killed):
        _train("vicreg", tmp_path / "killed")
    monkeypatch.undo()
    log = tmp_path / "killed" / "metrics.jsonl"
    assert [json.loads(ln)["epoch"] for ln in log.read_text().splitlines()] == [1, 2]
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not list((tmp_path / "killed").glob("*.tmp"))
    resumed, _ = _train("vicreg", tmp_path / "killed")
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in full.state_dict().items())
    assert [json.loads(ln)["epoch"] for ln in log.read_text().splitlines()] == [1, 2]


#: Where a run can die between the training of one epoch and the next: the log line's and the
#: checkpoint's atomic writes, right after the checkpoint, and the status file's write.
BETWEEN_EPOCHS = ("before_rename:metrics.jsonl", "before_rename:checkpoint.pt", "after_epoch:{epoch}",
                  "before_rename:train_status.json")


@pytest.fixture(scope="module")
def collapsing_run(tmp_path_factory):
    """vicreg_novar on digits: it collapses completely, and the monitor stops it at some epoch."""
    model, outcome = _train("vicreg_novar", tmp_path_factory.mktemp("full"), epochs=30)
    assert outcome.status == "collapsed" and 1 <= outcome.epochs < 30
    return model, outcome


@pytest.mark.parametrize("point", BETWEEN_EPOCHS)
def test_a_kill_around_the_collapse_decision_resumes_to_the_same_encoder(tmp_path, monkeypatch, collapsing_run, point):
    import sslbench.io as io_mod

    full, outcome = collapsing_run
    target = point.format(epoch=outcome.epochs)
    hits = []

    def kill(p: str) -> None:
        if p == target:
            hits.append(p)
            # the log line and checkpoint are written once per epoch: die at the collapse epoch's
            if len(hits) == (1 if p.startswith(("after_epoch", "before_rename:train_status")) else outcome.epochs):
                raise _Killed(p)

    monkeypatch.setattr(train_mod, "maybe_fault", kill)
    monkeypatch.setattr(io_mod, "maybe_fault", kill)
    with pytest.raises(_Killed):
        _train("vicreg_novar", tmp_path, epochs=30)
    monkeypatch.undo()
    resumed, again = _train("vicreg_novar", tmp_path, epochs=30)
    assert again == outcome
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in full.state_dict().items())
    rows = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, outcome.epochs + 1))


def test_a_kill_after_a_timed_mid_epoch_checkpoint_loses_no_step(tmp_path, monkeypatch):
    """With a checkpoint every step, SIGKILL at step 15 resumes at step 14, bitwise the uninterrupted run."""
    full, _ = _train("byol", tmp_path / "full")
    monkeypatch.setattr(train_mod, "MID_EPOCH_CHECKPOINT_S", 0.0)

    def kill(point: str) -> None:
        if point == "after_step:15":
            raise _Killed(point)

    monkeypatch.setattr(train_mod, "maybe_fault", kill)
    with pytest.raises(_Killed):
        _train("byol", tmp_path / "killed")
    monkeypatch.setattr(train_mod, "maybe_fault", lambda point: None)
    state = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["partial"]["step"] == 3  # steps 12-14 of epoch 2 are saved
    resumed, _ = _train("byol", tmp_path / "killed")
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in full.state_dict().items())
    assert "partial" not in torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)


def test_a_mid_epoch_checkpoint_for_another_epoch_length_is_refused(tmp_path):
    _train("vicreg", tmp_path, epochs=1)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    state["partial"] = {"epoch": 1, "perm": torch.arange(5), "step": 40, "sums": "{}", "dim": 0, "t_data": 0.0,
                        "elapsed": 0.0}
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    with pytest.raises(SslbenchError, match=r"mid-epoch state \(epoch 2, step 40\) does not fit 11 steps"):
        _train("vicreg", tmp_path)
