"""Linear probe: separable data, agreement with scikit-learn, determinism, wd selection."""

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from protocols._logistic import fit_logistic, standardize, top1
from protocols.linear import Linear, stratified_split
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


def test_linearly_separable_data_gives_perfect_accuracy():
    feats = _blobs(0, 600, 200, c=3, d=8, spread=10.0)
    out = Linear(wd_grid=GRID, max_iter=50).evaluate(feats, seed=0).metrics
    assert out["top1"] == 1.0 and out["val_top1"] == 1.0
    assert set(Linear.metrics) <= set(out) and "best_wd" in out


def test_matches_sklearn_logistic_regression():
    feats = _blobs(1, 3000, 1000, c=4, d=20, spread=0.6)
    x_tr, x_te = standardize(feats.train.x, feats.test.x)
    y_tr, y_te = torch.from_numpy(feats.train.y), torch.from_numpy(feats.test.y)
    n = len(y_tr)
    for wd in (1e-1, 1e-3):
        w, b = fit_logistic(x_tr, y_tr, 4, wd, max_iter=100)
        # Ours: mean CE + wd/2 ||W||^2. sklearn: C * sum CE + 1/2 ||W||^2 (bias not
        # penalised with lbfgs). Dividing ours by wd gives C = 1 / (wd * N).
        sk = LogisticRegression(C=1.0 / (wd * n), max_iter=5000, tol=1e-10).fit(x_tr.numpy(), feats.train.y)
        assert np.abs(w.numpy() - sk.coef_.T).max() < 2e-3 * np.abs(sk.coef_).max()
        acc_sk = sk.score(x_te.numpy(), feats.test.y)
        assert abs(top1(x_te, y_te, w, b) - acc_sk) <= 0.01
    out = Linear(wd_grid=GRID).evaluate(feats, seed=0).metrics
    sk = LogisticRegression(C=1.0 / (out["best_wd"] * n), max_iter=5000, tol=1e-10)
    acc_sk = sk.fit(x_tr.numpy(), feats.train.y).score(x_te.numpy(), feats.test.y)
    assert 0.6 < acc_sk < 0.95  # noisy enough to be a real check
    assert abs(out["top1"] - acc_sk) <= 0.01


def test_same_seed_same_numbers_and_wd_from_grid():
    feats = _blobs(2, 800, 300, c=5, d=16, spread=0.5)
    probe = Linear(wd_grid=GRID, max_iter=60)
    first = probe.evaluate(feats, seed=3).metrics
    assert probe.evaluate(feats, seed=3).metrics == first
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


def test_nan_features_are_refused_naming_the_array():
    feats = dataclasses.replace(_blobs(3, 50, 20, c=2, d=4, spread=1.0), run="simsiam-seed0")
    feats.test.x[7, 2] = np.inf
    with pytest.raises(SslbenchError, match="test_x.*simsiam-seed0"):
        check_features(feats)  # the scoring loop checks once, before any protocol
