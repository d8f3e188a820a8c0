"""A keyboard-first folder picker: a tree of folders only, a typed path, choose or cancel.

Dismisses with the chosen Path, or None when cancelled."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Static


def shown_path(path: Path) -> str:
    """How a folder is written into a field: relative to the working folder when inside it
    (short, and what the user would type), else as given."""
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


class FolderTree(DirectoryTree):
    """Folders only; hidden ones left out."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        out = []
        for path in paths:
            try:
                if path.is_dir() and not path.name.startswith("."):
                    out.append(path)
            except OSError:
                continue
        return out


class FolderPicker(ModalScreen[Path | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "choose", "Choose folder", priority=True),
        Binding("backspace", "up", "Parent folder"),
    ]

    def __init__(self, title: str, start: Path | None = None) -> None:
        super().__init__()
        self.title_text = title
        start = (start or Path.cwd()).expanduser()
        # Start in the nearest folder that exists, so a typo still opens somewhere useful.
        while not start.is_dir() and start != start.parent:
            start = start.parent
        self.start = start if start.is_dir() else Path.cwd()
        self.root = self.start.parent if self.start.parent != self.start else self.start

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box", classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield FolderTree(self.root, id="picker-tree")
            yield Input(str(self.start), id="picker-path", compact=True,
                        placeholder="type a folder path")
            yield Static("", id="picker-error", classes="error")
            yield Static("enter opens a folder · backspace goes up · ctrl+s chooses · escape cancels",
                         classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Choose", variant="primary", id="picker-choose", compact=True)
                yield Button("Cancel", id="picker-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one(FolderTree).focus()

    @on(DirectoryTree.NodeHighlighted)
    def _highlighted(self, event: DirectoryTree.NodeHighlighted) -> None:
        data = event.node.data
        if data is not None:
            self.query_one("#picker-path", Input).value = str(data.path)

    @on(Input.Submitted, "#picker-path")
    def _typed(self) -> None:
        self.action_choose()

    @on(Button.Pressed, "#picker-choose")
    def _choose_pressed(self) -> None:
        self.action_choose()

    @on(Button.Pressed, "#picker-cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    def action_choose(self) -> None:
        text = self.query_one("#picker-path", Input).value.strip()
        path = Path(text).expanduser() if text else None
        if path is None or not path.is_dir():
            self.query_one("#picker-error", Static).update(
                f"{text or '(empty)'} is not a folder; pick one in the tree or type its path"
            )
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)

    async def action_up(self) -> None:
        if isinstance(self.focused, Input):
            # backspace edits the typed path
            self.focused.action_delete_left()
            return
        tree = self.query_one(FolderTree)
        parent = Path(tree.path).parent
        if parent != Path(tree.path):
            tree.path = parent
