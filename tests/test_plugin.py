"""The plugin API end to end: the protocol package of docs/plugins.md, pip-installed, found through
the ``sslbench.protocols`` entry-point group by ``ls``, ``run`` and ``eval``.

The package's files are read from docs/plugins.md's code blocks (each starts with a
``# <path>`` line), so the documented layout is the one that is installed and
tested. It is installed with ``pip install --target`` into a temporary directory
that only this test's subprocesses see (on ``PYTHONPATH``), so the shared
environment never gains, and need not lose, the plugin; the fixture deletes it.
The registry reads entry points once per process, hence subprocesses for the CLI.
"""

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"


def documented_files() -> dict[str, str]:
    """Path -> text of every fenced block in docs/plugins.md whose first line is ``# <path>``."""
    blocks = re.findall(r"```[a-z]*\n# ([\w./-]+)\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return {path: body for path, body in blocks}


def _pip_install(pkg: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "--disable-pip-version-check", "--root-user-action=ignore", "--target", str(site), str(pkg)],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def plugin_pkg(tmp_path_factory):
    """The documented package laid out on disk."""
    pkg = tmp_path_factory.mktemp("plugin") / "sslbench-centroid"
    for path, text in documented_files().items():
        (pkg / path).parent.mkdir(parents=True, exist_ok=True)
        (pkg / path).write_text(text)
    return pkg


@pytest.fixture(scope="module")
def plugin_site(plugin_pkg):
    """pip-install the plugin into a private site directory; delete it afterwards."""
    site = plugin_pkg.parent / "site"
    proc = _pip_install(plugin_pkg, site)
    assert proc.returncode == 0, proc.stderr
    assert (site / "sslbench_centroid-0.1.0.dist-info" / "entry_points.txt").exists()
    yield site
    sys.modules.pop("sslbench_centroid", None)
    shutil.rmtree(site, ignore_errors=True)  # the uninstall: nothing else was installed anywhere


def test_the_documented_layout_installs_the_package_and_not_its_tests(plugin_pkg, plugin_site):
    assert sorted(documented_files()) == ["pyproject.toml", "src/sslbench_centroid/__init__.py", "tests/test_centroid.py"]
    assert (plugin_site / "sslbench_centroid" / "__init__.py").exists()
    assert not (plugin_site / "tests").exists() and not list(plugin_site.rglob("test_centroid.py"))


def test_a_test_file_beside_a_single_module_breaks_the_install(tmp_path):
    """Why docs/plugins.md puts the code under src/: the flat layout it warns about does not install."""
    files = documented_files()
    (tmp_path / "pyproject.toml").write_text(files["pyproject.toml"])
    (tmp_path / "sslbench_centroid.py").write_text(files["src/sslbench_centroid/__init__.py"])
    (tmp_path / "test_centroid.py").write_text(files["tests/test_centroid.py"])
    proc = _pip_install(tmp_path, tmp_path / "site")
    assert proc.returncode != 0 and "Multiple top-level modules discovered in a flat-layout" in proc.stdout + proc.stderr


def test_the_plugins_own_tests_pass_against_the_installed_package(plugin_pkg, plugin_site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(plugin_pkg / "tests")],
                          capture_output=True, text=True, cwd=plugin_pkg.parent, env=env, timeout=300, check=False)
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout + proc.stderr


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
    assert "Nearest class centroid (cosine) on l2-normalised features." in line  # loaded for its docstring


def test_a_misspelt_plugin_name_is_caught_without_loading_it(plugin_site, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(plugin_site)])}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sslbench", "run", "--preset", "smoke",
                           "--protocols", "knn,centroidd", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False)
    assert proc.returncode == 2 and "did you mean 'centroid'" in proc.stderr
    imported = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}
    assert "sslbench_centroid" not in imported and "torch" not in imported


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
