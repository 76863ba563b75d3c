"""(e) The protocol suite on cached features: first evaluation vs second evaluation of an unchanged encoder.

Issue 6, row e: a second evaluation of an unchanged encoder runs no forward
pass, and the whole suite takes at most 30 s. The encoder is the ``quick``
model of ``--method`` (backbone and projector, random init: the timing does
not depend on training) on Fashion-MNIST; the suite is ``sslbench run``'s
default protocol list with default parameters.

1. First evaluation: :func:`sslbench.features.cached_features` into an empty
   cache (a miss: features of train and test, backbone and projector), then
   every protocol.
2. Second evaluation: a *new* model instance loaded with the same weights (the
   cache key is the content hash, not the object), then every protocol again.

Checks: the first is a miss and runs forward passes; the second is a cache
hit and runs *no* forward pass (counted with forward hooks on the backbone and
the projector); its features are bit-identical and every protocol gives the
same metrics.

    python benchmarks/bench_suite.py            # about 1-2 min (feature extraction + two suites)
    python benchmarks/bench_suite.py --small    # seconds
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import _common as C
import _train as T
import numpy as np
from torch import nn

from sslbench.config import RunConfig
from sslbench.protocol import build_protocol
from sslbench.registry import registry


class ForwardCounter:
    """Counts forward calls of the given modules (their own forward, not submodules')."""

    def __init__(self, *modules: nn.Module) -> None:
        self.calls = 0
        self.handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, *_: object) -> None:
        self.calls += 1

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def main() -> int:
    p = C.parser(__doc__.split("\n\n")[0])
    p.add_argument("--method", default="vicreg", help="whose quick backbone + projector is evaluated")
    p.add_argument("--protocols", default=",".join(RunConfig().protocols))
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default: a fresh temporary directory)")
    args = p.parse_args()
    threads = C.setup_threads(args.threads)
    names = [n for n in args.protocols.split(",") if n]
    s = T.setup(args.method, args.small, steps=1)
    data = C.fashion_mnist(2000, 500) if args.small else C.fashion_mnist()
    transfer, transfer_name = C.transfer_for("smoke" if args.small else "quick", data)
    if transfer is None and args.small:  # smoke has no transfer set; take the quick one's to cover the protocol
        transfer, transfer_name = C.transfer_for("quick", data)
    available = {"labels", "encoder"} | ({"transfer"} if transfer is not None else set())
    protocols, skipped = [], []
    for n in names:
        proto = build_protocol(registry("protocols").get(n))
        (protocols if proto.requires <= available else skipped).append(proto)

    rep = C.Report("e_suite", f"protocol suite on cached features ({args.method} quick encoder)", args.small)
    rep.params = {"method": args.method, "width": s.width, "heads": s.heads, "protocols": [q.name for q in protocols],
                  "transfer": transfer_name or None,
                  "n_train": int(data.train_images.shape[0]), "n_test": int(data.test_images.shape[0]), "threads": threads}
    C.header(rep, args, threads)
    for q in skipped:
        rep.note(f"skipped protocol {q.name}: it requires {', '.join(sorted(q.requires - available))}")

    def evaluate(model: nn.Module, cache: Path) -> dict:
        counter = ForwardCounter(model.backbone, model.projector)
        t0 = time.perf_counter()
        fs, enc_hash, hit = C.features_with_extras(model.backbone, data, cache, model.projector, s.views, transfer,
                                                   transfer_name, args.seed)
        t_feat = time.perf_counter() - t0
        counter.remove()
        times, metrics = {}, {}
        for proto in protocols:
            t1 = time.perf_counter()
            metrics[proto.name] = proto.evaluate(fs, args.seed)
            times[proto.name] = time.perf_counter() - t1
        return {"fs": fs, "hit": hit, "forwards": counter.calls, "features_s": t_feat, "protocol_s": times,
                "total_s": time.perf_counter() - t0, "metrics": metrics, "hash": enc_hash}

    with tempfile.TemporaryDirectory(prefix="sslbench-bench-cache-") as tmp:
        cache = args.cache_dir or Path(tmp)
        first_model = s.model(args.seed)
        first = evaluate(first_model, cache)
        second_model = s.model(args.seed + 1)  # other initial weights ...
        second_model.load_state_dict(first_model.state_dict())  # ... replaced by the unchanged encoder's
        second = evaluate(second_model, cache)

    for label, r in (("first evaluation (cache miss)", first), ("second evaluation (cache hit)", second)):
        rep.row(label, total_s=r["total_s"], features_s=r["features_s"], forward_calls=r["forwards"],
                cache_hit=r["hit"], **{f"{k}_s": v for k, v in r["protocol_s"].items()})
    suite_first = sum(first["protocol_s"].values())
    suite_second = sum(second["protocol_s"].values())
    rep.ratio("first / second evaluation", first["total_s"] / second["total_s"], "(wall time)")
    if args.cache_dir is None:
        rep.check("first evaluation extracts (cache miss, forward passes)", not first["hit"] and first["forwards"] > 0,
                  f"hit={first['hit']}, forward calls {first['forwards']}")
    rep.check("second evaluation runs no forward pass", second["hit"] and second["forwards"] == 0,
              f"hit={second['hit']}, forward calls {second['forwards']}")
    fa, fb = first["fs"], second["fs"]
    same_feats = all(np.array_equal(getattr(fa, k), getattr(fb, k)) for k in ("train_x", "test_x")) and all(
        np.array_equal(fa.extra[k], fb.extra[k]) for k in fa.extra) and set(fa.extra) == set(fb.extra)
    rep.check("cached features are bit-identical", same_feats and first["hash"] == second["hash"],
              f"arrays: train_x, test_x, {', '.join(sorted(fa.extra)) or '-'}")
    same_metrics = all(
        all(_same(first["metrics"][n].get(k), v) for k, v in second["metrics"][n].items()) for n in second["metrics"]
    )
    rep.check("every protocol gives the same metrics on the second evaluation", same_metrics)
    rep.target("whole suite in at most 30 s (second evaluation)", second["total_s"] <= 30.0,
               f"{second['total_s']:.1f}s (protocols {suite_second:.1f}s; first: {suite_first:.1f}s + "
               f"{first['features_s']:.1f}s features)")
    return rep.finish(args.json)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (np.isnan(a) and np.isnan(b))
    return a == b


if __name__ == "__main__":
    sys.exit(main())
