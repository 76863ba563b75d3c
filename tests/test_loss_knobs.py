"""The collapse atlas's loss knobs: SimSiam's stop-gradient strength (``loss.alpha``), the predictor's
learning rate (``train.pred_lr_scale``) and BYOL's constant EMA rate (``target.tau``). Each is an added
field: at its default the run identity and training are those of before, and a bad value is one line."""

import dataclasses
import math

import pytest
import torch

from baselines.losses.negative_cosine import SimSiamConfig, symmetric_negative_cosine
from baselines.targets import EMAConfig, ema_tau
from sslbench.backbones import build_backbone
from sslbench.config import RunConfig, load_toml
from sslbench.errors import SslbenchError
from sslbench.method import derive_variant
from sslbench.optim import build_optimizer, lr_at, set_lr
from sslbench.registry import registry
from sslbench.runner import RunSpec
from sslbench.sweep import build_plan

HEADS = {"proj_hidden": 8, "proj_dim": 4, "pred_hidden": 8}


def _model(name: str, seed: int = 0, **changes):
    """A tiny model of method ``name`` with loss/target ``changes`` (``{"loss": {...}, "target": {...}}``)."""
    method = registry("methods").get(name)
    if changes:
        method = derive_variant(method, "x", "x", **changes)
    torch.manual_seed(seed)
    return method.build_model(build_backbone("convnet", 1, 4), HEADS)


def _views(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 1, 8, 8, generator=g), torch.randn(8, 1, 8, 8, generator=g)


def _grads(model) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(*_views()).loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- loss.alpha


def test_alpha_0_is_simsiam_and_alpha_1_is_simsiam_without_stop_gradient():
    simsiam = _grads(_model("simsiam"))
    assert _equal(_grads(_model("simsiam", loss={"alpha": 0.0})), simsiam)
    nosg = _grads(_model("simsiam_nosg"))
    assert _equal(_grads(_model("simsiam", loss={"alpha": 1.0})), nosg)
    assert not _equal(simsiam, nosg)  # the two ends do differ


def test_alpha_scales_the_targets_gradient_by_hand():
    """One pair, p = (1, 0), z = (1, 1): D = -cos = -1/sqrt(2), dD/dz = -(p/(|p||z|) - (p.z) z/(|p||z|^3))
    = (-1, 1) / (2 sqrt(2)); with alpha = 0.5 the targets pass half of it, and the value is unchanged."""
    p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    full = torch.tensor([[-1.0, 1.0]], dtype=torch.float64) / (2 * math.sqrt(2))
    for alpha, want in ((0.0, None), (0.5, 0.5 * full), (1.0, full)):
        z = torch.tensor([[1.0, 1.0]], dtype=torch.float64, requires_grad=True)
        loss = symmetric_negative_cosine(p, p, z, z.detach(), True, alpha)  # only D(p2, z1) reaches z
        assert loss.item() == pytest.approx(-1 / math.sqrt(2), abs=1e-15)
        if want is None:
            assert not loss.requires_grad
            continue
        loss.backward()
        assert torch.allclose(z.grad, 0.5 * want, atol=1e-15)  # the symmetric loss halves each direction


def test_alpha_half_passes_exactly_half_the_full_target_gradient():
    g = torch.Generator().manual_seed(0)
    p1, p2 = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    z0 = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)

    def target_grads(**kw):
        z1, z2 = (z.clone().requires_grad_(True) for z in z0)
        symmetric_negative_cosine(p1, p2, z1, z2, **kw).backward()
        return z1.grad, z2.grad

    half, full = target_grads(alpha=0.5), target_grads(stop_gradient=False)
    assert all(torch.equal(h, 0.5 * f) for h, f in zip(half, full))  # halving is exact in binary


def test_alpha_is_a_grid_axis_and_checked_at_the_config_edge(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[sweeps.sg]\nbase = "simsiam"\ngrid = { "loss.alpha" = [0, 0.5, 1] }\n')
    cfg = load_toml(path)
    assert cfg.sweeps["sg"].values == ((0.0, 0.5, 1.0),)
    cells = build_plan(cfg.resolved()).cells
    assert [c.method.loss.alpha for c in cells if c.sweep] == [0.0, 0.5, 1.0]
    for bad, why in (("1.5", r"grid axis 'loss.alpha'.*'alpha' must be a number in \[0, 1\], got 1\.5"),
                     ("-0.1", r"'alpha' must be a number in \[0, 1\], got -0\.1")):
        path.write_text(f'[sweeps.sg]\nbase = "simsiam"\ngrid = {{ "loss.alpha" = [{bad}] }}\n')
        with pytest.raises(SslbenchError, match=why):
            load_toml(path)
    path.write_text('[variants.v]\nbase = "simsiam"\nloss = { alpha = 2 }\n')
    with pytest.raises(SslbenchError, match=r"\[variants.v\].loss: 'alpha' must be a number in \[0, 1\], got 2"):
        load_toml(path)
    with pytest.raises(SslbenchError, match="alpha = 0.5 scales the stop-gradient, but stop_gradient is false"):
        SimSiamConfig(stop_gradient=False, alpha=0.5)


# ----------------------------------------------------------------------------- train.pred_lr_scale


def _groups(opt) -> list[tuple]:
    return [(tuple(id(p) for p in g["params"]), tuple(sorted((k, v) for k, v in g.items() if k != "params")))
            for g in opt.param_groups]


@pytest.mark.parametrize("name", ["simsiam", "byol"])
def test_pred_lr_scale_scales_the_predictors_groups_only(name):
    method = registry("methods").get(name)
    train, _ = method.resolve("smoke")
    model = _model(name)
    default = build_optimizer(model, train)
    assert _groups(build_optimizer(model, dataclasses.replace(train, pred_lr_scale=1.0))) == _groups(default)
    assert all("lr_scale" not in g for g in default.param_groups)  # the optimiser of before the field
    scaled = build_optimizer(model, dataclasses.replace(train, pred_lr_scale=2.5))
    pred = {id(p) for p in model.predictor.parameters()}
    assert {id(p) for g in scaled.param_groups for p in g["params"]} == {id(p) for g in default.param_groups
                                                                        for p in g["params"]}
    peak = train.lr * train.batch_size / 256
    for step in (0, 7, 19):
        lr = lr_at(step, 20, 0, peak)
        set_lr(default, lr, peak)
        set_lr(scaled, lr, peak)
        want = {id(p): g["lr"] for g in default.param_groups for p in g["params"]}
        for g in scaled.param_groups:
            in_pred = {id(p) in pred for p in g["params"]}
            assert len(in_pred) == 1  # a group is all predictor or none of it
            factor = 2.5 if in_pred == {True} else 1.0
            assert all(g["lr"] == want[id(p)] * factor for p in g["params"])
    if name == "simsiam":  # the predictor keeps its fixed lr, scaled
        assert {g["lr"] for g in scaled.param_groups if id(g["params"][0]) in pred} == {2.5 * peak}


def test_pred_lr_scale_is_refused_for_a_method_without_a_predictor(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\nmethods = ["vicreg"]\npreset = "smoke"\n[train]\npred_lr_scale = 2\n')
    with pytest.raises(SslbenchError, match=r"'pred_lr_scale' scales a predictor's learning rate, and 'vicreg' "
                                            r"has no predictor") as err:
        load_toml(path).resolved()
    assert "\n" not in str(err.value)
    path.write_text('[run]\nmethods = ["vicreg"]\npreset = "smoke"\n[train]\npred_lr_scale = 1\n')
    load_toml(path).resolved()  # the default is fine anywhere
    path.write_text('[sweeps.p]\nbase = "byol"\ngrid = { "train.pred_lr_scale" = [1, 10] }\n[run]\npreset = "smoke"\n')
    cells = build_plan(load_toml(path).resolved()).cells
    assert [c.changes.train["pred_lr_scale"] for c in cells if c.sweep] == [1.0, 10.0]
    path.write_text('[train]\npred_lr_scale = 0\n')
    with pytest.raises(SslbenchError, match=r"'pred_lr_scale' must be a finite number > 0, got 0"):
        load_toml(path)


# ----------------------------------------------------------------------------- target.tau


def _steps(model, n: int, after=None):
    """``n`` optimiser steps with the EMA update; ``after(model)`` after each."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for i in range(n):
        opt.zero_grad()
        model(*_views(i)).loss.backward()
        opt.step()
        model.after_step((i + 1) / n)
        if after:
            after(model)


def _target_params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in [*model.target_backbone.parameters(), *model.target_projector.parameters()]]


def _online_params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in [*model.backbone.parameters(), *model.projector.parameters()]]


def test_tau_1_keeps_the_target_at_its_random_initialisation():
    model = _model("byol", target={"tau": 1.0})
    init = _target_params(model)
    _steps(model, 3, lambda m: all(torch.equal(a, b) for a, b in zip(_target_params(m), init)) or pytest.fail("moved"))
    assert not all(torch.equal(a, b) for a, b in zip(_online_params(model), init))  # the online network did move


def test_tau_0_copies_the_online_network_every_step_as_byol_noema_does():
    def same(m):
        assert all(torch.equal(a, b) for a, b in zip(_target_params(m), _online_params(m)))

    tau0, noema = _model("byol", target={"tau": 0.0}), _model("byol_noema")
    _steps(tau0, 3, same)
    _steps(noema, 3)
    a, b = tau0.state_dict(), noema.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(ema_tau(t, EMAConfig(tau=0.0)) == ema_tau(t, EMAConfig(0.0, 0.0)) == 0.0 for t in (0, 0.3, 1))


def test_a_constant_tau_follows_the_ema_formula():
    model = _model("byol", target={"tau": 0.7}).double()
    assert all(ema_tau(t, model.target_config) == 0.7 for t in (0.0, 0.5, 1.0))  # no schedule
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    online, target = _online_params(model), _target_params(model)
    model.after_step(0.5)
    for o, t, new in zip(online, target, _target_params(model)):
        assert torch.allclose(new, 0.7 * t + 0.3 * o, rtol=0, atol=1e-14)


def test_tau_is_a_grid_axis_checked_at_the_config_edge_and_out_of_the_identity_at_its_default(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\npreset = "smoke"\n[sweeps.t]\nbase = "byol"\ngrid = { "target.tau" = [0, 0.5, 1] }\n')
    cfg = load_toml(path).resolved()
    cells = [c for c in build_plan(cfg).cells if c.sweep]
    assert [c.method.target.tau for c in cells] == [0.0, 0.5, 1.0]
    assert all(isinstance(c.method.target.tau, float) for c in cells)
    path.write_text('[sweeps.t]\nbase = "byol"\ngrid = { "target.tau" = [1.01] }\n')
    with pytest.raises(SslbenchError, match=r"'tau' must be a number in \[0, 1\], got 1\.01"):
        load_toml(path)
    run = RunConfig(preset="smoke", methods=["byol", "simsiam"]).resolved()
    byol = RunSpec.of(registry("methods").get("byol"), 0, run).identity(run)
    simsiam = RunSpec.of(registry("methods").get("simsiam"), 0, run).identity(run)
    assert "tau" not in byol["target"] and "alpha" not in simsiam["loss"]
    assert not {"pred_lr_scale", "early_call_every"} & set(byol["train"])
    assert RunSpec.of(cells[1].method, 0, run).identity(run)["target"]["tau"] == 0.5
