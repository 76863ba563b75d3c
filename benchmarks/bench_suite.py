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

3. Sweep set: a third new instance with the same weights (a cache hit), then the
   protocols of the named protocol set ``sweep``
   (:data:`sslbench.protocol_sets.SWEEP`: kNN at k = 20 only, a 3-point linear
   grid, the collapse readings) built with the set's parameters, as
   ``sslbench run --protocol-set sweep`` scores a sweep cell.

Checks: the first is a miss and runs forward passes; the second is a cache
hit and runs *no* forward pass (counted with forward hooks on the backbone and
the projector); its features are bit-identical and every protocol gives the
same metrics. The sweep set's ``knn.top1`` equals the full suite's exactly (the
same k = 20; the extra k only deepen the search) and its ``linear.top1`` is
within 0.5 points of the full suite's (its grid is a subset of the full one).
Reported: the ratio full suite / sweep set of protocol seconds per cell (both on
cached features), and of the total per cell with the first evaluation's feature
extraction added to both, for context.

    python benchmarks/bench_suite.py            # about 1-2 min (feature extraction + two suites + the sweep set)
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
from sslbench.protocol_sets import SWEEP
from sslbench.registry import registry

#: The sweep set's linear top-1 may differ from the full suite's by this much (points):
#: its 3-point grid can select another weight decay than the full 6-point grid.
LINEAR_TOL_POINTS = 0.5


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
    sweep = [build_protocol(registry("protocols").get(n), SWEEP.params.get(n)) for n in SWEEP.protocols]
    sweep = [q for q in sweep if q.requires <= available]

    rep = C.Report("e_suite", f"protocol suite on cached features ({args.method} quick encoder)", args.small)
    rep.params = {"method": args.method, "width": s.width, "heads": s.heads, "protocols": [q.name for q in protocols],
                  "sweep_protocols": [q.name for q in sweep], "sweep_params": SWEEP.params,
                  "transfer": transfer_name or None,
                  "n_train": int(data.train_images.shape[0]), "n_test": int(data.test_images.shape[0]), "threads": threads}
    C.header(rep, args, threads)
    for q in skipped:
        rep.note(f"skipped protocol {q.name}: it requires {', '.join(sorted(q.requires - available))}")

    def evaluate(model: nn.Module, cache: Path, protocols: list) -> dict:
        counter = ForwardCounter(model.backbone, model.projector)
        t0 = time.perf_counter()
        fs, enc_hash, hit = C.features_with_extras(model.backbone, data, cache, model.projector, s.views, transfer,
                                                   transfer_name, args.seed)
        t_feat = time.perf_counter() - t0
        counter.remove()
        times, metrics = {}, {}
        for proto in protocols:
            t1 = time.perf_counter()
            metrics[proto.name] = proto.evaluate(fs, args.seed).metrics
            times[proto.name] = time.perf_counter() - t1
        return {"fs": fs, "hit": hit, "forwards": counter.calls, "features_s": t_feat, "protocol_s": times,
                "total_s": time.perf_counter() - t0, "metrics": metrics, "hash": enc_hash}

    with tempfile.TemporaryDirectory(prefix="sslbench-bench-cache-") as tmp:
        cache = args.cache_dir or Path(tmp)
        first_model = s.model(args.seed)
        first = evaluate(first_model, cache, protocols)
        second_model = s.model(args.seed + 1)  # other initial weights ...
        second_model.load_state_dict(first_model.state_dict())  # ... replaced by the unchanged encoder's
        second = evaluate(second_model, cache, protocols)
        third_model = s.model(args.seed + 2)
        third_model.load_state_dict(first_model.state_dict())
        third = evaluate(third_model, cache, sweep)

    for label, r in (("first evaluation (cache miss)", first), ("second evaluation (cache hit)", second),
                     ("sweep set evaluation (cache hit)", third)):
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
    fa, fb = C.feature_arrays(first["fs"]), C.feature_arrays(second["fs"])
    same_feats = fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)
    rep.check("cached features are bit-identical", same_feats and first["hash"] == second["hash"],
              f"arrays: {', '.join(fa)}")
    same_metrics = all(
        all(_same(first["metrics"][n].get(k), v) for k, v in second["metrics"][n].items()) for n in second["metrics"]
    )
    rep.check("every protocol gives the same metrics on the second evaluation", same_metrics)
    _compare_sweep(rep, first, second, third)
    rep.target("whole suite in at most 30 s (second evaluation)", second["total_s"] <= 30.0,
               f"{second['total_s']:.1f}s (protocols {suite_second:.1f}s; first: {suite_first:.1f}s + "
               f"{first['features_s']:.1f}s features)")
    return rep.finish(args.json)


def _compare_sweep(rep: C.Report, first: dict, second: dict, third: dict) -> None:
    """Ratios of the full suite's cost to the sweep set's, and the sweep set's agreement with it."""
    suite, swept = sum(second["protocol_s"].values()), sum(third["protocol_s"].values())
    rep.ratio("full suite / sweep set, protocol seconds per cell", suite / swept,
              f"({suite:.2f}s / {swept:.2f}s, both on cached features)")
    feat = first["features_s"]
    rep.ratio("full suite / sweep set, total per cell with feature extraction", (feat + suite) / (feat + swept),
              f"(({feat:.2f}s + {suite:.2f}s) / ({feat:.2f}s + {swept:.2f}s); extraction of the first evaluation)")
    full, sw = second["metrics"], third["metrics"]
    for name in ("knn", "linear"):
        if name not in full or name not in sw:
            rep.note(f"{name} not in both the full suite and the sweep set: its agreement is not checked")
    if "knn" in full and "knn" in sw:
        a, b = full["knn"]["top1"], sw["knn"]["top1"]
        rep.check("sweep set knn.top1 equals the full suite's (same k = 20)", a == b, f"full {a!r}, sweep {b!r}")
    if "linear" in full and "linear" in sw:
        diff = 100 * (sw["linear"]["top1"] - full["linear"]["top1"])
        rep.check(f"sweep set linear.top1 within {LINEAR_TOL_POINTS} points of the full suite's",
                  abs(diff) <= LINEAR_TOL_POINTS,
                  f"sweep - full {diff:+.2f} points (best_wd full {full['linear']['best_wd']:g}, "
                  f"sweep {sw['linear']['best_wd']:g})")


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (np.isnan(a) and np.isnan(b))
    return a == b


if __name__ == "__main__":
    sys.exit(main())
