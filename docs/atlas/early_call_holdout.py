"""The early-call rules chosen on some sweeps and scored on the others.

The atlas replays every rule on every run, so picking its best rule from that table
is selection on the data it is scored on. This script ranks the rules on the
selection sweeps (the VICReg and Barlow Twins knobs, run first) and reports the
chosen rule on the held-out sweeps (BYOL's tau, SimSiam's alpha and predictor lr,
the per-view forward, the boundary search).

    python docs/atlas/early_call_holdout.py OUT
"""

from __future__ import annotations

import sys

from sslbench.atlas.early import RULES, score, scored_runs
from sslbench.atlas.runs import read_runs

SELECTION = ("vicreg_mu", "vicreg_nu", "bt_lambda", "vicreg_mu_batch", "calibration")


def _line(s) -> str:
    p = "-" if s.precision is None else f"{s.precision:.2f} [{s.precision_lo:.2f}, {s.precision_hi:.2f}]"
    r = "-" if s.recall is None else f"{s.recall:.2f}"
    m = "-" if s.median_call_fraction is None else f"{s.median_call_fraction:.2f}"
    return f"| {s.rule} | {s.n_runs} | {s.tp}/{s.fp}/{s.fn}/{s.tn} | {p} | {r} | {m} | {s.saved_fraction:.2f} |"


def main(out: str) -> None:
    runs = scored_runs(read_runs([out]).runs)
    select = [r for r in runs if r.sweep in SELECTION]
    held = [r for r in runs if r.sweep not in SELECTION]
    # The chosen rule: the highest precision on the selection sweeps among rules with recall >= 0.5,
    # ties to the higher recall.
    ranked = sorted((score(rule, select) for rule in RULES),
                    key=lambda s: ((s.recall or 0) < 0.5, -(s.precision or 0), -(s.recall or 0)))
    best = ranked[0]
    rule = next(r for r in RULES if r.describe() == best.rule)
    print("| rule | runs | TP/FP/FN/TN | precision [CP 95%] | recall | median call | compute saved |")
    print("|---|---|---|---|---|---|---|")
    print(_line(best) + " selection sweeps")
    print(_line(score(rule, held)) + " held-out sweeps")
    print(_line(score(RULES[0], held)) + " held-out sweeps, training's default rule")


if __name__ == "__main__":
    main(sys.argv[1])
