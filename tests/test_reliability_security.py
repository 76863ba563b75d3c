"""Nothing sslbench reads can run code, and nothing a config names can write outside ``--out``."""

import ast
import builtins
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sslbench.config import load_toml
from sslbench.errors import SslbenchError
from sslbench.registry import registry
from sslbench.layout import RunLayout, check_path_name

ROOT = Path(__file__).resolve().parents[1]
RUN = Path("vicreg_mod/seed0")
ARGS = ["run", "--preset", "smoke", "--methods", "vicreg_mod", "--floors", "", "--protocols", "knn"]


class Evil:
    """Unpickling this creates ``marker``: the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cli_session):
    out = tmp_path_factory.mktemp("base") / "out"
    assert cli_session(*ARGS, "--out", str(out)).rc == 0
    return out


def _copy_without_results(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    shutil.rmtree(dst / RUN / "results")
    return dst


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle", "inside_the_state"])
def test_poisoned_training_checkpoint_is_refused_not_run(finished_run, tmp_path, cli, how):
    out = _copy_without_results(finished_run, tmp_path / "out")
    marker, ckpt = tmp_path / "PWNED", out / RUN / "checkpoint.pt"
    good = torch.load(ckpt, weights_only=True)
    if how == "torch.save":
        torch.save(Evil(marker), ckpt)
    elif how == "pickle":
        ckpt.write_bytes(pickle.dumps(Evil(marker)))
    else:
        torch.save({**good, "hook": Evil(marker)}, ckpt)
    rc, _, err = cli(*ARGS, "--out", str(out))
    assert not marker.exists()
    assert rc == 1 and "Traceback" not in err  # this run fails, reported; the sweep goes on
    line = next(ln for ln in err.splitlines() if ln.startswith("ERROR vicreg_mod/seed0"))
    assert f"refusing to load {ckpt}" in line and "nothing in it was run" in line
    assert not (out / RUN / "results" / "knn.json").exists()


def test_truncated_training_checkpoint_is_reported_with_what_to_do(finished_run, tmp_path, cli):
    out = _copy_without_results(finished_run, tmp_path / "out")
    ckpt = out / RUN / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    rc, _, err = cli(*ARGS, "--out", str(out))
    assert rc == 1
    assert "is truncated or corrupt" in err and "delete it" in err and "Traceback" not in err
    ckpt.unlink()  # what the message says to do: the run is retrained
    assert cli(*ARGS, "--out", str(out)).rc == 0


def test_poisoned_feature_cache_is_not_unpickled(finished_run, tmp_path, cli):
    out = _copy_without_results(finished_run, tmp_path / "out")
    marker = tmp_path / "PWNED"
    (entry,) = (out / "cache" / "features").iterdir()
    np.save(entry / "train_x.npy", np.array([Evil(marker)] * 3, dtype=object), allow_pickle=True)
    assert cli(*ARGS, "--out", str(out)).rc == 0  # the damaged entry is recomputed
    assert not marker.exists()
    assert np.load(entry / "train_x.npy").dtype == np.float32


def test_config_strings_are_never_evaluated(tmp_path):
    marker = tmp_path / "PWNED"
    code = f"__import__('os').system('touch {marker}')"
    f = tmp_path / "c.toml"
    f.write_text(f'[run]\ndevice = "{code}"\n[variants.v_eval]\nbase = "vicreg"\nsummary = "{code}"\n'
                 'loss = { cov_coeff = 3.0 }\n')
    methods = registry("methods")
    entries, sources = dict(methods._entries), dict(methods._sources)
    try:
        cfg = load_toml(f)
        assert cfg.device == code and methods.get("v_eval").summary == code
        with pytest.raises(SslbenchError, match="device must be"):
            cfg.resolved()
    finally:
        methods._entries, methods._sources = entries, sources
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../evil", "..", ".", "a/b", "/abs", ".hidden", "", "cache", "manifest.json",
                                  "x" * 200, "tab\there", "nul\x00"])
def test_names_that_would_escape_or_clash_are_refused(tmp_path, name):
    with pytest.raises(SslbenchError, match="cannot be used"):
        check_path_name(name, "variant name")
    with pytest.raises(SslbenchError):
        RunLayout(tmp_path).run(name, 0)
    f = tmp_path / "v.toml"
    f.write_text(f'[variants.{_quoted(name)}]\nbase = "vicreg"\nloss = {{ cov_coeff = 2.0 }}\n')
    with pytest.raises(SslbenchError, match="cannot be used"):
        load_toml(f)
    assert name not in registry("methods")


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\x00", "\\u0000") + '"'


@pytest.mark.parametrize("name", ["vicreg_cov4", "my.variant-2", "B+C"])
def test_plain_names_stay_inside_out(tmp_path, name):
    path = RunLayout(tmp_path).run(check_path_name(name, "variant name"), 3).result("knn").resolve()
    assert path.is_relative_to(tmp_path.resolve()) and path.parent.parent.name == "seed3"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            yield node, (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""), f


def test_no_code_path_evaluates_or_unpickles():
    """A guard over the sources: no eval/exec, every torch.load is weights_only, every np.load refuses pickles."""
    bad = []
    for path in sorted([*ROOT.glob("sslbench/**/*.py"), *ROOT.glob("protocols/**/*.py"), *ROOT.glob("baselines/**/*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        for node, name, func in _calls(tree):
            kw = {k.arg: k.value for k in node.keywords}
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(func, ast.Name) and name in ("eval", "exec", "compile", "__import__"):
                bad.append(f"{where}: {name}()")
            elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                owner = func.value.id
                if owner in ("pickle", "marshal", "dill", "cloudpickle") and name in ("load", "loads"):
                    bad.append(f"{where}: {owner}.{name}")
                elif owner == "torch" and name == "load" and not (
                        isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    bad.append(f"{where}: torch.load without weights_only=True")
                elif owner == "np" and name == "load" and not (
                        isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False):
                    bad.append(f"{where}: np.load without allow_pickle=False")
                elif owner in ("yaml",) and name == "load":
                    bad.append(f"{where}: yaml.load")
    assert bad == []
