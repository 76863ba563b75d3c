"""Low-shot linear probe: known answers, sklearn agreement, the span rotation, nested draws, the t-interval."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.linear_model import LogisticRegression

from protocols._logistic import rotate_span
from protocols.low_shot import LowShot, draw_rows
from sslbench.errors import NotApplicable, SslbenchError
from sslbench.testing import make_features
from sslbench.types import FeatureSet


def _blobs(seed: int, n_train: int, n_test: int, c: int, d: int, spread: float, per_class: bool = True) -> FeatureSet:
    rng = np.random.default_rng(seed)
    means = spread * rng.standard_normal((c, d))

    def draw(n):
        y = rng.permutation(np.resize(np.arange(c), n))
        return (means[y] + rng.standard_normal((n, d)) + 0.5).astype(np.float32), y

    (train_x, train_y), (test_x, test_y) = draw(n_train), draw(n_test)
    return FeatureSet.of(train_x, train_y, test_x, test_y)


def test_separated_classes_are_classified_perfectly():
    out = LowShot().evaluate(make_features(0), seed=0).metrics
    for k in (1, 2, 5, 10, 50):
        assert out[f"top1_{k}shot"] == 1.0 and out[f"top1_{k}shot_draw_ci95"] == 0.0
    assert "skipped_shots" not in out


def test_noise_features_score_chance():
    feats = _blobs(1, 1000, 3000, c=10, d=64, spread=0.0)
    out = LowShot(shots=(1, 10, 50)).evaluate(feats, seed=0).metrics
    for k in (1, 10, 50):
        assert abs(out[f"top1_{k}shot"] - 0.1) < 0.02, (k, out)
        assert 0.0 < out[f"top1_{k}shot_draw_ci95"] < 0.05


def test_t_interval_over_draws():
    feats = _blobs(2, 800, 500, c=5, d=24, spread=0.4)
    protocol = LowShot(shots=(2, 10), draws=4)
    ev = protocol.evaluate(feats, seed=0)
    out, acc = ev.metrics, ev.artifacts["draw_top1"]
    assert acc.shape == (4, 2)
    for j, k in enumerate((2, 10)):
        assert out[f"top1_{k}shot"] == pytest.approx(acc[:, j].mean())
        half = stats.t.ppf(0.975, 3) * acc[:, j].std(ddof=1) / 2  # t_{0.975,3} = 3.182
        assert out[f"top1_{k}shot_draw_ci95"] == pytest.approx(half)
        assert half > 0


@pytest.mark.parametrize("k", [3, 40])  # n = 15 < D (span basis) and n = 200 >= D (full basis)
def test_matches_sklearn_on_one_draw(k):
    feats = _blobs(3, 1000, 1000, c=5, d=30, spread=0.5)
    protocol = LowShot(shots=(k,), draws=2)
    art = protocol.evaluate(feats, seed=1).artifacts
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    for d in range(2):
        idx = art["draw_rows"][d, :, :k].ravel()
        clf = LogisticRegression(C=1.0 / (protocol.wd * len(idx)), tol=1e-10, max_iter=20000)
        clf.fit(norm(feats.train.x[idx]), feats.train.y[idx])
        assert abs(clf.score(norm(feats.test.x), feats.test.y) - art["draw_top1"][d, 0]) <= 0.005
    assert 0.3 < art["draw_top1"].mean() < 0.95  # noisy enough to be a real check


def test_rotate_span_is_an_exact_change_of_basis():
    x = torch.randn(12, 40)
    x[5] = x[2]  # a duplicate row: rank 11
    rot = rotate_span(x)
    assert rot.x.shape == (12, 11) and rot.basis.shape == (40, 11)
    assert torch.allclose(rot.basis.T @ rot.basis, torch.eye(11, dtype=torch.float64), atol=1e-10)
    assert torch.allclose((x.double() @ rot.basis).float(), rot.x, atol=1e-4)
    assert torch.allclose(rot.eig, (rot.x.double() ** 2).sum(0) / 12, rtol=1e-5)


def test_draws_are_nested_seeded_and_per_class():
    y = np.repeat([3, 7, 9], [12, 20, 15])
    classes, rows = draw_rows(y, 10, draws=3, seed=0)
    assert classes.tolist() == [3, 7, 9] and rows.shape == (3, 3, 10)
    assert (y[rows] == classes[None, :, None]).all()
    assert all(len(set(rows[d].ravel())) == 30 for d in range(3))
    _, fewer = draw_rows(y, 4, draws=3, seed=0)
    assert np.array_equal(fewer, rows[:, :, :4])  # the 4-shot sets are the start of the 10-shot sets
    assert np.array_equal(draw_rows(y, 10, 3, seed=0)[1], rows)
    assert not np.array_equal(draw_rows(y, 10, 3, seed=1)[1], rows)
    assert not np.array_equal(rows[0], rows[1])


def test_same_seed_same_numbers():
    feats = _blobs(4, 600, 300, c=4, d=16, spread=0.5)
    first = LowShot(shots=(1, 5)).evaluate(feats, seed=2).metrics
    assert LowShot(shots=(1, 5)).evaluate(feats, seed=2).metrics == first
    assert LowShot(shots=(1, 5)).evaluate(feats, seed=3).metrics != first


def test_too_small_classes_skip_their_k_and_the_main_k_is_required():
    feats = make_features(1, n_train=200)  # 20 train rows per class
    out = LowShot().evaluate(feats, seed=0).metrics
    assert "top1_50shot" not in out and out["skipped_shots"] == "50"
    assert out["top1_10shot"] == 1.0
    with pytest.raises(NotApplicable, match="needs 10 train samples per class"):
        LowShot().evaluate(make_features(1, n_train=80), seed=0)


def test_test_classes_unseen_in_train_count_as_errors():
    feats = make_features(2)
    test_y = feats.test.y.copy()
    test_y[test_y == 9] = 11  # a class the probe never saw
    feats = dataclasses.replace(feats, test=dataclasses.replace(feats.test, y=test_y))
    out = LowShot(shots=(5,)).evaluate(feats, seed=0).metrics
    assert out["top1_5shot"] == pytest.approx(np.mean(test_y != 11))


def test_metric_names_follow_shots():
    assert LowShot.main_metric == "top1_10shot" and LowShot.requires == frozenset({"labels"})
    p = LowShot(shots=(4, 1, 16))
    assert p.shots == (1, 4, 16) and p.meta().main == "top1_16shot"
    assert p.meta().directions == {"top1_1shot": "higher", "top1_4shot": "higher", "top1_16shot": "higher"}


def test_bad_parameters_are_refused():
    for bad in ({"shots": ()}, {"shots": (0, 1)}, {"draws": 1}, {"wd": -1.0}, {"max_iter": 0}):
        with pytest.raises(SslbenchError):
            LowShot(**bad)
