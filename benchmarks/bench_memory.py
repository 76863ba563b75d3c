"""(memory) Peak RSS of evaluating 60k x 2048 features through the protocols (and of a ``quick`` run).

Issue 6, "Memory and scale": the peak RSS of evaluating 60k x 2048 features,
and of a ``quick`` run, stays under 4 GB.

Each protocol runs in a fresh child process (so one protocol's peak does not
hide another's), then the whole suite in one child, as ``sslbench run``
evaluates it. A child loads the features the way sslbench's feature cache
hands them out (``--load mmap``: memory-mapped ``.npy`` files, read lazily;
``--load ram``: whole arrays) and reports its own peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``, the number ``/usr/bin/time -v`` prints
as "Maximum resident set size"), the RSS right after loading, and the time.

The features are synthetic, 10 classes with class means, a shared low-rank
part and noise, through a ReLU (non-negative like pooled ConvNet features),
written once to ``$SSLBENCH_BENCH_CACHE/memory/`` (60k x 2048 float32 is
about 470 MiB, plus 10k test rows).

``--quick-run METHOD`` also measures a whole ``sslbench run --methods METHOD
--references ''`` (``--small``: preset ``smoke``) under ``/usr/bin/time -v``
in a temporary ``--out``.

    python benchmarks/bench_memory.py                        # about 2-4 min
    python benchmarks/bench_memory.py --quick-run vicreg     # + about 5 min
    python benchmarks/bench_memory.py --small                # seconds
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C
import numpy as np

LIMIT_MB = 4096


def make_features(path: Path, n_train: int, n_test: int, dim: int, seed: int) -> None:
    """Write ``train_x``, ``train_y``, ``test_x``, ``test_y`` as ``.npy`` files (chunked, float32)."""
    if (path / "done").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes, rank = 10, 64
    means = rng.standard_normal((classes, dim)).astype(np.float32) * 0.5
    basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(rank)
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, classes, n).astype(np.int64)
        x = np.lib.format.open_memmap(path / f"{split}_x.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        for i in range(0, n, 8192):
            j = min(n, i + 8192)
            z = rng.standard_normal((j - i, rank), dtype=np.float32)
            noise = rng.standard_normal((j - i, dim), dtype=np.float32)
            x[i:j] = np.maximum(means[y[i:j]] + z @ basis + 0.5 * noise, 0)
        x.flush()
        del x
        np.save(path / f"{split}_y.npy", y)
    (path / "done").write_text("ok")


def child(args) -> int:
    """Load the features, run the named protocols, print one JSON line with RSS and times."""
    from sslbench.protocol import build_protocol
    from sslbench.registry import registry
    from sslbench.types import FeatureSet

    C.setup_threads(args.threads)
    t0 = time.perf_counter()
    mode = "r" if args.load == "mmap" else None
    arrays = {n: np.load(args.data / f"{n}.npy", mmap_mode=mode) for n in ("train_x", "train_y", "test_x", "test_y")}
    fs = FeatureSet.of(arrays["train_x"], np.asarray(arrays["train_y"]), arrays["test_x"], np.asarray(arrays["test_y"]),
                       run="bench_memory")
    rss_loaded = C.current_rss_mb()
    times = {}
    for name in args.child.split(","):
        t1 = time.perf_counter()
        build_protocol(registry("protocols").get(name)).evaluate(fs, 0)
        times[name] = time.perf_counter() - t1
    print(json.dumps({"peak_rss_mb": C.peak_rss_mb(), "rss_after_load_mb": rss_loaded, "seconds": times,
                      "total_s": time.perf_counter() - t0}))
    return 0


def run_child(args, protocols: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", ",".join(protocols), "--data", str(args.data), "--load", args.load]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def quick_run(method: str, small: bool) -> dict:
    """Peak RSS and wall time of ``sslbench run`` under ``/usr/bin/time -v``."""
    with tempfile.TemporaryDirectory(prefix="sslbench-bench-run-") as out:
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "sslbench", "run", "--methods", method,
               "--references", "", "--preset", "smoke" if small else "quick", "--out", out]
        env = {**os.environ, "PYTHONPATH": f"{C.ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=C.ROOT, env=env, check=False)
        wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if proc.returncode != 0 or not m:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return {"peak_rss_mb": int(m.group(1)) / 1024, "wall_s": wall}


def main() -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--n-train", type=int, default=None, help="default 60000 (small 3000)")
    p.add_argument("--n-test", type=int, default=None, help="default 10000 (small 500)")
    p.add_argument("--dim", type=int, default=None, help="default 2048 (small 128)")
    p.add_argument("--protocols", default="knn,linear,few_shot,low_shot,collapse",
                   help="protocols that run on a features file (few_shot_transfer needs a transfer set)")
    p.add_argument("--load", choices=["mmap", "ram"], default="mmap")
    p.add_argument("--quick-run", default=None, metavar="METHOD", help="also measure `sslbench run --methods METHOD`")
    p.add_argument("--child", default=None, help=argparse_hidden())
    p.add_argument("--data", type=Path, default=None, help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        return child(args)
    threads = C.setup_threads(args.threads)
    n_train = args.n_train or (3000 if args.small else 60000)
    n_test = args.n_test or (500 if args.small else 10000)
    dim = args.dim or (128 if args.small else 2048)
    names = [n for n in args.protocols.split(",") if n]
    args.data = C.CACHE / "memory" / f"synthetic_{n_train}x{dim}_{n_test}_s{args.seed}"

    rep = C.Report("memory_eval", f"peak RSS of evaluating {n_train} x {dim} features through the protocols", args.small)
    rep.params = {"n_train": n_train, "n_test": n_test, "dim": dim, "protocols": names, "load": args.load,
                  "features_mib": round((n_train + n_test) * dim * 4 / 2**20), "threads": threads,
                  "limit_mb": LIMIT_MB}
    C.header(rep, args, threads)
    t0 = time.perf_counter()
    make_features(args.data, n_train, n_test, dim, args.seed)
    print(f"   features ready in {time.perf_counter() - t0:.1f}s at {args.data}", flush=True)

    runs = [[n] for n in names] + ([names] if len(names) > 1 else [])
    ok = True
    worst = 0.0
    for group in runs:
        r = run_child(args, group)
        label = "whole suite" if len(group) > 1 else group[0]
        if "error" in r:
            ok = False
            rep.row(label, error=r["error"])
            continue
        worst = max(worst, r["peak_rss_mb"])
        rep.row(label, peak_rss_mb=r["peak_rss_mb"], rss_after_load_mb=r["rss_after_load_mb"], seconds=r["total_s"])
    rep.check("every protocol ran", ok)
    rep.target(f"evaluation peak RSS under {LIMIT_MB} MiB", ok and worst < LIMIT_MB, f"{worst:.0f} MiB")
    if args.quick_run:
        r = quick_run(args.quick_run, args.small)
        preset = "smoke" if args.small else "quick"
        if "error" in r:
            rep.row(f"sslbench run --methods {args.quick_run} --preset {preset}", error=r["error"])
            rep.check("the run finished", False, r["error"])
        else:
            rep.row(f"sslbench run --methods {args.quick_run} --preset {preset}", peak_rss_mb=r["peak_rss_mb"],
                    wall_s=r["wall_s"])
            rep.target(f"{preset} run peak RSS under {LIMIT_MB} MiB", r["peak_rss_mb"] < LIMIT_MB,
                       f"{r['peak_rss_mb']:.0f} MiB")
    return rep.finish(args.json)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
