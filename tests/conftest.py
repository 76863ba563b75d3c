"""Shared fixtures: the one way tests drive the CLI, hand-made result records, offline data."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from sslbench.layout import RunLayout
from sslbench.records import DatasetInfo, MetricMeta, ProtocolInfo, ResultRecord, RunHeader, Timings, TrainOutcome
from sslbench.store import write_record

os.environ.setdefault("SSLBENCH_NO_DOWNLOAD", "1")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def golden_pair():
    """A hand-checkable pair of (4, 3) embeddings, float64 (golden values: docs/reference/losses.md)."""
    import torch

    za = torch.tensor([[1, 2, 3], [4, 0, -1], [0, 1, 0], [2, -2, 1]], dtype=torch.float64)
    zb = torch.tensor([[0, 1, 2], [3, 1, -1], [1, 0, 1], [2, -1, 0]], dtype=torch.float64)
    return za, zb


# ----------------------------------------------------------------------------- the CLI


class CliResult(NamedTuple):
    """What one ``sslbench`` invocation gave: exit code, stdout and stderr (``rc, out, err = ...``)."""

    rc: int
    out: str
    err: str


def run_sslbench(*args: str, env: dict[str, str] | None = None, subprocess_: bool = False,
                 timeout: float = 600, cwd: Path | None = None) -> CliResult:
    """Run ``sslbench ARGS``: in this process (default), or as ``python -m sslbench`` in a new one.

    A new process is for what must not share this one: a SIGKILL fault point, entry
    points read once per process, the cold start. ``env`` applies to either.
    """
    if subprocess_:
        e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        proc = subprocess.run([sys.executable, "-m", "sslbench", *args], capture_output=True, text=True, env=e,
                              cwd=cwd or ROOT, timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)
    from sslbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(list(args))
            except SystemExit as e:  # argparse usage errors
                rc = int(e.code or 0)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return CliResult(rc, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    """``cli(*args, env=None, subprocess_=False)`` -> :class:`CliResult` (see :func:`run_sslbench`)."""
    return run_sslbench


@pytest.fixture(scope="session")
def cli_session():
    """:func:`run_sslbench` for module- and session-scoped fixtures."""
    return run_sslbench


# ----------------------------------------------------------------------------- result records

#: Metric metadata of the protocols the hand-made records use.
PROTOCOLS: dict[str, tuple[tuple[str, ...], MetricMeta, dict[str, Any]]] = {
    "knn": (("labels",), MetricMeta({"top1": "higher", "top1_k1": "higher"}, "top1"), {"k": 20, "temperature": 0.07}),
    "linear": (("labels",), MetricMeta({"top1": "higher"}, "top1"), {"val_fraction": 0.2}),
    "collapse": ((), MetricMeta({"rankme": "higher", "z_rankme": "higher", "status_code": "lower"}, "rankme",
                                labels={"status": ("healthy", "dimensional", "complete")},
                                tolerances={"rankme": "5%", "z_rankme": "5%"}, readings=("rankme", "z_rankme"),
                                plots={"spectrum_backbone": "spectrum", "spectrum_projector": "spectrum"}),
                 {"max_samples": 10000}),
    "err": (("labels",), MetricMeta({"error": "lower"}, "error"), {}),
}
FLOORS = ("random_init", "raw_pixels")
BASE_SCORES = {
    "vicreg": {0: {"knn": 0.80, "linear": 0.85, "rankme": 40.0}, 1: {"knn": 0.82, "linear": 0.86, "rankme": 42.0}},
    "simsiam": {0: {"knn": 0.78, "linear": 0.84, "rankme": 30.0}, 1: {"knn": 0.79, "linear": 0.83, "rankme": 31.0}},
    "random_init": {0: {"knn": 0.70, "linear": 0.80, "rankme": 10.0}},
    "raw_pixels": {0: {"knn": 0.90, "linear": 0.88, "rankme": 35.0}},
}


class RecordFactory:
    """Hand-made result records with known values, and run directories holding them."""

    base_scores = BASE_SCORES

    @staticmethod
    def make(method: str, seed: int, protocol: str, metrics: dict[str, Any], *, status: str | None = None,
             version: str = "1", fingerprint: str = "f" * 64, base: str | None = None) -> ResultRecord:
        """A record as ``sslbench run`` writes it."""
        requires, meta, params = PROTOCOLS[protocol]
        kind = method if method in FLOORS else "trained"
        run = RunHeader(method, base, kind, {}, seed, {"method": method, "seed": seed}, {},
                        DatasetInfo("digits", fingerprint), TrainOutcome(status or ("not_trained" if kind != "trained"
                                                                                    else "finished")), {})
        return ResultRecord(run, ProtocolInfo(protocol, version, params, requires, meta), dict(metrics), None,
                            Timings(train_s=60.0))

    def sweep(self, scores: dict[str, dict[int, dict[str, float]]], collapse_status: dict[str, str] | None = None,
              train_status: dict[str, str] | None = None) -> list[ResultRecord]:
        """Records of knn/linear/collapse for ``{method: {seed: {"knn": top1, "linear": top1, "rankme": r}}}``."""
        out = []
        for m, by_seed in scores.items():
            for seed, s in by_seed.items():
                status = (train_status or {}).get(m)
                out.append(self.make(m, seed, "knn", {"top1": s["knn"], "top1_k1": s["knn"] - 0.01}, status=status))
                out.append(self.make(m, seed, "linear", {"top1": s["linear"]}, status=status))
                label = (collapse_status or {}).get(m, "n/a" if m in FLOORS else "healthy")
                col: dict[str, Any] = {"rankme": s["rankme"], "status": label}
                if m not in FLOORS:
                    code = {"healthy": 0.0, "dimensional": 1.0, "complete": 2.0}[label]
                    col.update(z_rankme=2 * s["rankme"], status_code=code)
                out.append(self.make(m, seed, "collapse", col, status=status))
        return out

    @staticmethod
    def write(out: Path, records: list[ResultRecord]) -> Path:
        """Lay records out as a run directory (``<out>/<method>/seed<k>/results/<protocol>.json``)."""
        layout = RunLayout(out)
        for r in records:
            write_record(layout.run(r.run.method, r.run.seed), r, {})
        return out


@pytest.fixture
def records() -> RecordFactory:
    """A :class:`RecordFactory` (``records.make``, ``records.sweep``, ``records.write``)."""
    factory = RecordFactory()
    factory.base_scores = copy.deepcopy(BASE_SCORES)
    return factory


# ----------------------------------------------------------------------------- fuzzing (docs/fuzzing.md)

#: Examples of one unit: a property test asks for a multiple of ``settings.default.max_examples``.
#: ``ci`` (the default) keeps the fuzz suite near a minute of a CI run; ``SSLBENCH_FUZZ=long`` is
#: the same suite five times over (a few minutes), for a run by hand (docs/fuzzing.md).
# ci draws the same examples on every run (a red CI is a real regression, reproducible); long draws
# new ones each time, to find what ci does not.
settings.register_profile("ci", max_examples=10, deadline=None, database=None, print_blob=True, derandomize=True,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("long", parent=settings.get_profile("ci"), max_examples=50, derandomize=False)
settings.load_profile(os.environ.get("SSLBENCH_FUZZ", "ci"))


class Tree(NamedTuple):
    """What a directory tree holds: relative path -> (kind, mode, mtime_ns, sha256) of each entry.

    Directories are kept by kind alone: creating ``--out`` rightly changes its parent's mtime.
    """

    entries: dict[str, tuple[str, int, int, str]]

    @classmethod
    def of(cls, root: Path) -> Tree:
        entries = {}
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                p = Path(dirpath) / name
                st = os.lstat(p)
                rel = str(p.relative_to(root))
                if p.is_symlink():
                    entries[rel] = ("link", 0, 0, os.readlink(p))
                elif p.is_dir():
                    entries[rel] = ("dir", 0, 0, "")
                else:
                    entries[rel] = ("file", st.st_mode, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        return cls(entries)

    def changes(self, later: Tree) -> list[str]:
        """The paths created, changed or deleted between this tree and ``later``."""
        return sorted(k for k in {*self.entries, *later.entries} if self.entries.get(k) != later.entries.get(k))


class Sandbox:
    """A fresh directory per generated example, the working directory while the CLI runs.

    Args:
        root: The directory (created).
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True)
        self.root = root

    def call(self, *argv: str, out: str | None = None, keep: tuple[Path, ...] = (), malformed: bool = False,
             env: dict[str, str] | None = None) -> CliResult:
        """Run ``sslbench ARGV`` here and assert what every input surface owes its user.

        (1) exit 0, 1 or 2 and no traceback; (2) ``malformed`` input is exit 2, or exit 1 with a
        per-run ``ERROR <run>: ...`` line; (3) nothing outside ``out`` (a path under the sandbox)
        is created, changed or deleted; (4) no file of ``keep`` (files under ``out`` that sslbench
        did not write) is touched.
        """
        before = Tree.of(self.root)
        cwd = os.getcwd()
        os.chdir(self.root)
        try:
            res = run_sslbench(*argv, env=env)
        finally:
            os.chdir(cwd)
        after = Tree.of(self.root)
        assert res.rc in (0, 1, 2), res
        assert "Traceback" not in res.err, res.err
        if malformed:
            assert res.rc == 2 or (res.rc == 1 and any(ln.startswith("ERROR ") for ln in res.err.splitlines())), res
        if res.rc == 2:
            lines = res.err.strip().splitlines()
            assert lines and lines[-1].startswith("sslbench: error: "), res.err
        inside = str(Path(out)) if out else None
        outside = [c for c in before.changes(after) if inside is None or not (c == inside or c.startswith(inside + os.sep))]
        assert outside == [], f"touched outside --out: {outside}"
        kept = [str(p.relative_to(self.root)) for p in keep]
        assert [k for k in kept if before.entries.get(k) != after.entries.get(k)] == [], "touched a file of the user's"
        return res


@pytest.fixture
def sandboxes(tmp_path):
    """``sandboxes()`` -> a fresh :class:`Sandbox` under ``tmp_path`` (one per hypothesis example)."""
    count = iter(range(1_000_000))
    return lambda: Sandbox(tmp_path / f"box{next(count)}")


# Damaged JSON documents, for every fuzz test of a JSON input (tests/test_fuzz_*.py import them).

big_numbers = st.sampled_from([10**400, -(10**400), 2**63, 2**64, -(2**63) - 1, 1e308, float("nan"),
                               float("inf"), float("-inf"), -0.0])
scalars = st.none() | st.booleans() | st.integers() | big_numbers | st.floats() | st.text(max_size=8) | st.sampled_from(
    ["higher", "lower", "n/a", "healthy", "complete", "finished", "diverged", "knn", "top1", "vicreg", "%", "5%", ""])
#: Values of the wrong type or size for most fields, drawn as often as all other values together.
nasty = st.sampled_from([10**400, -1, 5, 2.5, float("inf"), "abc", "nan", "abc%", [1, "a"], ["x"], {}, [], None,
                         {"a": 5}, {"a": "b"}, True])
json_values = nasty | st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                                 max_size=3), max_leaves=6)


def _paths(doc, prefix=()):
    """Every key path of a JSON document, outermost first."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


#: A stand-in replaced by JSON nested 100000 deep once the document is text (json.dumps would recurse).
_TOO_DEEP = "<nested past the parser's depth>"


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def damaged(draw, doc: dict, required: dict[str, type | None]) -> tuple[bytes, bool]:
    """``(bytes of the file, whether it breaks the schema)``: ``doc`` with up to three edits, or junk.

    An edit replaces a value (often with one of the wrong type or size), deletes it, or nests it
    deep; it breaks the schema when it leaves a top-level key of ``required`` missing or of another
    type (``None``: other than 1, a schema version).
    """
    if draw(st.integers(0, 9)) == 0:
        whole = json.dumps(doc).encode()
        junk = draw(st.sampled_from([b"", b"{", b"[1, 2]", b'"x"', b"\xff\xfe{}", b"null", _deep(100_000).encode(),
                                     whole[: draw(st.integers(1, len(whole) - 1))]]) | st.binary(max_size=40))
        return junk, True
    doc = json.loads(json.dumps(doc))
    breaks = False
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        *parent_path, key = path
        parent = doc
        for k in parent_path:
            parent = parent[k]
        op = draw(st.sampled_from(["replace", "delete", "deep"]))
        if op == "delete":
            del parent[key]
        else:
            # a copy: a later edit inside it must not change the strategy's own constant
            parent[key] = copy.deepcopy(draw(json_values)) if op == "replace" else json.loads(_deep(draw(st.integers(1, 50))))
        if op == "deep" and draw(st.booleans()):  # past the parser's depth: written as text below
            parent[key] = _TOO_DEEP
        if not parent_path and key in required:
            typ, v = required[key], parent.get(key, KeyError)
            breaks |= v is KeyError or (v != 1 if typ is None else isinstance(v, bool) or not isinstance(v, typ))
    text = json.dumps(doc)
    if json.dumps(_TOO_DEEP) in text:  # no reader gets past it
        text, breaks = text.replace(json.dumps(_TOO_DEEP), _deep(100_000)), True
    return text.encode(), breaks
