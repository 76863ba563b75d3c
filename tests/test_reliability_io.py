"""Atomic writes: temp file, fsync, rename; failures leave the old file and no temp; no write bypasses them."""

import ast
import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import sslbench.io as sio
from sslbench.errors import SslbenchError
from sslbench.io import (
    OutputError,
    atomic_append_line,
    atomic_write_bytes,
    output_error,
    remove_stale_temp_files,
)

ROOT = Path(__file__).resolve().parents[1]
#: Writes allowed outside sslbench.io, each atomic in its own way or not an output of a run.
ALLOWED = {
    ("sslbench/features.py", "_write_entry"),  # a cache entry: temp directory, fsync'd files, one rename
    ("sslbench/data/idx.py", "write_idx"),  # writes idx data files for people and tests, not run outputs
}


def test_write_replaces_whole_file_fsyncs_and_keeps_the_umask(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(sio.os, "fsync", lambda fd: synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)) or real_fsync(fd))
    target = tmp_path / "sub" / "r.json"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in target.parent.iterdir()) == ["r.json"]
    assert synced == [False, True, False, True]  # the file, then its directory, each time
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_disk_full_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "knn.json"
    target.write_text("previous result")
    monkeypatch.setenv("SSLBENCH_FAULT", "enospc:knn.json")
    with pytest.raises(OutputError, match=r"cannot write .*knn.json: No space left on device; free some space"):
        atomic_write_bytes(target, b"x" * 10_000)
    assert target.read_text() == "previous result" and [p.name for p in tmp_path.iterdir()] == ["knn.json"]
    atomic_write_bytes(tmp_path / "other.json", b"{}")  # other files are not targeted
    monkeypatch.setenv("SSLBENCH_FAULT", "enospc")
    with pytest.raises(OutputError):
        atomic_write_bytes(tmp_path / "other.json", b"[]")
    assert (tmp_path / "other.json").read_bytes() == b"{}"


@pytest.mark.parametrize("code, hint", [(errno.EACCES, "make the output directory writable"),
                                        (errno.EROFS, "make the output directory writable"),
                                        (errno.EDQUOT, "free some space"),
                                        (errno.ENOTDIR, "a file stands where a directory is needed"),
                                        (errno.EIO, "check the output directory")])
def test_output_errors_say_what_to_do(code, hint):
    err = output_error("/x/y.json", OSError(code, os.strerror(code)))
    assert isinstance(err, SslbenchError) and hint in str(err) and "/x/y.json" in str(err)


def test_append_line_completes_a_cut_line_and_never_writes_half(tmp_path):
    log = tmp_path / "metrics.jsonl"
    atomic_append_line(log, '{"epoch": 1}')
    log.write_text(log.read_text() + '{"epoch": 2, "lo')  # what a kill mid-append left before
    atomic_append_line(log, '{"epoch": 2}\n')
    assert log.read_text().splitlines() == ['{"epoch": 1}', '{"epoch": 2, "lo', '{"epoch": 2}']


def test_stale_temp_files_and_dirs_are_removed_and_nothing_else(tmp_path):
    run = tmp_path / "vicreg" / "seed0"
    (run / "results").mkdir(parents=True)
    (run / "results" / ".knn.json.x1y2z3w4.sslbench.tmp").write_text("half")
    (run / ".checkpoint.pt.abcdefgh.sslbench.tmp").write_text("half")
    entry = tmp_path / "cache" / "features" / ".0123abcd.k3j4m5n6.sslbench.tmp"
    entry.mkdir(parents=True)
    (entry / "train_x.npy").write_text("half")
    (tmp_path / ".leaderboard.md.q1w2e3r4.sslbench.tmp").write_text("half")
    keep = ["keep.tmp", ".sslbench.lock", "vicreg/seed0/results/knn.json", ".hidden.tmp", ".my.notes.tmp",
            "vicreg/seed0/.my.notes.tmp",
            "vicreg/seed0/results/.knn.json.x1y2.tmp",  # an earlier version's unmarked temp name: left alone
            "notes/.draft.abcdefgh.sslbench.tmp",  # marked, but not where sslbench writes
            "vicreg/.log.abcdefgh.sslbench.tmp", "cache/.x.abcdefgh.sslbench.tmpx", "cache/.x.abc.sslbench.tmp"]
    for name in keep:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("keep")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".0123abcd.k3j4m5n6.sslbench.tmp", ".checkpoint.pt.abcdefgh.sslbench.tmp",
                                               ".knn.json.x1y2z3w4.sslbench.tmp", ".leaderboard.md.q1w2e3r4.sslbench.tmp"]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(keep)


def test_the_sweep_recognises_the_temp_files_sslbench_really_leaves(tmp_path):
    """A write killed before its rename (and a killed cache entry) leaves names the sweep matches."""
    target = tmp_path / "m" / "seed0" / "results" / "knn.json"
    code = ("import sys, tempfile; from pathlib import Path; from sslbench.io import atomic_write_bytes, TMP_SUFFIX; "
            "d = Path(sys.argv[2]) / 'cache' / 'features'; d.mkdir(parents=True); "
            "tempfile.mkdtemp(prefix='.entry.', suffix=TMP_SUFFIX, dir=d); "  # as features._write_entry names it
            "atomic_write_bytes(sys.argv[1], b'{}')")
    proc = subprocess.run([sys.executable, "-c", code, str(target), str(tmp_path)], env={**os.environ, "PYTHONPATH": str(ROOT),
                          "SSLBENCH_FAULT": "before_rename:knn.json"}, capture_output=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.rglob("*.tmp"))
    assert len(left) == 2 and all(sio.TEMP_NAME.fullmatch(n) for n in left)
    assert sorted(p.name for p in remove_stale_temp_files(tmp_path)) == left
    assert not list(tmp_path.rglob("*.tmp")) and not target.exists()


def test_every_temp_name_sslbench_makes_carries_the_marker():
    """No ``mkstemp``/``mkdtemp`` in the package without ``TMP_SUFFIX`` (else the sweep would never clear it)."""
    bad = []
    for path in sorted(ROOT.glob("sslbench/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("mkstemp", "mkdtemp"):
                suffix = next((k.value for k in node.keywords if k.arg == "suffix"), None)
                if not (isinstance(suffix, ast.Name) and suffix.id == "TMP_SUFFIX"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == []


def test_empty_out_is_refused(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".my.notes.tmp").write_text("keep")
    for argv in (["run", "--preset", "smoke", "--out", ""], ["eval", "--features", "f.npz", "--out", " "]):
        rc, _, err = cli(*argv)
        assert rc == 2 and "argument --out: must not be empty" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "c.toml").write_text("[run]\nout = ''\n")
    rc, _, err = cli("run", "--config", str(tmp_path / "c.toml"))
    assert rc == 2 and "c.toml [run]: 'out' must not be empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".my.notes.tmp", "c.toml"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("{garbage"), "config.json is not valid JSON"),
        (lambda p: p.write_text("[1, 2]"), "config.json holds a JSON list, not an object"),
        (lambda p: p.write_text("[" * 100_000), "config.json is not valid JSON"),
        (lambda p: p.write_bytes(b'{"a": "\xff"}'), "config.json is not UTF-8 text"),
        (lambda p: os.mkfifo(p), "config.json is not a regular file (a FIFO"),
        (lambda p: p.mkdir(), "config.json is a directory"),
        (lambda p: p.write_text(" " * 300_000), "config.json is 300000 bytes, more than the 200000-byte limit"),
        (lambda p: None, "config.json does not exist"),
    ],
)
def test_read_json_object_refuses_what_is_not_a_small_json_object(tmp_path, make, message):
    """What a run directory's config.json (or any JSON sslbench reads back) may be, each one line."""
    path = tmp_path / "config.json"
    make(path)
    with pytest.raises(SslbenchError) as e:
        sio.read_json_object(path, "run config", limit=200_000)
    assert message in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith(("run config ", "cannot"))


def test_read_small_file_refuses_a_device():
    with pytest.raises(SslbenchError, match="/dev/zero is not a regular file"):
        sio.read_small_file("/dev/zero", "input")


def _writes(path: Path):
    """``(function, line, what)`` of every call in ``path`` that writes a file without sslbench.io."""
    found = []

    def visit(node, fn):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else fn
            if isinstance(child, ast.Call):
                func = child.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                first = child.args[0] if child.args else None
                if isinstance(func, ast.Name) and name == "open":
                    mode = child.args[1] if len(child.args) > 1 else next(
                        (k.value for k in child.keywords if k.arg == "mode"), None)
                    if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+"):
                        found.append((inner, child.lineno, f"open(..., {mode.value!r})"))
                elif name in ("write_text", "write_bytes"):
                    found.append((inner, child.lineno, name))
                elif isinstance(func, ast.Attribute) and name in ("save", "savez", "savez_compressed", "savetxt",
                                                                  "savefig", "tofile"):
                    if not (isinstance(first, ast.Name) and first.id in ("buf", "f")):  # an in-memory buffer
                        found.append((inner, child.lineno, ast.unparse(func)))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), None)
    return found


def test_no_write_bypasses_sslbench_io():
    bad = []
    for path in sorted(ROOT.glob("sslbench/**/*.py")):
        rel = str(path.relative_to(ROOT))
        if rel == "sslbench/io.py":
            continue
        bad += [f"{rel}:{line} {what} in {fn}()" for fn, line, what in _writes(path) if (rel, fn) not in ALLOWED]
    assert bad == [], "write through sslbench.io (atomic_write_bytes/json/text, atomic_append_line, save_checkpoint)"
