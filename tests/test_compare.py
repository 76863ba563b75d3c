"""``sslbench compare``: the regression rule, labels, missing metrics, every kind of input, exit codes."""

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest

from sslbench import compare, leaderboard, leaderboard_render
from sslbench.compare import Entry, Summary
from sslbench.layout import RunLayout
from sslbench.errors import SslbenchError
from sslbench.testing import assert_no_regression

ROOT = Path(__file__).resolve().parents[1]


def side(**entries: Entry) -> Summary:
    return Summary("test", {("m", k.replace("__", ".")): e for k, e in entries.items()})


def verdict(b: Entry, c: Entry, **kw) -> compare.Row:
    (row,) = compare.compare(side(knn__top1=b), side(knn__top1=c), **kw).rows
    return row


NAN = float("nan")


@pytest.mark.parametrize(
    "base, cur, direction, expected, allowed",
    [
        (0.80, 0.795, "higher", "ok", 0.01),          # a drop within abs_tol
        (0.80, 0.785, "higher", "REGRESSION", 0.01),  # a drop past abs_tol
        (0.80, 0.815, "higher", "improved", 0.01),
        (0.20, 0.215, "lower", "REGRESSION", 0.01),   # lower is better: a rise is a drop
        (0.20, 0.185, "lower", "improved", 0.01),
    ],
)
def test_drop_against_abs_tol_in_the_declared_direction(base, cur, direction, expected, allowed):
    row = verdict(Entry(base, NAN, direction, 1), Entry(cur, NAN, direction, 1))
    assert row.verdict == expected and row.allowed == pytest.approx(allowed)
    assert row.delta == pytest.approx(cur - base)


def test_combined_ci_widens_the_allowance():
    b, c = Entry(0.80, 0.03, "higher", 3), Entry(0.76, 0.04, "higher", 3)
    row = verdict(b, c)
    assert row.allowed == pytest.approx(0.05) and row.verdict == "ok"  # sqrt(0.03^2 + 0.04^2)
    assert verdict(b, c, ci_mult=0.5).verdict == "REGRESSION"
    assert verdict(Entry(0.8, 0.03, "higher", 3), Entry(0.76, NAN, "higher", 1)).allowed == pytest.approx(0.03)


def test_tolerance_rules_absolute_and_relative():
    rules = compare.parse_tolerances(["knn.*=0.05", "collapse.z_rankme=10%"])
    assert compare.tolerance("knn.top1", 0.8, 0.01, rules) == 0.05
    assert compare.tolerance("collapse.z_rankme", 40.0, 0.01, rules) == pytest.approx(4.0)
    assert compare.tolerance("linear.top1", 0.8, 0.01, rules) == 0.01


def test_a_protocols_declared_tolerance_applies_unless_a_rule_overrides_it(records):
    board = leaderboard.build(records.sweep(records.base_scores))
    side = compare.summary_from_leaderboard(board, "s")
    assert side.tolerances == {"collapse.rankme": "5%", "collapse.z_rankme": "5%"}  # declared by the protocol
    rows = {(r.method, r.metric): r for r in compare.compare(side, side, ci_mult=0.0).rows}
    assert rows[("vicreg", "collapse.rankme")].allowed == pytest.approx(0.05 * 41.0)  # 5% of the mean RankMe
    user = compare.compare(side, side, tolerances={"collapse.rankme": "0.5"}, ci_mult=0.0).rows
    assert next(r for r in user if (r.method, r.metric) == ("vicreg", "collapse.rankme")).allowed == 0.5
    with pytest.raises(SslbenchError, match="PATTERN=VALUE"):
        compare.parse_tolerances(["knn.top1"])


@pytest.mark.parametrize(
    "metric, base, cur, expected",
    [
        ("collapse.status", "healthy", "healthy", "ok"),
        ("collapse.status", "healthy", "dimensional", "REGRESSION"),
        ("collapse.status", "dimensional", "complete", "REGRESSION"),
        ("collapse.status", "complete", "healthy", "improved"),
        ("collapse.status", "dimensional/healthy", "dimensional", "ok"),  # seeds disagree: the worst counts
        ("train.status", "finished", "collapsed", "REGRESSION"),
        ("train.status", "finished", "diverged", "REGRESSION"),
        ("train.status", "not_trained", "not_trained", "ok"),
        ("collapse.status", "healthy", "weird", "REGRESSION"),  # no known order: any change fails
    ],
)
def test_labels(metric, base, cur, expected):
    orders = {"collapse.status": ("healthy", "dimensional", "complete"), "train.status": ("finished", "collapsed",
                                                                                         "diverged")}
    b = Summary("b", {("m", metric): Entry(base, NAN, "label", 1)}, labels=orders)
    c = Summary("c", {("m", metric): Entry(cur, NAN, "label", 1)}, labels=orders)
    assert compare.compare(b, c).rows[0].verdict == expected


def test_missing_on_either_side_fails():
    b = side(knn__top1=Entry(0.8, NAN, "higher", 1), linear__top1=Entry(0.8, NAN, "higher", 1))
    c = side(knn__top1=Entry(0.8, NAN, "higher", 1), few_shot__acc=Entry(0.5, NAN, "higher", 1))
    result = compare.compare(b, c)
    verdicts = {r.metric: r.verdict for r in result.rows}
    assert verdicts == {"knn.top1": "ok", "linear.top1": "missing", "few_shot.acc": "missing"}
    assert not result.passed and "2 missing" in result.summary_line()


def test_diverged_run_reads_as_regression_and_missing(tmp_path, records):
    base = records.sweep(records.base_scores)
    cur = [r for r in base if r.run.method != "simsiam"]
    cur += [records.make("simsiam", s, p, {}, status="diverged") for s in (0, 1) for p in ("knn", "linear", "collapse")]
    result = compare.compare(compare.summary_from_results(base, "b"), compare.summary_from_results(cur, "c"))
    bad = {(r.metric, r.verdict) for r in result.failures if r.method == "simsiam"}
    assert ("train.status", "REGRESSION") in bad and ("knn.top1", "missing") in bad
    assert all(r.verdict == "ok" for r in result.rows if r.method != "simsiam")


def test_every_kind_of_input_gives_the_same_summary(tmp_path, records):
    results = records.sweep(records.base_scores)
    run = records.write(tmp_path / "run", results)
    leaderboard_render.write(leaderboard.build(results), RunLayout(tmp_path / "lb"))
    from_dir, from_file = compare.load(run), compare.load(tmp_path / "lb" / "leaderboard.json")
    from_lb_dir = compare.load(tmp_path / "lb")
    assert from_dir.entries.keys() == from_file.entries.keys() == from_lb_dir.entries.keys()
    for k, e in from_dir.entries.items():
        f = from_file.entries[k]
        assert e.direction == f.direction and (e.value == f.value or e.value == pytest.approx(f.value, abs=1e-9))
    single = compare.load(run / "vicreg" / "seed0" / "results" / "knn.json")
    assert single.entries[("vicreg", "knn.top1")].value == 0.80 and single.entries[("vicreg", "knn.top1")].n_seeds == 1


def test_cli_exit_codes_table_and_json(tmp_path, cli, records):
    base = records.write(tmp_path / "base", records.sweep(records.base_scores))
    res = cli("compare", str(base), str(base))
    assert res.rc == 0
    out = res.out
    assert out.splitlines()[0].split() == ["method", "metric", "baseline", "current", "delta", "allowed", "verdict"]
    assert "PASS: 28 compared, 28 ok, 0 improved, 0 REGRESSION, 0 missing" in out
    worse = copy.deepcopy(records.base_scores)
    for seed in (0, 1):
        worse["simsiam"][seed]["knn"] -= 0.2  # past the combined CI of two seeds (0.127)
    cur = records.write(tmp_path / "cur", records.sweep(worse))
    res = cli("compare", str(base), str(cur), "--json", str(tmp_path / "cmp.json"))
    assert res.rc == 1
    out = res.out
    line = next(ln for ln in out.splitlines() if ln.startswith("simsiam") and " knn.top1 " in ln)
    assert line.split()[-1] == "REGRESSION" and "FAIL:" in out
    doc = json.loads((tmp_path / "cmp.json").read_text())
    assert doc["passed"] is False and doc["counts"]["REGRESSION"] >= 1
    row = next(r for r in doc["rows"] if r["method"] == "simsiam" and r["metric"] == "knn.top1")
    assert row["verdict"] == "REGRESSION" and row["delta"] == pytest.approx(-0.2)
    assert cli("compare", str(base), str(cur), "--metrics", "linear,collapse.status").rc == 0


def test_metrics_selection():
    keys = [("m", "knn.top1"), ("m", "knn.top1_k1"), ("m", "linear.top1"), ("m", "collapse.z_rankme")]
    assert compare.select_metrics(keys, ["main"], {"knn.top1", "linear.top1"}) == keys[0:1] + keys[2:3]
    assert compare.select_metrics(keys, ["knn"], set()) == keys[:2]
    assert compare.select_metrics(keys, ["collapse.*rankme"], set()) == keys[3:]
    with pytest.raises(SslbenchError, match="did you mean 'knn.top1'"):
        compare.select_metrics(keys, ["knn.tpo1"], set())


@pytest.mark.parametrize("bad", ["missing_dir", "not_json", "v1", "other_json"])
def test_unusable_input_exits_2(tmp_path, cli, records, bad):
    base = records.write(tmp_path / "base", records.sweep(records.base_scores))
    paths = {"missing_dir": tmp_path / "nope", "not_json": tmp_path / "x.json", "v1": tmp_path / "v1.json",
             "other_json": tmp_path / "o.json"}
    paths["not_json"].write_text("{not json")
    paths["v1"].write_text(json.dumps({"schema_version": 1, "rows": [], "notes": []}))
    paths["other_json"].write_text(json.dumps({"hello": 1}))
    res = cli("compare", str(base), str(paths[bad]))
    err = res.err
    assert res.rc == 2 and err.startswith("sslbench: error:") and len(err.strip().splitlines()) == 1
    if bad == "v1":
        assert "rebuild it with `sslbench leaderboard" in err


def test_protocol_version_change_is_warned(tmp_path, records):
    base = records.sweep(records.base_scores)
    cur = [dataclasses.replace(r, protocol=dataclasses.replace(r.protocol, version="2"))
           if r.protocol.name == "knn" else r for r in base]
    result = compare.compare(compare.summary_from_results(base, "b"), compare.summary_from_results(cur, "c"))
    assert result.passed and any("knn: protocol version 1 in the baseline, 2 now" in w for w in result.warnings)
    assert "WARNING: knn: protocol version" in result.format_table()


def test_assert_no_regression_raises_with_the_table(tmp_path, records):
    base = records.write(tmp_path / "base", records.sweep(records.base_scores))
    assert assert_no_regression(base, base).passed
    worse = copy.deepcopy(records.base_scores)
    worse["vicreg"][1]["linear"] = 0.5
    cur = records.write(tmp_path / "cur", records.sweep(worse))
    with pytest.raises(AssertionError, match=r"vicreg\s+linear.top1\s+0.8550 ± [0-9.]+\s+0.6750 ± [0-9.]+\s+-0.1800"):
        assert_no_regression(base, cur, ci_mult=0.0)
    assert_no_regression(base, cur, ci_mult=1.0)  # two seeds this far apart: a CI wider than the drop


def test_committed_smoke_reference_is_readable_and_covers_every_trained_method():
    ref = compare.load(ROOT / "baselines" / "regression" / "smoke")
    methods = set(ref.methods())
    assert {"simsiam", "vicreg_mod", "vicreg", "byol", "barlow_twins", "simclr", "random_init", "raw_pixels"} <= methods
    from sslbench.registry import registry

    reg = registry("methods")
    trained = {n for n in reg.names() if reg.source(n) == "builtin" and reg.get(n).encoder == "trained"}
    assert trained <= methods, f"the smoke reference lacks {sorted(trained - methods)}: run baselines/regression/smoke.sh update"
    assert all(math.isfinite(e.value) for e in ref.entries.values() if e.direction != "label")


# ----------------------------------------------------------------------------- what an attack broke


def _knn_drop(tmp_path, records):
    """A baseline and a current run whose kNN top-1 dropped by 0.20 on every seed of simsiam."""
    base = records.write(tmp_path / "base", records.sweep(records.base_scores))
    worse = copy.deepcopy(records.base_scores)
    for seed in (0, 1):
        worse["simsiam"][seed]["knn"] -= 0.2
    return base, records.write(tmp_path / "cur", records.sweep(worse))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--abs-tol", "nan"], "--abs-tol must be a finite number >= 0, got nan"),
        (["--abs-tol", "inf"], "--abs-tol must be a finite number >= 0, got inf"),
        (["--abs-tol", "-0.5"], "--abs-tol must be a finite number >= 0, got -0.5"),
        (["--ci-mult", "nan"], "--ci-mult must be a finite number >= 0, got nan"),
        (["--tol", "knn.*=nan"], "--tol 'knn.*=nan': VALUE must be a finite number >= 0"),
        (["--tol", "knn.*=nan%"], "--tol 'knn.*=nan%': VALUE must be a finite number >= 0"),
        (["--tol", "knn.*=inf"], "--tol 'knn.*=inf': VALUE must be a finite number >= 0"),
        (["--tol", "knn.*=-1"], "--tol 'knn.*=-1': VALUE must be a finite number >= 0"),
    ],
)
def test_a_tolerance_that_is_not_a_finite_number_ge_0_is_refused(tmp_path, cli, records, flags, message):
    base, cur = _knn_drop(tmp_path, records)
    res = cli("compare", str(base), str(cur), *flags)
    assert res.rc == 2  # passed the -0.20 drop with exit 0
    err = res.err
    assert err.startswith(f"sslbench: error: {message}") and len(err.strip().splitlines()) == 1


def test_tolerances_given_in_code_are_checked_too():
    b, c = side(knn__top1=Entry(0.8, NAN, "higher", 1)), side(knn__top1=Entry(0.6, NAN, "higher", 1))
    for kw in ({"abs_tol": NAN}, {"ci_mult": math.inf}, {"tolerances": {"knn.*": "nan"}}, {"tolerances": {"knn.*": "-1%"}}):
        with pytest.raises(SslbenchError, match="must be a finite number >= 0"):
            compare.compare(b, c, **kw)


def _with_nan_knn(results, methods):
    return [dataclasses.replace(r, metrics={**r.metrics, "top1": float("nan")})
            if r.run.method in methods and r.protocol.name == "knn" else r for r in results]


@pytest.mark.parametrize("sides", ["both", "current", "baseline"])
def test_a_nan_metric_is_missing_on_either_side_or_both(tmp_path, cli, records, sides):
    sweep = records.sweep(records.base_scores)
    base = records.write(tmp_path / "base", _with_nan_knn(sweep, {"simsiam"} if sides != "current" else set()))
    cur = records.write(tmp_path / "cur", _with_nan_knn(sweep, {"simsiam"} if sides != "baseline" else set()))
    result = compare.compare(compare.load(base), compare.load(cur))
    row = next(r for r in result.rows if (r.method, r.metric) == ("simsiam", "knn.top1"))
    assert row.verdict == "missing" and not result.passed
    assert all(r.verdict == "ok" for r in result.rows if (r.method, r.metric) != ("simsiam", "knn.top1"))
    res = cli("compare", str(base), str(cur))
    assert res.rc == 1
    line = next(ln for ln in res.out.splitlines() if ln.startswith("simsiam") and " knn.top1 " in ln)
    assert line.split()[-1] == "missing" and "nan" in line


def test_an_explicit_nan_in_a_leaderboard_row_is_missing_and_null_is_not_measured():
    doc = {"schema_version": 2, "directions": {"knn.top1": "higher", "linear.top1": "higher"},
           "rows": [{"method": "m", "n_seeds": 1, "knn.top1": float("nan"), "linear.top1": None}]}
    result = compare.compare(compare.load(doc), compare.load(copy.deepcopy(doc)))
    assert [(r.metric, r.verdict) for r in result.rows] == [("knn.top1", "missing")]


def _lb(tmp_path, **change):
    doc = {"schema_version": 2, "directions": {"knn.top1": "higher"},
           "rows": [{"method": "m", "n_seeds": 1, "knn.top1": 0.8}], **change}
    (tmp_path / "lb.json").write_text(json.dumps(doc))
    return tmp_path / "lb.json"


def _result_dir(tmp_path, doc):
    """A run directory holding one result file of ``doc``."""
    path = tmp_path / "run" / "m" / "seed0" / "results" / "knn.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    return tmp_path / "run"


def _fifo(tmp_path):
    import os

    os.mkfifo(tmp_path / "lb.json")
    return tmp_path / "lb.json"


#: A well-formed result record, as sslbench writes it, that the cases below break one part of.
_KNN_RESULT = {"schema_version": 1, "method": "m", "seed": 0, "encoder_kind": "trained", "train": {"status": "finished"},
               "dataset": {"name": "digits", "fingerprint": "f" * 64}, "metrics": {"top1": 0.8},
               "protocol": {"name": "knn", "version": "1", "params": {}, "main_metric": "top1",
                            "directions": {"top1": "higher"}}}

MALFORMED = {
    "rows_an_int": (lambda t: _lb(t, rows=3), "'rows' must be a list"),
    "row_without_method": (lambda t: _lb(t, rows=[{"knn.top1": 0.8}]), "row 0 has no 'method' name"),
    "row_not_an_object": (lambda t: _lb(t, rows=[[1, 2]]), "row 0 is a list, not an object"),
    "n_seeds_abc": (lambda t: _lb(t, rows=[{"method": "m", "n_seeds": "abc"}]), "'n_seeds' must be a count, got 'abc'"),
    "directions_a_list": (lambda t: _lb(t, directions=["knn.top1"]), "'directions' must map metrics"),
    "direction_sideways": (lambda t: _lb(t, directions={"knn.top1": "sideways"}), "'directions' must map metrics"),
    "settings_a_string": (lambda t: _lb(t, settings="x"), "'settings' must be a JSON object"),
    "result_a_list": (lambda t: _result_dir(t, [1, 2]), "holds a JSON list, not an object"),
    "result_without_seed": (lambda t: _result_dir(t, {k: v for k, v in _KNN_RESULT.items() if k != "seed"}),
                            "not a result record (no 'seed')"),
    "result_seed_a_string": (lambda t: _result_dir(t, {**_KNN_RESULT, "seed": "0"}), "'seed' must be an integer"),
    "result_protocol_a_string": (lambda t: _result_dir(t, {**_KNN_RESULT, "protocol": "knn"}),
                                 "'protocol' must be a JSON object"),
    "result_metrics_a_list": (lambda t: _result_dir(t, {**_KNN_RESULT, "metrics": [0.8]}),
                              "'metrics' must be a JSON object"),
    "fifo": (_fifo, "is not a regular file"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_exits_2_not_1(tmp_path, cli, case):
    build, message = MALFORMED[case]
    (tmp_path / "good").mkdir()
    good = _lb(tmp_path / "good")
    bad = build(tmp_path)
    for argv in (["compare", str(good), str(bad)], ["compare", str(bad), str(good)]):
        res = cli(*argv)
        assert res.rc == 2  # a traceback (exit 1, a regression's code) before
        err = res.err
        assert err.startswith("sslbench: error: ") and message in err and len(err.strip().splitlines()) == 1
