"""Start the dashboard. Kept tiny so `dftui` reaches its first frame before torch loads."""

from __future__ import annotations


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
    return 0
