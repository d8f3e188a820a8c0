"""Dialogs of the Runs screen: edit a run's name, tags and note; delete a run (its weights
only when asked, naming the files); choose the folder an export goes to."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from dftui.core.run_manage import MAX_NAME, MAX_NOTE, UserInfo, parse_tags


class EditRunScreen(ModalScreen[UserInfo | None]):
    """Name, tags and note of one run. Enter or ctrl+s saves; escape cancels."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("ctrl+s", "save", "Save", show=False, priority=True),
    ]

    def __init__(self, run_label: str, info: UserInfo) -> None:
        super().__init__()
        self.run_label = run_label
        self.info = info

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="edit-run"):
            yield Static(f"Run {self.run_label}", classes="dialog-title")
            yield Label("Name")
            yield Input(self.info.name, id="edit-name", max_length=MAX_NAME,
                        placeholder="a name you will recognise, e.g. lr sweep 3e-4")
            yield Label("Tags (separated by commas or spaces)")
            yield Input(", ".join(self.info.tags), id="edit-tags", placeholder="baseline, aug")
            yield Label("Note")
            yield Input(self.info.note.replace("\n", " "), id="edit-note", max_length=MAX_NOTE,
                        placeholder="what you tried, what you saw")
            yield Static("enter or ctrl+s: save · escape: cancel", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#edit-name", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_save(self) -> None:
        self.dismiss(UserInfo(
            name=self.query_one("#edit-name", Input).value,
            tags=parse_tags(self.query_one("#edit-tags", Input).value),
            note=self.query_one("#edit-note", Input).value,
            archived=self.info.archived,
        ))

    def action_cancel(self) -> None:
        self.dismiss(None)


class DeleteRunScreen(ModalScreen[tuple[bool, bool]]):
    """Dismisses with (delete?, with weights?). The weights box starts unticked: the weights
    are kept unless the user asks otherwise, and the files are named."""

    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel", show=False),
        Binding("y", "delete", "Delete", show=False),
    ]

    def __init__(self, run_label: str, run_dir: Path, weights: list[Path], shared: str = "") -> None:
        super().__init__()
        self.run_label = run_label
        self.run_dir = run_dir
        self.weights = weights
        self.shared = shared

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="delete-run"):
            yield Static(f"Delete run {self.run_label}?", classes="dialog-title")
            yield Static(f"Its record is removed: the folder {self.run_dir}", id="delete-what")
            if self.weights and not self.shared:
                names = "\n".join(f"  {p}" for p in self.weights)
                yield Checkbox(self._weights_label(False), False, id="delete-weights")
                yield Static(names, id="delete-files")
            elif self.shared:
                yield Static(f"Its weights are kept: {self.shared}", classes="dialog-hint")
            else:
                yield Static("It has no weights on disk.", classes="dialog-hint")
            yield Static("y: delete · n or escape: keep", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Delete (y)", variant="error", id="delete")
                yield Button("Keep (n)", variant="primary", id="keep")

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()

    @staticmethod
    def _weights_label(on: bool) -> str:
        # Said in words: a ticked and an unticked box differ only by colour in some themes.
        return ("its weights too: YES, these files are deleted:" if on else
                "its weights too: no, kept (space: delete them too):")

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.checkbox.label = self._weights_label(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "delete":
            self.action_delete()
        else:
            self.action_cancel()

    def action_delete(self) -> None:
        boxes = self.query("#delete-weights")
        with_weights = bool(boxes and boxes.first(Checkbox).value)
        self.dismiss((True, with_weights))

    def action_cancel(self) -> None:
        self.dismiss((False, False))


class ExportScreen(ModalScreen[Path | None]):
    """The folder the run's metrics (CSV) and charts (SVG) are written to."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, run_label: str, folder: Path) -> None:
        super().__init__()
        self.run_label = run_label
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="export-run"):
            yield Static(f"Export run {self.run_label}", classes="dialog-title")
            yield Static("Its metrics as CSV and its charts as SVG go to this folder "
                         "(existing files are kept; new names get -2, -3 ...):")
            yield Input(str(self.folder), id="export-folder")
            yield Static("enter: export · escape: cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#export-folder", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            self.notify("type a folder for the export (Folder field)", severity="warning")
            return
        self.dismiss(Path(text).expanduser())

    def action_cancel(self) -> None:
        self.dismiss(None)
