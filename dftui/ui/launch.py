"""Start the dashboard. Kept tiny so `dftui` reaches its first frame before torch loads."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dftui.ui.app import DftuiApp


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

    # Setup offers demo data when the default folders are empty (issue #4).
    app = DftuiApp(announce_runs=True, offer_demo_data=True)
    try:
        app.run()
    finally:
        finish_in_process_run(app)
    leave_now(app.return_code or 0)
    return app.return_code or 0  # not reached


def finish_in_process_run(app: DftuiApp) -> None:
    """The app ended (an error in a screen, say) while a run trained in its thread: that
    run is not taken down with it. It goes on here, reported on stderr, until it ends; a
    hang-up, SIGTERM or Ctrl+C interrupts it (recorded "interrupted", resumable)."""
    import signal
    import sys

    training = app.training_screen()
    if training is None:
        return
    done, flag = training.thread_done, training.stop_flag
    if done is None or done.is_set() or flag is None:
        return
    name = training.run_dir.name if training.run_dir is not None else "?"

    def interrupt(signum: int = 0, frame: object = None) -> None:
        flag.request("interrupted")

    for sig in ("SIGHUP", "SIGTERM"):
        if hasattr(signal, sig):
            signal.signal(getattr(signal, sig), interrupt)
    try:
        sys.stderr.write(
            f"dftui: the dashboard closed while run {name} trained in it; the run goes on here "
            f"until it ends. Follow it with `dftui attach {name}`; Ctrl+C interrupts it "
            "(resumable).\n"
        )
    except (OSError, ValueError):
        pass
    try:
        while not done.wait(1.0):
            pass
    except KeyboardInterrupt:
        interrupt()
        done.wait(300)


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
