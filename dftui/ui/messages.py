"""The bridge from engine events to Textual messages, and its one merging rule, for every
screen that shows an engine job: Prepare and Evaluate run theirs in a thread worker; the
Training screen follows the run's event log and applies the same rule to what it reads
(``coalesce``).

The worker's ``emit`` is ``engine_poster(screen)``: it only ever calls ``post_message``
(thread-safe), each event wrapped in one ``EngineEvent``, and the screen handles them in
``on_engine_event`` on the UI thread.

The one merging rule: a *progress* event says how far one stream of work has got (training
or validation batches, one split, one evaluation pass, one download, the folder job); when
the UI falls behind, a queued progress message is superseded by the message queued right
after it if that one is progress of the same stream, and the newer message carries the
older events along in ``events`` (in order); ``coalesce`` groups a list of events read at
once the same way. A listener that shows the latest state reads
``event``; one that must see every event (the loss chart, a log line per skipped source)
reads ``events``. Every other event (a start, an end, a log line, an epoch's results) is
never merged or dropped, and since Textual merges a message only with the one queued right
after it, no progress merges across one."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from dftui.core.events import (
    BatchEnd,
    DownloadProgress,
    Emit,
    EvalProgress,
    Event,
    FolderProgress,
    SplitProgress,
)


def progress_stream(event: Event) -> Hashable | None:
    """The stream a progress event belongs to, or None for an event that is not progress."""
    if isinstance(event, BatchEnd):
        return ("batch", event.phase)
    if isinstance(event, SplitProgress):
        return ("split", event.split)
    if isinstance(event, EvalProgress):
        return ("eval", event.folder, event.label, event.pass_index)
    if isinstance(event, FolderProgress):
        return ("folder",)
    if isinstance(event, DownloadProgress):
        return ("download", event.file)
    return None


def coalesce(events: Iterable[Event]) -> list[list[Event]]:
    """``events`` in groups, in order: a run of progress events of one stream is one group,
    every other event a group of its own (the rule ``EngineEvent`` merges messages by)."""
    groups: list[list[Event]] = []
    last: Hashable | None = None
    for event in events:
        stream = progress_stream(event)
        if stream is not None and groups and stream == last:
            groups[-1].append(event)
        else:
            groups.append([event])
        last = stream
    return groups


class EngineEvent(Message):
    """One engine event (``event``) and, after merging, the progress events of the same
    stream it superseded (``events``: all of them, oldest first, ending with ``event``)."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event
        self.events: list[Event] = [event]
        self.stream = progress_stream(event)

    def can_replace(self, message: Message) -> bool:
        # Textual calls this on the queued (older) message with the one queued right after
        # it: True lets the newer message supersede this one, which hands its events on.
        if (
            self.stream is not None
            and isinstance(message, EngineEvent)
            and message.stream == self.stream
        ):
            message.events[:0] = self.events
            return True
        return False


def engine_poster(target: MessagePump) -> Emit:
    """An ``emit`` for an engine running in a worker thread: each event reaches ``target``
    as an ``EngineEvent``."""

    def emit(event: Event) -> None:
        target.post_message(EngineEvent(event))

    return emit


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
