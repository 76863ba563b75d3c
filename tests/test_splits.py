"""The validation split: a seeded held-out part of train that recipes are chosen on, never the test split."""

import dataclasses
import json

import numpy as np

from protocols.knn import KNN
from sslbench.splits import VAL_FRACTION, stratified_split, validation_view
from sslbench.testing import make_features


def test_stratified_split_holds_out_each_class():
    y = np.repeat(np.arange(4), [50, 20, 10, 1])
    fit, val = stratified_split(y, 0.2, seed=0)
    assert len(np.intersect1d(fit, val)) == 0 and len(fit) + len(val) == len(y)
    assert [int((y[val] == c).sum()) for c in range(4)] == [10, 4, 2, 0]
    assert np.array_equal(val, stratified_split(y, 0.2, seed=0)[1])
    assert not np.array_equal(val, stratified_split(y, 0.2, seed=1)[1])


def test_the_validation_view_scores_on_held_out_train_rows_and_never_reads_test():
    f = make_features(0)
    v = validation_view(f)
    assert len(v.test.x) == round(VAL_FRACTION * len(f.train.x)) and len(v.train.x) + len(v.test.x) == len(f.train.x)
    train_rows = {r.tobytes() for r in f.train.x}
    assert all(r.tobytes() in train_rows for r in v.test.x)  # every validation row comes from train
    assert not ({r.tobytes() for r in v.test.x} & {r.tobytes() for r in v.train.x})  # and none is fitted on
    assert v.test.z is not None and v.pairs is None and v.views is None
    poisoned = f.test.x.copy()
    poisoned[:] = np.nan  # whatever the test split holds, a validation score cannot see it
    bad = dataclasses.replace(f, test=dataclasses.replace(f.test, x=poisoned))
    assert KNN().evaluate(validation_view(bad), 0).metrics == KNN().evaluate(v, 0).metrics


def test_run_with_split_val_writes_separate_records_and_leaderboard(tmp_path, cli):
    args = ["run", "--preset", "smoke", "--epochs", "1", "--methods", "simsiam", "--floors", "raw_pixels",
            "--protocols", "knn", "--out", str(tmp_path)]
    val = cli(*args, "--split", "val")
    assert val.rc == 0, val.err
    doc = json.loads((tmp_path / "simsiam" / "seed0" / "results" / "val" / "knn.json").read_text())
    assert doc["split"] == "val" and not (tmp_path / "simsiam" / "seed0" / "results" / "knn.json").exists()
    assert (tmp_path / "leaderboard.val.json").exists() and not (tmp_path / "leaderboard.json").exists()
    test = cli(*args)
    assert test.rc == 0 and "resuming" not in test.err and "all results present" not in test.err
    assert json.loads((tmp_path / "simsiam" / "seed0" / "results" / "knn.json").read_text())["split"] == "test"
    lb = cli("leaderboard", str(tmp_path), "--split", "val", "--format", "json")
    val_rows = {r["method"]: r for r in json.loads(lb.out)["rows"]}
    test_rows = {r["method"]: r for r in json.loads((tmp_path / "leaderboard.json").read_text())["rows"]}
    assert val_rows.keys() == test_rows.keys() == {"simsiam", "raw_pixels"}
    assert val_rows["raw_pixels"]["knn.top1"] != test_rows["raw_pixels"]["knn.top1"]  # other images scored
