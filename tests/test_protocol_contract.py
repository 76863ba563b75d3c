"""The exported contract suite (sslbench.testing) on every registered protocol, and on broken ones."""

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest

from sslbench.protocol import Evaluation, Protocol
from sslbench.registry import registry
from sslbench.testing import check_protocol, make_features, permute_rows
from sslbench.types import FeatureSet


@pytest.mark.parametrize("name", registry("protocols").names())
def test_registered_protocol_keeps_the_contract(name):
    cls = registry("protocols").get(name)
    assert cls.name == name
    ran = check_protocol(cls)
    assert {"class_attributes", "params", "deterministic", "order_invariance"} <= set(ran)


def test_make_features_is_seeded_and_structured():
    a, b = make_features(0), make_features(0)
    assert np.array_equal(a.train.x, b.train.x) and np.array_equal(a.test.y, b.test.y)
    assert a.train.x.shape == (600, 32) and a.test.x.shape == (300, 32) and a.train.z.shape == (600, 16)
    assert np.bincount(a.train.y).tolist() == [60] * 10
    assert not np.array_equal(make_features(1).train.x, a.train.x)
    t = make_features(0, transfer=True)
    assert set(np.unique(t.transfer.y)) == set(range(10, 15))


def test_permute_rows_moves_rows_with_their_labels_and_projector_outputs():
    f = make_features(0)
    p = permute_rows(f, seed=1)
    order = np.lexsort(f.train.x.T)
    porder = np.lexsort(p.train.x.T)
    assert np.array_equal(f.train.x[order], p.train.x[porder])
    assert np.array_equal(f.train.y[order], p.train.y[porder])
    assert np.array_equal(f.train.z[order], p.train.z[porder])
    assert not np.array_equal(f.train.x, p.train.x)


@dataclass
class _Centroid(Protocol):
    """A correct little protocol: nearest class mean; the base of the broken ones below."""

    name: ClassVar[str] = "centroid_test"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"labels"})
    metrics: ClassVar[dict] = {"top1": "higher"}
    main_metric: ClassVar[str] = "top1"

    def _fit_rows(self, features: FeatureSet, seed: int) -> np.ndarray:
        return np.arange(len(features.train.y))

    def evaluate(self, features: FeatureSet, seed: int) -> Evaluation:
        rows = self._fit_rows(features, seed)
        x, y = features.train.x[rows], features.train.y[rows]
        means = np.stack([x[y == c].mean(axis=0) for c in range(10)])
        d = ((features.test.x[:, None, :] - means[None]) ** 2).sum(-1)
        return Evaluation({"top1": float(np.mean(d.argmin(1) == features.test.y))})


def test_a_correct_protocol_passes():
    assert check_protocol(_Centroid)[-1] == "order_invariance"


def _broken(**attrs):
    return dataclass(type("Broken", (_Centroid,), attrs))


def _first_rows(self, features, seed):  # order-dependent: the first 100 rows, not a seeded draw
    return np.arange(100)


def _unseeded(self, features, seed):  # ignores the seed
    return Evaluation({"top1": float(np.random.default_rng().random())})


def _shuffle_train_labels(self, features, seed):
    features.train.y[:] = features.train.y[::-1].copy()
    return np.arange(len(features.train.y))


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"metrics": {"top1": "up"}}, "direction"),
        ({"main_metric": "top5"}, "main_metric"),
        ({"requires": frozenset({"labels", "gpu"})}, "not in"),
        ({"name": "a.b"}, "name"),
        ({"__annotations__": {"k": int}}, "need defaults"),
        ({"__annotations__": {"k": object}, "k": field(default_factory=object)}, "JSON"),
        ({"evaluate": _unseeded}, "second evaluate"),
        ({"_fit_rows": _shuffle_train_labels}, "modified its input train.y"),
        ({"evaluate": lambda self, f, s: Evaluation({"top1": float("nan")})}, "finite"),
        ({"evaluate": lambda self, f, s: Evaluation({"top1": np.float32(1.0)})}, "float or str"),
        ({"evaluate": lambda self, f, s: Evaluation({"acc": 1.0})}, "main metric"),
        ({"evaluate": lambda self, f, s: {"top1": 1.0}}, "must return an Evaluation"),
        ({"labels": {"grade": ()}}, "non-empty tuple"),
        ({"labels": {"grade": ("good", "bad")}, "evaluate": lambda self, f, s: Evaluation({"top1": 0.5, "grade": "odd"})},
         "is not one of"),
        ({"tolerances": {"top1": "a lot"}}, "must be a number"),
        ({"plots": {"curve": "movie"}}, "not one of"),
        ({"evaluate": lambda self, f, s: Evaluation({"top1": 0.5}, {"curve": [1, 2]})}, "dict\\[str, np.ndarray\\]"),
    ],
)
def test_broken_protocols_are_caught(attrs, message):
    with pytest.raises(AssertionError, match=message):
        check_protocol(_broken(**attrs), make_features(0, noise=2.0))  # noisy: accuracy < 1


def test_order_dependence_is_caught():
    # On the default, separated classes any 100 rows give perfect class means: use noisy ones.
    feats = make_features(0, noise=2.0)
    with pytest.raises(AssertionError, match="permuting the rows"):
        check_protocol(_broken(_fit_rows=_first_rows), feats)


def test_label_free_protocol_must_not_read_labels():
    with pytest.raises(AssertionError, match="shuffling the labels"):
        check_protocol(_broken(requires=frozenset()), make_features(0, noise=2.0))
