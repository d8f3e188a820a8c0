"""Start the dashboard. Kept tiny so `dftui` reaches its first frame before torch loads."""

from __future__ import annotations

import logging
import os
import sys


def launch() -> int:
    # Data-loader workers under 'spawn'/'forkserver' need multiprocessing's resource tracker
    # started with a real stderr; the Training screen does that before each run (see
    # dftui.ui.workers), so nothing is spawned here, on the way to the first frame.
    try:
        # textual-image queries the terminal when imported, so it must happen before the
        # app owns the terminal (the Classify screen draws images with it).
        import textual_image.widget  # noqa: F401 - also measures the cell size
    except Exception:  # noqa: BLE001 - the image widget falls back to half blocks
        pass
    from dftui.ui.app import DftuiApp

    app = DftuiApp()
    app.offer_demo_data = True  # type: ignore[attr-defined]  # issue #4: Setup offers demo data when the default folders are empty
    app.run()
    leave_now(app.return_code or 0)
    return app.return_code or 0  # not reached


def leave_now(code: int) -> None:
    """End the process at once. By now the app has shut down cleanly: the terminal is
    restored, a run was stopped and its records written (quitting waits for that), settings
    were saved. What is left is the interpreter's teardown of torch, torchvision and timm,
    about 2 s on a small machine for nothing a user can see, so it is skipped: flush what
    Python buffers, then ``os._exit``. Only the real ``dftui`` entry point calls this; tests
    drive the app with ``run_test`` and never get here."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed or replaced stream
            pass
    logging.shutdown()  # flushes and closes any handler a library configured
    os._exit(code)
