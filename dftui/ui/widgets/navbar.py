"""One line at the top of every screen: the app name and the screens with their keys,
the current one highlighted. Cheap to render, so it costs nothing on the first frame."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class NavBar(Static):
    DEFAULT_CSS = """
    NavBar { height: 1; width: 1fr; background: $panel; color: $text; }
    """

    def __init__(self, current: str, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.current = current

    def on_mount(self) -> None:
        self.update(self._text())

    def _text(self) -> Text:
        from dftui.ui.app import SCREENS, screen_available

        text = Text()
        text.append(" dftui ", style="bold reverse")
        for name, spec in SCREENS.items():
            if not spec.key or not screen_available(name):
                continue
            key = self.app.key_display_for(f"screen.{name}", spec.key)
            label = f" {key} {spec.title} "
            if name == self.current:
                text.append(label, style="bold reverse")
            else:
                text.append(label)
        return text
