"""The one stop rule of foreground commands (train, prepare openforensics, prepare folder)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from dftui.cli.signals import STOP_SIGNALS, stop_on_signals


def test_signals_ask_to_stop_then_a_second_ctrl_c_gets_out() -> None:
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    stop = threading.Event()
    asked: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signals(stop, lambda: (asked.append("stop"), stop.set())):
            os.kill(os.getpid(), signal.SIGTERM)  # a kill: stop at the next safe point
            assert asked == ["stop"] and stop.is_set()
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl+C once stopping: out now
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before  # handlers put back


def test_the_default_request_sets_the_event() -> None:
    stop = threading.Event()
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.is_set()
