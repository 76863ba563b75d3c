"""Leaderboard: mean and t-interval over seeds, Borda rank, floor deltas, md/csv/json/html, merging directories."""

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from lb_factory import BASE_SCORES, make_result, sweep, write_results
from scipy import stats

from sslbench import leaderboard
from sslbench.cli import main


@pytest.fixture
def board():
    return leaderboard.build(sweep(BASE_SCORES))


def _row(table, method):
    return table.set_index("method").loc[method]


def test_mean_ci_and_n_seeds(board):
    table, _ = board
    vic = _row(table, "vicreg")
    assert vic["n_seeds"] == 2
    assert vic["knn.top1"] == pytest.approx(0.81)
    sd = np.std([0.80, 0.82], ddof=1)
    assert vic["knn.top1_ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * sd / math.sqrt(2))
    assert math.isnan(_row(table, "raw_pixels")["knn.top1_ci95"])  # one seed: no interval


def test_borda_ranks_each_labelled_main_metric_in_its_direction_floors_included(board):
    table, notes = board
    # ranked main metrics: knn.top1, linear.top1 (4 rows: 3 points for the best of each);
    # collapse.rankme is label-free: shown, not ranked
    # knn: raw 3, vicreg 2, simsiam 1, random 0; linear: raw 3, vicreg 2, simsiam 1, random 0
    expected = {"raw_pixels": 6, "vicreg": 4, "simsiam": 2, "random_init": 0}
    assert {m: _row(table, m)["borda"] for m in expected} == expected
    assert {m: _row(table, m)["rank"] for m in expected} == {"raw_pixels": 1, "vicreg": 2, "simsiam": 3, "random_init": 4}
    assert list(table["method"]) == ["vicreg", "simsiam", "raw_pixels", "random_init"]  # trained first, by rank
    assert any(n.startswith("rank: Borda count over the main metrics knn.top1, linear.top1 (labelled") for n in notes)


def test_recorded_requirements_decide_what_ranks():
    results = [make_result(m, 0, "knn", {"top1": v}) for m, v in (("a", 0.9), ("b", 0.5))]
    results += [make_result(m, 0, "collapse", {"rankme": r}) for m, r in (("a", 1.0), ("b", 50.0))]
    for r in results:  # as sslbench run records them
        r["protocol"]["requires"] = ["labels"] if r["protocol"]["name"] == "knn" else []
    table, _ = leaderboard.build(results)
    assert list(table["method"]) == ["a", "b"] and list(table["borda"]) == [1.0, 0.0]


def test_borda_points_direction_ties_and_missing():
    values = pd.Series([0.1, 0.3, 0.3, float("nan")])
    assert list(leaderboard.borda_points(values, "higher")) == [1.0, 2.5, 2.5, 0.0]
    assert list(leaderboard.borda_points(values, "lower")) == [3.0, 1.5, 1.5, 0.0]


def test_a_lower_is_better_main_metric_ranks_the_smallest_first():
    results = [make_result(m, 0, "err", {"error": e}) for m, e in (("a", 0.3), ("b", 0.1), ("c", 0.2))]
    table, _ = leaderboard.build(results)
    assert list(table["method"]) == ["b", "c", "a"] and list(table["rank"]) == [1, 2, 3]


def test_floor_deltas_per_main_metric(board):
    table, _ = board
    vic = _row(table, "vicreg")
    assert vic["knn.top1_vs_raw_pixels"] == pytest.approx(0.81 - 0.90)
    assert vic["knn.top1_vs_random_init"] == pytest.approx(0.81 - 0.70)
    assert vic["collapse.rankme_vs_random_init"] == pytest.approx(31.0)
    assert math.isnan(_row(table, "raw_pixels")["knn.top1_vs_raw_pixels"])
    assert "linear.top1_vs_raw_pixels" in table.attrs["deltas"]


def test_status_columns_and_train_outcome():
    results = sweep(BASE_SCORES, collapse_status={"simsiam": "dimensional"}, train_status={"simsiam": "collapsed"})
    table, _ = leaderboard.build(results)
    assert _row(table, "simsiam")["collapse.status"] == "dimensional"
    assert _row(table, "simsiam")["train.status"] == "collapsed"
    assert _row(table, "raw_pixels")["train.status"] == "not_trained"
    md = leaderboard.to_markdown(table, [])
    assert "dimensional" in md and "collapsed" in md


def test_every_format(board):
    table, notes = board
    md = leaderboard.render(table, notes, "md")
    assert "| method | rank | borda | n_seeds | knn.top1" in md
    assert "knn.top1 vs raw_pixels" in md and "- knn (v1): k=20, temperature=0.07" in md
    assert "0.8100 ± 0.1271" in md
    csv = pd.read_csv(io.StringIO(leaderboard.render(table, notes, "csv")))
    assert {"borda", "rank", "knn.top1_vs_random_init", "collapse.status"} <= set(csv.columns)
    doc = json.loads(leaderboard.render(table, notes, "json"))
    assert doc["schema_version"] == 2 and doc["directions"]["collapse.status_code"] == "lower"
    assert doc["main_metrics"] == ["knn.top1", "linear.top1", "collapse.rankme"]
    assert doc["settings"]["knn"] == {"version": "1", "params": {"k": 20, "temperature": 0.07}}
    assert doc["floors"] == ["random_init", "raw_pixels"]
    page = leaderboard.render(table, notes, "html")
    assert page.startswith("<!DOCTYPE html>") and page.count("<table") == 2
    assert "http" not in page and "<script" not in page
    assert 'class="badge b0">healthy' in page and 'class="badge bna">n/a' in page


def test_cli_merges_directories_and_writes_every_format(tmp_path, capsys):
    results = sweep(BASE_SCORES)
    a = write_results(tmp_path / "a", [r for r in results if r["method"] in ("vicreg", "raw_pixels")])
    b = write_results(tmp_path / "b", [r for r in results if r["method"] not in ("vicreg", "raw_pixels")])
    assert main(["leaderboard", str(a), str(b), "--format", "json", "--write", str(tmp_path / "lb")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["method"] for r in doc["rows"]} == set(BASE_SCORES)
    assert sorted(p.name for p in (tmp_path / "lb").iterdir()) == [f"leaderboard.{f}" for f in ("csv", "html", "json", "md")]


def test_cli_warns_about_a_run_present_in_two_directories(tmp_path, capsys):
    results = sweep(BASE_SCORES)
    a, b = write_results(tmp_path / "a", results), write_results(tmp_path / "b", results)
    assert main(["leaderboard", str(a), str(b)]) == 0
    assert "WARNING: vicreg/seed0 has several knn results" in capsys.readouterr().out


def test_cli_unknown_format_and_empty_directory_exit_2(tmp_path, capsys):
    write_results(tmp_path / "a", sweep(BASE_SCORES))
    assert main(["leaderboard", str(tmp_path / "a"), "--format", "htm"]) == 2
    assert "did you mean 'html'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["leaderboard", str(tmp_path / "empty")]) == 2
    assert "no results under" in capsys.readouterr().err
