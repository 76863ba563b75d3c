"""(f) SimSiam training images/s: sslbench vs lightly's SimSiam parts.

Issue 6, row f: at least 1.0x. Same backbone (sslbench ConvNet, ``quick``
width 32), same heads (``quick``: projector 256-1024-1024 with a final
non-affine BN, predictor 1024-256-1024), same batch (the preset's, 32; ``--batch N``
for another), same views
(sslbench's ``TwoViews``), same SGD settings. The lightly side is the loop of
lightly's SimSiam example: ``SimSiamPredictionHead``, a projection head built
from lightly's ``ProjectionHead`` blocks with sslbench's 2-layer shape
(lightly's stock ``SimSiamProjectionHead`` has 3 layers: ``--lightly-head
stock`` uses it, which is not the same model), ``NegativeCosineSimilarity``
with the stop-gradient in the model, one forward per view
(``--lightly-concat``: one forward of both views, like sslbench).

Before timing, the script copies sslbench's weights into the lightly model
and checks that both compute the same loss on the same batch (concatenated
views, so batch norm sees the same batch), i.e. that it is the same model.

lightly is a benchmark-only dependency, never one of sslbench's:

    pip install --no-deps lightly     # its SimSiam modules import with torch alone
    python benchmarks/bench_simsiam_lightly.py           # about 1-2 min
    python benchmarks/bench_simsiam_lightly.py --small   # seconds

Without lightly the script says so and exits 0 (skipped).
"""

from __future__ import annotations

import sys

import _common as C
import _train as T
import torch
from torch import nn


class LightlySimSiam(nn.Module):
    """lightly's SimSiam example model: backbone -> projection head -> prediction head, ``z`` detached."""

    def __init__(self, backbone: nn.Module, heads: dict[str, int], stock_head: bool) -> None:
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
        from lightly.models.modules.heads import ProjectionHead

        super().__init__()
        self.backbone = backbone
        d, h, out = backbone.out_dim, heads["proj_hidden"], heads["proj_dim"]
        if stock_head:
            self.projection_head = SimSiamProjectionHead(d, h, out)
        else:  # sslbench's 2-layer projector shape, from lightly's building blocks
            self.projection_head = ProjectionHead(
                [(d, h, nn.BatchNorm1d(h), nn.ReLU()), (h, out, nn.BatchNorm1d(out, affine=False), None)]
            )
        self.prediction_head = SimSiamPredictionHead(out, heads["pred_hidden"], out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(f)
        p = self.prediction_head(z)
        return z.detach(), p


def lightly_step_fn(model: LightlySimSiam, optimizer: torch.optim.Optimizer, concat: bool):
    from lightly.loss import NegativeCosineSimilarity

    criterion = NegativeCosineSimilarity()

    def step(v1: torch.Tensor, v2: torch.Tensor) -> None:
        if concat:
            z, p = model(torch.cat([v1, v2]))
            z0, z1 = z.chunk(2)
            p0, p1 = p.chunk(2)
        else:
            z0, p0 = model(v1)
            z1, p1 = model(v2)
        loss = 0.5 * (criterion(z0, p1) + criterion(z1, p0))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def same_model_check(ours: nn.Module, theirs: LightlySimSiam, s: T.Setup, seed: int) -> tuple[bool, str]:
    """Copy sslbench's weights into lightly's model (same layer order) and compare the losses of one batch."""
    from lightly.loss import NegativeCosineSimilarity

    src = list(ours.backbone.state_dict().values()) + list(ours.projector.state_dict().values()) + list(
        ours.predictor.state_dict().values())
    dst = theirs.state_dict()
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst.values())):
        return False, "parameter lists differ in length or shape"
    theirs.load_state_dict(dict(zip(dst.keys(), src)))
    gen = torch.Generator().manual_seed(seed)
    v1, v2 = s.views(s.data.train_images[: s.cfg.batch_size], gen)
    ours.train(), theirs.train()
    with torch.no_grad():
        a = float(ours(v1, v2).loss)
        z, p = theirs(torch.cat([v1, v2]))
        crit = NegativeCosineSimilarity()
        b = float(0.5 * (crit(z.chunk(2)[0], p.chunk(2)[1]) + crit(z.chunk(2)[1], p.chunk(2)[0])))
    n_ours = sum(t.numel() for t in ours.parameters())
    n_theirs = sum(t.numel() for t in theirs.parameters())
    ok = abs(a - b) <= 1e-5 and n_ours == n_theirs
    return ok, f"loss sslbench {a:.6f} vs lightly {b:.6f}; parameters {n_ours} vs {n_theirs}"


def main() -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per measurement (default: 7680 images' worth, at least 30; small 4)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--lightly-head", choices=["matched", "stock"], default="matched")
    p.add_argument("--lightly-concat", action="store_true", help="one forward of both views on the lightly side")
    p.add_argument("--lightly-nchw", action="store_true", help="no channels-last on the lightly side")
    args = p.parse_args()
    rep = C.Report("f_simsiam_lightly", "SimSiam training images/s, sslbench vs lightly's SimSiam parts", args.small)
    try:
        import lightly  # noqa: F401
    except ImportError:
        rep.note("SKIPPED: lightly is not installed (pip install --no-deps lightly; benchmark-only)")
        rep.params = {"skipped": "lightly not installed"}
        return rep.finish(args.json)
    threads = C.setup_threads(args.threads)
    batch = args.batch or T.preset_batch("simsiam", args.small)
    steps = args.steps or (4 if args.small else max(30, 7680 // batch))
    repeats = args.repeats or (1 if args.small else 3)
    s = T.setup("simsiam", args.small, batch, args.width, steps)
    rep.params = {"batch": s.cfg.batch_size, "width": s.width, "heads": s.heads, "steps": steps, "repeats": repeats,
                  "lightly": lightly.__version__, "lightly_head": args.lightly_head,
                  "lightly_forward": "concatenated views" if args.lightly_concat else "one forward per view (lightly example)",
                  "lightly_channels_last": not args.lightly_nchw, "threads": threads}
    C.header(rep, args, threads)

    theirs = LightlySimSiam(s.backbone(args.seed), s.heads, args.lightly_head == "stock")
    if args.lightly_head == "matched":
        ok, detail = same_model_check(s.model(args.seed), theirs, s, args.seed)
        rep.check("same model and loss as sslbench's SimSiam", ok, detail)
    else:
        rep.note("stock lightly SimSiamProjectionHead has 3 layers: not the same model as sslbench's quick SimSiam")
    T.prepare(theirs, channels_last=not args.lightly_nchw)
    peak = s.cfg.lr * s.cfg.batch_size / 256
    opt = torch.optim.SGD(theirs.parameters(), lr=peak, momentum=s.cfg.momentum, weight_decay=s.cfg.weight_decay)
    step = lightly_step_fn(theirs, opt, args.lightly_concat)

    ours_model = s.model(args.seed)
    res: dict[str, list[float]] = {"sslbench simsiam (shared loop)": [], "lightly SimSiam parts (bare loop)": []}
    for _ in range(repeats):
        res["sslbench simsiam (shared loop)"].append(T.sslbench_images_per_s(s, ours_model, args.seed))
        res["lightly SimSiam parts (bare loop)"].append(
            T.bare_images_per_s(step, s, steps, channels_last=not args.lightly_nchw, seed=args.seed))
    for name, v in res.items():
        rep.row(name, images_per_s=max(v), all=[round(x) for x in v])
    r = max(res["sslbench simsiam (shared loop)"]) / max(res["lightly SimSiam parts (bare loop)"])
    rep.ratio("sslbench / lightly", r, "(images/s)")
    rep.target("at least 1.0x lightly's images/s", r >= 1.0, f"{r:.3f}x")
    return rep.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
