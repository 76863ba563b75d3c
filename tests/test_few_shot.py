"""Few-shot episodes: known answers, the cosine centroid rule by hand, sklearn agreement, stored episodes."""

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from protocols.few_shot import (
    FewShot,
    FewShotTransfer,
    centroid_accuracy,
    sample_episodes,
)
from protocols.knn import KNN
from sslbench.embedding_stats import l2_normalize
from sslbench.errors import NotApplicable, SslbenchError
from sslbench.stats import normal_ci95
from sslbench.testing import make_features
from sslbench.types import FeatureSet


def _noise(seed: int, n: int = 2000, d: int = 64, c: int = 10) -> FeatureSet:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    y = rng.integers(0, c, n)
    return FeatureSet.of(x[:50], y[:50], x, y)


def _overlapping(seed: int, n: int = 1500, d: int = 48, c: int = 8) -> FeatureSet:
    rng = np.random.default_rng(seed)
    means = 0.35 * rng.standard_normal((c, d))
    y = rng.integers(0, c, n)
    x = (means[y] + rng.standard_normal((n, d)) + 0.3).astype(np.float32)
    return FeatureSet.of(x[:50], y[:50], x, y)


def test_separated_classes_are_classified_perfectly():
    out = FewShot(episodes=100).evaluate(make_features(0), seed=0).metrics
    for k in (1, 5):
        for clf in ("centroid", "logreg"):
            assert out[f"acc_{k}shot_{clf}"] == 1.0
            assert out[f"acc_{k}shot_{clf}_episode_ci95"] == 0.0
    assert out["source"] == "test"


def test_noise_features_score_chance_within_the_interval():
    out = FewShot().evaluate(_noise(1), seed=0).metrics
    for k in (1, 5):
        for clf in ("centroid", "logreg"):
            acc, ci = out[f"acc_{k}shot_{clf}"], out[f"acc_{k}shot_{clf}_episode_ci95"]
            assert 0.0 < ci < 0.02
            assert abs(acc - 1 / 5) <= 2 * ci, (k, clf, acc, ci)


def test_cosine_centroid_rule_by_hand():
    # Class 0 support (1, 0), (0, 1): mean direction (1, 1) / sqrt 2.
    # Class 1 support (10, 1), (10, -1): normalised, their mean points along (1, 0).
    support = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[10.0, 1.0], [10.0, -1.0]]])
    # Queries of class 0: (0.6, 0.8): cos 0.990 to class 0 vs 0.6 -> right;
    #                     (1, 0.05): cos 0.741 vs 0.999 -> wrong.
    # Queries of class 1: (0.9, 0.3): cos 0.894 vs 0.949 -> right (Euclidean to the
    #                     raw means (0.5, 0.5) and (10, 0) would say class 0);
    #                     (3, -1): cos 0.447 vs 0.949 -> right.
    query = torch.tensor([[[0.6, 0.8], [1.0, 0.05]], [[0.9, 0.3], [3.0, -1.0]]])
    norm = lambda t: torch.nn.functional.normalize(t, dim=-1)  # noqa: E731
    acc = centroid_accuracy(norm(support)[None], norm(query)[None])
    assert acc.tolist() == [0.75]


def test_ci_formula():
    mean, ci = normal_ci95(np.array([0.0, 1.0, 0.0, 1.0]))
    assert mean == 0.5
    assert ci == pytest.approx(1.96 * np.sqrt(1 / 3) / 2)  # sd (ddof=1) = sqrt(1/3)
    protocol = FewShot(episodes=50)
    ev = protocol.evaluate(_overlapping(2), seed=0)
    out, per_episode = ev.metrics, ev.artifacts["episode_acc_5shot_logreg"]
    assert len(per_episode) == 50
    assert out["acc_5shot_logreg"] == pytest.approx(per_episode.mean())
    assert out["acc_5shot_logreg_episode_ci95"] == pytest.approx(1.96 * per_episode.std(ddof=1) / np.sqrt(50))


def test_same_seed_same_numbers_other_seed_other_episodes():
    feats = _overlapping(3)
    protocol = FewShot(episodes=60)
    first = protocol.evaluate(feats, seed=4)
    assert FewShot(episodes=60).evaluate(feats, seed=4).metrics == first.metrics
    other = FewShot(episodes=60).evaluate(feats, seed=5)
    assert other.metrics != first.metrics
    assert not np.array_equal(other.artifacts["episode_support"], first.artifacts["episode_support"])


def test_stored_episodes_reproduce_the_accuracy():
    feats = _overlapping(4)
    protocol = FewShot(episodes=40)
    ev = protocol.evaluate(feats, seed=0)
    out, art = ev.metrics, ev.artifacts
    xn = feats.test.x / np.linalg.norm(feats.test.x, axis=1, keepdims=True)
    for k in (1, 5):
        per_episode = []
        for e in range(40):
            protos = np.stack([xn[art["episode_support"][e, w, :k]].mean(axis=0) for w in range(5)])
            protos /= np.linalg.norm(protos, axis=1, keepdims=True)
            q = xn[art["episode_query"][e]]  # (W, Q, D)
            per_episode.append(np.mean(np.argmax(q @ protos.T, axis=-1) == np.arange(5)[:, None]))
        assert out[f"acc_{k}shot_centroid"] == pytest.approx(np.mean(per_episode), abs=1e-12)
        # the logistic regression agrees with scikit-learn on the same episodes
        sk = []
        for e in range(10):
            s, q = art["episode_support"][e, :, :k].ravel(), art["episode_query"][e].ravel()
            clf = LogisticRegression(C=1.0 / (protocol.wd * len(s)), tol=1e-8, max_iter=10000)
            clf.fit(xn[s], np.repeat(np.arange(5), k))
            sk.append(clf.score(xn[q], np.repeat(np.arange(5), 15)))
        diff = np.abs(np.array(sk) - art[f"episode_acc_{k}shot_logreg"][:10])
        assert diff.max() <= 1 / 75 + 1e-12 and diff.mean() < 0.002, (k, diff.max(), diff.mean())
    assert 0.3 < out["acc_5shot_centroid"] < 0.95  # noisy enough to be a real check


def test_episodes_are_well_formed():
    y = np.repeat(np.arange(7), [30, 25, 20, 20, 19, 40, 5])  # classes 4 and 6 too small for 5 + 15
    eps = sample_episodes(y, ways=4, shots=5, queries=15, episodes=200, seed=0)
    assert eps.classes.shape == (200, 4) and eps.support.shape == (200, 4, 5) and eps.query.shape == (200, 4, 15)
    assert not np.isin(eps.classes, [4, 6]).any()
    for e in range(200):
        assert len(set(eps.classes[e])) == 4
        rows = np.concatenate([eps.support[e].ravel(), eps.query[e].ravel()])
        assert len(set(rows)) == len(rows)
        assert (y[eps.support[e]] == eps.classes[e][:, None]).all()
        assert (y[eps.query[e]] == eps.classes[e][:, None]).all()
    with pytest.raises(NotApplicable, match="only 5 of 7"):
        sample_episodes(y, ways=6, shots=5, queries=15, episodes=10, seed=0)


def test_transfer_protocol_uses_the_transfer_split_and_few_shot_stays_in_domain():
    feats = make_features(1, transfer=True)
    protocol = FewShotTransfer(episodes=20)
    assert protocol.requires == frozenset({"labels", "transfer"})
    ev = protocol.evaluate(feats, seed=0)
    assert ev.metrics["source"] == "transfer"
    assert set(np.unique(ev.artifacts["episode_classes"])) == set(np.unique(feats.transfer.y))
    assert FewShot(episodes=20).evaluate(feats, seed=0).metrics["source"] == "test"
    assert FewShot(episodes=20, split="train").evaluate(feats, seed=0).metrics["source"] == "train"
    with pytest.raises(NotApplicable, match="has no transfer split"):  # skipped with its reason, not a failure
        protocol.evaluate(dataclasses.replace(feats, transfer=None), seed=0)


def test_metric_names_follow_shots():
    assert FewShot.main_metric == "acc_5shot_centroid" and FewShot.requires == frozenset({"labels"})
    p = FewShot(shots=(10, 1))
    assert p.shots == (1, 10) and p.meta().main == "acc_10shot_centroid"
    assert set(p.meta().directions) == {"acc_1shot_centroid", "acc_1shot_logreg", "acc_10shot_centroid",
                                        "acc_10shot_logreg"}
    assert FewShot(shots=(1, 5, 20)).meta().main == "acc_5shot_centroid"


def test_bad_parameters_are_refused():
    for bad in ({"shots": ()}, {"shots": (0,)}, {"ways": 1}, {"episodes": 1}, {"wd": 0.0}, {"split": "val"}):
        with pytest.raises(SslbenchError):
            FewShot(**bad)


def test_too_few_classes_for_the_episodes_is_not_applicable_not_a_failure():
    feats = make_features(2, num_classes=4)
    with pytest.raises(NotApplicable, match="5-way episodes"):
        FewShot(episodes=10).evaluate(feats, seed=0)


def test_l2_normalize_keeps_zero_rows_and_survives_huge_and_tiny_rows():
    x = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0], [3e20, 4e20], [3e-30, 4e-30]], dtype=np.float32))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, [[0.6, 0.8], [0.0, 0.0], [0.6, 0.8], [0.6, 0.8]], rtol=1e-6)  # overflowed before


def test_features_of_huge_magnitude_are_classified_not_zeroed():
    """Rows at 1e19 and above overflowed the float32 squared norm: kNN and few-shot read chance."""
    feats = make_features(0)
    huge = dataclasses.replace(feats, train=dataclasses.replace(feats.train, x=feats.train.x * np.float32(1e20)),
                               test=dataclasses.replace(feats.test, x=feats.test.x * np.float32(1e20)))
    assert KNN().evaluate(huge, 0).metrics["top1"] == 1.0
    assert FewShot(episodes=20).evaluate(huge, 0).metrics["acc_5shot_centroid"] == 1.0
