"""Start the dashboard. Kept tiny so `dftui` reaches its first frame before torch loads."""

from __future__ import annotations


def launch() -> int:
    from dftui.ui.app import DftuiApp

    DftuiApp().run()
    return 0
