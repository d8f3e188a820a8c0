"""Start the dashboard. Kept tiny so `dftui` reaches its first frame before torch loads."""

from __future__ import annotations


def launch() -> int:
    from dftui.ui.workers import prepare_multiprocessing

    # Before Textual takes over stderr: data-loader workers started with 'spawn' or
    # 'forkserver' need the resource tracker (see dftui.ui.workers).
    prepare_multiprocessing()
    try:
        # textual-image queries the terminal when imported, so it must happen before the
        # app owns the terminal (the Classify screen draws images with it).
        import textual_image.widget  # noqa: F401 - also measures the cell size
    except Exception:  # noqa: BLE001 - the image widget falls back to half blocks
        pass
    from dftui.ui.app import DftuiApp

    DftuiApp().run()
    return 0
