"""(scale) kNN over 1M x 256 synthetic vectors: exact flat search in chunks vs IVF, memory and accuracy.

Issue 6, "Memory and scale": kNN over 1M x 256 synthetic vectors completes
within memory, with faiss flat search in chunks or IVF; document the accuracy
and speed trade-off.

The database is written once as a float32 ``.npy`` under
``$SSLBENCH_BENCH_CACHE/knn_scale/`` (1M x 256 is 977 MiB). The chunked
variants read it shard by shard with plain reads (a memory map would leave
up to the whole file resident and counted in RSS); ``protocol`` gets it
memory-mapped, as sslbench's feature cache hands features to the protocols. Vectors come
from 1,000 Gaussian clusters (label = cluster mod 10), queries from the same
clusters. Every variant runs in its own child process and reports its own peak
RSS (``ru_maxrss``) and times:

- ``flat_chunked``: exact. The database is read in shards of ``--chunk`` rows;
  each shard is l2-normalised, searched with a faiss ``IndexFlatIP`` and the
  top-k merged with ``faiss.ResultHeap``. Memory: one shard + the queries'
  heaps. This is the reference for recall.
- ``protocol``: ``protocols.knn.cosine_neighbors`` as it is today (the whole
  database normalised into a copy, then copied again into one
  ``IndexFlatIP``). Checked to give the same similarities as ``flat_chunked``.
- ``protocol_chunked``: ``cosine_neighbors(..., chunk_rows=--chunk)`` on the
  memory map, once ``protocols/knn.py`` has that parameter (skipped before).
- ``ivf``: ``IndexIVFFlat`` (inner product, ``--nlist`` lists, k-means on a
  sample), vectors added shard by shard, searched at each ``--nprobe``.
- ``ivf_sq8``: the same with 8-bit scalar quantisation (4x less memory).

For each: build and search time, peak RSS, recall@k against the exact top-k
(share of the exact neighbours found), top-1 agreement, and the weighted kNN
top-1 (k=20, T=0.07, as the protocol) on the query labels.

    python benchmarks/bench_knn_scale.py            # about 5-8 min (two exact searches of 10k x 1M)
    python benchmarks/bench_knn_scale.py --small    # seconds
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path

import _common as C
import numpy as np

VARIANTS = ("flat_chunked", "protocol", "protocol_chunked", "ivf", "ivf_sq8")


def make_data(path: Path, n: int, nq: int, dim: int, seed: int, clusters: int = 1000, sigma: float = 1.2) -> None:
    """Write ``db.npy`` (n, dim), ``db_y.npy``, ``q.npy`` (nq, dim), ``q_y.npy`` once, in chunks."""
    if (path / "done").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    for name, rows in (("db", n), ("q", nq)):
        x = np.lib.format.open_memmap(path / f"{name}.npy", mode="w+", dtype=np.float32, shape=(rows, dim))
        y = np.empty(rows, dtype=np.int64)
        for i in range(0, rows, 65536):
            j = min(rows, i + 65536)
            c = rng.integers(0, clusters, j - i)
            x[i:j] = centres[c] + sigma * rng.standard_normal((j - i, dim), dtype=np.float32)
            y[i:j] = c % 10
        x.flush()
        del x
        np.save(path / f"{name}_y.npy", y)
    (path / "done").write_text("ok")


class Shards:
    """Reads rows of a 2-D float32 ``.npy`` file with plain reads (no memory map).

    Each shard lands in fresh anonymous memory that is freed after use, so the
    peak RSS shows the working set of a chunked search rather than the
    file-backed pages a memory map leaves resident.
    """

    def __init__(self, path: Path) -> None:
        m = np.load(path, mmap_mode="r")  # only to read the header: no page is touched
        if not m.flags.c_contiguous or m.dtype != np.float32 or m.ndim != 2:
            raise ValueError(f"{path}: expected a C-order 2-D float32 array")
        self.path, self.shape, self.offset = path, m.shape, m.offset
        del m

    def read(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.shape[0])
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.shape[1] * 4)
            return np.fromfile(f, dtype=np.float32, count=(stop - start) * self.shape[1]).reshape(-1, self.shape[1])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))


def flat_chunked(db: Shards, q: np.ndarray, k: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k, reading the database shard by shard (memory: one shard)."""
    import faiss

    qn = _unit(q)
    heap = faiss.ResultHeap(len(qn), k, keep_max=True)
    for i in range(0, db.shape[0], chunk):
        shard = _unit(db.read(i, i + chunk))
        index = faiss.IndexFlatIP(shard.shape[1])
        index.add(shard)
        d, j = index.search(qn, min(k, shard.shape[0]))
        heap.add_result(d, np.where(j >= 0, j + i, -1))
        del index, shard
    heap.finalize()
    return heap.D, heap.I


def build_ivf(db: Shards, nlist: int, chunk: int, sq8: bool, train_rows: int):
    import faiss

    dim = db.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    if sq8:
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(_unit(db.read(0, train_rows)))  # rows are in random order: the first ones are a random sample
    for i in range(0, db.shape[0], chunk):
        index.add(_unit(db.read(i, i + chunk)))
    return index, quantizer  # the caller keeps the quantizer alive as long as the index


def child(args) -> int:
    from protocols.knn import cosine_neighbors, weighted_vote

    C.setup_threads(args.threads)
    d = args.data
    shards = Shards(d / "db.npy")
    db_y = np.load(d / "db_y.npy")
    q = np.load(d / "q.npy")
    q_y = np.load(d / "q_y.npy")
    out: dict = {"variant": args.child, "rss_start_mb": C.current_rss_mb(), "searches": []}

    def score(sims: np.ndarray, idx: np.ndarray) -> dict:
        preds = weighted_vote(sims, db_y[np.maximum(idx, 0)], min(20, idx.shape[1]), 0.07, 10)
        r = {"knn_top1": float((preds == q_y).mean())}
        ref = d / f"exact_idx_k{args.k}.npy"
        if ref.exists():
            exact = np.load(ref)
            r["recall_at_k"] = float(np.mean([len(np.intersect1d(a, b)) for a, b in zip(idx, exact)]) / args.k)
            r["top1_agreement"] = float((idx[:, 0] == exact[:, 0]).mean())
        return r

    if args.child == "protocol_chunked" and "chunk_rows" not in inspect.signature(cosine_neighbors).parameters:
        print(json.dumps({"variant": args.child, "skipped": "protocols.knn.cosine_neighbors has no chunk_rows parameter yet"}))
        return 0
    if args.child in ("flat_chunked", "protocol", "protocol_chunked"):
        t0 = time.perf_counter()
        if args.child == "flat_chunked":
            sims, idx = flat_chunked(shards, q, args.k, args.chunk)
        elif args.child == "protocol":  # the whole database, memory-mapped as sslbench's feature cache hands it out
            sims, idx = cosine_neighbors(np.load(d / "db.npy", mmap_mode="r"), q, args.k)
        else:
            sims, idx = cosine_neighbors(np.load(d / "db.npy", mmap_mode="r"), q, args.k, chunk_rows=args.chunk)
        t = time.perf_counter() - t0
        out["build_s"] = 0.0
        if args.child == "flat_chunked":
            np.save(d / f"exact_idx_k{args.k}.npy", idx)
            np.save(d / f"exact_sims_k{args.k}.npy", sims)
        else:
            ref = np.load(d / f"exact_sims_k{args.k}.npy")
            out["max_sim_diff_vs_flat_chunked"] = float(np.abs(ref - sims).max())
        out["searches"].append({"nprobe": None, "search_s": t, **score(sims, idx)})
    else:
        t0 = time.perf_counter()
        index, _quantizer = build_ivf(shards, args.nlist, args.chunk, args.child == "ivf_sq8", args.train_rows)
        out["build_s"] = time.perf_counter() - t0
        qn = _unit(q)
        for nprobe in args.nprobe:
            index.nprobe = nprobe
            t0 = time.perf_counter()
            sims, idx = index.search(qn, args.k)
            out["searches"].append({"nprobe": nprobe, "search_s": time.perf_counter() - t0, **score(sims, idx)})
    out["peak_rss_mb"] = C.peak_rss_mb()
    print(json.dumps(out))
    return 0


def main() -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=None, help="database rows (default 1,000,000; small 20,000)")
    p.add_argument("--queries", type=int, default=None, help="default 10,000 (small 500)")
    p.add_argument("--dim", type=int, default=None, help="default 256 (small 32)")
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--chunk", type=int, default=None, help="database rows per shard (default 100,000; small 5,000)")
    p.add_argument("--nlist", type=int, default=None, help="IVF lists (default 1024; small 64)")
    p.add_argument("--nprobe", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="comma-separated (default 4,16,64; small 2,8)")
    p.add_argument("--train-rows", type=int, default=None, help="k-means sample (default 100 * nlist)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.n = args.n or (20_000 if args.small else 1_000_000)
    args.queries = args.queries or (500 if args.small else 10_000)
    args.dim = args.dim or (32 if args.small else 256)
    args.chunk = args.chunk or (5_000 if args.small else 100_000)
    args.nlist = args.nlist or (64 if args.small else 1024)
    args.nprobe = args.nprobe or ([2, 8] if args.small else [4, 16, 64])
    args.train_rows = args.train_rows or 100 * args.nlist
    args.data = args.data or C.CACHE / "knn_scale" / f"synthetic_{args.n}x{args.dim}_{args.queries}_s{args.seed}"
    if args.child:
        return child(args)
    threads = C.setup_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    if "flat_chunked" in variants:  # the exact reference goes first
        variants = ["flat_chunked"] + [v for v in variants if v != "flat_chunked"]

    rep = C.Report("knn_scale", f"kNN top-{args.k} over {args.n} x {args.dim} synthetic vectors, {args.queries} queries",
                   args.small)
    rep.params = {"n": args.n, "queries": args.queries, "dim": args.dim, "k": args.k, "chunk": args.chunk,
                  "nlist": args.nlist, "nprobe": args.nprobe, "train_rows": args.train_rows, "threads": threads,
                  "database_mib": round(args.n * args.dim * 4 / 2**20)}
    C.header(rep, args, threads)
    t0 = time.perf_counter()
    make_data(args.data, args.n, args.queries, args.dim, args.seed)
    print(f"   data ready in {time.perf_counter() - t0:.1f}s at {args.data}", flush=True)
    for stale in args.data.glob("exact_*"):
        stale.unlink()

    results = {}
    for v in variants:
        cmd = [sys.executable, __file__, "--child", v, "--data", str(args.data), "--k", str(args.k),
               "--chunk", str(args.chunk), "--nlist", str(args.nlist), "--nprobe", ",".join(map(str, args.nprobe)),
               "--train-rows", str(args.train_rows), "--threads", str(threads), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            rep.row(v, error=err)
            rep.check(f"{v} completed", False, err)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        if "skipped" in r:
            rep.note(f"{v} skipped: {r['skipped']}")
            continue
        results[v] = r
        for s in r["searches"]:
            label = v if s["nprobe"] is None else f"{v} nprobe={s['nprobe']}"
            rep.row(label, build_s=r["build_s"], search_s=s["search_s"], peak_rss_mb=r["peak_rss_mb"],
                    rss_at_start_mb=r["rss_start_mb"],
                    **{m: s[m] for m in ("recall_at_k", "top1_agreement", "knn_top1") if m in s})
    for v in ("protocol", "protocol_chunked"):
        if "flat_chunked" in results and v in results:
            diff = results[v]["max_sim_diff_vs_flat_chunked"]
            rep.check(f"{v} and chunked flat search give the same similarities", diff <= 1e-5, f"max diff {diff:.2e}")
            rep.ratio(f"{v} peak RSS / chunked flat peak RSS",
                      results[v]["peak_rss_mb"] / results["flat_chunked"]["peak_rss_mb"])
            rep.ratio(f"{v} time / chunked flat time",
                      results[v]["searches"][0]["search_s"] / results["flat_chunked"]["searches"][0]["search_s"])
    if "flat_chunked" in results:
        flat_t = results["flat_chunked"]["searches"][0]["search_s"]
        for v in ("ivf", "ivf_sq8"):
            for s in results.get(v, {}).get("searches", []):
                rep.ratio(f"{v} nprobe={s['nprobe']} speed-up over exact (search only)", flat_t / s["search_s"],
                          f"recall@{args.k} {s.get('recall_at_k', float('nan')):.3f}")
    for v, r in results.items():
        rep.target(f"{v} within 4 GiB", r["peak_rss_mb"] < 4096, f"peak RSS {r['peak_rss_mb']:.0f} MiB")
    return rep.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
