"""End-to-end through the CLI: a smoke run, resume after SIGKILL, errors with exit code 2."""

import json
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, cli_session):
    out = tmp_path_factory.mktemp("smoke")
    proc = cli_session("run", "--preset", "smoke", "--out", str(out), subprocess_=True)
    assert proc.rc == 0, proc.err
    return out, proc


def test_smoke_run_writes_results_and_leaderboard(smoke_run):
    out, proc = smoke_run
    table = pd.read_csv(out / "leaderboard.csv")
    assert set(table["method"]) == {"simsiam", "vicreg_mod", "random_init", "raw_pixels"}
    for col in ("knn.top1", "knn.top1_ci95", "linear.top1", "collapse.rankme", "n_seeds"):
        assert col in table
    assert table["knn.top1"].between(0, 1).all() and table["linear.top1"].between(0, 1).all()
    assert "| method |" in proc.out
    doc = json.loads((out / "simsiam" / "seed0" / "results" / "knn.json").read_text())
    assert doc["schema_version"] == 1
    assert len(doc["dataset"]["fingerprint"]) == 64
    assert doc["protocol"]["params"]["k"] == 20 and doc["protocol"]["params"]["temperature"] == 0.07
    assert doc["config"]["train"]["epochs"] == 3 and doc["versions"]["torch"]
    lines = (out / "simsiam" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2, 3]
    assert {"loss", "std_l2", "images_per_s", "negative_cosine"} <= set(json.loads(lines[0]))


def test_rerun_is_a_no_op_and_leaderboard_rebuilds(smoke_run, cli):
    out, _ = smoke_run
    before = (out / "leaderboard.csv").read_text()
    proc = cli("run", "--preset", "smoke", "--out", str(out))
    assert proc.rc == 0 and "all results present" in proc.err
    assert (out / "leaderboard.csv").read_text() == before
    lb = cli("leaderboard", str(out))
    assert lb.rc == 0 and "vicreg_mod" in lb.out


def test_resume_after_sigkill_gives_identical_metrics(tmp_path, cli):
    args = ["run", "--preset", "smoke", "--methods", "vicreg_mod", "--floors", "", "--protocols", "knn,collapse"]
    full = cli(*args, "--out", str(tmp_path / "full"), subprocess_=True)
    assert full.rc == 0, full.err
    killed = cli(*args, "--out", str(tmp_path / "killed"), env={"SSLBENCH_FAULT": "after_epoch:2"}, subprocess_=True)
    assert killed.rc == -9
    assert not (tmp_path / "killed" / "vicreg_mod" / "seed0" / "results").exists()
    resumed = cli(*args, "--out", str(tmp_path / "killed"), subprocess_=True)
    assert resumed.rc == 0, resumed.err
    assert "resuming from epoch 2/3" in resumed.err
    run = Path("vicreg_mod/seed0")
    for proto in ("knn", "collapse"):
        a = json.loads((tmp_path / "full" / run / "results" / f"{proto}.json").read_text())
        b = json.loads((tmp_path / "killed" / run / "results" / f"{proto}.json").read_text())
        assert a["metrics"] == b["metrics"] and a["encoder_hash"] == b["encoder_hash"]
    epochs = [json.loads(ln)["epoch"] for ln in (tmp_path / "killed" / run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


@pytest.mark.parametrize(
    "args, match",
    [
        (["run", "--methods", "simsiam,vicreg_mdo", "--preset", "smoke"], "did you mean 'vicreg_mod'"),
        (["run", "--protocols", "knnn", "--preset", "smoke"], "did you mean 'knn'"),
        (["run", "--dataset", "fashion_mnist"], "did you mean 'fashion-mnist'"),
        (["ls", "method"], "did you mean 'methods'"),
    ],
)
def test_bad_names_exit_2_with_one_line(args, match, cli):
    proc = cli(*args, subprocess_=True)
    assert proc.rc == 2
    assert match in proc.err and "Traceback" not in proc.err
    assert len(proc.err.strip().splitlines()) == 1


def test_ls_lists_builtins(cli):
    proc = cli("ls")
    assert proc.rc == 0
    for name in ("simsiam", "vicreg_mod", "knn", "linear", "collapse", "fashion-mnist", "digits", "smoke", "quick"):
        assert name in proc.out
