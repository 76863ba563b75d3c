"""Shared helpers of the benchmark scripts: paths, threads, timing, features, reports.

Every benchmark is a plain script (``python benchmarks/bench_<x>.py``) with the
same flags from :func:`parser`: ``--small`` runs in seconds (to check that the
script works), the default sizes are the ones of issue 6. Each script times
sslbench and its alternative in the same process, prints the ratio, and checks
the issue's correctness condition. A failed *check* (wrong neighbours, a
forward pass on a cache hit, ...) exits with status 1; a missed performance
*target* is reported as MISSED but is not an error.

``--json PATH`` writes the report for ``benchmarks/summarize.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # sslbench, protocols and baselines from this checkout
    sys.path.insert(0, str(ROOT))

#: Where extracted features and synthetic data are cached between runs.
CACHE = Path(os.environ.get("SSLBENCH_BENCH_CACHE", "/tmp/sslbench-bench"))


def parser(description: str) -> argparse.ArgumentParser:
    """The flags every benchmark shares."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny sizes that run in seconds (checks the script, not the speed)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch/faiss threads (default: OMP_NUM_THREADS if set, else every core)")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions per contender (best and median reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write the report here (read by summarize.py)")
    return p


def setup_threads(threads: int | None) -> int:
    """Use ``threads`` threads in torch and faiss (and say how many)."""
    import torch

    n = threads or int(os.environ.get("OMP_NUM_THREADS", "") or 0) or os.cpu_count() or 1
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n


def timed(fn: Callable[[], Any], repeats: int = 1, warmup: int = 0) -> tuple[list[float], Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    Returns:
        ``(seconds of each timed call, the last call's result)``.
    """
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def best(times: list[float]) -> float:
    return min(times)


def median(times: list[float]) -> float:
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Current resident set size, MiB (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    for mod in ("faiss", "sklearn", "torchvision"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    return info


@dataclass
class Report:
    """Measurements, ratios, checks and targets of one benchmark; printed and saved as JSON.

    Attributes:
        key: Short id (``a_knn`` ...), also the JSON file stem in ``run_all.sh``.
        title: One line for the summary.
        small: Whether ``--small`` sizes were used.
    """

    key: str
    title: str
    small: bool
    params: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, contender: str, **values: Any) -> None:
        """One line of the results table (a contender and its measurements)."""
        self.rows.append({"contender": contender, **values})
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in values.items())
        print(f"  {contender:<40s} {shown}", flush=True)

    def ratio(self, name: str, value: float, detail: str = "") -> None:
        self.ratios.append({"name": name, "value": value, "detail": detail})
        print(f"  RATIO  {name}: {value:.3g}x {detail}", flush=True)

    def check(self, name: str, passed: bool, detail: str = "") -> None:
        """A correctness condition; a failure makes the script exit with status 1."""
        self.checks.append({"name": name, "passed": bool(passed), "detail": detail})
        print(f"  CHECK  {'PASS' if passed else 'FAIL'}  {name}  {detail}", flush=True)

    def target(self, name: str, met: bool, detail: str = "") -> None:
        """A performance target of the issue; missing it is reported, not an error."""
        self.targets.append({"name": name, "met": bool(met), "detail": detail})
        print(f"  TARGET {'MET' if met else 'MISSED'}  {name}  {detail}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def finish(self, json_path: Path | None) -> int:
        """Print the verdict, write the JSON, return the exit status."""
        doc = {
            "key": self.key,
            "title": self.title,
            "small": self.small,
            "params": self.params,
            "rows": self.rows,
            "ratios": self.ratios,
            "checks": self.checks,
            "targets": self.targets,
            "notes": self.notes,
            "machine": machine(),
            "peak_rss_mb": peak_rss_mb(),
            "argv": sys.argv,
        }
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(doc, indent=1, default=_jsonable))
        failed = [c["name"] for c in self.checks if not c["passed"]]
        print(f"{self.key}: {'FAILED checks: ' + ', '.join(failed) if failed else 'all checks passed'}", flush=True)
        return 1 if failed else 0


def _jsonable(o: Any) -> Any:
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def header(report: Report, args: argparse.Namespace, threads: int) -> None:
    print(f"== {report.key}: {report.title}  ({'SMALL sizes' if args.small else 'full sizes'}, {threads} threads)", flush=True)
    print(f"   params: {report.params}", flush=True)


# ----------------------------------------------------------------------------- data and features


def fashion_mnist(n_train: int | None = None, n_test: int | None = None):
    """Fashion-MNIST through sslbench's loader, optionally the first ``n_train``/``n_test`` images.

    A subset gets its own fingerprint so that sslbench's feature cache never
    mixes it up with the full dataset.
    """
    import dataclasses

    from sslbench.data import load_dataset

    data = load_dataset("fashion-mnist")
    if n_train is None and n_test is None:
        return data
    n_train = n_train or data.train_images.shape[0]
    n_test = n_test or data.test_images.shape[0]
    return dataclasses.replace(
        data,
        train_images=data.train_images[:n_train],
        train_labels=data.train_labels[:n_train],
        test_images=data.test_images[:n_test],
        test_labels=data.test_labels[:n_test],
        fingerprint=f"{data.fingerprint}-first{n_train}-{n_test}",
    )


def random_convnet_features(width: int, n_train: int | None = None, n_test: int | None = None, seed: int = 0):
    """Backbone features (``8 * width`` dims) of a random-init sslbench ConvNet on Fashion-MNIST.

    Extracted with sslbench's own :func:`sslbench.features.cached_features` and
    cached under ``CACHE/features`` (a second call is a cache hit).

    Returns:
        ``(FeatureSet, cache_hit, seconds)``.
    """
    import torch

    from sslbench.backbones import build_backbone
    from sslbench.features import cached_features

    data = fashion_mnist(n_train, n_test)
    torch.manual_seed(seed)
    encoder = build_backbone("convnet", data.channels, width)
    t0 = time.perf_counter()
    fs, _, hit = cached_features(encoder, data, CACHE / "features", "cpu", f"random_convnet_w{width}")
    return in_memory(fs), hit, time.perf_counter() - t0


def in_memory(fs):
    """``fs`` with its train and test rows read into memory as float32 arrays.

    The feature cache hands out memory maps; the benchmarks time compute, not disk reads.
    """
    import dataclasses

    from sslbench.types import Split

    def load(s: Split) -> Split:
        z = None if s.z is None else np.array(s.z, dtype=np.float32)
        return Split(np.array(s.x, dtype=np.float32), np.asarray(s.y), z)

    return dataclasses.replace(fs, train=load(fs.train), test=load(fs.test))


def feature_arrays(fs) -> dict[str, np.ndarray]:
    """Every array of a :class:`sslbench.types.FeatureSet` by a dotted name (``train.x``, ``pairs.za``, ...).

    Fields that are ``None`` (no projector, no transfer set, ...) are left out.
    """
    import dataclasses

    out: dict[str, np.ndarray] = {}
    for part in ("train", "test", "transfer", "pairs", "views"):
        record = getattr(fs, part)
        if record is None:
            continue
        for f in dataclasses.fields(record):
            arr = getattr(record, f.name)
            if arr is not None:
                out[f"{part}.{f.name}"] = arr
    return out


def features_with_extras(encoder, data, cache_dir: Path, projector=None, views=None, transfer=None,
                         transfer_name: str = "", seed: int = 0):
    """:func:`sslbench.features.cached_features` as ``sslbench run`` calls it, across its API versions.

    Newer versions take an ``Extras`` (projector, positive-pair views, transfer
    set); older ones a ``projector`` argument.

    Returns:
        ``(FeatureSet, encoder_hash, cache_hit)``.
    """
    import inspect

    from sslbench import features as F

    params = inspect.signature(F.cached_features).parameters
    if "extras" in params:
        extras = F.Extras(projector=projector, views=views, transfer=transfer, transfer_name=transfer_name, seed=seed)
        return F.cached_features(encoder, data, cache_dir, "cpu", "bench", extras)
    return F.cached_features(encoder, data, cache_dir, "cpu", "bench", projector)


def transfer_for(preset_name: str, data):
    """The preset's transfer set matched to ``data`` (as ``sslbench run`` builds it), or ``(None, "")``."""
    from sslbench.registry import registry

    name = getattr(registry("presets").get(preset_name), "transfer", "")
    if not name:
        return None, ""
    try:
        from sslbench.data import load_dataset
        from sslbench.data.transfer import transfer_set
    except ImportError:
        return None, ""
    return transfer_set(load_dataset(name), data), name
