"""The shared training loop: divergence and collapse are outcomes, not crashes; the sweep goes on."""

import json

import torch
from torch import nn

from baselines.vicreg import VICREG
from sslbench import leaderboard
from sslbench.augment import TwoViews
from sslbench.backbones import build_backbone
from sslbench.config import RunConfig
from sslbench.data import load_dataset
from sslbench.layout import RunPaths
from sslbench.method import Method, StepOutput, TrainConfig
from sslbench.registry import registry
from sslbench.runner import run
from sslbench.store import find_records
from sslbench.train import pretrain


class _NaNAfter(nn.Module):
    """A model whose loss turns NaN at its 3rd step."""

    def __init__(self, backbone, heads, loss):
        super().__init__()
        self.backbone = backbone
        self.projector = nn.Linear(backbone.out_dim, 8)
        self.calls = 0

    def forward(self, v1, v2):
        self.calls += 1
        z = self.projector(self.backbone(v1))
        loss = z.pow(2).mean() * (float("nan") if self.calls >= 3 else 1.0)
        return StepOutput(loss, {}, z.detach())


NAN_METHOD = Method(name="test_nan_after_2_steps", summary="test only", build=_NaNAfter, loss=None)


def _digits():
    return load_dataset("digits")


def test_nan_loss_is_recorded_as_diverged_with_its_step(tmp_path):
    data = _digits()
    model = _NaNAfter(build_backbone("convnet", 1, 4), {}, None)
    views = TwoViews(VICREG.views[0], VICREG.views[1], data.mean, data.std)
    run = RunPaths(tmp_path, "nan", 0)
    out = pretrain(model, data, views, TrainConfig(epochs=2, batch_size=128), run, seed=0)
    assert out.status == "diverged" and out.step == 2 and out.epochs == 0
    assert json.loads((tmp_path / "train_status.json").read_text())["status"] == "diverged"
    again = pretrain(model, data, views, TrainConfig(epochs=2, batch_size=128), run, seed=0)
    assert again.status == "diverged" and model.calls == 3  # not retrained


def test_sweep_goes_on_after_a_diverged_run(tmp_path):
    reg = registry("methods")
    if NAN_METHOD.name not in reg:
        reg.register(NAN_METHOD.name, NAN_METHOD)
    cfg = RunConfig(preset="smoke", epochs=2, methods=[NAN_METHOD.name, "vicreg"], floors=[],
                    protocols=["knn"], out=str(tmp_path))
    assert run(cfg) == 0
    rows = leaderboard.build(find_records(tmp_path)).table.set_index("method")
    assert rows.loc[NAN_METHOD.name, "train.status"] == "diverged"
    assert rows.loc["vicreg", "train.status"] == "finished" and rows.loc["vicreg", "knn.top1"] > 0.5


def test_complete_collapse_stops_training_and_is_recorded(tmp_path):
    data = _digits()
    method = registry("methods").get("vicreg_novar")
    train, heads = method.resolve("smoke", {"epochs": 30})
    torch.manual_seed(0)
    model = method.build_model(build_backbone("convnet", 1, 8), heads)
    views = TwoViews(*method.views, mean=data.mean, std=data.std)
    run = RunPaths(tmp_path, method.name, 0)
    out = pretrain(model, data, views, train, run, seed=0)
    assert out.status == "collapsed" and 1 <= out.epochs < 30
    log = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == out.epochs and log[-1]["probe_std_l2"] < 0.1 * log[-1]["std_l2_ref"]
    assert {"probe_rankme", "probe_std_l2", "std_l2", "invariance", "variance", "covariance"} <= set(log[-1])
    again = pretrain(method.build_model(build_backbone("convnet", 1, 8), heads), data, views, train, run, 0)
    assert again.status == "collapsed" and again.epochs == out.epochs
