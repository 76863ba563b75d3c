"""Named protocol sets: expansion, parameters under the user's, recorded in every result."""

import json

import numpy as np
import pytest

from sslbench.config import RunConfig, load_toml
from sslbench.errors import SslbenchError
from sslbench.protocol_sets import FULL
from sslbench.registry import registry


def test_full_is_the_default_protocol_list():
    assert list(FULL.protocols) == RunConfig().protocols and FULL.params == {}


def test_a_set_replaces_the_protocols_and_sets_their_parameters():
    r = RunConfig(preset="smoke", methods=["simsiam"], protocol_set="sweep").resolved()
    assert r.protocols == ["knn", "linear", "collapse"]
    assert r.protocol_params == {"knn": {"extra_k": ()}, "linear": {"wd_grid": (1e-6, 1e-4, 1e-2)}}


def test_the_users_parameters_win_over_the_sets():
    user = {"linear": {"wd_grid": (1e-3,), "max_iter": 50}, "collapse": {"max_samples": 500}}
    r = RunConfig(preset="smoke", methods=["simsiam"], protocol_set="sweep", protocol_params=user).resolved()
    assert r.protocol_params["linear"] == {"wd_grid": (1e-3,), "max_iter": 50}
    assert r.protocol_params["knn"] == {"extra_k": ()} and r.protocol_params["collapse"] == {"max_samples": 500}


def test_every_set_builds_its_protocols():
    for name in registry("protocol_sets").names():
        pset = registry("protocol_sets").get(name)
        for p in pset.protocols:
            registry("protocols").get(p)(**pset.params.get(p, {}))


def test_an_unknown_set_gets_a_did_you_mean():
    with pytest.raises(SslbenchError, match="did you mean 'sweep'"):
        RunConfig(preset="smoke", protocol_set="swep").resolved()


def test_toml_takes_a_set_but_not_with_a_protocol_list(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[run]\npreset = "smoke"\nprotocol_set = "sweep"\n')
    assert load_toml(good).protocol_set == "sweep"
    both = tmp_path / "both.toml"
    both.write_text('[run]\nprotocol_set = "sweep"\nprotocols = ["knn"]\n')
    with pytest.raises(SslbenchError, match=r"both.toml \[run\]: give 'protocols' or 'protocol_set', not both"):
        load_toml(both)


def test_both_flags_exit_2_in_one_line(cli, tmp_path):
    res = cli("run", "--preset", "smoke", "--protocols", "knn", "--protocol-set", "sweep", "--out", str(tmp_path))
    assert res.rc == 2 and res.err.strip().splitlines() == [
        "sslbench: error: give --protocols or --protocol-set, not both"]


def test_a_run_records_its_set_and_another_set_recomputes(cli, tmp_path):
    args = ("run", "--preset", "smoke", "--methods", "vicreg", "--floors", "", "--epochs", "1", "--out", str(tmp_path))
    assert cli(*args, "--protocol-set", "sweep").rc == 0
    results = tmp_path / "vicreg" / "seed0" / "results"
    assert sorted(p.name for p in results.glob("*.json")) == ["collapse.json", "knn.json", "linear.json"]
    knn = json.loads((results / "knn.json").read_text())
    assert knn["run_config"]["protocol_set"] == "sweep" and knn["protocol"]["params"]["extra_k"] == []
    assert set(knn["metrics"]) == {"top1"}
    linear = json.loads((results / "linear.json").read_text())
    assert linear["protocol"]["params"]["wd_grid"] == [1e-6, 1e-4, 1e-2]
    collapse_before = (results / "collapse.json").read_text()
    assert cli(*args, "--protocols", "knn,linear,collapse").rc == 0  # the full set's parameters
    assert set(json.loads((results / "knn.json").read_text())["metrics"]) == {"top1", "top1_k1", "top1_k5", "top1_k200"}
    assert len(json.loads((results / "linear.json").read_text())["protocol"]["params"]["wd_grid"]) == 6
    assert (results / "collapse.json").read_text() == collapse_before  # same parameters: current, not rerun


def test_eval_takes_a_set_and_records_it(cli, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((200, 8)).astype(np.float32), np.repeat(np.arange(4), 50)
    np.savez(tmp_path / "f.npz", train_x=x, train_y=y, test_x=x[:40], test_y=y[:40])
    res = cli("eval", "--features", str(tmp_path / "f.npz"), "--protocol-set", "sweep", "--out", str(tmp_path / "o"))
    assert res.rc == 0, res.err
    results = tmp_path / "o" / "f" / "seed0" / "results"
    assert sorted(p.name for p in results.glob("*.json")) == ["collapse.json", "knn.json", "linear.json"]
    linear = json.loads((results / "linear.json").read_text())
    assert linear["run_config"]["protocol_set"] == "sweep" and linear["protocol"]["params"]["wd_grid"] == [1e-6, 1e-4, 1e-2]
    both = cli("eval", "--features", str(tmp_path / "f.npz"), "--protocols", "knn", "--protocol-set", "sweep",
               "--out", str(tmp_path / "o2"))
    assert both.rc == 2 and "give --protocols or --protocol-set, not both" in both.err
