"""The leaderboard, analyze and report group and sort sweep rows by coordinate, from the records' sweep block."""

import dataclasses
import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sslbench import leaderboard
from sslbench.errors import SslbenchError
from sslbench.records import SweepInfo

#: knn top1 per (var_coeff, proj_dim) and seed: each var_coeff group's mean is plain to check.
TOP1 = {(0.0, 64): (0.50, 0.52), (0.0, 256): (0.54, 0.56), (25.0, 64): (0.80, 0.82), (25.0, 256): (0.84, 0.86)}


@pytest.fixture
def sweep_records(records):
    out = []
    for (var, dim), scores in TOP1.items():
        name = f"s-var_coeff_{var:g}-proj_dim_{dim}"
        for seed, top1 in enumerate(scores):
            collapsed = var == 0.0 and dim == 64
            for r in (records.make(name, seed, "knn", {"top1": top1, "top1_k1": top1}, base="vicreg",
                                   status="collapsed" if collapsed else "finished"),
                      records.make(name, seed, "collapse", {"rankme": 10.0 + 10 * top1, "status": "complete" if collapsed else "healthy"},
                                   base="vicreg", status="collapsed" if collapsed else "finished")):
                sweep = SweepInfo("s", {"loss.var_coeff": var, "heads.proj_dim": dim})
                out.append(dataclasses.replace(r, run=dataclasses.replace(r.run, sweep=sweep)))
    out.append(records.make("vicreg", 0, "knn", {"top1": 0.70, "top1_k1": 0.70}))
    out.append(records.make("random_init", 0, "knn", {"top1": 0.30, "top1_k1": 0.30}))
    return out


def _ci95(values):
    """Student-t half-width, written out: t_{0.975, n-1} * s / sqrt(n)."""
    v = np.asarray(values)
    return stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))


def test_sweep_rows_carry_their_coordinates(sweep_records):
    board = leaderboard.build(sweep_records)
    t = board.table.set_index("method")
    assert board.axes == ["loss.var_coeff", "heads.proj_dim"] and len(t) == 6
    assert t.loc["s-var_coeff_25-proj_dim_256", "loss.var_coeff"] == 25.0
    assert t.loc["s-var_coeff_25-proj_dim_256", "sweep"] == "s" and t.loc["s-var_coeff_0-proj_dim_64", "heads.proj_dim"] == 64
    assert pd.isna(t.loc["vicreg", "sweep"]) and pd.isna(t.loc["random_init", "loss.var_coeff"])
    assert t.loc["s-var_coeff_0-proj_dim_256", "knn.top1"] == pytest.approx(0.55)


def test_group_by_pools_every_cell_and_seed_of_a_value(sweep_records):
    board = leaderboard.build(sweep_records, group_by=["var_coeff"])  # the field name alone is enough
    assert board.group_by == ["loss.var_coeff"]
    assert list(board.table["method"]) == ["s[var_coeff=0]", "s[var_coeff=25]", "vicreg", "random_init"]
    t = board.table.set_index("method")
    low = [v for key, vals in TOP1.items() if key[0] == 0.0 for v in vals]
    assert t.loc["s[var_coeff=0]", "knn.top1"] == pytest.approx(0.53)
    assert t.loc["s[var_coeff=0]", "knn.top1_ci95"] == pytest.approx(_ci95(low))
    assert t.loc["s[var_coeff=25]", "knn.top1"] == pytest.approx(0.83)
    assert (t.loc["s[var_coeff=0]", "n_runs"], t.loc["s[var_coeff=0]", "n_seeds"]) == (4, 2)
    assert t.loc["s[var_coeff=0]", "collapse.status"] == "complete/healthy"
    assert t.loc["s[var_coeff=0]", "train.status"] == "collapsed/finished"
    assert t.loc["s[var_coeff=25]", "rank"] == 1 and t.loc["vicreg", "rank"] == 2  # the rank still ranks
    assert "heads.proj_dim" not in board.table  # pooled over
    assert board.notes[0].startswith("grouped by loss.var_coeff: a sweep row pools")
    two = leaderboard.build(sweep_records, group_by=["loss.var_coeff", "proj_dim"])
    assert "s[var_coeff=0, proj_dim=64]" in set(two.table["method"]) and len(two.table) == 6


def test_sort_by_an_axis_or_a_metric(sweep_records):
    by_dim = leaderboard.build(sweep_records, sort_by="heads.proj_dim")
    dims = list(by_dim.table["heads.proj_dim"])
    assert dims[:4] == [64, 64, 256, 256] and list(by_dim.table["method"])[-1] == "random_init"
    assert list(by_dim.table["method"])[:2] == ["s-var_coeff_25-proj_dim_64", "s-var_coeff_0-proj_dim_64"]  # then rank
    by_top1 = leaderboard.build(sweep_records, sort_by="knn.top1")
    assert list(by_top1.table["knn.top1"])[:3] == pytest.approx([0.85, 0.81, 0.70])  # higher is better: best first


@pytest.mark.parametrize("axis, match", [("var_coef", r"unknown sweep axis 'var_coef'; did you mean 'loss.var_coeff'"),
                                         ("loss.nothing", r"unknown sweep axis 'loss.nothing'")])
def test_an_unknown_axis_is_one_line_with_the_known_ones(sweep_records, axis, match):
    with pytest.raises(SslbenchError, match=match):
        leaderboard.build(sweep_records, group_by=[axis])


def test_an_ambiguous_field_name_and_a_board_without_sweeps_are_refused(sweep_records, records):
    twin = [dataclasses.replace(r, run=dataclasses.replace(r.run, sweep=SweepInfo("t", {"target.var_coeff": 1.0})))
            for r in sweep_records[:2]]
    with pytest.raises(SslbenchError, match=r"axis 'var_coeff' is ambiguous: it may be 'loss.var_coeff' or 'target.var_coeff'"):
        leaderboard.build(sweep_records + twin, group_by=["var_coeff"])
    with pytest.raises(SslbenchError, match="no result belongs to a sweep"):
        leaderboard.build(records.sweep(records.base_scores), group_by=["var_coeff"])


def test_coordinate_table_counts_collapse_per_value(sweep_records):
    table = leaderboard.coordinate_table(sweep_records, ["var_coeff"]).set_index("group")
    assert list(table.index) == ["s[var_coeff=0]", "s[var_coeff=25]"]  # plain methods are not sweep groups
    assert table.loc["s[var_coeff=0]", "collapsed"] == "2/4" and table.loc["s[var_coeff=0]", "collapsed_share"] == 0.5
    assert table.loc["s[var_coeff=25]", "collapsed"] == "0/4"
    assert table.loc["s[var_coeff=0]", "collapse.status"] == "complete 2, healthy 2"
    assert table.loc["s[var_coeff=0]", "train.status"] == "collapsed 2, finished 2"
    assert table.loc["s[var_coeff=25]", "knn.top1"] == pytest.approx(0.83) and table.loc["s[var_coeff=25]", "n_runs"] == 4
    by_top1 = leaderboard.coordinate_table(sweep_records, ["proj_dim"], sort_by="knn.top1")
    assert list(by_top1["group"]) == ["s[proj_dim=256]", "s[proj_dim=64]"]


def test_the_commands_group_and_sort(sweep_records, records, tmp_path, cli):
    out = records.write(tmp_path / "out", sweep_records)
    rc, text, err = cli("leaderboard", str(out), "--group-by", "var_coeff", "--format", "csv")
    assert rc == 0, err
    table = pd.read_csv(io.StringIO(text))
    assert list(table["method"])[:2] == ["s[var_coeff=0]", "s[var_coeff=25]"] and list(table["n_runs"])[:2] == [4, 4]
    rc, text, err = cli("analyze", str(out), "--group-by", "proj_dim")
    assert rc == 0, err
    assert "## By sweep coordinate" in text and "| s[proj_dim=64] | s | 64 | 4 |" in text
    rc, text, err = cli("report", str(out), "--group-by", "var_coeff", "--out", str(tmp_path / "r.html"))
    assert rc == 0, err
    assert "s[var_coeff=25]" in (tmp_path / "r.html").read_text()
    rc, _, err = cli("leaderboard", str(out), "--sort-by", "nothing")
    assert rc == 2 and "unknown sweep axis 'nothing'" in err and len(err.strip().splitlines()) == 1
