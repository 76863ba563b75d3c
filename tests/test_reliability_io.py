"""Atomic writes: temp file, fsync, rename; failures leave the old file and no temp; no write bypasses them."""

import ast
import errno
import os
import stat
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
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / ".knn.json.x1y2.tmp").write_text("half")
    (tmp_path / ".0123abcd.k3j4.tmp").mkdir()
    (tmp_path / ".0123abcd.k3j4.tmp" / "train_x.npy").write_text("half")
    keep = ["keep.tmp", ".sslbench.lock", "a/b/knn.json", ".hidden.tmp"]
    for name in keep:
        (tmp_path / name).write_text("keep")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == [".0123abcd.k3j4.tmp", ".knn.json.x1y2.tmp"]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(keep)


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
