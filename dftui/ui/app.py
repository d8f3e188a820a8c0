"""The dashboard app (placeholder until the dashboard lands)."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Footer, Header, Static


class DftuiApp(App[None]):
    TITLE = "dftui"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("dftui: the dashboard is under construction; use `dftui train` and `dftui predict`.")
        yield Footer()
