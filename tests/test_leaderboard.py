"""Leaderboard: mean and t-interval over seeds, Borda rank, floor deltas, md/csv/json/html, merging directories."""

import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sslbench import leaderboard, leaderboard_render
from sslbench.records import MetricMeta

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def board(records):
    return leaderboard.build(records.sweep(records.base_scores))


def _row(table, method):
    return table.set_index("method").loc[method]


def test_mean_ci_and_n_seeds(board):
    table = board.table
    vic = _row(table, "vicreg")
    assert vic["n_seeds"] == 2
    assert vic["knn.top1"] == pytest.approx(0.81)
    sd = np.std([0.80, 0.82], ddof=1)
    assert vic["knn.top1_ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * sd / math.sqrt(2))
    assert math.isnan(_row(table, "raw_pixels")["knn.top1_ci95"])  # one seed: no interval


def test_borda_ranks_each_labelled_main_metric_in_its_direction_floors_included(board):
    table, notes = board.table, board.notes
    # ranked main metrics: knn.top1, linear.top1 (4 rows: 3 points for the best of each);
    # collapse.rankme is label-free: shown, not ranked
    # knn: raw 3, vicreg 2, simsiam 1, random 0; linear: raw 3, vicreg 2, simsiam 1, random 0
    expected = {"raw_pixels": 6, "vicreg": 4, "simsiam": 2, "random_init": 0}
    assert {m: _row(table, m)["borda"] for m in expected} == expected
    assert {m: _row(table, m)["rank"] for m in expected} == {"raw_pixels": 1, "vicreg": 2, "simsiam": 3, "random_init": 4}
    assert list(table["method"]) == ["vicreg", "simsiam", "raw_pixels", "random_init"]  # trained first, by rank
    assert any(n.startswith("rank: Borda count over the main metrics knn.top1, linear.top1 (labelled") for n in notes)


def test_recorded_requirements_decide_what_ranks(records):
    results = [records.make(m, 0, "knn", {"top1": v}) for m, v in (("a", 0.9), ("b", 0.5))]
    results += [records.make(m, 0, "collapse", {"rankme": r}) for m, r in (("a", 1.0), ("b", 50.0))]
    table = leaderboard.build(results).table
    assert list(table["method"]) == ["a", "b"] and list(table["borda"]) == [1.0, 0.0]


def test_borda_points_direction_ties_and_missing():
    values = pd.Series([0.1, 0.3, 0.3, float("nan")])
    assert list(leaderboard.borda_points(values, "higher")) == [1.0, 2.5, 2.5, 0.0]
    assert list(leaderboard.borda_points(values, "lower")) == [3.0, 1.5, 1.5, 0.0]


def test_a_lower_is_better_main_metric_ranks_the_smallest_first(records):
    results = [records.make(m, 0, "err", {"error": e}) for m, e in (("a", 0.3), ("b", 0.1), ("c", 0.2))]
    table = leaderboard.build(results).table
    assert list(table["method"]) == ["b", "c", "a"] and list(table["rank"]) == [1, 2, 3]


def test_floor_deltas_per_main_metric(board):
    table = board.table
    vic = _row(table, "vicreg")
    assert vic["knn.top1_vs_raw_pixels"] == pytest.approx(0.81 - 0.90)
    assert vic["knn.top1_vs_random_init"] == pytest.approx(0.81 - 0.70)
    assert vic["collapse.rankme_vs_random_init"] == pytest.approx(31.0)
    assert math.isnan(_row(table, "raw_pixels")["knn.top1_vs_raw_pixels"])
    assert "linear.top1_vs_raw_pixels" in board.deltas


def test_status_columns_and_train_outcome(records):
    results = records.sweep(records.base_scores, collapse_status={"simsiam": "dimensional"},
                            train_status={"simsiam": "collapsed"})
    board = leaderboard.build(results)
    assert _row(board.table, "simsiam")["collapse.status"] == "dimensional"
    assert _row(board.table, "simsiam")["train.status"] == "collapsed"
    assert _row(board.table, "raw_pixels")["train.status"] == "not_trained"
    md = leaderboard_render.to_markdown(board)
    assert "dimensional" in md and "collapsed" in md


def test_a_plugin_label_with_its_own_order_is_read_like_the_collapse_status(records):
    """The readers never name a protocol: a label order recorded by any protocol drives badges and severity."""
    rec = records.make("a", 0, "knn", {"top1": 0.9})
    meta = MetricMeta({"top1": "higher"}, "top1", labels={"grade": ("good", "fair", "poor")})
    plugin = dataclasses.replace(rec, protocol=dataclasses.replace(rec.protocol, name="grader", meta=meta),
                                 metrics={"top1": 0.5, "grade": "poor"})
    board = leaderboard.build([rec, plugin])
    assert board.label_columns() == ["grader.grade"] and board.severity("grader.grade", "fair/poor") == 2
    assert 'class="badge b2">poor' in leaderboard_render.html_fragment(board)


def _few_shot_records(records, drop_meta: bool = False):
    """Two seeds of the registered few_shot protocol's records; with ``drop_meta``, read back from JSON
    without the ``intervals`` metadata, as records written before it was recorded."""
    from sslbench.records import ResultRecord
    from sslbench.registry import registry

    info = registry("protocols").get("few_shot")().info()
    out = []
    for seed, (acc, ci) in enumerate(((0.50, 0.02), (0.60, 0.04))):
        rec = records.make("a", seed, "knn", {})
        metrics = {"acc_1shot_centroid": acc, "acc_1shot_centroid_episode_ci95": ci, "source": "test"}
        rec = dataclasses.replace(rec, protocol=info, metrics=metrics)
        if drop_meta:
            doc = rec.to_json()
            del doc["protocol"]["intervals"]
            rec = ResultRecord.from_json(doc, "old.json")
        out.append(rec)
    return out


@pytest.mark.parametrize("drop_meta", [False, True])
def test_a_declared_interval_metric_gets_no_interval_over_seeds(records, drop_meta):
    rows = _few_shot_records(records, drop_meta)
    assert rows[0].protocol.meta.intervals["acc_1shot_centroid_episode_ci95"] == "acc_1shot_centroid"
    row = _row(leaderboard.build(rows).table, "a")
    assert row["few_shot.acc_1shot_centroid"] == pytest.approx(0.55)
    assert row["few_shot.acc_1shot_centroid_ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * np.std([0.5, 0.6], ddof=1)
                                                                  / math.sqrt(2))
    assert row["few_shot.acc_1shot_centroid_episode_ci95"] == pytest.approx(0.03)  # the mean over seeds
    assert not [c for c in row.index if c.endswith("_ci95_ci95")]


def test_the_interval_rule_reads_the_metadata_not_the_name(records):
    rec = records.make("a", 0, "knn", {"top1": 0.9})
    meta = MetricMeta({"top1": "higher"}, "top1", intervals={"spread": "top1"})
    rec = dataclasses.replace(rec, protocol=dataclasses.replace(rec.protocol, name="plug", meta=meta),
                              metrics={"top1": 0.9, "spread": 0.01, "noise_ci95": 0.5})
    table = leaderboard.build([rec]).table
    assert "plug.spread" in table and "plug.spread_ci95" not in table
    assert "plug.noise_ci95_ci95" in table  # undeclared: an ordinary metric, whatever its name


def test_every_format(board):
    md = leaderboard_render.render(board, "md")
    assert "| method | rank | borda | n_seeds | knn.top1" in md
    assert "knn.top1 vs raw_pixels" in md and "- knn (v1): k=20, temperature=0.07" in md
    assert "0.8100 ± 0.1271" in md
    csv = pd.read_csv(io.StringIO(leaderboard_render.render(board, "csv")))
    assert {"borda", "rank", "floor", "knn.top1_vs_random_init", "collapse.status"} <= set(csv.columns)
    doc = json.loads(leaderboard_render.render(board, "json"))
    assert doc["schema_version"] == 3 and doc["directions"]["collapse.status_code"] == "lower"
    assert doc["labels"]["collapse.status"] == ["healthy", "dimensional", "complete"]
    assert doc["tolerances"] == {"collapse.rankme": "5%", "collapse.z_rankme": "5%"}
    assert doc["main_metrics"] == ["knn.top1", "linear.top1", "collapse.rankme"]
    assert doc["settings"]["knn"] == {"version": "1", "params": {"k": 20, "temperature": 0.07}}
    assert doc["floors"] == ["random_init", "raw_pixels"]
    page = leaderboard_render.render(board, "html")
    assert page.startswith("<!DOCTYPE html>") and page.count("<table") == 2
    assert "http" not in page and "<script" not in page
    assert 'class="badge b0">healthy' in page and 'class="badge bna">n/a' in page


def test_cli_merges_directories_and_writes_every_format(tmp_path, cli, records):
    results = records.sweep(records.base_scores)
    a = records.write(tmp_path / "a", [r for r in results if r.run.method in ("vicreg", "raw_pixels")])
    b = records.write(tmp_path / "b", [r for r in results if r.run.method not in ("vicreg", "raw_pixels")])
    res = cli("leaderboard", str(a), str(b), "--format", "json", "--write", str(tmp_path / "lb"))
    assert res.rc == 0
    doc = json.loads(res.out)
    assert {r["method"] for r in doc["rows"]} == set(records.base_scores)
    assert sorted(p.name for p in (tmp_path / "lb").iterdir()) == [f"leaderboard.{f}" for f in ("csv", "html", "json", "md")]


@pytest.mark.parametrize("fmt", leaderboard_render.FORMATS)
def test_cli_warns_on_stderr_in_every_format(tmp_path, cli, records, fmt):
    results = records.sweep(records.base_scores)
    a, b = records.write(tmp_path / "a", results), records.write(tmp_path / "b", results)
    other = records.write(tmp_path / "c", [records.make("extra", 0, "knn", {"top1": 0.5}, fingerprint="e" * 64)])
    res = cli("leaderboard", str(a), str(b), str(other), "--format", fmt)
    assert res.rc == 0
    assert "sslbench: WARNING: vicreg/seed0 has several knn results" in res.err
    assert "sslbench: WARNING: results come from 2 different data fingerprints" in res.err


def test_compact_view_is_the_default_and_all_prints_every_column(tmp_path, cli, records):
    results = records.sweep(records.base_scores, collapse_status={"simsiam": "dimensional"},
                            train_status={"simsiam": "collapsed"})
    out = records.write(tmp_path / "a", results)
    compact = cli("leaderboard", str(out)).out.splitlines()
    head = [c.strip() for c in compact[0].strip("|").split("|")]
    assert head == ["method", "rank", "seeds", "knn", "linear", "collapse", "collapse.status", "training"]
    assert "main metrics: knn = knn.top1, linear = linear.top1, collapse = collapse.rankme" in compact
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")] for ln in compact[2:6]}
    assert list(rows) == ["vicreg", "simsiam", "raw_pixels (floor)", "random_init (floor)"]  # rank order, floors last
    assert rows["vicreg"] == ["vicreg", "2", "2", "0.810 ± 0.127", "0.855 ± 0.064", "41.000 ± 12.706", "healthy",
                              "finished"]
    assert rows["simsiam"][-2:] == ["dimensional", "collapsed"] and rows["raw_pixels (floor)"][1:4] == ["1", "1", "0.900"]
    assert len({len(ln) for ln in compact[:6]}) == 1  # aligned
    assert compact[-1] == "every column: add --all" and "borda" not in compact[0]
    full = cli("leaderboard", str(out), "--all").out
    assert full == leaderboard_render.to_markdown(leaderboard.build(results))
    assert "| method | rank | borda | n_seeds | knn.top1 | knn.top1_k1 |" in full and "- knn (v1): k=20" in full


def test_cli_unknown_format_and_empty_directory_exit_2(tmp_path, cli, records):
    records.write(tmp_path / "a", records.sweep(records.base_scores))
    res = cli("leaderboard", str(tmp_path / "a"), "--format", "htm")
    assert res.rc == 2 and "did you mean 'html'" in res.err
    (tmp_path / "empty").mkdir()
    res = cli("leaderboard", str(tmp_path / "empty"))
    assert res.rc == 2 and "no test results under" in res.err


def test_a_schema_2_leaderboard_json_still_reads(tmp_path):
    """Committed leaderboards of earlier versions: floors marked ``reference``, no label orders.

    The fixture is the smoke reference as committed at schema 2.
    """
    doc = json.loads((ROOT / "tests" / "fixtures" / "leaderboard_schema2.json").read_text())
    assert doc["schema_version"] == 2
    board = leaderboard_render.from_json(doc, "smoke")
    assert board.floors == ["random_init", "raw_pixels"] and board.table.set_index("method").loc["raw_pixels", "floor"]
    assert board.labels["collapse.status"] == ("healthy", "dimensional", "complete")
    assert board.tolerances["collapse.z_rankme"] == "5%"
