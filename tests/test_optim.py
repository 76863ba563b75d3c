"""Learning-rate schedule, fixed-lr groups, one LARS step by hand, and SGD's fused update."""

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
