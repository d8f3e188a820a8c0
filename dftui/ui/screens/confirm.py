"""A yes/no question as a modal screen (dismisses with True or False)."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", show=False),
        Binding("n,escape", "answer(False)", "No", show=False),
        Binding("left,right", "app.focus_next", show=False),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No", *,
                 still_asks: Callable[[], bool] | None = None,
                 otherwise: tuple[str, str, str] | None = None) -> None:
        """``still_asks``: whether the question still holds (checked twice a second while
        the dialog is open); once it does not, the dialog asks ``otherwise`` instead
        (question, yes, no): e.g. the run it warned about has finished meanwhile."""
        super().__init__()
        self.question = question
        self.yes_label = yes
        self.no_label = no
        self._still_asks = still_asks
        self._otherwise = otherwise

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes_label} (y)", variant="error", id="yes")
                yield Button(f"{self.no_label} (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()
        if self._still_asks is not None and self._otherwise is not None:
            self._recheck_timer = self.set_interval(0.5, self._recheck)

    def _recheck(self) -> None:
        if self._still_asks is None or self._otherwise is None or self._still_asks():
            return  # unchanged: nothing is redrawn
        self._recheck_timer.stop()
        self.question, self.yes_label, self.no_label = self._otherwise
        self.query_one("#confirm-question", Static).update(self.question)
        self.query_one("#yes", Button).label = f"{self.yes_label} (y)"
        self.query_one("#no", Button).label = f"{self.no_label} (n)"

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
