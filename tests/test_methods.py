"""Contract tests for every registered method (timm style), and method-specific checks."""

import dataclasses

import pytest
import torch

from baselines.byol import BYOLModel
from baselines.losses.negative_cosine import BYOLConfig
from baselines.targets import EMAConfig, ema_tau
from sslbench.backbones import build_backbone
from sslbench.errors import SslbenchError
from sslbench.method import TrainConfig, derive_variant, variant_changes
from sslbench.registry import registry
from sslbench.testing import check_method

TRAINED = [n for n in registry("methods").names() if registry("methods").get(n).encoder == "trained"]


@pytest.mark.parametrize("name", TRAINED)
def test_every_registered_method_keeps_the_method_contract(name):
    assert check_method(registry("methods").get(name)) == ["attributes", "step", "loss_decreases"]


def test_check_method_names_the_broken_rule():
    broken = dataclasses.replace(registry("methods").get("vicreg"), name="broken", presets={})
    with pytest.raises(AssertionError, match="method 'broken' has no smoke defaults"):
        check_method(broken)


@pytest.mark.parametrize(
    "variant, changes",
    [
        ("vicreg_mod", {"cov_mode": "correlation"}),
        ("vicreg_novar", {"var_coeff": 0.0}),
        ("vicreg_nocov", {"cov_coeff": 0.0}),
        ("simsiam_nosg", {"stop_gradient": False}),
        ("byol_noema", {"target.tau_base": 0.0, "target.tau_final": 0.0}),
        ("barlow_twins_lambda05", {"lambd": 0.05}),
    ],
)
def test_variants_change_exactly_one_thing(variant, changes):
    v = registry("methods").get(variant)
    base = registry("methods").get(v.base)
    assert variant_changes(v, base) == changes
    assert (v.train, v.heads, v.views, v.build, v.presets) == (base.train, base.heads, base.views, base.build, base.presets)


def test_a_variant_may_change_the_target_update_but_not_unknown_fields():
    byol = registry("methods").get("byol")
    v = derive_variant(byol, "byol_tau09", "BYOL with tau 0.9", target={"tau_base": 0.9})
    assert v.target == EMAConfig(0.9, 1.0) and v.loss == byol.loss
    with pytest.raises(SslbenchError, match="did you mean 'tau_base'"):
        derive_variant(byol, "x", "x", target={"tau_bse": 0.9})
    with pytest.raises(SslbenchError, match="'vicreg' has no target to change"):
        derive_variant(registry("methods").get("vicreg"), "x", "x", target={"tau_base": 0.9})


def test_byol_ema_schedule_and_update():
    cfg = EMAConfig()
    assert ema_tau(0.0, cfg) == pytest.approx(0.99) and ema_tau(1.0, cfg) == pytest.approx(1.0)
    torch.manual_seed(0)
    model = BYOLModel(build_backbone("convnet", 1, 4), {"proj_hidden": 8, "proj_dim": 4, "pred_hidden": 8}, BYOLConfig(), cfg)
    online = next(model.backbone.parameters())
    target = next(model.target_backbone.parameters())
    with torch.no_grad():
        online.add_(1.0)
    old = target.detach().clone()
    model.after_step(0.0)
    assert torch.allclose(target, 0.99 * old + 0.01 * online)
    assert not target.requires_grad
    noema = BYOLModel(build_backbone("convnet", 1, 4), {"proj_hidden": 8, "proj_dim": 4, "pred_hidden": 8}, BYOLConfig(),
                      EMAConfig(0.0, 0.0))
    with torch.no_grad():
        next(noema.backbone.parameters()).add_(1.0)
    noema.after_step(0.3)
    assert torch.equal(next(noema.backbone.parameters()), next(noema.target_backbone.parameters()))


def test_train_config_defaults_are_overridable_per_preset():
    train, heads = registry("methods").get("simsiam").resolve("quick", {"epochs": 2})
    assert isinstance(train, TrainConfig) and train.epochs == 2 and heads["proj_dim"] == 1024


@pytest.mark.parametrize("name", ["simsiam", "byol", "vicreg", "barlow_twins", "simclr"])
def test_the_per_view_forward_normalises_each_view_with_its_own_statistics(name):
    """Per view, train-mode batch norm sees one view's batch: a view's projection no longer depends on the other."""
    method = registry("methods").get(name)
    _, heads = method.resolve("smoke")
    torch.manual_seed(0)
    model = method.build_model(build_backbone("convnet", 1, 4), heads, per_view=True)
    assert model.per_view
    v1, v2 = torch.randn(16, 1, 8, 8), torch.randn(16, 1, 8, 8)
    z_a = model(v1, v2).z
    z_b = model(v1, 3 * v2 + 1).z  # a different second view
    assert torch.allclose(z_a, z_b, atol=1e-5)  # view 1's projection is its own affair
    model.per_view = False
    assert not torch.allclose(model(v1, v2).z, model(v1, 3 * v2 + 1).z, atol=1e-5)  # one batch: BN mixes the views


def test_a_plugin_model_without_a_per_view_forward_is_refused():
    method = dataclasses.replace(registry("methods").get("vicreg"), name="plain", build=lambda b, h, loss: torch.nn.Linear(1, 1))
    with pytest.raises(SslbenchError, match="has no per-view forward"):
        method.build_model(build_backbone("convnet", 1, 4), {}, per_view=True)


def test_decay_norm_and_bias_puts_weight_decay_on_every_parameter():
    from sslbench.optim import build_optimizer

    method = registry("methods").get("simsiam")
    train, heads = method.resolve("smoke")
    model = method.build_model(build_backbone("convnet", 1, 4), heads)
    for flag, expected in ((False, {0.0, train.weight_decay}), (True, {train.weight_decay})):
        opt = build_optimizer(model, dataclasses.replace(train, decay_norm_and_bias=flag))
        assert {g["weight_decay"] for g in opt.param_groups} == expected
