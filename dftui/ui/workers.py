"""Make data-loader worker processes start inside the running app, whatever the start method.

Under Textual, ``sys.stderr`` is a capture object whose ``fileno()`` is -1. The first process
started with 'spawn' or 'forkserver' launches multiprocessing's resource tracker, which
passes ``sys.stderr.fileno()`` to the new process and fails with "bad value(s) in
fds_to_keep". Starting the tracker while stderr is a real file avoids that: once running,
later processes reuse it. The tracker can die (or the app may have started without
``launch``), so the check runs again before every run, on the UI thread."""

from __future__ import annotations

import sys
from typing import IO


def _usable_fd(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.fileno() >= 0
    except Exception:  # noqa: BLE001 - io.UnsupportedOperation, ValueError on closed files
        return False


def prepare_multiprocessing() -> None:
    """Start (or restart) the resource tracker with a real stderr in place."""
    from multiprocessing import resource_tracker

    if _usable_fd(sys.stderr):
        resource_tracker.ensure_running()
        return
    saved = sys.stderr
    real = sys.__stderr__ if _usable_fd(sys.__stderr__) else None
    devnull = None
    if real is None:
        import os

        devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below
        real = devnull
    try:
        sys.stderr = real
        resource_tracker.ensure_running()
    finally:
        sys.stderr = saved
        if devnull is not None:
            devnull.close()
