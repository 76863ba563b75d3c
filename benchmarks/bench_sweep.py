"""(sweeps) A 12-cell sweep of short runs at --jobs 1 and --jobs 2: runs per hour, in one script.

The sweep is VICReg's ``loss.var_coeff`` (0, 1, 5, 25) x ``heads.proj_dim`` (32,
64, 128) on the smoke preset's data (digits, ConvNet), kNN only, one seed. Each
contender is one whole ``sslbench run`` command in a fresh process, timed from
start to exit (interpreter start-up, data loading, workers and all), into its
own output directory:

- ``--jobs 1``: one process with every core's torch threads (``--threads-per-job``
  = cores);
- ``--jobs 2``: two worker processes with cores/2 threads each (the default);
- ``--jobs 1 --threads-per-job cores/2`` (with ``--equality``): the sequential
  run at the workers' thread count, whose results must equal ``--jobs 2``'s
  exactly (the same cells at the same per-run thread count give identical
  metrics and encoders).

Runs per hour = 12 / wall seconds x 3600; the target is ``--jobs 2`` at >= 1.2x
``--jobs 1``. Contenders alternate over ``--repeats``; the best of each counts.

    python benchmarks/bench_sweep.py                 # epochs 8, width 32: a few minutes on 2 cores
    python benchmarks/bench_sweep.py --small         # seconds per run (checks the script)
    python benchmarks/bench_sweep.py --equality      # also the sequential run at the workers' thread count
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import _common as C

CELLS = [f"bench-var_coeff_{v}-proj_dim_{d}" for v in (0, 1, 5, 25) for d in (32, 64, 128)]


def _config(path: Path, epochs: int, width: int) -> Path:
    path.write_text(f"""
[run]
preset = "smoke"
epochs = {epochs}
width = {width}
protocols = ["knn"]
floors = []
[sweeps.bench]
base = "vicreg"
grid = {{ "loss.var_coeff" = [0, 1, 5, 25], "heads.proj_dim" = [32, 64, 128] }}
""")
    return path


def _sweep(config: Path, out: Path, jobs: int, threads: int) -> float:
    """Wall seconds of one ``sslbench run`` of the sweep into a fresh ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(C.ROOT)}
    env.pop("OMP_NUM_THREADS", None)  # the command sets each run's threads itself
    cmd = [sys.executable, "-m", "sslbench", "run", "--config", str(config), "--out", str(out),
           "--jobs", str(jobs), "--threads-per-job", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=C.ROOT, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def _epochs(run: Path) -> list[int]:
    return [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()]


def _results(out: Path) -> dict[str, dict]:
    return {c: json.loads((out / c / "seed0" / "results" / "knn.json").read_text()) for c in CELLS
            if (out / c / "seed0" / "results" / "knn.json").exists()}


def main() -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 8, small 1)")
    p.add_argument("--width", type=int, default=None, help="ConvNet width (default 32, small 8)")
    p.add_argument("--equality", action="store_true", help="also run --jobs 1 at the workers' thread count and compare")
    p.add_argument("--out", type=Path, default=C.CACHE / "bench_sweep", help="where the sweeps are written")
    args = p.parse_args()
    cores = args.threads or len(os.sched_getaffinity(0))
    half = max(1, cores // 2)
    epochs, width = args.epochs or (1 if args.small else 8), args.width or (8 if args.small else 32)
    repeats = args.repeats or 1
    args.out.mkdir(parents=True, exist_ok=True)
    config = _config(args.out / "sweep.toml", epochs, width)

    rep = C.Report("sweep_jobs", "12-cell sweep: --jobs 2 vs --jobs 1, runs per hour", args.small)
    rep.params = {"cells": len(CELLS), "epochs": epochs, "width": width, "cores": cores, "repeats": repeats,
                  "load_avg_1m_start": round(os.getloadavg()[0], 2)}
    print(f"{rep.key}: {rep.title}; {cores} cores, epochs {epochs}, width {width}, load {os.getloadavg()[0]:.1f}", flush=True)
    contenders = {f"--jobs 1 --threads-per-job {cores}": (1, cores), f"--jobs 2 --threads-per-job {half}": (2, half)}
    if args.equality:
        contenders[f"--jobs 1 --threads-per-job {half}"] = (1, half)
    walls: dict[str, list[float]] = {k: [] for k in contenders}
    outs = {k: args.out / f"out-{i}" for i, k in enumerate(contenders)}
    for r in range(repeats):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            walls[name].append(_sweep(config, outs[name], *contenders[name]))
    for name, w in walls.items():
        res = _results(outs[name])
        train = sum(d["timings"]["train_s"] for d in res.values())
        rep.row(name, wall_s=min(w), runs_per_hour=len(CELLS) / min(w) * 3600, train_s_sum=train, all_s=[round(x, 1) for x in w])
        rep.check(f"{name}: every cell done, each epoch trained once", len(res) == len(CELLS) and all(
            _epochs(outs[name] / c / "seed0") == list(range(1, len(_epochs(outs[name] / c / "seed0")) + 1))
            and (len(_epochs(outs[name] / c / "seed0")) == epochs or res[c]["train"]["status"] == "collapsed")
            for c in res), f"{len(res)}/{len(CELLS)} cells (a collapsed run stops early)")
    one, two = list(contenders)[:2]
    ratio = min(walls[one]) / min(walls[two])
    rep.ratio("runs per hour, --jobs 2 / --jobs 1", ratio, f"({two} vs {one})")
    rep.target("--jobs 2 at >= 1.2x the runs per hour of --jobs 1", ratio >= 1.2, f"{ratio:.2f}x")
    if args.equality:
        same = list(contenders)[2]
        a, b = _results(outs[two]), _results(outs[same])
        equal = a.keys() == b.keys() and all(a[c]["metrics"] == b[c]["metrics"] and a[c]["encoder_hash"] == b[c]["encoder_hash"]
                                             for c in a)
        rep.check(f"{two} equals {same} (metrics and encoder hashes)", equal, f"{len(a)} cells")
    rep.params["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    rep.note(f"load average {rep.params['load_avg_1m_start']} at the start, {rep.params['load_avg_1m_end']} at the end "
             "(the ratio means something only on an otherwise quiet machine)")
    return rep.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
