"""Contract tests for every registered method (timm style), and method-specific checks."""

import dataclasses
import math

import pytest
import torch

from baselines.byol import BYOLConfig, BYOLModel, ema_tau
from sslbench.backbones import build_backbone
from sslbench.method import StepOutput, TrainConfig, loss_changes
from sslbench.optim import build_optimizer
from sslbench.registry import registry

TRAINED = [n for n in registry("methods").names() if registry("methods").get(n).encoder == "trained"]


@pytest.mark.parametrize("name", TRAINED)
def test_method_contract(name):
    method = registry("methods").get(name)
    assert method.summary and method.loss is not None and dataclasses.is_dataclass(method.loss)
    for preset in ("smoke", "quick", "standard", "cifar10"):
        assert preset in method.presets, f"{name} has no {preset} defaults"
    train, heads = method.resolve("smoke")
    torch.manual_seed(0)
    model = method.build(build_backbone("convnet", 1, 4), heads, method.loss)
    v1, v2 = torch.randn(16, 1, 8, 8), torch.randn(16, 1, 8, 8)
    out = model(v1, v2)
    assert isinstance(out, StepOutput) and out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.z.shape[0] == 16 and not out.z.requires_grad
    before = [p.detach().clone() for p in model.backbone.parameters()]
    opt = build_optimizer(model, dataclasses.replace(train, lr=0.1))
    out.loss.backward()
    opt.step()
    if hasattr(model, "after_step"):
        model.after_step(0.5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))


@pytest.mark.parametrize("name", TRAINED)
def test_loss_decreases_on_a_fixed_batch(name):
    method = registry("methods").get(name)
    train, heads = method.resolve("smoke")
    torch.manual_seed(0)
    model = method.build(build_backbone("convnet", 1, 4), heads, method.loss)
    opt = build_optimizer(model, dataclasses.replace(train, optimizer="adamw", lr=2e-3, weight_decay=0.0))
    g = torch.Generator().manual_seed(1)
    v1 = torch.randn(32, 1, 8, 8, generator=g)
    v2 = v1 + 0.1 * torch.randn(32, 1, 8, 8, generator=g)
    losses = []
    for step in range(8):
        out = model(v1, v2)
        losses.append(out.loss.item())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if hasattr(model, "after_step"):
            model.after_step(step / 8)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], f"{name}: {losses}"


@pytest.mark.parametrize(
    "variant, changes",
    [
        ("vicreg_mod", {"cov_mode": "correlation"}),
        ("vicreg_novar", {"var_coeff": 0.0}),
        ("vicreg_nocov", {"cov_coeff": 0.0}),
        ("simsiam_nosg", {"stop_gradient": False}),
        ("byol_noema", {"tau_base": 0.0, "tau_final": 0.0}),
        ("barlow_twins_lambda05", {"lambd": 0.05}),
    ],
)
def test_variants_change_exactly_one_thing(variant, changes):
    v = registry("methods").get(variant)
    base = registry("methods").get(v.base)
    assert loss_changes(v.loss, base.loss) == changes
    assert (v.train, v.heads, v.views, v.build, v.presets) == (base.train, base.heads, base.views, base.build, base.presets)


def test_byol_ema_schedule_and_update():
    cfg = BYOLConfig()
    assert ema_tau(0.0, cfg) == pytest.approx(0.99) and ema_tau(1.0, cfg) == pytest.approx(1.0)
    torch.manual_seed(0)
    model = BYOLModel(build_backbone("convnet", 1, 4), {"proj_hidden": 8, "proj_dim": 4, "pred_hidden": 8}, cfg)
    online = next(model.backbone.parameters())
    target = next(model.target_backbone.parameters())
    with torch.no_grad():
        online.add_(1.0)
    old = target.detach().clone()
    model.after_step(0.0)
    assert torch.allclose(target, 0.99 * old + 0.01 * online)
    assert not target.requires_grad
    noema = BYOLModel(build_backbone("convnet", 1, 4), {"proj_hidden": 8, "proj_dim": 4, "pred_hidden": 8}, BYOLConfig(0.0, 0.0))
    with torch.no_grad():
        next(noema.backbone.parameters()).add_(1.0)
    noema.after_step(0.3)
    assert torch.equal(next(noema.backbone.parameters()), next(noema.target_backbone.parameters()))


def test_train_config_defaults_are_overridable_per_preset():
    train, heads = registry("methods").get("simsiam").resolve("quick", {"epochs": 2})
    assert isinstance(train, TrainConfig) and train.epochs == 2 and heads["proj_dim"] == 1024
