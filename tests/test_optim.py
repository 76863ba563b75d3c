"""Learning-rate schedule, fixed-lr groups, LARS (by hand, clipped as solo-learn, under a scaled loss), SGD's fused update."""

import math

import pytest
import torch
from torch import nn

from sslbench.method import TrainConfig
from sslbench.optim import LARS, build_optimizer, lr_at, set_lr


def test_warmup_then_cosine():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, 100, 10, 1.0, final_ratio=0.1) == pytest.approx(0.1)


def test_fixed_lr_group_keeps_peak_and_norms_get_no_decay():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def param_groups(self):
            return [{"params": list(self.a.parameters())}, {"params": list(self.b.parameters()), "fixed_lr": True}]

    opt = build_optimizer(M(), TrainConfig(lr=0.1, batch_size=512, weight_decay=0.01))
    set_lr(opt, 0.05, peak=0.2)
    assert sorted((g["lr"], g["fixed_lr"], g["weight_decay"]) for g in opt.param_groups) == [
        (0.05, False, 0.0), (0.05, False, 0.01), (0.2, True, 0.0), (0.2, True, 0.01)]


def test_lars_step_by_hand():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    w.grad = torch.tensor([0.6, 0.8])
    opt = LARS([{"params": [w], "lars_exclude": False}], lr=0.5, weight_decay=0.0, eta=0.02)
    opt.step()
    trust = 0.02 * 5.0 / 1.0
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - 0.5 * trust * torch.tensor([0.6, 0.8]))


def test_sgd_update_is_bitwise_the_per_tensor_loop():
    """build_optimizer's SGD (fused where torch has it) moves a model exactly as per-tensor SGD does."""
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 16))

    ours, ref = model(), model()
    opt = build_optimizer(ours, TrainConfig(optimizer="sgd", lr=0.4, batch_size=32, weight_decay=5e-4, momentum=0.9))
    twin = dict(zip(ours.parameters(), ref.parameters()))
    plain = torch.optim.SGD([{"params": [twin[q] for q in g["params"]], "lr": g["lr"], "weight_decay": g["weight_decay"]}
                             for g in opt.param_groups], lr=0.05, momentum=0.9, foreach=False)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        for m, o in ((ours, opt), (ref, plain)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), ref.parameters()))


def _convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 16))


def _batch() -> torch.Tensor:
    return torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _loss(m: nn.Module, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return scale * (m(x) - 0.5).square().mean()


class _LarsBeforeClip(torch.optim.Optimizer):
    """The LARS step as it was before ``clip_lr`` existed, as a frozen reference."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.02):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta,
                                  "lars_exclude": False})

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                d = p.grad
                if not g["lars_exclude"]:
                    d = d.add(p, alpha=g["weight_decay"])
                    pn, dn = torch.norm(p), torch.norm(d)
                    d = d.mul(torch.where((pn > 0) & (dn > 0), g["eta"] * pn / dn, torch.ones_like(pn)))
                if "mu" not in self.state[p]:
                    self.state[p]["mu"] = torch.clone(d).detach()
                else:
                    self.state[p]["mu"].mul_(g["momentum"]).add_(d)
                p.add_(self.state[p]["mu"], alpha=-g["lr"])


def _solo_learn_step(params, state, lr, eta, wd, momentum, exclude):
    """solo-learn's LARS step (solo/utils/lars.py, clip_lr and exclude_bias_n_norm on), one tensor at a time."""
    with torch.no_grad():
        for i, p in enumerate(params):
            d = p.grad.clone()
            p_norm, g_norm = float(p.detach().norm()), float(p.grad.norm())
            if not exclude[i] and p_norm != 0 and g_norm != 0:
                lars_lr = eta * p_norm / (g_norm + p_norm * wd + 1e-8)
                lars_lr = min(lars_lr / lr, 1.0)
                d = (d + wd * p) * lars_lr
            state[i] = d if state[i] is None else momentum * state[i] + d
            p -= lr * state[i]


def test_default_lars_is_bitwise_the_step_before_clip_lr():
    ours, ref = _convnet(), _convnet()
    cfg = TrainConfig(optimizer="lars", lr=0.3, batch_size=256, weight_decay=1e-4)
    opt = build_optimizer(ours, cfg)
    twin = dict(zip(ours.parameters(), ref.parameters()))
    old = _LarsBeforeClip([{**{k: v for k, v in g.items() if k != "params"}, "params": [twin[q] for q in g["params"]]}
                           for g in opt.param_groups], lr=0.3)
    x = _batch()
    for _ in range(4):
        for m, o in ((ours, opt), (ref, old)):
            o.zero_grad()
            _loss(m, x).backward()
            o.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), ref.parameters()))


def test_clipped_lars_matches_solo_learns_loop():
    """Over steps whose lr makes the clip bind on some tensors and not on others (weight decay 0,
    where solo-learn's denominator ||g|| + wd ||p|| equals ours, ||g + wd p||)."""
    ours, ref = _convnet(), _convnet()
    opt = build_optimizer(ours, TrainConfig(optimizer="lars", lr=0.3, batch_size=256, weight_decay=0.0,
                                            lars_eta=0.02, lars_clip_lr=True))
    params = list(ref.parameters())
    exclude = [p.ndim <= 1 for p in params]
    state = [None] * len(params)
    x = _batch()
    bound = []
    for lr in (0.3, 0.05, 0.002, 0.3):
        for g in opt.param_groups:
            g["lr"] = lr
        for m in (ours, ref):
            m.zero_grad()
            _loss(m, x).backward()
        bound.append([0.02 * float(p.detach().norm()) / float(p.grad.norm()) > lr for p, e in zip(params, exclude) if not e])
        opt.step()
        _solo_learn_step(params, state, lr, 0.02, 0.0, 0.9, exclude)
    assert any(any(b) for b in bound) and any(not all(b) for b in bound)
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_clipped_lars_step_by_hand():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    w.grad = torch.tensor([0.6, 0.8])
    for lr, eta in ((0.5, 0.02), (0.05, 0.5)):
        w.data = torch.tensor([3.0, 4.0])
        opt = LARS([{"params": [w], "lars_exclude": False}], lr=lr, weight_decay=0.0, eta=eta, clip_lr=True)
        opt.step()
        step = min(eta * 5.0 / 1.0, lr)  # min(trust, lr) of the raw gradient
        assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - step * torch.tensor([0.6, 0.8]))


@pytest.mark.parametrize("lr", [0.3, 0.4])
def test_clip_scales_the_first_weight_step_by_one_over_lr_where_the_trust_ratio_is_below_lr(lr):
    steps = {}
    for clip in (False, True):
        m = _convnet()
        before = [p.detach().clone() for p in m.parameters()]
        opt = build_optimizer(m, TrainConfig(optimizer="lars", lr=lr, batch_size=256, weight_decay=1e-5, lars_clip_lr=clip))
        _loss(m, _batch()).backward()
        trust = [0.02 * float(p.detach().norm()) / float((p.grad + 1e-5 * p.detach()).norm()) for p in m.parameters()]
        opt.step()
        steps[clip] = [(p.detach() - b, t, p.ndim) for p, b, t in zip(m.parameters(), before, trust)]
    for (plain, trust, ndim), (clipped, _, _) in zip(steps[False], steps[True]):
        if ndim <= 1:
            assert torch.equal(plain, clipped)
        else:
            expected = 1 / lr if trust < lr else 1 / trust
            assert float(clipped.norm() / plain.norm()) == pytest.approx(expected, rel=1e-4)


def _one_step(scale: float, weight_decay: float) -> list[tuple[torch.Tensor, int]]:
    m = _convnet().double()  # float64, so that the scaled gradients are the scaled ones to ~1e-16
    before = [p.detach().clone() for p in m.parameters()]
    opt = build_optimizer(m, TrainConfig(optimizer="lars", lr=0.3, batch_size=256, weight_decay=weight_decay))
    _loss(m, _batch().double(), scale).backward()
    opt.step()
    return [(p.detach() - b, p.ndim) for p, b in zip(m.parameters(), before)]


def test_scaling_the_loss_under_lars_keeps_weight_steps_and_scales_bias_and_norm_steps():
    """Barlow Twins' scale_loss is not a learning-rate change under LARS."""
    moved = 0
    for (base, ndim), (scaled, _) in zip(_one_step(1.0, 0.0), _one_step(0.1, 0.0)):
        if ndim > 1:
            assert torch.allclose(scaled, base, rtol=1e-10, atol=1e-15)
        else:
            assert torch.allclose(scaled, 0.1 * base, rtol=1e-10, atol=1e-15)
            moved += int(base.abs().max() > 1e-3)  # the conv bias before BN gets no gradient at all
    assert moved == 3


def test_scaling_the_loss_under_lars_with_weight_decay_turns_the_weight_steps():
    """With weight decay the trust ratio still fixes each weight step's norm (eta lr ||p||), but the
    step leans further towards -p, since the gradient shrinks against wd * p."""
    for (base, ndim), (scaled, _) in zip(_one_step(1.0, 0.05), _one_step(0.1, 0.05)):
        if ndim > 1:
            assert float(scaled.norm()) == pytest.approx(float(base.norm()), rel=1e-5)
            cos = float((scaled * base).sum() / (scaled.norm() * base.norm()))
            assert cos < 0.999
