"""sslbench analyze: variant effects with Welch intervals, the collapse table from the training
monitor, and Spearman agreement, on hand-built result files with known answers."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sslbench.analysis import analyze, write
from sslbench.stats import welch_ci95


def _result(method: str, seed: int, base: str | None, linear: float, rankme: float, status: str = "healthy") -> dict:
    common = {"schema_version": 1, "method": method, "base": base, "encoder_kind": "trained", "seed": seed,
              "train": {"status": "finished"}, "dataset": {"fingerprint": "f"}}
    return [
        {**common, "protocol": {"name": "linear", "version": "1", "params": {}, "main_metric": "top1",
                                "directions": {"top1": "higher"}}, "metrics": {"top1": linear}},
        {**common, "protocol": {"name": "collapse", "version": "2", "params": {}, "main_metric": "rankme",
                                "directions": {"rankme": "higher"}}, "metrics": {"rankme": rankme, "status": status}},
    ]


def _write_run(out, method, seed, base, linear, rankme, statuses=("healthy",), status="healthy"):
    rdir = out / method / f"seed{seed}"
    (rdir / "results").mkdir(parents=True)
    for doc in _result(method, seed, base, linear, rankme, status):
        (rdir / "results" / f"{doc['protocol']['name']}.json").write_text(json.dumps(doc))
    (rdir / "metrics.jsonl").write_text(
        "".join(json.dumps({"epoch": i + 1, "step": 100 * (i + 1), "probe_status": s}) + "\n"
                for i, s in enumerate(statuses))
    )


@pytest.fixture
def sweep(tmp_path):
    for seed, (b, good, noisy) in enumerate([(0.80, 0.85, 0.81), (0.81, 0.86, 0.79), (0.79, 0.84, 0.80)]):
        _write_run(tmp_path, "base", seed, None, b, 50.0 + seed)
        _write_run(tmp_path, "good", seed, "base", good, 60.0 + seed)
        _write_run(tmp_path, "noisy", seed, "base", noisy, 55.0 + seed)
        _write_run(tmp_path, "bad", seed, "base", 0.3 + 0.01 * seed, 1.5 + seed,
                   statuses=("dimensional", "healthy", "dimensional", "complete"), status="complete")
    return tmp_path


def test_welch_interval_matches_scipy():
    a, b = np.array([1.0, 2.0, 4.0]), np.array([0.5, 0.7, 0.6, 0.9])
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert welch_ci95(a, b) == pytest.approx((ci.high - ci.low) / 2)
    assert math.isnan(welch_ci95(a[:1], b))


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
    assert bad["monitor_final"] == bad["monitor_worst"] == bad["protocol_status"] == "complete"
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


def test_monitor_readings_before_batch_norm_warmup_are_skipped(tmp_path):
    _write_run(tmp_path, "m", 0, None, 0.8, 10.0)
    (tmp_path / "m" / "seed0" / "metrics.jsonl").write_text(
        json.dumps({"epoch": 1, "step": 10, "probe_status": "complete"}) + "\n"
        + json.dumps({"epoch": 2, "step": 60, "probe_status": "healthy"}) + "\n")
    row = analyze([tmp_path])["collapse"].iloc[0]
    assert row["monitor_worst"] == "healthy" and row["monitor_final"] == "healthy"
