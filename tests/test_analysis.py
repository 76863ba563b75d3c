"""sslbench analyze: variant effects with Welch intervals, the collapse table from the training
monitor, and Spearman agreement, on hand-built result files with known answers."""

import json

import pandas as pd
import pytest
from scipy import stats

from sslbench.analysis import analyze, write
from sslbench.layout import RunLayout


def _write_run(records, out, method, seed, base, linear, rankme, statuses=("healthy",), status="healthy"):
    records.write(out, [records.make(method, seed, "linear", {"top1": linear}, base=base),
                        records.make(method, seed, "collapse", {"rankme": rankme, "status": status}, base=base)])
    RunLayout(out).run(method, seed).metrics_log.write_text(
        "".join(json.dumps({"epoch": i + 1, "step": 100 * (i + 1), "probe_status": s}) + "\n"
                for i, s in enumerate(statuses))
    )


@pytest.fixture
def sweep(tmp_path, records):
    for seed, (b, good, noisy) in enumerate([(0.80, 0.85, 0.81), (0.81, 0.86, 0.79), (0.79, 0.84, 0.80)]):
        _write_run(records, tmp_path, "base", seed, None, b, 50.0 + seed)
        _write_run(records, tmp_path, "good", seed, "base", good, 60.0 + seed)
        _write_run(records, tmp_path, "noisy", seed, "base", noisy, 55.0 + seed)
        _write_run(records, tmp_path, "bad", seed, "base", 0.3 + 0.01 * seed, 1.5 + seed,
                   statuses=("dimensional", "healthy", "dimensional", "complete"), status="complete")
    return tmp_path


def test_variant_verdicts_follow_the_interval(sweep):
    eff = analyze([sweep])["effects"].set_index(["variant", "metric"])
    assert eff.loc[("good", "linear.top1"), "verdict"] == "better"
    assert eff.loc[("good", "linear.top1"), "delta"] == pytest.approx(0.05)
    assert eff.loc[("noisy", "linear.top1"), "verdict"] == "within noise"
    assert eff.loc[("bad", "linear.top1"), "verdict"] == "worse"
    assert eff.loc[("good", "linear.top1"), "n_seeds"] == 3
    assert not any(m.startswith("collapse.") for _, m in eff.index)  # label-free readings are not "effects"


def test_collapse_table_reads_the_monitor(sweep):
    col = analyze([sweep])["collapse"]
    bad = col[col["method"] == "bad"].iloc[0]
    assert bad["monitor_onset_epoch"] == 3  # epoch 1's reading recovered; the collapse from epoch 3 stayed
    assert bad["monitor_final"] == bad["monitor_worst"] == bad["collapse.status"] == "complete"
    assert bad["monitor_worst_epoch"] == 4
    good = col[col["method"] == "good"].iloc[0]
    assert good["monitor_worst"] == "healthy" and pd.isna(good["monitor_onset_epoch"])


def test_agreement_is_spearman_over_runs(sweep):
    agree = analyze([sweep])["agreement"]
    row = agree[(agree["label_free"] == "collapse.rankme") & (agree["labelled"] == "linear.top1")].iloc[0]
    assert row["n_runs"] == 12
    tables = analyze([sweep])
    md = write(tables, sweep)
    assert "Variant effects" in md and (sweep / "analysis.json").exists()
    linear = [0.80, 0.81, 0.79, 0.85, 0.86, 0.84, 0.81, 0.79, 0.80, 0.30, 0.31, 0.32]
    rankme = [50, 51, 52, 60, 61, 62, 55, 56, 57, 1.5, 2.5, 3.5]
    assert row["spearman_rho"] == pytest.approx(stats.spearmanr(rankme, linear)[0])


def test_monitor_readings_before_batch_norm_warmup_are_skipped(tmp_path, records):
    _write_run(records, tmp_path, "m", 0, None, 0.8, 10.0)
    RunLayout(tmp_path).run("m", 0).metrics_log.write_text(
        json.dumps({"epoch": 1, "step": 10, "probe_status": "complete"}) + "\n"
        + json.dumps({"epoch": 2, "step": 60, "probe_status": "healthy"}) + "\n")
    row = analyze([tmp_path])["collapse"].iloc[0]
    assert row["monitor_worst"] == "healthy" and row["monitor_final"] == "healthy"


def test_a_cut_or_undecodable_log_line_is_skipped_not_fatal(tmp_path, records):
    """One reader of the training log: a cut line, bytes that are not UTF-8 and a non-object are skipped."""
    _write_run(records, tmp_path, "m", 0, None, 0.8, 10.0)
    RunLayout(tmp_path).run("m", 0).metrics_log.write_bytes(
        json.dumps({"epoch": 1, "step": 60, "probe_status": "dimensional"}).encode() + b"\n\xff\xfe garbage\n[1, 2]\n"
        + json.dumps({"epoch": 2, "step": 120, "probe_status": "complete"}).encode() + b"\n{\"epoch\": 3, \"st")
    row = analyze([tmp_path])["collapse"].iloc[0]
    assert (row["monitor_onset_epoch"], row["monitor_final"], row["monitor_worst"]) == (1, "complete", "complete")
