"""What the fuzz suite (tests/test_fuzz_*.py) found, one case each: exit 2 or a per-run ERROR line, never a traceback."""

import json
import shutil

import pytest
import torch

RUN = ["run", "--preset", "smoke", "--methods", "vicreg_mod", "--floors", "", "--protocols", "knn"]
DEEP = "[" * 100_000 + "]" * 100_000


def _edit(section=None, **change):
    def apply(doc):
        (doc[section] if section else doc).update(change)
    return apply


# case -> (edit of vicreg/seed0/results/knn.json, what the one line says)
RESULTS = {
    "metric_past_float_range": (_edit("metrics", top1=10**400), "metric 'top1' must be a number within float range"),
    "timing_past_float_range": (_edit("timings", train_s=10**400), "train_s must be a number within float range"),
    "readings_not_a_list": (_edit("protocol", readings=5), "protocol 'readings' must be a list of strings"),
    "requires_of_mixed_types": (_edit("protocol", requires=[1, "a"]), "protocol 'requires' must be a list of strings"),
    "seed_too_long_for_a_path": (_edit(seed=10**400), "'seed' must be an integer in 0..4294967295"),
    "declared_tolerance_not_a_number": (_edit("protocol", tolerances={"top1": "abc%"}), "declared tolerance 'knn.top1'"),
}


@pytest.mark.parametrize("case", list(RESULTS))
@pytest.mark.parametrize("command", ["leaderboard", "report", "compare"])
def test_a_result_of_the_wrong_shape_is_refused(tmp_path, records, cli, case, command):
    edit, expected = RESULTS[case]
    if case == "declared_tolerance_not_a_number" and command != "compare":
        pytest.skip("only compare uses the declared tolerances")
    runs = records.write(tmp_path / "runs", records.sweep(records.base_scores))
    path = runs / "vicreg" / "seed0" / "results" / "knn.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    argv = {"leaderboard": ["leaderboard", str(runs)], "report": ["report", str(runs), "--out", str(tmp_path / "r.html")],
            "compare": ["compare", str(runs), str(runs)]}[command]
    rc, _, err = cli(*argv)
    assert rc == 2 and "Traceback" not in err and expected in err.strip().splitlines()[-1], err


@pytest.mark.parametrize("change, expected", [
    ({"n_seeds": 10**400}, "past float range"),  # float(n) overflowed in the n_seeds check
    ({"knn.top1": 10**400}, "'knn.top1' is a number past float range"),
    ("main_metrics", "'main_metrics' must be a list of strings"),  # [[]]: unhashable
    ("labels", "'labels' must map columns to lists of strings"),
    ("tolerances", "'tolerances' must map columns to strings"),
    ("settings", "each of 'settings' must be an object, its 'params' an object"),  # .get on a string
])
def test_a_leaderboard_json_of_the_wrong_shape_is_refused(tmp_path, records, cli, change, expected):
    runs = records.write(tmp_path / "runs", records.sweep(records.base_scores))
    assert cli("leaderboard", str(runs), "--write", str(tmp_path / "lb")).rc == 0
    path = tmp_path / "lb" / "leaderboard.json"
    doc = json.loads(path.read_text())
    if isinstance(change, dict):
        doc["rows"][0].update(change)
    else:
        doc[change] = {"main_metrics": [[]], "labels": {"x": 5}, "tolerances": {"knn.*": 5},
                       "settings": {"knn": {"version": "1", "params": "abc"}}}[change]
    path.write_text(json.dumps(doc))
    rc, _, err = cli("compare", str(path), str(runs))
    assert rc == 2 and "Traceback" not in err and expected in err, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cli_session):
    out = tmp_path_factory.mktemp("trained") / "out"
    assert cli_session(*RUN, "--out", str(out)).rc == 0
    return out


def _status(text):
    return lambda run: (run / "train_status.json").write_text(text)


def _checkpoint(**change):
    def apply(run):
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        state.update(change)
        torch.save(state, run / "checkpoint.pt")
    return apply


@pytest.mark.parametrize("damage, expected", [
    (_status('{"status": "collapsed", "epochs": 1e400}'), "'epochs' must be a whole number >= 0, got inf"),  # int(inf)
    (_status(DEEP), "train_status.json is unreadable"),  # RecursionError
    (_status('{"status": "collapsed", "epochs": 3, "step": "x"}'), "'step' must be an integer"),  # went into the result
    (_checkpoint(identity="garbage"), "is damaged (its identity is not JSON)"),
    (_checkpoint(stop="{"), "is damaged (its stop decision is not JSON)"),
    (_checkpoint(stop=DEEP), "is damaged (its stop decision is not JSON)"),
    (_checkpoint(stop="[1]"), "its stop decision is damaged: it holds a JSON list"),
    (_checkpoint(partial={"epoch": float("inf"), "perm": 0, "step": 0, "sums": "{}", "dim": 0, "t_data": 0.0,
                          "elapsed": 0.0}), "does not fit this run"),  # int(inf): OverflowError
    (_checkpoint(partial={"epoch": 3, "perm": 0, "step": 1, "sums": "{}", "dim": 0, "t_data": 0.0, "elapsed": 0.0}),
     "does not fit this run"),  # a data order that is no tensor: AttributeError on its .shape
])
def test_damaged_training_state_is_a_per_run_error(trained, tmp_path, cli, damage, expected):
    out = shutil.copytree(trained, tmp_path / "out")
    run = out / "vicreg_mod" / "seed0"
    shutil.rmtree(run / "results")
    damage(run)
    rc, _, err = cli(*RUN, "--out", str(out))
    assert rc == 1 and "Traceback" not in err, err
    line = next(ln for ln in err.splitlines() if ln.startswith("ERROR vicreg_mod/seed0"))
    assert expected in line


@pytest.mark.parametrize("damage", ["drop_train_x", "drop_a_pair", "no_arrays_key", "deep"])
def test_a_damaged_cache_manifest_is_recomputed(trained, tmp_path, cli, damage):
    out = shutil.copytree(trained, tmp_path / "out")
    shutil.rmtree(out / "vicreg_mod" / "seed0" / "results")
    for entry in (out / "cache" / "features").iterdir():
        doc = json.loads((entry / "complete.json").read_text())
        if damage == "deep":
            (entry / "complete.json").write_text(DEEP)
            continue
        if damage == "no_arrays_key":
            del doc["arrays"]
        else:  # each digest left right: a KeyError in the feature set before
            doc["arrays"].pop("train_x" if damage == "drop_train_x" else "pair_xb", None)
        (entry / "complete.json").write_text(json.dumps(doc))
    rc, _, err = cli(*RUN, "--out", str(out))
    assert rc == 0 and "are damaged" in err and "recomputing" in err and "Traceback" not in err, err


def test_a_zero_dimensional_cache_array_with_its_digest_is_refused(trained, tmp_path, cli):
    import numpy as np

    from sslbench.features import _digest

    out = shutil.copytree(trained, tmp_path / "out")
    shutil.rmtree(out / "vicreg_mod" / "seed0" / "results")
    for entry in (out / "cache" / "features").iterdir():
        doc = json.loads((entry / "complete.json").read_text())
        np.save(entry / "pair_xa.npy", np.float32(1))  # len() of a 0-d array raised TypeError in the checks
        doc["arrays"]["pair_xa"] = _digest(np.load(entry / "pair_xa.npy"))
        (entry / "complete.json").write_text(json.dumps(doc))
    rc, _, err = cli(*RUN, "--out", str(out))
    assert rc == 1 and "Traceback" not in err, err
    assert "pair_xa must be 2-D" in next(ln for ln in err.splitlines() if ln.startswith("ERROR vicreg_mod/seed0"))
