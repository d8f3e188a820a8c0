"""How a foreground command stops: Ctrl+C, a kill (SIGTERM) or a closed terminal (SIGHUP)
asks the job to stop at its next safe point; a second Ctrl+C means "out now"."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())


@contextmanager
def stop_on_signals(stop: threading.Event, request: Callable[[], None] | None = None) -> Iterator[None]:
    """While the block runs, the stop signals call ``request`` (default ``stop.set``); once
    ``stop`` is set, another Ctrl+C raises KeyboardInterrupt. The previous handlers are put
    back when the block ends, however it ends."""
    ask = request or stop.set

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: the user wants out now
        ask()

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
