"""Linear probe: separable data, agreement with scikit-learn and a float64 reference, stopping, wd selection."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from protocols._logistic import (
    Design,
    Whitener,
    _Line,
    _Objective,
    _softmax_loss,
    fit_softmax,
    standardize,
)
from protocols.linear import Linear, probe, standardize_split
from sslbench.splits import stratified_split
from sslbench.errors import SslbenchError
from sslbench.protocol import check_features
from sslbench.types import FeatureSet

GRID = (1e-5, 1e-3, 1e-1)


def _blobs(seed: int, n_train: int, n_test: int, c: int, d: int, spread: float) -> FeatureSet:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((c, d)) * spread
    scale = rng.uniform(0.5, 2.0, d)  # anisotropic, offset: standardisation matters

    def draw(n):
        y = rng.integers(0, c, n)
        return (means[y] + rng.standard_normal((n, d)) * scale + 3.0).astype(np.float32), y

    (train_x, train_y), (test_x, test_y) = draw(n_train), draw(n_test)
    return FeatureSet.of(train_x, train_y, test_x, test_y)


def _correlated(seed: int, n_train: int, n_test: int, c: int, d: int, k: int, spread: float) -> FeatureSet:
    """Encoder-like features: ReLU of a k-factor model, columns on scales 0.2..5 (strongly correlated)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((c, k)) * spread
    mix = rng.standard_normal((k, d)) / np.sqrt(k)
    scale = np.exp(rng.uniform(-1.5, 1.5, d))

    def draw(n):
        y = rng.integers(0, c, n)
        h = means[y] + rng.standard_normal((n, k))
        x = np.maximum(h @ mix + 0.3 * rng.standard_normal((n, d)), 0.0) * scale
        return x.astype(np.float32), y

    (train_x, train_y), (test_x, test_y) = draw(n_train), draw(n_test)
    return FeatureSet.of(train_x, train_y, test_x, test_y)


def _objective64(x: np.ndarray, y: np.ndarray, c: int, wd: float, w: np.ndarray, b: np.ndarray) -> float:
    """``mean CE + wd/2 ||W||^2`` in float64, written out independently of the solver."""
    z = x.astype(np.float64) @ w.astype(np.float64) + b.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    ce = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
    return float(ce.mean() + 0.5 * wd * (w.astype(np.float64) ** 2).sum())


def _reference64(x: np.ndarray, y: np.ndarray, c: int, wd: float) -> float:
    """Minimum of the objective by scipy's L-BFGS-B in float64 with a tight tolerance."""
    x = x.astype(np.float64)
    n, d = x.shape
    onehot = np.eye(c)[y]

    def fg(p):
        w, b = p[: d * c].reshape(d, c), p[d * c :]
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        f = (np.log(s[:, 0]) - (z * onehot).sum(axis=1)).mean() + 0.5 * wd * (w**2).sum()
        g = (e / s - onehot) / n
        return f, np.concatenate([(x.T @ g + wd * w).ravel(), g.sum(axis=0)])

    res = minimize(fg, np.zeros(d * c + c), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "gtol": 1e-12, "ftol": 1e-15, "maxcor": 30})
    return float(res.fun)


def _sklearn_protocol(feats: FeatureSet, grid: tuple[float, ...], seed: int) -> dict[str, float]:
    """The probe's protocol with scikit-learn's lbfgs: same split, fit-part standardisation, grid, refit."""
    ty, tey = feats.train.y.astype(np.int64), feats.test.y.astype(np.int64)
    fit_idx, val_idx = stratified_split(ty, 0.2, seed)
    xf, xv = (t.numpy() for t in standardize(feats.train.x[fit_idx], feats.train.x[val_idx]))
    best_wd, best_val = None, -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for wd in sorted(grid, reverse=True):
            # ours: mean CE + wd/2 ||W||^2; sklearn: C sum CE + 1/2 ||W||^2, the same for C = 1/(wd N)
            clf = LogisticRegression(C=1.0 / (wd * len(fit_idx)), max_iter=5000, tol=1e-8).fit(xf, ty[fit_idx])
            acc = clf.score(xv, ty[val_idx])
            if acc > best_val:
                best_wd, best_val = wd, acc
        xtr, xte = (t.numpy() for t in standardize(feats.train.x, feats.test.x))
        final = LogisticRegression(C=1.0 / (best_wd * len(ty)), max_iter=5000, tol=1e-8).fit(xtr, ty)
    return {"top1": final.score(xte, tey), "val_top1": best_val, "best_wd": best_wd}


def _fit(x: torch.Tensor, y: torch.Tensor, c: int, wd: float, **kw):
    gram = (x.T @ x).double() / len(x)
    return fit_softmax(Design(x, y), Whitener.from_gram(gram), c, wd, **kw)


def test_linearly_separable_data_gives_perfect_accuracy():
    feats = _blobs(0, 600, 200, c=3, d=8, spread=10.0)
    out = Linear(wd_grid=GRID, max_iter=50).evaluate(feats, seed=0).metrics
    assert out["top1"] == 1.0 and out["val_top1"] == 1.0
    assert set(Linear.metrics) <= set(out) and "best_wd" in out


def test_matches_sklearn_logistic_regression():
    feats = _blobs(1, 3000, 1000, c=4, d=20, spread=0.6)
    x_tr, x_te = standardize(feats.train.x, feats.test.x)
    y_tr = torch.from_numpy(feats.train.y)
    n = len(y_tr)
    for wd in (1e-1, 1e-3):
        fit = _fit(x_tr, y_tr, 4, wd, max_iter=100)
        # Ours: mean CE + wd/2 ||W||^2. sklearn: C * sum CE + 1/2 ||W||^2 (bias not
        # penalised with lbfgs). Dividing ours by wd gives C = 1 / (wd * N).
        sk = LogisticRegression(C=1.0 / (wd * n), max_iter=5000, tol=1e-10).fit(x_tr.numpy(), feats.train.y)
        assert np.abs(fit.w.numpy() - sk.coef_.T).max() < 2e-3 * np.abs(sk.coef_).max()
        acc = Design(x_te, torch.from_numpy(feats.test.y)).top1(fit.w, fit.b)
        assert abs(acc - sk.score(x_te.numpy(), feats.test.y)) <= 0.01


@pytest.mark.parametrize("seed", [0, 2])
def test_protocol_agrees_with_sklearn_on_the_same_grid(seed):
    """Correlated encoder-like features, not separable: the same wd and test top-1 within 0.2 points."""
    feats = _correlated(seed, 4000, 2000, c=5, d=48, k=12, spread=0.5)
    grid = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    ours = Linear(wd_grid=grid).evaluate(feats, seed=seed).metrics
    sk = _sklearn_protocol(feats, grid, seed)
    assert 0.55 < sk["top1"] < 0.95  # noisy enough for the agreement to mean something
    assert ours["best_wd"] == sk["best_wd"]
    assert abs(ours["top1"] - sk["top1"]) <= 0.002
    assert abs(ours["val_top1"] - sk["val_top1"]) <= 0.002


@pytest.mark.parametrize("wd", [1e-4, 1e-2])
def test_objective_at_the_solution_matches_a_float64_reference(wd):
    feats = _correlated(2, 3000, 10, c=4, d=32, k=8, spread=0.4)
    (x,) = standardize(feats.train.x)
    y = feats.train.y.astype(np.int64)
    fit = _fit(x, torch.from_numpy(y), 4, wd, max_iter=500)
    ours = _objective64(x.numpy(), y, 4, wd, fit.w.numpy(), fit.b.numpy())
    best = _reference64(x.numpy(), y, 4, wd)
    assert fit.stop in ("gtol", "ftol", "line search")
    assert ours - best <= 1e-6 * best
    assert fit.loss == pytest.approx(ours, rel=1e-5)  # the solver's own running value is the objective


def test_line_search_trials_match_the_float64_objective_along_the_line():
    """The trials' loss changes (relative to the label) and slopes against float64 on the same weights."""
    feats = _correlated(7, 2000, 10, c=4, d=16, k=6, spread=0.5)
    (x,) = standardize(feats.train.x)
    y = feats.train.y.astype(np.int64)
    obj = _Objective(Design(x, torch.from_numpy(y)), Whitener.from_gram((x.T @ x).double() / len(x)), 4, 1e-3)
    gen = torch.Generator().manual_seed(0)
    theta, d = torch.randn(17, 4, generator=gen), torch.randn(17, 4, generator=gen) * 0.3
    logits = obj.logits(theta)
    _, probs = _softmax_loss(logits, obj.design.y)
    line = _Line(obj, logits, probs, obj.logits(d), theta, d)
    (w0, b0), (dw, db) = (tuple(a.double().numpy() for a in obj.weights(v)) for v in (theta, d))

    def f64(t):
        return _objective64(x.numpy(), y, 4, 1e-3, w0 + t * dw, b0 + t * db)

    for t in (1e-5, 1e-2, 1.0, 40.0):  # 40: the long-step branch
        change, slope = line(t)
        assert change == pytest.approx(f64(t) - f64(0.0), rel=1e-4, abs=1e-12)
        h = 1e-4 * max(t, 1.0)
        assert slope == pytest.approx((f64(t + h) - f64(t - h)) / (2 * h), rel=1e-3, abs=1e-9)


def test_tolerance_stops_early_on_an_easy_problem():
    feats = _blobs(3, 2000, 10, c=3, d=10, spread=2.0)
    (x,) = standardize(feats.train.x)
    y = torch.from_numpy(feats.train.y)
    easy = _fit(x, y, 3, 1e-1, max_iter=200)
    assert easy.stop == "gtol" and easy.iterations < 40
    assert easy.forwards == easy.gradients == easy.iterations + 1  # one of each per iteration, one to start
    strict = _fit(x, y, 3, 1e-1, max_iter=200, gtol=0.0, ftol=0.0)
    assert strict.iterations > easy.iterations  # without tolerances it runs on to the float32 floor


def test_warm_start_with_curvature_reaches_the_cold_solution_faster():
    feats = _correlated(4, 3000, 10, c=4, d=32, k=8, spread=0.4)
    (x,) = standardize(feats.train.x)
    y = torch.from_numpy(feats.train.y)
    first = _fit(x, y, 4, 1e-2, max_iter=300)
    cold = _fit(x, y, 4, 1e-3, max_iter=300)
    gram = (x.T @ x).double() / len(x)
    warm = fit_softmax(Design(x, y), Whitener.from_gram(gram), 4, 1e-3, max_iter=300,
                       init=(first.w, first.b), curvature=first.curvature)
    assert warm.loss == pytest.approx(cold.loss, rel=1e-6)
    assert warm.iterations < cold.iterations


def test_split_restandardises_the_fit_part_with_its_own_statistics():
    feats = _correlated(5, 1000, 50, c=3, d=12, k=4, spread=0.5)
    feats.train.x[:, 3] = 2.0
    fit_idx, val_idx = stratified_split(feats.train.y, 0.2, seed=0)
    feats.train.x[val_idx[:5], 3] = 7.0  # constant on the fit part only
    split = standardize_split(feats.train.x, feats.train.y, fit_idx, val_idx, feats.test.x)
    xf, xv = standardize(feats.train.x[fit_idx], feats.train.x[val_idx])
    xa, xt = standardize(feats.train.x, feats.test.x)
    for design, want in ((split.fit_part(), xf), (split.held_out(), xv)):
        got = design.x * design.scale + design.shift
        live = np.arange(12) != 3
        assert torch.allclose(got[:, live], want[:, live], atol=1e-4)
        assert torch.all(got[:, 3] == 0)  # constant on the fit part: left out of the selection
    order = np.concatenate([fit_idx, val_idx])
    # All-train statistics for train and test, up to one shift per column (absorbed by the bias).
    offset = (split.x - xa[torch.from_numpy(order)]).mean(dim=0)
    assert torch.allclose(split.x, xa[torch.from_numpy(order)] + offset, atol=1e-4)
    assert torch.allclose(split.test_x, xt + offset, atol=1e-4)
    assert torch.equal(split.y, torch.from_numpy(feats.train.y[order]))


def test_probe_reports_every_fit_and_warm_starts_along_the_grid():
    feats = _correlated(6, 3000, 500, c=4, d=24, k=6, spread=0.5)
    res = probe(feats.train.x, feats.train.y, feats.test.x, feats.test.y, GRID, 0.2, 100, 0)
    assert [f.wd for f in res.fits] == [1e-1, 1e-3, 1e-5, res.best_wd]
    assert res.fits[-1].rows == 3000 and res.fits[-1].val_top1 is None
    assert all(f.rows == res.gram_rows for f in res.fits[:-1])
    assert max(f.val_top1 for f in res.fits[:-1]) == res.val_top1
    assert all(f.stop != "max_iter" for f in res.fits)
    assert res.metrics() == {"top1": res.top1, "val_top1": res.val_top1, "best_wd": res.best_wd}


def test_same_seed_same_numbers_and_wd_from_grid():
    feats = _blobs(2, 800, 300, c=5, d=16, spread=0.5)
    probe_ = Linear(wd_grid=GRID, max_iter=60)
    first = probe_.evaluate(feats, seed=3).metrics
    assert probe_.evaluate(feats, seed=3).metrics == first
    assert first["best_wd"] in GRID
    assert 0.0 <= first["top1"] <= 1.0 and 0.0 <= first["val_top1"] <= 1.0


def test_stratified_split_holds_out_each_class():
    y = np.repeat(np.arange(4), [50, 20, 10, 1])
    fit, val = stratified_split(y, 0.2, seed=0)
    assert len(np.intersect1d(fit, val)) == 0 and len(fit) + len(val) == len(y)
    assert [int((y[val] == c).sum()) for c in range(4)] == [10, 4, 2, 0]
    assert np.array_equal(val, stratified_split(y, 0.2, seed=0)[1])
    assert not np.array_equal(val, stratified_split(y, 0.2, seed=1)[1])


def test_bad_parameters_are_refused():
    with pytest.raises(SslbenchError):
        Linear(val_fraction=1.0)
    with pytest.raises(SslbenchError):
        Linear(wd_grid=())
    with pytest.raises(SslbenchError):
        Linear(gtol=-1.0)


def test_nan_features_are_refused_naming_the_array():
    feats = dataclasses.replace(_blobs(3, 50, 20, c=2, d=4, spread=1.0), run="simsiam-seed0")
    feats.test.x[7, 2] = np.inf
    with pytest.raises(SslbenchError, match="test_x.*simsiam-seed0"):
        check_features(feats)  # the scoring loop checks once, before any protocol
