"""One writer per output directory: a second run refuses naming the holder; a dead run's lock is taken over."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sslbench.cli import main
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


def test_second_run_refuses_naming_pid_and_host(holder, capsys):
    out, proc = holder
    rc = main(["run", "--preset", "smoke", "--methods", "vicreg_mod", "--references", "", "--protocols", "knn",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"in use by another sslbench run (pid {proc.pid} on host {socket.gethostname()}" in err
    assert "sslbench run --holder" in err and "use another --out" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing


def test_eval_refuses_a_locked_directory_too(holder, tmp_path, capsys):
    out, proc = holder
    rng = np.random.default_rng(0)
    f = tmp_path / "f.npz"
    np.savez(f, train_x=rng.normal(size=(40, 4)), train_y=np.arange(40) % 2, test_x=rng.normal(size=(10, 4)),
             test_y=np.arange(10) % 2)
    rc = main(["eval", "--features", str(f), "--protocols", "knn", "--out", str(out)])
    assert rc == 2 and f"pid {proc.pid}" in capsys.readouterr().err


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
