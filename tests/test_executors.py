"""Executors and concurrency: the same cells at the same thread count give the same numbers sequentially,
with --jobs 2 and through submitit's local executor; workers and invocations share one --out without
training a cell twice; a killed worker, a full disk or an unwritable run directory costs only its run.

Every sweep here is the smoke preset with knn only (4 cells, 2 epochs of about 11 steps each), so a kill
at step 15 lands in the middle of epoch 2.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sslbench.manifest import read_manifest, read_plan

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
[run]
preset = "smoke"
epochs = 2
protocols = ["knn"]
floors = []
[sweeps.vv]
base = "vicreg"
grid = { "loss.var_coeff" = [0, 25], "heads.proj_dim" = [32, 64] }
"""
CELLS = [f"vv-var_coeff_{v}-proj_dim_{d}" for v in (0, 25) for d in (32, 64)]
TIMING_KEYS = {"epoch_s", "images_per_s", "data_share"}
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "sweep.toml"
    path.write_text(CONFIG)
    return path


def run(cli, config: Path, out: Path, *flags: str, env: dict | None = None, subprocess_: bool = False):
    return cli("run", "--config", str(config), "--out", str(out), "--threads-per-job", "1", *flags,
               env={**ENV, **(env or {})}, subprocess_=subprocess_)


@pytest.fixture(scope="module")
def reference(config, tmp_path_factory, cli_session) -> Path:
    out = tmp_path_factory.mktemp("sequential")
    res = run(cli_session, config, out)
    assert res.rc == 0, res.err
    return out


def assert_same_cells(ref: Path, out: Path, cells=CELLS, finished: bool = True) -> None:
    """Same metrics, encoders, training logs (timings aside) and weights, one log line per epoch, no temp
    file; when ``finished``, no lock or failure record left anywhere."""
    for cell in cells:
        a, b = (json.loads((d / cell / "seed0" / "results" / "knn.json").read_text()) for d in (ref, out))
        assert a["metrics"] == b["metrics"] and a["encoder_hash"] == b["encoder_hash"], cell
        assert a["config"] == b["config"] and a["train"] == b["train"] and b["sweep"]["name"] == "vv"
        rows = [[json.loads(ln) for ln in (d / cell / "seed0" / "metrics.jsonl").read_text().splitlines()]
                for d in (ref, out)]
        assert [r["epoch"] for r in rows[1]] == [1, 2], cell
        assert [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows[0]] == \
               [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows[1]], cell
        ca, cb = (torch.load(d / cell / "seed0" / "checkpoint.pt", weights_only=True)["model"] for d in (ref, out))
        assert all(torch.equal(ca[k], cb[k]) for k in ca), cell
    assert not list(out.rglob("*.sslbench.tmp"))
    if finished:  # a killed worker leaves its run's lock file (no process holds it: the next claim takes it over)
        assert not list(out.rglob(".run.lock")) and not (out / ".sslbench.lock").exists()
        assert not list(out.rglob("failure.json"))


@pytest.mark.slow  # the CI run checks --jobs 2 against the sequential run in the two tests below
def test_jobs_2_equals_the_sequential_run(reference, config, tmp_path, cli):
    out = tmp_path / "out"
    res = run(cli, config, out, "--jobs", "2")
    assert res.rc == 0, res.err
    assert_same_cells(reference, out)
    assert "4 runs on 2 worker processes, 1 torch thread(s) each" in res.err
    assert [ln.split()[0] for ln in res.err.splitlines() if ln.startswith("[")] == [f"[{k}/4]" for k in range(1, 5)]
    doc = json.loads((out / CELLS[0] / "seed0" / "results" / "knn.json").read_text())
    assert doc["run_config"]["threads"] == 1  # the worker's thread count, recorded
    (entry,) = read_manifest(out)["invocations"]
    assert entry["status"] == "finished" and entry["execution"] == {"executor": "local", "jobs": 2, "threads_per_job": 1}
    assert [e.label for e in read_plan(out)] == [f"{c}/seed0" for c in CELLS]


def test_a_killed_worker_costs_only_its_run_and_the_rerun_resumes_it(reference, config, tmp_path, cli):
    out = tmp_path / "out"
    victim = f"{CELLS[1]}/seed0"
    res = run(cli, config, out, "--jobs", "2", env={"SSLBENCH_FAULT": f"after_step:15@{victim}"}, subprocess_=True)
    assert res.rc == 1, res.err
    assert f"{victim}: FAILED after 0s: worker process" in res.err and "killed by signal 9 during this run" in res.err
    assert not (out / CELLS[1] / "seed0" / "results").exists()
    assert_same_cells(reference, out, CELLS[:1] + CELLS[2:], finished=False)  # the other worker and the replacement
    rc, status, _ = cli("status", str(out))
    assert rc == 0 and "3 done, 0 running, 1 failed, 0 pending" in status
    assert f"failed   {victim}: worker process" in status
    assert "leaked semaphore" not in res.err
    res = run(cli, config, out)  # any executor resumes it: here, this process
    assert res.rc == 0, res.err
    assert f"{victim}: resuming from epoch 1/2" in res.err and "took over the lock" in res.err
    assert [ln.split()[1] for ln in res.err.splitlines() if ln.startswith("[") and "skipped" in ln] == \
           [f"{c}/seed0:" for c in CELLS[:1] + CELLS[2:]]
    assert_same_cells(reference, out)


@pytest.mark.parametrize("fault", ["enospc", pytest.param("not_a_directory", marks=pytest.mark.slow)])
def test_an_output_error_in_one_worker_is_one_line_and_the_other_runs_stay_intact(reference, config, tmp_path, cli, fault):
    out = tmp_path / "out"
    victim = CELLS[2]
    env = {}
    if fault == "enospc":
        env = {"SSLBENCH_FAULT": f"enospc:knn.json@{victim}/seed0"}
    else:
        (out / victim).parent.mkdir(parents=True)
        (out / victim).write_text("a file where the run directory goes")
    res = run(cli, config, out, "--jobs", "2", env=env)
    assert res.rc == 2, res.err
    last = res.err.strip().splitlines()[-1]
    assert last.startswith("sslbench: error: cannot ") and "Traceback" not in res.err
    assert ("No space left on device" in last) if fault == "enospc" else ("Not a directory" in last)
    done = [c for c in CELLS if (out / c / "seed0" / "results" / "knn.json").exists()]
    assert victim not in done and CELLS[0] in done
    assert_same_cells(reference, out, done, finished=False)  # what was written is whole and right
    if fault == "enospc":
        failure = json.loads((out / victim / "seed0" / "failure.json").read_text())
        assert "No space left on device" in failure["message"]
    if fault == "not_a_directory":
        (out / victim).unlink()
    res = run(cli, config, out)
    assert res.rc == 0, res.err
    assert_same_cells(reference, out)


def test_two_invocations_and_two_workers_train_every_cell_exactly_once(reference, config, tmp_path, cli):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ENV}
    cmd = [sys.executable, "-m", "sslbench", "run", "--config", str(config), "--out", str(out), "--threads-per-job", "1"]
    procs = [subprocess.Popen(cmd + flags, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for flags in (["--jobs", "2"], [])]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results[0][1][-2000:] + results[1][1][-2000:]
    errs = results[0][1] + results[1][1]
    for cell in CELLS:
        for epoch in (1, 2):
            assert errs.count(f"{cell}/seed0 epoch {epoch}/2 ") == 1, cell  # trained once, by one process
    assert_same_cells(reference, out)
    history = read_manifest(out)["invocations"]
    assert sorted(h["status"] for h in history) == ["finished", "finished"] and len({h["id"] for h in history}) == 2
    assert sorted(h["execution"]["executor"] for h in history) == ["local", "sequential"]
    assert "runs on 2 worker processes, 1 torch thread(s) each" in results[0][1]
    assert [e.label for e in read_plan(out)] == [f"{c}/seed0" for c in CELLS]
    for cell in CELLS:  # whoever trained it used one thread, and said so
        assert json.loads((out / cell / "seed0" / "results" / "knn.json").read_text())["run_config"]["threads"] == 1


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_submitit_local_executor_kill_then_resubmit_equals_the_sequential_run(reference, config, tmp_path, cli):
    pytest.importorskip("submitit")
    out = tmp_path / "out"
    flags = ["--executor", "slurm", "--submitit-cluster", "local", "--runs-per-task", "2", "--cpus-per-task", "1", "--wait"]
    victim = f"{CELLS[1]}/seed0"  # the second run of the first task
    res = run(cli, config, out, *flags, env={"SSLBENCH_FAULT": f"after_step:15@{victim}"})
    assert res.rc == 1, res.err
    assert "submitted 4 runs as 2 task(s) of 2 run(s)" in res.err and "ended without finishing" in res.err
    assert (out / CELLS[0] / "seed0" / "results" / "knn.json").exists()
    assert not (out / CELLS[1] / "seed0" / "results").exists()
    flags[flags.index("--runs-per-task") + 1] = "4"  # repacked: one task of 4 runs, the same numbers
    res = run(cli, config, out, *flags)
    assert res.rc == 0, res.err
    assert_same_cells(reference, out)
    logs = "".join(p.read_text() for p in (out / ".submitit").glob("*_log.err"))
    assert f"{victim}: resuming from epoch 1/2" in logs
    tasks = [h for h in read_manifest(out)["invocations"] if h["execution"].get("task")]
    assert sorted(h["status"] for h in tasks) == ["finished", "finished", "killed"]  # marked by the resubmission


@pytest.mark.slow
def test_submitit_preemption_requeues_the_task_which_resumes(reference, config, tmp_path):
    """USR2 is submitit's preemption and time-limit signal: the task checkpoints, is requeued and resumes."""
    pytest.importorskip("submitit")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ENV}
    proc = subprocess.Popen([sys.executable, "-m", "sslbench", "run", "--config", str(config), "--out", str(out),
                             "--threads-per-job", "1", "--executor", "slurm", "--submitit-cluster", "local",
                             "--runs-per-task", "4", "--cpus-per-task", "1", "--wait"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    log = out / CELLS[0] / "seed0" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.02)
    tasks = [g for c in _children(proc.pid) for g in _children(c)]
    assert tasks, "no submitit task process found"
    for pid in tasks:
        os.kill(pid, signal.SIGUSR2)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    logs = "".join(p.read_text() for p in (out / ".submitit").glob("*_log.*"))
    assert "this job is preempted" in logs and "Requeued job" in logs
    assert_same_cells(reference, out)
    statuses = [h["status"] for h in read_manifest(out)["invocations"] if h["execution"].get("task")]
    assert statuses == ["interrupted", "finished"]


def test_sigterm_stops_the_command_and_the_manifest_says_so(tmp_path):
    from sslbench.config import RunConfig
    from sslbench.interrupts import StopRequested, graceful_stop
    from sslbench.manifest import Manifest

    with pytest.raises(StopRequested, match="terminated"):
        with graceful_stop(), Manifest(tmp_path, RunConfig(), versions={}):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
    (entry,) = read_manifest(tmp_path)["invocations"]
    assert (entry["status"], entry["message"]) == ("interrupted", "terminated (SIGTERM)")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_rerun_resumes(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "long.toml"
    config.write_text(CONFIG.replace("epochs = 2", "epochs = 40"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), **ENV}
    cmd = [sys.executable, "-m", "sslbench", "run", "--config", str(config), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    log = out / CELLS[0] / "seed0" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "sslbench: terminated (SIGTERM); rerun the same command to resume"
    entry = read_manifest(out)["invocations"][-1]
    assert entry["status"] == "interrupted" and entry["message"] == "terminated (SIGTERM)"
    assert not list(out.rglob(".run.lock")) and not (out / ".sslbench.lock").exists()  # released on the way out
    epochs = torch.load(out / CELLS[0] / "seed0" / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= epochs < 40  # the signal may land between an epoch's log line and its checkpoint
    rerun = subprocess.run(cmd + ["--dry-run"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
                           check=False)
    assert f"pending  {CELLS[0]}/seed0: epoch " in rerun.stdout  # started, to resume from its checkpoint
