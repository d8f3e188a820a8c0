"""The event log (``events.jsonl``): the contract between a run and everyone watching it.

One JSON object per line, appended, flushed per event and fsynced at epoch ends and at the
end of the run. Besides the engine's events it holds:

- ``{"event": "log_opened", "schema": 1, "pid": ..., "host": ..., "t": ...}`` each time a
  process opens the log to write (a run's start, each resume);
- ``{"event": "heartbeat", "t": ...}`` every ``HEARTBEAT_S`` while nothing else was written,
  so a watcher can tell a run that is slow (a long epoch, validation, a download) from one
  whose process hangs or is gone;
- the end record: the engine's ``run_finished`` / ``run_failed`` event, with the outcome.

A reader (``EventTail``) keeps its byte offset, parses whole lines only, skips lines and
fields it does not understand, copes with a cut last line and with a log that is replaced
(new inode or smaller size: read again from the start). Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dftui.core.events import (
    EVENT_TYPES,
    BatchEnd,
    Event,
    RunFailed,
    RunFinished,
    RunStarted,
    event_from_dict,
)
from dftui.core.untrusted import parse_json

SCHEMA_VERSION = 1
EVENTS_FILE = "events.jsonl"
STOP_FILE = "stop-request"  # `dftui stop` / the dashboard ask a run to stop by creating it
OUTPUT_FILE = "output.log"  # a background run's stdout and stderr
HEARTBEAT_S = 5.0
STALE_AFTER_S = 4 * HEARTBEAT_S  # a live process whose log is older than this: "stalled"
STOP_POLL_S = 0.5
HEADER_KIND = "log_opened"
HEARTBEAT_KIND = "heartbeat"
NON_EVENT_KINDS = (HEADER_KIND, HEARTBEAT_KIND)
END_KINDS = (RunFinished.kind, RunFailed.kind)
# Batch events are thinned when a long history is read at once: the chart keeps about this
# many points (RunView draws about two per column) plus the last batch before every other event.
HISTORY_BATCH_POINTS = 1000
READ_CHUNK = 8 << 20
_BATCH_PREFIX = b'{"event": "batch_end"'


def hostname() -> str:
    return socket.gethostname()


# -- writing -------------------------------------------------------------------------------
class EventLogWriter:
    """Appends records to a run's event log from any thread (the training loop and the
    heartbeat thread share it). A write that fails (a full disk) raises OSError to the
    caller, and the next record starts on a fresh line, so a half-written record stays a
    line of its own that readers skip."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fh = open(self.path, "ab")
        self._cut = _ends_mid_line(self.path)
        self.last_write = time.monotonic()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def write(self, record: dict[str, Any], sync: bool = False) -> None:
        data = json.dumps(record, default=str).encode("utf-8") + b"\n"
        with self._lock:
            if self._cut:
                data = b"\n" + data
            self._cut = True  # until this write is known to be whole
            try:
                self._fh.write(data)
                self._fh.flush()
            except OSError:
                # Drop what the buffer still holds: the next record starts on a new line.
                self._reopen()
                raise
            self._cut = False
            self.last_write = time.monotonic()
            if sync:
                os.fsync(self._fh.fileno())

    def _reopen(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass
        try:
            self._fh = open(self.path, "ab")
        except OSError:
            pass

    def restore(self, lines: list[str]) -> None:
        """The log was deleted (with its run folder) while the run goes on: write ``lines``
        (what it held) into a new file at the same path, with a header, and append there."""
        with self._lock:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = open(self.path, "wb")
            self._fh.write(b"".join(line.encode("utf-8") + b"\n" for line in lines))
            self._fh.flush()
            self._cut = False
        self.write_header()

    def write_header(self) -> None:
        self.write({"event": HEADER_KIND, "schema": SCHEMA_VERSION, "pid": os.getpid(),
                    "host": hostname(), "t": time.time()})

    def start_heartbeat(
        self, stop_file: Path | None = None, on_stop: Callable[[], None] | None = None,
        on_error: Callable[[OSError], None] | None = None,
    ) -> None:
        """A daemon thread: a heartbeat record every HEARTBEAT_S without other writes, and
        (when given) ``on_stop()`` once ``stop_file`` appears."""

        def beat() -> None:
            asked = False
            while not self._closing.wait(STOP_POLL_S):
                if stop_file is not None and on_stop is not None and not asked:
                    if stop_file.exists():
                        asked = True
                        on_stop()
                if time.monotonic() - self.last_write >= HEARTBEAT_S:
                    try:
                        self.write({"event": HEARTBEAT_KIND, "t": time.time()})
                    except OSError as exc:
                        self.last_write = time.monotonic()  # try again an interval later
                        if on_error is not None:
                            on_error(exc)
                    except ValueError:  # closed meanwhile
                        return

        self._thread = threading.Thread(target=beat, name="dftui-heartbeat", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * STOP_POLL_S + 1)
        with self._lock:
            try:
                self._fh.close()
            except OSError:
                pass


def _ends_mid_line(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:
        return False


def request_stop(run_dir: Path) -> None:
    """Ask the run writing ``run_dir`` to stop gracefully (idempotent; raises OSError)."""
    path = Path(run_dir) / STOP_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()} {hostname()} {time.time():.0f}\n".encode())
    finally:
        os.close(fd)


def clear_stop_request(run_dir: Path) -> None:
    try:
        (Path(run_dir) / STOP_FILE).unlink()
    except OSError:
        pass


# -- reading -------------------------------------------------------------------------------
def parse_record(data: Any) -> Event | None:
    """An engine event from one decoded line, or None for anything else (a heartbeat, a
    header, an unknown kind, a record whose fields do not fit). Unknown fields are dropped,
    so a newer writer's extra fields do not hide the event."""
    if not isinstance(data, dict):
        return None
    cls = EVENT_TYPES.get(data.get("event"))  # type: ignore[arg-type]
    if cls is None:
        return None
    try:
        return event_from_dict(data)  # type-checks every field, ignores unknown ones
    except Exception:  # noqa: BLE001 - a record that does not fit is skipped, never fatal
        return None


class LogGone(Exception):
    """The event log (or the whole run folder) was deleted."""


@dataclass
class EventTail:
    """Follows one run's event log. ``read()`` returns the events appended since the last
    call. State worth knowing without the events is kept here: the end record, the last
    heartbeat, the writer's pid and host, whether the log was replaced."""

    path: Path
    offset: int = 0
    inode: int | None = None
    ended: Event | None = None  # the last end record, unless a later start followed it
    started: RunStarted | None = None
    last_record_at: float | None = None  # wall time of the newest record, when it has one
    writer_pid: int | None = None
    writer_host: str | None = None
    schema: int | None = None
    skipped_lines: int = 0
    replaced: int = 0
    events_read: int = 0
    _pending: bytes = field(default=b"", repr=False)

    def read(self, thin: bool = True, budget_bytes: int | None = None) -> list[Event]:
        """New events. ``thin``: when much is read at once (attaching to a long run), keep
        only a sample of the batch events and the last one before each other event.
        Raises LogGone when the file no longer exists."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise LogGone(str(self.path)) from None
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            self._restart()
        self.inode = st.st_ino
        if st.st_size <= self.offset:
            return []
        end = st.st_size if budget_bytes is None else min(st.st_size, self.offset + budget_bytes)
        todo = end - self.offset
        # Attaching to a long run: most of its log is batch events, which only the loss chart
        # uses, and it keeps a few thousand points. Sample them by position (every
        # `spacing` bytes) and keep the last one before each other record (an epoch's final
        # progress); the other records are found by a regular expression, in C, so a
        # million batch lines are never split or looked at one by one in Python.
        spacing = todo // HISTORY_BATCH_POINTS if thin and todo > HISTORY_BATCH_POINTS * 400 else 0
        out: list[Event] = []
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                while self.offset < end:
                    chunk = fh.read(min(READ_CHUNK, end - self.offset))
                    if not chunk:
                        break
                    data = self._pending + chunk
                    self.offset += len(chunk)
                    cut = data.rfind(b"\n")
                    if cut < 0:
                        self._pending = data
                        continue
                    self._pending = data[cut + 1:]
                    whole = data[:cut]
                    if spacing:
                        for line in _sampled_lines(whole, spacing):
                            self._take(line, out)
                    else:
                        for line in whole.split(b"\n"):
                            self._take(line, out)
        except FileNotFoundError:
            raise LogGone(str(self.path)) from None
        self.events_read += len(out)
        return out

    def _restart(self) -> None:
        """The log was replaced or truncated: forget everything and read it again."""
        self.offset = 0
        self._pending = b""
        self.ended = None
        self.started = None
        self.replaced += 1

    def _take(self, line: bytes, out: list[Event]) -> None:
        line = line.strip()
        if not line:
            return
        try:
            data = parse_json(line)  # untrusted: RecursionError for deep nesting included
        except ValueError:
            self.skipped_lines += 1
            return
        if not isinstance(data, dict):
            self.skipped_lines += 1
            return
        kind = data.get("event")
        t = data.get("t")
        if isinstance(t, (int, float)):
            self.last_record_at = float(t)
        if kind == HEARTBEAT_KIND:
            return
        if kind == HEADER_KIND:
            schema = data.get("schema")
            self.schema = schema if isinstance(schema, int) else None
            pid = data.get("pid")
            self.writer_pid = pid if isinstance(pid, int) else None
            host = data.get("host")
            self.writer_host = host if isinstance(host, str) else None
            self.ended = None  # a new attempt (a resume) writes on
            return
        event = parse_record(data)
        if event is None:
            self.skipped_lines += 1
            return
        if isinstance(event, RunStarted):
            self.started = event
            self.ended = None
        elif isinstance(event, (RunFinished, RunFailed)):
            self.ended = event
        out.append(event)


_OTHER_LINE = re.compile(rb"\n(?!" + re.escape(_BATCH_PREFIX) + rb")")


def _sampled_lines(buf: bytes, spacing: int) -> list[bytes]:
    """The lines of ``buf`` (whole lines, no final newline) that are not batch events, the
    batch line before each of them, one batch line every ``spacing`` bytes and the last
    line, in order."""
    starts = {m.end() for m in _OTHER_LINE.finditer(buf)}
    if not buf.startswith(_BATCH_PREFIX):
        starts.add(0)
    picks = set(starts)
    for start in starts:
        if start > 0:
            picks.add(buf.rfind(b"\n", 0, start - 1) + 1)
    for offset in range(spacing, len(buf), spacing):
        picks.add(buf.rfind(b"\n", 0, offset) + 1)
    picks.add(buf.rfind(b"\n") + 1)
    lines = []
    for start in sorted(picks):
        stop = buf.find(b"\n", start)
        lines.append(buf[start:stop] if stop >= 0 else buf[start:])
    return lines


def read_history(run_dir: Path) -> tuple[list[Event], EventTail]:
    """Everything a run logged so far (batch events thinned for a long log), and the tail to
    follow it with. A missing log gives no events."""
    tail = EventTail(Path(run_dir) / EVENTS_FILE)
    try:
        events = tail.read()
    except LogGone:
        events = []
    return events, tail


def status_code(status: str) -> int:
    """The exit status a run's outcome maps to, as `dftui train` returns it."""
    if status in ("finished", "stopped"):
        return 0
    if status == "failed":
        return 1
    return 130  # interrupted


def outcome_code(final: Event | None) -> int:
    if isinstance(final, RunFailed):
        return 1
    if isinstance(final, RunFinished):
        return status_code(final.status)
    return 130


def is_batch(event: Event) -> bool:
    return isinstance(event, BatchEnd)
