"""Cold start of the command line: ``sslbench --help``, ``sslbench ls`` and a misspelt ``run``.

Each command runs as a new ``python -m sslbench`` process (nothing cached in
memory, the page cache warm after one untimed run), ``--repeats`` times; wall
and CPU seconds (user + sys of the child) are reported as median and range.
With ``--baseline DIR`` (another checkout, e.g. ``git worktree add /tmp/base
HEAD~5``) the same commands run from there too, in turn A B A B, and the ratio
baseline / this checkout is the median of the per-pair ratios, so a machine
whose speed drifts during the run still compares like with like.

Check: none of the three commands imports torch, numpy, pandas, scipy, faiss,
scikit-learn, ``baselines`` or ``protocols`` (read from ``python -X importtime``),
and the misspelt run still exits 2 with a "did you mean".

    python benchmarks/bench_startup.py                       # about 10-20 s
    python benchmarks/bench_startup.py --baseline /tmp/base  # and the ratio against an older checkout
    python benchmarks/bench_startup.py --small               # one run each
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

#: Modules a cheap command must not import (top-level names).
HEAVY = ("torch", "numpy", "pandas", "scipy", "faiss", "sklearn", "matplotlib", "baselines", "protocols")


def commands(out: str) -> dict[str, list[str]]:
    """The timed commands (arguments of ``python -m sslbench``)."""
    return {
        "--help": ["--help"],
        "ls": ["ls"],
        "run (misspelt method)": ["run", "--preset", "smoke", "--methods", "simsaim", "--epochs", "2", "--out", out],
    }


def run_once(root: Path, args: list[str], importtime: bool = False) -> tuple[float, float, subprocess.CompletedProcess]:
    """One cold ``python -m sslbench ARGS`` from checkout ``root``: (wall s, child CPU s, the process)."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    flags = ["-X", "importtime"] if importtime else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *flags, "-m", "sslbench", *args], env=env, cwd=root, capture_output=True,
                          text=True, timeout=300, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def imported(stderr: str) -> set[str]:
    """Top-level module names in ``python -X importtime`` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def main() -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, default=None, help="another sslbench checkout to compare against")
    args = p.parse_args()
    repeats = args.repeats or (1 if args.small else 7)
    rep = C.Report("startup", "cold start of sslbench --help, ls and a misspelt run", args.small)
    rep.params = {"repeats": repeats, "baseline": str(args.baseline) if args.baseline else None, "python": sys.executable}
    C.header(rep, args, 1)
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(str(Path(tmp) / "out"))
        for name, argv in cmds.items():
            _, _, proc = run_once(C.ROOT, argv, importtime=True)
            heavy = sorted(imported(proc.stderr) & set(HEAVY))
            rep.check(f"{name}: imports none of {', '.join(HEAVY)}", not heavy, f"imported: {heavy}" if heavy else "")
            if argv[0] == "run":
                rep.check(f"{name}: exits 2 with a 'did you mean'", proc.returncode == 2 and "did you mean" in proc.stderr,
                          f"exit {proc.returncode}")
        for name, argv in cmds.items():
            roots = [C.ROOT] + ([args.baseline] if args.baseline else [])
            for root in roots:  # one untimed run each: the page cache, .pyc files
                run_once(root, argv)
            walls: dict[Path, list[float]] = {r: [] for r in roots}
            cpus: dict[Path, list[float]] = {r: [] for r in roots}
            for _ in range(repeats):
                for root in roots:
                    wall, cpu, _ = run_once(root, argv)
                    walls[root].append(wall)
                    cpus[root].append(cpu)
            rep.row(f"{name} (this checkout)", wall=spread(walls[C.ROOT]), cpu=spread(cpus[C.ROOT]))
            if args.baseline:
                rep.row(f"{name} (baseline)", wall=spread(walls[args.baseline]), cpu=spread(cpus[args.baseline]))
                pairs = [b / a for a, b in zip(walls[C.ROOT], walls[args.baseline], strict=True)]
                rep.ratio(f"{name}: baseline / this checkout, wall", statistics.median(pairs),
                          f"(per-pair min {min(pairs):.3g}, max {max(pairs):.3g})")
    rep.note(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return rep.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
