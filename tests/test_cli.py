"""End-to-end through the CLI: a smoke run, resume after SIGKILL, errors with exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def sslbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "sslbench", *args], capture_output=True, text=True, env=e, cwd=ROOT)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    proc = sslbench("run", "--preset", "smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_smoke_run_writes_results_and_leaderboard(smoke_run):
    out, proc = smoke_run
    table = pd.read_csv(out / "leaderboard.csv")
    assert set(table["method"]) == {"simsiam", "vicreg_mod", "random_init", "raw_pixels"}
    for col in ("knn.top1", "knn.top1_ci95", "linear.top1", "collapse.rankme", "n_seeds"):
        assert col in table
    assert table["knn.top1"].between(0, 1).all() and table["linear.top1"].between(0, 1).all()
    assert "| method |" in proc.stdout
    doc = json.loads((out / "simsiam" / "seed0" / "results" / "knn.json").read_text())
    assert doc["schema_version"] == 1
    assert len(doc["dataset"]["fingerprint"]) == 64
    assert doc["protocol"]["params"]["k"] == 20 and doc["protocol"]["params"]["temperature"] == 0.07
    assert doc["config"]["train"]["epochs"] == 3 and doc["versions"]["torch"]
    lines = (out / "simsiam" / "seed0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2, 3]
    assert {"loss", "std_l2", "images_per_s", "negative_cosine"} <= set(json.loads(lines[0]))


def test_rerun_is_a_no_op_and_leaderboard_rebuilds(smoke_run):
    out, _ = smoke_run
    before = (out / "leaderboard.csv").read_text()
    proc = sslbench("run", "--preset", "smoke", "--out", str(out))
    assert proc.returncode == 0 and "all results present" in proc.stderr
    assert (out / "leaderboard.csv").read_text() == before
    lb = sslbench("leaderboard", str(out))
    assert lb.returncode == 0 and "vicreg_mod" in lb.stdout


def test_resume_after_sigkill_gives_identical_metrics(tmp_path):
    args = ["run", "--preset", "smoke", "--methods", "vicreg_mod", "--references", "", "--protocols", "knn,collapse"]
    full = sslbench(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    killed = sslbench(*args, "--out", str(tmp_path / "killed"), env={"SSLBENCH_FAULT": "after_epoch:2"})
    assert killed.returncode == -9
    assert not (tmp_path / "killed" / "vicreg_mod" / "seed0" / "results").exists()
    resumed = sslbench(*args, "--out", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from epoch 2/3" in resumed.stderr
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
def test_bad_names_exit_2_with_one_line(args, match):
    proc = sslbench(*args)
    assert proc.returncode == 2
    assert match in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_ls_lists_builtins():
    proc = sslbench("ls")
    assert proc.returncode == 0
    for name in ("simsiam", "vicreg_mod", "knn", "linear", "collapse", "fashion-mnist", "digits", "smoke", "quick"):
        assert name in proc.stdout
