"""Shared fixtures: the one way tests drive the CLI, hand-made result records, offline data."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

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
