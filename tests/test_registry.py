"""The one registry, "did you mean" errors, and the layering rule of DESIGN.md."""

import ast
from pathlib import Path

import pytest

from sslbench.errors import SslbenchError
from sslbench.registry import KINDS, Registry, registry

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_name_suggests_the_closest():
    with pytest.raises(SslbenchError, match=r"unknown method 'simsaim'; did you mean 'simsiam'"):
        registry("methods").get("simsaim")


def test_duplicate_name_is_an_error():
    reg = Registry("methods")
    reg.register("a", object())
    with pytest.raises(SslbenchError, match="registered twice"):
        reg.register("a", object())


def test_lazy_entries_resolve_on_first_use():
    reg = Registry("protocols")
    reg.register("lazy", "sslbench.errors:SslbenchError")
    assert reg.get("lazy") is SslbenchError


@pytest.mark.parametrize("kind", KINDS)
def test_every_builtin_imports(kind):
    reg = registry(kind)
    assert reg.names()
    for name in reg.names():
        assert reg.get(name) is not None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module.split(".")[0])
    return mods


@pytest.mark.parametrize(
    "package, forbidden",
    [("sslbench", {"baselines", "protocols"}), ("protocols", {"baselines"}), ("baselines", {"protocols"})],
)
def test_layering(package, forbidden):
    for path in (ROOT / package).rglob("*.py"):
        bad = _imports(path) & forbidden
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
