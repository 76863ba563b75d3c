"""The one registry: methods, protocols, datasets, backbones and presets by name.

Core code never imports ``baselines/`` or ``protocols/``; it looks names up here.
Built-ins are declared as lazy ``"module:attr"`` strings in :mod:`sslbench.builtins`;
third-party plugins add entries through the entry-point groups
``sslbench.methods``, ``sslbench.protocols``, ``sslbench.datasets`` and
``sslbench.backbones``. A name registered twice is an error.

Names are checked and listed without importing anything: a built-in is a string
until first used, and a plugin's entry point gives its name from the installed
package's metadata (``importlib.metadata``) without loading its code. So
``sslbench --help``, ``sslbench ls`` and a misspelt name on the command line cost
no import of torch. ``sslbench ls`` shows a built-in's summary from
:mod:`sslbench.builtins`; a plugin's is read from the loaded object.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from importlib import metadata
from typing import Any

from sslbench.errors import SslbenchError, did_you_mean

KINDS = ("methods", "protocols", "protocol_sets", "datasets", "backbones", "presets")


class Registry:
    """Name -> object table for one kind, with lazy ``module:attr`` entries.

    Args:
        kind: Plural name of what is registered (e.g. ``"methods"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        self._summaries: dict[str, str] = {}
        self._plugins_loaded = False

    def register(self, name: str, obj: Any, source: str = "code", summary: str | None = None) -> None:
        """Add ``obj`` (or a lazy ``"module:attr"`` string) under ``name``.

        Args:
            name: The registry name.
            obj: The object, or ``"module:attr"`` imported on first :meth:`get`.
            source: Where it comes from (``builtin``, ``code`` or an entry point).
            summary: Its one-line summary, when known without importing it.

        Raises:
            SslbenchError: when ``name`` is already taken.
        """
        if name in self._entries:
            raise SslbenchError(
                f"{self.kind[:-1]} {name!r} is registered twice "
                f"({self._sources[name]} and {source})"
            )
        self._entries[name] = obj
        self._sources[name] = source
        if summary is not None:
            self._summaries[name] = summary

    def decorator(self, name: str) -> Callable[[Any], Any]:
        """``@registry.decorator("name")`` registers the decorated object."""

        def wrap(obj: Any) -> Any:
            self.register(name, obj)
            return obj

        return wrap

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=f"sslbench.{self.kind}"):
            if ep.name in self._entries and self._entries[ep.name] == ep.value:
                continue  # the same target declared twice is not a conflict
            self.register(ep.name, ep.value, source=f"entry point {ep.value}")

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load_plugins()
        return sorted(self._entries)

    def check(self, name: str) -> None:
        """Raise for an unknown ``name`` without importing anything.

        Raises:
            SslbenchError: for an unknown name, with a "did you mean".
        """
        self._load_plugins()
        if name not in self._entries:
            raise did_you_mean(name, self._entries, self.kind[:-1])

    def source(self, name: str) -> str:
        """Where ``name`` was registered from (``builtin``, ``code`` or an entry point)."""
        self.check(name)
        return self._sources[name]

    def summary(self, name: str) -> str:
        """The one-line summary of ``name`` as plain text: the one registered with it, else
        (a plugin, an object registered in code) the object's ``summary`` attribute or the
        first line of its docstring, which loads it."""
        self.check(name)
        if name not in self._summaries:
            self._summaries[name] = summary_of(self.get(name))
        return self._summaries[name]

    def get(self, name: str) -> Any:
        """Return the object for ``name``, importing it on first use.

        Raises:
            SslbenchError: for an unknown name, with a "did you mean".
        """
        self.check(name)
        obj = self._entries[name]
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            obj = getattr(importlib.import_module(module), attr)
            self._entries[name] = obj
        return obj

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._entries


_REGISTRIES: dict[str, Registry] = {}


def registry(kind: str) -> Registry:
    """The registry for ``kind`` (one of :data:`KINDS`), with built-ins loaded."""
    if kind not in KINDS:
        raise did_you_mean(kind, KINDS, "registry kind")
    if kind not in _REGISTRIES:
        from sslbench.builtins import BUILTINS

        reg = Registry(kind)
        for name, entry in BUILTINS[kind].items():
            reg.register(name, entry.target, source="builtin", summary=entry.summary)
        _REGISTRIES[kind] = reg
    return _REGISTRIES[kind]


#: reST inline markup: a ``literal`` and a :role:`target` (``~`` shows only the target's last part).
_LITERAL = re.compile(r"``(.+?)``")
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+?)`")


def plain_text(text: str) -> str:
    """``text`` without reST inline markup, as a terminal should show it.

    A double-backquoted literal keeps its text; ``:class:`FewShot``` becomes
    ``FewShot`` and ``:func:`~a.b.f``` becomes ``f`` (Sphinx shows a ``~`` target's
    last part).
    """
    text = _LITERAL.sub(r"\1", text)
    return _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)


def summary_of(obj: Any) -> str:
    """An object's one-line summary as plain text: its ``summary`` attribute, else the first
    line of its docstring (``""`` for neither)."""
    text = getattr(obj, "summary", None) or ((obj.__doc__ or "").strip().splitlines() or [""])[0]
    return plain_text(str(text))
