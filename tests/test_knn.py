"""Weighted cosine kNN: known answers, the weighted vote, a brute-force reference, clipping."""

import numpy as np
import pytest

import protocols.knn as knn_module
from protocols.knn import KNN, gpu_available, knn_predict, neighbors
from sslbench.errors import SslbenchError
from sslbench.protocol import check_features
from sslbench.types import FeatureSet


def _two_clusters(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    centers = np.array([[10.0, 0, 0, 0], [0, 10.0, 0, 0]])
    y = np.repeat([0, 1], n)
    return (centers[y] + rng.standard_normal((2 * n, 4))).astype(np.float32), y


def test_two_separated_clusters_are_classified_perfectly():
    rng = np.random.default_rng(0)
    train_x, train_y = _two_clusters(rng, 30)  # 60 train rows: k=200 is clipped
    test_x, test_y = _two_clusters(rng, 10)
    out = KNN().evaluate(FeatureSet.of(train_x, train_y, test_x, test_y), seed=0).metrics
    assert set(out) == set(KNN.metrics)
    assert all(v == 1.0 for v in out.values())


def test_weighted_vote_beats_majority_vote_by_hand():
    # Query along e1. One class-0 neighbour at 0 degrees (cos 1), two class-1
    # neighbours at +-60 degrees (cos 0.5). With k = 3, T = 0.07:
    #   class 0: exp(1 / 0.07) = exp(14.29) ~ 1.6e6
    #   class 1: 2 * exp(0.5 / 0.07) = 2 * exp(7.14) ~ 2.5e3
    # so the weighted vote says 0, while a plain majority (1 vs 2) says 1.
    c, s = np.cos(np.pi / 3), np.sin(np.pi / 3)
    train_x = np.array([[1.0, 0.0], [c, s], [c, -s]], dtype=np.float32)
    train_y = np.array([0, 1, 1])
    test_x = np.array([[2.0, 0.0]], dtype=np.float32)
    assert knn_predict(train_x, train_y, test_x, [3], 0.07)[3][0] == 0
    # A huge temperature flattens the weights to a majority vote.
    assert knn_predict(train_x, train_y, test_x, [3], 1e6)[3][0] == 1

    feats = FeatureSet.of(train_x, train_y, test_x, np.array([0]))
    assert KNN(k=3, extra_k=()).evaluate(feats, seed=0).metrics == {"top1": 1.0}
    assert KNN(k=3, temperature=1e6, extra_k=()).evaluate(feats, seed=0).metrics == {"top1": 0.0}


def _brute_force(train_x, train_y, test_x, k, temperature, num_classes):
    a = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    q = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ a.T.astype(np.float64)
    preds = []
    for row in sims:
        top = np.argsort(-row)[:k]
        votes = np.zeros(num_classes)
        for j in top:
            votes[train_y[j]] += np.exp(row[j] / temperature)
        preds.append(int(np.argmax(votes)))
    return np.array(preds)


def test_agrees_with_brute_force_numpy():
    rng = np.random.default_rng(1)
    means = rng.standard_normal((5, 16))
    train_y = rng.integers(0, 5, 400)
    test_y = rng.integers(0, 5, 80)
    train_x = (means[train_y] + 1.5 * rng.standard_normal((400, 16))).astype(np.float32)
    test_x = (means[test_y] + 1.5 * rng.standard_normal((80, 16))).astype(np.float32)
    ks = [1, 5, 20, 200]
    for temperature in (0.07, 0.5):
        preds = knn_predict(train_x, train_y, test_x, ks, temperature, 5)
        for k in ks:
            expected = _brute_force(train_x, train_y, test_x, k, temperature, 5)
            assert np.array_equal(preds[k], expected), (k, temperature)


def test_k_larger_than_train_set_is_clipped():
    rng = np.random.default_rng(2)
    train_x = rng.standard_normal((12, 8)).astype(np.float32)
    train_y = rng.integers(0, 3, 12)
    test_x = rng.standard_normal((30, 8)).astype(np.float32)
    test_y = rng.integers(0, 3, 30)
    out = KNN(k=50, extra_k=(1, 1000)).evaluate(FeatureSet.of(train_x, train_y, test_x, test_y), 0).metrics
    assert set(out) == {"top1", "top1_k1", "top1_k1000"}
    all_train = _brute_force(train_x, train_y, test_x, 12, 0.07, 3)
    assert out["top1"] == out["top1_k1000"] == pytest.approx(np.mean(all_train == test_y))


def test_metric_names_follow_extra_k():
    assert KNN(extra_k=(10,)).meta().directions == {"top1": "higher", "top1_k10": "higher"}
    assert KNN.metrics == {"top1": "higher", "top1_k1": "higher", "top1_k5": "higher", "top1_k200": "higher"}
    assert KNN.main_metric == "top1" and KNN.requires == frozenset({"labels"})


def test_bad_parameters_are_refused():
    with pytest.raises(SslbenchError):
        KNN(k=0)
    with pytest.raises(SslbenchError):
        KNN(temperature=0.0)


def test_nan_features_are_refused_naming_the_array():
    rng = np.random.default_rng(3)
    train_x = rng.standard_normal((20, 4)).astype(np.float32)
    train_x[3, 1] = np.nan
    test_x = rng.standard_normal((5, 4)).astype(np.float32)
    feats = FeatureSet.of(train_x, np.zeros(20, int), test_x, np.zeros(5, int), run="r1")
    with pytest.raises(SslbenchError, match="train_x.*r1"):
        check_features(feats)  # the scoring loop checks once, before any protocol


def test_l2_metric_matches_a_brute_force_search():
    rng = np.random.default_rng(11)
    train, test = rng.standard_normal((300, 8)).astype(np.float32), rng.standard_normal((40, 8)).astype(np.float32)
    sims, idx = neighbors(train, test, 5, metric="l2", device="cpu")
    d2 = ((test[:, None, :] - train[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(idx, np.argsort(d2, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(-sims, np.sort(d2, axis=1)[:, :5], rtol=1e-4, atol=1e-4)


def test_ivf_index_finds_most_exact_neighbours_and_is_recorded():
    rng = np.random.default_rng(12)
    centers = rng.standard_normal((20, 16))
    train = (centers[rng.integers(0, 20, 8000)] + 0.3 * rng.standard_normal((8000, 16))).astype(np.float32)
    test = (centers[rng.integers(0, 20, 200)] + 0.3 * rng.standard_normal((200, 16))).astype(np.float32)
    _, exact = neighbors(train, test, 10, device="cpu")
    _, approx = neighbors(train, test, 10, index="ivf", nlist=32, nprobe=8, device="cpu")
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall > 0.9
    p = KNN(index="ivf", metric="l2")
    assert p.params()["index"] == "ivf" and p.params()["metric"] == "l2"


def test_gpu_device_without_faiss_gpu_is_a_clear_error():
    if gpu_available():
        pytest.skip("this faiss has a GPU")
    train = np.random.default_rng(13).standard_normal((50, 4)).astype(np.float32)
    with pytest.raises(SslbenchError, match="faiss-gpu"):
        neighbors(train, train, 3, device="gpu")
    neighbors(train, train, 3, device="auto")  # falls back to the CPU


def test_unknown_metric_is_refused():
    with pytest.raises(SslbenchError, match="metric must be one of cosine, l2"):
        KNN(metric="manhattan")


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_sharded_exact_search_equals_the_single_index(monkeypatch, metric):
    rng = np.random.default_rng(14)
    train, test = rng.standard_normal((1000, 16)).astype(np.float32), rng.standard_normal((30, 16)).astype(np.float32)
    whole = neighbors(train, test, 7, metric=metric, device="cpu")
    monkeypatch.setattr(knn_module, "SHARD_BYTES", 300 * 16 * 4)  # 300-row shards, the last one short
    sharded = neighbors(train, test, 7, metric=metric, device="cpu")
    np.testing.assert_allclose(sharded[0], whole[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(sharded[1], whole[1])
