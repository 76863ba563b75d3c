"""Width-free collapse labels on constructed spreads whose geometry is known.

Each case is an ``(N, D)`` matrix built from a known covariance: a centred
``k``-dimensional spread (random or coordinate axes, with or without a small
noise tail), an isotropic spread, power-law spectra, a narrow cone and a
spiked spectrum. :func:`collapse_status` (the rule since collapse protocol v3) must
give every case the same label at D = 64, 256 and 2048; the label is the one its
geometry calls for. The rule of collapse v2 and the training monitor before it
(:func:`_width_scaled_rule`) is kept here to show what changed.
``python tests/test_collapse_labels.py`` prints the table of
docs/reference/collapse_metrics.md (N = 4096; the tests use fewer rows).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch

from sslbench.embedding_stats import (
    DIMENSIONAL_MIN_EFFECTIVE_DIMS,
    DIMENSIONAL_UNIFORMITY,
    collapse_status,
    covariance_spectrum,
    participation_ratio,
    rankme,
    std_of_l2_normalized,
    uniformity,
)

WIDTHS = (64, 256, 2048)


def _orthonormal(rng: np.random.Generator, d: int, k: int) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((d, k)))[0]


@functools.cache
def _rotation(d: int) -> np.ndarray:
    """One fixed random rotation per width (the spectrum readings do not depend on it; the per-axis std does)."""
    return _orthonormal(np.random.default_rng(1000 + d), d, d)


def spread(n: int, d: int, k: int, rng: np.random.Generator, axes: bool = False, noise: float = 0.0) -> np.ndarray:
    """A centred ``k``-dimensional Gaussian spread in ``d`` dims; ``noise`` is the per-dim variance
    of an isotropic tail relative to the per-dim variance of the spread."""
    basis = np.eye(d)[:, :k] if axes else _orthonormal(rng, d, k)
    z = rng.standard_normal((n, k)) @ basis.T
    return z + np.sqrt(noise) * rng.standard_normal((n, d)) if noise else z


def power_law(n: int, d: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian with covariance eigenvalues ``k^-alpha``, in a random basis."""
    scale = np.arange(1, d + 1.0) ** (-alpha / 2)
    return (rng.standard_normal((n, d)) * scale) @ _rotation(d).T


def cone(n: int, d: int, rng: np.random.Generator, width: float = 0.3) -> np.ndarray:
    """Rows around one direction: a unit mean plus isotropic noise of total norm about ``width``."""
    return _orthonormal(rng, d, 1).T + width / np.sqrt(d) * rng.standard_normal((n, d))


def spiked(n: int, d: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """An isotropic spread with one direction carrying ``share`` of the variance."""
    lam = np.full(d, (1 - share) / (d - 1))
    lam[0] = share
    return (rng.standard_normal((n, d)) * np.sqrt(lam)) @ _rotation(d).T


Case = tuple[str, Callable[[int, int, np.random.Generator], np.ndarray], str]

CASES: list[Case] = [
    *[(f"{k}-dim spread", lambda n, d, r, k=k: spread(n, d, k, r), "dimensional" if k <= 3 else "healthy")
      for k in (1, 2, 3, 4, 5, 10)],
    *[(f"{k}-dim spread on coordinate axes", lambda n, d, r, k=k: spread(n, d, k, r, axes=True),
       "dimensional" if k <= 3 else "healthy") for k in (1, 2, 3, 10)],
    *[(f"{k}-dim spread + 1e-4 noise tail", lambda n, d, r, k=k: spread(n, d, k, r, noise=1e-4),
       "dimensional" if k <= 2 else "healthy") for k in (1, 2, 10)],
    ("isotropic", lambda n, d, r: r.standard_normal((n, d)), "healthy"),
    *[(f"power law alpha={a:g}", lambda n, d, r, a=a: power_law(n, d, a, r), "healthy" if a <= 2.0 else "dimensional")
      for a in (0.5, 1.0, 1.5, 2.0, 3.0)],
    ("cone of width 0.3", cone, "dimensional"),
    *[(f"spike with {s:.0%} of the variance", lambda n, d, r, s=s: spiked(n, d, s, r),
       "healthy") for s in (0.3, 0.7)],
]


def test_a_three_dim_spread_with_a_noise_tail_is_the_one_case_whose_label_moves_with_width():
    """A tail of per-dim variance 1e-4 adds about 2048e-4 / 3 of the spread's variance at D = 2048.

    That lifts the participation ratio of a 3-dim spread from 3.0 to about 3.9, over the
    threshold of 3.5: the tail is real variance, so no width-free spectrum reading can ignore it.
    """
    labels = {d: readings(spread(800, d, 3, np.random.default_rng(d), noise=1e-4), 400) for d in WIDTHS}
    assert [labels[d]["v2"] for d in WIDTHS] == ["dimensional", "dimensional", "healthy"]
    assert 3.0 < labels[64]["effective_dims"] < 3.5 < labels[2048]["effective_dims"] < 4.2


def _width_scaled_rule(std_l2: float, dim: int, rankme_value: float, uniformity_value: float) -> str:
    """The rule of collapse v2: complete below 0.1/sqrt(D) per-axis std, dimensional below RankMe 0.01 D."""
    if std_l2 < 0.1 / np.sqrt(dim):
        return "complete"
    if uniformity_value > DIMENSIONAL_UNIFORMITY or rankme_value < 0.01 * dim:
        return "dimensional"
    return "healthy"


def readings(z: np.ndarray, uniformity_rows: int) -> dict[str, float | str]:
    """Every reading the two rules use, as the collapse protocol computes them."""
    d = z.shape[1]
    spectrum = covariance_spectrum(z)
    u = uniformity(z[:uniformity_rows])
    std_l2 = float(std_of_l2_normalized(torch.from_numpy(z)))
    rm = rankme(z)
    return {
        "rankme": rm,
        "uniformity": u,
        "std_ratio": std_l2 * np.sqrt(d),
        "spread": float(spectrum.sum()),
        "effective_dims": participation_ratio(spectrum),
        "v1": _width_scaled_rule(std_l2, d, rm, u),
        "v2": collapse_status(float(spectrum.sum()), participation_ratio(spectrum), u),
    }


@pytest.mark.parametrize("name,make,expected", CASES, ids=[c[0] for c in CASES])
def test_width_free_label_is_the_same_at_every_width(name, make, expected):
    labels = {}
    for d in WIDTHS:
        r = readings(make(800, d, np.random.default_rng(d)), uniformity_rows=400)
        labels[d] = r["v2"]
    assert set(labels.values()) == {expected}, labels


def test_old_rule_changes_label_with_width_where_the_new_one_does_not():
    """The issue's cases: a 3-dim spread reads healthy under the 1%-of-D rule; a 10-dim one flips with D."""
    rng = np.random.default_rng(0)
    assert readings(spread(800, 256, 3, rng), 400)["v1"] == "healthy"
    old = {d: readings(spread(800, d, 10, rng), 400)["v1"] for d in (128, 2048)}
    assert old == {128: "healthy", 2048: "dimensional"}


def test_axis_aligned_spread_reads_complete_under_the_per_axis_std_only():
    """The per-axis std of a k-dim spread on coordinate axes is sqrt(k)/D: 'complete' at D = 2048."""
    r = readings(spread(800, 2048, 3, np.random.default_rng(0), axes=True), 400)
    assert r["v1"] == "complete" and r["v2"] == "dimensional"
    assert r["std_ratio"] == pytest.approx(np.sqrt(3) / np.sqrt(2048), rel=0.05)
    assert r["spread"] == pytest.approx(1.0, abs=0.01)  # 1 - ||mean||^2 of a centred spread


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_effective_dims_of_a_k_dim_spread_is_k_at_every_width(k):
    for d in WIDTHS:
        pr = participation_ratio(covariance_spectrum(spread(800, d, k, np.random.default_rng(k))))
        assert pr == pytest.approx(k, rel=0.03)


def test_complete_collapse_and_the_threshold_itself():
    rng = np.random.default_rng(1)
    z = np.ones((500, 64)) + 1e-4 * rng.standard_normal((500, 64))
    spectrum = covariance_spectrum(z)
    assert spectrum.sum() < 1e-6
    assert collapse_status(float(spectrum.sum()), participation_ratio(spectrum), uniformity(z)) == "complete"
    assert collapse_status(0.5, DIMENSIONAL_MIN_EFFECTIVE_DIMS - 1e-9, -3.0) == "dimensional"
    assert collapse_status(0.5, DIMENSIONAL_MIN_EFFECTIVE_DIMS, -3.0) == "healthy"
    assert collapse_status(0.5, 50.0, -0.5) == "dimensional"


def _table(n: int = 4096, uniformity_rows: int = 2000) -> str:
    """The markdown table of docs/reference/collapse_metrics.md."""
    head = "| case | expected | " + " | ".join(f"D = {d}: eff. dims / v2 / v1 (RankMe)" for d in WIDTHS) + " |"
    lines = [head, "|" + "---|" * (2 + len(WIDTHS))]
    for name, make, expected in CASES:
        cells = []
        for d in WIDTHS:
            r = readings(make(n, d, np.random.default_rng(d)), uniformity_rows)
            cells.append(f"{r['effective_dims']:.2f} / {r['v2']} / {r['v1']} ({r['rankme']:.1f})")
        lines.append(f"| {name} | {expected} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(_table() + "\n")
