"""Sweeps declared in TOML: deterministic expansion into named cells, any section as an axis, and errors in one line."""

import dataclasses
import itertools
import json
from pathlib import Path

import pytest

from sslbench.config import RunConfig, Sweep, check_sweep, load_toml
from sslbench.errors import SslbenchError
from sslbench.registry import registry
from sslbench.runner import RunSpec
from sslbench.sweep import build_plan, cell_name, expand, format_value

ISSUE_EXAMPLE = """
[run]
preset = "smoke"
[sweeps.vicreg_var]
base = "vicreg"
grid = { "loss.var_coeff" = [0, 1, 5, 25], "heads.proj_dim" = [64, 256, 1024] }
seeds = [0, 1, 2, 3, 4]
"""


def _config(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_issue_example_expands_in_axis_order_with_coordinate_names(tmp_path):
    cfg = load_toml(_config(tmp_path, ISSUE_EXAMPLE)).resolved()
    assert cfg.methods == []  # a file of sweeps runs its sweeps, and no default methods
    plan = build_plan(cfg)
    grid = list(itertools.product([0, 1, 5, 25], [64, 256, 1024]))
    names = [f"vicreg_var-var_coeff_{v}-proj_dim_{d}" for v, d in grid]
    assert [c.name for c in plan.cells] == [*names, "random_init", "raw_pixels"]
    assert len(plan) == 12 * 5 + 2  # floors run on the [run] seeds (0)
    assert [r.label for r in plan.runs[:3]] == [f"{n}/seed0" for n in names[:3]]
    assert [r.seed for r in plan.runs if r.cell.name == names[0]] == [0, 1, 2, 3, 4]
    cell = plan.cells[names.index("vicreg_var-var_coeff_5-proj_dim_256")]
    assert cell.method.loss.var_coeff == 5.0 and cell.method.loss.inv_coeff == 25.0 and cell.method.base == "vicreg"
    assert cell.changes.heads == {"proj_dim": 256} and cell.sweep.name == "vicreg_var"
    assert cell.sweep.coordinates == {"loss.var_coeff": 5.0, "heads.proj_dim": 256}
    again = build_plan(load_toml(_config(tmp_path, ISSUE_EXAMPLE, "again.toml")).resolved())
    assert [r.label for r in again] == [r.label for r in plan]  # stable across invocations


def test_a_cell_resolves_its_coordinates_over_every_other_source(tmp_path):
    text = """
[run]
preset = "smoke"
[train]
lr = 0.5
epochs = 2
[views]
flip_p = 0.1
[sweeps.s]
base = "byol"
grid = { "target.tau_base" = [0.9], "train.lr" = [0.01], "views.crop_scale" = [[0.3, 1.0]], "views.flip_p" = [0.7] }
"""
    cfg = load_toml(_config(tmp_path, text)).resolved()
    (cell,) = [c for c in build_plan(cfg).cells if c.sweep]
    assert cell.name == "s-tau_base_0.9-lr_0.01-crop_scale_0.3+1-flip_p_0.7"
    spec = RunSpec.of(cell.method, 0, cfg, cell.changes, cell.sweep)
    assert spec.method.target.tau_base == 0.9 and spec.method.target.tau_final == 1.0  # BYOL's EMA, one field changed
    assert spec.train.lr == 0.01 and spec.train.epochs == 2  # the axis wins over [train]; the rest of [train] stays
    assert [v.crop_scale for v in spec.views] == [(0.3, 1.0)] * 2 and [v.flip_p for v in spec.views] == [0.7, 0.7]
    identity = spec.identity(cfg)
    assert identity["sweep"] == {"name": "s", "coordinates": {"target.tau_base": 0.9, "train.lr": 0.01,
                                                               "views.crop_scale": (0.3, 1.0), "views.flip_p": 0.7}}
    assert identity["target"]["tau_base"] == 0.9 and identity["train"]["lr"] == 0.01
    plain = RunSpec.of(registry("methods").get("byol"), 0, cfg).identity(cfg)
    assert "sweep" not in plain and plain["train"]["lr"] == 0.5  # non-sweep identities are unchanged


@pytest.mark.parametrize("value, text", [(5.0, "5"), (0.5, "0.5"), (1e-05, "1e-05"), (256, "256"), (True, "true"),
                                         ((0.2, 1.0), "0.2+1"), ("lars", "lars"), (-1.5, "-1.5")])
def test_values_in_names_are_short_and_exact(value, text):
    assert format_value(value) == text


def test_names_disambiguate_shared_field_names_and_hash_what_cannot_be_a_path():
    assert cell_name("s", {"loss.tau": 0.1, "target.tau": 0.2}) == "s-loss.tau_0.1-target.tau_0.2"
    long = {f"train.lr{i}": 0.123456789 for i in range(12)}
    hashed = cell_name("s", long)
    assert hashed.startswith("s-") and len(hashed) == 12 and hashed == cell_name("s", dict(long))
    assert cell_name("s", {"train.optimizer": "a/b"}) != cell_name("s", {"train.optimizer": "a_b"})


def test_two_grids_never_share_a_name():
    sweep = check_sweep(Sweep("s", "vicreg", ("loss.var_coeff", "loss.cov_coeff"), ((0, 0.5, 1, 10), (1, 2, 25))))
    names = [c.name for c in expand(sweep, (0,))]
    assert len(names) == 12 == len(set(names)) and names[0] == "s-var_coeff_0-cov_coeff_1"


BAD = [
    ('grid = {}', r"c\.toml \[sweeps\.s\]: 'grid' is empty"),
    ('grid = { "loss.var_coeff" = [] }', r"c\.toml \[sweeps\.s\]: grid axis 'loss.var_coeff' must be a non-empty list"),
    ('grid = { "loss.var_coef" = [1] }', (r"unknown loss field of 'vicreg' in .*c\.toml \[sweeps\.s\] grid 'var_coef'; "
                                          r"did you mean 'var_coeff'")),
    ('grid = { "target.tau_base" = [0.9] }', r"c\.toml \[sweeps\.s\]: grid axis 'target.tau_base': 'vicreg' has no target"),
    ('grid = { "heads.pred_hidden" = [8] }', r"unknown head of 'vicreg' in .*c\.toml \[sweeps\.s\] grid 'pred_hidden'"),
    ('grid = { "loss.var_coeff" = ["a"] }', r"c\.toml \[sweeps\.s\] grid axis 'loss.var_coeff': 'var_coeff' must be float, got 'a'"),
    ('grid = { "train.lr" = [-1] }', r"c\.toml \[sweeps\.s\] grid axis 'train.lr': 'lr' must be a finite number > 0, got -1"),
    ('grid = { "heads.proj_dim" = [0] }', r"grid axis 'heads.proj_dim': 'proj_dim' must be an integer in 1\.\.65536, got 0"),
    ('grid = { "loss.var_coeff" = [1, 1.0] }', r"grid axis 'loss.var_coeff' lists 1\.0 twice"),
    ('grid = { "optim.lr" = [1] }', r"grid axis 'optim.lr' must be '<section>.<field>' with section one of loss, target"),
    ('grid = { "loss.var_coeff" = [1] }\nbases = 1', r"unknown key in .*c\.toml \[sweeps\.s\] 'bases'"),
    ('grid = { "loss.var_coeff" = [1] }\nseeds = [0, 0]', r"c\.toml \[sweeps\.s\]: 'seeds' lists a seed twice"),
]


@pytest.mark.parametrize("body, match", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_grids_stop_with_one_line_naming_the_key_and_the_file(tmp_path, cli, body, match):
    import re

    f = _config(tmp_path, f'[run]\npreset = "smoke"\n[sweeps.s]\nbase = "vicreg"\n{body}\n')
    with pytest.raises(SslbenchError, match=match):
        load_toml(f).resolved()
    rc, _, err = cli("run", "--config", str(f), "--out", str(tmp_path / "out"))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and re.search(match, err), err
    assert not (tmp_path / "out").exists()


def test_a_floor_cannot_be_a_base(tmp_path):
    with pytest.raises(SslbenchError, match=r"'base' must be a trained method; 'raw_pixels' is a floor"):
        load_toml(_config(tmp_path, '[sweeps.s]\nbase = "raw_pixels"\ngrid = { "train.lr" = [1] }\n'))


def test_more_runs_than_max_runs_stop_before_expanding(tmp_path, cli):
    f = _config(tmp_path, '[run]\npreset = "smoke"\n[sweeps.s]\nbase = "vicreg"\n'
                          'grid = { "loss.var_coeff" = [1, 2, 3], "loss.cov_coeff" = [1, 2, 3, 4] }\nseeds = [0, 1]\n')
    rc, _, err = cli("run", "--config", str(f), "--max-runs", "20", "--out", str(tmp_path / "out"))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "the plan has 26 runs (sweep 's': 24; methods and floors: 2), more than --max-runs 20" in err
    cfg = load_toml(f).resolved()
    huge = dataclasses.replace(cfg, sweeps={"h": check_sweep(Sweep("h", "vicreg", ("loss.var_coeff", "loss.cov_coeff"),
                                                                    (tuple(range(10**4)), tuple(range(10**4)))))})
    with pytest.raises(SslbenchError, match=r"100000002 runs .* more than --max-runs 1000"):
        build_plan(huge)  # 10^8 cells refused at once, never expanded


def test_a_cell_named_like_a_declared_variant_is_refused(tmp_path, cli):
    f = _config(tmp_path, '[run]\npreset = "smoke"\n[variants."clash-var_coeff_5"]\nbase = "vicreg"\nloss = { var_coeff = 5.0 }\n'
                          '[sweeps.clash]\nbase = "vicreg"\ngrid = { "loss.var_coeff" = [1, 5] }\n')
    rc, _, err = cli("run", "--config", str(f), "--out", str(tmp_path / "out"))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "sweep 'clash': its cell 'clash-var_coeff_5' has the name of the method or variant 'clash-var_coeff_5'" in err


def test_run_config_sweeps_in_code_are_checked_too():
    bad = RunConfig(preset="smoke", sweeps={"s": Sweep("s", "vicreg", ("loss.nope",), ((1.0,),))})
    with pytest.raises(SslbenchError, match="unknown loss field of 'vicreg' in sweep 's' grid 'nope'"):
        bad.resolved()


# ----------------------------------------------------------------------------- a small real sweep


SMALL = """
[run]
preset = "smoke"
epochs = 1
protocols = ["knn"]
floors = []
[sweeps.vv]
base = "vicreg"
grid = {{ "loss.var_coeff" = {values} }}
"""


def test_results_record_their_sweep_and_dry_run_lists_what_is_done_and_the_cost(tmp_path, cli):
    out = tmp_path / "out"
    f = _config(tmp_path, SMALL.format(values="[0, 25]"))
    rc, _, err = cli("run", "--config", str(f), "--out", str(out))
    assert rc == 0, err
    doc = json.loads((out / "vv-var_coeff_0" / "seed0" / "results" / "knn.json").read_text())
    assert doc["sweep"] == {"name": "vv", "coordinates": {"loss.var_coeff": 0.0}}
    assert doc["loss_changes"] == {"var_coeff": 0.0} and doc["base"] == "vicreg"  # 25 is VICReg's own: no change
    assert doc["config"]["sweep"] == doc["sweep"] and doc["run_config"]["threads"] >= 1
    plain = json.loads((out / "manifest.json").read_text())["invocations"][0]
    assert plain["sweeps"] == ["vv"] and plain["execution"]["executor"] == "sequential"

    wider = _config(tmp_path, SMALL.format(values="[0, 5, 25]"), "wider.toml")
    rc, text, err = cli("run", "--config", str(wider), "--out", str(out), "--dry-run", "--jobs", "2")
    assert rc == 0, err
    lines = text.splitlines()
    assert lines[0] == f"plan: 3 runs (2 done, 0 running, 0 failed, 1 pending) into {out}"
    assert lines[1].split() == ["done", "vv-var_coeff_0/seed0:", "epoch", "1/1", "[vv:", "loss.var_coeff=0]"]
    assert lines[2].split()[:3] == ["pending", "vv-var_coeff_5/seed0:", "1"]
    assert lines[4] == "left: 1 runs, 1 pretraining epochs"
    assert lines[5].startswith("estimate at --jobs 2: ") and "measured on 2 run(s)" in lines[5]
    assert not (out / "vv-var_coeff_5").exists()  # a dry run writes nothing


def test_slurm_without_submitit_is_one_line_naming_the_extra(tmp_path, cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    f = _config(tmp_path, SMALL.format(values="[0]"))
    rc, _, err = cli("run", "--config", str(f), "--out", str(tmp_path / "out"), "--executor", "slurm")
    assert rc == 2 and err.strip() == "sslbench: error: --executor slurm needs submitit: pip install 'sslbench[slurm]'"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, match", [(["--jobs", "2", "--executor", "sequential"], "--jobs 2 runs local worker processes"),
                                          (["--jobs", "0"], "argument --jobs: must be an integer in 1..4096, got 0")])
def test_execution_flags_that_do_not_go_together(tmp_path, cli, flags, match):
    f = _config(tmp_path, SMALL.format(values="[0]"))
    rc, _, err = cli("run", "--config", str(f), "--out", str(tmp_path / "out"), *flags)
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1
