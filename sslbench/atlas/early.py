"""The early call, scored post hoc: each stopping rule replayed on every run's monitor series.

A rule (:class:`sslbench.early_call.EarlyCallRule`, label-free readings only) calls
collapse at some reading or never. Against the run's final status (the collapse
protocol's, on the final encoder) a call is a true positive when the final status
is one of the rule's statuses. Per rule: precision with its exact
Clopper-Pearson 95% interval, recall, the median share of training at which it
calls (over its calls), and the compute it would have saved: the steps each
called run trained after the call, over all steps the scored runs trained.

The target is a call within the first :data:`TARGET_FRACTION` of the steps at
:data:`TARGET_PRECISION` precision or more: ``met`` on the point estimate
(precision >= 0.95 and median call fraction <= 0.10), ``met with confidence``
when the precision's lower bound is also >= 0.95.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sslbench.atlas.runs import AtlasRun
from sslbench.early_call import EarlyCallRule
from sslbench.stats import clopper_pearson

TARGET_FRACTION = 0.10
TARGET_PRECISION = 0.95
#: The rules replayed: the default (training's) first, then variants of it.
RULES = (EarlyCallRule(), *(EarlyCallRule(s, k, a) for s in (("complete",), ("complete", "dimensional"))
                            for k in (1, 2, 3) for a in (0.02, 0.1) if (s, k, a) != (("complete",), 2, 0.02)),
         *(EarlyCallRule(s, k, 0.02, t) for s in (("complete",), ("complete", "dimensional"))
           for k in (2, 3) for t in (1.05, 1.1)))


@dataclass(frozen=True)
class RuleScore:
    """One rule replayed on every scored run.

    Attributes:
        rule: Its description (:meth:`EarlyCallRule.describe`).
        statuses: The statuses it calls on.
        consecutive: Readings in a row it needs.
        after_fraction: Its warm-up share.
        default: Whether it is training's default rule.
        n_runs: Runs scored (monitor readings and a final status).
        tp: Called, and the final status is one of ``statuses``.
        fp: Called, and it is not.
        fn: Not called, and it is.
        tn: Not called, and it is not.
        precision: ``tp / (tp + fp)`` (``None`` without calls).
        precision_lo: Its Clopper-Pearson lower bound.
        precision_hi: Its upper bound.
        recall: ``tp / (tp + fn)`` (``None`` without positives).
        median_call_fraction: Median share of training at the call, over its calls.
        saved_fraction: Steps trained after the calls over all steps trained.
        target: ``met with confidence``, ``met``, or ``not met`` (module docstring).
    """

    rule: str
    statuses: tuple[str, ...]
    consecutive: int
    after_fraction: float
    default: bool
    n_runs: int
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    precision_lo: float | None
    precision_hi: float | None
    recall: float | None
    median_call_fraction: float | None
    saved_fraction: float
    target: str


def scored_runs(runs: Sequence[AtlasRun]) -> list[AtlasRun]:
    """The runs a rule can be scored on: monitor readings and a final status."""
    return [r for r in runs if r.monitor and r.status is not None]


def score(rule: EarlyCallRule, runs: Sequence[AtlasRun], default: bool = False) -> RuleScore:
    """Replay ``rule`` on ``runs`` (each with readings and a final status) and score it."""
    tp = fp = fn = tn = 0
    fractions, saved, total = [], 0, 0
    for r in runs:
        call = rule.call(r.monitor)
        positive = r.status in rule.statuses
        steps = r.steps_done or r.total_steps or r.monitor[-1].step
        total += steps
        if call is not None:
            fractions.append(call.fraction)
            saved += max(0, steps - call.step)
            tp, fp = tp + positive, fp + (not positive)
        else:
            fn, tn = fn + positive, tn + (not positive)
    calls = tp + fp
    precision = tp / calls if calls else None
    lo, hi = clopper_pearson(tp, calls) if calls else (None, None)
    median = float(statistics.median(fractions)) if fractions else None
    met = precision is not None and precision >= TARGET_PRECISION and median <= TARGET_FRACTION
    target = "met with confidence" if met and lo >= TARGET_PRECISION else "met" if met else "not met"
    return RuleScore(rule.describe(), rule.statuses, rule.consecutive, rule.after_fraction, default, len(runs),
                     tp, fp, fn, tn, precision, lo, hi, tp / (tp + fn) if tp + fn else None, median,
                     saved / total if total else 0.0, target)


def score_rules(runs: Sequence[AtlasRun], rules: Sequence[EarlyCallRule] = RULES) -> list[RuleScore]:
    """Every rule scored on the runs that have readings and a final status (the first rule is the default)."""
    scored = scored_runs(runs)
    if not scored:
        return []
    return [score(rule, scored, default=i == 0) for i, rule in enumerate(rules)]
