"""The help screen (? or F1): every key that works on the screen below, and the global ones."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

INTRO = (
    "dftui fine-tunes DeepFake detectors (real = 0, fake = 1). Set a run up on Setup, watch it "
    "on Training, try the weights on Classify, look back on Runs. Tab / shift+tab move between "
    "fields; ctrl+p opens the command palette."
)


def _key_label(app, binding: Binding) -> str:  # type: ignore[no-untyped-def]
    return app.get_key_display(binding)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close", show=True)]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="dialog"):
            yield Static("Keys", id="help-title", classes="dialog-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(INTRO, id="help-intro")
                yield Static(self._table(), id="help-keys")
            yield Static("escape closes", classes="dialog-hint")

    def _table(self) -> Text:
        app = self.app
        rows: list[tuple[str, str, str]] = []
        seen: set[tuple[str, str]] = set()
        title = getattr(self.under, "TITLE", None) or type(self.under).__name__

        def add(section: str, bindings: list) -> None:  # type: ignore[type-arg]
            for item in bindings:
                binding = item if isinstance(item, Binding) else Binding(*item)
                if not binding.description or binding.system:
                    continue
                mark = (binding.action, binding.description)
                if mark in seen:
                    continue
                seen.add(mark)
                rows.append((section, _key_label(app, binding), binding.description))

        # Bindings as currently mapped (the keymap may have changed the keys).
        active = self.under.active_bindings
        screen_bindings = [b.binding for b in active.values() if b.node is self.under]
        app_bindings = [b.binding for b in active.values() if b.node is app]
        # Keys of dftui's own widgets around the focus (e.g. the charts' f, l, [ ]).
        widget_bindings = [b.binding for b in active.values()
                           if b.node is not self.under and b.node is not app
                           and type(b.node).__module__.startswith("dftui.")]
        add(str(title), screen_bindings)
        add(f"{title}: charts and panels", widget_bindings)
        add("Everywhere", app_bindings)
        text = Text()
        current = None
        for section, key, description in rows:
            if section != current:
                if current is not None:
                    text.append("\n")
                text.append(f"{section}\n", style="bold")
                current = section
            text.append(f"  {key:<14}", style="bold")
            text.append(f"{description}\n")
        return text
