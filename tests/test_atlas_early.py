"""The early-call rules replayed on constructed monitor series: precision, recall, call fraction,
compute saved and the target verdict, counted by hand; onset and settle per cell."""

import pytest

from sslbench.atlas.cells import all_cells, onset_fraction
from sslbench.atlas.early import score, score_rules
from sslbench.atlas.runs import AtlasRun
from sslbench.early_call import EarlyCallRule, MonitorReading

TOTAL = 100


def _monitor(statuses: str) -> tuple[MonitorReading, ...]:
    """One reading every 5 steps of 100: ``h``, ``d``, ``c`` per reading."""
    names = {"h": "healthy", "d": "dimensional", "c": "complete"}
    return tuple(MonitorReading(5 * (i + 1), 5 * (i + 1) / TOTAL, names[s], 0.5, 5.0, -2.0)
                 for i, s in enumerate(statuses))


def _run(seed, final, statuses, done=TOTAL):
    return AtlasRun(f"s/seed{seed}", "s", "vicreg", (("loss.x", 1),), seed, {}, {"knn": 0.5}, final,
                    total_steps=TOTAL, steps_done=done, monitor=_monitor(statuses), epochs=2)


@pytest.fixture
def runs():
    return [
        _run(0, "complete", "hcc" + "c" * 17),          # called at step 15: true positive
        _run(1, "complete", "hhhcc", done=25),          # stopped at 25, called at 25: TP, saves nothing
        _run(2, "healthy", "hcchhhhhhhhhhhhhhhhh"),     # warm-up artefact: false positive at step 15
        _run(3, "healthy", "h" * 20),                   # true negative
        _run(4, "complete", "hdhdhdhdhdhdhdhdhdhd"),   # never reads complete: false negative
    ]


def test_precision_recall_call_fraction_and_saved_compute(runs):
    s = score(EarlyCallRule(("complete",), 2, 0.02), runs)
    assert (s.tp, s.fp, s.fn, s.tn) == (2, 1, 1, 1)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.median_call_fraction == pytest.approx(0.15)  # calls at 0.15, 0.25, 0.15
    assert s.saved_fraction == pytest.approx((85 + 0 + 85) / (100 + 25 + 100 + 100 + 100))
    assert s.target == "not met"


def test_a_later_warmup_drops_the_false_positive_and_the_rule_set_starts_with_the_default(runs):
    s = score(EarlyCallRule(("complete",), 2, 0.2), runs)
    assert (s.tp, s.fp, s.fn, s.tn) == (2, 0, 1, 2)
    scores = score_rules(runs)
    assert scores[0].default and scores[0].rule == EarlyCallRule().describe()
    both = score(EarlyCallRule(("complete", "dimensional"), 1, 0.0), runs)
    assert both.fn == 0 and both.recall == 1.0  # run 4 is called on its first dimensional reading


def test_the_target_needs_precision_and_an_early_median_call():
    runs = [_run(i, "complete", "hc" + "c" * 18) for i in range(72)] + [_run(99, "healthy", "h" * 20)]
    s = score(EarlyCallRule(("complete",), 1, 0.0), runs)
    assert s.precision == 1.0 and s.median_call_fraction == pytest.approx(0.10)
    assert s.precision_lo == pytest.approx(0.025 ** (1 / 72))  # k = n: the lower bound is (alpha/2)^(1/n)
    assert s.target == "met with confidence"  # 0.9501 >= 0.95; at 71 calls it would be 0.9494
    few = score(EarlyCallRule(("complete",), 1, 0.0), runs[:3])
    assert few.target == "met"  # 3/3: point estimate 1.0, lower bound 0.29


def test_onset_and_settle_per_cell(runs):
    assert onset_fraction(_monitor("cchhdcdc")) == pytest.approx(0.25)  # the first c-d-c run to the end
    assert onset_fraction(_monitor("hhhh")) is None
    (cell,) = all_cells(runs)
    assert (cell.onset.n_monitored, cell.onset.n_onset) == (5, 3)  # runs 0, 1 and 4 end collapsed
    assert cell.onset.fraction == pytest.approx(0.20)  # median of 0.10, 0.20 and 1.0 (run 4's last reading)
    assert cell.onset.epoch == pytest.approx(0.4)
    assert (cell.settle.n, cell.settle.n_settled) == (5, 4)  # run 4 ends dimensional, final complete
