"""Textual messages that carry engine events from the training thread to the widgets.

The thread only ever calls ``post_message`` (thread-safe); widgets are touched on the UI
thread. Batch progress messages merge: when the UI falls behind, a queued progress message
is superseded by the next one, which inherits its losses so the chart misses no point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.message import Message

from dftui.core.events import BatchEnd, Event


class EngineEvent(Message):
    """Any core event except batch progress (run started, epoch end, log, finish, failure)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class BatchProgress(Message):
    """A BatchEnd event; ``events`` holds it and any earlier ones it superseded, in order."""

    def __init__(self, event: BatchEnd) -> None:
        super().__init__()
        self.event = event
        self.events: list[BatchEnd] = [event]

    def can_replace(self, message: Message) -> bool:
        # Called on the queued (older) message with the next pending one: let the newer
        # message supersede this one, carrying this one's events along.
        if isinstance(message, BatchProgress):
            message.events[:0] = self.events
            return True
        return False


def wrap(event: Event) -> Message:
    if isinstance(event, BatchEnd):
        return BatchProgress(event)
    return EngineEvent(event)


class TorchReady(Message, bubble=False):
    """torch, torchvision and timm finished importing in the background (or failed).

    It must not bubble: the app re-posts it to every screen, and a copy bubbling back up
    to the app would be re-posted forever (the UI froze)."""

    def __init__(self, devices: list[Any] | None, error: str | None, seconds: float) -> None:
        super().__init__()
        self.devices = devices
        self.error = error
        self.seconds = seconds


class DataFoldersReady(Message, bubble=False):
    """Prepare (or the demo data) wrote crops into these folders: the Setup screen trains
    on them. Posted to the Setup screen, which fills its own fields from it and rescans them
    (often the very folders already shown, where no field changes). ``img_size``: an image
    size to go with them (the demo set's 64 px pictures), None to keep Setup's."""

    def __init__(self, train_dir: Path, val_dir: Path, test_dir: Path | None = None,
                 img_size: int | None = None) -> None:
        super().__init__()
        self.train_dir = train_dir
        self.val_dir = val_dir
        self.test_dir = test_dir
        self.img_size = img_size
