"""The early-call rule applied during training (``TrainConfig.early_call_every``): a run it calls stops
there and says so (``stopped_early`` with the step, the share done and the reading), a rerun does not
retrain it, a kill and resume stops at the same step with the same weights, and a healthy run goes on.

The models are constructed, without batch norm, so collapse is certain and fast: on the ``smoke``
preset the real recipes (VICReg with ``var_coeff = 0`` included) read healthy or dimensional by the
end of two epochs, and every one reads ``complete`` over its first steps, while eval-mode batch norm
still has its initial running statistics.
"""

import dataclasses
import json
from functools import lru_cache

import pytest
import torch
from torch import nn

import sslbench.train as train_mod
from sslbench.augment import TwoViews
from sslbench.config import load_toml
from sslbench.data import load_dataset
from sslbench.errors import SslbenchError
from sslbench.layout import RunPaths
from sslbench.method import StepOutput, TrainConfig, ViewConfig
from sslbench.records import TrainOutcome
from sslbench.train import pretrain

#: 320 digits in batches of 32: 10 steps per epoch, 30 in 3 epochs.
N_IMAGES, STEPS_PER_EPOCH, EPOCHS = 320, 10, 3
CFG = TrainConfig(epochs=EPOCHS, batch_size=32, lr=0.5, weight_decay=0.0, probe_images=64, early_call_every=2,
                  early_call_consecutive=2, early_call_after=0.1)


class _Pulled(nn.Module):
    """Linear backbone and projector; the loss pulls every projection to one point (``pull``: its weight)."""

    def __init__(self, pull: float) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
        self.projector = nn.Linear(32, 16)
        self.pull = pull

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> StepOutput:
        z = self.projector(self.backbone(torch.cat([v1, v2])))
        loss = self.pull * (z - 10).pow(2).mean()
        return StepOutput(loss, {}, z[: len(v1)].detach())


class _Killed(Exception):
    pass


@lru_cache(maxsize=1)
def _data():
    d = load_dataset("digits")
    return dataclasses.replace(d, train_images=d.train_images[:N_IMAGES], train_labels=d.train_labels[:N_IMAGES])


def _train(rdir, pull: float, cfg: TrainConfig = CFG):
    data = _data()
    torch.manual_seed(0)
    model = _Pulled(pull)
    views = TwoViews(ViewConfig(), ViewConfig(), mean=data.mean, std=data.std)
    return model, pretrain(model, data, views, cfg, RunPaths(rdir, "m", 0), seed=0, identity={"m": 1})


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_collapsing_run_stops_where_the_rule_calls_and_says_so(tmp_path):
    model, out = _train(tmp_path, pull=1.0)
    assert out.status == "stopped_early" and out.step is not None and 0 < out.step < EPOCHS * STEPS_PER_EPOCH
    assert out.step % CFG.early_call_every == 0 and out.fraction == out.step / (EPOCHS * STEPS_PER_EPOCH)
    assert out.reading.status == "complete" and out.reading.step == out.step and out.epochs == out.step // 10
    assert "early call at step" in out.message and "2 consecutive monitor readings complete" in out.message
    rows = [json.loads(ln) for ln in RunPaths(tmp_path, "m", 0).monitor_log.read_text().splitlines()]
    assert rows[-1]["step"] == out.step and [r["probe_status"] for r in rows[-2:]] == ["complete"] * 2
    status = json.loads(RunPaths(tmp_path, "m", 0).train_status.read_text())
    assert TrainOutcome.from_json(status, "status") == out
    assert TrainOutcome.from_json(out.to_json(), "record") == out  # the result record's train block
    weights = _weights(model)
    again, out2 = _train(tmp_path, pull=1.0)  # the same command again: not retrained, the same weights
    assert out2 == out and all(torch.equal(weights[k], v) for k, v in again.state_dict().items())


@pytest.mark.parametrize("kill_at", [3, 13])
def test_a_killed_and_resumed_run_stops_at_the_same_step_with_the_same_weights(tmp_path, monkeypatch, kill_at):
    full, out = _train(tmp_path / "full", pull=1.0)
    assert kill_at < out.step
    monkeypatch.setattr(train_mod, "MID_EPOCH_CHECKPOINT_S", 0.0)  # a checkpoint after every step

    def kill(point: str) -> None:
        if point == f"after_step:{kill_at}":
            raise _Killed(point)

    monkeypatch.setattr(train_mod, "maybe_fault", kill)
    with pytest.raises(_Killed):
        _train(tmp_path / "killed", pull=1.0)
    monkeypatch.undo()
    torch.manual_seed(1234)  # a new process: the global RNG starts elsewhere
    resumed, out2 = _train(tmp_path / "killed", pull=1.0)
    assert out2 == out
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [RunPaths(tmp_path / d, "m", 0).monitor_log.read_text() for d in ("full", "killed")]
    assert logs[0] == logs[1]


def test_a_healthy_run_is_not_stopped_and_the_rule_off_trains_as_before(tmp_path):
    _, out = _train(tmp_path / "healthy", pull=0.0)  # no gradient: random projections of the digits
    assert out == TrainOutcome("finished", EPOCHS)
    statuses = {json.loads(ln)["probe_status"] for ln in RunPaths(tmp_path / "healthy", "m", 0).monitor_log.read_text()
                .splitlines()}
    assert "complete" not in statuses
    off = dataclasses.replace(CFG, early_call_every=0)
    _, out_off = _train(tmp_path / "off", pull=1.0, cfg=off)
    assert out_off.status == "finished" and not RunPaths(tmp_path / "off", "m", 0).monitor_log.exists()


def test_the_rules_settings_are_checked_at_the_config_edge(tmp_path):
    path = tmp_path / "c.toml"
    for line, why in (("early_call_every = -1", r"'early_call_every' must be an integer in 0\.\."),
                      ("early_call_after = 1", r"'early_call_after' must be a number in \[0, 1\), got 1"),
                      ("early_call_consecutive = 0", r"'early_call_consecutive' must be an integer in 1\.\."),
                      ('early_call_status = "healthy"', r"'early_call_status' must be 'complete' or 'dimensional'"),
                      ("early_call_stalled = 0.5", r"'early_call_stalled' must be a finite number >= 1, got 0\.5")):
        path.write_text(f"[train]\n{line}\n")
        with pytest.raises(SslbenchError, match=why) as err:
            load_toml(path)
        assert "\n" not in str(err.value)
    path.write_text('[sweeps.e]\nbase = "vicreg"\ngrid = { "train.early_call_every" = [0, 50] }\n')
    assert load_toml(path).sweeps["e"].values == ((0, 50),)


def test_the_stalled_condition_reaches_the_training_rule():
    assert train_mod._rule(TrainConfig(early_call_every=4)).stalled is None
    assert train_mod._rule(TrainConfig(early_call_every=4, early_call_stalled=1.05)).stalled == 1.05
