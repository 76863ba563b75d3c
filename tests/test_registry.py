"""The one registry, "did you mean" errors, and the layering rules (docs/layout.md)."""

import ast
from pathlib import Path

import pytest

from sslbench.builtins import BUILTINS
from sslbench.errors import SslbenchError
from sslbench.registry import KINDS, Registry, plain_text, registry, summary_of

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


@pytest.mark.parametrize("kind, name", [(k, n) for k in KINDS for n in BUILTINS[k]])
def test_builtin_summaries_are_the_targets_own(kind, name):
    """The summary ``ls`` shows without importing is the one the loaded object gives."""
    assert BUILTINS[kind][name].summary == summary_of(registry(kind).get(name))


@pytest.mark.parametrize(
    "text, plain",
    [
        ("train ``(50000, 3, 32, 32)`` uint8", "train (50000, 3, 32, 32) uint8"),
        (":class:`FewShot` on a transfer set", "FewShot on a transfer set"),
        ("see :func:`~sslbench.data.fingerprint` and :mod:`sslbench.io`", "see fingerprint and sslbench.io"),
        ("no markup: a `single` backquote stays", "no markup: a `single` backquote stays"),
    ],
)
def test_plain_text_drops_rest_markup(text, plain):
    assert plain_text(text) == plain


def test_names_are_checked_without_importing_the_target():
    reg = Registry("methods")
    reg.register("ghost", "no_such_module_anywhere:GHOST", summary="a target that cannot be imported")
    reg.check("ghost")
    assert reg.summary("ghost") == "a target that cannot be imported" and reg.source("ghost") == "code"
    with pytest.raises(SslbenchError, match="did you mean 'ghost'"):
        reg.check("ghots")
    with pytest.raises(ModuleNotFoundError):
        reg.get("ghost")


def test_summary_of_an_object_registered_without_one_is_its_docstring():
    class Thing:
        """A :class:`Thing` with ``markup``.

        More text.
        """

    reg = Registry("protocols")
    reg.register("thing", Thing)
    assert reg.summary("thing") == "A Thing with markup."


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports count), but not under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    mods = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
    return mods


@pytest.mark.parametrize(
    "package, forbidden",
    [("sslbench", {"baselines", "protocols"}), ("protocols", {"baselines"}), ("baselines", {"protocols"})],
)
def test_layering(package, forbidden):
    for path in (ROOT / package).rglob("*.py"):
        bad = {m.split(".")[0] for m in _imports(path)} & forbidden
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


#: The floors of ``sslbench/``, bottom first: a module imports only its own floor and those below.
LAYERS = {
    "contracts": ["errors", "faults", "interrupts", "early_call", "types", "stats", "embedding_stats", "registry", "builtins", "presets", "protocol_sets", "json_fields", "splits",
                  "records", "protocol", "method", "bisection"],
    "persistence": ["io", "layout", "lock", "store", "training_log", "manifest"],
    "engines": ["augment", "backbones", "heads", "optim", "distributed", "data", "features", "train", "encoders",
                "feature_files", "checkpoint_formats", "preprocess"],
    "orchestration": ["config", "sweep", "bisect_sweep", "executors", "scoring", "status", "runner", "external"],
    "readers": ["leaderboard", "leaderboard_render", "compare", "analysis", "atlas", "report"],
    "command line": ["cli", "__main__", "testing", "__init__"],
}
FLOOR = {f"sslbench.{m}": i for i, mods in enumerate(LAYERS.values()) for m in mods}


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT / "sslbench").with_suffix("")
    return f"sslbench.{rel.parts[0]}" if rel.parts[0] != "__init__" or len(rel.parts) > 1 else "sslbench.__init__"


def _floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOOR.get(".".join(parts[:2])) if parts[0] == "sslbench" and len(parts) > 1 else None


def test_every_sslbench_module_has_a_floor():
    missing = sorted({_module(p) for p in (ROOT / "sslbench").rglob("*.py")} - set(FLOOR))
    assert not missing, f"add {missing} to LAYERS (and to docs/layout.md)"


def test_nothing_imports_upward_inside_sslbench():
    names = list(LAYERS)
    bad = []
    for path in sorted((ROOT / "sslbench").rglob("*.py")):
        mine = FLOOR[_module(path)]
        for dep in _imports(path):
            floor = _floor(dep)
            if floor is not None and floor > mine:
                bad.append(f"{path.relative_to(ROOT)} ({names[mine]}) imports {dep} ({names[floor]})")
    assert not bad, "\n".join(bad)


def test_the_layout_doc_names_every_module():
    layout = (ROOT / "docs" / "layout.md").read_text()
    missing = [m for m in FLOOR if m not in ("sslbench.__init__", "sslbench.__main__")
               and f"`{m.removeprefix('sslbench.')}" not in layout]
    assert not missing, f"docs/layout.md does not name {missing}"
