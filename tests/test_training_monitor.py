"""The collapse monitor read every N optimiser steps (``monitor_every``): where it lands, that it
changes nothing trained, that a resumed run writes the same ``monitor.jsonl``, and its reader."""

import json
from functools import lru_cache

import pytest
import torch

import sslbench.train as train_mod
from sslbench.augment import TwoViews
from sslbench.backbones import build_backbone
from sslbench.config import RunConfig, load_toml
from sslbench.data import load_dataset
from sslbench.early_call import MonitorReading
from sslbench.errors import SslbenchError
from sslbench.layout import RunPaths
from sslbench.registry import registry
from sslbench.train import pretrain
from sslbench.training_log import read_monitor, run_readings

#: Digits has 1437 train images: 11 steps of 128 per epoch, 22 in 2 epochs.
STEPS_PER_EPOCH, EPOCHS = 11, 2
TIMING_KEYS = {"epoch_s", "images_per_s", "data_share"}


class _Killed(Exception):
    pass


@lru_cache(maxsize=1)
def _digits():
    return load_dataset("digits")


def _train(rdir, monitor_every: int, name: str = "simsiam"):
    data = _digits()
    method = registry("methods").get(name)
    cfg, heads = method.resolve("smoke", {"epochs": EPOCHS})
    torch.manual_seed(0)  # as the runner does before building the model
    model = method.build_model(build_backbone("convnet", data.channels, 8), heads)
    views = TwoViews(*method.views, mean=data.mean, std=data.std)
    pretrain(model, data, views, cfg, RunPaths(rdir, name, 0), seed=0, monitor_every=monitor_every)
    return model


def _lines(path):
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_readings_land_every_n_steps_and_the_encoder_is_bitwise_unchanged(tmp_path):
    off = _train(tmp_path / "off", 0)
    on = _train(tmp_path / "on", 2)
    a, b = off.state_dict(), on.state_dict()  # batch norm's running statistics included
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    assert not (tmp_path / "off" / "monitor.jsonl").exists()
    epochs = [[{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in _lines(tmp_path / d / "metrics.jsonl")]
              for d in ("off", "on")]
    assert epochs[0] == epochs[1]
    rows = _lines(tmp_path / "on" / "monitor.jsonl")
    total = STEPS_PER_EPOCH * EPOCHS
    assert [r["step"] for r in rows] == list(range(2, total + 1, 2))
    assert all(r["total_steps"] == total and r["epoch"] == r["step"] / STEPS_PER_EPOCH for r in rows)
    # the reading after the last step is the last epoch's: the same probe of the same weights
    probes = {k: v for k, v in epochs[1][-1].items() if k.startswith("probe_")}
    assert {k: rows[-1][k] for k in probes} == probes


@pytest.mark.parametrize("mid_epoch_checkpoints", [False, True])
def test_a_resumed_run_writes_the_uninterrupted_runs_monitor_log(tmp_path, monkeypatch, mid_epoch_checkpoints):
    _train(tmp_path / "full", 2)
    if mid_epoch_checkpoints:  # a checkpoint after every step: the kill lands right after one
        monkeypatch.setattr(train_mod, "MID_EPOCH_CHECKPOINT_S", 0.0)

    def kill(point: str) -> None:
        if point == "after_step:15":  # epoch 2 of 2, past epoch 1's checkpoint (step 11)
            raise _Killed(point)

    monkeypatch.setattr(train_mod, "maybe_fault", kill)
    with pytest.raises(_Killed):
        _train(tmp_path / "killed", 2)
    monkeypatch.undo()
    log = tmp_path / "killed" / "monitor.jsonl"
    assert [r["step"] for r in _lines(log)] == [2, 4, 6, 8, 10, 12, 14]  # 12 and 14 are past epoch 1's checkpoint
    log.write_text(log.read_text() + '{"step": 16, "probe_sta')  # a cut line, as an older writer could leave
    torch.manual_seed(1234)  # a new process: the global RNG starts elsewhere
    _train(tmp_path / "killed", 2)
    assert log.read_text() == (tmp_path / "full" / "monitor.jsonl").read_text()


def _row(step: int, status: str = "healthy", **extra) -> dict:
    return {"step": step, "probe_status": status, "probe_spread": 0.5, "probe_effective_dims": 12.0,
            "probe_uniformity": -3.0, **extra}


def test_read_monitor_skips_cut_and_foreign_lines(tmp_path):
    path = tmp_path / "monitor.jsonl"
    good = [_row(10, total_steps=40), _row(20, "complete", total_steps=40)]
    path.write_bytes(b"\n".join([json.dumps(good[0]).encode(), b"\xff\xfe not json", b"[1, 2]",
                                 json.dumps(_row(15, total_steps=0)).encode(), json.dumps(good[1]).encode(),
                                 b'{"step": 30, "probe_st']))
    assert read_monitor(path) == [MonitorReading(10, 0.25, "healthy", 0.5, 12.0, -3.0),
                                  MonitorReading(20, 0.5, "complete", 0.5, 12.0, -3.0)]
    assert read_monitor(tmp_path / "absent.jsonl") == []


def test_a_run_without_monitor_log_reads_its_epoch_rows(tmp_path):
    run = RunPaths(tmp_path, "m", 0)
    run.config.write_text(json.dumps({"train": {"epochs": 4}}))
    run.metrics_log.write_text("".join(json.dumps(_row(5 * e, epoch=e)) + "\n" for e in (1, 2)))
    assert [(r.step, r.fraction) for r in run_readings(run)] == [(5, 0.25), (10, 0.5)]  # 4 epochs of 5 steps
    assert [r.fraction for r in run_readings(run, total_steps=40)] == [0.125, 0.25]
    run.monitor_log.write_text(json.dumps(_row(3, total_steps=30)) + "\n")
    assert [(r.step, r.fraction) for r in run_readings(run)] == [(3, 0.1)]  # the monitor log wins


def test_monitor_every_is_a_run_setting_from_toml_and_flag(tmp_path, cli):
    path = tmp_path / "c.toml"
    path.write_text("[run]\nmonitor_every = 25\n")
    cfg = load_toml(path)
    assert cfg.monitor_every == 25 and cfg.to_dict()["monitor_every"] == 25  # recorded in run_config
    assert RunConfig().monitor_every == 0
    path.write_text("[run]\nmonitor_every = -1\n")
    with pytest.raises(SslbenchError, match=r"\[run\]: 'monitor_every' must be an integer in 0\.\."):
        load_toml(path)
    rc, _, err = cli("run", "--monitor-every", "-1", "--out", str(tmp_path))
    assert rc == 2 and "--monitor-every" in err and len(err.strip().splitlines()) <= 2
