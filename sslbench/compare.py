"""``sslbench compare BASELINE CURRENT``: a regression gate on leaderboard metrics.

Each input is a run directory (``--out`` of ``sslbench run``/``eval``), a
directory holding a ``leaderboard.json``, a ``leaderboard.json`` file (schema 2 or 3)
or a single result JSON. Both sides are reduced to ``(method, metric) ->
(mean, 95% CI half-width, direction)`` by :mod:`sslbench.leaderboard`.

Every ``(method, metric)`` on either side is compared: the directed metrics
(``<protocol>.<metric>``, in the direction the protocol declares) and the label
metrics: every label a protocol declares with a severity order (such as
``collapse.status``) and ``train.status``.

Numbers: ``drop`` is the change in the worse direction (``baseline - current``
for a ``higher`` metric). It is a **REGRESSION** when::

    drop > allowed = max(tolerance, ci_mult * sqrt(ci_baseline**2 + ci_current**2))

with a NaN CI (one seed) counted as 0, and **improved** when ``-drop > allowed``.
``tolerance`` is ``--abs-tol`` (default :data:`ABS_TOL` = 0.01, i.e. one point of
accuracy) unless a ``--tol PATTERN=VALUE`` rule or a protocol's declared default
(the collapse suite allows RankMe, on the scale of the feature dimension, 5% of
its baseline) matches the metric; ``VALUE`` is absolute, or relative to
``|baseline|`` when it ends in ``%``. ``--ci-mult`` defaults to
:data:`CI_MULT` = 1.

Labels: a change to a worse state in the declared order (``healthy`` ->
``dimensional`` -> ``complete``; ``finished`` -> ``collapsed`` -> ``diverged``) is a REGRESSION;
seeds that disagree are joined with ``/`` and the worst one counts. A change
of a label with no known order is a REGRESSION too.

A metric present on one side only is **missing** and fails: a diverged run
(no metrics) or a protocol the baseline lacks never passes silently. So is a
metric whose value is NaN (or infinite) on either side, both sides included: a
NaN compares as neither better nor worse, so it would otherwise always pass.
(A ``leaderboard.json`` written by pandas stores NaN as ``null``, which reads as
not measured; result records and an explicit ``NaN`` keep it.) Restrict what is
compared with ``--metrics``.

Every tolerance (``--abs-tol``, ``--ci-mult``, each ``--tol`` value) must be a
finite number >= 0: a NaN allowance would pass any drop.

Exit codes at the CLI: 0 pass, 1 regression or missing, 2 unusable input
(an unreadable or malformed file, a bad tolerance), so CI can tell a broken
baseline from a drop.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


from sslbench import leaderboard, leaderboard_render
from sslbench.errors import SslbenchError, did_you_mean
from sslbench.leaderboard import TRAIN_LABEL, Leaderboard, label_severity
from sslbench.records import ResultRecord
from sslbench.store import find_records
from sslbench.io import read_json_object

ABS_TOL = 0.01
CI_MULT = 1.0
VERDICTS = ("ok", "improved", "REGRESSION", "missing")
FAILING = frozenset({"REGRESSION", "missing"})


@dataclass(frozen=True)
class Entry:
    """One ``(method, metric)`` of one side.

    Attributes:
        value: Mean over seeds (float) or label (str).
        ci: 95% half-width over seeds; NaN for one seed or a label.
        direction: ``"higher"``, ``"lower"`` or ``"label"``.
        n_seeds: Seeds averaged.
    """

    value: float | str
    ci: float
    direction: str
    n_seeds: int


@dataclass
class Summary:
    """One side of a comparison.

    Attributes:
        source: Where it was read from (for messages).
        entries: ``(method, metric) -> Entry``, in table order.
        settings: Protocol name -> ``{"version", "params"}``.
        fingerprints: Data fingerprints of the results.
        main: Main metric columns (``<protocol>.<metric>``).
        labels: Label column -> its values in severity order (best first).
        tolerances: Column pattern -> the protocols' default tolerance.
    """

    source: str
    entries: dict[tuple[str, str], Entry]
    settings: dict[str, Any] = field(default_factory=dict)
    fingerprints: list[str] = field(default_factory=list)
    main: list[str] = field(default_factory=list)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tolerances: dict[str, str] = field(default_factory=dict)

    def methods(self) -> list[str]:
        """Row names, in table order."""
        return list(dict.fromkeys(m for m, _ in self.entries))


@dataclass
class Row:
    """One line of the comparison table (``delta = current - baseline``)."""

    method: str
    metric: str
    direction: str
    baseline: float | str | None
    current: float | str | None
    baseline_ci: float
    current_ci: float
    delta: float
    allowed: float
    verdict: str


@dataclass
class Comparison:
    """The result of :func:`compare`.

    Attributes:
        rows: One per compared ``(method, metric)``.
        warnings: Settings or data that differ between the sides.
        params: ``abs_tol``, ``ci_mult``, ``tolerances``, ``metrics``.
        baseline: Source of the baseline.
        current: Source of the current side.
    """

    rows: list[Row]
    warnings: list[str]
    params: dict[str, Any]
    baseline: str
    current: str

    @property
    def failures(self) -> list[Row]:
        """Rows whose verdict is REGRESSION or missing."""
        return [r for r in self.rows if r.verdict in FAILING]

    @property
    def passed(self) -> bool:
        """No REGRESSION and nothing missing."""
        return not self.failures

    def counts(self) -> dict[str, int]:
        """Number of rows per verdict."""
        return {v: sum(r.verdict == v for r in self.rows) for v in VERDICTS}

    def summary_line(self) -> str:
        """``PASS``/``FAIL`` and the counts per verdict."""
        c = self.counts()
        return f"{'PASS' if self.passed else 'FAIL'}: {len(self.rows)} compared, " + ", ".join(f"{n} {v}" for v, n in c.items())

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable document (NaN as null)."""
        rows = [{k: _json_value(v) for k, v in asdict(r).items()} for r in self.rows]
        return {"schema_version": 1, "baseline": self.baseline, "current": self.current, "params": self.params,
                "passed": self.passed, "counts": self.counts(), "warnings": self.warnings, "rows": rows}

    def format_table(self, only_failures: bool = False) -> str:
        """The comparison as a fixed-width text table, warnings and the summary line."""
        rows = self.failures if only_failures else self.rows
        head = ["method", "metric", "baseline", "current", "delta", "allowed", "verdict"]
        body = [[r.method, r.metric, _value(r.baseline, r.baseline_ci), _value(r.current, r.current_ci),
                 _num(r.delta, signed=True), _num(r.allowed), r.verdict] for r in rows]
        lines = []
        if body or not only_failures:
            widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
            lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head, *body]]
            lines.insert(1, "  ".join("-" * w for w in widths))
        lines += [f"WARNING: {w}" for w in self.warnings]
        lines.append(self.summary_line())
        return "\n".join(lines) + "\n"


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _num(v: float, signed: bool = False) -> str:
    if not isinstance(v, float) or math.isnan(v):
        return ""
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def _value(v: float | str | None, ci: float) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if not math.isfinite(v):
        return str(v)  # nan, inf: shown, and the row is missing
    return _num(v) + (f" ± {ci:.4f}" if math.isfinite(ci) else "")


def _float(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else float("nan")


# ---------------------------------------------------------------- reading inputs


def summary_from_leaderboard(board: Leaderboard, source: str) -> Summary:
    """A :class:`Summary` of an aggregated leaderboard (built from results or read from a file)."""
    entries: dict[tuple[str, str], Entry] = {}
    label_cols = [*board.label_columns(), TRAIN_LABEL] if not board.empty else []
    for _, row in board.table.iterrows():
        m, n = row["method"], _count(row.get("n_seeds"), source)
        for col, d in board.directions.items():
            v = _float(row.get(col))
            if math.isfinite(v) or (m, col) in board.measured:  # a measured NaN compares as missing
                entries[(m, col)] = Entry(v, _float(row.get(f"{col}_ci95")), d, n)
        for col in label_cols:
            if isinstance(row.get(col), str):
                entries[(m, col)] = Entry(row[col], float("nan"), "label", n)
    return Summary(source, entries, board.settings, board.fingerprints, board.main, dict(board.labels),
                   dict(board.tolerances))


def _count(v: Any, source: str) -> int:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return 0
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise SslbenchError(f"{source}: n_seeds must be a whole number, got {v!r}")
    return int(v)


def summary_from_results(records: list[ResultRecord], source: str) -> Summary:
    """A :class:`Summary` of result records, aggregated by :func:`sslbench.leaderboard.build`."""
    return summary_from_leaderboard(leaderboard.build(records), source)


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, "input")


def summary_from_doc(doc: dict[str, Any], source: str) -> Summary:
    """A :class:`Summary` of a loaded leaderboard.json or result JSON.

    Raises:
        SslbenchError: when the document is neither, or is malformed.
    """
    if "rows" in doc:
        return summary_from_leaderboard(leaderboard_render.from_json(doc, source), source)
    if "protocol" in doc and "metrics" in doc and "method" in doc:
        return summary_from_results([ResultRecord.from_json(doc, source)], source)
    raise SslbenchError(f"{source}: neither a leaderboard.json (with 'rows') nor a result JSON (with 'protocol' and 'metrics')")


def load(source: str | Path | dict[str, Any]) -> Summary:
    """Read one side: a run directory, a directory with a leaderboard.json, a leaderboard.json or a result JSON.

    Args:
        source: A path, or an already loaded leaderboard/result document.

    Raises:
        SslbenchError: for a missing path or a file that is neither.
    """
    if isinstance(source, dict):
        return summary_from_doc(source, "<dict>")
    path = Path(source)
    if path.is_dir():
        records = find_records(path)
        if records:
            return summary_from_results(records, str(path))
        if (path / "leaderboard.json").is_file():
            return summary_from_doc(_read_json(path / "leaderboard.json"), str(path / "leaderboard.json"))
        raise SslbenchError(f"{path}: no results (<method>/seed<k>/results/*.json) and no leaderboard.json")
    if path.exists():
        return summary_from_doc(_read_json(path), str(path))  # a FIFO or device is refused there
    raise SslbenchError(f"{path} does not exist (expected a run directory, a leaderboard.json or a result JSON)")


# ---------------------------------------------------------------- comparing


def check_tolerance(value: Any, what: str) -> float:
    """``value`` as a float when it is a finite number >= 0 (a NaN allowance would pass every drop).

    Raises:
        SslbenchError: naming ``what`` (``--abs-tol``, ``--tol 'knn.*=nan'``).
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(value, bool) or not math.isfinite(x) or x < 0:
        raise SslbenchError(f"{what} must be a finite number >= 0, got {value!r}")
    return x


def parse_tolerances(specs: list[str] | None) -> dict[str, str]:
    """``["PATTERN=VALUE", ...]`` -> ``{pattern: value}``; VALUE a finite float >= 0, optionally ending in ``%``.

    Raises:
        SslbenchError: for a malformed rule, or a VALUE that is NaN, infinite or negative.
    """
    rules: dict[str, str] = {}
    for spec in specs or []:
        pattern, sep, value = spec.partition("=")
        try:
            if not sep or not pattern.strip():
                raise ValueError
            float(value.removesuffix("%"))
        except ValueError:
            raise SslbenchError(f"--tol {spec!r}: expected PATTERN=VALUE, e.g. 'knn.*=0.02' or 'collapse.rankme=10%'") from None
        check_tolerance(value.strip().removesuffix("%"), f"--tol {spec!r}: VALUE")
        rules[pattern.strip()] = value.strip()
    return rules


def tolerance(metric: str, baseline: float, abs_tol: float, rules: dict[str, str]) -> float:
    """The tolerance of one metric: the first matching rule (user rules, then the protocols'
    declared defaults), else ``abs_tol``."""
    for pattern, value in rules.items():
        if fnmatch.fnmatchcase(metric, pattern):
            if value.endswith("%"):
                return float(value[:-1]) / 100 * abs(baseline)
            return float(value)
    return abs_tol


def _ci(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _compare_numbers(b: Entry, c: Entry, metric: str, abs_tol: float, ci_mult: float, rules: dict[str, str]) -> tuple[float, float, str]:
    delta = float(c.value) - float(b.value)
    if not math.isfinite(delta):
        return delta, float("nan"), "REGRESSION"
    drop = -delta if b.direction == "higher" else delta
    allowed = max(tolerance(metric, float(b.value), abs_tol, rules), ci_mult * math.hypot(_ci(b.ci), _ci(c.ci)))
    verdict = "REGRESSION" if drop > allowed else "improved" if -drop > allowed else "ok"
    return delta, allowed, verdict


def _compare_labels(b: str, c: str, severity: Callable[[str], int | None]) -> str:
    sb, sc = severity(b), severity(c)
    if sb is None or sc is None:
        return "ok" if b == c else "REGRESSION"
    return "REGRESSION" if sc > sb else "improved" if sc < sb else "ok"


def select_metrics(keys: list[tuple[str, str]], metrics: list[str] | None, main: set[str]) -> list[tuple[str, str]]:
    """Keep the keys whose metric matches one of ``metrics``.

    Each item is a column name (``knn.top1``), a protocol name (all its
    metrics), an fnmatch pattern (``collapse.*rankme``) or ``main`` (every
    protocol's main metric).

    Raises:
        SslbenchError: for an item that matches nothing, with the closest names.
    """
    if not metrics:
        return keys
    names = list(dict.fromkeys(m for _, m in keys))
    chosen: set[str] = set()
    for item in metrics:
        hit = {n for n in names if (item == "main" and n in main) or n == item or n.split(".")[0] == item
               or fnmatch.fnmatchcase(n, item)}
        if not hit:
            raise did_you_mean(item, sorted({*names, *(n.split(".")[0] for n in names), "main"}), "metric")
        chosen |= hit
    return [k for k in keys if k[1] in chosen]


def _settings_warnings(b: Summary, c: Summary) -> list[str]:
    out = []
    for proto in sorted(set(b.settings) & set(c.settings)):
        sb, sc = b.settings[proto], c.settings[proto]
        if sb.get("version") != sc.get("version"):
            out.append(f"{proto}: protocol version {sb.get('version')} in the baseline, {sc.get('version')} now: "
                       "the numbers may not be comparable (update the baseline)")
        elif sb.get("params") != sc.get("params"):
            diff = sorted(k for k in {*sb.get("params", {}), *sc.get("params", {})}
                          if sb.get("params", {}).get(k) != sc.get("params", {}).get(k))
            out.append(f"{proto}: parameters differ ({', '.join(diff)})")
    if b.fingerprints and c.fingerprints and set(b.fingerprints) != set(c.fingerprints):
        out.append("the data fingerprints differ: baseline and current were measured on different data")
    return out


def compare(
    baseline: Summary,
    current: Summary,
    *,
    abs_tol: float = ABS_TOL,
    ci_mult: float = CI_MULT,
    tolerances: dict[str, str] | None = None,
    metrics: list[str] | None = None,
) -> Comparison:
    """Compare every ``(method, metric)`` of two sides (see the module docstring for the rule).

    Args:
        baseline: The reference side.
        current: The side under test.
        abs_tol: Default tolerance on a drop.
        ci_mult: Multiple of the combined CI half-width allowed.
        tolerances: ``pattern -> value`` rules (see :func:`parse_tolerances`).
        metrics: Restrict to these metrics (see :func:`select_metrics`).

    Returns:
        The :class:`Comparison`.

    Raises:
        SslbenchError: for a tolerance that is not a finite number >= 0, or an unknown ``metrics`` item.
    """
    abs_tol = check_tolerance(abs_tol, "--abs-tol")
    ci_mult = check_tolerance(ci_mult, "--ci-mult")
    user = tolerances or {}
    for pattern, value in user.items():
        check_tolerance(str(value).strip().removesuffix("%"), f"tolerance {pattern!r}={value!r}")
    defaults = {**baseline.tolerances, **current.tolerances}
    for pattern, value in defaults.items():  # read from the inputs: a damaged one may declare anything
        check_tolerance(str(value).strip().removesuffix("%"), f"the inputs' declared tolerance {pattern!r}={value!r}")
    rules = {**user, **{k: v for k, v in defaults.items() if k not in user}}  # user rules match first
    orders = {**baseline.labels, **current.labels}
    keys = list(dict.fromkeys([*baseline.entries, *current.entries]))
    main = {*baseline.main, *current.main}
    rows = [_row(k, baseline.entries.get(k), current.entries.get(k), abs_tol, ci_mult, rules, orders)
            for k in select_metrics(keys, metrics, main)]
    params = {"abs_tol": abs_tol, "ci_mult": ci_mult, "tolerances": {**defaults, **user}, "metrics": metrics}
    return Comparison(rows, _settings_warnings(baseline, current), params, baseline.source, current.source)


def _row(key: tuple[str, str], b: Entry | None, c: Entry | None, abs_tol: float, ci_mult: float,
         rules: dict[str, str], orders: dict[str, tuple[str, ...]]) -> Row:
    method, metric = key
    nan = float("nan")
    ref = b or c
    assert ref is not None
    if b is None or c is None:
        return Row(method, metric, ref.direction, b.value if b else None, c.value if c else None,
                   b.ci if b else nan, c.ci if c else nan, nan, nan, "missing")
    if b.direction == "label" or isinstance(b.value, str) or isinstance(c.value, str):
        return Row(method, metric, "label", b.value, c.value, nan, nan, nan, nan,
                   _compare_labels(str(b.value), str(c.value), lambda v: label_severity(orders.get(metric), v)))
    if not (math.isfinite(b.value) and math.isfinite(c.value)):  # NaN on either side, or both: no value
        return Row(method, metric, b.direction, b.value, c.value, b.ci, c.ci, nan, nan, "missing")
    delta, allowed, verdict = _compare_numbers(b, c, metric, abs_tol, ci_mult, rules)
    return Row(method, metric, b.direction, b.value, c.value, b.ci, c.ci, delta, allowed, verdict)


# ---------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``sslbench compare``."""
    p.add_argument("baseline", help="run directory, directory with leaderboard.json, leaderboard.json or result JSON")
    p.add_argument("current", help="the same kinds of input, for the run under test")
    p.add_argument("--abs-tol", type=float, default=ABS_TOL, help=f"default allowed drop (default {ABS_TOL})")
    p.add_argument("--ci-mult", type=float, default=CI_MULT,
                   help=f"allowed drop in units of the combined 95%% CI half-width (default {CI_MULT:g})")
    p.add_argument("--tol", action="append", metavar="PATTERN=VALUE",
                   help="tolerance for matching metrics, absolute or with %% relative to the baseline "
                        "(repeatable; e.g. 'knn.*=0.02', 'collapse.rankme=10%%')")
    p.add_argument("--metrics", type=lambda s: [t.strip() for t in s.split(",") if t.strip()],
                   help="comma-separated metrics, protocols, patterns or 'main' (default: all)")
    p.add_argument("--json", help="also write the comparison as JSON to this file")
    p.add_argument("--failures-only", action="store_true", help="print only REGRESSION and missing rows")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``sslbench compare``: print the table, write ``--json``; 0 pass, 1 fail (2 via SslbenchError)."""
    from sslbench.io import atomic_write_json

    result = compare(load(args.baseline), load(args.current), abs_tol=args.abs_tol, ci_mult=args.ci_mult,
                     tolerances=parse_tolerances(args.tol), metrics=args.metrics)
    print(result.format_table(only_failures=args.failures_only), end="")
    if args.json:
        atomic_write_json(Path(args.json), result.to_json())
    return 0 if result.passed else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m sslbench.compare BASELINE CURRENT ...``: the same as ``sslbench compare``."""
    p = argparse.ArgumentParser(prog="sslbench compare", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_cli(args)
    except SslbenchError as e:
        print(f"sslbench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
