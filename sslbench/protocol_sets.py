"""Named protocol sets: which protocols a run scores, with what parameters.

A sweep of hundreds of cells needs each cell's main metrics and collapse readings,
not every shot count. ``[run] protocol_set = "sweep"`` (or ``--protocol-set sweep``)
replaces the protocol list and sets default parameters for its protocols; the
user's own ``[protocols.NAME]`` tables still override them. The set's name goes into
every result's ``run_config``, and the parameters it set into each result's
``protocol`` block, so a result says what produced it, and a result of another set
is stale for this one (recomputed, never mixed).

The ``sweep`` set's costs and its agreement with the full suite are measured in
``benchmarks/bench_suite.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProtocolSet:
    """A named protocol list with default parameters.

    Attributes:
        name: Registry name.
        summary: One line for ``sslbench ls protocol_sets``.
        protocols: Registered protocol names, in order.
        params: Per protocol, the parameters this set changes from the protocol's defaults.
    """

    name: str
    summary: str
    protocols: tuple[str, ...]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def merged_params(self, user: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """This set's parameters with ``user``'s on top, protocol by protocol."""
        names = set(self.params) | set(user)
        return {n: {**self.params.get(n, {}), **user.get(n, {})} for n in sorted(names)}


FULL = ProtocolSet(
    "full", "every built-in protocol at its defaults (the default of sslbench run)",
    ("knn", "linear", "few_shot", "few_shot_transfer", "low_shot", "collapse"),
)
# kNN at k = 20 only: the extra k = 200 sets the search's depth, 10x the neighbours of k = 20.
# Three weight decays a hundredfold apart cover the choices the full grid's held-out
# selection made on the atlas's encoders (1e-6 to 1e-3); the choice stays on held-out train.
SWEEP = ProtocolSet(
    "sweep", "kNN (k = 20), a 3-point linear probe and the collapse readings: a sweep cell's main metrics",
    ("knn", "linear", "collapse"),
    {"knn": {"extra_k": ()}, "linear": {"wd_grid": (1e-6, 1e-4, 1e-2)}},
)
