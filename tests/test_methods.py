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
