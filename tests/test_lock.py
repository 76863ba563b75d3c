"""One writer per output directory: a second run refuses naming the holder; a dead run's lock is taken over."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sslbench.errors import SslbenchError
from sslbench.lock import LOCK_NAME, RunLock

ROOT = Path(__file__).resolve().parents[1]
HOLDER = (
    "import sys; from sslbench.lock import RunLock; "
    "lock = RunLock(sys.argv[1], command='sslbench run --holder').acquire(); "
    "print('locked', flush=True); sys.stdin.read(); lock.release()"
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of ``tmp_path / 'out'`` until the test ends."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "locked"
    yield out, proc
    proc.stdin.close()
    proc.wait(timeout=30)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_run_refuses_naming_pid_and_host(holder, cli):
    out, proc = holder
    rc, _, err = cli("run", "--preset", "smoke", "--methods", "vicreg_mod", "--floors", "", "--protocols", "knn",
                     "--out", str(out))
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"in use by another sslbench run (pid {proc.pid} on host {socket.gethostname()}" in err
    assert "sslbench run --holder" in err and "use another --out" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing


def test_eval_refuses_a_locked_directory_too(holder, tmp_path, cli):
    out, proc = holder
    rng = np.random.default_rng(0)
    f = tmp_path / "f.npz"
    np.savez(f, train_x=rng.normal(size=(40, 4)), train_y=np.arange(40) % 2, test_x=rng.normal(size=(10, 4)),
             test_y=np.arange(10) % 2)
    rc, _, err = cli("eval", "--features", str(f), "--protocols", "knn", "--out", str(out))
    assert rc == 2 and f"pid {proc.pid}" in err


def test_lock_is_released_and_removed(tmp_path):
    with RunLock(tmp_path) as lock:
        info = json.loads((tmp_path / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["started"] > 0
        with pytest.raises(SslbenchError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()  # a second open file description conflicts, even in one process
    assert not lock.held and not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path) as again:
        assert again.taken_over is None


def test_stale_lock_of_a_dead_process_is_reported_and_taken_over(tmp_path):
    pid = _dead_pid()
    (tmp_path / LOCK_NAME).write_text(json.dumps(
        {"pid": pid, "host": socket.gethostname(), "started": 1.0e9, "command": "sslbench run --old"}))
    with RunLock(tmp_path) as lock:
        assert f"pid {pid} on host {socket.gethostname()}" in lock.taken_over
        assert "sslbench run --old" in lock.taken_over and "no longer running" in lock.taken_over
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_unwritable_out_directory_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SslbenchError, match="cannot create output directory .*pass another --out"):
        RunLock(blocker / "sub").acquire()


# ----------------------------------------------------------------------------- a planted lock path


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path, cli):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(victim)
    with pytest.raises(SslbenchError, match="it is a symbolic link, not a regular file"):
        RunLock(out).acquire()
    rng = np.random.default_rng(0)
    f = tmp_path / "f.npz"
    np.savez(f, train_x=rng.normal(size=(40, 4)), train_y=np.arange(40) % 2, test_x=rng.normal(size=(10, 4)),
             test_y=np.arange(10) % 2)
    rc, _, err = cli("eval", "--features", str(f), "--protocols", "knn", "--out", str(out))  # eval shares the lock
    assert rc == 2 and "symbolic link" in err and len(err.strip().splitlines()) == 1
    assert victim.read_text() == "precious\n" and (out / LOCK_NAME).is_symlink()


def test_a_dangling_symlink_creates_nothing_at_its_target(tmp_path):
    target = tmp_path / "elsewhere" / "created-by-the-lock"
    target.parent.mkdir()
    (tmp_path / LOCK_NAME).symlink_to(target)
    with pytest.raises(SslbenchError, match="symbolic link"):
        RunLock(tmp_path).acquire()
    assert not target.exists()


def test_a_hard_linked_stale_lock_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.json"
    victim.write_text('{"pid": 1, "note": "someone else\'s file"}')
    out = tmp_path / "out"
    out.mkdir()
    os.link(victim, out / LOCK_NAME)
    before = victim.read_text()
    with RunLock(out):
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert not os.path.samefile(victim, out / LOCK_NAME)  # a new file took the name
    assert victim.read_text() == before and victim.stat().st_nlink == 1


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_lock_path_that_is_no_regular_file_is_refused_without_hanging(tmp_path, kind):
    path = tmp_path / LOCK_NAME
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    code = f"from sslbench.lock import RunLock; RunLock({str(tmp_path)!r}).acquire()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode != 0 and f"it is a {kind}" in proc.stderr.replace("a FIFO", "a fifo")


# ----------------------------------------------------------------------------- nested output directories


def test_a_run_nested_with_a_live_run_is_refused(holder, tmp_path, cli):
    inner, proc = holder  # tmp_path / "out" is held by another process
    stray = inner / "m" / "seed0" / ".knn.json.abcd1234.sslbench.tmp"
    stray.parent.mkdir(parents=True)
    stray.write_text("being written by the live run")
    for out in (tmp_path, inner / "deeper"):
        with pytest.raises(SslbenchError, match=f"which another sslbench run holds \\(pid {proc.pid}"):
            RunLock(out).acquire()
    rc, _, err = cli("run", "--preset", "smoke", "--methods", "vicreg_mod", "--floors", "", "--protocols", "knn",
                     "--out", str(tmp_path))
    assert rc == 2 and "output directories must not nest" in err and len(err.strip().splitlines()) == 1
    assert stray.read_text() == "being written by the live run"  # the outer run swept nothing
    assert not (tmp_path / LOCK_NAME).exists() and not (inner / "deeper" / LOCK_NAME).exists()


def test_nested_lock_files_nobody_holds_are_no_obstacle(tmp_path):
    pid = _dead_pid()
    (tmp_path / "old" / "inner").mkdir(parents=True)
    (tmp_path / "old" / "inner" / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    with RunLock(tmp_path / "old"):
        pass


def test_live_locks_finds_held_ancestors_and_descendants(holder, tmp_path):
    from sslbench.lock import live_locks

    inner, proc = holder
    (inner / "x").mkdir()
    above, below = live_locks(inner / "x"), live_locks(tmp_path)
    assert [(h.path, h.relation, h.info["pid"]) for h in above] == [(inner / LOCK_NAME, "ancestor", proc.pid)]
    assert [(h.path, h.relation) for h in below] == [(inner / LOCK_NAME, "descendant")]
    assert live_locks(inner) == []  # its own lock is not a neighbour's
    with RunLock(inner / "x", refuse_nested=False):  # a per-run lock under a held --out can opt out
        pass
