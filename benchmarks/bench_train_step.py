"""(c) Training steps: sslbench's shared loop vs a bare hand-written PyTorch loop.

Issue 6, row c: at least 0.95x the bare loop's images/s, with the same model,
loss, batch, augmentations (sslbench's batched ``TwoViews``, same generator)
and optimiser (sslbench's ``build_optimizer``: LARS for VICReg). The shared
loop adds the learning-rate schedule, the NaN check, the per-step logging of
loss terms and std of l2-normalised embeddings, and its clock; its number is
the second epoch's ``images_per_s`` in ``metrics.jsonl``.

The bare loop is timed twice: channels-last (what sslbench uses on the CPU,
so the ratio isolates the loop) and plain NCHW (what a hand-written loop
usually does). The check is against the faster of the two. Contenders are
interleaved ``--repeats`` times; the best of each is compared.

    python benchmarks/bench_train_step.py                  # vicreg, quick preset (about 1-2 min)
    python benchmarks/bench_train_step.py --method simsiam
    python benchmarks/bench_train_step.py --small          # seconds
"""

from __future__ import annotations

import sys

import _common as C
import _train as T

from sslbench.optim import build_optimizer


def main() -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--method", default="vicreg")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 30, small 4)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    args = p.parse_args()
    threads = C.setup_threads(args.threads)
    steps = args.steps or (4 if args.small else 30)
    repeats = args.repeats or (1 if args.small else 3)
    s = T.setup(args.method, args.small, args.batch, args.width, steps)

    rep = C.Report("c_train_step", f"training step of the shared loop vs a bare loop ({args.method})", args.small)
    rep.params = {"method": args.method, "batch": s.cfg.batch_size, "width": s.width, "heads": s.heads,
                  "optimizer": s.cfg.optimizer, "steps": steps, "repeats": repeats, "threads": threads}
    C.header(rep, args, threads)

    ours_model = s.model(args.seed)
    bare_cl = T.prepare(s.model(args.seed), channels_last=True)
    bare_nchw = T.prepare(s.model(args.seed), channels_last=False)
    bare = {
        "bare loop, channels-last": (T.bare_step_fn(bare_cl, build_optimizer(bare_cl, s.cfg)), True),
        "bare loop, NCHW": (T.bare_step_fn(bare_nchw, build_optimizer(bare_nchw, s.cfg)), False),
    }
    res: dict[str, list[float]] = {"sslbench.train.pretrain": [], **{k: [] for k in bare}}
    for _ in range(repeats):
        res["sslbench.train.pretrain"].append(T.sslbench_images_per_s(s, ours_model, args.seed))
        for name, (fn, cl) in bare.items():
            res[name].append(T.bare_images_per_s(fn, s, steps, channels_last=cl, seed=args.seed))
    for name, v in res.items():
        rep.row(name, images_per_s=max(v), all=[round(x) for x in v])
    ours = max(res["sslbench.train.pretrain"])
    best_bare_name = max(bare, key=lambda k: max(res[k]))
    for name in bare:
        rep.ratio(f"sslbench / {name}", ours / max(res[name]), "(images/s)")
    r = ours / max(res[best_bare_name])
    rep.target("at least 0.95x the bare loop's images/s", r >= 0.95, f"{r:.3f}x of the faster bare loop ({best_bare_name})")
    return rep.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
