"""Ctrl-C and SIGTERM: a stop request inside a deferred block, an immediate stop elsewhere."""

import os
import signal

import pytest

from sslbench import interrupts
from sslbench.interrupts import StopRequested, describe, graceful_stop


def _send(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)


def test_outside_a_deferred_block_sigterm_stops_at_once_with_its_exit_status():
    with graceful_stop(), pytest.raises(StopRequested) as e:
        _send(signal.SIGTERM)
    assert describe(e.value) == ("terminated (SIGTERM)", 143)
    assert describe(KeyboardInterrupt()) == ("interrupted (Ctrl-C)", 130)


def test_inside_a_deferred_block_the_first_signal_is_a_request_and_the_block_decides():
    polled = []
    with graceful_stop(), pytest.raises(StopRequested) as e:
        with interrupts.deferred():
            _send(signal.SIGINT)
            polled.append(interrupts.requested())  # still running: the block reaches its safe point
            interrupts.check()
            polled.append("not reached")
    assert polled == ["SIGINT"] and e.value.exit_code == 130


def test_a_second_signal_stops_at_once_and_an_unpolled_request_is_raised_at_the_end():
    with graceful_stop():
        with pytest.raises(StopRequested), interrupts.deferred():
            _send(signal.SIGTERM)
            _send(signal.SIGTERM)
            pytest.fail("the second signal should have stopped the block")
    with graceful_stop():
        with pytest.raises(StopRequested), interrupts.deferred():
            _send(signal.SIGTERM)
    assert interrupts.requested() is None  # graceful_stop clears the request for the next command


def test_the_previous_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with graceful_stop():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
