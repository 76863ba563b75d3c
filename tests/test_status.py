"""``sslbench status``: done, running (with its epoch), failed (with its reason) and pending runs, and an ETA."""

import json

import pytest

from sslbench.layout import RunLayout
from sslbench.lock import RUN_LOCK_NAME, RunLock
from sslbench.manifest import PlanEntry, record_plan
from sslbench.records import SweepInfo
from sslbench.status import estimate, states_of

KNN = {"knn": {"version": "1", "params": {"k": 20, "temperature": 0.07}}}


def _entry(name: str, epochs: int = 4) -> PlanEntry:
    return PlanEntry(name, 0, {"method": name, "seed": 0}, KNN, epochs, SweepInfo("s", {"loss.var_coeff": 1.0}))


@pytest.fixture
def out(tmp_path, records):
    """Six planned runs: two done (60 s of training for 4 epochs each), one running, one failed, two pending."""
    entries = [_entry(n) for n in ("done_a", "done_b", "running", "failed", "partial", "untouched")]
    record_plan(tmp_path, entries)
    records.write(tmp_path, [records.make(n, 0, "knn", {"top1": 0.5, "top1_k1": 0.5}) for n in ("done_a", "done_b")])
    layout = RunLayout(tmp_path)
    for name, epochs in (("running", 2), ("partial", 1)):
        paths = layout.run(name, 0)
        paths.dir.mkdir(parents=True)
        paths.metrics_log.write_text("".join(json.dumps({"epoch": e + 1, "step": e}) + "\n" for e in range(epochs)))
    failed = layout.run("failed", 0)
    failed.dir.mkdir(parents=True)
    (failed.failure).write_text(json.dumps({"message": "checkpoint ... is truncated or corrupt; delete it"}))
    lock = RunLock(layout.run("running", 0).dir, refuse_nested=False, name=RUN_LOCK_NAME, command="sslbench run --jobs 2")
    with lock:
        yield tmp_path


def test_each_run_is_in_its_state(out):
    states = {s.entry.method: s for s in states_of(RunLayout(out), [_entry(n) for n in
                                                                      ("done_a", "running", "failed", "partial", "untouched")])}
    assert {k: s.state for k, s in states.items()} == {"done_a": "done", "running": "running", "failed": "failed",
                                                       "partial": "pending", "untouched": "pending"}
    assert states["running"].epoch == 2 and "sslbench run --jobs 2" in states["running"].detail
    assert states["failed"].detail == "checkpoint ... is truncated or corrupt; delete it"
    assert states["partial"].epochs_left == 3 and states["untouched"].epochs_left == 4


def test_a_result_of_another_protocol_version_is_not_done(out):
    stale = PlanEntry("done_a", 0, {"method": "done_a", "seed": 0}, {"knn": {"version": "2", "params": KNN["knn"]["params"]}}, 4)
    assert states_of(RunLayout(out), [stale])[0].state == "pending"


def test_the_eta_is_measured_seconds_per_epoch_times_epochs_left(out):
    states = states_of(RunLayout(out), [_entry(n) for n in ("done_a", "done_b", "running", "failed", "partial", "untouched")])
    est = estimate(states)
    assert est.s_per_epoch == pytest.approx(60.0 / 4) and est.measured == 2  # the hand-made records trained 60 s
    left = (2 + 4 + 3 + 4) * 15.0  # running at epoch 2, failed from scratch, partial at 1, untouched
    assert est.left_s == pytest.approx(left) and est.wall_s(2) == pytest.approx(left / 2)


def test_the_report_lists_every_state_with_the_eta(out, cli):
    rc, text, err = cli("status", str(out))
    assert rc == 0, err
    lines = text.splitlines()
    assert lines[0] == f"{out}: 6 runs planned: 2 done, 1 running, 1 failed, 2 pending"
    assert lines[1].startswith("  running  running/seed0: epoch 2/4, pid ") and lines[1].endswith("[s: loss.var_coeff=1]")
    assert lines[2].startswith("  failed   failed/seed0: checkpoint ... is truncated or corrupt; delete it")
    assert [ln.split()[0] for ln in lines[1:7]] == ["running", "failed", "pending", "pending", "done", "done"]
    assert lines[-1] == ("ETA: 3.2 min of compute left (15.00s per epoch, 0.0s to score a run, measured on 2 run(s)); "
                         "3.2 min at 1 run(s) at once")


def test_a_directory_without_a_plan_is_one_line(tmp_path, cli):
    rc, _, err = cli("status", str(tmp_path))
    assert rc == 2 and "has no plan.json" in err and len(err.strip().splitlines()) == 1
