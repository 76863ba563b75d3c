"""(g) Achieved GFLOP/s of a training step vs a large fp32 matmul in the same run.

Issue 6, row g: report the fraction (about 160 GFLOP/s for the matmul on the
2-core machine). The step's FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward of
the ``quick`` model of ``--method`` (convolutions and matmuls: what the
counter knows; batch norm, ReLU, pooling and the optimiser are not counted,
so the figure is the useful-FLOP rate). The step is timed two ways:

- model only: forward, backward, optimiser, with the views made beforehand;
- shared loop: sslbench's ``pretrain`` images/s (views, logging and all).

The matmul is ``n x n @ n x n`` in fp32 (``2 n^3`` FLOPs), best of several.

    python benchmarks/bench_flops.py            # about 1 min
    python benchmarks/bench_flops.py --small    # seconds
"""

from __future__ import annotations

import sys
import time

import _common as C
import _train as T
import torch
from torch.utils.flop_counter import FlopCounterMode

from sslbench.optim import build_optimizer


def matmul_gflops(n: int, repeats: int) -> float:
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    times, _ = C.timed(lambda: torch.mm(a, b), repeats=repeats)
    return 2 * n**3 / C.best(times) / 1e9


def main() -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--method", default="vicreg")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20, small 3)")
    p.add_argument("--matmul-n", type=int, default=None, help="matmul size (default 4096, small 512)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    args = p.parse_args()
    threads = C.setup_threads(args.threads)
    steps = args.steps or (3 if args.small else 20)
    n = args.matmul_n or (512 if args.small else 4096)
    repeats = args.repeats or (1 if args.small else 3)
    s = T.setup(args.method, args.small, args.batch, args.width, steps + 2)
    batch = s.cfg.batch_size

    rep = C.Report("g_flops", f"achieved GFLOP/s of a training step vs fp32 matmul ({args.method})", args.small)
    rep.params = {"method": args.method, "batch": batch, "width": s.width, "heads": s.heads, "steps": steps,
                  "matmul_n": n, "repeats": repeats, "threads": threads}
    C.header(rep, args, threads)

    model = T.prepare(s.model(args.seed))
    step = T.bare_step_fn(model, build_optimizer(model, s.cfg))
    gen = torch.Generator().manual_seed(args.seed)
    images = s.data.train_images
    prepared = []
    for i in range(steps + 2):
        v1, v2 = s.views(images[i * batch : (i + 1) * batch], gen)
        prepared.append((v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)))

    with FlopCounterMode(display=False) as counter:
        model(*prepared[0]).loss.backward()
    model.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()

    mm, step_t, loop_ips = [], [], []
    for _ in range(repeats):
        mm.append(matmul_gflops(n, 3))
        for v in prepared[:2]:
            step(*v)
        t0 = time.perf_counter()
        for v in prepared[2:]:
            step(*v)
        step_t.append((time.perf_counter() - t0) / steps)
        loop_ips.append(T.sslbench_images_per_s(s, s.model(args.seed), args.seed))
    peak = max(mm)
    t_step = C.best(step_t)
    t_loop = batch / max(loop_ips)
    g_model = flops / t_step / 1e9
    g_loop = flops / t_loop / 1e9
    rep.row(f"fp32 matmul {n}x{n}", gflops=peak)
    rep.row("training step, model only (views ready)", gflop_per_step=flops / 1e9, ms_per_step=1000 * t_step,
            gflops=g_model)
    rep.row("training step, sslbench shared loop", gflop_per_step=flops / 1e9, ms_per_step=1000 * t_loop, gflops=g_loop)
    rep.ratio("model-only step GFLOP/s / matmul GFLOP/s", g_model / peak)
    rep.ratio("shared-loop step GFLOP/s / matmul GFLOP/s", g_loop / peak)
    rep.check("FLOP count is positive", flops > 0, f"{flops / 1e9:.2f} GFLOP per step (forward + backward)")
    return rep.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
