"""Boundary search (``bisect`` sweeps): the walk on constructed responses, the rounds and their resume, the
both-ends message, bad input in one line, and one small real search on the digits smoke preset."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from sslbench import runner
from sslbench.bisect_sweep import probe_plan, run_searches, searches_of
from sslbench.bisection import COLLAPSED, HEALTHY, Bisect, steps_for, walk
from sslbench.config import load_toml
from sslbench.errors import SslbenchError
from sslbench.layout import RunLayout
from sslbench.records import DatasetInfo, MetricMeta, ProtocolInfo, ResultRecord, RunHeader, TrainOutcome
from sslbench.store import write_record


def _below(boundary: float):
    """A monotone response: collapsed below ``boundary``, healthy at or above it; counts each value read."""
    reads: list[float] = []

    def read(v):
        reads.append(v)
        return COLLAPSED if v < boundary else HEALTHY
    return read, reads


# ----------------------------------------------------------------------------- the walk


@pytest.mark.parametrize("boundary", [3.7, 0.2, 31.5])
def test_linear_bisection_brackets_the_boundary_between_neighbours_of_the_dense_grid(boundary):
    b = Bisect("loss.var_coeff", 0.0, 32.0, "linear", steps=5)
    read, reads = _below(boundary)
    state = walk(b, read)
    grid = np.linspace(0.0, 32.0, 2**5 + 1)  # the dense grid of the same resolution: 33 runs instead of 7
    i = np.searchsorted(grid, boundary)  # first grid point >= boundary
    assert state.outcome == "bracketed" and (state.healthy, state.collapsed) == (grid[i], grid[i - 1])
    assert len(state.probes) == len(set(reads)) == 2 + b.steps


def test_log_bisection_takes_geometric_midpoints_and_brackets_between_neighbours_of_geomspace():
    b = Bisect("train.lr", 0.01, 100.0, "log", steps=4)
    read, reads = _below(0.3)
    state = walk(b, read)
    grid = np.geomspace(0.01, 100.0, 2**4 + 1)  # 17 log-spaced values: a factor 10**0.25 apart
    i = np.searchsorted(grid, 0.3)
    assert state.outcome == "bracketed" and len(set(reads)) == 6
    assert state.healthy == pytest.approx(grid[i], rel=1e-3) and state.collapsed == pytest.approx(grid[i - 1], rel=1e-3)
    assert [v for v, _ in state.probes[2:4]] == [1.0, 0.1]  # sqrt(0.01 * 100), then sqrt(0.01 * 1)


def test_log_from_zero_takes_midpoints_from_the_floor_and_collapse_may_lie_above():
    b = Bisect("loss.var_coeff", 0.0, 25.0, "log", steps=3, floor=0.025)
    state = walk(b, lambda v: COLLAPSED if v > 2.0 else HEALTHY)  # healthy at the low end this time
    values = [v for v, _ in state.probes]
    assert values[:3] == [0.0, 25.0, float(f"{math.sqrt(0.025 * 25.0):.4g}")] == [0.0, 25.0, 0.7906]
    assert values[3] == float(f"{math.sqrt(0.7906 * 25.0):.4g}") == 4.446  # 0.79 healthy: the upper half
    assert state.healthy < 2.0 < state.collapsed and len(values) == 5


def test_both_ends_of_one_class_stop_after_two_probes():
    b = Bisect("loss.var_coeff", 0.0, 25.0, steps=5)
    read, reads = _below(-1.0)  # healthy everywhere
    state = walk(b, read)
    assert state.outcome == "same_class" and reads == [0.0, 25.0] and state.pending == ()


def test_the_walk_asks_for_both_ends_then_one_midpoint_at_a_time():
    b = Bisect("loss.var_coeff", 0.0, 8.0, steps=3)
    assert walk(b, lambda v: None).pending == (0.0, 8.0)
    known = {0.0: COLLAPSED, 8.0: HEALTHY}
    assert walk(b, known.get).pending == (4.0,)
    known[4.0] = HEALTHY
    assert walk(b, known.get).pending == (2.0,)


def test_an_integer_axis_stops_when_no_integer_is_left_inside_and_a_bad_reading_stops_the_walk():
    b = Bisect("train.batch_size", 2, 4, "linear", steps=5, integer=True)
    state = walk(b, lambda v: COLLAPSED if v < 3 else HEALTHY)
    assert state.outcome == "unsplittable" and (state.collapsed, state.healthy) == (2, 3) and len(state.probes) == 3
    stopped = walk(Bisect("loss.var_coeff", 0.0, 8.0, steps=3),
                   {0.0: COLLAPSED, 8.0: HEALTHY, 4.0: "diverged in training"}.get)
    assert stopped.outcome == "stopped" and stopped.message == "the probe at 4.0 diverged in training"
    assert [v for v, _ in stopped.probes] == [0.0, 8.0]


@pytest.mark.parametrize("args, steps", [((1.0, 0.0, 25.0, "linear", None), 5),  # ceil(log2(25 / 1))
                                         ((0.78125, 0.0, 25.0, "linear", None), 5),  # exactly 25 / 2**5
                                         ((2.0, 0.01, 100.0, "log", None), 4),  # ceil(log2(ln 1e4 / ln 2)) = ceil(3.73)
                                         ((1.1, 0.0, 25.0, "log", 0.025), 7)])  # ceil(log2(ln 1000 / ln 1.1)) = ceil(6.18)
def test_a_resolution_sets_the_steps(args, steps):
    assert steps_for(*args) == steps


# ----------------------------------------------------------------------------- the rounds, with a stub for the runs


SEARCH = """
[run]
preset = "smoke"
protocols = ["collapse"]
floors = []
[sweeps.mu]
base = "vicreg"
bisect = {{ axis = "loss.var_coeff", low = 0.0, high = 32.0, steps = {steps} }}
seeds = [0, 1, 2]
"""
#: Each seed's constructed boundary: collapsed below it.
BOUNDARY = {0: 3.7, 1: 5.2, 2: 40.0}  # seed 2 collapses over the whole range


def _config(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _cfg(tmp_path, steps=5, name="c.toml"):
    return load_toml(_config(tmp_path, SEARCH.format(steps=steps), name)).resolved()


def _record(entry, status: str) -> ResultRecord:
    """A current collapse record of a plan entry, reading ``status``."""
    header = RunHeader(entry.method, "vicreg", "trained", {}, entry.seed, entry.identity, {}, DatasetInfo("digits", "f" * 64),
                       TrainOutcome("finished", 1), {}, entry.sweep)
    info = entry.protocols["collapse"]
    return ResultRecord(header, ProtocolInfo("collapse", info["version"], info["params"], (), MetricMeta({}, "rankme")),
                        {"status": status})


class FakeRuns:
    """The runner's ``execute`` for a constructed response: writes each run's collapse record, counts rounds and runs."""

    def __init__(self, cfg, layout, fail: set[str] = frozenset()):
        self.cfg, self.layout, self.fail = cfg, layout, set(fail)
        self.entry_of = runner.entry_maker(cfg)
        self.rounds: list[list[str]] = []

    def __call__(self, plan) -> int:
        self.rounds.append([r.label for r in plan])
        failed = 0
        for run in plan:
            if run.label in self.fail:
                self.fail.discard(run.label)  # fails once, like a killed run
                failed += 1
                continue
            entry = self.entry_of(run)
            value = run.cell.sweep.coordinates["loss.var_coeff"]
            write_record(self.layout.run(run.cell.name, run.seed),
                         _record(entry, "complete" if value < BOUNDARY[run.seed] else "healthy"), {})
        return failed

    @property
    def runs(self) -> list[str]:
        return [label for r in self.rounds for label in r]


def test_searches_run_in_rounds_across_seeds_and_end_in_brackets(tmp_path):
    cfg = _cfg(tmp_path)
    layout = RunLayout(tmp_path / "out")
    fake = FakeRuns(cfg, layout)
    results, failed = run_searches(cfg, layout, fake.entry_of, fake)
    assert failed == 0 and len(fake.rounds) == 1 + 5  # both ends, then one midpoint per search per round
    assert len(fake.rounds[0]) == 6 and [len(r) for r in fake.rounds[1:]] == [2] * 5  # seed 2 stopped after its ends
    assert len(fake.runs) == len(set(fake.runs)) == 2 * 7 + 2
    by_seed = {r.search.seed: r.state for r in results}
    assert (by_seed[0].collapsed, by_seed[0].healthy) == (3.0, 4.0) and len(by_seed[0].probes) == 7
    assert (by_seed[1].collapsed, by_seed[1].healthy) == (5.0, 6.0)
    assert by_seed[2].outcome == "same_class" and len(by_seed[2].probes) == 2
    assert "mu-var_coeff_16/seed0" in fake.runs and "mu-var_coeff_0/seed2" in fake.runs  # names from coordinates


def test_a_rerun_reuses_every_finished_probe_and_a_failed_probe_stops_only_its_search(tmp_path):
    cfg = _cfg(tmp_path)
    layout = RunLayout(tmp_path / "out")
    first = FakeRuns(cfg, layout, fail={"mu-var_coeff_4/seed0"})  # seed 0's third midpoint (16, 8, then 4)
    results, failed = run_searches(cfg, layout, first.entry_of, first)
    state = {r.search.seed: r.state for r in results}[0]
    assert failed == 1 and state.outcome == "stopped" and len(state.probes) == 4
    assert "the probe at 4 has no collapse reading (no current collapse result); rerun the same command" in state.message
    again = FakeRuns(cfg, layout)
    results, failed = run_searches(cfg, layout, again.entry_of, again)
    assert failed == 0 and again.runs == ["mu-var_coeff_4/seed0", "mu-var_coeff_2/seed0", "mu-var_coeff_3/seed0"]
    assert {r.search.seed: (r.state.collapsed, r.state.healthy) for r in results}[0] == (3.0, 4.0)
    more = FakeRuns(_cfg(tmp_path, steps=6, name="more.toml"), layout)  # a larger budget continues each search
    run_searches(more.cfg, layout, more.entry_of, more)
    assert more.runs == ["mu-var_coeff_3.5/seed0", "mu-var_coeff_5.5/seed1"]


def test_a_round_plan_shares_the_end_cells_across_seeds(tmp_path):
    cfg = _cfg(tmp_path)
    searches = searches_of(cfg)
    plan = probe_plan(cfg, [(s, v) for s in searches for v in (0.0, 32.0)])
    assert [c.name for c in plan.cells] == ["mu-var_coeff_0", "mu-var_coeff_32"]
    assert [c.seeds for c in plan.cells] == [(0, 1, 2)] * 2 and len(plan) == 6
    assert plan.cells[0].sweep.coordinates == {"loss.var_coeff": 0.0} and plan.cells[0].method.loss.var_coeff == 0.0


# ----------------------------------------------------------------------------- the command, training stubbed


@pytest.fixture
def stub_training(monkeypatch):
    """No training and constructed collapse readings (``BOUNDARY``); returns the labels trained."""
    trained: list[str] = []

    def pretrain(model, data, views, train, paths, seed, device, identity, monitor_every=0):
        trained.append(paths.label)
        return TrainOutcome("finished", train.epochs)

    def score(job, header, protocols, features, encoder_hash, timings):
        value = header.sweep.coordinates["loss.var_coeff"]
        status = "complete" if value < BOUNDARY[header.seed] else "healthy"
        for p in protocols:
            write_record(job.paths, ResultRecord(header, p.info(), {"status": status}, encoder_hash, timings), {})
        return 0

    monkeypatch.setattr(runner, "pretrain", pretrain)
    monkeypatch.setattr(runner, "score", score)
    return trained


def test_the_command_prints_and_records_each_seeds_bracket_and_dry_run_shows_the_next_probes(tmp_path, cli,
                                                                                             stub_training):
    out = tmp_path / "out"
    f = _config(tmp_path, SEARCH.format(steps=2))
    rc, text, err = cli("run", "--config", str(f), "--out", str(out))
    assert rc == 0, err
    lines = [ln for ln in text.splitlines() if ln.startswith("bisect ")]
    assert lines == [
        "bisect mu seed0: last healthy loss.var_coeff=8, first collapsed 0 (4 probes)",
        "bisect mu seed1: last healthy loss.var_coeff=8, first collapsed 0 (4 probes)",
        ("bisect mu seed2: both ends read collapsed (loss.var_coeff=0 and 32): no boundary in range, no midpoint run; "
         "widen low/high"),
        "bisect mu overall: last healthy loss.var_coeff=8, first collapsed 0 for every seed (2 of 3 seeds bracketed)",
    ]
    assert len(stub_training) == len(set(stub_training)) == 4 + 4 + 2
    doc = json.loads((out / "bisect" / "mu.json").read_text())
    assert doc["axis"] == "loss.var_coeff" and doc["steps"] == 2 and doc["overall"][0]["seeds"] == [0, 1]
    assert [p["value"] for p in doc["searches"][0]["probes"]] == [0.0, 32.0, 16.0, 8.0]
    assert doc["searches"][2]["outcome"] == "same_class" and doc["searches"][0]["probes"][3]["run"] == "mu-var_coeff_8/seed0"
    planned = json.loads((out / "plan.json").read_text())["runs"]
    assert len(planned) == 10 and all(p["sweep"]["name"] == "mu" for p in planned)
    record = json.loads((out / "mu-var_coeff_8" / "seed1" / "results" / "collapse.json").read_text())
    assert record["sweep"] == {"name": "mu", "coordinates": {"loss.var_coeff": 8.0}}

    rc, text, err = cli("run", "--config", str(_config(tmp_path, SEARCH.format(steps=4), "more.toml")), "--out", str(out),
                        "--dry-run")
    assert rc == 0, err
    assert text.splitlines() == [
        "bisect mu: loss.var_coeff from 0 to 32 (linear, 4 midpoints): 3 search(es), at most 18 runs",
        "  mu seed0: 0 collapsed, 32 healthy, 16 healthy, 8 healthy; next 4, then at most 1 more",
        "  mu seed1: 0 collapsed, 32 healthy, 16 healthy, 8 healthy; next 4, then at most 1 more",
        ("  mu seed2: both ends read collapsed (loss.var_coeff=0 and 32): no boundary in range, no midpoint run; "
         "widen low/high"),
    ]
    assert len(stub_training) == 10 and not (out / "mu-var_coeff_4").exists()


# ----------------------------------------------------------------------------- bad input


BAD = [
    ('bisect = { axis = "loss.var_coeff", low = 5.0, high = 5.0, steps = 3 }',
     r"c\.toml \[sweeps\.s\]: bisect: 'low' must be below 'high', got low = 5\.0, high = 5\.0"),
    ('bisect = { axis = "loss.var_coef", low = 0.0, high = 5.0, steps = 3 }',
     r"unknown loss field of 'vicreg' in .*c\.toml \[sweeps\.s\] bisect 'var_coef'; did you mean 'var_coeff'"),
    ('bisect = { axis = "train.optimizer", low = 0, high = 1, steps = 3 }',
     r"bisect axis 'train.optimizer' is not a number \(.*\); bisect a numeric field"),
    ('bisect = { axis = "views.crop_scale", low = 0.1, high = 1.0, steps = 3 }', r"bisect axis 'views.crop_scale' is not a number"),
    ('bisect = { axis = "loss.var_coeff", low = 0.0, high = 5.0, steps = 0 }',
     r"bisect: 'steps' must be an integer in 1\.\.30, got 0"),
    ('bisect = { axis = "loss.var_coeff", low = 0.0, high = 5.0, steps = 3 }\ngrid = { "loss.var_coeff" = [1.0] }',
     r"bisect axis 'loss.var_coeff' is also a grid axis"),
    ('bisect = { axis = "loss.var_coeff", low = 0.0, high = 5.0 }', r"'bisect' needs one of 'steps' .* or 'resolution'"),
    ('bisect = { axis = "loss.var_coeff", low = 0.0, high = 5.0, steps = 2, resolution = 1.0 }', r"needs one of 'steps'"),
    ('bisect = { axis = "loss.var_coeff", low = "a", high = 5.0, steps = 2 }',
     r"bisect 'low': 'var_coeff' must be float, got 'a'"),
    ('bisect = { axis = "train.lr", low = 0.0, high = 1.0, steps = 2 }', r"bisect 'low': 'lr' must be a finite number > 0"),
    ('bisect = { axis = "loss.var_coeff", low = 0.0, high = 5.0, steps = 2, scale = "log2" }',
     r"'scale' must be 'linear' or 'log', got 'log2'"),
    ('bisect = { axis = "loss.var_coeff", low = 0.0, high = 5.0, steps = 2, floor = 0.1 }',
     r"'floor' is where log-scale midpoints start when low = 0; it does not go with scale = 'linear'"),
    ('bisect = { axis = "loss.var_coeff", low = 0.0, high = 5.0, scale = "log", resolution = 1.0 }',
     r"'resolution' must be a finite number > 1, got 1\.0 \(on a log scale"),
    ('bisect = { axis = "loss.var_coeff", low = 0.0, high = 5.0, step = 2 }', r"unknown key in .* bisect 'step'"),
    ('bisect = { low = 0.0, high = 5.0, steps = 2 }', r"'bisect' needs 'axis', e\.g\. bisect = "),
]


@pytest.mark.parametrize("body, match", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_searches_stop_with_one_line_and_exit_2(tmp_path, cli, body, match):
    f = _config(tmp_path, f'[run]\npreset = "smoke"\nprotocols = ["collapse"]\n[sweeps.s]\nbase = "vicreg"\n{body}\n')
    with pytest.raises(SslbenchError, match=match):
        load_toml(f).resolved()
    rc, _, err = cli("run", "--config", str(f), "--out", str(tmp_path / "out"))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and re.search(match, err), err
    assert not (tmp_path / "out").exists()


def test_a_search_needs_the_collapse_protocol(tmp_path, cli):
    f = _config(tmp_path, '[run]\npreset = "smoke"\nprotocols = ["knn"]\n[sweeps.s]\nbase = "vicreg"\n'
                          'bisect = { axis = "loss.var_coeff", low = 0.0, high = 5.0, steps = 2 }\n')
    rc, _, err = cli("run", "--config", str(f), "--out", str(tmp_path / "out"))
    assert rc == 2 and "sweep 's' bisects for the collapse boundary, so it needs the 'collapse' protocol" in err


def test_a_search_counts_its_whole_budget_against_max_runs(tmp_path, cli):
    f = _config(tmp_path, SEARCH.format(steps=5))
    rc, _, err = cli("run", "--config", str(f), "--out", str(tmp_path / "out"), "--max-runs", "20")
    assert rc == 2 and "the plan has 21 runs (sweep 'mu': 21; methods and floors: 0)" in err


# ----------------------------------------------------------------------------- one real search


def test_a_real_search_on_the_smoke_preset_records_its_probes(tmp_path, cli):
    text = ('[run]\npreset = "smoke"\nepochs = 1\nprotocols = ["collapse"]\nfloors = []\n[sweeps.mu]\nbase = "vicreg"\n'
            'bisect = { axis = "loss.var_coeff", low = 0.0, high = 25.0, scale = "log", steps = 1 }\n')
    out = tmp_path / "out"
    rc, stdout, err = cli("run", "--config", str(_config(tmp_path, text)), "--out", str(out))
    assert rc == 0, err
    doc = json.loads((out / "bisect" / "mu.json").read_text())
    (search,) = doc["searches"]
    assert search["outcome"] in ("bracketed", "same_class") and search["line"] in stdout
    assert len(search["probes"]) == (3 if search["outcome"] == "bracketed" else 2) and doc["floor"] == 0.025
    for probe in search["probes"]:
        record = json.loads((out / probe["run"] / "results" / "collapse.json").read_text())
        assert record["sweep"]["coordinates"] == {"loss.var_coeff": probe["value"]}
        assert {"healthy": "healthy", "dimensional": "collapsed", "complete": "collapsed"}[record["metrics"]["status"]] \
            == probe["class"]
    written = {p: p.stat().st_mtime_ns for p in out.glob("*/seed0/results/collapse.json")}
    rc, again, err = cli("run", "--config", str(_config(tmp_path, text)), "--out", str(out))  # replays: nothing to run
    assert rc == 0 and search["line"] in again and "epoch" not in err
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/seed0/results/collapse.json")} == written


def test_a_grid_beside_a_search_runs_one_search_per_point_and_names_probes_search_axis_first(tmp_path):
    text = SEARCH.format(steps=2).replace('seeds = [0, 1, 2]', 'seeds = [0, 1]\ngrid = { "train.batch_size" = [64, 128] }')
    cfg = load_toml(_config(tmp_path, text)).resolved()
    searches = searches_of(cfg)
    assert [(s.fixed, s.seed) for s in searches] == [({"train.batch_size": 64}, 0), ({"train.batch_size": 64}, 1),
                                                    ({"train.batch_size": 128}, 0), ({"train.batch_size": 128}, 1)]
    cell = searches[2].cell(16.0)
    assert cell.name == "mu-var_coeff_16-batch_size_128" and cell.changes.train == {"batch_size": 128}
    assert searches[2].label == "mu [batch_size=128] seed0"
