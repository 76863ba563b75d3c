"""The early-call rule and the settle fraction on hand-made monitor sequences."""

import pytest

from sslbench.early_call import EarlyCallRule, MonitorReading, settle_fraction
from sslbench.errors import SslbenchError


def _seq(*statuses: str, total: int = 10) -> list[MonitorReading]:
    return [MonitorReading(i + 1, (i + 1) / total, s, 0.5, 10.0, -2.0) for i, s in enumerate(statuses)]


def test_the_rule_calls_at_the_consecutive_reading_past_the_warmup():
    readings = _seq("complete", "healthy", "complete", "complete", "complete")
    assert EarlyCallRule(consecutive=2, after_fraction=0.0).call(readings).step == 4  # 1 is broken by 2
    assert EarlyCallRule(consecutive=3, after_fraction=0.0).call(readings).step == 5
    assert EarlyCallRule(consecutive=1, after_fraction=0.25).call(readings).step == 3  # steps 1-2 are warm-up
    assert EarlyCallRule(consecutive=4, after_fraction=0.0).call(readings) is None


def test_only_the_rules_statuses_count():
    readings = _seq("dimensional", "dimensional", "dimensional")
    assert EarlyCallRule(("complete",), 2, 0.0).call(readings) is None
    assert EarlyCallRule(("complete", "dimensional"), 2, 0.0).call(readings).step == 2


def test_a_stalled_rule_skips_outputs_that_are_still_spreading_out():
    """A random network reads collapsed and spreads out (a healthy run); a collapsing run stops spreading."""
    spreading = [MonitorReading(i, i / 10, "complete", 0.001 * 2**i, 1.5 + i, -0.1) for i in range(1, 5)]
    stuck = [MonitorReading(i, i / 10, "complete", 0.004, 2.0 * 1.04**i, -0.1) for i in range(1, 5)]
    rule = EarlyCallRule(consecutive=2, after_fraction=0.0, stalled=1.05)
    assert EarlyCallRule(consecutive=2, after_fraction=0.0).call(spreading).step == 2
    assert rule.call(spreading) is None
    assert rule.call(stuck).step == 3  # the first reading has no previous one to be compared with
    assert EarlyCallRule(consecutive=2, after_fraction=0.0, stalled=1.03).call(stuck) is None  # 4% growth: spreading
    assert "not spreading out (x1.05 at most)" in rule.describe()


def test_settle_fraction_is_where_the_monitor_last_starts_agreeing():
    assert settle_fraction(_seq("healthy", "complete", "healthy", "complete", "complete"), "complete") == 0.4
    assert settle_fraction(_seq("complete", "complete"), "complete") == 0.1
    assert settle_fraction(_seq("complete", "healthy"), "complete") is None
    assert settle_fraction([], "healthy") is None


def test_a_row_without_monitor_readings_is_no_reading():
    row = {"step": 30, "probe_status": "dimensional", "probe_spread": 0.4, "probe_effective_dims": 3.0,
           "probe_uniformity": -1.5}
    assert MonitorReading.from_row(row, 120) == MonitorReading(30, 0.25, "dimensional", 0.4, 3.0, -1.5)
    assert MonitorReading.from_row({**row, "probe_spread": float("nan")}, 120) is None
    assert MonitorReading.from_row({"step": 30}, 120) is None


@pytest.mark.parametrize("kwargs", [{"statuses": ()}, {"statuses": ("healthy",)}, {"consecutive": 0},
                                    {"after_fraction": 1.0}, {"stalled": 0.9}, {"stalled": float("nan")}])
def test_bad_rules_are_refused(kwargs):
    with pytest.raises(SslbenchError, match="early call"):
        EarlyCallRule(**kwargs)
