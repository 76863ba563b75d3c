"""The plugin API end to end: a third-party protocol package, pip-installed, found through
the ``sslbench.protocols`` entry-point group by ``ls``, ``run`` and ``eval``.

The package is installed with ``pip install --target`` into a temporary directory
that only this test's subprocesses see (on ``PYTHONPATH``), so the shared
environment never gains, and need not lose, the plugin; the fixture deletes it.
The registry reads entry points once per process, hence subprocesses for the CLI.
"""

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "sslbench-centroid"
version = "0.1.0"
dependencies = ["sslbench"]

[project.entry-points."sslbench.protocols"]
centroid = "sslbench_centroid:Centroid"

[tool.setuptools]
py-modules = ["sslbench_centroid"]
"""

MODULE = '''\
"""Nearest class centroid on frozen features: a minimal sslbench protocol plugin."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sslbench.protocol import Evaluation, Protocol
from sslbench.types import Direction, FeatureSet


def centroid_top1(train_x, train_y, test_x, test_y, normalize=True):
    """Top-1 accuracy of the nearest class mean.

    Args:
        train_x: (N, D) features; train_y: (N,) int labels.
        test_x: (M, D) features; test_y: (M,) int labels.
        normalize: l2-normalise features and means (cosine); else Euclidean.
    """
    def unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) if normalize else x

    tr, te = unit(train_x.astype(np.float64)), unit(test_x.astype(np.float64))
    classes = np.unique(train_y)
    means = unit(np.stack([tr[train_y == c].mean(axis=0) for c in classes]))
    dist = (te ** 2).sum(1, keepdims=True) - 2 * te @ means.T + (means ** 2).sum(1)
    return float((classes[dist.argmin(axis=1)] == test_y).mean())


@dataclass
class Centroid(Protocol):
    """Nearest class centroid (cosine) on l2-normalised features."""

    name: ClassVar[str] = "centroid"
    version: ClassVar[str] = "1"
    requires: ClassVar[frozenset[str]] = frozenset({"labels"})
    metrics: ClassVar[dict[str, Direction]] = {"top1": "higher"}
    main_metric: ClassVar[str] = "top1"

    normalize: bool = True

    def evaluate(self, features: FeatureSet, seed: int) -> Evaluation:
        train, test = features.train, features.test
        return Evaluation({"top1": centroid_top1(train.x, train.y, test.x, test.y, self.normalize)})
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """pip-install the plugin into a private site directory; delete it afterwards."""
    base = tmp_path_factory.mktemp("plugin")
    pkg, site = base / "pkg", base / "site"
    pkg.mkdir()
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "sslbench_centroid.py").write_text(MODULE)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "--disable-pip-version-check", "--root-user-action=ignore", "--target", str(site), str(pkg)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (site / "sslbench_centroid-0.1.0.dist-info" / "entry_points.txt").exists()
    yield site
    sys.modules.pop("sslbench_centroid", None)
    shutil.rmtree(site, ignore_errors=True)  # the uninstall: nothing else was installed anywhere


@pytest.fixture
def with_plugin(cli, plugin_site):
    """``with_plugin(*args)``: sslbench in a new process that sees the plugin (entry points are read once)."""
    return lambda *args: cli(*args, env={"PYTHONPATH": os.pathsep.join([str(ROOT), str(plugin_site)])},
                             subprocess_=True, timeout=300)


def test_ls_shows_the_plugin(with_plugin):
    proc = with_plugin("ls", "protocols")
    assert proc.rc == 0, proc.err
    line = next(ln for ln in proc.out.splitlines() if ln.split()[:1] == ["centroid"])
    assert "entry point sslbench_centroid:Centroid" in line


def test_run_writes_plugin_results(with_plugin, tmp_path):
    proc = with_plugin("run", "--preset", "smoke", "--epochs", "1", "--methods", "simsiam",
                       "--floors", "", "--protocols", "knn,centroid", "--out", str(tmp_path))
    assert proc.rc == 0, proc.err
    doc = json.loads((tmp_path / "simsiam" / "seed0" / "results" / "centroid.json").read_text())
    assert doc["protocol"]["name"] == "centroid" and doc["protocol"]["params"] == {"normalize": True}
    assert 0.0 <= doc["metrics"]["top1"] <= 1.0
    assert "centroid.top1" in proc.out


def test_eval_features_with_plugin(with_plugin, tmp_path):
    rng = np.random.default_rng(0)
    means = 10 * np.eye(8, dtype=np.float32)[:4]
    ytr, yte = np.arange(80) % 4, np.arange(40) % 4
    path = tmp_path / "feats.npz"
    np.savez(path, train_x=means[ytr] + rng.standard_normal((80, 8), dtype=np.float32), train_y=ytr,
             test_x=means[yte] + rng.standard_normal((40, 8), dtype=np.float32), test_y=yte)
    proc = with_plugin("eval", "--features", str(path), "--protocols", "centroid", "--out", str(tmp_path / "out"))
    assert proc.rc == 0, proc.err
    doc = json.loads((tmp_path / "out" / "feats" / "seed0" / "results" / "centroid.json").read_text())
    assert doc["metrics"] == {"top1": 1.0} and doc["encoder_kind"] == "external"


def test_plugin_keeps_the_protocol_contract(plugin_site, monkeypatch):
    from sslbench.testing import check_protocol

    monkeypatch.syspath_prepend(str(plugin_site))
    cls = importlib.import_module("sslbench_centroid").Centroid
    assert check_protocol(cls)[:4] == ["class_attributes", "params", "deterministic", "order_invariance"]
