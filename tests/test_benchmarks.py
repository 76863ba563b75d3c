"""Every benchmark script runs at ``--small`` sizes and passes its checks (slow: run with ``-m slow``).

The scripts in ``benchmarks/`` are not imported by the package, so an API change
breaks them silently; this runs each one as ``benchmarks/run_all.sh --small``
does, in a fresh process with a private cache, and asserts exit status 0 (a
failed correctness check exits 1; a missed performance target does not).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
#: Flags ``run_all.sh`` adds for one script (bench_memory also measures a smoke run).
EXTRA = {"bench_memory": ["--quick-run", "vicreg"]}

pytestmark = pytest.mark.slow


def test_every_benchmark_is_found():
    assert {"bench_knn", "bench_linear", "bench_suite"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_runs_small(name, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "SSLBENCH_BENCH_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--small", *EXTRA.get(name, []),
           "--json", str(tmp_path / f"{name}.json")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}"
    assert (tmp_path / f"{name}.json").exists()
