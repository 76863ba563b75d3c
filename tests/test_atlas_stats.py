"""The atlas's statistics on constructed cells with known answers: Clopper-Pearson and Kendall tau
against scipy, monotonicity, boundary bracketing, the robust/recipe-dependent verdict, pooling and scaling."""

import math

import numpy as np
import pytest
from scipy import stats

from sslbench.atlas.agreement import agreements, bootstrap_ci, kendall_tau
from sslbench.atlas.cells import Proportion, all_cells
from sslbench.atlas.interaction import (
    EffectAt,
    effects,
    pooled_grids,
    scalings,
    verdict,
)
from sslbench.atlas.runs import AtlasRun
from sslbench.atlas.slices import Grid, boundary, monotone, slices, step
from sslbench.stats import welch_ci95


def _run(sweep, coords, seed, knn=0.5, status="healthy", base="vicreg", config=None, readings=None):
    return AtlasRun(f"{sweep}/seed{seed}", sweep, base, tuple(coords.items()), seed, config or {},
                    {"knn": knn}, status, readings or {})


def _grid(runs, name="s"):
    cells = [c for c in all_cells(runs) if c.sweep == name]
    return Grid(name, cells[0].base, tuple(a for a, _ in cells[0].coordinates), tuple(cells))


def _collapse_sweep(ks, n, values=(1, 2, 4, 8, 16)):
    """A one-axis sweep whose cell at ``values[i]`` collapses on ``ks[i]`` of ``n`` seeds."""
    return [_run("s", {"loss.x": v}, seed, status="complete" if seed < k else "healthy")
            for v, k in zip(values, ks) for seed in range(n)]


@pytest.mark.parametrize(("k", "n"), [(0, 5), (1, 5), (3, 5), (5, 5), (7, 20)])
def test_cell_proportions_are_exact_clopper_pearson(k, n):
    p = Proportion.of(k, n)
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert (p.lo, p.hi) == pytest.approx((ref.low, ref.high), abs=1e-10)
    assert p.p == k / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kendall_tau_b_matches_scipy_with_and_without_ties(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=25), rng.normal(size=25)
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    xt, yt = np.round(x), np.round(y * 2)  # many ties
    assert kendall_tau(xt, yt) == pytest.approx(stats.kendalltau(xt, yt, variant="b").statistic, abs=1e-12)
    assert math.isnan(kendall_tau(np.ones(5), np.arange(5.0)))


def test_the_vectorised_bootstrap_equals_the_loop_over_resamples():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=12), rng.normal(size=12)
    x[:3] = x[3]  # ties survive the indexing
    idx = np.random.default_rng(7).integers(0, 12, size=(200, 12))
    taus = np.array([kendall_tau(x[i], y[i]) for i in idx])
    taus = taus[np.isfinite(taus)]
    assert bootstrap_ci(x, y, draws=200, seed=7) == pytest.approx(tuple(np.percentile(taus, [2.5, 97.5])))


def test_agreement_flags_a_reading_the_loss_optimises():
    runs = [_run("s", {"loss.x": v}, 0, knn=0.1 * v, readings={"z_std_l2": v, "rankme": -v}) for v in range(6)]
    found = {a.reading: a for a in agreements("vicreg", all_cells(runs))}
    assert found["z_std_l2"].tau == pytest.approx(1.0) and found["rankme"].tau == pytest.approx(-1.0)
    assert "variance term" in found["z_std_l2"].optimised_by and found["rankme"].optimised_by == ""


def test_the_boundary_is_bracketed_by_the_cells_either_side_of_one_half():
    g = _grid(_collapse_sweep([5, 4, 3, 1, 0], 5))
    b = boundary(g.cells, "loss.x")
    (c,) = b.crossings
    assert (c.below, c.above, c.direction) == (4, 8, "falling")
    assert c.estimate == pytest.approx(4 * 2 ** 0.25)  # log axis: t = (0.5 - 0.6) / (0.2 - 0.6)
    assert not c.resolved  # 3/5 has a Clopper-Pearson interval containing 1/2


def test_a_boundary_between_certain_cells_is_resolved_and_one_half_is_skipped():
    g = _grid(_collapse_sweep([20, 10, 0], 20, values=(1, 2, 3)))
    (c,) = boundary(g.cells, "loss.x").crossings
    assert (c.below, c.above, c.resolved) == (1, 3, True)
    assert c.estimate == pytest.approx(2.0)  # linear axis: 3 / 1 < 10


def test_no_crossing_says_on_which_side_the_slice_stays():
    assert boundary(_grid(_collapse_sweep([0, 0, 1], 5, (1, 2, 3))).cells, "loss.x").summary == \
        "no crossing: P(collapse) stays below 1/2 over the slice"
    assert boundary(_grid(_collapse_sweep([5, 5, 4], 5, (1, 2, 3))).cells, "loss.x").crossings == ()


def _curve(means, noise=(0.0, 0.01, -0.01)):
    return _grid([_run("s", {"loss.x": i}, seed, knn=m + e) for i, m in enumerate(means)
                  for seed, e in enumerate(noise)])


@pytest.mark.parametrize(("means", "expected"), [((0.1, 0.2, 0.3), "increasing"), ((0.3, 0.3, 0.1), "decreasing"),
                                                 ((0.1, 0.1005, 0.1), "flat"), ((0.1, 0.3, 0.1), "non-monotone")])
def test_monotone_follows_the_welch_intervals_of_neighbouring_cells(means, expected):
    (s,) = slices(_curve(means))[0]
    (trend,) = s.trends
    assert trend.verdict == expected
    a, b = s.cells[0].samples["knn"], s.cells[1].samples["knn"]
    assert trend.steps[0].ci95 == pytest.approx(welch_ci95(b, a))


def test_one_seed_gives_no_interval_and_a_slice_of_one_cell_a_message():
    g = _curve((0.1, 0.2), noise=(0.0,))
    assert monotone([step(g.cells[0], g.cells[1], "knn", "loss.x")]) == "needs 2+ seeds"
    runs = [_run("s", {"loss.x": 1, "heads.d": 64}, 0), _run("s", {"loss.x": 2, "heads.d": 64}, 0),
            _run("s", {"loss.x": 1, "heads.d": 128}, 0)]
    found, messages = slices(_grid(runs))
    assert {(s.axis, s.fixed) for s in found} == {("loss.x", (("heads.d", 64),)), ("heads.d", (("loss.x", 1),))}
    assert messages == ["s: loss.x at heads.d=128 has 1 cell (loss.x=1): no curve, no boundary",
                        "s: heads.d at loss.x=2 has 1 cell (heads.d=64): no curve, no boundary"]


@pytest.mark.parametrize(("at", "expected"), [
    ([(0.1, 0.02), (0.2, 0.05)], "robust"),
    ([(-0.1, 0.02), (-0.2, 0.05)], "robust"),
    ([(0.1, 0.02), (-0.2, 0.05)], "recipe-dependent"),
    ([(0.1, 0.02), (0.01, 0.05)], "recipe-dependent"),
    ([(0.01, 0.02), (-0.01, 0.05)], "within noise"),
    ([(0.1, 0.02), (0.2, float("nan"))], "needs 2+ seeds"),
])
def test_the_effect_verdict(at, expected):
    assert verdict([EffectAt(i, d, ci) for i, (d, ci) in enumerate(at)]) == expected


def _config(var, batch):
    return {"method": "x", "seed": 0, "loss": {"var_coeff": var}, "train": {"batch_size": batch, "epochs": 2}}


def test_sweeps_of_one_family_pool_on_their_recipes_and_give_effects_per_recipe():
    gain = {128: 0.1, 256: 0.1, 512: -0.1}  # var 1 -> 5 helps at 128 and 256, hurts at 512
    runs = [_run("mu", {"loss.var_coeff": v}, seed, knn=0.5 + (gain[256] if v == 5 else 0) + 0.001 * seed,
                 config=_config(v, 256)) for v in (1, 5) for seed in range(3)]
    runs += [_run("mu_batch", {"loss.var_coeff": v, "train.batch_size": b}, seed,
                  knn=0.5 + (gain[b] if v == 5 else 0) + 0.001 * seed, config=_config(v, b))
             for v in (1, 5) for b in (128, 512) for seed in range(3)]
    (pooled,) = pooled_grids(runs)
    assert pooled.axes == ("loss.var_coeff", "train.batch_size") and len(pooled.cells) == 6
    found = {(e.knob, e.lo, e.hi): e for e in effects(pooled)}
    e = found[("loss.var_coeff", 1, 5)]
    assert [a.recipe for a in e.at] == [128, 256, 512]
    assert [round(a.delta, 6) for a in e.at] == [0.1, 0.1, -0.1] and e.verdict == "recipe-dependent"


def test_collapse_driven_by_lambda_times_d_lines_up_against_the_product():
    runs = [_run("bt", {"loss.lambd": lam, "heads.proj_dim": d}, seed, base="barlow_twins", knn=0.5,
                 status="dimensional" if lam * d > 1.0 else "healthy")
            for lam in (0.001, 0.004, 0.016, 0.064) for d in (16, 64, 256) for seed in range(2)]
    g = _grid(runs, "bt")
    (s,) = scalings(g, slices(g)[0])
    fit = next(f for f in s.fits if f.quantity == "P(collapse)")
    assert fit.verdict == "collapses" and fit.mismatch_product < fit.mismatch_knob


def test_a_field_the_identity_leaves_out_reads_as_its_default():
    """Fields added after runs were recorded are absent from their identity at the default."""
    run = _run("s", {}, 0, base="simsiam", config={"train": {"lr": 0.05}, "loss": {}, "views": [{}, {}]})
    assert run.value("train.lr") == 0.05
    assert run.value("train.per_view_forward") is False and run.value("train.pred_lr_scale") == 1.0
    assert run.value("loss.alpha") == 0.0 and run.value("views.crop_scale") == (0.2, 1.0)
    assert _run("s", {}, 0, base="no_such_method", config={"loss": {}}).value("loss.alpha") is None
