"""One line at the top of every screen: the app name and the screens with their keys,
the current one highlighted. Cheap to render, so it costs nothing on the first frame.

While the dashboard follows a run, a second line says how it goes (epoch, %, ETA, best
accuracy; see dftui.ui.run_status), on every screen but Training, which shows all that
already; when the run ends it says how it ended until the Training screen has been seen."""

from __future__ import annotations

from rich.text import Text
from textual import getters
from textual.widgets import Static

from dftui.ui.app import SCREENS, DftuiApp, screen_available
from dftui.ui.run_status import STATUS_EVERY_S, mark_end_seen, status_text


def current_status(app: DftuiApp) -> Text | None:
    """The run status line for the app (None: nothing to show)."""
    training = app.training_screen()
    if training is None:
        return None
    if app.screen is training:
        mark_end_seen(training)
        return None
    try:
        from dftui.ui.widgets.run_view import RunView

        view = training.query_one(RunView)
    except Exception:  # noqa: BLE001 - not composed yet
        view = None
    return status_text(training, view)


class NavBar(Static):
    app = getters.app(DftuiApp)
    DEFAULT_CSS = """
    NavBar {
        height: auto; width: 1fr; background: $panel; color: $text;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """

    def __init__(self, current: str, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.current = current
        self.status: Text | None = None

    def on_mount(self) -> None:
        self.status = current_status(self.app)
        self.update(self._text())
        self.set_interval(STATUS_EVERY_S, self.poll_status)

    def on_show(self) -> None:
        self.poll_status()  # a screen shown again is brought up to date at once

    def poll_status(self) -> None:
        if not self.screen.is_current:
            return  # a screen out of sight is brought up to date when it is shown again
        status = current_status(self.app)
        if (status.markup if status else None) != (self.status.markup if self.status else None):
            self.status = status
            self.update(self._text())

    def _text(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
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
        if self.status is not None:
            text.append("\n ")
            text.append_text(self.status)
        return text


class RunStatusLine(Static):
    """The run status alone, for screens without a NavBar (dialogs over the whole screen);
    hidden while there is nothing to say."""

    app = getters.app(DftuiApp)
    DEFAULT_CSS = """
    RunStatusLine { height: auto; width: 1fr; background: $panel; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self._markup: str | None = ""
        self.poll_status()
        self.set_interval(STATUS_EVERY_S, self.poll_status)

    def poll_status(self) -> None:
        if not self.screen.is_current:
            return
        status = current_status(self.app)
        markup = status.markup if status else None
        if markup != self._markup:
            self._markup = markup
            self.display = status is not None
            self.update(status or "")
