"""Shared --out locks, per-run claims and the manifest's critical section: many processes on one --out."""

import json
import multiprocessing
import os

import pytest

from sslbench.errors import SslbenchError
from sslbench.lock import LOCK_NAME, RUN_LOCK_NAME, RunLock, holder_of, locked_file
from sslbench.manifest import Manifest, PlanEntry, read_manifest, read_plan, record_plan


def test_shared_holders_coexist_and_the_last_one_out_removes_the_file(tmp_path):
    first, second = RunLock(tmp_path, shared=True), RunLock(tmp_path, shared=True)
    assert first.try_acquire() and first.alone  # nobody else: it may clear stale temp files
    first.share()
    assert second.try_acquire() and not second.alone
    assert holder_of(tmp_path / LOCK_NAME)["pid"] == os.getpid()  # a shared holder counts as a holder
    with pytest.raises(SslbenchError, match="in use by another sslbench run"):
        RunLock(tmp_path).acquire()  # `sslbench eval` (exclusive) waits for every run
    first.release()
    assert (tmp_path / LOCK_NAME).exists()  # second still holds it
    second.release()
    assert not (tmp_path / LOCK_NAME).exists() and holder_of(tmp_path / LOCK_NAME) is None


def test_a_shared_run_is_refused_while_an_exclusive_holder_has_the_directory(tmp_path):
    with RunLock(tmp_path, command="sslbench eval --features f.npz"):
        lock = RunLock(tmp_path, shared=True)
        assert not lock.try_acquire() and lock.holder["command"] == "sslbench eval --features f.npz"


def test_a_run_claim_does_not_wait_and_names_the_holder(tmp_path):
    run_dir = tmp_path / "m" / "seed0"
    with RunLock(run_dir, refuse_nested=False, name=RUN_LOCK_NAME, command="worker 1"):
        other = RunLock(run_dir, refuse_nested=False, name=RUN_LOCK_NAME, tries=1)
        assert not other.try_acquire() and other.holder["command"] == "worker 1"
        assert not (tmp_path / LOCK_NAME).exists()  # a run lock is not an output directory's lock
    assert RunLock(run_dir, refuse_nested=False, name=RUN_LOCK_NAME).try_acquire()


def _bump(path: str, lock: str, times: int) -> None:
    from pathlib import Path

    for _ in range(times):
        with locked_file(Path(lock)):
            n = int(Path(path).read_text() or 0)
            Path(path).write_text(str(n + 1))


def test_the_critical_section_loses_no_update_between_processes(tmp_path):
    counter, lock = tmp_path / "n", tmp_path / ".lock"
    counter.write_text("0")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_bump, args=(str(counter), str(lock), 50)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4 and counter.read_text() == "200"


def _invocation(out: str, k: int) -> None:
    from sslbench.config import RunConfig

    with Manifest(out, RunConfig(seeds=[k]), versions={}, alone=False) as m:
        m.write()
    record_plan(out, [PlanEntry(f"m{k}", 0, {"seed": k}, {})])


def test_concurrent_invocations_each_keep_their_manifest_entry_and_plan(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_invocation, args=(str(tmp_path), k)) for k in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    history = read_manifest(tmp_path)["invocations"]
    assert sorted(h["seeds"][0] for h in history) == list(range(6)) and {h["status"] for h in history} == {"finished"}
    assert sorted(e.method for e in read_plan(tmp_path)) == [f"m{k}" for k in range(6)]


def test_a_running_entry_is_marked_killed_only_when_its_process_is_gone(tmp_path):
    from sslbench.config import RunConfig

    dead = multiprocessing.get_context("fork").Process(target=lambda: None)
    dead.start()
    dead.join()
    doc = {"schema_version": 1, "invocations": [
        {"id": "a", "status": "running", "pid": dead.pid, "host": os.uname().nodename},
        {"id": "b", "status": "running", "pid": os.getpid(), "host": os.uname().nodename},
        {"id": "c", "status": "running", "pid": 1, "host": "another-node"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    Manifest(tmp_path, RunConfig(), versions={}).start(alone=False)
    statuses = [h["status"] for h in read_manifest(tmp_path)["invocations"]]
    assert statuses == ["killed", "running", "running", "running"]  # a live pid, another host: left alone
    Manifest(tmp_path, RunConfig(), versions={}).start(alone=True)  # alone on --out: every running one is dead
    assert [h["status"] for h in read_manifest(tmp_path)["invocations"]] == ["killed"] * 4 + ["running"]


def test_a_second_run_waits_while_the_first_is_alone_for_a_moment(tmp_path):
    import threading
    import time

    first = RunLock(tmp_path, shared=True)
    assert first.try_acquire() and first.alone  # exclusive while it clears stale temp files
    threading.Timer(0.5, first.share).start()
    t0 = time.monotonic()
    second = RunLock(tmp_path, shared=True)
    assert second.try_acquire() and not second.alone and time.monotonic() - t0 >= 0.4
    first.release()
    second.release()
