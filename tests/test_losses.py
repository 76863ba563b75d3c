"""Losses against hand-checkable golden values (docs/reference/losses.md) and independent formulas."""

import numpy as np
import pytest
import torch

from baselines.losses import (
    barlow_twins_loss,
    cross_correlation,
    nt_xent_loss,
    correlation_term,
    covariance_term,
    invariance_term,
    negative_cosine,
    symmetric_negative_cosine,
    variance_term,
    vicreg_loss,
    vicreg_terms,
)
from baselines.losses.vicreg import VICRegConfig


def test_negative_cosine_golden(golden_pair):
    za, zb = golden_pair
    assert negative_cosine(za, zb).item() == pytest.approx(-0.7003161, abs=1e-7)


def test_negative_cosine_matches_independent_formula():
    g = torch.Generator().manual_seed(4)
    p, z = torch.randn(10, 6, generator=g, dtype=torch.float64), torch.randn(10, 6, generator=g, dtype=torch.float64)
    pn, zn = p.numpy(), z.numpy()
    expected = -np.mean([pn[i] @ zn[i] / (np.linalg.norm(pn[i]) * np.linalg.norm(zn[i])) for i in range(10)])
    assert negative_cosine(p, z).item() == pytest.approx(expected, rel=1e-12)
    assert symmetric_negative_cosine(p, z, p, z).item() == pytest.approx(expected, rel=1e-12)


def test_vicreg_golden(golden_pair):
    za, zb = golden_pair
    assert invariance_term(za, zb).item() == pytest.approx(0.8333333, abs=1e-7)
    assert variance_term(za, zb).item() == pytest.approx(0.0070868, abs=1e-7)
    assert covariance_term(za, zb).item() == pytest.approx(5.0509259, abs=1e-7)
    assert vicreg_loss(za, zb).item() == pytest.approx(26.0614287, abs=1e-6)


def _vicreg_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Independent loop-based VICReg (official conventions) in numpy."""
    n, d = a.shape
    inv = np.mean((a - b) ** 2)
    var = 0.0
    cov = 0.0
    for x in (a, b):
        std = np.sqrt(x.var(axis=0, ddof=1) + 1e-4)
        var += 0.5 * np.mean(np.maximum(0.0, 1.0 - std))
        c = np.cov(x, rowvar=False)
        cov += sum(c[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
    return 25 * inv + 25 * var + cov


def test_vicreg_matches_independent_formula():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(32, 8, generator=g, dtype=torch.float64) * 0.5
    b = a + 0.1 * torch.randn(32, 8, generator=g, dtype=torch.float64)
    assert vicreg_loss(a, b).item() == pytest.approx(_vicreg_numpy(a.numpy(), b.numpy()), rel=1e-10)


def test_correlation_term_is_covariance_of_standardised_and_scale_free():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(64, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = a + torch.randn(64, 6, generator=g, dtype=torch.float64)
    corr = correlation_term(a, b, eps=0.0)
    ra, rb = np.corrcoef(a.numpy(), rowvar=False), np.corrcoef(b.numpy(), rowvar=False)
    expected = sum(((r**2).sum() - (np.diag(r) ** 2).sum()) / 6 for r in (ra, rb))
    assert corr.item() == pytest.approx(expected, rel=1e-10)
    # the point of vicreg_mod: scaling the embeddings leaves the term unchanged ...
    assert correlation_term(10 * a, 10 * b, eps=0.0).item() == pytest.approx(corr.item(), rel=1e-10)
    # ... while VICReg's covariance term grows with the 4th power of the scale
    assert covariance_term(10 * a, 10 * b).item() == pytest.approx(1e4 * covariance_term(a, b).item(), rel=1e-10)


def test_vicreg_mod_terms_differ_only_in_covariance(golden_pair):
    za, zb = golden_pair
    base = vicreg_terms(za, zb, VICRegConfig())
    mod = vicreg_terms(za, zb, VICRegConfig(cov_mode="correlation"))
    assert mod["invariance"] == base["invariance"]
    assert mod["variance"] == base["variance"]
    assert mod["covariance"].item() == pytest.approx(correlation_term(za, zb).item())
    assert mod["covariance"] != base["covariance"]


def test_stop_gradient_blocks_target_gradient():
    p = torch.randn(8, 4, requires_grad=True)
    z = torch.randn(8, 4, requires_grad=True)
    symmetric_negative_cosine(p, p, z, z, stop_gradient=True).backward()
    assert z.grad is None and p.grad is not None
    z2 = torch.randn(8, 4, requires_grad=True)
    symmetric_negative_cosine(p, p, z2, z2, stop_gradient=False).backward()
    assert z2.grad is not None and z2.grad.abs().sum() > 0


def test_barlow_twins_golden(golden_pair):
    za, zb = golden_pair
    assert barlow_twins_loss(za, zb).item() == pytest.approx(0.1243687, abs=1e-7)


def test_barlow_twins_matches_independent_formula_and_normalises_views_separately():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(16, 5, generator=g, dtype=torch.float64)
    b = 3 * a + 1 + 0.1 * torch.randn(16, 5, generator=g, dtype=torch.float64)
    an = (a.numpy() - a.numpy().mean(0)) / np.sqrt(a.numpy().var(0) + 1e-5)
    bn = (b.numpy() - b.numpy().mean(0)) / np.sqrt(b.numpy().var(0) + 1e-5)
    c = an.T @ bn / 16
    expected = sum((1 - c[i, i]) ** 2 for i in range(5)) + 0.0051 * sum(
        c[i, j] ** 2 for i in range(5) for j in range(5) if i != j
    )
    assert barlow_twins_loss(a, b).item() == pytest.approx(expected, rel=1e-10)
    assert torch.allclose(torch.diagonal(cross_correlation(a, b)), torch.ones(5, dtype=torch.float64), atol=0.01)


@pytest.mark.parametrize("tau, golden", [(0.5, 1.4698712), (0.1, 1.9566757)])
def test_nt_xent_golden(golden_pair, tau, golden):
    za, zb = golden_pair
    assert nt_xent_loss(za, zb, temperature=tau).item() == pytest.approx(golden, abs=1e-7)


def test_nt_xent_matches_loop_formula():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    z = torch.nn.functional.normalize(torch.cat([a, b]), dim=1).numpy()
    total = 0.0
    for i in range(12):
        pos = (i + 6) % 12
        logits = [z[i] @ z[j] / 0.3 for j in range(12) if j != i]
        total += -(z[i] @ z[pos] / 0.3) + np.log(np.sum(np.exp(logits)))
    assert nt_xent_loss(a, b, temperature=0.3).item() == pytest.approx(total / 12, rel=1e-10)
